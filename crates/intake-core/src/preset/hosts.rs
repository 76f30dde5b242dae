//! Which Microsoft cloud a host name belongs to, and what it serves.
//!
//! Used by the mixed-cloud lint (RC9, G2) and the token checks (`aud`, `iss`). Known hosts come
//! from docs/troubleshooting.md, "Hosts and endpoints"; other Microsoft hosts are placed by their domain (`.microsoftonline.us`,
//! `.chinacloudapi.cn`, …). Hosts that are not Microsoft's (a custom IdP, a test server) are not
//! classified and never produce a mixed-cloud finding.

use super::cloud::Cloud;

/// What a known Microsoft host serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostKind {
    /// Entra ID authority (login host).
    Login,
    /// Microsoft Graph root.
    Graph,
    /// Exchange Online (IMAP/POP/SMTP resource).
    Exo,
}

const WORLDWIDE: &[Cloud] = &[Cloud::Worldwide, Cloud::Gcc];
const US_GOV: &[Cloud] = &[Cloud::GccHigh, Cloud::Dod];
const GCC_HIGH: &[Cloud] = &[Cloud::GccHigh];
const DOD: &[Cloud] = &[Cloud::Dod];
const CHINA: &[Cloud] = &[Cloud::China];

/// Exact hosts: (host, what it serves, the clouds it belongs to).
const KNOWN: &[(&str, HostKind, &[Cloud])] = &[
    ("login.microsoftonline.com", HostKind::Login, WORLDWIDE),
    ("login.microsoftonline.us", HostKind::Login, US_GOV),
    ("login.partner.microsoftonline.cn", HostKind::Login, CHINA),
    ("login.chinacloudapi.cn", HostKind::Login, CHINA),
    ("graph.microsoft.com", HostKind::Graph, WORLDWIDE),
    ("graph.microsoft.us", HostKind::Graph, GCC_HIGH),
    ("dod-graph.microsoft.us", HostKind::Graph, DOD),
    ("microsoftgraph.chinacloudapi.cn", HostKind::Graph, CHINA),
    ("outlook.office.com", HostKind::Exo, WORLDWIDE),
    ("outlook.office365.com", HostKind::Exo, WORLDWIDE),
    ("ps.outlook.com", HostKind::Exo, WORLDWIDE),
    // [D] some tools use outlook.office365.us for DoD as well, so it is accepted there.
    ("outlook.office365.us", HostKind::Exo, US_GOV),
    ("outlook-dod.office365.us", HostKind::Exo, DOD),
    ("partner.outlook.cn", HostKind::Exo, CHINA),
];

/// Microsoft domains whose TLD family tells the cloud even for hosts not listed above.
const DOMAINS: &[(&str, &[Cloud])] = &[
    ("microsoftonline.com", WORLDWIDE),
    ("microsoft.com", WORLDWIDE),
    ("office.com", WORLDWIDE),
    ("office365.com", WORLDWIDE),
    ("outlook.com", WORLDWIDE),
    ("microsoftonline.us", US_GOV),
    ("microsoft.us", US_GOV),
    ("office365.us", US_GOV),
    ("microsoftonline.cn", CHINA),
    ("chinacloudapi.cn", CHINA),
    ("outlook.cn", CHINA),
];

/// Graph's application ID, a form `aud` may take.
pub(crate) const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// Office 365 Exchange Online's application ID, a form `aud` may take.
pub(crate) const EXO_APP_ID: &str = "00000002-0000-0ff1-ce00-000000000000";

/// The host of an absolute URL (`https://Host:443/path` → `host`), lower-cased. `None` when the
/// text has no `scheme://`.
pub(crate) fn host_of(url: &str) -> Option<String> {
    let (_, rest) = url.trim().split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if authority.starts_with('[') {
        authority
            .split_once(']')
            .map_or(authority, |(h, _)| h)
            .trim_start_matches('[')
    } else {
        authority.split(':').next().unwrap_or("")
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// What a Microsoft host serves (if known exactly) and the clouds it belongs to. `None` for
/// hosts that are not Microsoft's.
pub(crate) fn classify_host(host: &str) -> Option<(Option<HostKind>, &'static [Cloud])> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    if let Some(&(_, kind, clouds)) = KNOWN.iter().find(|(h, _, _)| *h == host) {
        return Some((Some(kind), clouds));
    }
    DOMAINS
        .iter()
        .find(|(d, _)| host == *d || host.ends_with(&format!(".{d}")))
        .map(|&(_, clouds)| (None, clouds))
}

/// A short description of which clouds a set names, for messages.
pub(crate) fn clouds_label(clouds: &[Cloud]) -> String {
    if clouds == WORLDWIDE {
        return "Worldwide/GCC".to_string();
    }
    if clouds == US_GOV {
        return "GCC High/DoD".to_string();
    }
    clouds
        .iter()
        .map(|c| c.label())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_scheme_port_path_and_case() {
        assert_eq!(
            host_of("https://Login.MicrosoftOnline.us:443/tenant/oauth2"),
            Some("login.microsoftonline.us".into())
        );
        assert_eq!(
            host_of("https://outlook.office.com/IMAP.AccessAsUser.All"),
            Some("outlook.office.com".into())
        );
        assert_eq!(host_of("http://user@[::1]:8080/x"), Some("::1".into()));
        assert_eq!(host_of("Mail.ReadWrite"), None);
        assert_eq!(host_of("https:///x"), None);
    }

    #[test]
    fn classify_known_and_family_hosts() {
        assert_eq!(
            classify_host("dod-graph.microsoft.us"),
            Some((Some(HostKind::Graph), DOD))
        );
        assert_eq!(
            classify_host("login.microsoftonline.com"),
            Some((Some(HostKind::Login), WORLDWIDE))
        );
        assert_eq!(classify_host("sts.chinacloudapi.cn"), Some((None, CHINA)));
        assert_eq!(classify_host("login.example.com"), None);
        assert_eq!(classify_host("sts.windows.net"), None);
        assert_eq!(classify_host("notoffice.com"), None);
    }
}
