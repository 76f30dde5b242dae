//! `check_token_for_protocol` and `check_identity_matches_mailbox`: a token's audience, scopes,
//! roles and issuer against the protocol and cloud (RC1, G1, G2, RC9), and the signed-in user
//! against the mailbox (RC3, RC11).

use intake_core::{
    Cloud, Finding, Protocol, RootCause, Severity, TokenIdentity, check_identity_matches_mailbox,
    check_token_for_protocol,
};

/// Microsoft Graph's application ID (a form `aud` takes).
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// Office 365 Exchange Online's application ID.
const EXO_APP_ID: &str = "00000002-0000-0ff1-ce00-000000000000";

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

fn token(aud: &str, scp: &[&str]) -> TokenIdentity {
    TokenIdentity {
        audience: Some(aud.into()),
        scopes: scp.iter().map(|s| s.to_string()).collect(),
        ..TokenIdentity::default()
    }
}

#[test]
fn right_tokens_pass() {
    let cases = [
        (
            token("https://outlook.office.com", &["IMAP.AccessAsUser.All"]),
            Protocol::Imap,
            Cloud::Worldwide,
        ),
        (
            token("https://outlook.office365.com/", &["POP.AccessAsUser.All"]),
            Protocol::Pop3,
            Cloud::Gcc,
        ),
        (
            token(EXO_APP_ID, &["SMTP.Send", "IMAP.AccessAsUser.All"]),
            Protocol::Smtp,
            Cloud::China,
        ),
        (
            token(
                "https://outlook-dod.office365.us",
                &["IMAP.AccessAsUser.All"],
            ),
            Protocol::Imap,
            Cloud::Dod,
        ),
        (
            token(
                "https://graph.microsoft.com",
                &["Mail.ReadWrite", "User.Read"],
            ),
            Protocol::Graph,
            Cloud::Worldwide,
        ),
        (
            token(GRAPH_APP_ID, &["Mail.ReadWrite.Shared"]),
            Protocol::Graph,
            Cloud::GccHigh,
        ),
        (
            token("https://graph.microsoft.us", &["Mail.ReadWrite"]),
            Protocol::Graph,
            Cloud::GccHigh,
        ),
    ];
    for (t, p, c) in cases {
        let f = check_token_for_protocol(&t, p, c);
        assert!(f.is_empty(), "{t:?} {p} {c}: {f:#?}");
    }
    // Opaque tokens (no claims) are not judged.
    assert!(
        check_token_for_protocol(&TokenIdentity::default(), Protocol::Imap, Cloud::Worldwide)
            .is_empty()
    );
}

#[test]
fn exchange_token_at_graph_is_g1() {
    let t = token("https://outlook.office.com", &["IMAP.AccessAsUser.All"]);
    let m = only(
        &check_token_for_protocol(&t, Protocol::Graph, Cloud::Worldwide),
        RootCause::G1,
        Severity::Error,
        "token.aud",
    );
    assert!(m.contains("Invalid audience"), "{m}");
    let t = token(EXO_APP_ID, &[]);
    only(
        &check_token_for_protocol(&t, Protocol::Graph, Cloud::Worldwide),
        RootCause::G1,
        Severity::Error,
        "token.aud",
    );
}

#[test]
fn graph_token_at_imap_is_rc1() {
    let t = token(GRAPH_APP_ID, &["IMAP.AccessAsUser.All"]);
    let m = only(
        &check_token_for_protocol(&t, Protocol::Imap, Cloud::Worldwide),
        RootCause::Rc1,
        Severity::Error,
        "token.aud",
    );
    assert!(
        m.contains("https://outlook.office.com/IMAP.AccessAsUser.All"),
        "{m}"
    );
}

#[test]
fn wrong_cloud_tokens() {
    let t = token("https://graph.microsoft.com", &["Mail.ReadWrite"]);
    only(
        &check_token_for_protocol(&t, Protocol::Graph, Cloud::GccHigh),
        RootCause::G2,
        Severity::Error,
        "token.aud",
    );
    let t = token("https://outlook.office.com", &["IMAP.AccessAsUser.All"]);
    only(
        &check_token_for_protocol(&t, Protocol::Imap, Cloud::Dod),
        RootCause::Rc9,
        Severity::Error,
        "token.aud",
    );
    let t = TokenIdentity {
        issuer: Some("https://login.microsoftonline.com/tid/v2.0".into()),
        ..token("https://outlook.office365.us", &["IMAP.AccessAsUser.All"])
    };
    only(
        &check_token_for_protocol(&t, Protocol::Imap, Cloud::GccHigh),
        RootCause::Rc9,
        Severity::Error,
        "token.iss",
    );
    // sts.windows.net (v1 issuer) is not classified, so it is not judged.
    let t = TokenIdentity {
        issuer: Some("https://sts.windows.net/tid/".into()),
        ..token("https://outlook.office365.us", &["IMAP.AccessAsUser.All"])
    };
    assert!(check_token_for_protocol(&t, Protocol::Imap, Cloud::GccHigh).is_empty());
}

#[test]
fn missing_permissions_are_rc1() {
    let t = token("https://outlook.office.com", &["SMTP.Send"]);
    let m = only(
        &check_token_for_protocol(&t, Protocol::Imap, Cloud::Worldwide),
        RootCause::Rc1,
        Severity::Error,
        "token.scp",
    );
    assert!(m.contains("IMAP.AccessAsUser.All"), "{m}");
    let t = token("https://outlook.office.com", &["IMAP.AccessAsUser.All"]);
    let m = only(
        &check_token_for_protocol(&t, Protocol::Pop3, Cloud::Worldwide),
        RootCause::Rc1,
        Severity::Error,
        "token.scp",
    );
    assert!(m.contains("POP.AccessAsUser.All"), "{m}");
    let t = TokenIdentity {
        roles: vec!["SMTP.SendAsApp".into()],
        ..token("https://outlook.office365.com", &[])
    };
    let m = only(
        &check_token_for_protocol(&t, Protocol::Imap, Cloud::Worldwide),
        RootCause::Rc1,
        Severity::Error,
        "token.roles",
    );
    assert!(m.contains("IMAP.AccessAsApp"), "{m}");
    let t = token("https://graph.microsoft.com", &["Mail.Read"]);
    only(
        &check_token_for_protocol(&t, Protocol::Graph, Cloud::Worldwide),
        RootCause::Rc1,
        Severity::Warning,
        "token.scp",
    );
}

#[test]
fn unknown_audience_is_only_a_warning() {
    let t = token("api://something-else", &[]);
    only(
        &check_token_for_protocol(&t, Protocol::Imap, Cloud::Worldwide),
        RootCause::Rc1,
        Severity::Warning,
        "token.aud",
    );
    only(
        &check_token_for_protocol(&t, Protocol::Graph, Cloud::Worldwide),
        RootCause::G1,
        Severity::Warning,
        "token.aud",
    );
}

#[test]
fn identity_against_mailbox() {
    let who = |u: &str| TokenIdentity {
        username: Some(u.into()),
        ..TokenIdentity::default()
    };
    assert!(check_identity_matches_mailbox(&who("Help@Contoso.com"), "help@contoso.com").is_none());
    assert!(
        check_identity_matches_mailbox(&TokenIdentity::default(), "help@contoso.com").is_none()
    );
    let f = check_identity_matches_mailbox(&who("alice@contoso.com"), "help@contoso.com").unwrap();
    assert_eq!(f.cause, Some(RootCause::Rc3));
    assert!(f.is_error());
    assert!(f.message.contains("Full Access"), "{}", f.message);
    assert!(
        f.message
            .contains("Add-MailboxPermission -Identity help@contoso.com -User alice@contoso.com")
    );
    let f = check_identity_matches_mailbox(&who("me@gmail.com"), "help@contoso.com").unwrap();
    assert_eq!(f.cause, Some(RootCause::Rc11));
    assert!(f.message.contains("wrong account"), "{}", f.message);
}
