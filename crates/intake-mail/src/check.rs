//! The staged connection check behind `intake doctor` (RC7, RC15, RC16): DNS → TCP (direct or
//! through the named proxy) → TLS, greeting and login → folder → counts. Each stage names the
//! host:port it tried, and the first failing stage stops the check with the server's own words
//! and, where the text is known, the root cause and its fix.
//!
//! The check only **counts** (IMAP `STATUS (MESSAGES UNSEEN)`, POP3 `STAT`, Graph
//! `totalItemCount`/`unreadItemCount`): it lists and fetches nothing and changes nothing, so a
//! flooded inbox cannot make it time out (RC15, the failure Jira's "Test connection" has).

use intake_core::RootCause;
use serde::Serialize;

use crate::net::{self, ProxySettings};
use crate::source::SourceError;
use crate::source::graph::GraphSource;
use crate::source::imap::{ImapSettings, ImapSource};
use crate::source::pop3::{Pop3Settings, Pop3Source};

/// One stage of the check.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StageResult {
    /// `config`, `dns`, `tcp`, `login`, `folder` or `counts`.
    pub stage: &'static str,
    /// What was tried (host:port, proxy, folder).
    pub target: String,
    pub ok: bool,
    pub detail: String,
}

/// Messages in the folder, counted by the server.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub messages: u64,
    /// `None` where the protocol has no read flag (POP3).
    pub unread: Option<u64>,
}

/// The known root cause of a failure, with its fix.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Cause {
    pub id: &'static str,
    pub title: &'static str,
    pub fix: String,
}

impl Cause {
    pub fn new(rc: RootCause, fix: impl Into<String>) -> Self {
        Self {
            id: rc.id(),
            title: rc.title(),
            fix: fix.into(),
        }
    }
}

tokio::task_local! {
    /// Called with every stage a [`Report`] records inside [`observed`].
    static OBSERVER: std::sync::Arc<dyn Fn(&StageResult) + Send + Sync>;
}

/// Run `work` with `observer` called on every stage as it finishes (each [`Report::pass`] and
/// [`Report::fail`] inside it, and each [`emit`]), in order: how `intake serve` streams a
/// channel test stage by stage. Stages recorded on other tasks are not seen.
pub async fn observed<F: std::future::Future>(
    observer: std::sync::Arc<dyn Fn(&StageResult) + Send + Sync>,
    work: F,
) -> F::Output {
    OBSERVER.scope(observer, work).await
}

/// Tell the observer of this task, if any, that `stage` finished (for a stage made without
/// [`Report::pass`] / [`Report::fail`]).
pub fn emit(stage: &StageResult) {
    let _ = OBSERVER.try_with(|o| o(stage));
}

/// The whole check of one channel.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Report {
    pub ok: bool,
    pub stages: Vec<StageResult>,
    pub counts: Option<Counts>,
    pub root_cause: Option<Cause>,
    /// Known causes the check met and worked around without failing (RC10: the POP3 server
    /// refused the one-line SASL form and the two-line form logged in). Not part of the
    /// report's JSON: `intake doctor` turns them into `info` findings.
    #[serde(skip)]
    pub notes: Vec<Cause>,
}

impl Report {
    /// An empty report that has not failed yet.
    pub fn new() -> Self {
        Self {
            ok: true,
            ..Default::default()
        }
    }

    /// Record a stage that passed.
    pub fn pass(
        &mut self,
        stage: &'static str,
        target: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.stages.push(StageResult {
            stage,
            target: target.into(),
            ok: true,
            detail: detail.into(),
        });
        if let Some(s) = self.stages.last() {
            emit(s);
        }
    }

    /// Record a failed stage; the check ends here.
    pub fn fail(
        mut self,
        stage: &'static str,
        target: impl Into<String>,
        detail: impl Into<String>,
        cause: Option<Cause>,
    ) -> Self {
        self.stages.push(StageResult {
            stage,
            target: target.into(),
            ok: false,
            detail: detail.into(),
        });
        if let Some(s) = self.stages.last() {
            emit(s);
        }
        self.ok = false;
        self.root_cause = cause;
        self
    }
}

/// Known mail-server answers to a login or SELECT, to their root cause (docs/troubleshooting.md,
/// "Server answers"; the catalogue in intake-core lists the ranked alternatives).
pub fn diagnose_login(server: &str, oauth: bool) -> Option<Cause> {
    let t = server.to_ascii_lowercase();
    if t.contains("authenticated but not connected") {
        return Some(Cause::new(
            RootCause::Rc2,
            "the token was accepted but the mailbox could not be opened: check that IMAP/POP is \
             enabled for the mailbox (Get-CASMailbox <mailbox> | fl ImapEnabled,PopEnabled), that \
             the signed-in account has Full Access to it when it is a shared mailbox (RC3), and \
             that no client-access rule blocks IMAP4/POP3 (RC6); or use a Graph channel",
        ));
    }
    if t.contains("licen") || t.contains("mailbox not enabled") {
        return Some(Cause::new(
            RootCause::Rc4,
            "assign an Exchange Online licence to the mailbox",
        ));
    }
    if t.contains("protocol error. connection is closed. 10") {
        return Some(Cause::new(
            RootCause::Rc10,
            "the server wants the POP3 XOAUTH2 response on its own line after the `+` \
             challenge: Intake retries in that form; if it persists, request only the POP scope \
             so the token is shorter",
        ));
    }
    if t.contains("mailbox doesn't exist")
        || t.contains("mailbox does not exist")
        || t.contains("no such mailbox")
        || t.contains("nonexistent")
    {
        return Some(Cause::new(
            RootCause::Rc5,
            "the folder does not exist under this name: use INBOX (the protocol's name in every \
             language) or a name from `intake folders`, never a localized display name",
        ));
    }
    if refused_login(&t) && oauth {
        return Some(Cause::new(
            RootCause::Rc1,
            "the server rejected the access token: `intake token` (with the integration, \
             `--mailbox` and `--protocol`) prints its audience and scopes; check them for this protocol (IMAP.AccessAsUser.All / \
             POP.AccessAsUser.All, or .AccessAsApp for app-only with the Exchange service \
             principal granted Full Access), its tenant and cloud, and that it belongs to the \
             mailbox",
        ));
    }
    None
}

/// Whether the server's words (lower case) refuse the credentials of a login: IMAP `NO
/// [AUTHENTICATIONFAILED]` (RFC 5530) and `AUTHENTICATE failed`, POP3 `-ERR [AUTH]` (RFC 3206)
/// and `Authentication failure`, SMTP `535 … Authentication unsuccessful`, Gmail's `Invalid
/// credentials`.
fn refused_login(t: &str) -> bool {
    t.contains("authenticate failed")
        || t.contains("authenticationfailed")
        || t.contains("authentication failed")
        || t.contains("authentication failure")
        || t.contains("authentication unsuccessful")
        || t.contains("invalid credentials")
        || t.contains("[auth]")
        || t.contains("login failed")
        || t.contains("bad password")
}

/// Whether `server`, the answer to a **password** login, refuses the user name or password:
/// the doctor's `PASSWORD_REFUSED` (docs/troubleshooting.md). Answers that name a root cause
/// ([`diagnose_login`]: IMAP/POP disabled, no licence, …) are not this.
pub fn password_refused(server: &str) -> bool {
    diagnose_login(server, false).is_none() && refused_login(&server.to_ascii_lowercase())
}

/// DNS and TCP stages, starting a report; returns it so far, or the failed one.
async fn reach(
    host: &str,
    port: u16,
    proxy: Option<&ProxySettings>,
    limit: std::time::Duration,
) -> Result<Report, Report> {
    let mut r = Report::new();
    let target = format!("{host}:{port}");
    let via = match net::route(host, proxy) {
        Ok(v) => v,
        Err(e) => {
            return Err(r.fail(
                "config",
                target,
                e.to_string(),
                Some(Cause::new(RootCause::Rc16, "fix the proxy URL")),
            ));
        }
    };
    // Through a proxy, the proxy resolves the mail host; we resolve the proxy.
    let lookup = via.clone().unwrap_or_else(|| target.clone());
    let resolved = match tokio::time::timeout(limit, tokio::net::lookup_host(lookup.as_str())).await
    {
        Ok(r) => r.map(|addrs| addrs.map(|a| a.ip().to_string()).collect::<Vec<_>>()),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no answer from DNS within {}",
                crate::transport::secs(limit)
            ),
        )),
    };
    match resolved {
        Ok(addrs) => {
            r.pass("dns", lookup.clone(), addrs.join(", "));
        }
        Err(e) => {
            return Err(r.fail(
                "dns",
                lookup,
                e.to_string(),
                Some(Cause::new(
                    RootCause::Rc7,
                    "the name does not resolve from this machine: check the host name and DNS",
                )),
            ));
        }
    }
    let connected = match tokio::time::timeout(limit, net::connect(host, port, proxy)).await {
        Ok(r) => r,
        Err(_) => Err(net::NetError::Connect {
            addr: target.clone(),
            message: format!("connect timed out after {}", crate::transport::secs(limit)),
        }),
    };
    match connected {
        Ok(_) => {
            let label = proxy.and_then(|p| net::proxy_label(&p.url).ok());
            let how = match (&via, label) {
                (None, _) => "direct".to_string(),
                (Some(_), Some(l)) => format!("through proxy {l}"),
                (Some(p), None) => format!("through proxy {p}"),
            };
            r.pass("tcp", target, how);
            Ok(r)
        }
        Err(e) => {
            let cause = match (&e, &via) {
                (net::NetError::Refused { .. }, _) | (_, Some(_)) => Cause::new(
                    RootCause::Rc16,
                    format!(
                        "the proxy {} did not open a tunnel to {target}: allow CONNECT to that \
                         host and port on the proxy, or add the host to no_proxy",
                        via.as_deref().unwrap_or("?")
                    ),
                ),
                _ => Cause::new(
                    RootCause::Rc7,
                    format!(
                        "nothing answers on {target} from this machine: a firewall or a wrong \
                         port; open outbound TCP {port} to the host, or set a proxy"
                    ),
                ),
            };
            Err(r.fail("tcp", target, e.to_string(), Some(cause)))
        }
    }
}

fn login_failure(r: Report, target: String, e: &SourceError, oauth: bool) -> Report {
    match e {
        SourceError::Timeout { operation, .. } => {
            let stage = match operation.as_str() {
                "connect" => "tcp",
                o if o.starts_with("SELECT") => "folder",
                _ => "login",
            };
            r.fail(stage, target, e.to_string(), None)
        }
        SourceError::Tls { .. } => r.fail(
            "login",
            target,
            match crate::http::certificate_hint(&e.to_string()) {
                Some(hint) => format!("{e} — {hint}"),
                None => e.to_string(),
            },
            Some(Cause::new(
                RootCause::Rc7,
                "TLS failed: check the port and tls mode (implicit 993/995, starttls 143/110), \
                 and ca_file for a private CA; a proxy that intercepts TLS needs its CA too",
            )),
        ),
        SourceError::Auth {
            server, challenge, ..
        } => {
            let text = format!("{server} {}", challenge.as_deref().unwrap_or(""));
            let cause = diagnose_login(&text, oauth);
            r.fail("login", target, e.to_string(), cause)
        }
        // A command after a login the server accepted, refused with words that name a cause
        // (Exchange: `BAD User is authenticated but not connected.`, RC2).
        SourceError::Refused { command, server }
            if !command.starts_with("SELECT") && diagnose_login(server, oauth).is_some() =>
        {
            r.fail(
                "login",
                target,
                e.to_string(),
                diagnose_login(server, oauth),
            )
        }
        SourceError::Refused { command, server } if command.starts_with("SELECT") => r.fail(
            "folder",
            target,
            e.to_string(),
            diagnose_login(server, oauth).or(Some(Cause::new(
                RootCause::Rc5,
                "use the protocol name of the folder (INBOX, or the full path of another \
                 folder listed by `intake folders`), never a localized display name",
            ))),
        ),
        _ => r.fail("login", target, e.to_string(), None),
    }
}

/// Check an IMAP channel.
pub async fn check_imap(s: &ImapSettings) -> Report {
    let r = match reach(&s.host, s.port, s.proxy.as_ref(), s.timeouts.connect).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let target = format!("{}:{}", s.host, s.port);
    let oauth = s.auth.is_oauth();
    let mut src = match ImapSource::connect(s).await {
        Ok(src) => src,
        Err(e) => return login_failure(r, target, &e, oauth),
    };
    let mut r = r;
    r.pass("login", target, format!("{:?}", s.auth));
    r.pass("folder", s.folder.clone(), "selected");
    match src.counts().await {
        Ok((messages, unread)) => {
            r.counts = Some(Counts { messages, unread });
            r.pass(
                "counts",
                s.folder.clone(),
                "counted by STATUS; nothing fetched",
            );
        }
        Err(e) => return r.fail("counts", s.folder.clone(), e.to_string(), None),
    }
    let _ = src.logout().await;
    r
}

/// Check a POP3 channel.
pub async fn check_pop3(s: &Pop3Settings) -> Report {
    let r = match reach(&s.host, s.port, s.proxy.as_ref(), s.timeouts.connect).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let target = format!("{}:{}", s.host, s.port);
    let oauth = s.auth.is_oauth();
    let mut src = match Pop3Source::connect(s).await {
        Ok(src) => src,
        Err(e) => return login_failure(r, target, &e, oauth),
    };
    let mut r = r;
    let form = src
        .login_form()
        .map_or_else(String::new, |f| format!(", SASL form {f:?}"));
    if let Some(refused) = src.one_line_refused() {
        r.notes.push(Cause::new(
            RootCause::Rc10,
            format!(
                "the server refused the one-line XOAUTH2/OAUTHBEARER form ({refused}); Intake \
                 fell back to the two-line form, which logged in: nothing to change"
            ),
        ));
    }
    r.pass("login", target, format!("{:?}{form}", s.auth));
    match src.stat().await {
        Ok((n, _octets)) => {
            r.counts = Some(Counts {
                messages: u64::from(n),
                unread: None,
            });
            r.pass("counts", "maildrop", "counted by STAT; nothing fetched");
        }
        Err(e) => return r.fail("counts", "maildrop", e.to_string(), None),
    }
    let _ = src.quit().await;
    r
}

/// Check a Graph channel (the token was obtained by the caller).
pub async fn check_graph(src: &mut GraphSource, folder: &str) -> Report {
    let mut r = Report::new();
    let target = format!("{}/mailFolders/{folder}", src.mailbox_url());
    match src.folder_counts().await {
        Ok((messages, unread)) => {
            r.pass("login", src.mailbox_url().to_string(), "token accepted");
            r.counts = Some(Counts {
                messages,
                unread: Some(unread),
            });
            r.pass(
                "counts",
                target,
                "counted by totalItemCount/unreadItemCount; nothing fetched",
            );
            r
        }
        Err(e) => {
            // A folder Graph does not find is a name or ID that is not there (RC5); the stage
            // is `folder`, since the token was accepted.
            let missing_folder = e.api().is_some_and(|a| {
                matches!(
                    a.code.as_str(),
                    "ErrorItemNotFound" | "ErrorInvalidIdMalformed"
                )
            });
            if missing_folder {
                r.pass("login", src.mailbox_url().to_string(), "token accepted");
                return r.fail(
                    "folder",
                    target,
                    e.to_string(),
                    Some(Cause::new(
                        RootCause::Rc5,
                        format!(
                            "Graph has no folder {folder:?} in this mailbox: use a well-known name \
                             (inbox, archive, …) or a folder ID listed by `intake folders`; display \
                             names are localized"
                        ),
                    )),
                );
            }
            let cause = e.root_cause().map(|rc| Cause::new(rc, rc.fix()));
            r.fail("login", target, e.to_string(), cause)
        }
    }
}
