//! `intake run [--once] [--channel NAME] [--json]`: the server channels of the configuration.
//!
//! `--once` drains each channel once and prints the summary. Without it every channel runs in
//! its own task until SIGTERM or Ctrl-C; then each finishes the batch in hand if it can within
//! [`SHUTDOWN_GRACE`], the rest are dropped (a hard cutoff: a hung server cannot hold the exit),
//! this node's leases are released, and the process exits — within 10 s in all.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::pipeline::Summary;
use crate::settings::{ChannelSettings, Settings};

/// How long channels may take to finish their batch in hand after SIGTERM/Ctrl-C before they
/// are dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Bound on each database call while shutting down (lease release, closing the pool).
const SHUTDOWN_STEP: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Only this channel.
    #[arg(long)]
    pub channel: Option<String>,
    /// Drain each channel once and exit, printing the same summary as `ingest`.
    #[arg(long)]
    pub once: bool,
    /// Print exactly one JSON object: {"created":N,"commented":N,"ignored":N,"quarantined":N,"duplicate":N,"sent":N,"send_failed":N}
    #[arg(long)]
    pub json: bool,
}

/// Aborts its task when dropped (the hourly expiry check ends with `intake run`).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub async fn run(settings: &Settings, db: &str, a: RunArgs) -> anyhow::Result<ExitCode> {
    let store = intake_store::Store::connect(db).await?;
    let _housekeeping = crate::housekeeping::start(&settings.config, &store).await;
    // RC14: client secrets and certificates expiring within 30, 14 and 3 days (and expired)
    // are written to the mail log once per stage; `intake run` checks at start and hourly.
    let integrations: Vec<_> = settings.integrations.values().cloned().collect();
    for w in crate::oauth::credential_warnings(&store, &integrations, intake_store::now())
        .await
        .unwrap_or_default()
    {
        eprintln!("warning: {w}");
    }
    let _expiry = {
        let (store, integrations) = (store.clone(), integrations.clone());
        AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                let _ =
                    crate::oauth::credential_warnings(&store, &integrations, intake_store::now())
                        .await;
            }
        }))
    };
    let channels: Vec<Arc<ChannelSettings>> = settings
        .channels
        .iter()
        .filter(|c| a.channel.as_ref().is_none_or(|n| *n == c.name))
        .cloned()
        .collect();
    anyhow::ensure!(
        !channels.is_empty(),
        "no channel to run in the configuration{}",
        a.channel
            .as_ref()
            .map(|n| format!(" named {n:?}"))
            .unwrap_or_default()
    );
    if !a.once {
        return run_forever(settings, store, channels).await;
    }
    let high_water = store.outbox_high_water().await?;
    let mut total = Summary::default();
    let mut failed = 0;
    for c in &channels {
        // One failing channel never stops the others (RC12).
        match crate::runner::run_once(settings, &store, c).await {
            Ok(None) => eprintln!(
                "channel {}: another node holds its lease and is processing it; skipped",
                c.name
            ),
            Ok(Some(s)) => {
                total.created += s.created;
                total.commented += s.commented;
                total.ignored += s.ignored;
                total.quarantined += s.quarantined;
                total.duplicate += s.duplicate;
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: channel {}: {e:#}", c.name);
                if let Some(d) =
                    crate::runner::doctor::diagnose_failure(settings, &store, c, &e).await
                {
                    eprintln!("  cause: {} {}\n  fix:   {}", d.code, d.title, d.fix);
                    crate::runner::log_diagnosis(&store, &c.name, &d).await;
                }
                let fields = serde_json::json!({"error": format!("{e:#}")});
                let _ = store
                    .log_event(
                        Some(&c.name),
                        "error",
                        "channel_failed",
                        &format!("{e:#}"),
                        fields,
                    )
                    .await;
            }
        }
    }
    // Return only once the outbox rows this run created are delivered or failed.
    (total.sent, total.send_failed) = crate::outbox::settle(settings, &store, high_water).await?;
    store.close().await;
    if a.json {
        println!("{}", serde_json::to_string(&total)?);
    } else {
        println!(
            "created {}, commented {}, ignored {}, quarantined {}, duplicate {}; sent {}, send failed {}",
            total.created,
            total.commented,
            total.ignored,
            total.quarantined,
            total.duplicate,
            total.sent,
            total.send_failed
        );
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Every channel in its own task until SIGINT/SIGTERM; then each finishes its current batch
/// within [`SHUTDOWN_GRACE`], the rest are dropped, and this node's leases are released.
async fn run_forever(
    settings: &Settings,
    store: intake_store::Store,
    channels: Vec<Arc<ChannelSettings>>,
) -> anyhow::Result<ExitCode> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let names: Vec<String> = channels.iter().map(|c| c.name.clone()).collect();
    for c in channels {
        let (settings, store, rx) = (settings.clone(), store.clone(), rx.clone());
        tasks.spawn(async move { crate::runner::run_forever(&settings, &store, &c, rx).await });
    }
    // The outbox is delivered beside the channels, until the same shutdown.
    let outbox = tokio::spawn(crate::outbox::run_forever(
        Arc::new(settings.clone()),
        store.clone(),
        rx.clone(),
    ));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("stopping: finishing the current batches");
    let _ = tx.send(true);
    let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        eprintln!(
            "stopping: {} channel(s) did not finish within {}s; dropped",
            tasks.len(),
            SHUTDOWN_GRACE.as_secs()
        );
        // Aborting a channel's task drops its work (an abort-on-drop handle), so nothing of
        // it runs on after this.
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    if tokio::time::timeout(SHUTDOWN_STEP, async {
        while !outbox.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await
        }
    })
    .await
    .is_err()
    {
        // A send in progress is dropped: its row's lease lapses (or is freed by the next start
        // on this host) and it is sent again with the same identity.
        outbox.abort();
    }
    crate::runner::lease::release_all(&store, names.iter().map(String::as_str), SHUTDOWN_STEP)
        .await;
    let _ = tokio::time::timeout(SHUTDOWN_STEP, store.close()).await;
    Ok(ExitCode::SUCCESS)
}
