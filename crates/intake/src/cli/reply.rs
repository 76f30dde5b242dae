//! `intake reply KEY (--body TEXT | --body-file PATH) [--attach PATH]… [--channel NAME] [--json]`:
//! answer a ticket by mail from its channel's mailbox ([`crate::outbox::reply`], the same path
//! as `POST /api/tickets/{key}/replies`). The reply is recorded as an outgoing comment and its
//! mail enqueued in the outbox in one transaction, then delivered before the command returns
//! (or left to retry, exit code 1). It goes to the reporter (To) and the
//! participants (Cc), never to the channel's own addresses, with `Message-ID`, `In-Reply-To`,
//! `References` and `[KEY]` in the subject so the customer's answer threads back as a comment.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use intake_store::Store;

use crate::outbox::reply::ReplyFile;

use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct ReplyArgs {
    /// The ticket, e.g. HELP-12.
    pub key: String,
    /// The reply's text.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// A file holding the reply's text (UTF-8).
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// Attach a file (repeatable).
    #[arg(long)]
    pub attach: Vec<PathBuf>,
    /// Send from this channel (default: the channel the ticket came in on).
    #[arg(long)]
    pub channel: Option<String>,
    /// Print one JSON object: {"key","comment_id","outbox_id","message_id","state","error"}.
    #[arg(long)]
    pub json: bool,
}

fn content_type(path: &std::path::Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("txt" | "log") => "text/plain",
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("csv") => "text/csv",
        Some("json") => "application/json",
        Some("zip") => "application/zip",
        _ => "application/octet-stream",
    }
}

pub async fn run(settings: &Settings, db: &str, a: ReplyArgs) -> anyhow::Result<ExitCode> {
    let body = match (&a.body, &a.body_file) {
        (Some(b), _) => b.clone(),
        (None, Some(p)) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        (None, None) => anyhow::bail!("give the reply's text with --body or --body-file"),
    };
    let mut files = Vec::new();
    for p in &a.attach {
        let data = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        files.push(ReplyFile {
            filename: p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_else(|| "attachment".into()),
            content_type: content_type(p).to_string(),
            data,
        });
    }
    let store = Store::connect(db).await?;
    let e =
        crate::outbox::reply::enqueue(settings, &store, &a.key, &body, a.channel.as_deref(), files)
            .await?;
    let (key, comment_id, outbox_id, message_id, to) =
        (e.key, e.comment_id, e.outbox_id, e.message_id, e.recipients);
    crate::outbox::settle(settings, &store, outbox_id - 1).await?;
    let row = store
        .outbox_item(outbox_id)
        .await?
        .context("the reply's outbox row vanished")?;
    store.close().await;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "key": key,
                "comment_id": comment_id,
                "outbox_id": outbox_id,
                "message_id": message_id,
                "state": row.state,
                "error": row.last_error,
            })
        );
    } else if row.state == "sent" {
        println!(
            "{key}: reply sent to {} (comment {comment_id})",
            to.join(", ")
        );
    } else {
        println!(
            "{key}: reply recorded (comment {comment_id}) but not sent yet ({}): {}; `intake outbox list` shows it",
            row.state,
            row.last_error.as_deref().unwrap_or("")
        );
    }
    Ok(if row.state == "sent" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
