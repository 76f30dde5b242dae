//! `intake doctor [--channel NAME] [--json]`: the staged connection check of each channel
//! (`intake_mail::check`), as text or one JSON array. It only counts messages, so a flooded
//! inbox cannot make it fail (RC15), and it names the failing stage, host:port and proxy (RC7,
//! RC16) with the root cause and fix where the server's answer is known.

use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Only this channel.
    #[arg(long)]
    pub channel: Option<String>,
    /// Print one JSON array: [{channel, protocol, ok, stages:[{stage,target,ok,detail}],
    /// counts:{messages,unread}|null, root_cause:{id,title,fix}|null,
    /// outgoing:{transport,ok,stages:[{stage,target,ok,detail}],fix}|null}].
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct ChannelReport {
    channel: String,
    protocol: String,
    #[serde(flatten)]
    report: intake_mail::check::Report,
    /// The outgoing check (`[channel.send]`), `null` when the channel sends no mail.
    outgoing: Option<crate::outbox::doctor::OutgoingReport>,
}

pub async fn run(settings: &Settings, db: &str, a: DoctorArgs) -> anyhow::Result<ExitCode> {
    let store = intake_store::Store::connect(db).await?;
    let channels: Vec<_> = settings
        .channels
        .iter()
        .filter(|c| a.channel.as_ref().is_none_or(|n| *n == c.name))
        .collect();
    anyhow::ensure!(
        !channels.is_empty(),
        "no channel to check in the configuration"
    );
    let mut out = Vec::new();
    for c in channels {
        let report = crate::runner::check(settings, &store, c).await;
        let outgoing = crate::outbox::doctor::check(settings, &store, &c.name).await;
        out.push(ChannelReport {
            channel: c.name.clone(),
            protocol: c.protocol().as_str().to_string(),
            report,
            outgoing,
        });
    }
    store.close().await;
    if a.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        for r in &out {
            println!(
                "channel {} ({}): {}",
                r.channel,
                r.protocol,
                if r.report.ok { "ok" } else { "FAILED" }
            );
            for s in &r.report.stages {
                println!(
                    "  {} {:<7} {}  {}",
                    if s.ok { "ok  " } else { "FAIL" },
                    s.stage,
                    s.target,
                    s.detail
                );
            }
            if let Some(c) = &r.report.counts {
                match c.unread {
                    Some(u) => println!("  {} messages, {u} unread", c.messages),
                    None => println!("  {} messages", c.messages),
                }
            }
            if let Some(rc) = &r.report.root_cause {
                println!("  cause: {} {}\n  fix:   {}", rc.id, rc.title, rc.fix);
            }
            if let Some(o) = &r.outgoing {
                println!(
                    "  outgoing ({}): {}",
                    o.transport,
                    if o.ok { "ok" } else { "FAILED" }
                );
                for s in &o.stages {
                    println!(
                        "    {} {:<9} {}  {}",
                        if s.ok { "ok  " } else { "FAIL" },
                        s.stage,
                        s.target,
                        s.detail
                    );
                }
                if let Some(f) = &o.fix {
                    println!("    fix: {f}");
                }
            }
        }
    }
    Ok(
        if out
            .iter()
            .all(|r| r.report.ok && r.outgoing.as_ref().is_none_or(|o| o.ok))
        {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}
