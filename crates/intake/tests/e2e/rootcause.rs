//! One end-to-end test per root cause the doctor names (docs/troubleshooting.md), on loopback:
//! each runs `intake doctor --json` against real servers (Dovecot, the test IdP) or, where only
//! Microsoft could answer, a fake that answers with Microsoft's exact words (Exchange Online's
//! IMAP and POP3 texts, AADSTS errors, Graph errors), and checks the finding's `code` and
//! `severity` and that no client secret, token or password is printed. Also the behaviour
//! around them: tokens of the wrong audience are never handed to a channel, the token
//! pre-flight runs before every connection of `intake run`, a long-running `intake run`
//! records its diagnosis once per change of cause, Google without a device endpoint points
//! to `--browser`, and healthy configurations report no error.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use intake_core::token::TokenIdentity;
use intake_testkit::TestDb;
use intake_testkit::dovecot::{Dovecot, DovecotOptions, mail_access_token};
use intake_testkit::idp::Idp;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::kit::*;

const M: &str = "help@contoso.example";
const EXO_TOKEN: &str = "exo-access-token-never-printed-1";
const GRAPH_TOKEN: &str = "graph-access-token-never-printed-2";
const PASSWORD: &str = "imap-password-never-printed-3";

fn exo_identity(upn: &str, scope: &str) -> TokenIdentity {
    TokenIdentity {
        username: Some(upn.to_string()),
        audience: Some("https://outlook.office.com".into()),
        scopes: vec![scope.to_string()],
        tenant: Some("t".into()),
        ..Default::default()
    }
}

fn graph_identity(upn: &str) -> TokenIdentity {
    TokenIdentity {
        username: Some(upn.to_string()),
        audience: Some("https://graph.microsoft.com".into()),
        scopes: vec!["Mail.ReadWrite".into()],
        tenant: Some("t".into()),
        ..Default::default()
    }
}

/// Nothing secret in `text`.
fn no_secret(text: &str) {
    for s in [SECRET, EXO_TOKEN, GRAPH_TOKEN, PASSWORD] {
        assert!(!text.contains(s), "a secret is printed: {text}");
    }
}

/// `(severity of code)` in the report, or panic.
fn severity(v: &serde_json::Value, code: &str) -> String {
    finding(v, code)["severity"].as_str().unwrap().to_string()
}

/// Exchange Online's IMAP as observed: it accepts the XOAUTH2 token and then answers every
/// command with `BAD User is authenticated but not connected.` — what it does when IMAP is
/// disabled for the mailbox, the account has no Full Access, or a client-access rule blocks
/// IMAP4.
fn exchange_imap_session() -> Session {
    let mut pending: Option<String> = None;
    let mut authenticated = false;
    Box::new(move |l: &str| {
        if let Some(tag) = pending.take() {
            authenticated = true;
            return Some(format!("{tag} OK AUTHENTICATE completed.\r\n"));
        }
        let (tag, cmd) = l.split_once(' ').unwrap_or((l, ""));
        let upper = cmd.to_ascii_uppercase();
        Some(if upper == "LOGOUT" {
            format!(
                "* BYE Microsoft Exchange Server IMAP4 server signing off.\r\n{tag} OK LOGOUT completed.\r\nCLOSE"
            )
        } else if authenticated {
            format!("{tag} BAD User is authenticated but not connected.\r\n")
        } else if upper == "CAPABILITY" {
            format!(
                "* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT \
                 CLIENTACCESSRULES CLIENTNETWORKPRESENCELOCATION BACKENDAUTHENTICATE CHILDREN IDLE \
                 NAMESPACE LITERAL+\r\n{tag} OK CAPABILITY completed.\r\n"
            )
        } else if upper.starts_with("AUTHENTICATE XOAUTH2") {
            if cmd.split_whitespace().count() > 2 {
                authenticated = true;
                format!("{tag} OK AUTHENTICATE completed.\r\n")
            } else {
                pending = Some(tag.to_string());
                "+ \r\n".to_string()
            }
        } else {
            format!("{tag} BAD Command received in Invalid state.\r\n")
        })
    })
}

const EXCHANGE_IMAP_GREETING: &str =
    "* OK The Microsoft Exchange IMAP4 service is ready. [QQBNADAAUABSADAA]\r\n";

/// An IMAP channel `exo` on the Exchange stand-in, with an Exchange token of `upn` stored for
/// the mailbox; the doctor's report, and then `intake run --once` on the same file and
/// database: the diagnosis it wrote to the mail log (one `channel_diagnosis` event).
async fn doctor_on_exchange_imap(upn: &str) -> (i32, serde_json::Value, String, serde_json::Value) {
    let login = token_endpoint(400, serde_json::json!({"error": "invalid_grant"})).await;
    let (port, _) = line_server(EXCHANGE_IMAP_GREETING, exchange_imap_session).await;
    let db = TestDb::sqlite();
    seed_token(
        &db.url,
        "m365",
        M,
        "exo",
        EXO_TOKEN,
        Some("exo-refresh-token"),
        exo_identity(upn, "IMAP.AccessAsUser.All"),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &format!(
            "{}[[channel]]\nname = \"exo\"\nproject = \"EX\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             tls = \"none\"\nmailbox = \"{M}\"\nauth = \"oauth:m365\"\ntimeout_seconds = 5\n",
            integration(&login.uri(), "client_secret = \"env:M365_SECRET\"")
        ),
    );
    let (code, v, text) = doctor(&cfg, &db.url);
    let (run_code, out, err) = intake_with(&cfg, &db.url, &["run", "--once"], &[]);
    assert_ne!(run_code, 0, "run must fail: {out}{err}");
    no_secret(&format!("{out}{err}"));
    let mut logged = log_events(&cfg, &db.url, "channel_diagnosis");
    assert_eq!(logged.len(), 1, "one diagnosis per run: {logged:?}\n{err}");
    (code, v, text, logged.remove(0))
}

/// `intake run` recorded the doctor's diagnosis: the same code, error, and the same fix.
fn run_recorded(logged: &serde_json::Value, v: &serde_json::Value, code: &str) {
    let doctor = finding(v, code);
    assert_eq!(doctor["severity"], "error", "{v}");
    assert_eq!(logged["fields"]["code"], code, "{logged}\ndoctor: {v}");
    assert_eq!(logged["fields"]["severity"], "error", "{logged}");
    assert_eq!(
        logged["fields"]["fix"], doctor["fix"],
        "{logged}\ndoctor: {v}"
    );
    no_secret(&logged.to_string());
}

/// RC2 (IMAP disabled for the mailbox) and RC6 (a client-access rule blocks IMAP4): Exchange
/// accepts the token of the mailbox's own account, then says `User is authenticated but not
/// connected.`. No answer tells RC2 from RC6: RC2 is the error, RC6 a warning beside it,
/// both with the mailbox's real name in the fix. `intake run` records the same RC2 and fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rc2_and_rc6_exchange_says_authenticated_but_not_connected_to_the_mailboxs_own_token() {
    let (code, v, text, logged) = doctor_on_exchange_imap(M).await;
    assert_eq!(code, 1, "{v}");
    assert_eq!(severity(&v, "RC2"), "error", "{v}");
    run_recorded(&logged, &v, "RC2");
    assert_eq!(severity(&v, "RC6"), "warning", "{v}");
    let rc2 = finding(&v, "RC2");
    assert!(
        rc2["evidence"]
            .as_str()
            .unwrap()
            .contains("User is authenticated but not connected"),
        "{rc2}"
    );
    assert!(
        rc2["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("Get-CASMailbox {M}")),
        "{rc2}"
    );
    assert!(
        finding(&v, "RC6")["fix"]
            .as_str()
            .unwrap()
            .contains("Get-ClientAccessRule"),
        "{v}"
    );
    assert!(
        codes(&v).iter().all(|(c, _)| c != "RC3" && c != "RC11"),
        "the token is the mailbox's own: {v}"
    );
    no_secret(&text);
}

/// RC3 (a shared or another user's mailbox without Full Access): Graph answers
/// `ErrorAccessDenied` on `/users/M` (error); and on IMAP, Exchange's `authenticated but not
/// connected` with a token of another account of the same domain is RC3 (error), RC2 only a
/// warning, the fix naming both accounts; `intake run` records RC3 with the doctor's fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rc3_graph_access_denied_on_a_shared_mailbox_and_imap_with_another_users_token() {
    let login = token_endpoint(
        200,
        serde_json::json!({"token_type": "Bearer", "expires_in": 3600, "access_token": graph_app_token()}),
    )
    .await;
    let (graph, _) = graph_fake_with(
        M,
        &graph_app_token(),
        1,
        Vec::new(),
        Vec::new(),
        Some((
            403,
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
        )),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &format!(
            "{}{}",
            integration(
                &login.uri(),
                &format!(
                    "client_secret = \"env:M365_SECRET\"\ngrant = \"client_credentials\"\ngraph_url = \"{}\"",
                    graph.uri()
                )
            ),
            graph_channel(M, "")
        ),
    );
    let db = TestDb::sqlite();
    let (code, v, text) = doctor(&cfg, &db.url);
    assert_eq!(code, 1, "{v}");
    assert_eq!(severity(&v, "RC3"), "error", "{v}");
    assert!(
        finding(&v, "RC3")["evidence"]
            .as_str()
            .unwrap()
            .contains("ErrorAccessDenied"),
        "{v}"
    );
    no_secret(&text);

    const AGENT: &str = "agent@contoso.example";
    let (code, v, text, logged) = doctor_on_exchange_imap(AGENT).await;
    assert_eq!(code, 1, "{v}");
    assert_eq!(severity(&v, "RC3"), "error", "{v}");
    run_recorded(&logged, &v, "RC3");
    assert_eq!(severity(&v, "RC2"), "warning", "{v}");
    let rc3 = finding(&v, "RC3");
    let fix = rc3["fix"].as_str().unwrap();
    assert!(
        fix.contains(&format!(
            "Add-MailboxPermission -Identity {M} -User {AGENT} -AccessRights FullAccess"
        )),
        "{rc3}"
    );
    assert!(
        fix.contains(&format!("intake authorize m365 --mailbox {M}")),
        "{rc3}"
    );
    no_secret(&text);
}

/// RC11 (the browser authorized the wrong account): Exchange's `authenticated but not
/// connected` to a token of an account of another domain is RC11 (error) with the fix to
/// authorize again and pick the mailbox (and `intake run` records that RC11 and fix, not RC2);
/// the identity provider's AADSTS50020 is RC11 too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rc11_a_token_of_another_account_and_aadsts50020() {
    const OTHER: &str = "someone@fabrikam.example";
    let (code, v, text, logged) = doctor_on_exchange_imap(OTHER).await;
    assert_eq!(code, 1, "{v}");
    assert_eq!(severity(&v, "RC11"), "error", "{v}");
    run_recorded(&logged, &v, "RC11");
    let rc11 = finding(&v, "RC11");
    assert!(
        rc11["evidence"].as_str().unwrap().contains(OTHER)
            && rc11["evidence"].as_str().unwrap().contains(M),
        "{rc11}"
    );
    assert!(
        rc11["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("intake authorize m365 --mailbox {M}")),
        "{rc11}"
    );
    no_secret(&text);

    let login = token_endpoint(
        400,
        serde_json::json!({"error": "invalid_request", "error_codes": [50020],
            "error_description": "AADSTS50020: User account from identity provider does not exist in tenant."}),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &format!(
            "{}{}",
            integration(
                &login.uri(),
                "client_secret = \"env:M365_SECRET\"\ngrant = \"client_credentials\""
            ),
            graph_channel(M, "")
        ),
    );
    let db = TestDb::sqlite();
    let (code, v, text) = doctor(&cfg, &db.url);
    assert_eq!(code, 1, "{v}");
    assert_eq!(severity(&v, "RC11"), "error", "{v}");
    no_secret(&text);
}

/// RC4 (no Exchange Online licence): Graph answers `MailboxNotEnabledForRESTAPI` — `REST API
/// is not yet supported for this mailbox.` — and, for another mailbox,
/// `UserHasNoMailboxAndNoLicenseAssignedError`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rc4_graph_says_the_mailbox_has_no_licence() {
    let login = token_endpoint(
        200,
        serde_json::json!({"token_type": "Bearer", "expires_in": 3600, "access_token": graph_app_token()}),
    )
    .await;
    for (code_text, message) in [
        (
            "MailboxNotEnabledForRESTAPI",
            "REST API is not yet supported for this mailbox.",
        ),
        (
            "UserHasNoMailboxAndNoLicenseAssignedError",
            "The user has no mailbox and no license assigned.",
        ),
    ] {
        let (graph, _) = graph_fake_with(
            M,
            &graph_app_token(),
            1,
            Vec::new(),
            Vec::new(),
            Some((404, code_text, message)),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            dir.path(),
            &format!(
                "{}{}",
                integration(
                    &login.uri(),
                    &format!(
                        "client_secret = \"env:M365_SECRET\"\ngrant = \"client_credentials\"\ngraph_url = \"{}\"",
                        graph.uri()
                    )
                ),
                graph_channel(M, "")
            ),
        );
        let db = TestDb::sqlite();
        let (code, v, text) = doctor(&cfg, &db.url);
        assert_eq!(code, 1, "{v}");
        assert_eq!(severity(&v, "RC4"), "error", "{code_text}: {v}");
        assert!(
            finding(&v, "RC4")["evidence"]
                .as_str()
                .unwrap()
                .contains(code_text),
            "{v}"
        );
        no_secret(&text);
    }
}

/// A POP3 stand-in for Exchange Online that refuses the one-line SASL form with `-ERR
/// Protocol error. Connection is closed. 10`; the two-line form logs in, or (with
/// `TWO_LINE_TOO`) is refused the same way.
fn exchange_pop3_session(two_line_ok: bool) -> Session {
    let mut awaiting = false;
    Box::new(move |l: &str| {
        Some(if awaiting {
            awaiting = false;
            if two_line_ok {
                "+OK User successfully authenticated.\r\n".into()
            } else {
                "-ERR Protocol error. Connection is closed. 10\r\nCLOSE".into()
            }
        } else {
            match l {
                "CAPA" => "+OK\r\nTOP\r\nUIDL\r\nSASL PLAIN XOAUTH2\r\nUSER\r\n.\r\n".into(),
                "AUTH XOAUTH2" => {
                    awaiting = true;
                    "+ \r\n".into()
                }
                l if l.starts_with("AUTH XOAUTH2 ") => {
                    "-ERR Protocol error. Connection is closed. 10\r\nCLOSE".into()
                }
                "STAT" => "+OK 2 600\r\n".into(),
                "QUIT" => "+OK Microsoft Exchange Server POP3 server signing off.\r\nCLOSE".into(),
                _ => "-ERR Command is not valid in this state.\r\n".into(),
            }
        })
    })
}

/// RC10 (POP3 needs the two-line XOAUTH2 form): against a server that refuses the one-line
/// form with Exchange's words, the doctor's check falls back to the two-line form and
/// passes, reporting RC10 as `info` (nothing to change); a server that refuses both forms
/// is an RC10 error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rc10_pop3_one_line_form_refused_falls_back_to_two_lines_or_fails_with_rc10() {
    let login = token_endpoint(400, serde_json::json!({"error": "invalid_grant"})).await;
    let (fallback, seen) =
        line_server("+OK POP3 server ready\r\n", || exchange_pop3_session(true)).await;
    let (refusing, _) =
        line_server("+OK POP3 server ready\r\n", || exchange_pop3_session(false)).await;
    for (port, ok) in [(fallback, true), (refusing, false)] {
        let db = TestDb::sqlite();
        seed_token(
            &db.url,
            "m365",
            M,
            "exo",
            EXO_TOKEN,
            None,
            exo_identity(M, "POP.AccessAsUser.All"),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            dir.path(),
            &format!(
                "{}[[channel]]\nname = \"pop\"\nproject = \"PO\"\nprotocol = \"pop3\"\nhost = \"127.0.0.1\"\nport = {port}\n\
                 tls = \"none\"\nmailbox = \"{M}\"\nauth = \"oauth:m365\"\ntimeout_seconds = 5\n",
                integration(&login.uri(), "client_secret = \"env:M365_SECRET\"")
            ),
        );
        let (code, v, text) = doctor(&cfg, &db.url);
        no_secret(&text);
        if ok {
            assert_eq!(code, 0, "{v}");
            assert_eq!(severity(&v, "RC10"), "info", "{v}");
            assert_eq!(v[0]["counts"]["messages"], 2, "{v}");
            assert!(
                finding(&v, "RC10")["evidence"]
                    .as_str()
                    .unwrap()
                    .contains("Protocol error. Connection is closed. 10"),
                "{v}"
            );
            let seen = seen.lock().unwrap();
            assert!(
                seen.iter().any(|l| l.starts_with("AUTH XOAUTH2 "))
                    && seen.iter().any(|l| l == "AUTH XOAUTH2"),
                "one-line first, then two lines: {seen:?}"
            );
        } else {
            assert_eq!(code, 1, "{v}");
            assert_eq!(severity(&v, "RC10"), "error", "{v}");
        }
    }
}

/// G2 (Graph host of the wrong cloud): `cloud = "gcc-high"` while the identity provider hands
/// out a token for the worldwide Graph (`https://graph.microsoft.com`). The fresh token is
/// checked before use: the doctor reports G2 as an error naming the cloud's Graph host, and
/// Graph is never sent the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g2_a_worldwide_graph_token_on_a_gcc_high_integration_is_never_sent() {
    let login = token_endpoint(
        200,
        serde_json::json!({"token_type": "Bearer", "expires_in": 3600, "access_token": graph_app_token()}),
    )
    .await;
    let (graph, _) = graph_fake(M, &graph_app_token(), 1, Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &format!(
            "{}{}",
            integration(
                &login.uri(),
                &format!(
                    "cloud = \"gcc-high\"\nclient_secret = \"env:M365_SECRET\"\ngrant = \"client_credentials\"\ngraph_url = \"{}\"",
                    graph.uri()
                )
            ),
            graph_channel(M, "")
        ),
    );
    let db = TestDb::sqlite();
    let (code, v, text) = doctor(&cfg, &db.url);
    assert_eq!(code, 1, "{v}");
    assert_eq!(severity(&v, "G2"), "error", "{v}");
    assert!(
        finding(&v, "G2")["fix"]
            .as_str()
            .unwrap()
            .contains("graph.microsoft.us"),
        "the fix names the cloud's Graph host: {v}"
    );
    assert!(
        graph.received_requests().await.unwrap().is_empty(),
        "Graph was sent the token of another cloud"
    );
    assert!(!text.contains(&graph_app_token()) && !text.contains(SECRET));
}

/// A certificate for another host name: the login host (the token endpoint over HTTPS) and
/// the mail host (IMAPS) each present a certificate for `wrong.example`, trusted through
/// `ca_file` so that only the name is wrong. Each leg fails naming the certificate problem
/// (RC7, error), the login leg at the `token` stage, the mail leg at `login`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_the_wrong_host_is_named_on_the_login_leg_and_the_mail_leg() {
    let (port, pem) = wrong_host_tls().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pem).unwrap();
    let db = TestDb::sqlite();
    // The login leg.
    let cfg = write(
        dir.path(),
        &format!(
            "{}{}",
            integration(
                &format!("https://127.0.0.1:{port}"),
                &format!(
                    "client_secret = \"env:M365_SECRET\"\ngrant = \"client_credentials\"\nca_file = \"file:{}\"",
                    ca.display()
                )
            ),
            graph_channel(M, "")
        ),
    );
    let (code, v, text) = doctor(&cfg, &db.url);
    assert_eq!(code, 1, "{v}");
    assert_eq!(severity(&v, "RC7"), "error", "{v}");
    assert_eq!(v[0]["stages"][0]["stage"], "token", "{v}");
    let f = finding(&v, "RC7");
    assert!(
        f["evidence"]
            .as_str()
            .unwrap()
            .contains("not valid for this host name"),
        "{f}"
    );
    assert!(f["fix"].as_str().unwrap().contains("certificate"), "{f}");
    no_secret(&text);
    // The mail leg.
    let cfg = write(
        dir.path(),
        &format!(
            "[[channel]]\nname = \"imaps\"\nproject = \"IM\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             tls = \"implicit\"\nca_file = \"file:{}\"\nmailbox = \"{M}\"\nauth = \"password:env:IMAP_PW\"\ntimeout_seconds = 5\n",
            ca.display()
        ),
    );
    let (code, v, text) = doctor_with(&cfg, &db.url, &[("IMAP_PW", PASSWORD)]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(severity(&v, "RC7"), "error", "{v}");
    let failed = v[0]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["ok"] == false)
        .unwrap();
    assert_eq!(failed["stage"], "login", "{v}");
    assert!(
        finding(&v, "RC7")["evidence"]
            .as_str()
            .unwrap()
            .contains("not valid for this host name"),
        "{v}"
    );
    no_secret(&text);
}

/// RC16, a proxy that accepts the connection and never answers: on the login leg (the
/// integration's proxy, `token` stage) and on the mail leg (the channel's proxy, `tcp`
/// stage). Each is an RC16 error naming the proxy and the wait, within the channel's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rc16_a_proxy_that_never_answers_on_the_login_leg_and_the_mail_leg() {
    let silent = silent_server().await;
    let proxy = format!("http://127.0.0.1:{silent}");
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &format!(
            "{}{}",
            integration(
                "https://login.microsoftonline.com",
                &format!(
                    "client_secret = \"env:M365_SECRET\"\ngrant = \"client_credentials\"\nproxy = \"{proxy}\""
                )
            ),
            graph_channel(M, "").replace("timeout_seconds = 5", "timeout_seconds = 2")
        ),
    );
    let started = Instant::now();
    let (code, v, text) = doctor(&cfg, &db.url);
    assert!(started.elapsed() < Duration::from_secs(20), "{v}");
    assert_eq!(code, 1, "{v}");
    assert_eq!(severity(&v, "RC16"), "error", "{v}");
    assert_eq!(v[0]["stages"][0]["stage"], "token", "{v}");
    let f = finding(&v, "RC16");
    assert!(
        f["evidence"].as_str().unwrap().contains("no answer within"),
        "{f}"
    );
    assert!(
        f["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{silent}")),
        "the proxy is named: {f}"
    );
    no_secret(&text);

    let cfg = write(
        dir.path(),
        &format!(
            "[[channel]]\nname = \"proxied\"\nproject = \"IM\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\n\
             tls = \"none\"\nproxy = \"{proxy}\"\nmailbox = \"{M}\"\nauth = \"password:env:IMAP_PW\"\ntimeout_seconds = 2\n",
            closed_port()
        ),
    );
    let started = Instant::now();
    let (code, v, text) = doctor_with(&cfg, &db.url, &[("IMAP_PW", PASSWORD)]);
    assert!(started.elapsed() < Duration::from_secs(20), "{v}");
    assert_eq!(code, 1, "{v}");
    assert_eq!(severity(&v, "RC16"), "error", "{v}");
    let failed = v[0]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["ok"] == false)
        .unwrap();
    assert_eq!(failed["stage"], "tcp", "{v}");
    assert!(
        failed["detail"].as_str().unwrap().contains("timed out"),
        "{v}"
    );
    assert!(
        finding(&v, "RC16")["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{silent}")),
        "{v}"
    );
    no_secret(&text);
}

/// `run --once` and `doctor` never hand a Graph channel a token of another audience, and name
/// the command that fixes it: with only an Exchange token stored for the mailbox (no refresh
/// token to redeem) the channel has no Graph token (`TOKEN_MISSING`); with an Exchange-audience
/// token stored as the Graph token it is refused (G1). Graph receives no request in either
/// case; every message names `intake authorize m365 --mailbox M`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_the_wrong_audience_is_never_sent_and_the_fix_names_the_command() {
    let login = token_endpoint(400, serde_json::json!({"error": "invalid_grant"})).await;
    let (graph, _) = graph_fake(M, EXO_TOKEN, 1, Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &format!(
            "{}{}",
            integration(
                &login.uri(),
                &format!(
                    "client_secret = \"env:M365_SECRET\"\ngraph_url = \"{}\"",
                    graph.uri()
                )
            ),
            graph_channel(M, "")
        ),
    );
    let command = format!("intake authorize m365 --mailbox {M}");
    for (resource, want) in [("exo", "TOKEN_MISSING"), ("graph", "G1")] {
        let db = TestDb::sqlite();
        seed_token(
            &db.url,
            "m365",
            M,
            resource,
            EXO_TOKEN,
            None,
            exo_identity(M, "IMAP.AccessAsUser.All"),
        )
        .await;
        let (code, v, text) = doctor(&cfg, &db.url);
        assert_eq!(code, 1, "{v}");
        let f = finding(&v, want);
        assert_eq!(f["severity"], "error", "{f}");
        assert!(f["fix"].as_str().unwrap().contains(&command), "{f}");
        no_secret(&text);
        let (code, stdout, stderr) = intake_with(&cfg, &db.url, &["run", "--once"], &[]);
        assert_eq!(code, 1, "{stdout}{stderr}");
        assert!(stderr.contains(&command), "{stderr}");
        no_secret(&format!("{stdout}{stderr}"));
        assert!(
            graph.received_requests().await.unwrap().is_empty(),
            "{resource}: Graph was sent a request"
        );
    }
}

/// The token pre-flight runs before every connection of a long-running `intake run`, not only
/// at `authorize`: a Graph channel polls every second with a good Graph token; the stored
/// token is then replaced (as another process would) by one for Exchange Online. The next
/// round refuses it — the channel fails naming `intake authorize m365 --mailbox M` — and Graph
/// never sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_preflight_runs_before_every_round_of_a_long_running_run() {
    let login = token_endpoint(400, serde_json::json!({"error": "invalid_grant"})).await;
    let (graph, _) = graph_fake(M, GRAPH_TOKEN, 0, Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &format!(
            "{}{}",
            integration(
                &login.uri(),
                &format!(
                    "client_secret = \"env:M365_SECRET\"\ngraph_url = \"{}\"",
                    graph.uri()
                )
            ),
            graph_channel(M, "poll_seconds = 1")
        ),
    );
    let db = TestDb::sqlite();
    seed_token(
        &db.url,
        "m365",
        M,
        "graph",
        GRAPH_TOKEN,
        None,
        graph_identity(M),
    )
    .await;
    let running = Running::start(&cfg, &db.url);
    let delta_rounds = || async {
        graph
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path().ends_with("/messages/delta"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while delta_rounds().await < 2 {
        assert!(
            Instant::now() < deadline,
            "no two rounds with the good token"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    seed_token(
        &db.url,
        "m365",
        M,
        "graph",
        EXO_TOKEN,
        None,
        exo_identity(M, "IMAP.AccessAsUser.All"),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let failed = log_events(&cfg, &db.url, "channel_failed");
        if !failed.is_empty() {
            break failed;
        }
        assert!(
            Instant::now() < deadline,
            "the swapped token was not refused"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let stderr = running.stop();
    let message = failed[0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains(&format!("intake authorize m365 --mailbox {M}")),
        "{failed:?}"
    );
    assert!(message.contains("does not fit GRAPH"), "{failed:?}");
    let diagnosis = log_events(&cfg, &db.url, "channel_diagnosis");
    assert_eq!(diagnosis[0]["fields"]["code"], "G1", "{diagnosis:?}");
    for r in graph.received_requests().await.unwrap() {
        let auth = r
            .headers
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert_eq!(auth, format!("Bearer {GRAPH_TOKEN}"), "{}", r.url);
    }
    no_secret(&format!("{stderr}{failed:?}{diagnosis:?}"));
}

/// The pre-flight before every connection, on IMAP: a Microsoft IMAP channel reads Dovecot
/// (which checks the token at the test IdP) with the mailbox's Exchange token in a
/// long-running `intake run`. The stored token's claims are then replaced by a Graph audience
/// — the token itself unchanged, so Dovecot would still accept it — and Dovecot restarted,
/// cutting the connection. The reconnection refuses the token before connecting: the channel
/// fails naming `intake authorize m365 --mailbox M` (RC1 in the mail log), and Dovecot sees no
/// new login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_preflight_runs_before_every_imap_connection_of_a_long_running_run() {
    const USER: &str = "help@example.test";
    let Some(idp) = Idp::start_or_skip("preflight_every_imap_connection") else {
        return;
    };
    let Some(mut dc) = Dovecot::start_or_skip(
        "preflight_every_imap_connection",
        &DovecotOptions::with_users(&[(USER, "unused")]).introspect(&idp),
    ) else {
        return;
    };
    let token = mail_access_token(&idp, USER).await.unwrap();
    let db = TestDb::sqlite();
    seed_token(
        &db.url,
        "m365",
        USER,
        "exo",
        &token,
        None,
        exo_identity(USER, "IMAP.AccessAsUser.All"),
    )
    .await;
    dc.deliver(
        USER,
        b"From: a@example.org\r\nSubject: before\r\nMessage-ID: <p1@x>\r\n\r\nhello\r\n",
    )
    .unwrap();
    let login = token_endpoint(400, serde_json::json!({"error": "invalid_grant"})).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &format!(
            "{}[[channel]]\nname = \"exo\"\nproject = \"EX\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\n\
             tls = \"none\"\nmailbox = \"{USER}\"\nauth = \"oauth:m365\"\ntimeout_seconds = 5\n",
            integration(&login.uri(), "client_secret = \"env:M365_SECRET\""),
            dc.imap_port
        ),
    );
    let running = Running::start(&cfg, &db.url);
    let logins = |dc: &Dovecot| dc.log().matches("Login: user=<").count();
    let deadline = Instant::now() + Duration::from_secs(30);
    while log_events(&cfg, &db.url, "channel_started").is_empty() || logins(&dc) == 0 {
        assert!(Instant::now() < deadline, "no login:\n{}", dc.log());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, stdout, _) = intake_with(&cfg, &db.url, &["tickets", "list", "--json"], &[]);
        if stdout.contains("before") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first message was not ingested"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let before = logins(&dc);
    seed_token(
        &db.url,
        "m365",
        USER,
        "exo",
        &token,
        None,
        graph_identity(USER),
    )
    .await;
    dc.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    let refused = loop {
        let found: Vec<_> = log_events(&cfg, &db.url, "channel_failed")
            .into_iter()
            .filter(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("does not fit IMAP"))
            })
            .collect();
        if !found.is_empty() {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "the reconnection did not refuse the token"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let stderr = running.stop();
    assert!(
        refused[0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("intake authorize m365 --mailbox {USER}")),
        "{refused:?}"
    );
    let diagnosis = log_events(&cfg, &db.url, "channel_diagnosis");
    assert!(
        diagnosis.iter().any(|d| d["fields"]["code"] == "RC1"),
        "{diagnosis:?}"
    );
    assert_eq!(
        logins(&dc),
        before,
        "Dovecot saw a login with the refused token:\n{}",
        dc.log()
    );
    assert!(!stderr.contains(&token) && !format!("{refused:?}{diagnosis:?}").contains(&token));
}

/// The identity ≠ mailbox finding: a Graph channel whose stored token belongs to another
/// account of the same domain works (Full Access may be granted), so it is a warning — RC3
/// for the same domain, RC11 for another — naming both accounts; the doctor exits 0, and
/// `intake run --once` logs the same pre-flight warning before it connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_other_than_the_mailbox_is_a_warning_rc3_or_rc11_with_the_real_names() {
    let login = token_endpoint(400, serde_json::json!({"error": "invalid_grant"})).await;
    let (graph, _) = graph_fake(M, GRAPH_TOKEN, 1, Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &format!(
            "{}{}",
            integration(
                &login.uri(),
                &format!(
                    "client_secret = \"env:M365_SECRET\"\ngraph_url = \"{}\"",
                    graph.uri()
                )
            ),
            graph_channel(M, "")
        ),
    );
    for (upn, want) in [
        ("agent@contoso.example", "RC3"),
        ("someone@fabrikam.example", "RC11"),
    ] {
        let db = TestDb::sqlite();
        seed_token(
            &db.url,
            "m365",
            M,
            "graph",
            GRAPH_TOKEN,
            None,
            graph_identity(upn),
        )
        .await;
        let (code, v, text) = doctor(&cfg, &db.url);
        assert_eq!(code, 0, "{v}");
        assert_eq!(severity(&v, want), "warning", "{v}");
        let f = finding(&v, want);
        let evidence = f["evidence"].as_str().unwrap();
        assert!(evidence.contains(upn) && evidence.contains(M), "{f}");
        assert!(
            f["fix"]
                .as_str()
                .unwrap()
                .contains(&format!("intake authorize m365 --mailbox {M}")),
            "{f}"
        );
        no_secret(&text);
        let (code, stdout, stderr) =
            intake_with(&cfg, &db.url, &["run", "--once"], &[("INTAKE_LOG", "warn")]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(
            stderr.contains("token pre-flight") && stderr.contains(upn) && stderr.contains(M),
            "{stderr}"
        );
        no_secret(&format!("{stdout}{stderr}"));
    }
}

/// Google has no device-code endpoint for mail: `intake authorize` with `--device`, or with
/// `grant = "device_code"` in the file, fails before contacting anyone and tells the exact
/// command with `--browser`.
#[test]
fn google_without_a_device_endpoint_suggests_browser() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::sqlite();
    for (grant, flag, want) in [
        (
            "",
            Some("--device"),
            "intake authorize gmail --mailbox help@example.com --browser",
        ),
        // Refused when the file is loaded, before any command runs.
        (
            "grant = \"device_code\"\n",
            None,
            "intake authorize gmail --browser",
        ),
    ] {
        let cfg = write(
            dir.path(),
            &format!(
                "[[integration]]\nname = \"gmail\"\nprovider = \"google\"\nclient_id = \"abc.apps.googleusercontent.com\"\n\
                 client_secret = \"env:M365_SECRET\"\n{grant}"
            ),
        );
        let mut args = vec!["authorize", "gmail", "--mailbox", "help@example.com"];
        args.extend(flag);
        let (code, stdout, stderr) = intake_with(&cfg, &db.url, &args, &[]);
        assert_ne!(code, 0, "{stdout}{stderr}");
        assert!(stderr.contains(want), "{grant}{flag:?}: {stderr}");
        no_secret(&format!("{stdout}{stderr}"));
    }
}

/// A long-running `intake run` records the doctor's diagnosis in the mail log once per change
/// of cause, not on every retry: the identity provider answers AADSTS7000222 (RC14) for
/// several failed rounds, then AADSTS50194 (RC8) for several more. `channel_failed` is logged
/// every time, `channel_diagnosis` exactly twice: RC14, then RC8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_running_run_records_the_diagnosis_once_per_change_of_cause() {
    let answer: Arc<Mutex<(u32, &'static str)>> = Arc::new(Mutex::new((
        7_000_222,
        "AADSTS7000222: The provided client secret keys for app are expired.",
    )));
    let login = MockServer::start().await;
    let now = answer.clone();
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(move |_: &Request| {
            let (n, text) = *now.lock().unwrap();
            ResponseTemplate::new(400).set_body_json(serde_json::json!({
                "error": if n == 7_000_222 { "invalid_client" } else { "invalid_request" },
                "error_codes": [n], "error_description": text}))
        })
        .mount(&login)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &format!(
            "{}{}",
            integration(
                &login.uri(),
                "client_secret = \"env:M365_SECRET\"\ngrant = \"client_credentials\""
            ),
            graph_channel(M, "poll_seconds = 1")
        ),
    );
    let db = TestDb::sqlite();
    let running = Running::start(&cfg, &db.url);
    let wait_failures = async |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let failed = log_events(&cfg, &db.url, "channel_failed").len();
            if failed >= n {
                return failed;
            }
            assert!(Instant::now() < deadline, "{failed} of {n} failures");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let first = wait_failures(3).await;
    *answer.lock().unwrap() = (
        50_194,
        "AADSTS50194: Application '79c86cf8-e761-4fdc-bc20-a629c5d04260'(Single Tenant - Test) is not configured as a multi-tenant application.",
    );
    let total = wait_failures(first + 2).await;
    let stderr = running.stop();
    let diagnosis = log_events(&cfg, &db.url, "channel_diagnosis");
    let codes: Vec<_> = diagnosis
        .iter()
        .map(|d| d["fields"]["code"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        codes,
        vec!["RC14".to_string(), "RC8".to_string()],
        "{total} failures, diagnoses: {diagnosis:?}"
    );
    assert!(total >= 5, "{total}");
    assert!(
        diagnosis[1]["fields"]["fix"]
            .as_str()
            .unwrap()
            .contains("helpdesk"),
        "{diagnosis:?}"
    );
    no_secret(&format!("{stderr}{diagnosis:?}"));
}

/// Healthy configurations report no error: an IMAP channel on Dovecot with a token of the
/// test IdP and a Graph channel on the fake, in one file: `intake doctor` exits 0 and no
/// finding is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_imap_on_dovecot_and_graph_report_no_error() {
    const USER: &str = "help@example.test";
    let Some(idp) = Idp::start_or_skip("healthy_configurations") else {
        return;
    };
    let Some(dc) = Dovecot::start_or_skip(
        "healthy_configurations",
        &DovecotOptions::with_users(&[(USER, "unused")]).introspect(&idp),
    ) else {
        return;
    };
    let db = TestDb::sqlite();
    let token = mail_access_token(&idp, USER).await.unwrap();
    seed_token(&db.url, "idp", USER, "", &token, None, Default::default()).await;
    let login = token_endpoint(
        200,
        serde_json::json!({"token_type": "Bearer", "expires_in": 3600, "access_token": graph_app_token()}),
    )
    .await;
    let (graph, _) = graph_fake(M, &graph_app_token(), 4, Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &format!(
            "[[integration]]\nname = \"idp\"\nprovider = \"custom\"\nclient_id = \"{}\"\nclient_secret = \"env:M365_SECRET\"\n\
             grant = \"authorization_code\"\nauthorize_url = \"{}\"\ntoken_url = \"{}\"\nscopes = [\"openid\", \"email\", \"mail\"]\n\n\
             [[channel]]\nname = \"support\"\nproject = \"OPS\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\n\
             ca_file = \"file:{}\"\nmailbox = \"{USER}\"\nauth = \"oauth:idp\"\n\n{}{}",
            idp.client_id,
            idp.authorization_endpoint(),
            idp.token_endpoint(),
            dc.imaps_port,
            dc.ca_path.display(),
            integration(
                &login.uri(),
                &format!(
                    "client_secret = \"env:M365_SECRET\"\ngrant = \"client_credentials\"\ngraph_url = \"{}\"",
                    graph.uri()
                )
            ),
            graph_channel(M, ""),
        ),
    );
    let (code, v, text) = doctor(&cfg, &db.url);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    for ch in v.as_array().unwrap() {
        assert_eq!(ch["ok"], true, "{ch}");
    }
    assert!(
        codes(&v).iter().all(|(_, s)| s != "error"),
        "a healthy configuration has no error: {v}"
    );
    assert_eq!(v[1]["counts"]["messages"], 4, "{v}");
    assert!(!text.contains(&token) && !text.contains(SECRET), "{text}");
}
