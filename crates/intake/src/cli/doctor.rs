//! `intake doctor [--channel NAME] [--json]`: the staged connection check of each channel
//! (`intake_mail::check`), as text or one JSON array. It only counts messages, so a flooded
//! inbox cannot make it fail (RC15), and it names the failing stage, host:port and proxy (RC7,
//! RC16) with the root cause and fix where the server's answer is known.
//!
//! `--json` keeps the original fields and adds `findings` per channel and, for OAuth channels,
//! `integration: {name, findings}`: `[{code, severity, title, evidence, fix}]`, codes from
//! docs/troubleshooting.md. The exit code is 1 only when a check failed or a finding is an
//! error; warnings (RC14 expiry, RC15 flood, RC8 tenant, RC11/RC3 identity, plaintext
//! secrets) leave it 0.

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
    /// findings:[{code,severity,title,evidence,fix}], integration:{name,findings}|null,
    /// outgoing:{transport,ok,stages:[{stage,target,ok,detail}],fix}|null}].
    #[arg(long)]
    pub json: bool,
}

/// One channel's element of `intake doctor --json` (also the answer of `intake serve`'s
/// `POST /api/channels/{name}/test`).
#[derive(Debug, Clone, Serialize)]
pub struct ChannelReport {
    pub channel: String,
    pub protocol: String,
    #[serde(flatten)]
    pub report: intake_mail::check::Report,
    pub findings: Vec<intake_core::Diagnosed>,
    pub integration: Option<IntegrationReport>,
    /// The outgoing check (`[channel.send]`), `null` when the channel sends no mail.
    pub outgoing: Option<crate::outbox::doctor::OutgoingReport>,
    /// Whether the check failed or a finding is an error.
    #[serde(skip)]
    pub error: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct IntegrationReport {
    pub name: String,
    pub findings: Vec<intake_core::Diagnosed>,
}

/// The doctor's check of one channel, with its findings and its outgoing check.
pub async fn channel_report(
    settings: &Settings,
    store: &intake_store::Store,
    c: &crate::settings::ChannelSettings,
) -> ChannelReport {
    let d = crate::runner::diagnose(settings, store, c, intake_store::now()).await;
    let outgoing = crate::outbox::doctor::check(settings, store, &c.name).await;
    let error = d.has_error() || outgoing.as_ref().is_some_and(|o| !o.ok);
    ChannelReport {
        channel: c.name.clone(),
        protocol: c.protocol().as_str().to_string(),
        report: d.report,
        findings: d.findings,
        integration: d
            .integration
            .map(|(name, findings)| IntegrationReport { name, findings }),
        outgoing,
        error,
    }
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
        out.push(channel_report(settings, &store, c).await);
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
            let integration = r.integration.iter().flat_map(|i| i.findings.iter());
            for f in r.findings.iter().chain(integration) {
                if r.report
                    .root_cause
                    .as_ref()
                    .is_some_and(|rc| rc.id == f.code)
                {
                    continue;
                }
                println!(
                    "  {} {} {}: {}\n      fix: {}",
                    f.severity_label(),
                    f.code,
                    f.title,
                    f.evidence,
                    f.fix
                );
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
                println!("    after a crash: {}", o.after_crash);
            }
        }
    }
    Ok(if out.iter().all(|r| !r.error) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
