//! Providers, Microsoft clouds, protocols, grants, and the endpoints each combination uses.
//!
//! Hosts per cloud are docs/troubleshooting.md, "Hosts and endpoints", endpoint templates §1.2, Google §2. GCC (moderate) is not a
//! separate cloud for identity, Graph or mail: it uses the worldwide hosts. Only GCC High and DoD
//! move to `.us`, China to `.cn`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which OAuth provider preset an integration uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Microsoft Entra ID / Microsoft 365, in any [`Cloud`].
    Microsoft,
    /// Google Workspace / Gmail.
    Google,
    /// Any other OAuth 2.0 server: endpoints and scopes must be given explicitly.
    Custom,
}

impl Provider {
    /// The protocols this provider serves (Graph is Microsoft's).
    pub fn protocols(self) -> &'static [Protocol] {
        match self {
            Provider::Microsoft => &[
                Protocol::Imap,
                Protocol::Pop3,
                Protocol::Smtp,
                Protocol::Graph,
            ],
            Provider::Google | Provider::Custom => {
                &[Protocol::Imap, Protocol::Pop3, Protocol::Smtp]
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Microsoft => "microsoft",
            Provider::Google => "google",
            Provider::Custom => "custom",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Microsoft 365 cloud. Tokens, app registrations and consents are per cloud.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Cloud {
    #[default]
    Worldwide,
    /// GCC (moderate): the worldwide hosts.
    Gcc,
    /// GCC High (US Government L4).
    GccHigh,
    /// DoD (US Government L5).
    Dod,
    /// Microsoft 365 operated by 21Vianet.
    China,
}

impl Cloud {
    /// Every cloud.
    pub fn all() -> &'static [Cloud] {
        &[
            Cloud::Worldwide,
            Cloud::Gcc,
            Cloud::GccHigh,
            Cloud::Dod,
            Cloud::China,
        ]
    }

    /// The configuration value: `worldwide`, `gcc`, `gcc-high`, `dod`, `china`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Worldwide => "worldwide",
            Cloud::Gcc => "gcc",
            Cloud::GccHigh => "gcc-high",
            Cloud::Dod => "dod",
            Cloud::China => "china",
        }
    }

    /// A human name for messages.
    pub fn label(self) -> &'static str {
        match self {
            Cloud::Worldwide => "Worldwide",
            Cloud::Gcc => "GCC",
            Cloud::GccHigh => "GCC High",
            Cloud::Dod => "DoD",
            Cloud::China => "China (21Vianet)",
        }
    }

    /// The Entra authority (login host), without a trailing slash.
    pub fn authority(self) -> &'static str {
        match self {
            Cloud::Worldwide | Cloud::Gcc => "https://login.microsoftonline.com",
            Cloud::GccHigh | Cloud::Dod => "https://login.microsoftonline.us",
            // [D] Graph's deployments page lists login.chinacloudapi.cn; Entra's national-cloud
            // page and docs.azure.cn use this one, which docs/troubleshooting.md ("Hosts and endpoints") follows.
            Cloud::China => "https://login.partner.microsoftonline.cn",
        }
    }

    /// The portal where the app must be registered.
    pub fn portal(self) -> &'static str {
        match self {
            Cloud::Worldwide | Cloud::Gcc => "portal.azure.com",
            Cloud::GccHigh | Cloud::Dod => "portal.azure.us",
            Cloud::China => "portal.azure.cn",
        }
    }

    /// The Microsoft Graph root, without a trailing slash.
    pub fn graph_root(self) -> &'static str {
        match self {
            Cloud::Worldwide | Cloud::Gcc => "https://graph.microsoft.com",
            Cloud::GccHigh => "https://graph.microsoft.us",
            Cloud::Dod => "https://dod-graph.microsoft.us",
            Cloud::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }

    /// The Exchange Online resource URI: the prefix of delegated IMAP/POP/SMTP scopes.
    pub fn exo_resource(self) -> &'static str {
        match self {
            Cloud::Worldwide | Cloud::Gcc => "https://outlook.office.com",
            Cloud::GccHigh => "https://outlook.office365.us",
            // [D] EmailEngine uses outlook.office365.us for DoD; Microsoft's endpoint list and
            // CSS-Exchange say outlook-dod, the default in docs/troubleshooting.md ("Hosts and endpoints").
            Cloud::Dod => "https://outlook-dod.office365.us",
            Cloud::China => "https://partner.outlook.cn",
        }
    }

    /// The Exchange Online resource an app-only (client credentials) token asks for with
    /// `/.default`. Worldwide: Microsoft's app-only page prints `https://outlook.office365.com`
    /// (the same resource as `outlook.office.com`); other clouds: their EXO resource.
    pub fn exo_app_resource(self) -> &'static str {
        match self {
            Cloud::Worldwide | Cloud::Gcc => "https://outlook.office365.com",
            Cloud::GccHigh | Cloud::Dod | Cloud::China => self.exo_resource(),
        }
    }

    /// IMAP host, implicit TLS on 993.
    pub fn imap_host(self) -> &'static str {
        match self {
            Cloud::Worldwide | Cloud::Gcc => "outlook.office365.com",
            Cloud::GccHigh => "outlook.office365.us",
            Cloud::Dod => "outlook-dod.office365.us",
            Cloud::China => "partner.outlook.cn",
        }
    }

    /// SMTP submission host, STARTTLS on 587.
    pub fn smtp_host(self) -> &'static str {
        match self {
            Cloud::Worldwide | Cloud::Gcc => "smtp.office365.com",
            // [3P] Microsoft's list names only outlook.office365.us:587; docs/troubleshooting.md defaults
            // to smtp.office365.us and lets the doctor fall back.
            Cloud::GccHigh => "smtp.office365.us",
            Cloud::Dod => "outlook-dod.office365.us",
            Cloud::China => "smtp.partner.outlook.cn",
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mail access protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Imap,
    Pop3,
    Smtp,
    /// Microsoft Graph mail API.
    Graph,
}

impl Protocol {
    pub fn all() -> &'static [Protocol] {
        &[
            Protocol::Imap,
            Protocol::Pop3,
            Protocol::Smtp,
            Protocol::Graph,
        ]
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
            Protocol::Smtp => "smtp",
            Protocol::Graph => "graph",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The OAuth 2.0 grant an integration obtains tokens with.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// Authorization code with PKCE (a browser signs in).
    #[default]
    AuthorizationCode,
    /// Device code (a user signs in on another device).
    DeviceCode,
    /// Client credentials (app-only, no user).
    ClientCredentials,
}

impl Grant {
    pub fn all() -> &'static [Grant] {
        &[
            Grant::AuthorizationCode,
            Grant::DeviceCode,
            Grant::ClientCredentials,
        ]
    }

    /// Whether a user signs in (delegated permissions, `scp` claim, refresh tokens).
    pub fn is_delegated(self) -> bool {
        match self {
            Grant::AuthorizationCode | Grant::DeviceCode => true,
            Grant::ClientCredentials => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Grant::AuthorizationCode => "authorization_code",
            Grant::DeviceCode => "device_code",
            Grant::ClientCredentials => "client_credentials",
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an integration's tokens and mail live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoints {
    /// Authority (login host) without a trailing slash.
    pub authority: String,
    pub authorize_url: String,
    pub token_url: String,
    /// Device authorization endpoint, when the provider has one Intake knows.
    pub device_authorization_url: Option<String>,
    /// Default IMAP host and port (implicit TLS). An empty host means the connection must name it.
    pub imap: (String, u16),
    /// Default POP3 host and port (implicit TLS).
    pub pop3: (String, u16),
    /// Default SMTP submission host and port.
    pub smtp: (String, u16),
    /// Microsoft Graph root without a trailing slash (append `/v1.0/...`).
    pub graph_url: Option<String>,
    /// Exchange Online resource URI (delegated scope prefix).
    pub exo_resource: Option<String>,
}

/// Port of IMAP over implicit TLS.
pub const IMAPS_PORT: u16 = 993;
/// Port of POP3 over implicit TLS (plain 110 is not listed for any Microsoft cloud).
pub const POP3S_PORT: u16 = 995;
/// Port of SMTP submission with STARTTLS.
pub const SUBMISSION_PORT: u16 = 587;

/// Microsoft endpoints for `cloud` and `tenant` (tenant ID or verified domain), v2.0 templates.
pub fn microsoft_endpoints(cloud: Cloud, tenant: &str) -> Endpoints {
    microsoft_endpoints_at(cloud.authority(), cloud, tenant)
}

/// [`microsoft_endpoints`] with another authority (the `authority_url` override).
pub(crate) fn microsoft_endpoints_at(authority: &str, cloud: Cloud, tenant: &str) -> Endpoints {
    let authority = authority.trim_end_matches('/');
    let tenant = tenant.trim().trim_matches('/');
    Endpoints {
        authority: authority.to_string(),
        authorize_url: format!("{authority}/{tenant}/oauth2/v2.0/authorize"),
        token_url: format!("{authority}/{tenant}/oauth2/v2.0/token"),
        device_authorization_url: Some(format!("{authority}/{tenant}/oauth2/v2.0/devicecode")),
        imap: (cloud.imap_host().to_string(), IMAPS_PORT),
        pop3: (cloud.imap_host().to_string(), POP3S_PORT),
        smtp: (cloud.smtp_host().to_string(), SUBMISSION_PORT),
        graph_url: Some(cloud.graph_root().to_string()),
        exo_resource: Some(cloud.exo_resource().to_string()),
    }
}

/// Google endpoints (docs/troubleshooting.md, "Hosts and endpoints"). Google's device endpoint does not serve mail scopes, so
/// `device_authorization_url` is `None` and must be configured for the device-code grant.
pub fn google_endpoints() -> Endpoints {
    Endpoints {
        authority: "https://accounts.google.com".to_string(),
        authorize_url: "https://accounts.google.com/o/oauth2/v2/auth".to_string(),
        token_url: "https://oauth2.googleapis.com/token".to_string(),
        device_authorization_url: None,
        imap: ("imap.gmail.com".to_string(), IMAPS_PORT),
        pop3: ("pop.gmail.com".to_string(), POP3S_PORT),
        // STARTTLS on 587 like the Microsoft presets; 465 (implicit TLS) also works.
        smtp: ("smtp.gmail.com".to_string(), SUBMISSION_PORT),
        graph_url: None,
        exo_resource: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (cloud, authority, graph root, EXO resource, IMAP host, SMTP host) exactly as docs/troubleshooting.md, "Hosts and endpoints".
    const TABLE: &[(Cloud, &str, &str, &str, &str, &str)] = &[
        (
            Cloud::Worldwide,
            "https://login.microsoftonline.com",
            "https://graph.microsoft.com",
            "https://outlook.office.com",
            "outlook.office365.com",
            "smtp.office365.com",
        ),
        (
            Cloud::Gcc,
            "https://login.microsoftonline.com",
            "https://graph.microsoft.com",
            "https://outlook.office.com",
            "outlook.office365.com",
            "smtp.office365.com",
        ),
        (
            Cloud::GccHigh,
            "https://login.microsoftonline.us",
            "https://graph.microsoft.us",
            "https://outlook.office365.us",
            "outlook.office365.us",
            "smtp.office365.us",
        ),
        (
            Cloud::Dod,
            "https://login.microsoftonline.us",
            "https://dod-graph.microsoft.us",
            "https://outlook-dod.office365.us",
            "outlook-dod.office365.us",
            "outlook-dod.office365.us",
        ),
        (
            Cloud::China,
            "https://login.partner.microsoftonline.cn",
            "https://microsoftgraph.chinacloudapi.cn",
            "https://partner.outlook.cn",
            "partner.outlook.cn",
            "smtp.partner.outlook.cn",
        ),
    ];

    #[test]
    fn microsoft_endpoints_per_cloud_match_the_facts() {
        assert_eq!(TABLE.len(), Cloud::all().len());
        for &(cloud, authority, graph, exo, imap, smtp) in TABLE {
            let e = microsoft_endpoints(cloud, "contoso.onmicrosoft.com");
            assert_eq!(e.authority, authority, "{cloud}");
            assert_eq!(
                e.authorize_url,
                format!("{authority}/contoso.onmicrosoft.com/oauth2/v2.0/authorize"),
                "{cloud}"
            );
            assert_eq!(
                e.token_url,
                format!("{authority}/contoso.onmicrosoft.com/oauth2/v2.0/token"),
                "{cloud}"
            );
            assert_eq!(
                e.device_authorization_url.as_deref(),
                Some(
                    format!("{authority}/contoso.onmicrosoft.com/oauth2/v2.0/devicecode").as_str()
                ),
                "{cloud}"
            );
            assert_eq!(e.imap, (imap.to_string(), 993), "{cloud}");
            assert_eq!(e.pop3, (imap.to_string(), 995), "{cloud}");
            assert_eq!(e.smtp, (smtp.to_string(), 587), "{cloud}");
            assert_eq!(e.graph_url.as_deref(), Some(graph), "{cloud}");
            assert_eq!(e.exo_resource.as_deref(), Some(exo), "{cloud}");
        }
    }

    #[test]
    fn tenant_is_part_of_every_microsoft_url() {
        let e = microsoft_endpoints(Cloud::GccHigh, "00000000-1111-2222-3333-444444444444");
        assert_eq!(
            e.token_url,
            "https://login.microsoftonline.us/00000000-1111-2222-3333-444444444444/oauth2/v2.0/token"
        );
    }

    #[test]
    fn google_endpoints_match_the_facts() {
        let e = google_endpoints();
        assert_eq!(
            e.authorize_url,
            "https://accounts.google.com/o/oauth2/v2/auth"
        );
        assert_eq!(e.token_url, "https://oauth2.googleapis.com/token");
        assert_eq!(e.device_authorization_url, None);
        assert_eq!(e.imap, ("imap.gmail.com".to_string(), 993));
        assert_eq!(e.pop3, ("pop.gmail.com".to_string(), 995));
        assert_eq!(e.smtp, ("smtp.gmail.com".to_string(), 587));
        assert_eq!(e.graph_url, None);
        assert_eq!(e.exo_resource, None);
    }

    #[test]
    fn enums_use_the_configuration_spelling() {
        #[derive(Deserialize)]
        struct T {
            cloud: Cloud,
            grant: Grant,
            provider: Provider,
            protocol: Protocol,
        }
        let t: T = serde_json::from_str(
            r#"{"cloud":"gcc-high","grant":"client_credentials","provider":"microsoft","protocol":"pop3"}"#,
        )
        .unwrap();
        assert_eq!(t.cloud, Cloud::GccHigh);
        assert_eq!(t.grant, Grant::ClientCredentials);
        assert_eq!(t.provider, Provider::Microsoft);
        assert_eq!(t.protocol, Protocol::Pop3);
        for cloud in Cloud::all() {
            let json = serde_json::to_string(cloud).unwrap();
            assert_eq!(json, format!("\"{}\"", cloud.as_str()));
        }
        for grant in Grant::all() {
            let json = serde_json::to_string(grant).unwrap();
            assert_eq!(json, format!("\"{}\"", grant.as_str()));
        }
        assert!(serde_json::from_str::<Cloud>(r#""gcc_high""#).is_err());
    }
}
