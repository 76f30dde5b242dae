//! Scopes per provider, cloud, protocol and grant (docs/troubleshooting.md, "Scopes", "Hosts and endpoints"), and the scope
//! parsing the lint uses to explain wrong ones (RC1, G1).
//!
//! Rules the lists follow:
//! - one access token has one audience, so a list never mixes Exchange Online and Graph;
//! - `offline_access` (and `openid profile email`) are OpenID Connect scopes, always bare;
//! - delegated Exchange scopes carry the cloud's EXO resource prefix;
//! - delegated Graph scopes are bare in Worldwide/GCC and fully qualified with the cloud's Graph
//!   root elsewhere (whether bare names resolve to a national cloud's Graph is unverified);
//! - app-only (client credentials) asks for `{resource}/.default` and nothing else.

use super::cloud::{Cloud, Grant, Protocol, Provider};
use super::hosts::{EXO_APP_ID, GRAPH_APP_ID, HostKind, classify_host, host_of};

/// The OpenID Connect scope that makes the token endpoint return a refresh token.
pub const OFFLINE_ACCESS: &str = "offline_access";
/// OpenID Connect scopes: they must be written bare, never with a resource prefix.
pub const OIDC_SCOPES: [&str; 4] = ["offline_access", "openid", "profile", "email"];
/// Google's scope for IMAP, POP and SMTP.
pub const GOOGLE_MAIL_SCOPE: &str = "https://mail.google.com/";

/// The delegated permission a protocol needs (the `scp` claim must contain it).
pub fn delegated_permission(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Imap => "IMAP.AccessAsUser.All",
        Protocol::Pop3 => "POP.AccessAsUser.All",
        Protocol::Smtp => "SMTP.Send",
        Protocol::Graph => "Mail.ReadWrite",
    }
}

/// The application permission an app-only token needs for a protocol (the `roles` claim).
pub fn app_permission(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Imap => "IMAP.AccessAsApp",
        Protocol::Pop3 => "POP.AccessAsApp",
        Protocol::Smtp => "SMTP.SendAsApp",
        Protocol::Graph => "Mail.ReadWrite",
    }
}

/// The scopes to request for one provider, cloud, protocol and grant. Empty when Intake has no
/// preset for the combination (`custom` providers, Graph on Google): the configuration must
/// give `scopes` then.
pub fn scopes(provider: Provider, cloud: Cloud, protocol: Protocol, grant: Grant) -> Vec<String> {
    match provider {
        Provider::Microsoft => microsoft_scopes(cloud, cloud.graph_root(), protocol, grant),
        Provider::Google => match protocol {
            Protocol::Imap | Protocol::Pop3 | Protocol::Smtp => vec![GOOGLE_MAIL_SCOPE.to_string()],
            Protocol::Graph => Vec::new(),
        },
        Provider::Custom => Vec::new(),
    }
}

/// Microsoft scopes with a given Graph root (the `graph_url` override drives Graph scopes too).
pub(crate) fn microsoft_scopes(
    cloud: Cloud,
    graph_root: &str,
    protocol: Protocol,
    grant: Grant,
) -> Vec<String> {
    let graph_root = graph_root.trim_end_matches('/');
    if !grant.is_delegated() {
        let resource = match protocol {
            Protocol::Imap | Protocol::Pop3 | Protocol::Smtp => cloud.exo_app_resource(),
            Protocol::Graph => graph_root,
        };
        return vec![format!("{resource}/.default")];
    }
    match protocol {
        Protocol::Imap | Protocol::Pop3 | Protocol::Smtp => vec![
            format!(
                "{}/{}",
                cloud.exo_resource(),
                delegated_permission(protocol)
            ),
            OFFLINE_ACCESS.to_string(),
        ],
        Protocol::Graph => {
            let mail = if graph_root.eq_ignore_ascii_case(Cloud::Worldwide.graph_root()) {
                delegated_permission(protocol).to_string()
            } else {
                format!("{graph_root}/{}", delegated_permission(protocol))
            };
            let mut list = vec![mail];
            list.extend(OIDC_SCOPES.iter().map(|s| s.to_string()));
            list
        }
    }
}

/// A scope string split into its resource prefix and permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedScope<'a> {
    /// `https://outlook.office.com` in `https://outlook.office.com/IMAP.AccessAsUser.All`;
    /// `None` for a bare scope.
    pub prefix: Option<&'a str>,
    /// `IMAP.AccessAsUser.All`, `.default`, `Mail.ReadWrite`, `offline_access`; empty for
    /// `https://mail.google.com/`.
    pub permission: &'a str,
}

/// The resource a scope asks for, as far as the token audience is concerned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ScopeResource {
    /// A bare OpenID Connect scope: not a resource.
    Oidc,
    /// Microsoft Graph (bare scopes, a Graph host, or Graph's app ID).
    Graph,
    /// Exchange Online (an EXO host or EXO's app ID).
    Exo,
    /// Google mail.
    Google,
    /// Anything else, by its lower-cased prefix.
    Other(String),
}

impl ScopeResource {
    pub(crate) fn label(&self) -> String {
        match self {
            ScopeResource::Oidc => "OpenID Connect".to_string(),
            ScopeResource::Graph => "Microsoft Graph".to_string(),
            ScopeResource::Exo => "Exchange Online".to_string(),
            ScopeResource::Google => "Google".to_string(),
            ScopeResource::Other(p) => p.clone(),
        }
    }
}

pub(crate) fn parse_scope(scope: &str) -> ParsedScope<'_> {
    let scope = scope.trim();
    let split_at = if let Some(i) = scope.find("://") {
        scope[i + 3..].find('/').map(|j| i + 3 + j)
    } else {
        scope.find('/')
    };
    match split_at {
        Some(i) => ParsedScope {
            prefix: Some(&scope[..i]),
            permission: &scope[i + 1..],
        },
        None if scope.contains("://") => ParsedScope {
            prefix: Some(scope),
            permission: "",
        },
        None => ParsedScope {
            prefix: None,
            permission: scope,
        },
    }
}

pub(crate) fn is_oidc(permission: &str) -> bool {
    OIDC_SCOPES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(permission))
}

/// Which resource a scope is for.
pub(crate) fn scope_resource(scope: &str) -> ScopeResource {
    let parsed = parse_scope(scope);
    let Some(prefix) = parsed.prefix else {
        // A scope with no resource prefix is a Graph scope (docs/troubleshooting.md, "Scopes").
        return if is_oidc(parsed.permission) {
            ScopeResource::Oidc
        } else {
            ScopeResource::Graph
        };
    };
    if prefix.eq_ignore_ascii_case(GRAPH_APP_ID) {
        return ScopeResource::Graph;
    }
    if prefix.eq_ignore_ascii_case(EXO_APP_ID) {
        return ScopeResource::Exo;
    }
    if let Some(host) = host_of(prefix) {
        match classify_host(&host) {
            Some((Some(HostKind::Graph), _)) => return ScopeResource::Graph,
            Some((Some(HostKind::Exo), _)) => return ScopeResource::Exo,
            _ => {}
        }
        if host == "mail.google.com" || host.ends_with(".googleapis.com") {
            return ScopeResource::Google;
        }
    }
    ScopeResource::Other(prefix.trim_end_matches('/').to_ascii_lowercase())
}

/// Permissions that only make sense on Exchange Online's resource.
pub(crate) fn is_exo_permission(permission: &str) -> bool {
    let p = permission.to_ascii_lowercase();
    ["imap.", "pop.", "smtp.", "ews.", "eas."]
        .iter()
        .any(|prefix| p.starts_with(prefix))
}

/// Permissions of the Graph mail API (on an EXO prefix they yield an EXO-audience token).
pub(crate) fn is_graph_mail_permission(permission: &str) -> bool {
    let p = permission.to_ascii_lowercase();
    ["mail.", "mailboxsettings.", "user."]
        .iter()
        .any(|prefix| p.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(list: &[&str]) -> Vec<String> {
        list.iter().map(|x| x.to_string()).collect()
    }

    /// Every cloud × protocol × grant for Microsoft, with the exact strings of docs/troubleshooting.md, "Scopes".
    #[test]
    fn microsoft_scopes_table() {
        use Cloud::*;
        use Grant::*;
        use Protocol::*;
        let delegated_exo: &[(Cloud, &str)] = &[
            (Worldwide, "https://outlook.office.com"),
            (Gcc, "https://outlook.office.com"),
            (GccHigh, "https://outlook.office365.us"),
            (Dod, "https://outlook-dod.office365.us"),
            (China, "https://partner.outlook.cn"),
        ];
        let app_exo: &[(Cloud, &str)] = &[
            (Worldwide, "https://outlook.office365.com/.default"),
            (Gcc, "https://outlook.office365.com/.default"),
            (GccHigh, "https://outlook.office365.us/.default"),
            (Dod, "https://outlook-dod.office365.us/.default"),
            (China, "https://partner.outlook.cn/.default"),
        ];
        let graph_mail: &[(Cloud, &str)] = &[
            (Worldwide, "Mail.ReadWrite"),
            (Gcc, "Mail.ReadWrite"),
            (GccHigh, "https://graph.microsoft.us/Mail.ReadWrite"),
            (Dod, "https://dod-graph.microsoft.us/Mail.ReadWrite"),
            (
                China,
                "https://microsoftgraph.chinacloudapi.cn/Mail.ReadWrite",
            ),
        ];
        let graph_app: &[(Cloud, &str)] = &[
            (Worldwide, "https://graph.microsoft.com/.default"),
            (Gcc, "https://graph.microsoft.com/.default"),
            (GccHigh, "https://graph.microsoft.us/.default"),
            (Dod, "https://dod-graph.microsoft.us/.default"),
            (China, "https://microsoftgraph.chinacloudapi.cn/.default"),
        ];
        let mut checked = 0;
        for &cloud in Cloud::all() {
            let exo = delegated_exo.iter().find(|(c, _)| *c == cloud).unwrap().1;
            let exo_app = app_exo.iter().find(|(c, _)| *c == cloud).unwrap().1;
            let mail = graph_mail.iter().find(|(c, _)| *c == cloud).unwrap().1;
            let graph_default = graph_app.iter().find(|(c, _)| *c == cloud).unwrap().1;
            for &grant in &[AuthorizationCode, DeviceCode] {
                let got = |p| scopes(Provider::Microsoft, cloud, p, grant);
                assert_eq!(
                    got(Imap),
                    s(&[&format!("{exo}/IMAP.AccessAsUser.All"), "offline_access"]),
                    "{cloud} {grant}"
                );
                assert_eq!(
                    got(Pop3),
                    s(&[&format!("{exo}/POP.AccessAsUser.All"), "offline_access"]),
                    "{cloud} {grant}"
                );
                assert_eq!(
                    got(Smtp),
                    s(&[&format!("{exo}/SMTP.Send"), "offline_access"]),
                    "{cloud} {grant}"
                );
                assert_eq!(
                    got(Graph),
                    s(&[mail, "offline_access", "openid", "profile", "email"]),
                    "{cloud} {grant}"
                );
                checked += 4;
            }
            for p in [Imap, Pop3, Smtp] {
                assert_eq!(
                    scopes(Provider::Microsoft, cloud, p, ClientCredentials),
                    s(&[exo_app]),
                    "{cloud} {p}"
                );
                checked += 1;
            }
            assert_eq!(
                scopes(Provider::Microsoft, cloud, Graph, ClientCredentials),
                s(&[graph_default]),
                "{cloud}"
            );
            checked += 1;
        }
        assert_eq!(
            checked,
            Cloud::all().len() * Protocol::all().len() * Grant::all().len()
        );
    }

    #[test]
    fn worldwide_imap_request_is_the_documented_one() {
        let got = scopes(
            Provider::Microsoft,
            Cloud::Worldwide,
            Protocol::Imap,
            Grant::AuthorizationCode,
        );
        assert_eq!(
            got.join(" "),
            "https://outlook.office.com/IMAP.AccessAsUser.All offline_access"
        );
    }

    #[test]
    fn google_and_custom_scopes() {
        for &cloud in Cloud::all() {
            for &grant in Grant::all() {
                for p in [Protocol::Imap, Protocol::Pop3, Protocol::Smtp] {
                    assert_eq!(
                        scopes(Provider::Google, cloud, p, grant),
                        s(&["https://mail.google.com/"])
                    );
                    assert!(scopes(Provider::Custom, cloud, p, grant).is_empty());
                }
                assert!(scopes(Provider::Google, cloud, Protocol::Graph, grant).is_empty());
            }
        }
    }

    #[test]
    fn graph_root_override_drives_graph_scopes() {
        let got = microsoft_scopes(
            Cloud::Dod,
            "https://graph.example.mil/",
            Protocol::Graph,
            Grant::ClientCredentials,
        );
        assert_eq!(got, s(&["https://graph.example.mil/.default"]));
    }

    #[test]
    fn parse_and_classify_scopes() {
        assert_eq!(
            parse_scope("https://outlook.office.com/IMAP.AccessAsUser.All"),
            ParsedScope {
                prefix: Some("https://outlook.office.com"),
                permission: "IMAP.AccessAsUser.All"
            }
        );
        assert_eq!(
            parse_scope("https://mail.google.com/"),
            ParsedScope {
                prefix: Some("https://mail.google.com"),
                permission: ""
            }
        );
        assert_eq!(
            parse_scope("00000003-0000-0000-c000-000000000000/.default").prefix,
            Some(GRAPH_APP_ID)
        );
        assert_eq!(scope_resource("Mail.Read"), ScopeResource::Graph);
        assert_eq!(scope_resource("offline_access"), ScopeResource::Oidc);
        assert_eq!(
            scope_resource("https://graph.microsoft.com/offline_access"),
            ScopeResource::Graph
        );
        assert_eq!(
            scope_resource("https://outlook-dod.office365.us/.default"),
            ScopeResource::Exo
        );
        assert_eq!(
            scope_resource("https://mail.google.com/"),
            ScopeResource::Google
        );
        assert_eq!(
            scope_resource("api://my-app/read"),
            ScopeResource::Other("api://my-app".into())
        );
    }
}
