//! `intake folders --channel NAME [--json]`: the folders of a channel's mailbox with their IDs
//! and well-known roles, read with the channel's own settings, token and proxy
//! ([`crate::runner::folders::list`]), so that `folder` (or a `move:` target) is chosen from
//! what the server has, never guessed from a localized display name (RC5).
//!
//! On failure it prints the doctor's diagnosis of the error (code and fix) and exits 1.

use std::process::ExitCode;

use clap::Args;

use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct FoldersArgs {
    /// The channel whose mailbox to list.
    #[arg(long)]
    pub channel: String,
    /// Print one JSON object: {channel, protocol, configured, configured_found,
    /// folders:[{id, name, role, well_known, selectable, messages, unread}], note}.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(settings: &Settings, db: &str, a: FoldersArgs) -> anyhow::Result<ExitCode> {
    let Some(c) = settings.channels.iter().find(|c| c.name == a.channel) else {
        let known: Vec<&str> = settings.channels.iter().map(|c| c.name.as_str()).collect();
        anyhow::bail!(
            "no channel {:?} in the configuration (channels: {})",
            a.channel,
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let store = intake_store::Store::connect(db).await?;
    let listed = match crate::runner::folders::list(settings, &store, c).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("intake folders: channel {}: {e:#}", c.name);
            if let Some(d) = crate::runner::doctor::diagnose_failure(settings, &store, c, &e).await
            {
                eprintln!("  cause: {} {}\n  fix:   {}", d.code, d.title, d.fix);
            }
            store.close().await;
            return Ok(ExitCode::FAILURE);
        }
    };
    store.close().await;
    if a.json {
        println!("{}", serde_json::to_string(&listed)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "channel {} ({}): {} folder(s); folder = {:?}{}",
        listed.channel,
        listed.protocol,
        listed.folders.len(),
        listed.configured,
        if listed.configured_found {
            ""
        } else {
            " is NOT among them (RC5)"
        }
    );
    let chosen = listed.configured_folder().map(|f| f.id.clone());
    for f in &listed.folders {
        let mut extra = Vec::new();
        if let Some(w) = &f.well_known {
            extra.push(format!("well-known {w}"));
        }
        if let (Some(m), Some(u)) = (f.messages, f.unread) {
            extra.push(format!("{m} messages, {u} unread"));
        }
        if !f.selectable {
            extra.push("not selectable".into());
        }
        println!(
            "{} {:<8} {}{}{}",
            if chosen.as_deref() == Some(f.id.as_str()) {
                "*"
            } else {
                " "
            },
            f.role.map_or("", |r| r.as_str()),
            f.name,
            if f.id == f.name {
                String::new()
            } else {
                format!("  id {}", f.id)
            },
            if extra.is_empty() {
                String::new()
            } else {
                format!("  ({})", extra.join(", "))
            }
        );
    }
    if let Some(n) = &listed.note {
        println!("{n}");
    }
    Ok(ExitCode::SUCCESS)
}
