//! `intake outbox list [--state S] [--limit N] [--json]`, `intake outbox retry ID`,
//! `intake outbox discard ID`: the outgoing effects and what became of them.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use intake_store::Store;

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Rows, newest first: id, state, attempts, target, event, ticket, last error.
    List(ListArgs),
    /// Send a failed (or waiting) row again now.
    Retry { id: i64 },
    /// Never send a pending or failed row (later rows of its ticket may then go).
    Discard { id: i64 },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only rows in this state: pending, sent, failed, discarded.
    #[arg(long)]
    pub state: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// An array of rows as JSON (the payload included).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(db: &str, c: OutboxCommand) -> anyhow::Result<ExitCode> {
    let store = Store::connect(db).await?;
    let code = match c {
        OutboxCommand::List(a) => {
            if let Some(s) = &a.state {
                anyhow::ensure!(
                    ["pending", "sent", "failed", "discarded"].contains(&s.as_str()),
                    "--state {s:?}: use pending, sent, failed or discarded"
                );
            }
            let rows = store.list_outbox(a.state.as_deref(), a.limit).await?;
            if a.json {
                println!("{}", serde_json::to_string(&rows)?);
            } else {
                for r in rows {
                    println!(
                        "{:>6} {:<9} {:>3} {:<12} {:<18} {:<10} {}",
                        r.id,
                        r.state,
                        r.attempts,
                        r.target,
                        r.event,
                        r.ticket_key.unwrap_or_default(),
                        r.last_error.unwrap_or_default()
                    );
                }
            }
            ExitCode::SUCCESS
        }
        OutboxCommand::Retry { id } => {
            done(store.retry_outbox(id).await?, id, "will be sent again")
        }
        OutboxCommand::Discard { id } => done(
            store
                .discard_outbox(id, Some("discarded with `intake outbox discard`"))
                .await?,
            id,
            "discarded",
        ),
    };
    store.close().await;
    Ok(code)
}

fn done(changed: bool, id: i64, what: &str) -> ExitCode {
    if changed {
        println!("outbox row {id} {what}");
        ExitCode::SUCCESS
    } else {
        eprintln!("outbox row {id} is not pending or failed (or does not exist)");
        ExitCode::FAILURE
    }
}
