//! `lint_integration` / `lint_integrations`: every configuration mistake docs/troubleshooting.md names is
//! caught with the right root cause, and clean configurations (including every computed scope
//! list) produce no finding.

use intake_core::{
    Cloud, Finding, Grant, IntegrationConfig, Protocol, Provider, RootCause, SecretRef, Severity,
    lint_integration, lint_integrations, scopes as preset_scopes,
};

fn ms(cloud: Cloud) -> IntegrationConfig {
    let mut c = IntegrationConfig::new("m", Provider::Microsoft);
    c.cloud = Some(cloud);
    c.tenant = Some("contoso.onmicrosoft.com".into());
    c.client_id = Some("11111111-2222-3333-4444-555555555555".into());
    c
}

fn with_scopes(cloud: Cloud, grant: Grant, scopes: &[&str]) -> IntegrationConfig {
    let mut c = ms(cloud);
    c.grant = Some(grant);
    if grant == Grant::ClientCredentials {
        c.client_secret = Some(SecretRef::parse("env:S").unwrap());
        c.client_secret_expires = Some("2030-01-01".into());
    }
    c.scopes = Some(scopes.iter().map(|s| s.to_string()).collect());
    c
}

fn causes(findings: &[Finding]) -> Vec<(Option<RootCause>, Severity, &str)> {
    findings
        .iter()
        .map(|f| (f.cause, f.severity, f.path.as_str()))
        .collect()
}

/// Asserts exactly one finding, with this cause, severity and path; returns its message.
fn only(findings: &[Finding], cause: RootCause, severity: Severity, path: &str) -> String {
    assert_eq!(
        causes(findings),
        vec![(Some(cause), severity, path)],
        "{findings:#?}"
    );
    findings[0].message.clone()
}

#[test]
fn clean_configs_have_no_findings() {
    for &cloud in Cloud::all() {
        assert!(lint_integration(&ms(cloud)).is_empty(), "{cloud}");
    }
    let mut g = IntegrationConfig::new("g", Provider::Google);
    g.client_id = Some("1.apps.googleusercontent.com".into());
    g.client_secret = Some(SecretRef::parse("file:/run/secrets/google").unwrap());
    assert!(lint_integration(&g).is_empty());
}

#[test]
fn computed_scopes_pass_the_lint_in_every_combination() {
    for &cloud in Cloud::all() {
        for &grant in Grant::all() {
            for &protocol in Protocol::all() {
                let list = preset_scopes(Provider::Microsoft, cloud, protocol, grant);
                let refs: Vec<&str> = list.iter().map(String::as_str).collect();
                let findings = lint_integration(&with_scopes(cloud, grant, &refs));
                assert!(
                    findings.is_empty(),
                    "{cloud} {grant} {protocol}: {findings:#?}"
                );
            }
        }
    }
}

#[test]
fn common_tenant_is_rc8_warning() {
    for alias in ["common", "Organizations", "consumers"] {
        let mut c = ms(Cloud::Worldwide);
        c.tenant = Some(alias.into());
        let m = only(
            &lint_integration(&c),
            RootCause::Rc8,
            Severity::Warning,
            "integration.tenant",
        );
        assert!(m.contains("AADSTS50194"), "{m}");
    }
}

#[test]
fn missing_tenant_is_rc8_error() {
    let mut c = ms(Cloud::Worldwide);
    c.tenant = None;
    only(
        &lint_integration(&c),
        RootCause::Rc8,
        Severity::Error,
        "integration.tenant",
    );
}

#[test]
fn worldwide_authority_with_dod_is_rc9() {
    let mut c = ms(Cloud::Dod);
    c.authority_url = Some("https://login.microsoftonline.com".into());
    let m = only(
        &lint_integration(&c),
        RootCause::Rc9,
        Severity::Error,
        "integration.authority_url",
    );
    assert!(m.contains("https://login.microsoftonline.us"), "{m}");
    assert!(m.contains("\"dod\""), "{m}");
}

#[test]
fn us_token_url_with_worldwide_is_rc9() {
    let mut c = ms(Cloud::Worldwide);
    c.token_url = Some("https://login.microsoftonline.us/x/oauth2/v2.0/token".into());
    only(
        &lint_integration(&c),
        RootCause::Rc9,
        Severity::Error,
        "integration.token_url",
    );
    let mut c = ms(Cloud::GccHigh);
    c.authorize_url =
        Some("https://login.partner.microsoftonline.cn/x/oauth2/v2.0/authorize".into());
    only(
        &lint_integration(&c),
        RootCause::Rc9,
        Severity::Error,
        "integration.authorize_url",
    );
}

#[test]
fn worldwide_exo_scope_with_gcc_high_is_rc9() {
    let c = with_scopes(
        Cloud::GccHigh,
        Grant::AuthorizationCode,
        &[
            "https://outlook.office.com/IMAP.AccessAsUser.All",
            "offline_access",
        ],
    );
    let m = only(
        &lint_integration(&c),
        RootCause::Rc9,
        Severity::Error,
        "integration.scopes[0]",
    );
    assert!(
        m.contains("use https://outlook.office365.us/IMAP.AccessAsUser.All"),
        "{m}"
    );
}

#[test]
fn worldwide_graph_root_with_gcc_high_is_g2() {
    let mut c = ms(Cloud::GccHigh);
    c.graph_url = Some("https://graph.microsoft.com".into());
    let m = only(
        &lint_integration(&c),
        RootCause::G2,
        Severity::Error,
        "integration.graph_url",
    );
    assert!(m.contains("https://graph.microsoft.us"), "{m}");
    // The DoD Graph is not GCC High's.
    let mut c = ms(Cloud::GccHigh);
    c.graph_url = Some("https://dod-graph.microsoft.us".into());
    only(
        &lint_integration(&c),
        RootCause::G2,
        Severity::Error,
        "integration.graph_url",
    );
    // GCC High's Graph is not DoD's.
    let mut c = ms(Cloud::Dod);
    c.graph_url = Some("https://graph.microsoft.us".into());
    only(
        &lint_integration(&c),
        RootCause::G2,
        Severity::Error,
        "integration.graph_url",
    );
    // A Graph scope of the wrong cloud is G2 too.
    let c = with_scopes(
        Cloud::Dod,
        Grant::ClientCredentials,
        &["https://graph.microsoft.com/.default"],
    );
    only(
        &lint_integration(&c),
        RootCause::G2,
        Severity::Error,
        "integration.scopes[0]",
    );
}

#[test]
fn dod_accepts_the_disputed_exo_host() {
    let c = with_scopes(
        Cloud::Dod,
        Grant::AuthorizationCode,
        &[
            "https://outlook.office365.us/IMAP.AccessAsUser.All",
            "offline_access",
        ],
    );
    assert!(lint_integration(&c).is_empty());
}

#[test]
fn non_microsoft_hosts_are_not_cloud_checked() {
    let mut c = ms(Cloud::Dod);
    c.token_url = Some("https://sts.example.mil/token".into());
    assert!(lint_integration(&c).is_empty());
}

#[test]
fn missing_offline_access_is_rc1() {
    for grant in [Grant::AuthorizationCode, Grant::DeviceCode] {
        let c = with_scopes(
            Cloud::Worldwide,
            grant,
            &["https://outlook.office.com/IMAP.AccessAsUser.All"],
        );
        let m = only(
            &lint_integration(&c),
            RootCause::Rc1,
            Severity::Error,
            "integration.scopes",
        );
        assert!(m.contains("offline_access"), "{m}");
    }
}

#[test]
fn prefixed_oidc_scope_is_rc1() {
    let c = with_scopes(
        Cloud::Worldwide,
        Grant::AuthorizationCode,
        &[
            "Mail.ReadWrite",
            "https://graph.microsoft.com/offline_access",
        ],
    );
    let f = lint_integration(&c);
    // The prefixed form also means offline_access is effectively missing.
    assert_eq!(
        causes(&f),
        vec![
            (
                Some(RootCause::Rc1),
                Severity::Error,
                "integration.scopes[1]"
            ),
            (Some(RootCause::Rc1), Severity::Error, "integration.scopes"),
        ],
        "{f:#?}"
    );
    assert!(f[0].message.contains("bare"), "{}", f[0].message);
    let c = with_scopes(
        Cloud::Worldwide,
        Grant::AuthorizationCode,
        &[
            "Mail.ReadWrite",
            "offline_access",
            "https://graph.microsoft.com/openid",
        ],
    );
    only(
        &lint_integration(&c),
        RootCause::Rc1,
        Severity::Error,
        "integration.scopes[2]",
    );
}

#[test]
fn exo_and_graph_in_one_list_is_rc1() {
    let c = with_scopes(
        Cloud::Worldwide,
        Grant::AuthorizationCode,
        &[
            "https://outlook.office.com/IMAP.AccessAsUser.All",
            "Mail.ReadWrite",
            "offline_access",
        ],
    );
    let m = only(
        &lint_integration(&c),
        RootCause::Rc1,
        Severity::Error,
        "integration.scopes",
    );
    assert!(
        m.contains("Exchange Online") && m.contains("Microsoft Graph"),
        "{m}"
    );
    assert!(m.contains("AADSTS700022"), "{m}");
}

#[test]
fn default_mixed_with_named_scopes_is_rc1() {
    let c = with_scopes(
        Cloud::Worldwide,
        Grant::AuthorizationCode,
        &[
            "https://outlook.office.com/.default",
            "https://outlook.office.com/SMTP.Send",
            "offline_access",
        ],
    );
    let m = only(
        &lint_integration(&c),
        RootCause::Rc1,
        Severity::Error,
        "integration.scopes",
    );
    assert!(m.contains(".default"), "{m}");
}

#[test]
fn client_credentials_without_default_is_rc1() {
    let c = with_scopes(
        Cloud::Worldwide,
        Grant::ClientCredentials,
        &["https://outlook.office365.com/IMAP.AccessAsApp"],
    );
    let m = only(
        &lint_integration(&c),
        RootCause::Rc1,
        Severity::Error,
        "integration.scopes[0]",
    );
    assert!(m.contains("/.default"), "{m}");
    let c = with_scopes(
        Cloud::Worldwide,
        Grant::ClientCredentials,
        &["https://graph.microsoft.com/.default", "offline_access"],
    );
    only(
        &lint_integration(&c),
        RootCause::Rc1,
        Severity::Error,
        "integration.scopes[1]",
    );
}

#[test]
fn exchange_permission_on_graph_is_rc1() {
    // Bare = Graph: the token's audience would be Graph.
    let c = with_scopes(
        Cloud::Worldwide,
        Grant::AuthorizationCode,
        &["IMAP.AccessAsUser.All", "offline_access"],
    );
    let m = only(
        &lint_integration(&c),
        RootCause::Rc1,
        Severity::Error,
        "integration.scopes[0]",
    );
    assert!(
        m.contains("https://outlook.office.com/IMAP.AccessAsUser.All"),
        "{m}"
    );
    let c = with_scopes(
        Cloud::Worldwide,
        Grant::AuthorizationCode,
        &["https://graph.microsoft.com/SMTP.Send", "offline_access"],
    );
    only(
        &lint_integration(&c),
        RootCause::Rc1,
        Severity::Error,
        "integration.scopes[0]",
    );
}

#[test]
fn graph_permission_on_exchange_is_g1() {
    let c = with_scopes(
        Cloud::Worldwide,
        Grant::AuthorizationCode,
        &[
            "https://outlook.office.com/Mail.ReadWrite",
            "offline_access",
        ],
    );
    let m = only(
        &lint_integration(&c),
        RootCause::G1,
        Severity::Error,
        "integration.scopes[0]",
    );
    assert!(m.contains("Invalid audience"), "{m}");
}

#[test]
fn bare_graph_scope_outside_worldwide_is_a_g2_warning() {
    let c = with_scopes(
        Cloud::GccHigh,
        Grant::AuthorizationCode,
        &["Mail.ReadWrite", "offline_access"],
    );
    let m = only(
        &lint_integration(&c),
        RootCause::G2,
        Severity::Warning,
        "integration.scopes[0]",
    );
    assert!(
        m.contains("https://graph.microsoft.us/Mail.ReadWrite"),
        "{m}"
    );
}

#[test]
fn credential_mistakes() {
    let mut c = ms(Cloud::Worldwide);
    c.client_secret = Some(SecretRef::parse("env:S").unwrap());
    only(
        &lint_integration(&c),
        RootCause::Rc14,
        Severity::Warning,
        "integration.client_secret_expires",
    );

    let mut c = ms(Cloud::Worldwide);
    c.grant = Some(Grant::ClientCredentials);
    let f = lint_integration(&c);
    assert_eq!(
        causes(&f),
        vec![(None, Severity::Error, "integration.client_secret")]
    );

    let mut c = ms(Cloud::Worldwide);
    c.client_certificate = Some(SecretRef::parse("file:/c.pem").unwrap());
    let f = lint_integration(&c);
    assert_eq!(
        causes(&f),
        vec![(None, Severity::Error, "integration.client_key")]
    );

    let mut c = ms(Cloud::Worldwide);
    c.client_secret = Some(SecretRef::parse("literal-secret").unwrap());
    c.client_secret_expires = Some("2030-02-01".into());
    let f = lint_integration(&c);
    assert_eq!(
        causes(&f),
        vec![(None, Severity::Warning, "integration.client_secret")]
    );
    assert!(!format!("{f:?}").contains("literal-secret"));
}

#[test]
fn url_and_proxy_syntax() {
    let mut c = ms(Cloud::Worldwide);
    c.token_url = Some("http://login.example.com/token".into());
    only_none(&lint_integration(&c), "integration.token_url");
    c.token_url = Some("http://127.0.0.1:8080/token".into());
    assert!(lint_integration(&c).is_empty());

    let mut c = ms(Cloud::Worldwide);
    c.authority_url = Some("https://login.microsoftonline.com/contoso".into());
    only(
        &lint_integration(&c),
        RootCause::Rc8,
        Severity::Error,
        "integration.authority_url",
    );

    let mut c = ms(Cloud::Worldwide);
    c.proxy = Some("proxy.corp:3128".into());
    only(
        &lint_integration(&c),
        RootCause::Rc16,
        Severity::Error,
        "integration.proxy",
    );
    // Token requests cannot go through SOCKS5 (IMAP/POP3 channels can).
    c.proxy = Some("socks5://proxy.corp:1080".into());
    only(
        &lint_integration(&c),
        RootCause::Rc16,
        Severity::Error,
        "integration.proxy",
    );
    c.proxy = Some("http://proxy.corp:3128".into());
    assert!(lint_integration(&c).is_empty());
    c.proxy = Some("env".into());
    assert!(lint_integration(&c).is_empty());
}

fn only_none(findings: &[Finding], path: &str) {
    assert_eq!(
        causes(findings),
        vec![(None, Severity::Error, path)],
        "{findings:#?}"
    );
}

#[test]
fn google_mistakes() {
    let mut g = IntegrationConfig::new("g", Provider::Google);
    g.client_id = Some("1.apps.googleusercontent.com".into());
    g.grant = Some(Grant::ClientCredentials);
    g.client_secret = Some(SecretRef::parse("env:G").unwrap());
    only_none(&lint_integration(&g), "integration.grant");
    g.grant = Some(Grant::DeviceCode);
    only_none(
        &lint_integration(&g),
        "integration.device_authorization_url",
    );
    g.grant = None;
    g.cloud = Some(Cloud::GccHigh);
    let f = lint_integration(&g);
    assert_eq!(
        causes(&f),
        vec![(None, Severity::Warning, "integration.cloud")]
    );
}

#[test]
fn list_lint_numbers_paths_and_rejects_duplicate_names() {
    let mut bad = ms(Cloud::Worldwide);
    bad.tenant = Some("common".into());
    let f = lint_integrations(&[ms(Cloud::Worldwide), bad]);
    assert_eq!(
        causes(&f),
        vec![
            (
                Some(RootCause::Rc8),
                Severity::Warning,
                "integration[1].tenant"
            ),
            (None, Severity::Error, "integration[1].name"),
        ]
    );
}
