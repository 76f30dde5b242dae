//! `intake ingest [--project KEY] [--channel NAME] [--json] PATH…`

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use intake_core::ProjectKey;
use intake_store::{Durability, Store};

use crate::config::{DEFAULT_CHANNEL, DEFAULT_PROJECT};
use crate::pipeline::{self, IngestOptions};
use crate::settings::Settings;
use crate::source::local::{self, Origin};

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Project key for new tickets (default: the channel's project, INTAKE_PROJECT, or HELP).
    #[arg(long)]
    pub project: Option<String>,
    /// Channel the messages are recorded under; its [[channel]] rules apply if configured.
    #[arg(long)]
    pub channel: Option<String>,
    /// Print exactly one JSON object on stdout:
    /// {"created":N,"commented":N,"ignored":N,"quarantined":N,"duplicate":N,"sent":N,"send_failed":N}
    #[arg(long)]
    pub json: bool,
    /// Messages per transaction.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// .eml files, Maildir folders, mbox files, or folders of them.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

pub async fn run(settings: &Settings, db: &str, a: IngestArgs) -> anyhow::Result<ExitCode> {
    let config = &*settings.config;
    let channel_name = a
        .channel
        .clone()
        .unwrap_or_else(|| DEFAULT_CHANNEL.to_string());
    let channel = config.channel(&channel_name);
    let project = a
        .project
        .clone()
        .or_else(|| channel.map(|c| c.project.clone()))
        .or_else(|| config.project.clone())
        .unwrap_or_else(|| DEFAULT_PROJECT.to_string());
    let project: ProjectKey = project.parse()?;
    let rules = config.rules_for(channel)?;
    let origins = local::walk(&a.paths).context("reading the paths to ingest")?;
    // Process-crash durability is enough here: `intake ingest` never deletes or moves its
    // input, so what a power loss undoes a re-run imports again (docs/decisions.md).
    let store = Store::connect_with(db, Durability::Process)
        .await
        .with_context(|| format!("opening the database {}", redact(db)))?;
    crate::housekeeping::once(config, &store).await;
    let effects = crate::pipeline::Effects {
        sinks: crate::outbox::sink_routes(settings, &project),
        sent_keys: crate::pipeline::SentKeys::load(&config.secret_key_file())?,
        ..Default::default()
    };
    let mut opts = IngestOptions::new(&channel_name, project, rules).with_effects(&effects);
    opts.batch = a.batch.max(1);
    let progress = std::io::stderr()
        .is_terminal()
        .then(|| progress_bar(&origins));
    let started = std::time::Instant::now();
    let high_water = store.outbox_high_water().await?;
    let mut summary = pipeline::ingest(&store, origins, &opts, progress.as_ref()).await?;
    if let Some(p) = &progress {
        p.finish_and_clear();
    }
    // Return only once the outbox rows this import created are delivered or failed.
    (summary.sent, summary.send_failed) =
        crate::outbox::settle(settings, &store, high_water).await?;
    store.close().await;
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{} messages in {secs:.1}s: created {}, commented {}, ignored {}, quarantined {}, duplicate {}; sent {}, send failed {}",
            summary.total(),
            summary.created,
            summary.commented,
            summary.ignored,
            summary.quarantined,
            summary.duplicate,
            summary.sent,
            summary.send_failed
        );
        if summary.quarantined > 0 {
            println!("quarantined messages are kept with their reason: see `intake log`");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(origins: &[Origin]) -> ProgressBar {
    let files = origins.iter().all(|o| matches!(o, Origin::Message(_)));
    let p = if files {
        ProgressBar::new(origins.len() as u64)
    } else {
        ProgressBar::new_spinner()
    };
    let style = if files {
        ProgressStyle::with_template("{bar:40} {pos}/{len} messages {per_sec} eta {eta}")
    } else {
        ProgressStyle::with_template("{spinner} {pos} messages {per_sec}")
    };
    if let Ok(s) = style {
        p.set_style(s);
    }
    p
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("sqlite://intake.db"), "sqlite://intake.db");
    }
}
