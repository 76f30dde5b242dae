//! `intake doctor`'s outgoing check of a channel that sends mail (`[channel.send]`): connect,
//! STARTTLS (or implicit TLS), AUTH, and `MAIL FROM` with the channel's From address accepted,
//! then `RSET` — no message is sent. Exchange's refusals are decoded
//! (`intake_mail::send::smtp::explain`: 5.7.139 SMTP AUTH disabled, 5.7.60 not allowed to send
//! as, 5.7.57 not authenticated) with the fix's section in docs/troubleshooting.md. A Graph
//! transport is checked up to its token (Graph has no way to try a send without sending).
//! The report also says whether the channel's mail is exactly once across a crash
//! (`exactly_once`, `after_crash`): only a channel that can look into its Sent folder is.

use serde::Serialize;

use intake_mail::send::smtp::{SmtpClient, SmtpError, explain};
use intake_store::Store;

use super::config::SendTransport;
use crate::settings::Settings;

/// One stage of the outgoing check.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Stage {
    pub stage: String,
    pub target: String,
    pub ok: bool,
    pub detail: String,
}

/// The outgoing check of one channel.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OutgoingReport {
    /// `smtp` or `graph`.
    pub transport: String,
    pub ok: bool,
    pub stages: Vec<Stage>,
    /// What the server's refusal means and where the fix is, when it is known.
    pub fix: Option<String>,
    /// Whether a mail whose send was interrupted (a crash after the server took it) is looked
    /// up in the mailbox's Sent folder before it goes again (exactly once), or can only be sent
    /// again (at least once: the channel has no mailbox access).
    pub exactly_once: bool,
    /// How, or why not, in words.
    pub after_crash: String,
}

/// The check of `channel`'s mail transport; `None` when it sends no mail.
pub async fn check(settings: &Settings, store: &Store, channel: &str) -> Option<OutgoingReport> {
    let ch = settings.outbox.send.get(channel)?;
    let mut r = OutgoingReport {
        transport: match ch.transport {
            SendTransport::Smtp { .. } => "smtp",
            SendTransport::Graph { .. } => "graph",
        }
        .into(),
        ok: true,
        stages: Vec::new(),
        fix: None,
        exactly_once: false,
        after_crash: String::new(),
    };
    match super::mail::sent_access(settings, channel, ch) {
        Some(via) => {
            r.exactly_once = true;
            r.after_crash = format!(
                "exactly once: a send interrupted after its final step is looked up by Message-ID in the Sent folder over {via} before it goes again"
            );
        }
        None => {
            r.after_crash = "at least once: the channel has no mailbox access (POP3, Maildir, mbox), so a send interrupted after the server took it cannot be looked up in the Sent folder and goes again (the receiver may get it twice); see docs/decisions.md".into();
        }
    }
    let stage = |r: &mut OutgoingReport, name: &str, target: &str, ok: bool, detail: String| {
        r.ok &= ok;
        r.stages.push(Stage {
            stage: name.into(),
            target: target.into(),
            ok,
            detail,
        });
    };
    match &ch.transport {
        SendTransport::Smtp {
            host, port, tls, ..
        } => {
            let target = format!("{host}:{port}");
            let s = match super::mail::smtp_settings(settings, store, ch).await {
                Ok(s) => s,
                Err(e) => {
                    stage(&mut r, "token", &target, false, e.to_string());
                    return Some(r);
                }
            };
            let mut c = match SmtpClient::open(&s).await {
                Ok(c) => c,
                Err(e) => {
                    fail(&mut r, &target, &e);
                    return Some(r);
                }
            };
            let tls_stage = match tls {
                intake_mail::source::imap::Tls::StartTls => "STARTTLS",
                intake_mail::source::imap::Tls::Implicit => "TLS",
                intake_mail::source::imap::Tls::None => "EHLO",
            };
            stage(
                &mut r,
                "connect",
                &target,
                true,
                "greeting and EHLO answered".into(),
            );
            stage(&mut r, tls_stage, &target, true, String::new());
            if let Err(e) = c.authenticate(&s.auth).await {
                fail(&mut r, &target, &e);
                return Some(r);
            }
            stage(&mut r, "AUTH", &target, true, format!("as {}", ch.login));
            match c.check_sender(&ch.from).await {
                Ok(reply) => {
                    stage(
                        &mut r,
                        "MAIL FROM",
                        &target,
                        true,
                        format!("{} accepted: {reply}", ch.from),
                    );
                    c.quit().await;
                }
                Err(e) => fail(&mut r, &target, &e),
            }
        }
        SendTransport::Graph { graph_url, .. } => {
            stage(
                &mut r,
                "sendMail",
                graph_url,
                true,
                "not tried: Graph cannot try a send without sending; a refusal (ErrorSendAsDenied) shows in `intake outbox list`".into(),
            );
        }
    }
    Some(r)
}

fn fail(r: &mut OutgoingReport, target: &str, e: &SmtpError) {
    if let SmtpError::Refused { reply, .. } = e {
        r.fix = explain(reply).map(str::to_string);
    }
    r.ok = false;
    r.stages.push(Stage {
        stage: e.stage().to_string(),
        target: target.to_string(),
        ok: false,
        detail: e.to_string(),
    });
}
