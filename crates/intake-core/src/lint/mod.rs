//! Lint of integration tables and of tokens against what they will be used for.
//!
//! - [`lint_integration`]: required keys, tenant (`/common`, RC8), mixed clouds (RC9, G2),
//!   scope mistakes (RC1, G1), credentials and secret expiry (RC14), URL and proxy syntax (RC16).
//!   Paths are `integration.<key>`; [`lint_integrations`] numbers them `integration[i].<key>`.
//! - [`check_token_for_protocol`]: the token's `aud`, `scp`/`roles` and `iss` against the
//!   protocol and cloud (RC1, G1, G2, RC9), before connecting.
//! - [`check_identity_matches_mailbox`]: who signed in versus the mailbox (RC11, RC3).
//!
//! Token claims are for diagnosis only (docs/troubleshooting.md, "Token claims"): absent claims (opaque tokens) produce no
//! finding, and an audience Intake does not recognise is a warning, not an error.
//!
//! Submodules: `cloud` (RC9/G2 host checks), `scopes` (RC1/G1 scope composition) and `token`
//! (token and mailbox checks). Tests: `tests/lint_config.rs`, `tests/token_checks.rs`.

mod cloud;
mod scopes;
mod token;

use std::collections::BTreeSet;

use crate::diagnosis::{Finding, RootCause};
use crate::expiry::parse_date_to_unix_days;
use crate::integration::IntegrationConfig;
use crate::preset::cloud::{Grant, Provider};
use crate::preset::hosts::host_of;

pub use token::{check_identity_matches_mailbox, check_token_for_protocol};

/// Tenant values that are not a tenant: they only work for multi-tenant apps (RC8).
const MULTI_TENANT_ALIASES: [&str; 3] = ["common", "organizations", "consumers"];

/// Lints one `[[integration]]` table. Errors make [`IntegrationConfig::resolve`] fail.
pub fn lint_integration(cfg: &IntegrationConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    lint_required(cfg, &mut out);
    lint_tenant(cfg, &mut out);
    lint_provider_specific(cfg, &mut out);
    lint_credentials(cfg, &mut out);
    lint_urls(cfg, &mut out);
    if cfg.provider == Provider::Microsoft {
        cloud::lint_clouds(cfg, &mut out);
        if let Some(scopes) = &cfg.scopes {
            scopes::lint_microsoft_scopes(cfg.cloud(), cfg.grant(), scopes, &mut out);
        }
    }
    out
}

/// Lints every table (paths `integration[i].<key>`) and checks that names are unique.
pub fn lint_integrations(list: &[IntegrationConfig]) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (i, cfg) in list.iter().enumerate() {
        out.extend(lint_integration(cfg).into_iter().map(|f| f.at_index(i)));
        if !names.insert(cfg.name.trim()) {
            out.push(Finding::error(
                None,
                format!("integration[{i}].name"),
                format!("integration name {:?} is used twice", cfg.name),
            ));
        }
    }
    out
}

fn lint_required(cfg: &IntegrationConfig, out: &mut Vec<Finding>) {
    if cfg.name.trim().is_empty() {
        out.push(Finding::error(None, "integration.name", "`name` is empty"));
    }
    if cfg.client_id.as_deref().is_none_or(|c| c.trim().is_empty()) {
        out.push(Finding::error(
            None,
            "integration.client_id",
            "`client_id` is missing: copy the application (client) ID of the app registration",
        ));
    }
    if let Some(scopes) = &cfg.scopes
        && scopes.iter().all(|s| s.trim().is_empty())
    {
        out.push(Finding::error(
            Some(RootCause::Rc1),
            "integration.scopes",
            "`scopes` is empty: remove the key to use the computed scopes",
        ));
    }
}

fn lint_tenant(cfg: &IntegrationConfig, out: &mut Vec<Finding>) {
    if cfg.provider != Provider::Microsoft {
        return;
    }
    let tenant = cfg.tenant.as_deref().map(str::trim).unwrap_or("");
    if tenant.is_empty() {
        // Without a tenant the endpoints cannot be tenant-specific, unless all are given.
        let device_ok = cfg.grant() != Grant::DeviceCode || cfg.device_authorization_url.is_some();
        if !(cfg.authorize_url.is_some() && cfg.token_url.is_some() && device_ok) {
            out.push(Finding::error(
                Some(RootCause::Rc8),
                "integration.tenant",
                "`tenant` is missing: set the directory (tenant) ID or a verified domain of the \
                 tenant the app is registered in",
            ));
        }
        return;
    }
    if MULTI_TENANT_ALIASES
        .iter()
        .any(|a| a.eq_ignore_ascii_case(tenant))
    {
        out.push(Finding::warning(
            Some(RootCause::Rc8),
            "integration.tenant",
            format!(
                "tenant = {tenant:?} works only for multi-tenant apps: a single-tenant app fails \
                 with AADSTS50194; use the tenant ID or a verified domain"
            ),
        ));
    } else if tenant
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '@' | ':'))
    {
        out.push(Finding::error(
            Some(RootCause::Rc8),
            "integration.tenant",
            format!("tenant = {tenant:?} is not a tenant ID or domain (no URL, slash or address)"),
        ));
    }
}

fn lint_provider_specific(cfg: &IntegrationConfig, out: &mut Vec<Finding>) {
    let grant = cfg.grant();
    match cfg.provider {
        Provider::Microsoft => {}
        Provider::Google | Provider::Custom => {
            let provider = cfg.provider;
            let ignored: [(&str, bool); 3] = [
                ("cloud", cfg.cloud.is_some()),
                ("tenant", cfg.tenant.is_some()),
                ("graph_url", cfg.graph_url.is_some()),
            ];
            for (key, set) in ignored {
                if set {
                    out.push(Finding::warning(
                        None,
                        format!("integration.{key}"),
                        format!("`{key}` applies only to provider = \"microsoft\" and is ignored for {provider:?}"),
                    ));
                }
            }
            if provider == Provider::Google && cfg.authority_url.is_some() {
                out.push(Finding::warning(
                    None,
                    "integration.authority_url",
                    "`authority_url` is ignored for provider = \"google\"; set `authorize_url` and \
                     `token_url` to change Google's endpoints",
                ));
            }
            if grant == Grant::DeviceCode && cfg.device_authorization_url.is_none() {
                out.push(Finding::error(
                    None,
                    "integration.device_authorization_url",
                    format!(
                        "grant = \"device_code\" with provider = {:?} needs \
                         `device_authorization_url`{}",
                        provider.as_str(),
                        if provider == Provider::Google {
                            format!(
                                ": Google offers no device sign-in for mail; set grant = \
                                 \"authorization_code\" (or remove `grant`) and run `intake \
                                 authorize {} --browser`",
                                cfg.name
                            )
                        } else {
                            String::new()
                        }
                    ),
                ));
            }
        }
    }
    if cfg.provider == Provider::Google && grant == Grant::ClientCredentials {
        out.push(Finding::error(
            None,
            "integration.grant",
            "Google has no client-credentials grant for Gmail: use \"authorization_code\" (a \
             Workspace service account with domain-wide delegation uses a JWT bearer grant)",
        ));
    }
    if cfg.provider == Provider::Custom {
        if grant == Grant::AuthorizationCode && cfg.authorize_url.is_none() {
            out.push(Finding::error(
                None,
                "integration.authorize_url",
                "provider = \"custom\" needs `authorize_url` (the authorization endpoint)",
            ));
        }
        if cfg.token_url.is_none() {
            out.push(Finding::error(
                None,
                "integration.token_url",
                "provider = \"custom\" needs `token_url` (the token endpoint)",
            ));
        }
        if cfg.scopes.is_none() {
            out.push(Finding::error(
                Some(RootCause::Rc1),
                "integration.scopes",
                "provider = \"custom\" needs `scopes`: the server's scope for mail access \
                 (and the one that yields a refresh token)",
            ));
        }
    }
}

fn lint_credentials(cfg: &IntegrationConfig, out: &mut Vec<Finding>) {
    let grant = cfg.grant();
    match (&cfg.client_secret, &cfg.client_certificate, &cfg.client_key) {
        (Some(_), Some(_), _) => out.push(Finding::error(
            None,
            "integration.client_certificate",
            "set either `client_secret` or `client_certificate`, not both",
        )),
        (_, Some(_), None) => out.push(Finding::error(
            None,
            "integration.client_key",
            "`client_certificate` needs `client_key` (the certificate's private key)",
        )),
        (_, None, Some(_)) => out.push(Finding::error(
            None,
            "integration.client_certificate",
            "`client_key` is set without `client_certificate`",
        )),
        (None, None, None) if grant == Grant::ClientCredentials => out.push(Finding::error(
            None,
            "integration.client_secret",
            "grant = \"client_credentials\" needs `client_secret` or \
             `client_certificate` + `client_key`",
        )),
        _ => {}
    }
    if let Some(expires) = &cfg.client_secret_expires {
        if parse_date_to_unix_days(expires.trim()).is_none() {
            out.push(Finding::error(
                Some(RootCause::Rc14),
                "integration.client_secret_expires",
                format!(
                    "client_secret_expires = {expires:?} is not a date: write it as \"YYYY-MM-DD\""
                ),
            ));
        }
        if cfg.client_secret.is_none() {
            out.push(Finding::warning(
                None,
                "integration.client_secret_expires",
                "`client_secret_expires` is set without `client_secret`",
            ));
        }
    } else if cfg.client_secret.is_some() && cfg.provider == Provider::Microsoft {
        out.push(Finding::warning(
            Some(RootCause::Rc14),
            "integration.client_secret_expires",
            "the client secret's expiry date is unknown: set `client_secret_expires = \
             \"YYYY-MM-DD\"` (Certificates & secrets shows it) so Intake warns before it \
             expires",
        ));
    }
    for (key, value) in [
        ("client_secret", &cfg.client_secret),
        ("client_key", &cfg.client_key),
    ] {
        if value.as_ref().is_some_and(|v| v.is_literal()) {
            out.push(Finding::warning(
                None,
                format!("integration.{key}"),
                format!(
                    "`{key}` is written in the configuration file: prefer \"env:VAR\" or \
                     \"file:PATH\""
                ),
            ));
        }
    }
}

fn lint_urls(cfg: &IntegrationConfig, out: &mut Vec<Finding>) {
    for (key, value) in url_keys(cfg) {
        let Some(url) = value else { continue };
        let url = url.trim();
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        let host = host_of(url);
        let loopback = host
            .as_deref()
            .is_some_and(|h| h == "localhost" || h == "127.0.0.1" || h == "::1");
        let ok = match (scheme.as_deref(), &host) {
            (Some("https"), Some(_)) => true,
            (Some("http"), Some(_)) => loopback,
            _ => false,
        };
        if !ok {
            out.push(Finding::error(
                None,
                format!("integration.{key}"),
                format!("{key} = {url:?} must be an absolute https:// URL"),
            ));
        }
    }
    if let Some(authority) = &cfg.authority_url
        && cfg.provider == Provider::Microsoft
    {
        let path = authority
            .trim()
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('/'))
            .map(|(_, p)| p.trim_matches('/'))
            .unwrap_or("");
        if !path.is_empty() {
            out.push(Finding::error(
                Some(RootCause::Rc8),
                "integration.authority_url",
                format!(
                    "authority_url = {authority:?} must be only the login host (for example \
                     \"{}\"): the tenant is added from `tenant`",
                    cfg.cloud().authority()
                ),
            ));
        }
    }
    if let Some(proxy) = &cfg.proxy {
        let scheme = proxy
            .trim()
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase());
        // Token requests are HTTPS through reqwest, built without SOCKS support: SOCKS5 is for
        // IMAP/POP3 channels only. `env` takes the environment's proxy (only when asked).
        let ok = proxy.trim() == "env"
            || (matches!(scheme.as_deref(), Some("http" | "https")) && host_of(proxy).is_some());
        if !ok {
            out.push(Finding::error(
                Some(RootCause::Rc16),
                "integration.proxy",
                format!(
                    "proxy = {proxy:?} must be http://host:port, https://host:port or \"env\" \
                     (token requests do not go through SOCKS5; socks5:// is for IMAP/POP3 channels)"
                ),
            ));
        }
    }
    for (i, entry) in cfg.no_proxy.iter().enumerate() {
        if entry.trim().is_empty() {
            out.push(Finding::error(
                Some(RootCause::Rc16),
                format!("integration.no_proxy[{i}]"),
                "empty `no_proxy` entry",
            ));
        }
    }
}

pub(super) fn url_keys(cfg: &IntegrationConfig) -> [(&'static str, Option<&str>); 5] {
    [
        ("authority_url", cfg.authority_url.as_deref()),
        ("graph_url", cfg.graph_url.as_deref()),
        ("authorize_url", cfg.authorize_url.as_deref()),
        ("token_url", cfg.token_url.as_deref()),
        (
            "device_authorization_url",
            cfg.device_authorization_url.as_deref(),
        ),
    ]
}
