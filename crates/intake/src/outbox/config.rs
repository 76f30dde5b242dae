//! `[[sink]]` and `[[acknowledgement]]` as written, and their checks at load (every bad value
//! named by its table and key, like the rest of `settings`).

use std::collections::BTreeMap;
use std::time::Duration;

use intake_core::{ProjectKey, SecretRef};
use serde::{Deserialize, Serialize};

use crate::settings::Problem;

/// The largest `timeout_seconds` of a sink (the outbox's claim lease covers a pass of rows).
pub const MAX_TIMEOUT_SECONDS: u64 = 60;

/// Events a sink can take.
pub const EVENTS: &[&str] = &["ticket.created", "comment.added", "ticket.quarantined"];

/// One `[[sink]]` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub name: String,
    /// The project whose tickets go to this sink.
    pub project: String,
    /// `webhook` or `jira`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The webhook's URL, or the Jira site's base URL (`https://example.atlassian.net`).
    pub url: String,
    /// `env:VAR` or `file:PATH`: the webhook's signing secret, or the Jira API token (Cloud,
    /// with `email`) / personal access token (Data Center, without `email`).
    pub secret: String,
    /// Events sent (default: all of `ticket.created`, `comment.added`, `ticket.quarantined`).
    #[serde(default)]
    pub events: Vec<String>,
    /// Bound on one call (default 30).
    pub timeout_seconds: Option<u64>,
    /// Jira: the project key issues are created in.
    pub jira_project: Option<String>,
    /// Jira: the issue type (default `Task`).
    pub issue_type: Option<String>,
    /// Jira Cloud: the account's email (basic auth with the API token in `secret`).
    pub email: Option<String>,
}

/// One `[[acknowledgement]]` as written: a project's acknowledgement on ticket creation
/// (off unless the table is there).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AckConfig {
    pub project: String,
    /// Default `[{key}] {summary}`; must contain `{key}`.
    pub subject: Option<String>,
    pub body: Option<String>,
    /// Default 3.
    pub max_per_hour: Option<u32>,
}

/// A sink's transport, typed.
#[derive(Debug, Clone)]
pub enum SinkKind {
    Webhook,
    Jira {
        project: String,
        issue_type: String,
        /// Cloud: basic auth with this email and the token; Data Center: bearer token.
        email: Option<String>,
    },
}

/// One `[[sink]]`, checked.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    pub name: String,
    pub project: ProjectKey,
    pub kind: SinkKind,
    pub url: String,
    pub secret: SecretRef,
    pub events: Vec<String>,
    pub timeout: Duration,
}

/// A project's acknowledgement, checked.
#[derive(Debug, Clone)]
pub struct AckSettings {
    pub subject: String,
    pub body: String,
    pub max_per_hour: u32,
}

pub const DEFAULT_ACK_SUBJECT: &str = "[{key}] {summary}";
pub const DEFAULT_ACK_BODY: &str = "Hello,\n\nwe have received your message and opened ticket {key} for it: {summary}\n\nPlease keep [{key}] in the subject when you write about it again.\n";

/// Everything outgoing, typed.
#[derive(Debug, Clone, Default)]
pub struct OutboxSettings {
    pub sinks: Vec<SinkSettings>,
    /// By project key.
    pub acknowledgements: BTreeMap<String, AckSettings>,
    /// By channel name: the channels that can send mail.
    pub send: BTreeMap<String, ChannelSend>,
}

/// Check `[[sink]]` and `[[acknowledgement]]`, adding a [`Problem`] for each bad value.
pub fn resolve(
    sinks: &[SinkConfig],
    acks: &[AckConfig],
    problems: &mut Vec<Problem>,
) -> OutboxSettings {
    let mut out = OutboxSettings::default();
    let mut names = std::collections::BTreeSet::new();
    for s in sinks {
        let scope = format!("sink {:?}", s.name);
        let before = problems.len();
        let mut bad = |message: String| {
            problems.push(Problem {
                scope: scope.clone(),
                message,
            })
        };
        if s.name.trim().is_empty() {
            bad("`name` is empty".into());
        } else if !names.insert(s.name.clone()) {
            bad("the name is used twice".into());
        }
        let project = s
            .project
            .parse::<ProjectKey>()
            .map_err(|e| bad(format!("project = {:?}: {e}", s.project)))
            .ok();
        match url::Url::parse(&s.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => bad(format!(
                "url = {:?}: use an http:// or https:// URL",
                intake_mail::net::redact(&s.url)
            )),
        }
        let secret = match SecretRef::parse(&s.secret) {
            Ok(r) if r.is_literal() => {
                bad("secret: write env:VAR or file:PATH, not the secret itself".into());
                None
            }
            Ok(r) => Some(r),
            Err(e) => {
                bad(format!("secret: {e}"));
                None
            }
        };
        for e in &s.events {
            if !EVENTS.contains(&e.as_str()) {
                bad(format!(
                    "events: {e:?} is not an event; use {}",
                    EVENTS.join(", ")
                ));
            }
        }
        if let Some(t) = s.timeout_seconds
            && !(1..=MAX_TIMEOUT_SECONDS).contains(&t)
        {
            bad(format!(
                "timeout_seconds = {t}: use a number of seconds from 1 to {MAX_TIMEOUT_SECONDS}"
            ));
        }
        let kind = match s.kind.as_str() {
            "webhook" => {
                for (k, v) in [
                    ("jira_project", &s.jira_project),
                    ("issue_type", &s.issue_type),
                    ("email", &s.email),
                ] {
                    if v.is_some() {
                        bad(format!("{k} is a key of type = \"jira\" sinks"));
                    }
                }
                Some(SinkKind::Webhook)
            }
            "jira" if s.events.iter().any(|e| e == "ticket.quarantined") => {
                bad("events: a Jira sink takes ticket.created and comment.added only".into());
                None
            }
            "jira" => match &s.jira_project {
                Some(p) if !p.trim().is_empty() => Some(SinkKind::Jira {
                    project: p.trim().to_string(),
                    issue_type: s.issue_type.clone().unwrap_or_else(|| "Task".into()),
                    email: s.email.clone(),
                }),
                _ => {
                    bad("jira_project: name the Jira project issues are created in".into());
                    None
                }
            },
            other => {
                bad(format!("type = {other:?}: use \"webhook\" or \"jira\""));
                None
            }
        };
        if problems.len() > before {
            continue;
        }
        if let (Some(project), Some(secret), Some(kind)) = (project, secret, kind) {
            let events = match (&kind, s.events.is_empty()) {
                (SinkKind::Jira { .. }, true) => {
                    vec!["ticket.created".to_string(), "comment.added".to_string()]
                }
                _ => s.events.clone(),
            };
            out.sinks.push(SinkSettings {
                name: s.name.clone(),
                project,
                kind,
                url: s.url.trim_end_matches('/').to_string(),
                secret,
                events,
                timeout: Duration::from_secs(s.timeout_seconds.unwrap_or(30)),
            });
        }
    }
    for a in acks {
        let scope = format!("acknowledgement {:?}", a.project);
        let mut bad = |message: String| {
            problems.push(Problem {
                scope: scope.clone(),
                message,
            })
        };
        let Ok(project) = a.project.parse::<ProjectKey>() else {
            bad(format!("project = {:?}: not a project key", a.project));
            continue;
        };
        let subject = a
            .subject
            .clone()
            .unwrap_or_else(|| DEFAULT_ACK_SUBJECT.into());
        if !subject.contains("{key}") {
            bad(format!(
                "subject = {subject:?}: put {{key}} in it (e.g. \"[{{key}}] {{summary}}\") so answers thread back"
            ));
            continue;
        }
        if subject.contains('\r') || subject.contains('\n') {
            bad("subject: one line only".into());
            continue;
        }
        if out.acknowledgements.contains_key(project.as_str()) {
            bad("the project has two [[acknowledgement]] tables".into());
            continue;
        }
        out.acknowledgements.insert(
            project.to_string(),
            AckSettings {
                subject,
                body: a.body.clone().unwrap_or_else(|| DEFAULT_ACK_BODY.into()),
                max_per_hour: a.max_per_hour.unwrap_or(3),
            },
        );
    }
    out
}

/// `[channel.send]` as written: how a channel sends mail (acknowledgements, replies).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SendConfig {
    /// `smtp` (default for IMAP/POP3 channels) or `graph` (default for Graph channels).
    pub transport: Option<String>,
    /// SMTP server (default: the `oauth:` integration's preset, e.g. smtp.office365.com).
    pub host: Option<String>,
    /// Default 587 (`starttls`), 465 (`implicit`), 25 (`none`).
    pub port: Option<u16>,
    /// `starttls` (default), `implicit` or `none`.
    pub tls: Option<String>,
    /// `oauth:INTEGRATION` (XOAUTH2, a token for the SMTP audience) or `password:env:VAR` /
    /// `password:file:PATH`; default: the channel's `auth`.
    pub auth: Option<String>,
    /// The From address (default: the channel's mailbox).
    pub from: Option<String>,
    /// Extra trusted CA (default: the channel's `ca_file`).
    pub ca_file: Option<String>,
    /// After a send was interrupted (a crash, or no answer to its final step), how long after
    /// that attempt the Sent folder is looked at again before the mail counts as not sent and
    /// goes again (a provider may file its copy a moment after it answered). 0 to 60, default
    /// [`DEFAULT_SENT_COPY_WAIT_SECONDS`].
    pub sent_copy_wait_seconds: Option<u64>,
}

/// The default of `[channel.send] sent_copy_wait_seconds`.
pub const DEFAULT_SENT_COPY_WAIT_SECONDS: u64 = 10;

/// A channel's mail transport, typed.
#[derive(Debug, Clone)]
pub enum SendTransport {
    Smtp {
        host: String,
        port: u16,
        tls: intake_mail::source::imap::Tls,
        auth: crate::settings::Auth,
        ca_file: Option<SecretRef>,
        proxy: Option<String>,
        no_proxy: Vec<String>,
    },
    Graph {
        integration: String,
        graph_url: String,
    },
}

/// How a channel sends mail.
#[derive(Debug, Clone)]
pub struct ChannelSend {
    /// The From address (lower case).
    pub from: String,
    /// The login (the channel's mailbox).
    pub login: String,
    /// The domain of generated Message-IDs (the From address's).
    pub domain: String,
    pub transport: SendTransport,
    pub timeouts: intake_mail::transport::Timeouts,
    /// `sent_copy_wait_seconds`.
    pub sent_copy_wait: Duration,
}

/// Check `[channel.send]` of `c` (already resolved as `ch`).
pub fn resolve_send(
    c: &crate::config::ChannelConfig,
    ch: &crate::settings::ChannelSettings,
    integrations: &BTreeMap<String, intake_core::integration::ResolvedIntegration>,
    problems: &mut Vec<Problem>,
) -> Option<ChannelSend> {
    use crate::settings::{Auth, SourceSettings};
    use intake_mail::source::imap::Tls;
    let s = c.send.as_ref()?;
    let scope = format!("channel {:?}", c.name);
    let mut bad = |message: String| {
        problems.push(Problem {
            scope: scope.clone(),
            message: format!("[channel.send] {message}"),
        })
    };
    let (mailbox, channel_auth, ca, proxy, no_proxy, graph) = match &ch.source {
        SourceSettings::Imap(s) | SourceSettings::Pop3(s) => (
            Some(s.mailbox.clone()),
            Some(s.auth.clone()),
            s.ca_file.clone(),
            s.proxy.clone(),
            s.no_proxy.clone(),
            None,
        ),
        SourceSettings::Graph(g) => (
            Some(g.mailbox.clone()),
            None,
            None,
            g.proxy.clone(),
            g.no_proxy.clone(),
            Some(g),
        ),
        _ => (None, None, None, None, Vec::new(), None),
    };
    let from = s
        .from
        .clone()
        .or_else(|| mailbox.clone())
        .map(|f| f.trim().to_lowercase());
    let Some(from) = from.filter(|f| f.contains('@')) else {
        bad("from: name the address mail is sent from (the channel has no mailbox)".into());
        return None;
    };
    let login = mailbox.unwrap_or_else(|| from.clone());
    let domain = from.rsplit('@').next().unwrap_or_default().to_string();
    let sent_copy_wait = match s.sent_copy_wait_seconds {
        Some(n) if n > MAX_TIMEOUT_SECONDS => {
            bad(format!(
                "sent_copy_wait_seconds = {n}: use a number of seconds from 0 to {MAX_TIMEOUT_SECONDS}"
            ));
            return None;
        }
        n => Duration::from_secs(n.unwrap_or(DEFAULT_SENT_COPY_WAIT_SECONDS)),
    };
    let default = if graph.is_some() { "graph" } else { "smtp" };
    let transport = match s.transport.as_deref().unwrap_or(default) {
        "graph" => {
            let (integration, graph_url) = match (&s.auth, graph) {
                (Some(a), _) => match a.strip_prefix("oauth:").and_then(|n| integrations.get(n)) {
                    Some(i) => (
                        i.name.clone(),
                        i.endpoints.graph_url.clone().unwrap_or_default(),
                    ),
                    None => {
                        bad(format!(
                            "auth = {a:?}: a Graph transport needs oauth:INTEGRATION of a configured integration"
                        ));
                        return None;
                    }
                },
                (None, Some(g)) => (g.integration.clone(), g.graph_url.clone()),
                (None, None) => {
                    bad("transport = \"graph\" needs auth = \"oauth:INTEGRATION\"".into());
                    return None;
                }
            };
            if graph_url.is_empty() {
                bad("the integration has no Graph endpoint".into());
                return None;
            }
            SendTransport::Graph {
                integration,
                graph_url,
            }
        }
        "smtp" => {
            let tls = match s.tls.as_deref().unwrap_or("starttls") {
                "starttls" => Tls::StartTls,
                "implicit" => Tls::Implicit,
                "none" => Tls::None,
                other => {
                    bad(format!("tls = {other:?}: use starttls, implicit or none"));
                    return None;
                }
            };
            let mut auth_problem = false;
            let auth = match &s.auth {
                None => channel_auth,
                Some(a) => {
                    if let Some(name) = a.strip_prefix("oauth:") {
                        if integrations.contains_key(name) {
                            Some(Auth::OAuth {
                                integration: name.to_string(),
                                mechanism: intake_mail::sasl::Mechanism::XOAuth2,
                            })
                        } else {
                            bad(format!("auth: no [[integration]] named {name:?}"));
                            auth_problem = true;
                            None
                        }
                    } else if let Some(spec) = a.strip_prefix("password:") {
                        match SecretRef::parse(spec) {
                            Ok(r) if !r.is_literal() => Some(Auth::Password(r)),
                            _ => {
                                bad("auth: use password:env:VAR or password:file:PATH".into());
                                auth_problem = true;
                                None
                            }
                        }
                    } else {
                        bad(
                            "auth: use oauth:INTEGRATION, password:env:VAR or password:file:PATH"
                                .into(),
                        );
                        auth_problem = true;
                        None
                    }
                }
            };
            let Some(auth) = auth else {
                if !auth_problem {
                    bad("auth: the channel has no login to send with; set auth".into());
                }
                return None;
            };
            let preset = match &auth {
                Auth::OAuth { integration, .. } => integrations
                    .get(integration)
                    .map(|i| i.endpoints.smtp.clone())
                    .filter(|(h, _)| !h.is_empty()),
                Auth::Password(_) => None,
            };
            let host = match (&s.host, &preset) {
                (Some(h), _) if !h.trim().is_empty() => h.trim().to_string(),
                (None, Some((h, _))) => h.clone(),
                _ => {
                    bad("host: name the SMTP server (no oauth integration names one)".into());
                    return None;
                }
            };
            let port = s.port.unwrap_or(match tls {
                Tls::StartTls => preset.as_ref().map_or(587, |(_, p)| *p),
                Tls::Implicit => 465,
                Tls::None => 25,
            });
            let ca_file = match s.ca_file.as_deref().map(SecretRef::parse) {
                Some(Ok(r)) => Some(r),
                Some(Err(e)) => {
                    bad(format!("ca_file: {e}"));
                    return None;
                }
                None => ca,
            };
            SendTransport::Smtp {
                host,
                port,
                tls,
                auth,
                ca_file,
                proxy,
                no_proxy,
            }
        }
        other => {
            bad(format!("transport = {other:?}: use smtp or graph"));
            return None;
        }
    };
    Some(ChannelSend {
        from,
        login,
        domain,
        transport,
        timeouts: ch
            .timeout
            .map(intake_mail::transport::Timeouts::uniform)
            .unwrap_or_default(),
        sent_copy_wait,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::ConfigError;
    use crate::settings::Settings;
    use std::time::Duration;

    fn load(text: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("intake.toml");
        std::fs::write(&p, text).unwrap();
        Settings::load(Some(&p))
    }

    fn channel(protocol: &str, send: &str) -> String {
        format!(
            "[[channel]]\nname = \"support\"\nproject = \"HELP\"\nprotocol = \"{protocol}\"\nhost = \"mail.example.com\"\n\
             mailbox = \"help@example.com\"\nauth = \"password:env:PW\"\n[channel.send]\nhost = \"smtp.example.com\"\n{send}"
        )
    }

    /// `sent_copy_wait_seconds` defaults to 10, takes 0..=60 and names itself when refused;
    /// an IMAP channel can look into its Sent folder (exactly once), a POP3 one cannot.
    #[test]
    fn sent_copy_wait_is_checked_and_only_channels_with_mailbox_access_can_look() {
        let s = load(&channel("imap", "")).unwrap();
        let ch = &s.outbox.send["support"];
        assert_eq!(ch.sent_copy_wait, Duration::from_secs(10));
        assert_eq!(
            crate::outbox::mail::sent_access(&s, "support", ch),
            Some("IMAP")
        );
        let s = load(&channel("imap", "sent_copy_wait_seconds = 0\n")).unwrap();
        assert_eq!(s.outbox.send["support"].sent_copy_wait, Duration::ZERO);
        let s = load(&channel("pop3", "")).unwrap();
        let ch = &s.outbox.send["support"];
        assert_eq!(crate::outbox::mail::sent_access(&s, "support", ch), None);
        match load(&channel("imap", "sent_copy_wait_seconds = 61\n")) {
            Err(ConfigError::Settings(p)) => {
                let text = p
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n");
                assert!(
                    text.contains("sent_copy_wait_seconds = 61") && text.contains("support"),
                    "{text}"
                );
            }
            other => panic!("must be refused: {:?}", other.err()),
        }
    }
}
