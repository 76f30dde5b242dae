//! `intake tickets list|show` and `intake log`: reading the store back, as text or JSON.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use intake_store::Store;

#[derive(Debug, Subcommand)]
pub enum TicketsCommand {
    /// List tickets. JSON: an array of {key, summary, reporter, status, participants, comments,
    /// attachments, channel, created_at, updated_at}.
    List {
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one ticket with its comments and attachments.
    Show {
        key: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct LogArgs {
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    #[arg(long)]
    pub json: bool,
}

async fn open(db: &str) -> anyhow::Result<Store> {
    Store::connect(db)
        .await
        .with_context(|| format!("opening the database {}", super::ingest::redact(db)))
}

pub async fn run(db: &str, c: TicketsCommand) -> anyhow::Result<ExitCode> {
    let store = open(db).await?;
    match c {
        TicketsCommand::List { project, json } => {
            let list = store.list_tickets(project.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no tickets");
            } else {
                println!(
                    "{:<12} {:<8} {:>3} {:>3}  {:<32} SUMMARY",
                    "KEY", "STATUS", "C", "A", "REPORTER"
                );
                for t in &list {
                    println!(
                        "{:<12} {:<8} {:>3} {:>3}  {:<32} {}",
                        t.key, t.status, t.comments, t.attachments, t.reporter, t.summary
                    );
                }
            }
        }
        TicketsCommand::Show { key, json } => {
            let Some(t) = store.ticket(&key).await? else {
                eprintln!("no ticket {key}");
                return Ok(ExitCode::from(2));
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                println!("{}  [{}]  {}", t.key, t.status, t.summary);
                println!("reporter: {}", t.reporter);
                if !t.participants.is_empty() {
                    println!("participants: {}", t.participants.join(", "));
                }
                for r in &t.related {
                    let how = if r.relation == "follows" {
                        "follows up"
                    } else {
                        "followed up by"
                    };
                    println!("related: {how} {}", r.key);
                }
                println!("\n{}\n", t.description);
                for a in t.attachments.iter().filter(|a| a.comment_id.is_none()) {
                    println!(
                        "attachment: {} ({}, {} bytes)",
                        a.filename, a.content_type, a.size
                    );
                }
                for c in &t.comments {
                    println!("--- comment by {} ---\n{}", c.author, c.body);
                    for a in t.attachments.iter().filter(|a| a.comment_id == Some(c.id)) {
                        println!(
                            "attachment: {} ({}, {} bytes)",
                            a.filename, a.content_type, a.size
                        );
                    }
                }
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn log(db: &str, a: LogArgs) -> anyhow::Result<ExitCode> {
    let store = open(db).await?;
    let events = store.recent_events(a.limit).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&events)?);
    } else {
        for e in &events {
            println!(
                "{} {:<5} {:<12} {:<11} {} {}",
                e.at,
                e.level,
                e.channel.as_deref().unwrap_or("-"),
                e.kind,
                e.message,
                e.fields
            );
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
