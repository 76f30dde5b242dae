//! The runner's side of `intake doctor`: the staged connection check of one channel
//! ([`intake_mail::check`]) with the same typed settings, secrets and tokens a run would use,
//! and the findings drawn from it (docs/troubleshooting.md lists every code).
//!
//! It counts only: nothing is fetched, committed or acknowledged. The whole check is bounded
//! like a `connect` stage (4 × `timeout_seconds`, 2 minutes when unset), so a server that
//! stops answering fails the check instead of hanging it.
//!
//! An OAuth channel's check starts with a `token` stage that always contacts the token
//! endpoint, through the integration's proxy, even when a cached token would do: a blocked
//! login host (RC7) or a proxy refusing it (RC16) is found before it breaks the next refresh.

use intake_core::diagnosis::{Diagnosed, Level, OwnCode, RootCause};
use intake_core::integration::{IntegrationConfig, ResolvedIntegration};
use intake_core::preset::Grant;
use intake_core::secret::SecretRef;
use intake_mail::check::{self, Cause, Counts, Report, StageResult};
use intake_mail::source::Start;
use intake_store::Store;

use super::RunError;
use super::open::{self, Source};
use crate::oauth::{TokenError, authorize_command};
use crate::settings::{Auth, ChannelSettings, Settings, SourceSettings};

/// The check of one channel with its findings, and the findings of its integration.
#[derive(Debug, Clone)]
pub struct ChannelDiagnosis {
    pub report: Report,
    pub findings: Vec<Diagnosed>,
    /// The integration behind `auth = "oauth:NAME"`, with its own findings.
    pub integration: Option<(String, Vec<Diagnosed>)>,
}

impl ChannelDiagnosis {
    /// Whether anything is an error (the check failed, or an error finding).
    pub fn has_error(&self) -> bool {
        !self.report.ok
            || self.findings.iter().any(Diagnosed::is_error)
            || self
                .integration
                .as_ref()
                .is_some_and(|(_, f)| f.iter().any(Diagnosed::is_error))
    }
}

/// Who a channel is: the names a fix text uses.
struct Ctx<'a> {
    channel: &'a str,
    mailbox: Option<&'a str>,
    integration: Option<&'a ResolvedIntegration>,
    protocol: intake_core::preset::Protocol,
    /// An IMAP or POP3 channel logging in with a password (`auth = "password:…"`).
    password: bool,
}

impl<'a> Ctx<'a> {
    /// The names of channel `c`: its mailbox and the integration of its `auth = "oauth:NAME"`.
    fn of(settings: &'a Settings, c: &'a ChannelSettings) -> Self {
        let (mailbox, integration) = match &c.source {
            SourceSettings::Imap(s) | SourceSettings::Pop3(s) => match &s.auth {
                Auth::OAuth { integration, .. } => (Some(s.mailbox.as_str()), Some(integration)),
                Auth::Password(_) => (Some(s.mailbox.as_str()), None),
            },
            SourceSettings::Graph(g) => (Some(g.mailbox.as_str()), Some(&g.integration)),
            _ => (None, None),
        };
        Ctx {
            channel: &c.name,
            mailbox,
            integration: integration.and_then(|n| settings.integrations.get(n)),
            protocol: token_protocol(c),
            password: password_auth(c),
        }
    }

    fn authorize(&self) -> String {
        match (self.integration, self.mailbox) {
            (Some(i), Some(m)) => authorize_command(&i.name, m, self.protocol),
            _ => "intake authorize".to_string(),
        }
    }

    /// A root cause's generic fix with the channel's real names put in.
    fn fix(&self, rc: RootCause) -> String {
        let text = with_names(rc.fix(), self)
            .replace("`intake authorize`", &format!("`{}`", self.authorize()));
        format!("[[channel]] \"{}\": {text}", self.channel)
    }
}

/// Whether channel `c` logs in with a password.
fn password_auth(c: &ChannelSettings) -> bool {
    matches!(&c.source, SourceSettings::Imap(s) | SourceSettings::Pop3(s) if matches!(s.auth, Auth::Password(_)))
}

/// `PASSWORD_REFUSED`: the server refused a password login (`evidence`: its words). The fix
/// names the channel, the mailbox (the login) and where the password comes from.
fn password_refused(ctx: &Ctx<'_>, evidence: String) -> Diagnosed {
    let mailbox = ctx.mailbox.unwrap_or("the mailbox");
    Diagnosed::own(
        OwnCode::PasswordRefused,
        Level::Error,
        evidence,
        format!(
            "[[channel]] \"{}\": the server refused the login {mailbox} with the password Intake \
             sent. Set the mailbox's current password (auth = \"password:env:VAR\" or \
             \"password:file:PATH\" must hold it; in the admin UI, Channels → Edit {} replaces \
             it); check that {mailbox} is the login the server expects and that the account may \
             use {} (Microsoft 365 and Gmail refuse passwords for IMAP/POP3: use auth = \
             \"oauth:INTEGRATION\"; Gmail with 2-step verification needs an app password)",
            ctx.channel,
            ctx.channel,
            ctx.protocol.as_str().to_ascii_uppercase()
        ),
    )
}

/// The fix of one of Intake's own codes found by the catalogue.
fn own_fix(code: OwnCode, ctx: &Ctx<'_>) -> String {
    match code {
        OwnCode::PasswordRefused => password_refused(ctx, String::new()).fix,
        _ => format!("run `{}`", ctx.authorize()),
    }
}

fn token_protocol(c: &ChannelSettings) -> intake_core::preset::Protocol {
    use intake_core::preset::Protocol as P;
    match c.protocol() {
        crate::settings::Protocol::Pop3 => P::Pop3,
        crate::settings::Protocol::Graph => P::Graph,
        _ => P::Imap,
    }
}

/// The staged connection check of one channel (`intake doctor`): counts only, changes nothing.
pub async fn check(settings: &Settings, store: &Store, c: &ChannelSettings) -> Report {
    diagnose(settings, store, c, intake_store::now())
        .await
        .report
}

/// The check and every finding of one channel at `now` (Unix seconds).
pub async fn diagnose(
    settings: &Settings,
    store: &Store,
    c: &ChannelSettings,
    now: i64,
) -> ChannelDiagnosis {
    let unit = c.timeout.unwrap_or(std::time::Duration::from_secs(
        crate::settings::DEFAULT_TIMEOUT_SECONDS,
    ));
    let (mailbox, integration_name, secret) = match &c.source {
        SourceSettings::Imap(s) | SourceSettings::Pop3(s) => match &s.auth {
            Auth::OAuth { integration, .. } => (Some(s.mailbox.as_str()), Some(integration), None),
            Auth::Password(r) => (Some(s.mailbox.as_str()), None, Some(r)),
        },
        SourceSettings::Graph(g) => (Some(g.mailbox.as_str()), Some(&g.integration), None),
        _ => (None, None, None),
    };
    let integration = integration_name.and_then(|n| settings.integrations.get(n));
    let ctx = Ctx {
        channel: &c.name,
        mailbox,
        integration,
        protocol: token_protocol(c),
        password: password_auth(c),
    };
    let bound = super::drain::Bounds::new(unit).stage;
    let (report, error) = match tokio::time::timeout(bound, staged(settings, store, c)).await {
        Ok(done) => done,
        Err(_) => (
            Report::default().fail(
                "timeout",
                c.origin(),
                format!(
                    "the check did not finish within {}s: the server stopped answering",
                    bound.as_secs()
                ),
                None,
            ),
            None,
        ),
    };
    // The stored token's identity against the mailbox (RC11, RC3): read from the store, no
    // network; it also tells the causes of an ambiguous refusal apart.
    let identity = match (integration, mailbox) {
        (Some(i), Some(m)) => preflight(settings, store, i, m, &ctx).await,
        _ => Vec::new(),
    };
    let mut findings = Vec::new();
    if let Some(f) = failure_finding(&report, error.as_ref(), &ctx) {
        findings.extend(ranked(f, &identity, &ctx));
    }
    findings.extend(report.notes.iter().filter_map(|n| {
        let rc = RootCause::from_id(n.id)?;
        Some(Diagnosed::cause(
            rc,
            Level::Info,
            n.fix.clone(),
            format!("[[channel]] \"{}\": {}", c.name, rc.fix()),
        ))
    }));
    if let (Some(counts), true) = (report.counts, report.ok)
        && let Some(f) = flood(store, c, counts, now).await
    {
        findings.push(f);
    }
    for f in identity {
        if !findings.iter().any(|o| o.code == f.code) {
            findings.push(f);
        }
    }
    if let Some(SecretRef::Literal(_)) = secret {
        findings.push(Diagnosed::own(
            OwnCode::PlaintextSecret,
            Level::Warning,
            format!(
                "[[channel]] \"{}\": auth = \"password:…\" holds the password itself",
                c.name
            ),
            format!(
                "write the password to a file readable by Intake only and set auth = \
                 \"password:file:PATH\" on [[channel]] \"{}\" (or password:env:VAR)",
                c.name
            ),
        ));
    }
    let integration = integration.map(|i| (i.name.clone(), integration_findings(settings, i, now)));
    ChannelDiagnosis {
        report,
        findings,
        integration,
    }
}

/// The checks that need a stored token: identity ≠ mailbox (RC11, RC3) and claim warnings.
async fn preflight(
    settings: &Settings,
    store: &Store,
    i: &ResolvedIntegration,
    mailbox: &str,
    ctx: &Ctx<'_>,
) -> Vec<Diagnosed> {
    let Ok(keys) = intake_store::Keyring::from_env_or_file(&settings.config.secret_key_file())
    else {
        return Vec::new();
    };
    let Ok(client) = intake_mail::oauth::OAuthClient::new(i) else {
        return Vec::new();
    };
    let tokens = crate::oauth::TokenService::new(store.clone(), keys);
    let Ok(found) = tokens
        .preflight_warnings(&client, mailbox, ctx.protocol)
        .await
    else {
        return Vec::new();
    };
    found
        .into_iter()
        .filter_map(|f| {
            let rc = f.cause?;
            let fix = match rc {
                RootCause::Rc3 | RootCause::Rc11 => format!(
                    "{} If the signed-in account is the wrong one, run `{}` and pick {mailbox}.",
                    f.message,
                    ctx.authorize()
                ),
                _ => ctx.fix(rc),
            };
            Some(Diagnosed::cause(
                rc,
                f.severity.into(),
                f.message.clone(),
                fix,
            ))
        })
        .collect()
}

/// The findings of a failure whose words fit several causes. `User is authenticated but not
/// connected.` (RC2 by the decoders) is said alike for IMAP/POP disabled (RC2), a shared
/// mailbox without Full Access (RC3), a tenant client-access rule (RC6) and the wrong account
/// (RC11): a stored token that belongs to someone else than the mailbox makes it RC3/RC11
/// (the error, RC2 then a warning); otherwise RC2 is the error, and on a Microsoft
/// integration (Exchange Online, where client-access rules exist) RC6 is added as a warning,
/// since no answer tells the two apart.
fn ranked(f: Diagnosed, identity: &[Diagnosed], ctx: &Ctx<'_>) -> Vec<Diagnosed> {
    if f.code != RootCause::Rc2.id() || !f.is_error() {
        return vec![f];
    }
    let also = |rc: RootCause, why: &str| {
        Diagnosed::cause(
            rc,
            Level::Warning,
            format!("also possible for the same answer ({why}): {}", f.evidence),
            ctx.fix(rc),
        )
    };
    if let Some(who) = identity
        .iter()
        .find(|d| d.code == RootCause::Rc3.id() || d.code == RootCause::Rc11.id())
        && let Some(rc) = RootCause::from_id(who.code)
    {
        return vec![
            Diagnosed::cause(
                rc,
                Level::Error,
                format!("{} — {}", f.evidence, who.evidence),
                who.fix.clone(),
            ),
            also(RootCause::Rc2, "IMAP/POP disabled for the mailbox"),
        ];
    }
    let microsoft = ctx
        .integration
        .is_some_and(|i| i.provider == intake_core::preset::Provider::Microsoft);
    let mut out = vec![f.clone()];
    if microsoft {
        out.push(also(
            RootCause::Rc6,
            "Exchange Online says the same when a client-access rule blocks the protocol",
        ));
    }
    out
}

/// RC15: on a first sync (no checkpoint yet) the `start` policy would take more messages than
/// one batch. Not an error (Intake works in bounded batches from a checkpoint), but the
/// administrator may want to start later.
async fn flood(store: &Store, c: &ChannelSettings, counts: Counts, now: i64) -> Option<Diagnosed> {
    if store.checkpoint(&c.name).await.ok().flatten().is_some() {
        return None;
    }
    let (policy, would_take) = match &c.start {
        Start::All => ("all", counts.messages),
        Start::Unread => ("unread", counts.unread.unwrap_or(counts.messages)),
        Start::Now | Start::Since(_) => return None,
    };
    if would_take <= c.batch as u64 {
        return None;
    }
    let since = {
        let days = now.div_euclid(86_400) - 7;
        let (y, m, d) = civil_from_days(days);
        format!("since:{y:04}-{m:02}-{d:02}")
    };
    let pop3 = c.protocol() == crate::settings::Protocol::Pop3;
    let start_values = if pop3 {
        "start = \"now\"".to_string()
    } else {
        format!("start = \"now\" (or start = \"{since}\" for the last 7 days)")
    };
    Some(Diagnosed::cause(
        RootCause::Rc15,
        Level::Warning,
        format!(
            "{} messages in {} ({} unread); the first sync with start = \"{policy}\" would ingest \
             {would_take} of them, {} batches of {}",
            counts.messages,
            c.origin(),
            counts
                .unread
                .map_or_else(|| "unknown".to_string(), |u| u.to_string()),
            would_take.div_ceil(c.batch as u64),
            c.batch
        ),
        format!(
            "to ingest only new mail set {start_values} on [[channel]] \"{}\" before the first \
             run; to take them all keep start = \"{policy}\": Intake ingests in batches from a \
             checkpoint, so the flood only takes time",
            c.name
        ),
    ))
}

/// Days since 1970-01-01 to a civil date (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Findings of an integration: the lint's warnings (RC8 `common` tenant, …), credential
/// expiry within 30 days (RC14) and secrets written in the file.
pub fn integration_findings(
    settings: &Settings,
    i: &ResolvedIntegration,
    now: i64,
) -> Vec<Diagnosed> {
    let mut out = Vec::new();
    for w in &i.warnings {
        let fix_for = |rc: RootCause| format!("[[integration]] \"{}\": {}", i.name, rc.fix());
        out.push(match w.cause {
            Some(rc) => Diagnosed::cause(rc, w.severity.into(), w.to_string(), fix_for(rc)),
            // The lint's words for a secret written in the file.
            None if w.message.contains("written in the configuration file") => Diagnosed::own(
                OwnCode::PlaintextSecret,
                w.severity.into(),
                w.to_string(),
                format!(
                    "move the value out of the file: `env:VARIABLE` or `file:/path/readable/by/intake/only` \
                     for {} in [[integration]] \"{}\"",
                    w.path, i.name
                ),
            ),
            None => Diagnosed::own(
                OwnCode::Config,
                w.severity.into(),
                w.to_string(),
                format!("[[integration]] \"{}\": {}", i.name, w.message),
            ),
        });
    }
    if let Some((what, expires)) = crate::oauth::credential_expiry(i)
        && let Some(w) = intake_core::expiry::expiry_warning(expires, now)
    {
        let expired = w.days_left < 0 || w.stage == intake_core::expiry::ExpiryStage::Expired;
        out.push(Diagnosed::cause(
            RootCause::Rc14,
            if expired {
                Level::Error
            } else {
                Level::Warning
            },
            if expired {
                format!(
                    "the {what} of integration {} expired {} day(s) ago",
                    i.name, -w.days_left
                )
            } else {
                format!(
                    "the {what} of integration {} expires in {} day(s)",
                    i.name, w.days_left
                )
            },
            format!(
                "create a new {what} for the app (Entra admin center > App registrations > \
                 Certificates & secrets), put it in [[integration]] \"{}\" (client_secret = \
                 \"env:…\" / \"file:…\") with its new client_secret_expires, then run `intake \
                 doctor` again",
                i.name
            ),
        ));
    }
    if let Some(cfg) = settings
        .config
        .integrations
        .iter()
        .find(|c| c.name == i.name)
    {
        // What the lint did not already report.
        for f in plaintext_secrets(cfg) {
            if !out.iter().any(|o| o.code == f.code) {
                out.push(f);
            }
        }
    }
    out
}

fn plaintext_secrets(cfg: &IntegrationConfig) -> Vec<Diagnosed> {
    [
        ("client_secret", &cfg.client_secret),
        ("client_key", &cfg.client_key),
    ]
    .into_iter()
    .filter(|(_, v)| matches!(v, Some(SecretRef::Literal(_))))
    .map(|(key, _)| {
        Diagnosed::own(
            OwnCode::PlaintextSecret,
            Level::Warning,
            format!(
                "[[integration]] \"{}\": {key} is written in the file",
                cfg.name
            ),
            format!(
                "move the value out of the file: {key} = \"env:VARIABLE\" or {key} = \
                 \"file:/path/readable/by/intake/only\" in [[integration]] \"{}\"",
                cfg.name
            ),
        )
    })
    .collect()
}

/// The finding of a failed check: its root cause with the channel's names, or an own code.
fn failure_finding(report: &Report, error: Option<&RunError>, ctx: &Ctx<'_>) -> Option<Diagnosed> {
    if report.ok {
        return None;
    }
    let failed = report.stages.iter().rev().find(|s| !s.ok)?;
    let evidence = format!("{} {}: {}", failed.stage, failed.target, failed.detail);
    if let Some(e) = error
        && let Some(f) = token_finding(e, &evidence, ctx)
    {
        return Some(f);
    }
    match &report.root_cause {
        Some(cause) => {
            let rc = RootCause::from_id(cause.id)?;
            let fix = match rc {
                RootCause::Rc1 | RootCause::G1 if ctx.integration.is_some() => format!(
                    "[[channel]] \"{}\": the server refused the token. Run `{}` (it asks for the \
                     scopes of every protocol {} is used with) and check with `intake token {} \
                     --mailbox {} --protocol {}` that its audience and scopes fit. {}",
                    ctx.channel,
                    ctx.authorize(),
                    ctx.mailbox.unwrap_or_default(),
                    ctx.integration.map(|i| i.name.as_str()).unwrap_or_default(),
                    ctx.mailbox.unwrap_or_default(),
                    ctx.protocol.as_str(),
                    cause.fix
                ),
                _ => format!(
                    "[[channel]] \"{}\": {}",
                    ctx.channel,
                    with_names(&cause.fix, ctx)
                ),
            };
            Some(Diagnosed::cause(rc, Level::Error, evidence, fix))
        }
        None => {
            if ctx.password && failed.stage == "login" && check::password_refused(&failed.detail) {
                return Some(password_refused(ctx, evidence));
            }
            if let Some(RunError::Secret { .. }) = error {
                return Some(Diagnosed::own(
                    OwnCode::Config,
                    Level::Error,
                    evidence,
                    format!(
                        "[[channel]] \"{}\": give the secret a value (set the variable, fill the \
                         file, or type the password in the admin UI's Edit {}); nothing was sent \
                         to the server",
                        ctx.channel, ctx.channel
                    ),
                ));
            }
            // Words the live decoders do not know may still be in the catalogue.
            if let Some((entry, code)) = intake_core::catalogue::most_likely(&failed.detail) {
                let others: Vec<&str> = entry.causes.iter().skip(1).map(|(c, _)| c.id()).collect();
                let fix = match code {
                    intake_core::catalogue::Code::Root(rc) => ctx.fix(rc),
                    intake_core::catalogue::Code::Own(own) => own_fix(own, ctx),
                };
                let fix = if others.is_empty() {
                    fix
                } else {
                    format!(
                        "{fix} (if not, in this order: {}; docs/troubleshooting.md)",
                        others.join(", ")
                    )
                };
                let d = match code {
                    intake_core::catalogue::Code::Root(rc) => {
                        Diagnosed::cause(rc, Level::Error, evidence, fix)
                    }
                    intake_core::catalogue::Code::Own(c) => {
                        Diagnosed::own(c, Level::Error, evidence, fix)
                    }
                };
                return Some(d);
            }
            Some(Diagnosed::own(
                OwnCode::Undiagnosed,
                Level::Error,
                evidence,
                format!(
                    "[[channel]] \"{}\": the stage `{}` failed with the words above; \
                 docs/troubleshooting.md lists the known causes",
                    ctx.channel, failed.stage
                ),
            ))
        }
    }
}

/// A fix text with the channel's real names: the mailbox, and `intake folders` with the
/// channel it lists.
fn with_names(text: &str, ctx: &Ctx<'_>) -> String {
    let mut t = text.to_string();
    if let Some(m) = ctx.mailbox {
        t = t.replace("<mailbox>", m);
    }
    t.replace(
        "`intake folders`",
        &format!("`intake folders --channel {}`", ctx.channel),
    )
}

/// What a failure to get the token says: no token, refused for good, the wrong one, or the
/// identity provider's decoded error.
/// The fix of a token problem on an app-only integration (`grant = "client_credentials"`):
/// there is no sign-in to repeat, so `intake authorize` would not help. What the token may do
/// comes from the app registration's application permissions (and, for IMAP, POP3 and SMTP,
/// from Exchange's service principal and its mailbox permission); Intake asks for a new token
/// at the next connection, so `intake token` shows at once whether the change took.
fn app_only_fix(ctx: &Ctx<'_>, i: &ResolvedIntegration, what: &str) -> String {
    use intake_core::preset::Protocol as P;
    let mailbox = ctx.mailbox.unwrap_or("the mailbox");
    let grant = match ctx.protocol {
        P::Graph => "the Microsoft Graph application permission Mail.ReadWrite".to_string(),
        p => {
            let permission = match p {
                P::Pop3 => "POP.AccessAsApp",
                P::Smtp => "SMTP.SendAsApp",
                _ => "IMAP.AccessAsApp",
            };
            format!(
                "the Office 365 Exchange Online application permission {permission}, then in \
                 Exchange Online PowerShell New-ServicePrincipal for the app (the Enterprise \
                 Application's object ID) and Add-MailboxPermission -Identity {mailbox} -User \
                 <that service principal> -AccessRights FullAccess"
            )
        }
    };
    let protocol = ctx.protocol.as_str().to_ascii_lowercase();
    format!(
        "[[channel]] \"{}\": integration \"{}\" signs in as the application (grant = \
         \"client_credentials\"), so there is no sign-in to repeat: {what}. Check its `cloud` \
         and `tenant`, and give app {} {grant}, with admin consent; then `intake token {} \
         --mailbox {mailbox} --protocol {protocol}` fetches a new token and shows its roles",
        ctx.channel, i.name, i.client_id, i.name
    )
}

fn token_finding(e: &RunError, evidence: &str, ctx: &Ctx<'_>) -> Option<Diagnosed> {
    let authorize = ctx.authorize();
    let app_only = ctx
        .integration
        .filter(|i| i.grant == Grant::ClientCredentials);
    match (e, app_only) {
        (RunError::Token(TokenError::NotAuthorized { .. }), Some(i))
        | (RunError::Token(TokenError::NeedsReauthorization { .. }), Some(i)) => {
            Some(Diagnosed::own(
                OwnCode::TokenMissing,
                Level::Error,
                evidence,
                app_only_fix(ctx, i, "the token endpoint gave no usable token"),
            ))
        }
        (RunError::Token(TokenError::WrongToken { finding, .. }), Some(i)) => {
            Some(Diagnosed::cause(
                finding.cause.unwrap_or(RootCause::Rc1),
                Level::Error,
                evidence,
                app_only_fix(ctx, i, &finding.message),
            ))
        }
        _ => None,
    }
    .or_else(|| match e {
        RunError::Token(TokenError::NotAuthorized { .. }) => Some(Diagnosed::own(
            OwnCode::TokenMissing,
            Level::Error,
            evidence,
            format!(
                "run `{authorize}` (one sign-in covers every protocol the mailbox's channels use)"
            ),
        )),
        RunError::Token(TokenError::NeedsReauthorization { .. }) => Some(Diagnosed::own(
            OwnCode::TokenReauthorize,
            Level::Error,
            evidence,
            format!(
                "run `{authorize}` and sign in as {}",
                ctx.mailbox.unwrap_or("the mailbox owner")
            ),
        )),
        RunError::Token(TokenError::WrongToken { finding, .. }) => {
            let rc = finding.cause.unwrap_or(RootCause::Rc1);
            Some(Diagnosed::cause(
                rc,
                Level::Error,
                evidence,
                format!(
                    "run `{authorize}`: Intake then asks for the scopes of {} ({})",
                    ctx.protocol.as_str().to_ascii_uppercase(),
                    finding.message
                ),
            ))
        }
        RunError::Token(TokenError::OAuth(o)) | RunError::OAuth(o) => match o {
            intake_mail::oauth::OAuthError::Endpoint { diagnosis, .. } => {
                let fix = format!("[[channel]] \"{}\": {}", ctx.channel, diagnosis.fix);
                Some(match diagnosis.cause {
                    Some(rc) => Diagnosed::cause(rc, Level::Error, evidence, fix),
                    None => Diagnosed::own(OwnCode::Undiagnosed, Level::Error, evidence, fix),
                })
            }
            intake_mail::oauth::OAuthError::Http(_) => {
                let proxy = ctx.integration.and_then(|i| i.proxy.as_deref());
                let rc = if proxy.is_some() {
                    RootCause::Rc16
                } else {
                    RootCause::Rc7
                };
                Some(Diagnosed::cause(rc, Level::Error, evidence, ctx.fix(rc)))
            }
            _ => None,
        },
        _ => None,
    })
}

/// The `token` stage: reach the token endpoint (TCP, through the proxy when one applies,
/// naming it and what it answered), then an HTTPS request (TLS verified with `ca_file`): any
/// HTTP answer proves the login leg works. Nothing is signed in or refreshed.
async fn token_stage(
    i: &ResolvedIntegration,
    limit: std::time::Duration,
) -> Result<StageResult, Report> {
    let url = i.endpoints.token_url.clone();
    let parsed = url::Url::parse(&url).ok();
    let host = parsed
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let port = parsed
        .as_ref()
        .and_then(url::Url::port_or_known_default)
        .unwrap_or(443);
    let target = format!("{host}:{port}");
    let (proxy_url, no_proxy) =
        intake_mail::http::resolve_proxy_env(i.proxy.as_deref(), &i.no_proxy);
    let via = proxy_url
        .as_deref()
        .filter(|_| !intake_mail::net::bypasses(&host, &no_proxy));
    let shown_proxy = via.map(intake_mail::net::redact);
    // A tunnel probe names the proxy and its answer (refused, 407, 403, timeout); HTTPS
    // proxies are left to the HTTP client below.
    let probe = via
        .filter(|p| intake_mail::net::proxy_label(p).is_ok())
        .map(|p| intake_mail::net::ProxySettings {
            url: p.to_string(),
            no_proxy: no_proxy.clone(),
        });
    if via.is_none() || probe.is_some() {
        let tried = tokio::time::timeout(
            limit,
            intake_mail::net::connect(&host, port, probe.as_ref()),
        )
        .await;
        let failure = match tried {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!(
                "no answer within {}s{}",
                limit.as_secs(),
                shown_proxy
                    .as_deref()
                    .map(|p| format!(" from proxy {p}"))
                    .unwrap_or_default()
            )),
        };
        if let Some(detail) = failure {
            let cause = match &shown_proxy {
                Some(p) => Cause::new(
                    RootCause::Rc16,
                    format!(
                        "the proxy {p} did not open a tunnel to the login host {target} ({detail}): \
                         allow CONNECT to {target} on the proxy (and its authentication), fix \
                         `proxy` in [[integration]] \"{}\", or add {host} to its no_proxy",
                        i.name
                    ),
                ),
                None => Cause::new(
                    RootCause::Rc7,
                    format!(
                        "the login host {target} cannot be reached from this machine: allow \
                         outbound TCP {port} to {host}, or set `proxy` in [[integration]] \"{}\"",
                        i.name
                    ),
                ),
            };
            return Err(Report::default().fail("token", target, detail, Some(cause)));
        }
    }
    let ca_pem = match &i.ca_file {
        Some(r) => match intake_mail::secret::resolve(r) {
            Ok(pem) => Some(
                secrecy::ExposeSecret::expose_secret(&pem)
                    .as_bytes()
                    .to_vec(),
            ),
            Err(e) => {
                return Err(Report::default().fail("token", target, format!("ca_file: {e}"), None));
            }
        },
        None => None,
    };
    let client = intake_mail::http::client(&intake_mail::http::HttpOptions {
        proxy: proxy_url.clone(),
        no_proxy: no_proxy.clone(),
        ca_pem,
        timeout: Some(limit),
        ..Default::default()
    });
    let client = match client {
        Ok(c) => c,
        Err(e) => return Err(Report::default().fail("token", target, e.to_string(), None)),
    };
    match client.get(&url).send().await {
        Ok(resp) => Ok(StageResult {
            stage: "token",
            target,
            ok: true,
            detail: format!(
                "the token endpoint answered HTTP {} {}",
                resp.status().as_u16(),
                shown_proxy
                    .as_deref()
                    .map(|p| format!("through proxy {p}"))
                    .unwrap_or_else(|| "directly".to_string())
            ),
        }),
        Err(e) => {
            let detail = intake_mail::http::explain(&e);
            let certificate = intake_mail::http::certificate_hint(&detail).is_some();
            let rc = if shown_proxy.is_some() {
                RootCause::Rc16
            } else {
                RootCause::Rc7
            };
            let fix = if certificate {
                format!(
                    "TLS to the login host {target} failed on its certificate{}: if a proxy or \
                     firewall inspects TLS, set ca_file in [[integration]] \"{}\" to its CA \
                     certificate (PEM)",
                    shown_proxy
                        .as_deref()
                        .map(|p| format!(" (through proxy {p})"))
                        .unwrap_or_default(),
                    i.name
                )
            } else {
                format!(
                    "the login host {target} did not answer over HTTPS{}: check the firewall \
                     and `proxy` in [[integration]] \"{}\"",
                    shown_proxy
                        .as_deref()
                        .map(|p| format!(" through proxy {p}"))
                        .unwrap_or_default(),
                    i.name
                )
            };
            Err(Report::default().fail("token", target, detail, Some(Cause::new(rc, fix))))
        }
    }
}

/// The root cause a source names for a refused setting (a Graph display-name folder: RC5).
fn source_cause(e: &intake_mail::source::SourceError) -> Option<Cause> {
    match e {
        intake_mail::source::SourceError::Graph(g) => {
            g.root_cause().map(|rc| Cause::new(rc, rc.fix()))
        }
        _ => None,
    }
}

async fn staged(
    settings: &Settings,
    store: &Store,
    c: &ChannelSettings,
) -> (Report, Option<RunError>) {
    let failed = |e: RunError| {
        let cause = match &e {
            RunError::Source { error, .. } | RunError::Unsupported(error) => source_cause(error),
            _ => None,
        };
        (
            Report::default().fail("config", c.name.clone(), format!("{e:#}"), cause),
            Some(e),
        )
    };
    let ok_counts = |what: &str, counts: Counts| {
        let mut r = Report::new();
        r.counts = Some(counts);
        r.pass("counts", what, "counted on disk; nothing read");
        r
    };
    // The login leg first, for every OAuth channel.
    let integration = match &c.source {
        SourceSettings::Imap(s) | SourceSettings::Pop3(s) => match &s.auth {
            Auth::OAuth { integration, .. } => settings.integrations.get(integration),
            Auth::Password(_) => None,
        },
        SourceSettings::Graph(g) => settings.integrations.get(&g.integration),
        _ => None,
    };
    let limit = c
        .timeout
        .unwrap_or(std::time::Duration::from_secs(30))
        .min(std::time::Duration::from_secs(30));
    let token = match integration {
        Some(i) => match token_stage(i, limit).await {
            Ok(stage) => {
                check::emit(&stage);
                Some(stage)
            }
            Err(report) => return (report, None),
        },
        None => None,
    };
    let with_token = |mut r: Report| {
        if let Some(t) = &token {
            r.stages.insert(0, t.clone());
        }
        r
    };
    let (report, error) = match &c.source {
        SourceSettings::Imap(s) => match open::imap_settings(settings, store, c, s).await {
            Ok(s) => (check::check_imap(&s).await, None),
            Err(e) => failed(e),
        },
        SourceSettings::Pop3(s) => match open::pop3_settings(settings, store, c, s).await {
            Ok(s) => (check::check_pop3(&s).await, None),
            Err(e) => failed(e),
        },
        SourceSettings::Graph(g) => match open::open_graph(settings, store, c, g).await {
            Ok(Source::Graph(mut src, _)) => (check::check_graph(&mut src, &g.folder).await, None),
            Ok(_) => (
                Report::default().fail("config", c.name.clone(), "not a Graph source", None),
                None,
            ),
            Err(e) => failed(e),
        },
        SourceSettings::Maildir(path) | SourceSettings::Mbox(path) => {
            match crate::source::folder::count(path) {
                Ok(counts) => (ok_counts(&path.display().to_string(), counts), None),
                Err(e) => (
                    Report::default().fail("config", c.name.clone(), format!("{e:#}"), None),
                    None,
                ),
            }
        }
    };
    (with_token(report), error)
}

/// The diagnosis of a channel that failed in `intake run` or `intake folders`, ranked as
/// `intake doctor` ranks it: [`diagnose_error`], and when its words fit several causes
/// (`User is authenticated but not connected.`) the stored token's identity decides between
/// RC2 and RC3/RC11 with the doctor's own [`preflight`] and [`ranked`], so the mail log
/// records the doctor's code and fix. Reads the store, no network.
pub async fn diagnose_failure(
    settings: &Settings,
    store: &Store,
    c: &ChannelSettings,
    e: &RunError,
) -> Option<Diagnosed> {
    let d = diagnose_error(settings, c, e)?;
    if d.code != RootCause::Rc2.id() || !d.is_error() {
        return Some(d);
    }
    let ctx = Ctx::of(settings, c);
    let identity = match (ctx.integration, ctx.mailbox) {
        (Some(i), Some(m)) => preflight(settings, store, i, m, &ctx).await,
        _ => Vec::new(),
    };
    ranked(d, &identity, &ctx)
        .into_iter()
        .find(Diagnosed::is_error)
}

/// The diagnosis of a channel that failed in `intake run` (code and fix, as the doctor would
/// give them), from the error alone (no ranking by the stored token: see
/// [`diagnose_failure`]): token errors, the server's answer to a login or SELECT,
/// Graph's decoded error, a connection the firewall or proxy refused, else the catalogue.
/// `None` when nothing is known about it.
pub fn diagnose_error(settings: &Settings, c: &ChannelSettings, e: &RunError) -> Option<Diagnosed> {
    use intake_mail::source::SourceError;
    let (oauth, proxy) = match &c.source {
        SourceSettings::Imap(s) | SourceSettings::Pop3(s) => {
            (matches!(s.auth, Auth::OAuth { .. }), s.proxy.is_some())
        }
        SourceSettings::Graph(g) => (true, g.proxy.is_some()),
        _ => (false, false),
    };
    let ctx = Ctx::of(settings, c);
    let evidence = format!("{e:#}");
    if let Some(d) = token_finding(e, &evidence, &ctx) {
        return Some(d);
    }
    let source = match e {
        RunError::Source { error, .. } | RunError::Unsupported(error) => Some(error),
        _ => None,
    };
    let cause = match source {
        Some(SourceError::Auth {
            server, challenge, ..
        }) => check::diagnose_login(
            &format!("{server} {}", challenge.as_deref().unwrap_or("")),
            oauth,
        ),
        Some(SourceError::Refused { command, server })
            if !command.starts_with("SELECT") && check::diagnose_login(server, oauth).is_some() =>
        {
            check::diagnose_login(server, oauth)
        }
        Some(SourceError::Refused { command, server }) if command.starts_with("SELECT") => {
            check::diagnose_login(server, oauth).or(Some(Cause::new(
                RootCause::Rc5,
                "use the protocol name of the folder (INBOX) or a name from `intake folders`",
            )))
        }
        Some(SourceError::Graph(g)) => g.root_cause().map(|rc| Cause::new(rc, rc.fix())),
        Some(SourceError::Connect { .. }) => {
            let rc = if proxy {
                RootCause::Rc16
            } else {
                RootCause::Rc7
            };
            Some(Cause::new(rc, rc.fix()))
        }
        _ => None,
    };
    if cause.is_none()
        && ctx.password
        && let Some(SourceError::Auth { server, .. }) = source
        && check::password_refused(server)
    {
        return Some(password_refused(&ctx, evidence));
    }
    if let Some(cause) = cause
        && let Some(rc) = RootCause::from_id(cause.id)
    {
        return Some(Diagnosed::cause(
            rc,
            Level::Error,
            evidence,
            format!(
                "[[channel]] \"{}\": {}",
                c.name,
                with_names(&cause.fix, &ctx)
            ),
        ));
    }
    let (_, code) = intake_core::catalogue::most_likely(&evidence)?;
    Some(match code {
        intake_core::catalogue::Code::Root(rc) => {
            Diagnosed::cause(rc, Level::Error, evidence, ctx.fix(rc))
        }
        intake_core::catalogue::Code::Own(own) => {
            Diagnosed::own(own, Level::Error, evidence, own_fix(own, &ctx))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
