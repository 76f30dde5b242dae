//! The `[[integration]]` table of `intake.toml`: one OAuth 2.0 client, and its resolved form.
//!
//! [`IntegrationConfig`] is what the administrator wrote (unknown keys are errors). Only
//! `name` and `provider` are required by the parser; everything else is checked by
//! [`crate::lint::lint_integration`], so a missing or wrong key becomes a [`Finding`] that names
//! the key and the root cause rather than a bare parse error.
//!
//! [`IntegrationConfig::resolve`] lints, then computes the endpoints and the scope list for each
//! protocol. Overrides win over the preset: `authority_url` replaces the login host in the
//! authorize, token and device-code templates; `graph_url` replaces the Graph root (and the
//! Graph scopes follow it); explicit `authorize_url` / `token_url` / `device_authorization_url`
//! and `scopes` win over everything.
//!
//! ```toml
//! [[integration]]
//! name = "contoso"
//! provider = "microsoft"
//! cloud = "gcc-high"
//! tenant = "contoso.onmicrosoft.us"
//! client_id = "11111111-2222-3333-4444-555555555555"
//! client_secret = "env:CONTOSO_SECRET"
//! client_secret_expires = "2027-01-31"
//! grant = "authorization_code"
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::diagnosis::Finding;
use crate::expiry::{ExpiryWarning, expiry_warning, parse_date_to_unix_seconds};
use crate::lint::lint_integration;
use crate::preset::cloud::{
    Cloud, Endpoints, Grant, IMAPS_PORT, POP3S_PORT, Protocol, Provider, SUBMISSION_PORT,
    google_endpoints, microsoft_endpoints_at,
};
use crate::preset::hosts::host_of;
use crate::preset::scopes::{ScopeResource, microsoft_scopes, scope_resource, scopes};
use crate::secret::SecretRef;

/// One `[[integration]]` table, as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationConfig {
    /// Unique name channels refer to.
    pub name: String,
    pub provider: Provider,
    /// Microsoft cloud; default `worldwide`. Ignored for other providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<Cloud>,
    /// Tenant ID (GUID) or verified domain. Required for Microsoft (RC8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretRef>,
    /// `YYYY-MM-DD`: when `client_secret` expires, so Intake can warn ahead (RC14). A quoted
    /// string or a bare TOML date.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "date_text"
    )]
    pub client_secret_expires: Option<String>,
    /// Certificate credential (PEM): the alternative to a secret Microsoft recommends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<SecretRef>,
    /// Private key of `client_certificate` (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<SecretRef>,
    /// Default `authorization_code` (with PKCE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Grant>,
    /// Replaces the cloud's login host in the endpoint templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_url: Option<String>,
    /// Replaces the cloud's Graph root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorize_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_url: Option<String>,
    /// Replaces the computed scopes (always linted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Extra CA certificates (PEM) to trust for this integration's HTTPS and mail hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<SecretRef>,
    /// Outbound proxy for token requests: `http://`, `https://`, or `env` for the environment's
    /// (RC16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Hosts that bypass `proxy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_proxy: Vec<String>,
}

impl IntegrationConfig {
    /// A minimal configuration for `provider`; the other keys are unset.
    pub fn new(name: impl Into<String>, provider: Provider) -> IntegrationConfig {
        IntegrationConfig {
            name: name.into(),
            provider,
            cloud: None,
            tenant: None,
            client_id: None,
            client_secret: None,
            client_secret_expires: None,
            client_certificate: None,
            client_key: None,
            grant: None,
            authority_url: None,
            graph_url: None,
            authorize_url: None,
            token_url: None,
            device_authorization_url: None,
            scopes: None,
            ca_file: None,
            proxy: None,
            no_proxy: Vec::new(),
        }
    }

    /// The configured cloud, or `worldwide`.
    pub fn cloud(&self) -> Cloud {
        self.cloud.unwrap_or_default()
    }

    /// The configured grant, or `authorization_code`.
    pub fn grant(&self) -> Grant {
        self.grant.unwrap_or_default()
    }

    /// Lints the table and, if it has no errors, computes endpoints and scopes. `Err` holds every
    /// finding (errors and warnings); `Ok` carries the warnings in
    /// [`ResolvedIntegration::warnings`].
    pub fn resolve(&self) -> Result<ResolvedIntegration, Vec<Finding>> {
        let mut findings = lint_integration(self);
        if findings.iter().any(Finding::is_error) {
            findings.sort_by_key(|f| f.severity);
            return Err(findings);
        }
        let cloud = self.cloud();
        let grant = self.grant();
        let endpoints = self.endpoints();
        let scopes = self.scopes_by_protocol(&endpoints);
        let credential = match (
            &self.client_secret,
            &self.client_certificate,
            &self.client_key,
        ) {
            (Some(secret), _, _) => ClientCredential::Secret {
                secret: secret.clone(),
                expires_unix: self
                    .client_secret_expires
                    .as_deref()
                    .and_then(parse_date_to_unix_seconds),
            },
            (None, Some(certificate), Some(key)) => ClientCredential::Certificate {
                certificate: certificate.clone(),
                key: key.clone(),
            },
            _ => ClientCredential::None,
        };
        Ok(ResolvedIntegration {
            name: self.name.clone(),
            provider: self.provider,
            cloud,
            tenant: self.tenant.as_ref().map(|t| t.trim().to_string()),
            // The lint guarantees a non-empty client_id.
            client_id: self
                .client_id
                .clone()
                .unwrap_or_default()
                .trim()
                .to_string(),
            credential,
            grant,
            endpoints,
            scopes,
            ca_file: self.ca_file.clone(),
            proxy: self.proxy.clone(),
            no_proxy: self.no_proxy.clone(),
            warnings: findings,
        })
    }

    fn endpoints(&self) -> Endpoints {
        let trimmed = |v: &Option<String>| {
            v.as_deref()
                .map(|u| u.trim().trim_end_matches('/').to_string())
        };
        let mut e = match self.provider {
            Provider::Microsoft => {
                let cloud = self.cloud();
                let authority =
                    trimmed(&self.authority_url).unwrap_or_else(|| cloud.authority().to_string());
                let tenant = self.tenant.as_deref().map(str::trim).unwrap_or("");
                let mut e = microsoft_endpoints_at(&authority, cloud, tenant);
                if tenant.is_empty() {
                    // Allowed only when the URLs are all explicit (the lint checks); do not
                    // derive a tenant-less device URL.
                    e.device_authorization_url = None;
                }
                if let Some(graph) = trimmed(&self.graph_url) {
                    e.graph_url = Some(graph);
                }
                e
            }
            Provider::Google => google_endpoints(),
            Provider::Custom => {
                let token_url = self.token_url.clone().unwrap_or_default();
                let authority = trimmed(&self.authority_url).unwrap_or_else(|| origin(&token_url));
                Endpoints {
                    authority,
                    authorize_url: String::new(),
                    token_url,
                    device_authorization_url: None,
                    imap: (String::new(), IMAPS_PORT),
                    pop3: (String::new(), POP3S_PORT),
                    smtp: (String::new(), SUBMISSION_PORT),
                    graph_url: None,
                    exo_resource: None,
                }
            }
        };
        if let Some(url) = &self.authorize_url {
            e.authorize_url = url.trim().to_string();
        }
        if let Some(url) = &self.token_url {
            e.token_url = url.trim().to_string();
        }
        if let Some(url) = &self.device_authorization_url {
            e.device_authorization_url = Some(url.trim().to_string());
        }
        e
    }

    fn scopes_by_protocol(&self, endpoints: &Endpoints) -> BTreeMap<Protocol, Vec<String>> {
        let cloud = self.cloud();
        let grant = self.grant();
        self.provider
            .protocols()
            .iter()
            .map(|&protocol| {
                let list = match (&self.scopes, self.provider) {
                    (Some(list), _) => list.iter().map(|s| s.trim().to_string()).collect(),
                    (None, Provider::Microsoft) => microsoft_scopes(
                        cloud,
                        endpoints.graph_url.as_deref().unwrap_or(cloud.graph_root()),
                        protocol,
                        grant,
                    ),
                    (None, provider) => scopes(provider, cloud, protocol, grant),
                };
                (protocol, list)
            })
            .collect()
    }
}

/// Reads a date written as a string, or as a bare TOML date (which TOML deserializers hand over
/// as a one-entry map holding its text); the lint checks the format.
fn date_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a date as \"YYYY-MM-DD\"")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let Some((_, text)) = map.next_entry::<String, String>()? else {
                return Err(serde::de::Error::custom(
                    "expected a date as \"YYYY-MM-DD\"",
                ));
            };
            if map.next_entry::<String, String>()?.is_some() {
                return Err(serde::de::Error::custom(
                    "expected a date as \"YYYY-MM-DD\"",
                ));
            }
            Ok(Some(text))
        }
    }
    deserializer.deserialize_any(Visitor)
}

/// `scheme://host[:port]` of a URL, or the text itself when it has no path.
fn origin(url: &str) -> String {
    match (url.split_once("://"), host_of(url)) {
        (Some((scheme, rest)), Some(_)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            format!("{scheme}://{authority}")
        }
        _ => url.to_string(),
    }
}

/// How the integration authenticates itself to the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientCredential {
    /// A public client (authorization code with PKCE, or device code).
    None,
    /// A client secret, with its expiry (Unix seconds) when configured.
    Secret {
        secret: SecretRef,
        expires_unix: Option<i64>,
    },
    /// A certificate and its private key (client assertion JWT).
    Certificate {
        certificate: SecretRef,
        key: SecretRef,
    },
}

/// An integration ready to use: endpoints and scopes computed, every override applied.
#[derive(Debug, Clone)]
pub struct ResolvedIntegration {
    pub name: String,
    pub provider: Provider,
    pub cloud: Cloud,
    pub tenant: Option<String>,
    pub client_id: String,
    pub credential: ClientCredential,
    pub grant: Grant,
    pub endpoints: Endpoints,
    /// The scopes to request per protocol the provider serves (one resource per token).
    pub scopes: BTreeMap<Protocol, Vec<String>>,
    pub ca_file: Option<SecretRef>,
    pub proxy: Option<String>,
    pub no_proxy: Vec<String>,
    /// Warnings the lint found (the configuration is usable).
    pub warnings: Vec<Finding>,
}

impl ResolvedIntegration {
    /// The scopes to request for `protocol`, `None` when the provider does not serve it.
    pub fn scopes_for(&self, protocol: Protocol) -> Option<&[String]> {
        self.scopes.get(&protocol).map(Vec::as_slice)
    }

    /// The default server (host, port) of a mail protocol: IMAP 993, POP3 995, SMTP 587
    /// (STARTTLS) at the provider's and cloud's host. `None` for Graph and when the provider
    /// names no server (`custom`): the channel must give `host` then.
    pub fn server_for(&self, protocol: Protocol) -> Option<(&str, u16)> {
        let (host, port) = match protocol {
            Protocol::Imap => &self.endpoints.imap,
            Protocol::Pop3 => &self.endpoints.pop3,
            Protocol::Smtp => &self.endpoints.smtp,
            Protocol::Graph => return None,
        };
        (!host.is_empty()).then_some((host.as_str(), *port))
    }

    /// The resource (audience) a token for `protocol` is stored under: `exo` (Exchange
    /// Online: IMAP, POP3, SMTP) or `graph` for Microsoft, read from the scopes requested for
    /// the protocol; `""` for providers with one mail resource (Google, custom). One access
    /// token has one audience, so the two Microsoft resources never share a token.
    pub fn token_resource(&self, protocol: Protocol) -> &'static str {
        if self.provider != Provider::Microsoft {
            return "";
        }
        let from_scopes = self.scopes_for(protocol).and_then(|list| {
            list.iter()
                .map(|s| scope_resource(s))
                .find(|r| *r != ScopeResource::Oidc)
        });
        match from_scopes {
            Some(ScopeResource::Graph) => "graph",
            Some(ScopeResource::Exo) => "exo",
            _ if protocol == Protocol::Graph => "graph",
            _ => "exo",
        }
    }

    /// The RC14 warning due at `now_unix` for the client secret's configured expiry.
    pub fn secret_expiry_warning(&self, now_unix: i64) -> Option<ExpiryWarning> {
        match self.credential {
            ClientCredential::Secret {
                expires_unix: Some(expires),
                ..
            } => expiry_warning(expires, now_unix),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use figment::providers::{Format, Toml};

    use super::*;
    use crate::diagnosis::RootCause;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        integration: Vec<IntegrationConfig>,
    }

    fn parse(toml: &str) -> Result<Vec<IntegrationConfig>, Box<figment::Error>> {
        Figment::from(Toml::string(toml))
            .extract::<File>()
            .map(|f| f.integration)
            .map_err(Box::new)
    }

    fn one(toml: &str) -> IntegrationConfig {
        parse(toml).expect("parses").remove(0)
    }

    const FULL: &str = r#"
        [[integration]]
        name = "contoso"
        provider = "microsoft"
        cloud = "gcc-high"
        tenant = "contoso.onmicrosoft.us"
        client_id = "11111111-2222-3333-4444-555555555555"
        client_secret = "env:CONTOSO_SECRET"
        client_secret_expires = "2027-01-31"
        grant = "authorization_code"
        ca_file = "file:/etc/intake/ca.pem"
        proxy = "http://proxy.contoso.us:3128"
        no_proxy = ["localhost", ".contoso.us"]
    "#;

    #[test]
    fn parses_every_key_with_exact_names() {
        let all = r#"
            [[integration]]
            name = "x"
            provider = "custom"
            cloud = "dod"
            tenant = "t"
            client_id = "c"
            client_secret = "file:/s"
            client_secret_expires = "2027-01-31"
            client_certificate = "file:/c.pem"
            client_key = "env:KEY"
            grant = "device_code"
            authority_url = "https://idp.example"
            graph_url = "https://g.example"
            authorize_url = "https://idp.example/auth"
            token_url = "https://idp.example/token"
            device_authorization_url = "https://idp.example/device"
            scopes = ["mail"]
            ca_file = "file:/ca.pem"
            proxy = "http://p:3128"
            no_proxy = ["a"]
        "#;
        let c = one(all);
        assert_eq!(c.cloud, Some(Cloud::Dod));
        assert_eq!(c.grant, Some(Grant::DeviceCode));
        assert_eq!(c.scopes, Some(vec!["mail".to_string()]));
        assert_eq!(c.client_key.unwrap().to_string(), "env:KEY");
        assert_eq!(c.no_proxy, vec!["a"]);
    }

    #[test]
    fn bare_toml_date_is_accepted_for_the_expiry() {
        let c = one(r#"
            [[integration]]
            name = "x"
            provider = "microsoft"
            client_secret_expires = 2027-01-31
        "#);
        assert_eq!(c.client_secret_expires.as_deref(), Some("2027-01-31"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = parse(
            r#"
            [[integration]]
            name = "x"
            provider = "microsoft"
            client_secret_expiry = "2027-01-01"
        "#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("client_secret_expiry"), "{err}");
    }

    #[test]
    fn literal_secret_is_redacted_in_debug_of_the_config() {
        let c = one(r#"
            [[integration]]
            name = "x"
            provider = "google"
            client_secret = "GOCSPX-very-secret-value"
        "#);
        let debug = format!("{c:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
        assert!(debug.contains("[REDACTED]"), "{debug}");
    }

    #[test]
    fn resolves_a_gcc_high_config() {
        let r = one(FULL).resolve().expect("clean config resolves");
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(r.cloud, Cloud::GccHigh);
        assert_eq!(
            r.endpoints.token_url,
            "https://login.microsoftonline.us/contoso.onmicrosoft.us/oauth2/v2.0/token"
        );
        assert_eq!(
            r.endpoints.graph_url.as_deref(),
            Some("https://graph.microsoft.us")
        );
        assert_eq!(
            r.scopes_for(Protocol::Imap).unwrap(),
            [
                "https://outlook.office365.us/IMAP.AccessAsUser.All",
                "offline_access"
            ]
        );
        assert_eq!(
            r.scopes_for(Protocol::Graph).unwrap()[0],
            "https://graph.microsoft.us/Mail.ReadWrite"
        );
        // 2027-01-31T00:00:00Z
        let ClientCredential::Secret { expires_unix, .. } = &r.credential else {
            panic!("secret credential expected");
        };
        assert_eq!(*expires_unix, Some(1_801_353_600));
        let w = r
            .secret_expiry_warning(1_801_353_600 - 10 * 86_400)
            .unwrap();
        assert_eq!(w.days_left, 10);
        assert!(
            r.secret_expiry_warning(1_801_353_600 - 60 * 86_400)
                .is_none()
        );
    }

    /// Every protocol resolves its own scopes, its own default server and its own token
    /// resource (POP3 is not IMAP: pop.gmail.com, POP.AccessAsUser.All).
    #[test]
    fn each_protocol_has_its_own_scopes_server_and_token_resource() {
        let ms = one(FULL).resolve().unwrap();
        assert_eq!(
            ms.scopes_for(Protocol::Pop3).unwrap()[0],
            "https://outlook.office365.us/POP.AccessAsUser.All"
        );
        assert_eq!(
            ms.scopes_for(Protocol::Smtp).unwrap()[0],
            "https://outlook.office365.us/SMTP.Send"
        );
        assert_eq!(
            ms.server_for(Protocol::Imap),
            Some(("outlook.office365.us", 993))
        );
        assert_eq!(
            ms.server_for(Protocol::Pop3),
            Some(("outlook.office365.us", 995))
        );
        assert_eq!(
            ms.server_for(Protocol::Smtp),
            Some(("smtp.office365.us", 587))
        );
        assert_eq!(ms.server_for(Protocol::Graph), None);
        for (p, r) in [
            (Protocol::Imap, "exo"),
            (Protocol::Pop3, "exo"),
            (Protocol::Smtp, "exo"),
            (Protocol::Graph, "graph"),
        ] {
            assert_eq!(ms.token_resource(p), r, "{p:?}");
        }
        let google = one(r#"
            [[integration]]
            name = "g"
            provider = "google"
            client_id = "c.apps.googleusercontent.com"
            client_secret = "env:G"
            "#)
        .resolve()
        .unwrap();
        assert_eq!(
            google.server_for(Protocol::Pop3),
            Some(("pop.gmail.com", 995))
        );
        assert_eq!(
            google.server_for(Protocol::Imap),
            Some(("imap.gmail.com", 993))
        );
        assert_eq!(
            google.server_for(Protocol::Smtp),
            Some(("smtp.gmail.com", 587))
        );
        assert_eq!(
            google.scopes_for(Protocol::Pop3).unwrap(),
            ["https://mail.google.com/"]
        );
        assert_eq!(google.token_resource(Protocol::Imap), "");
        assert_eq!(google.token_resource(Protocol::Pop3), "");
    }

    #[test]
    fn authority_override_replaces_the_login_host_in_all_templates() {
        let mut c = one(FULL);
        c.cloud = Some(Cloud::China);
        c.tenant = Some("contoso.partner.onmschina.cn".into());
        c.authority_url = Some("https://login.chinacloudapi.cn/".into());
        c.proxy = None;
        c.no_proxy.clear();
        let r = c.resolve().expect("resolves");
        let t = "contoso.partner.onmschina.cn";
        assert_eq!(r.endpoints.authority, "https://login.chinacloudapi.cn");
        assert_eq!(
            r.endpoints.authorize_url,
            format!("https://login.chinacloudapi.cn/{t}/oauth2/v2.0/authorize")
        );
        assert_eq!(
            r.endpoints.token_url,
            format!("https://login.chinacloudapi.cn/{t}/oauth2/v2.0/token")
        );
        assert_eq!(
            r.endpoints.device_authorization_url.as_deref(),
            Some(format!("https://login.chinacloudapi.cn/{t}/oauth2/v2.0/devicecode").as_str())
        );
        assert_eq!(r.endpoints.imap.0, "partner.outlook.cn");
    }

    #[test]
    fn explicit_urls_and_graph_root_win() {
        let mut c = one(FULL);
        c.cloud = Some(Cloud::Dod);
        c.grant = Some(Grant::ClientCredentials);
        c.graph_url = Some("https://dod-graph.microsoft.us/".into());
        c.token_url = Some("https://login.microsoftonline.us/other/oauth2/v2.0/token".into());
        let r = c.resolve().expect("resolves");
        assert_eq!(
            r.endpoints.token_url,
            "https://login.microsoftonline.us/other/oauth2/v2.0/token"
        );
        assert_eq!(
            r.endpoints.authorize_url,
            "https://login.microsoftonline.us/contoso.onmicrosoft.us/oauth2/v2.0/authorize"
        );
        assert_eq!(
            r.scopes_for(Protocol::Graph).unwrap(),
            ["https://dod-graph.microsoft.us/.default"]
        );
        assert_eq!(
            r.scopes_for(Protocol::Pop3).unwrap(),
            ["https://outlook-dod.office365.us/.default"]
        );
    }

    #[test]
    fn scopes_override_applies_to_every_protocol() {
        let mut c = one(FULL);
        c.scopes = Some(vec![
            "https://outlook.office365.us/.default".into(),
            "offline_access".into(),
        ]);
        let r = c.resolve().expect("resolves");
        for p in [Protocol::Imap, Protocol::Smtp] {
            assert_eq!(
                r.scopes_for(p).unwrap(),
                ["https://outlook.office365.us/.default", "offline_access"]
            );
        }
    }

    #[test]
    fn custom_provider_requires_its_endpoints_and_scopes() {
        let c = one(r#"
            [[integration]]
            name = "idp"
            provider = "custom"
            client_id = "intake"
        "#);
        let errors = c.resolve().unwrap_err();
        let paths: Vec<_> = errors.iter().map(|f| f.path.as_str()).collect();
        for key in ["authorize_url", "token_url", "scopes"] {
            let path = format!("integration.{key}");
            assert!(paths.contains(&path.as_str()), "{key} missing in {paths:?}");
            let f = errors.iter().find(|f| f.path == path).unwrap();
            assert!(f.message.contains(key), "{}", f.message);
        }
    }

    #[test]
    fn custom_provider_resolves_with_its_endpoints() {
        let c = one(r#"
            [[integration]]
            name = "idp"
            provider = "custom"
            client_id = "intake"
            authorize_url = "https://idp.example.org/oauth/authorize"
            token_url = "https://idp.example.org:8443/oauth/token"
            scopes = ["mail", "offline_access"]
        "#);
        let r = c.resolve().expect("resolves");
        assert_eq!(r.endpoints.authority, "https://idp.example.org:8443");
        assert_eq!(
            r.endpoints.authorize_url,
            "https://idp.example.org/oauth/authorize"
        );
        assert_eq!(
            r.scopes_for(Protocol::Imap).unwrap(),
            ["mail", "offline_access"]
        );
        assert_eq!(r.scopes_for(Protocol::Graph), None);
    }

    #[test]
    fn google_resolves_to_the_mail_scope() {
        let c = one(r#"
            [[integration]]
            name = "gmail"
            provider = "google"
            client_id = "123.apps.googleusercontent.com"
            client_secret = "env:GOOGLE_SECRET"
        "#);
        let r = c.resolve().expect("resolves");
        assert_eq!(r.endpoints.token_url, "https://oauth2.googleapis.com/token");
        assert_eq!(
            r.scopes_for(Protocol::Imap).unwrap(),
            ["https://mail.google.com/"]
        );
        assert_eq!(r.scopes_for(Protocol::Graph), None);
    }

    #[test]
    fn errors_come_first_and_block_resolution() {
        let mut c = one(FULL);
        c.tenant = Some("common".into());
        c.authority_url = Some("https://login.microsoftonline.com".into());
        let findings = c.resolve().unwrap_err();
        assert!(findings[0].is_error());
        assert!(
            findings
                .iter()
                .any(|f| f.cause == Some(RootCause::Rc9) && f.is_error())
        );
        assert!(
            findings
                .iter()
                .any(|f| f.cause == Some(RootCause::Rc8) && !f.is_error())
        );
    }

    #[test]
    fn bad_expiry_date_names_the_key() {
        let mut c = one(FULL);
        c.client_secret_expires = Some("31.01.2027".into());
        let findings = c.resolve().unwrap_err();
        let f = findings
            .iter()
            .find(|f| f.path == "integration.client_secret_expires")
            .expect("finding on the key");
        assert_eq!(f.cause, Some(RootCause::Rc14));
        assert!(f.is_error());
    }
}
