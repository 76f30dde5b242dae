//! `intake authorize INTEGRATION [--mailbox ADDR] [--browser]` and `intake token INTEGRATION
//! --mailbox ADDR`: completing an OAuth grant from a terminal, and checking a stored token.
//!
//! Device code is the default (works on headless hosts). `--browser` listens on 127.0.0.1 for
//! the redirect (a loopback redirect URI, RFC 8252) and prints the URL to open. Client
//! credentials need no user. Afterwards Intake prints who the token belongs to and warns when
//! that is not the mailbox (RC11; a shared mailbox needs Full Access delegation, RC3).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use intake_core::integration::ResolvedIntegration;
use intake_core::preset::{Grant, Protocol};
use intake_core::token::TokenIdentity;
use intake_mail::oauth::OAuthClient;
use intake_store::{Keyring, Store};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;
use crate::oauth::{self, TokenError, TokenService, fingerprint};
use crate::settings::{Auth, Settings, SourceSettings};
use crate::signin;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProtocolArg {
    Imap,
    Pop3,
    Smtp,
    Graph,
}

impl From<ProtocolArg> for Protocol {
    fn from(p: ProtocolArg) -> Self {
        match p {
            ProtocolArg::Imap => Protocol::Imap,
            ProtocolArg::Pop3 => Protocol::Pop3,
            ProtocolArg::Smtp => Protocol::Smtp,
            ProtocolArg::Graph => Protocol::Graph,
        }
    }
}

#[derive(Debug, Args)]
pub struct AuthorizeArgs {
    /// The [[integration]] name.
    pub integration: String,
    /// The mailbox the token is for (default: the account that signs in).
    #[arg(long)]
    pub mailbox: Option<String>,
    /// Authorization code + PKCE through a browser, with a loopback redirect on 127.0.0.1.
    #[arg(long)]
    pub browser: bool,
    /// Port for the loopback redirect listener (default: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// With --browser: start the flow and print the URL as JSON, then exit; finish later, on any
    /// node, with --callback-url (for a browser on another machine).
    #[arg(long)]
    pub print_url: bool,
    /// Finish a flow started with --print-url: the full URL the browser was sent back to.
    #[arg(long, value_name = "URL")]
    pub callback_url: Option<String>,
    /// Device-code sign-in, whatever `grant` says (the code is shown here; sign in on any
    /// device).
    #[arg(long, conflicts_with = "browser")]
    pub device: bool,
    /// Protocol the token is for (one token has one audience). Default: every protocol the
    /// mailbox's channels use.
    #[arg(long, value_enum)]
    pub protocol: Option<ProtocolArg>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    pub integration: String,
    #[arg(long)]
    pub mailbox: String,
    #[arg(long, value_enum)]
    pub protocol: Option<ProtocolArg>,
    #[arg(long)]
    pub json: bool,
}

/// Exit code when a token must be re-authorized (scripts can tell this apart from other errors).
pub const EXIT_NEEDS_REAUTHORIZATION: u8 = 3;

async fn open(
    config: &Config,
    db: &str,
    name: &str,
) -> anyhow::Result<(ResolvedIntegration, OAuthClient, TokenService)> {
    let integration = config.integration(name)?;
    for w in &integration.warnings {
        eprintln!("warning: {w}");
    }
    let client = OAuthClient::new(&integration)?;
    let keys = Keyring::from_env_or_file(&config.secret_key_file())?;
    let store = Store::connect(db)
        .await
        .with_context(|| format!("opening the database {}", super::ingest::redact(db)))?;
    for w in oauth::credential_warnings(
        &store,
        std::slice::from_ref(&integration),
        intake_store::now(),
    )
    .await?
    {
        eprintln!("warning: {w}");
    }
    Ok((integration, client, TokenService::new(store, keys)))
}

/// Every channel signing in through an integration: `(integration, mailbox, protocol)`, in
/// file order.
fn oauth_channels(settings: &Settings) -> impl Iterator<Item = (&str, &str, Protocol)> {
    settings.channels.iter().filter_map(|c| {
        let (name, m, p) = match &c.source {
            SourceSettings::Imap(s) | SourceSettings::Pop3(s) => match &s.auth {
                Auth::OAuth { integration, .. } => (integration, &s.mailbox, c.protocol()),
                Auth::Password(_) => return None,
            },
            SourceSettings::Graph(g) => (&g.integration, &g.mailbox, c.protocol()),
            _ => return None,
        };
        let p = match p {
            crate::settings::Protocol::Imap => Protocol::Imap,
            crate::settings::Protocol::Pop3 => Protocol::Pop3,
            crate::settings::Protocol::Graph => Protocol::Graph,
            _ => return None,
        };
        Some((name.as_str(), m.as_str(), p))
    })
}

/// The protocols the channels of `mailbox` (all channels of the integration when `None`) use
/// with `integration`, in file order.
pub fn channel_protocols(
    settings: &Settings,
    integration: &str,
    mailbox: Option<&str>,
) -> Vec<Protocol> {
    let mut out = Vec::new();
    for (name, m, p) in oauth_channels(settings) {
        if name == integration
            && mailbox.is_none_or(|want| want.eq_ignore_ascii_case(m))
            && !out.contains(&p)
        {
            out.push(p);
        }
    }
    out
}

/// The mailboxes of the channels that sign in through `integration`, in file order, once each
/// (what the admin UI offers to authorize).
pub fn channel_mailboxes(settings: &Settings, integration: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (name, m, _) in oauth_channels(settings) {
        if name == integration && !out.iter().any(|x| x.eq_ignore_ascii_case(m)) {
            out.push(m.to_string());
        }
    }
    out
}

/// How the user signs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Browser,
    Device,
    ClientCredentials,
}

/// `--browser` / `--device` win; else the `grant` written in the file; else device code
/// where the provider has a device endpoint and the browser where it has none (Google).
fn choose_flow(
    a: &AuthorizeArgs,
    written: Option<Grant>,
    i: &ResolvedIntegration,
) -> anyhow::Result<Flow> {
    let has_device = i.endpoints.device_authorization_url.is_some();
    let flow = if i.grant == Grant::ClientCredentials {
        Flow::ClientCredentials
    } else if a.browser || a.callback_url.is_some() {
        Flow::Browser
    } else if a.device {
        Flow::Device
    } else {
        match written {
            Some(Grant::AuthorizationCode) => Flow::Browser,
            Some(Grant::DeviceCode) => Flow::Device,
            _ if has_device => Flow::Device,
            _ => Flow::Browser,
        }
    };
    if flow == Flow::Device && !has_device {
        anyhow::bail!(
            "integration {} has no device-code endpoint ({} does not offer device sign-in for \
             mail): run `intake authorize {}{} --browser`, or set grant = \"authorization_code\"",
            i.name,
            i.provider.as_str(),
            i.name,
            a.mailbox
                .as_deref()
                .map(|m| format!(" --mailbox {m}"))
                .unwrap_or_default()
        );
    }
    Ok(flow)
}

pub async fn authorize(
    settings: &Settings,
    db: &str,
    a: AuthorizeArgs,
) -> anyhow::Result<ExitCode> {
    let config = &*settings.config;
    let (integration, client, tokens) = open(config, db, &a.integration).await?;
    let written = config
        .integrations
        .iter()
        .find(|i| i.name == a.integration)
        .and_then(|i| i.grant);
    let flow = choose_flow(&a, written, &integration)?;
    let plan_for = |mailbox: &str| -> oauth::AuthPlan {
        match a.protocol {
            Some(p) => oauth::AuthPlan::new(&integration, &[p.into()]),
            None => oauth::AuthPlan::new(
                &integration,
                &channel_protocols(
                    settings,
                    &integration.name,
                    (!mailbox.is_empty()).then_some(mailbox),
                ),
            ),
        }
    };
    // Consent for every resource in the browser; the token comes one resource at a time.
    let consent = |plan: &oauth::AuthPlan| {
        let mut all: Vec<String> = Vec::new();
        for n in 0..plan.groups.len() {
            for s in plan.scopes(&integration, n) {
                if !all.contains(&s) {
                    all.push(s);
                }
            }
        }
        all
    };
    let (mailbox, plan, first) = match flow {
        Flow::ClientCredentials => {
            let mailbox = a.mailbox.clone().unwrap_or_else(|| "*".into());
            let plan = plan_for(&mailbox);
            let mut got = Vec::new();
            for (n, (_, protocols)) in plan.groups.iter().enumerate() {
                let t = client
                    .client_credentials(&plan.scopes(&integration, n))
                    .await?;
                let id = tokens.save(&client, &mailbox, protocols[0], &t).await?;
                got.push(signin::Obtained {
                    protocols: protocols.clone(),
                    identity: id,
                    expires_at: t.expires_at,
                    granted: t.scopes.clone(),
                });
            }
            return report(&integration, &mailbox, got, a.json);
        }
        Flow::Browser if a.callback_url.is_some() => {
            let cb = a.callback_url.as_deref().unwrap_or_default();
            let url = url::Url::parse(cb)
                .context("--callback-url must be the full URL the browser was sent to")?;
            let (state, code) = parse_callback(&url)?;
            let (mailbox, id, plan, t) = tokens
                .complete_authorization_with(&client, &state, &code, plan_for)
                .await?;
            (signed_in_mailbox(mailbox, &id), plan, (id, t))
        }
        Flow::Browser if a.print_url => {
            let redirect = format!(
                "http://127.0.0.1:{}/callback",
                if a.port == 0 { 8400 } else { a.port }
            );
            let hint = a.mailbox.clone().unwrap_or_default();
            let url = tokens
                .start_authorization_with(&client, &hint, &redirect, &consent(&plan_for(&hint)))
                .await?;
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string(
                        &json!({"url": url, "redirect_uri": redirect, "expires_in": oauth::FLOW_SECONDS})
                    )?
                );
            } else {
                println!(
                    "Open this URL, sign in, then run `intake authorize {} --callback-url '<the URL the browser ends on>'` on any node:\n\n{url}",
                    integration.name
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        Flow::Browser => {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", a.port)).await?;
            let redirect = format!(
                "http://127.0.0.1:{}/callback",
                listener.local_addr()?.port()
            );
            let hint = a.mailbox.clone().unwrap_or_default();
            let url = tokens
                .start_authorization_with(&client, &hint, &redirect, &consent(&plan_for(&hint)))
                .await?;
            eprintln!(
                "Open this URL in a browser and sign in as {}:\n\n{url}\n",
                if hint.is_empty() {
                    "the mailbox owner"
                } else {
                    &hint
                }
            );
            let (state, code) = wait_for_callback(&listener).await?;
            let (mailbox, id, plan, t) = tokens
                .complete_authorization_with(&client, &state, &code, plan_for)
                .await?;
            (signed_in_mailbox(mailbox, &id), plan, (id, t))
        }
        Flow::Device => {
            let hint = a.mailbox.clone().unwrap_or_default();
            let plan = plan_for(&hint);
            let scopes = plan.scopes(&integration, 0);
            let sign_in = client.start_device(&scopes).await?;
            eprintln!("{}", sign_in.message());
            let t = client.finish_device(&sign_in, &scopes).await?;
            let id_token = t
                .id_token
                .as_ref()
                .map(|s| secrecy::ExposeSecret::expose_secret(s).to_string());
            let id = intake_mail::oauth::claims::identity(
                secrecy::ExposeSecret::expose_secret(&t.access_token),
                id_token.as_deref(),
            );
            let mailbox = a
                .mailbox
                .clone()
                .unwrap_or_else(|| id.username.clone().unwrap_or_default().to_lowercase());
            let plan = if hint.is_empty() {
                plan_for(&mailbox)
            } else {
                plan
            };
            tokens
                .save(&client, &mailbox, plan.groups[0].1[0], &t)
                .await?;
            (mailbox, plan, (id, t))
        }
    };
    let got = signin::redeem_rest(&tokens, &client, &integration, &mailbox, &plan, first).await?;
    report(&integration, &mailbox, got, a.json)
}

/// Print what was authorized (text or JSON) with the pre-flight findings of every token.
fn report(
    integration: &ResolvedIntegration,
    mailbox: &str,
    got: Vec<signin::Obtained>,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let findings = signin::findings(integration, mailbox, &got);
    if as_json {
        let doc = signin::document(integration, mailbox, &got, &findings);
        println!("{}", serde_json::to_string(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    let tokens_json = signin::document(integration, mailbox, &got, &[])["tokens"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    print_identity(
        &integration.name,
        mailbox,
        &got[0].identity,
        &findings,
        tokens_json,
    );
    Ok(ExitCode::SUCCESS)
}

fn print_identity(
    integration: &str,
    mailbox: &str,
    id: &TokenIdentity,
    findings: &[intake_core::diagnosis::Finding],
    tokens: Vec<serde_json::Value>,
) {
    println!("Authorized {integration} for {mailbox}.");
    println!(
        "  signed in as: {}",
        id.username.as_deref().unwrap_or("(not in the token)")
    );
    if let Some(t) = &id.tenant {
        println!("  tenant:       {t}");
    }
    if let Some(aud) = &id.audience {
        println!("  audience:     {aud}");
    }
    if !id.scopes.is_empty() {
        println!("  scopes:       {}", id.scopes.join(" "));
    }
    if !id.roles.is_empty() {
        println!("  roles:        {}", id.roles.join(" "));
    }
    for t in tokens.iter().skip(1) {
        println!(
            "  also for {}: audience {}",
            t["protocols"]
                .as_array()
                .map(|l| l
                    .iter()
                    .filter_map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            t["audience"].as_str().unwrap_or("(not in the token)")
        );
    }
    for f in findings {
        println!("warning: {f}");
    }
}

/// Accept connections on the loopback listener until one carries `?code=…&state=…` (or an
/// OAuth error), answer it with a short page, and return (state, code).
async fn wait_for_callback(listener: &tokio::net::TcpListener) -> anyhow::Result<(String, String)> {
    loop {
        let (mut sock, _) = listener.accept().await?;
        let mut buf = vec![0u8; 16 * 1024];
        let mut n = 0;
        while n < buf.len() {
            let r = sock.read(&mut buf[n..]).await?;
            if r == 0 {
                break;
            }
            n += r;
            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let head = String::from_utf8_lossy(&buf[..n]);
        let target = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("/");
        let url = url::Url::parse(&format!("http://127.0.0.1{target}"))?;
        let is_callback = url.query_pairs().any(|(k, _)| k == "code" || k == "error");
        let (status, body, result) = match (is_callback, parse_callback(&url)) {
            (false, _) => ("404 Not Found", "Not the OAuth callback.".to_string(), None),
            (true, Ok(pair)) => (
                "200 OK",
                "Intake is authorized. You can close this window.".to_string(),
                Some(Ok(pair)),
            ),
            (true, Err(e)) => ("400 Bad Request", format!("{e:#}"), Some(Err(e))),
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = sock.write_all(resp.as_bytes()).await;
        if let Some(r) = result {
            return r;
        }
    }
}

/// (state, code) from an OAuth callback URL, or the decoded error it carries instead.
fn parse_callback(url: &url::Url) -> anyhow::Result<(String, String)> {
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    if let (Some(state), Some(code)) = (q.get("state"), q.get("code")) {
        return Ok((state.clone(), code.clone()));
    }
    let raw = intake_core::aadsts::TokenEndpointError {
        error: q
            .get("error")
            .cloned()
            .unwrap_or_else(|| "invalid_request".into()),
        error_description: q.get("error_description").cloned(),
        ..Default::default()
    };
    let d = intake_core::aadsts::classify(&raw);
    anyhow::bail!("sign-in failed: {d}\nfix: {}", d.fix)
}

/// The mailbox a finished flow is for: the one it was started for, else the signed-in user.
fn signed_in_mailbox(started_for: String, id: &TokenIdentity) -> String {
    if started_for.is_empty() {
        id.username.clone().unwrap_or_default().to_lowercase()
    } else {
        started_for
    }
}

/// `intake token`: make sure a valid access token exists (refreshing single-flight when due) and
/// print its metadata — never the token, only a fingerprint.
pub async fn token(settings: &Settings, db: &str, a: TokenArgs) -> anyhow::Result<ExitCode> {
    let config = &*settings.config;
    let (integration, client, tokens) = open(config, db, &a.integration).await?;
    let protocol = a.protocol.map(Protocol::from).unwrap_or_else(|| {
        channel_protocols(settings, &integration.name, Some(&a.mailbox))
            .first()
            .copied()
            .unwrap_or_else(|| oauth::default_protocol(&integration))
    });
    match tokens.access_token(&client, &a.mailbox, protocol).await {
        Ok(t) => {
            let keys = Keyring::from_env_or_file(&config.secret_key_file())?;
            let stored = tokens
                .store()
                .tokens(integration.token_resource(protocol))
                .load_token(&keys, &integration.name, &a.mailbox)
                .await?;
            let (expires_at, version, id) = stored
                .map(|s| (s.expires_at, s.version, s.identity))
                .unwrap_or_default();
            if a.json {
                let v = json!({"integration": integration.name, "mailbox": a.mailbox, "status": "valid",
                    "expires_at": expires_at, "version": version, "fingerprint": fingerprint(&t), "username": id.username,
                    "protocol": protocol.as_str(), "audience": id.audience, "scopes": id.scopes, "roles": id.roles});
                println!("{}", serde_json::to_string(&v)?);
            } else {
                println!(
                    "{} / {} ({}): valid until {expires_at} (token {})",
                    integration.name,
                    a.mailbox,
                    protocol.as_str(),
                    fingerprint(&t)
                );
                println!(
                    "  audience: {}",
                    id.audience.as_deref().unwrap_or("(not in the token)")
                );
                if !id.scopes.is_empty() {
                    println!("  scopes:   {}", id.scopes.join(" "));
                }
                if !id.roles.is_empty() {
                    println!("  roles:    {}", id.roles.join(" "));
                }
                if let Some(u) = &id.username {
                    println!("  user:     {u}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ TokenError::NeedsReauthorization { .. }) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(EXIT_NEEDS_REAUTHORIZATION))
        }
        Err(TokenError::OAuth(intake_mail::oauth::OAuthError::Endpoint { diagnosis, raw })) => {
            eprintln!("error: {diagnosis} [{raw}]\nfix: {}", diagnosis.fix);
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}
