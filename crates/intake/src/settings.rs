//! Typed settings: the whole configuration resolved and validated once, at load, for every
//! command.
//!
//! [`resolve`] turns the file's [`Config`] (strings as written) into [`Settings`]: per channel a
//! [`ChannelSettings`] with typed values ([`Protocol`], [`Tls`], [`PostAction`], [`Start`],
//! [`Mode`], [`Auth`]…), every integration linted and resolved, the rules merged and compiled.
//! Every bad value is reported at once, each naming its table and key
//! (`channel "support": mode = "pol": use push or poll`), so a typo fails `intake tickets list`
//! as surely as `intake run` — before anything connects or is committed. The runner, the
//! connection check and (later) the REST API only ever see typed settings.
//!
//! Secrets are *parsed* here (`env:VAR` / `file:PATH` / literal) but *read* only when a channel
//! opens, so a command that needs no secret runs without them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use intake_core::diagnosis::Finding;
use intake_core::integration::ResolvedIntegration;
use intake_core::secret::SecretRef;
use intake_core::{ChannelRules, ProjectKey};
use intake_mail::sasl::Mechanism;
pub use intake_mail::source::imap::Tls;
pub use intake_mail::source::{PostAction, Start};

use crate::config::{ChannelConfig, Config, ConfigError};

/// Default for `lease_seconds`.
pub const DEFAULT_LEASE_SECONDS: u64 = 30;
/// Default for `mail_log_retention_days`.
pub const DEFAULT_MAIL_LOG_RETENTION_DAYS: u32 = 90;
/// Default for a channel's `batch` (messages per transaction).
pub const DEFAULT_BATCH: usize = 100;
/// When a channel has no `timeout_seconds`, its stages are bounded as if it were this (4 × 30 s
/// = 2 minutes per network stage); its network operations keep intake-mail's own defaults.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 30;

/// One bad value: where it is (`channel "support"`, `rules`, `integration "m365"`, top level)
/// and what is wrong, naming the key and the value, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{scope}{}{message}", if scope.is_empty() { "" } else { ": " })]
pub struct Problem {
    /// `channel "NAME"`, `integration "NAME"`, `rules`, or empty for a top-level key.
    pub scope: String,
    pub message: String,
}

/// The whole configuration, typed. Cheap to clone (channels and integrations are shared).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file as written (database URL, default project, key file, integrations for
    /// `intake authorize`), already checked by [`resolve`].
    pub config: Arc<Config>,
    /// How long a node's lease on a channel lives without renewal.
    pub lease: Duration,
    /// Days the mail log keeps its events (housekeeping deletes older ones).
    pub mail_log_retention_days: u32,
    /// Every integration, linted and resolved, by name.
    pub integrations: Arc<BTreeMap<String, ResolvedIntegration>>,
    /// Every `[[channel]]`, in file order.
    pub channels: Vec<Arc<ChannelSettings>>,
    /// `[alerts]` (`intake serve`).
    pub alerts: AlertSettings,
}

/// Default for `[alerts] alert_after_seconds`.
pub const DEFAULT_ALERT_AFTER_SECONDS: u64 = 15 * 60;

/// `[alerts]`, checked.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub webhook: Option<url::Url>,
    /// How long a channel may fail before an alert.
    pub alert_after: Duration,
}

/// `[alerts]`: the webhook must be an absolute http(s) URL (an error shows only its scheme and
/// host: the path of a chat webhook is its secret); `alert_after_seconds` at least 1.
fn alert_settings(config: &Config, problems: &mut Vec<Problem>) -> AlertSettings {
    let a = config.alerts.clone().unwrap_or_default();
    let mut problem = |message: String| {
        problems.push(Problem {
            scope: "alerts".into(),
            message,
        })
    };
    let webhook = a
        .webhook
        .as_deref()
        .and_then(|w| match url::Url::parse(w.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(u) => {
                problem(format!(
                    "webhook: {}://{}…: use an http:// or https:// URL",
                    u.scheme(),
                    u.host_str().unwrap_or_default()
                ));
                None
            }
            Err(e) => {
                problem(format!(
                    "webhook: not a URL ({e}): use an http:// or https:// URL"
                ));
                None
            }
        });
    let alert_after = match a.alert_after_seconds {
        Some(0) => {
            problem("alert_after_seconds = 0: use a number of seconds of at least 1".into());
            DEFAULT_ALERT_AFTER_SECONDS
        }
        Some(n) => n,
        None => DEFAULT_ALERT_AFTER_SECONDS,
    };
    AlertSettings {
        webhook,
        alert_after: Duration::from_secs(alert_after),
    }
}

impl Settings {
    /// Load the file (see [`Config::load`]) and resolve it.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        resolve(Config::load(path)?)
    }

    pub fn channel(&self, name: &str) -> Option<&Arc<ChannelSettings>> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// A resolved integration (every name a channel refers to exists: checked at load).
    pub fn integration(&self, name: &str) -> Result<&ResolvedIntegration, ConfigError> {
        self.integrations
            .get(name)
            .ok_or_else(|| ConfigError::NoIntegration(name.to_string()))
    }
}

/// `protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Pop3,
    Graph,
    Maildir,
    Mbox,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Imap => "imap",
            Self::Pop3 => "pop3",
            Self::Graph => "graph",
            Self::Maildir => "maildir",
            Self::Mbox => "mbox",
        }
    }
}

/// `mode`: how a channel learns of new mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// IMAP IDLE; other sources re-check briefly.
    Push,
    /// Re-check every `poll_seconds`.
    Poll,
}

/// `auth` of an IMAP or POP3 channel.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `oauth:INTEGRATION` with the SASL mechanism of `sasl`.
    OAuth {
        integration: String,
        mechanism: Mechanism,
    },
    /// `password:env:VAR` | `password:file:PATH` (read when the channel opens).
    Password(SecretRef),
}

/// Where an IMAP or POP3 channel connects.
#[derive(Debug, Clone)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    /// The address read; also the login user.
    pub mailbox: String,
    pub auth: Auth,
    /// Protocol folder name (IMAP; POP3 has one mailbox).
    pub folder: String,
    pub ca_file: Option<SecretRef>,
    /// `proxy` as written (`env` is resolved when the channel opens).
    pub proxy: Option<String>,
    pub no_proxy: Vec<String>,
}

/// A Microsoft Graph channel.
#[derive(Debug, Clone)]
pub struct Graph {
    pub mailbox: String,
    pub integration: String,
    /// The integration's Graph root.
    pub graph_url: String,
    /// Well-known folder name or folder ID (default `inbox`).
    pub folder: String,
    pub proxy: Option<String>,
    pub no_proxy: Vec<String>,
    /// Extra CA certificates for the Graph host: the channel's `ca_file`, else the
    /// integration's (a TLS-inspecting proxy or a private CA signs both the token and the
    /// Graph answers).
    pub ca_file: Option<SecretRef>,
}

/// Where a channel's mail comes from.
#[derive(Debug, Clone)]
pub enum SourceSettings {
    Imap(Server),
    Pop3(Server),
    Graph(Graph),
    Maildir(PathBuf),
    Mbox(PathBuf),
}

/// One `[[channel]]`, typed and complete.
#[derive(Debug, Clone)]
pub struct ChannelSettings {
    pub name: String,
    pub project: ProjectKey,
    /// `[rules]` overridden by `[channel.rules]`, checked (split markers compile).
    pub rules: ChannelRules,
    pub source: SourceSettings,
    pub after: PostAction,
    pub start: Start,
    /// Messages per transaction (≥ 1).
    pub batch: usize,
    pub mode: Mode,
    /// Time between rounds: the IDLE re-issue interval (IMAP push) or the re-check interval.
    pub wait: Duration,
    /// `timeout_seconds`: how long one network operation may wait for the server (`None`:
    /// intake-mail's defaults per operation).
    pub timeout: Option<Duration>,
}

impl ChannelSettings {
    pub fn protocol(&self) -> Protocol {
        match &self.source {
            SourceSettings::Imap(_) => Protocol::Imap,
            SourceSettings::Pop3(_) => Protocol::Pop3,
            SourceSettings::Graph(_) => Protocol::Graph,
            SourceSettings::Maildir(_) => Protocol::Maildir,
            SourceSettings::Mbox(_) => Protocol::Mbox,
        }
    }

    /// Where the channel reads, for the origin of each message in logs.
    pub fn origin(&self) -> String {
        match &self.source {
            SourceSettings::Imap(s) => format!("{}:{}", s.host, s.folder),
            SourceSettings::Pop3(s) => format!("{}:pop3", s.host),
            SourceSettings::Graph(g) => format!("{}/users/{}", g.graph_url, g.mailbox),
            SourceSettings::Maildir(p) | SourceSettings::Mbox(p) => p.display().to_string(),
        }
    }
}

/// Resolve and check the whole configuration. Every problem found is returned at once
/// ([`ConfigError::Settings`]).
pub fn resolve(config: Config) -> Result<Settings, ConfigError> {
    let mut problems = Vec::new();
    let top = |message: String| Problem {
        scope: String::new(),
        message,
    };
    if let Some(url) = &config.database_url {
        let known = ["sqlite:", "postgres://", "postgresql://"];
        if !known.iter().any(|p| url.trim().starts_with(p)) {
            // Only the scheme is shown: the rest may hold a password.
            let scheme = url.split(':').next().unwrap_or_default();
            problems.push(top(format!(
                "database_url: {scheme:?} is not a database Intake knows: use sqlite://PATH or postgres://user@host/db"
            )));
        }
    }
    if let Some(p) = &config.project
        && let Err(e) = p.parse::<ProjectKey>()
    {
        problems.push(top(format!("project = {p:?}: {e}")));
    }
    let lease = match config.lease_seconds {
        Some(0) => {
            problems.push(top(
                "lease_seconds = 0: use a number of seconds of at least 1".into(),
            ));
            DEFAULT_LEASE_SECONDS
        }
        Some(n) => n,
        None => DEFAULT_LEASE_SECONDS,
    };
    let retention = match config.mail_log_retention_days {
        Some(0) => {
            problems.push(top(
                "mail_log_retention_days = 0: use a number of days of at least 1".into(),
            ));
            DEFAULT_MAIL_LOG_RETENTION_DAYS
        }
        Some(n) => n,
        None => DEFAULT_MAIL_LOG_RETENTION_DAYS,
    };
    let rules = config
        .rules_for(None)
        .map_err(|e| e.to_string())
        .and_then(|r| intake_mime::Reader::new(&r).map_err(|e| e.to_string()));
    if let Err(message) = rules {
        problems.push(Problem {
            scope: "rules".into(),
            message,
        });
    }

    let alerts = alert_settings(&config, &mut problems);
    let mut integrations = BTreeMap::new();
    for i in &config.integrations {
        let scope = format!("integration {:?}", i.name);
        if integrations.contains_key(&i.name) {
            problems.push(Problem {
                scope,
                message: "the name is used twice".into(),
            });
            continue;
        }
        match i.resolve() {
            Ok(r) => {
                integrations.insert(i.name.clone(), r);
            }
            Err(findings) => {
                problems.extend(findings.iter().filter(|f| f.is_error()).map(|f: &Finding| {
                    Problem {
                        scope: scope.clone(),
                        message: f.to_string(),
                    }
                }))
            }
        }
    }
    let known_integrations: BTreeSet<&str> = config
        .integrations
        .iter()
        .map(|i| i.name.as_str())
        .collect();

    let mut channels = Vec::new();
    let mut names = BTreeSet::new();
    for c in &config.channels {
        let mut p = ChannelProblems {
            scope: format!("channel {:?}", c.name),
            list: Vec::new(),
        };
        if c.name.trim().is_empty() {
            p.add("`name` is empty".into());
        } else if !names.insert(c.name.as_str()) {
            p.add("the name is used twice: the ledger and the lease are per channel".into());
        }
        if let Some(ch) = channel(&config, c, &integrations, &known_integrations, &mut p) {
            channels.push(Arc::new(ch));
        }
        problems.extend(p.list);
    }
    if !problems.is_empty() {
        return Err(ConfigError::Settings(problems));
    }
    Ok(Settings {
        config: Arc::new(config),
        lease: Duration::from_secs(lease),
        mail_log_retention_days: retention,
        integrations: Arc::new(integrations),
        channels,
        alerts,
    })
}

struct ChannelProblems {
    scope: String,
    list: Vec<Problem>,
}

impl ChannelProblems {
    fn add(&mut self, message: String) {
        self.list.push(Problem {
            scope: self.scope.clone(),
            message,
        });
    }

    /// `key = "value": fix`.
    fn bad(&mut self, key: &str, value: &str, fix: &str) {
        self.add(format!("{key} = {value:?}: {fix}"));
    }

    fn missing(&mut self, key: &str, why: &str) {
        self.add(format!("`{key}` is required {why}"));
    }
}

/// One channel; `None` when something is wrong (each problem added to `p`).
fn channel(
    config: &Config,
    c: &ChannelConfig,
    integrations: &BTreeMap<String, ResolvedIntegration>,
    known_integrations: &BTreeSet<&str>,
    p: &mut ChannelProblems,
) -> Option<ChannelSettings> {
    let before = p.list.len();
    let project = c
        .project
        .parse::<ProjectKey>()
        .map_err(|e| p.bad("project", &c.project, &e.to_string()))
        .ok();
    let protocol = match c.protocol.as_deref().unwrap_or("imap") {
        "imap" => Some(Protocol::Imap),
        "pop3" => Some(Protocol::Pop3),
        "graph" => Some(Protocol::Graph),
        "maildir" => Some(Protocol::Maildir),
        "mbox" => Some(Protocol::Mbox),
        other => {
            p.bad("protocol", other, "use imap, pop3, graph, maildir or mbox");
            None
        }
    };
    let after = match c.after.as_deref().unwrap_or("mark-read") {
        "mark-read" => Some(PostAction::MarkRead),
        "delete" => Some(PostAction::Delete),
        other => match other.strip_prefix("move:").map(str::trim) {
            Some(f) if !f.is_empty() => Some(PostAction::Move(f.to_string())),
            _ => {
                p.bad("after", other, "use mark-read, move:FOLDER or delete");
                None
            }
        },
    };
    let start = c
        .start
        .as_deref()
        .unwrap_or("unread")
        .parse::<Start>()
        // The parser's message already reads `start = "…": use …`.
        .map_err(|e| p.add(e))
        .ok();
    let mode = match c.mode.as_deref().unwrap_or("push") {
        "push" => Some(Mode::Push),
        "poll" => Some(Mode::Poll),
        other => {
            p.bad("mode", other, "use push or poll");
            None
        }
    };
    let batch = match c.batch {
        Some(0) => {
            p.add("batch = 0: use a number of messages of at least 1".into());
            None
        }
        Some(n) => Some(n),
        None => Some(DEFAULT_BATCH),
    };
    if c.poll_seconds == Some(0) {
        p.add("poll_seconds = 0: use a number of seconds of at least 1".into());
    }
    let timeout = match c.timeout_seconds {
        Some(0) => {
            p.add("timeout_seconds = 0: use a number of seconds of at least 1".into());
            None
        }
        Some(n) => Some(Some(Duration::from_secs(n))),
        None => Some(None),
    };
    let rules = match config.rules_for(Some(c)) {
        Ok(r) => match intake_mime::Reader::new(&r) {
            Ok(_) => Some(r),
            Err(e) => {
                p.add(format!("[channel.rules]: {e}"));
                None
            }
        },
        Err(e) => {
            p.add(format!("[channel.rules]: {e}"));
            None
        }
    };
    if let Some(f) = &c.folder
        && f.trim().is_empty()
    {
        p.add("folder = \"\": name a folder (default INBOX) or leave the key out".into());
    }
    if c.port == Some(0) {
        p.add("port = 0: use the server's port (1–65535) or leave the key out".into());
    }
    let source = protocol.and_then(|proto| {
        source(
            c,
            proto,
            after.as_ref(),
            start,
            integrations,
            known_integrations,
            p,
        )
    });
    if p.list.len() > before {
        return None;
    }
    let (mode, protocol) = (mode?, protocol?);
    let default_wait = match (mode, protocol) {
        (Mode::Poll, _) => 60,
        (Mode::Push, Protocol::Imap) => 300,
        (Mode::Push, _) => 15,
    };
    Some(ChannelSettings {
        name: c.name.clone(),
        project: project?,
        rules: rules?,
        source: source?,
        after: after?,
        start: start?,
        batch: batch?,
        mode,
        wait: Duration::from_secs(c.poll_seconds.unwrap_or(default_wait)),
        timeout: timeout?,
    })
}

/// The protocol-specific part of a channel.
fn source(
    c: &ChannelConfig,
    protocol: Protocol,
    after: Option<&PostAction>,
    start: Option<Start>,
    integrations: &BTreeMap<String, ResolvedIntegration>,
    known_integrations: &BTreeSet<&str>,
    p: &mut ChannelProblems,
) -> Option<SourceSettings> {
    let for_proto = format!("for protocol = {:?}", protocol.as_str());
    let path = || c.path.clone();
    match protocol {
        Protocol::Maildir | Protocol::Mbox => {
            if matches!(start, Some(Start::Now | Start::Since(_))) {
                p.bad(
                    "start",
                    c.start.as_deref().unwrap_or_default(),
                    &format!("a {} channel takes unread or all", protocol.as_str()),
                );
            }
            if protocol == Protocol::Mbox && after.is_some_and(|a| *a != PostAction::MarkRead) {
                p.bad(
                    "after",
                    c.after.as_deref().unwrap_or_default(),
                    "an mbox channel keeps its file: use after = \"mark-read\"",
                );
            }
            let Some(path) = path() else {
                p.missing("path", &for_proto);
                return None;
            };
            Some(if protocol == Protocol::Maildir {
                SourceSettings::Maildir(path)
            } else {
                SourceSettings::Mbox(path)
            })
        }
        Protocol::Graph => {
            let mailbox = c.mailbox.clone();
            if mailbox.is_none() {
                p.missing("mailbox", &for_proto);
            }
            let integration = match c.auth.as_deref().map(|a| (a, a.strip_prefix("oauth:"))) {
                Some((_, Some(name))) => integration_ref(name, integrations, known_integrations, p),
                Some((a, None)) => {
                    p.bad(
                        "auth",
                        &shown_auth(a),
                        "Graph needs auth = \"oauth:INTEGRATION\"",
                    );
                    None
                }
                None => {
                    p.missing("auth", "(Graph needs auth = \"oauth:INTEGRATION\")");
                    None
                }
            };
            let graph_url = integration.and_then(|i| match &i.endpoints.graph_url {
                Some(u) => Some(u.clone()),
                None => {
                    p.add(format!(
                        "auth = \"oauth:{}\": the integration has no Graph endpoint (set its graph_url)",
                        i.name
                    ));
                    None
                }
            });
            if c.proxy
                .as_deref()
                .is_some_and(|x| x.trim().starts_with("socks"))
            {
                p.bad(
                    "proxy",
                    &intake_mail::net::redact(c.proxy.as_deref().unwrap_or_default()),
                    "Graph requests go through an HTTP(S) proxy, not SOCKS5 (socks5:// is for IMAP and POP3)",
                );
            }
            let ca_file = match c.ca_file.as_deref().map(SecretRef::parse) {
                Some(Ok(r)) => Some(r),
                Some(Err(e)) => {
                    p.add(format!("ca_file: {e}"));
                    None
                }
                None => integration.and_then(|i| i.ca_file.clone()),
            };
            Some(SourceSettings::Graph(Graph {
                ca_file,
                mailbox: mailbox?,
                integration: integration?.name.clone(),
                graph_url: graph_url?,
                folder: c.folder.clone().unwrap_or_else(|| "inbox".into()),
                proxy: c.proxy.clone(),
                no_proxy: c.no_proxy.clone(),
            }))
        }
        Protocol::Imap | Protocol::Pop3 => {
            if protocol == Protocol::Pop3 {
                if let Some(PostAction::Move(_)) = after {
                    p.bad(
                        "after",
                        c.after.as_deref().unwrap_or_default(),
                        "POP3 cannot move messages; use delete or mark-read (keep)",
                    );
                }
                if let Some(Start::Since(_)) = start {
                    p.bad(
                        "start",
                        c.start.as_deref().unwrap_or_default(),
                        "POP3 cannot select messages by date; use all or now",
                    );
                }
            }
            // The IMAP/POP3 tunnel's own parser (Graph's HTTP client checks its proxy when
            // it is built, and takes forms this one does not, such as https://).
            if let Some(proxy) = c.proxy.as_deref()
                && proxy.trim() != "env"
                && let Err(e) = intake_mail::net::proxy_label(proxy)
            {
                p.add(format!("proxy: {e}"));
            }
            let tls = match c.tls.as_deref().unwrap_or("implicit") {
                "implicit" => Some(Tls::Implicit),
                "starttls" => Some(Tls::StartTls),
                "none" => Some(Tls::None),
                other => {
                    p.bad("tls", other, "use implicit, starttls or none");
                    None
                }
            };
            let mailbox = c.mailbox.clone();
            if mailbox.is_none() {
                p.missing("mailbox", &for_proto);
            }
            let mut preset = None;
            let auth = match c.auth.as_deref() {
                None => {
                    p.missing(
                        "auth",
                        "(oauth:INTEGRATION, password:env:VAR or password:file:PATH)",
                    );
                    None
                }
                Some(a) => {
                    if let Some(name) = a.strip_prefix("oauth:") {
                        let i = integration_ref(name, integrations, known_integrations, p);
                        preset = i.map(|i| {
                            if protocol == Protocol::Imap {
                                i.endpoints.imap.clone()
                            } else {
                                i.endpoints.pop3.clone()
                            }
                        });
                        let mechanism = match c.sasl.as_deref().unwrap_or("xoauth2") {
                            "xoauth2" => Some(Mechanism::XOAuth2),
                            "oauthbearer" => Some(Mechanism::OAuthBearer),
                            other => {
                                p.bad("sasl", other, "use xoauth2 or oauthbearer");
                                None
                            }
                        };
                        i.zip(mechanism).map(|(i, mechanism)| Auth::OAuth {
                            integration: i.name.clone(),
                            mechanism,
                        })
                    } else if let Some(spec) = a.strip_prefix("password:") {
                        match SecretRef::parse(spec) {
                            Ok(r) => Some(Auth::Password(r)),
                            Err(e) => {
                                p.bad(
                                    "auth",
                                    &shown_auth(a),
                                    &format!("{e} (use password:env:VAR or password:file:PATH)"),
                                );
                                None
                            }
                        }
                    } else {
                        p.bad(
                            "auth",
                            &shown_auth(a),
                            "use oauth:INTEGRATION, password:env:VAR or password:file:PATH",
                        );
                        None
                    }
                }
            };
            if c.sasl.is_some() && matches!(auth, Some(Auth::Password(_))) {
                p.add("`sasl` applies to auth = \"oauth:…\" only; remove it".into());
            }
            let ca_file = match c.ca_file.as_deref().map(SecretRef::parse) {
                Some(Ok(r)) => Some(r),
                Some(Err(e)) => {
                    p.add(format!("ca_file: {e}"));
                    None
                }
                None => None,
            };
            let preset = preset.filter(|(h, _)| !h.is_empty());
            let host = match (&c.host, &preset) {
                (Some(h), _) if !h.trim().is_empty() => Some(h.trim().to_string()),
                (Some(_), _) => {
                    p.add("host = \"\": name the server or leave the key out".into());
                    None
                }
                (None, Some((h, _))) => Some(h.clone()),
                (None, None) => {
                    p.missing(
                        "host",
                        &format!("{for_proto} (no oauth integration names a server)"),
                    );
                    None
                }
            };
            let tls = tls?;
            let port = c.port.unwrap_or(match (protocol, tls) {
                (Protocol::Imap, Tls::Implicit) => 993,
                (Protocol::Imap, _) => 143,
                (_, Tls::Implicit) => 995,
                _ => 110,
            });
            let server = Server {
                host: host?,
                port,
                tls,
                mailbox: mailbox?,
                auth: auth?,
                folder: c.folder.clone().unwrap_or_else(|| "INBOX".into()),
                ca_file,
                proxy: c.proxy.clone(),
                no_proxy: c.no_proxy.clone(),
            };
            Some(if protocol == Protocol::Imap {
                SourceSettings::Imap(server)
            } else {
                SourceSettings::Pop3(server)
            })
        }
    }
}

/// The integration behind `auth = "oauth:NAME"`.
/// The `auth` value as an error may show it: `oauth:NAME`, `password:env:VAR` and
/// `password:file:PATH` name no secret and are shown whole; anything else may be a password
/// written in the file (or pasted by mistake), so only its scheme is shown.
fn shown_auth(a: &str) -> String {
    let named = a.starts_with("oauth:")
        || a.starts_with("password:env:")
        || a.starts_with("password:file:");
    match a.split_once(':') {
        _ if named => a.to_string(),
        Some((scheme, _)) => format!("{scheme}:<not shown>"),
        None => "<not shown>".to_string(),
    }
}

fn integration_ref<'a>(
    name: &str,
    integrations: &'a BTreeMap<String, ResolvedIntegration>,
    known: &BTreeSet<&str>,
    p: &mut ChannelProblems,
) -> Option<&'a ResolvedIntegration> {
    let found = integrations.get(name);
    if found.is_none() && !known.contains(name) {
        let names: Vec<&str> = known.iter().copied().collect();
        p.bad(
            "auth",
            &format!("oauth:{name}"),
            &if names.is_empty() {
                "there is no [[integration]] in the configuration".to_string()
            } else {
                format!(
                    "no [[integration]] has that name (there are: {})",
                    names.join(", ")
                )
            },
        );
    }
    // A known but unusable integration is reported under its own table.
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("intake.toml");
        std::fs::write(&p, text).unwrap();
        Settings::load(Some(&p))
    }

    fn problems(text: &str) -> Vec<String> {
        match load(text) {
            Ok(_) => panic!("must be refused:\n{text}"),
            Err(ConfigError::Settings(list)) => list.iter().map(ToString::to_string).collect(),
            Err(e) => panic!("not a settings error: {e}"),
        }
    }

    const IMAP: &str = "[[channel]]\nname = \"support\"\nproject = \"HELP\"\nhost = \"mail.example.com\"\nmailbox = \"help@example.com\"\nauth = \"password:env:PW\"\n";

    /// Each protocol its own default host and port: `tls = "starttls"` without `port` is 143
    /// (POP3 110), a Google POP3 channel goes to pop.gmail.com, and a Graph channel trusts the
    /// integration's `ca_file` unless it names its own.
    #[test]
    fn ports_hosts_and_graph_ca_file_follow_the_protocol() {
        let starttls = load(&format!("{IMAP}tls = \"starttls\"\n")).unwrap();
        let SourceSettings::Imap(server) = &starttls.channels[0].source else {
            panic!("imap")
        };
        assert_eq!((server.port, server.tls), (143, Tls::StartTls));
        let pop = IMAP.replace("project", "protocol = \"pop3\"\nproject");
        let s = load(&format!("{pop}tls = \"starttls\"\n")).unwrap();
        let SourceSettings::Pop3(server) = &s.channels[0].source else {
            panic!("pop3")
        };
        assert_eq!((server.port, server.tls), (110, Tls::StartTls));
        let google = "[[integration]]\nname = \"g\"\nprovider = \"google\"\nclient_id = \"c\"\nclient_secret = \"env:G\"\nca_file = \"file:/etc/ca.pem\"\n\
             [[channel]]\nname = \"pop\"\nproject = \"HELP\"\nprotocol = \"pop3\"\nmailbox = \"a@example.com\"\nauth = \"oauth:g\"\n";
        let s = load(google).unwrap();
        let SourceSettings::Pop3(server) = &s.channels[0].source else {
            panic!("pop3")
        };
        assert_eq!((server.host.as_str(), server.port), ("pop.gmail.com", 995));
        let ms = "[[integration]]\nname = \"m\"\nprovider = \"microsoft\"\ntenant = \"contoso.example\"\nclient_id = \"c\"\nclient_secret = \"env:M\"\nca_file = \"file:/etc/ca.pem\"\n\
             [[channel]]\nname = \"g\"\nproject = \"HELP\"\nprotocol = \"graph\"\nmailbox = \"a@contoso.example\"\nauth = \"oauth:m\"\n";
        let s = load(ms).unwrap();
        let SourceSettings::Graph(g) = &s.channels[0].source else {
            panic!("graph")
        };
        assert!(
            matches!(&g.ca_file, Some(SecretRef::File(p)) if p.ends_with("ca.pem")),
            "{:?}",
            g.ca_file
        );
        let own = load(&format!("{ms}ca_file = \"file:/other.pem\"\n")).unwrap();
        let SourceSettings::Graph(g) = &own.channels[0].source else {
            panic!("graph")
        };
        assert!(
            matches!(&g.ca_file, Some(SecretRef::File(p)) if p.ends_with("other.pem")),
            "{:?}",
            g.ca_file
        );
    }

    #[test]
    fn a_good_channel_resolves_into_typed_settings_with_documented_defaults() {
        let s = load(IMAP).unwrap();
        assert_eq!(s.lease, Duration::from_secs(30));
        assert_eq!(s.mail_log_retention_days, 90);
        let c = s.channel("support").unwrap();
        assert_eq!(c.protocol(), Protocol::Imap);
        assert_eq!(c.after, PostAction::MarkRead);
        assert_eq!(c.start, Start::Unread);
        assert_eq!(c.mode, Mode::Push);
        assert_eq!(c.batch, 100);
        assert_eq!(c.wait, Duration::from_secs(300));
        assert_eq!(c.timeout, None);
        let SourceSettings::Imap(server) = &c.source else {
            panic!("imap")
        };
        assert_eq!((server.port, server.tls), (993, Tls::Implicit));
        assert_eq!(server.folder, "INBOX");
        assert!(matches!(server.auth, Auth::Password(SecretRef::Env(ref v)) if v == "PW"));
        assert_eq!(c.origin(), "mail.example.com:INBOX");
    }

    #[test]
    fn alerts_keys_are_checked_and_a_webhook_path_is_never_shown() {
        let s = load(IMAP).unwrap();
        assert_eq!(s.alerts.alert_after, Duration::from_secs(900));
        assert!(s.alerts.webhook.is_none());
        let s = load(&format!(
            "{IMAP}[alerts]\nwebhook = \"https://hooks.example.com/T0/secret-path\"\nalert_after_seconds = 60\n"
        ))
        .unwrap();
        assert_eq!(s.alerts.alert_after, Duration::from_secs(60));
        assert_eq!(
            s.alerts.webhook.unwrap().host_str(),
            Some("hooks.example.com")
        );
        let p = problems(&format!(
            "{IMAP}[alerts]\nwebhook = \"ftp://hooks.example.com/secret-path\"\nalert_after_seconds = 0\n"
        ))
        .join("\n");
        assert!(
            p.contains("alerts: webhook") && p.contains("alert_after_seconds = 0"),
            "{p}"
        );
        assert!(!p.contains("secret-path"), "{p}");
        assert!(load(&format!("{IMAP}[alerts]\nwebhok = \"x\"\n")).is_err());
    }

    #[test]
    fn a_bad_auth_value_never_shows_a_password_written_in_it() {
        let base = IMAP.replace("auth = \"password:env:PW\"\n", "");
        for (auth, shown) in [
            ("hunter2-secret", "auth = \"<not shown>\""),
            ("basic:hunter2-secret", "auth = \"basic:<not shown>\""),
        ] {
            let all = problems(&format!("{base}auth = \"{auth}\"\n")).join("\n");
            assert!(all.contains(shown), "{all}");
            assert!(!all.contains("hunter2-secret"), "{all}");
        }
        let graph = "[[channel]]\nname = \"g\"\nproject = \"HELP\"\nprotocol = \"graph\"\nmailbox = \"help@example.com\"\nauth = \"password:hunter2-secret\"\n";
        let all = problems(graph).join("\n");
        assert!(all.contains("auth = \"password:<not shown>\""), "{all}");
        assert!(!all.contains("hunter2-secret"), "{all}");
        let socks = graph.replace(
            "auth = \"password:hunter2-secret\"",
            "auth = \"oauth:none\"\nproxy = \"socks5://u:hunter2-secret@proxy:1080\"",
        );
        let all = problems(&socks).join("\n");
        assert!(all.contains("proxy = \"socks5://***@proxy:1080\""), "{all}");
        assert!(!all.contains("hunter2-secret"), "{all}");
    }

    #[test]
    fn each_bad_value_is_an_error_naming_the_channel_and_the_key() {
        for (extra, expected) in [
            (
                "mode = \"pol\"\n",
                "channel \"support\": mode = \"pol\": use push or poll",
            ),
            (
                "tls = \"startls\"\n",
                "channel \"support\": tls = \"startls\": use implicit, starttls or none",
            ),
            (
                "after = \"archive\"\n",
                "channel \"support\": after = \"archive\": use mark-read, move:FOLDER or delete",
            ),
            ("after = \"move: \"\n", "after = \"move: \""),
            (
                "start = \"later\"\n",
                "channel \"support\": start = \"later\"",
            ),
            (
                "protocol = \"imaps\"\n",
                "channel \"support\": protocol = \"imaps\": use imap, pop3, graph, maildir or mbox",
            ),
            ("batch = 0\n", "channel \"support\": batch = 0"),
            (
                "poll_seconds = 0\n",
                "channel \"support\": poll_seconds = 0",
            ),
            (
                "timeout_seconds = 0\n",
                "channel \"support\": timeout_seconds = 0",
            ),
            ("port = 0\n", "channel \"support\": port = 0"),
            ("proxy = \"ftp://p:1\"\n", "channel \"support\": proxy"),
            ("folder = \"\"\n", "channel \"support\": folder = \"\""),
            ("ca_file = \"env:\"\n", "channel \"support\": ca_file"),
            (
                "sasl = \"xoauth2\"\n",
                "channel \"support\": `sasl` applies to auth = \"oauth:…\" only",
            ),
            (
                "[channel.rules]\nsplit_markers = [\"(\"]\n",
                "channel \"support\": [channel.rules]",
            ),
            (
                "[channel.rules]\nmax_atachment_bytes = 3\n",
                "max_atachment_bytes",
            ),
        ] {
            let text = format!("{IMAP}{extra}");
            let list = problems(&text);
            assert!(
                list.iter().any(|p| p.contains(expected)),
                "{extra:?}: expected {expected:?} in {list:?}"
            );
        }
    }

    #[test]
    fn auth_forms_and_integration_references_are_checked_at_load() {
        let with = |auth: &str, extra: &str| {
            IMAP.replace(
                "auth = \"password:env:PW\"",
                &format!("auth = \"{auth}\"{extra}"),
            )
        };
        let list = problems(&with("oauth:m365", ""));
        assert!(
            list.iter().any(|p| p.contains(
                "channel \"support\": auth = \"oauth:m365\": there is no [[integration]]"
            )),
            "{list:?}"
        );
        // An unknown form may be a pasted token: its scheme is shown, never the rest.
        let list = problems(&with("token:abc", ""));
        assert!(
            list.iter()
                .any(|p| p.contains("auth = \"token:<not shown>\": use oauth:INTEGRATION")),
            "{list:?}"
        );
        assert!(!list.iter().any(|p| p.contains("abc")), "{list:?}");
        let list = problems(&with("password:env:", ""));
        assert!(
            list.iter().any(|p| p.contains("auth = \"password:env:\"")),
            "{list:?}"
        );
        let integration = "\n[[integration]]\nname = \"idp\"\nprovider = \"custom\"\nclient_id = \"c\"\nclient_secret = \"env:S\"\nauthorize_url = \"https://idp.example/a\"\ntoken_url = \"https://idp.example/t\"\nscopes = [\"mail\"]\n";
        let list = problems(&format!(
            "{}\nsasl = \"oauthbaerer\"\n{integration}",
            with("oauth:nope", "")
        ));
        assert!(
            list.iter().any(|p| p.contains(
                "auth = \"oauth:nope\": no [[integration]] has that name (there are: idp)"
            )),
            "{list:?}"
        );
        assert!(
            list.iter().any(|p| p.contains("sasl = \"oauthbaerer\"")),
            "{list:?}"
        );
        // With the right name and mechanism it resolves.
        let s = load(&format!(
            "{}\nsasl = \"oauthbearer\"\n{integration}",
            with("oauth:idp", "")
        ))
        .unwrap();
        let SourceSettings::Imap(server) = &s.channels[0].source else {
            panic!("imap")
        };
        assert!(matches!(
            &server.auth,
            Auth::OAuth { integration, mechanism: Mechanism::OAuthBearer } if integration == "idp"
        ));
    }

    #[test]
    fn protocol_specific_rules_and_required_keys() {
        let local = |proto: &str, extra: &str| {
            format!(
                "[[channel]]\nname = \"l\"\nproject = \"HELP\"\nprotocol = \"{proto}\"\n{extra}"
            )
        };
        let list = problems(&local("maildir", ""));
        assert!(
            list.iter().any(|p| p.contains("`path` is required")),
            "{list:?}"
        );
        let list = problems(&local("mbox", "path = \"x.mbox\"\nafter = \"delete\"\n"));
        assert!(
            list.iter()
                .any(|p| p.contains("an mbox channel keeps its file")),
            "{list:?}"
        );
        let list = problems(&local("maildir", "path = \"m\"\nstart = \"now\"\n"));
        assert!(
            list.iter().any(|p| p.contains("start = \"now\"")),
            "{list:?}"
        );
        let pop = IMAP.replace("project", "protocol = \"pop3\"\nproject");
        let list = problems(&format!(
            "{pop}after = \"move:Archive\"\nstart = \"since:2026-01-01\"\n"
        ));
        assert!(
            list.iter().any(|p| p.contains("POP3 cannot move")),
            "{list:?}"
        );
        assert!(
            list.iter().any(|p| p.contains("POP3 cannot select")),
            "{list:?}"
        );
        let s = load(&pop).unwrap();
        let SourceSettings::Pop3(server) = &s.channels[0].source else {
            panic!("pop3")
        };
        assert_eq!(server.port, 995);
        assert_eq!(s.channels[0].wait, Duration::from_secs(15));
        let list =
            problems("[[channel]]\nname = \"g\"\nproject = \"HELP\"\nprotocol = \"graph\"\n");
        assert!(
            list.iter().any(|p| p.contains("`mailbox` is required")),
            "{list:?}"
        );
        assert!(
            list.iter().any(|p| p.contains("`auth` is required")),
            "{list:?}"
        );
        let list = problems(
            "[[channel]]\nname = \"s\"\nproject = \"HELP\"\nmailbox = \"a@b\"\nauth = \"password:env:X\"\n",
        );
        assert!(
            list.iter().any(|p| p.contains("`host` is required")),
            "{list:?}"
        );
    }

    #[test]
    fn top_level_keys_and_duplicates_are_checked_and_every_problem_is_reported() {
        let list = problems(&format!(
            "lease_seconds = 0\nmail_log_retention_days = 0\nproject = \"1x\"\ndatabase_url = \"mysql://x\"\n{IMAP}mode = \"pol\"\n{IMAP}"
        ));
        for expected in [
            "lease_seconds = 0",
            "mail_log_retention_days = 0",
            "project = \"1x\"",
            "database_url: \"mysql\" is not a database",
            "channel \"support\": mode = \"pol\"",
            "channel \"support\": the name is used twice",
        ] {
            assert!(
                list.iter().any(|p| p.contains(expected)),
                "{expected}: {list:?}"
            );
        }
        let s = load(&format!(
            "mail_log_retention_days = 7\nlease_seconds = 5\n{IMAP}"
        ))
        .unwrap();
        assert_eq!(s.mail_log_retention_days, 7);
        assert_eq!(s.lease, Duration::from_secs(5));
        let list = problems("[rules]\nsplit_markers = [\"[\"]\n");
        assert!(list.iter().any(|p| p.starts_with("rules: ")), "{list:?}");
    }

    #[test]
    fn an_integration_with_lint_errors_is_refused_at_load_naming_it() {
        let list = problems(
            "[[integration]]\nname = \"m365\"\nprovider = \"microsoft\"\ntenant = \"contoso.example\"\n",
        );
        assert!(
            list.iter()
                .any(|p| p.starts_with("integration \"m365\": error") && p.contains("client_id")),
            "{list:?}"
        );
    }
}
