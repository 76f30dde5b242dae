//! Tokens that fit their protocol and the doctor's findings (docs/troubleshooting.md):
//! `intake authorize` without `--protocol` gets an Exchange and a Graph token from one sign-in
//! and both channels run; `intake doctor --json` reports each root cause with its code and
//! severity, names the proxy and what it answered on the login leg, never prints a secret,
//! and exits 1 only on an error.

use std::sync::{Arc, Mutex};

use intake_testkit::TestDb;
use intake_testkit::dovecot::{Dovecot, DovecotOptions, mail_access_token};
use intake_testkit::idp::Idp;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::intake;
use crate::kit::*;

/// The documented command only: `intake authorize m365 --mailbox M` for a mailbox that a
/// Graph channel and an IMAP channel read. One device sign-in gets the Exchange token; its
/// refresh token is redeemed for Graph; `intake run --once` then ingests from both (Dovecot
/// introspects the IMAP token at a real OAuth server; the Graph fake accepts only the Graph
/// token, as Graph does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_once_for_a_graph_and_an_imap_channel_then_both_run() {
    const USER: &str = "help@example.test";
    let Some(idp) = Idp::start_or_skip("authorize_once_for_graph_and_imap") else {
        return;
    };
    let Some(dc) = Dovecot::start_or_skip(
        "authorize_once_for_graph_and_imap",
        &DovecotOptions::with_users(&[(USER, "unused")]).introspect(&idp),
    ) else {
        return;
    };
    let imap_token = mail_access_token(&idp, USER).await.unwrap();
    let graph_token = jwt(
        serde_json::json!({"aud": "https://graph.microsoft.com", "scp": "Mail.ReadWrite", "upn": USER}),
    );
    let id_token = jwt(serde_json::json!({"preferred_username": USER, "tid": "t"}));
    let login = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/devicecode")))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "device_code": "DC-1", "user_code": "ABCD-EFGH", "verification_uri": "https://microsoft.com/devicelogin",
            "expires_in": 900, "interval": 1
        })))
        .mount(&login)
        .await;
    let grants = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = grants.clone();
    let (imap_t, graph_t, idt) = (imap_token.clone(), graph_token.clone(), id_token.clone());
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(move |r: &Request| {
            let body = String::from_utf8_lossy(&r.body).to_string();
            let form: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
            let grant = form.get("grant_type").cloned().unwrap_or_default();
            let scope = form.get("scope").cloned().unwrap_or_default();
            seen.lock().unwrap().push(format!("{grant} {scope}"));
            if grant.ends_with("device_code") {
                ResponseTemplate::new(200).set_body_json(serde_json::json!({
                    "token_type": "Bearer", "expires_in": 3600,
                    "scope": "https://outlook.office.com/IMAP.AccessAsUser.All",
                    "access_token": imap_t, "refresh_token": "RT-EXO", "id_token": idt}))
            } else if grant == "refresh_token" && scope.contains("Mail.ReadWrite") {
                ResponseTemplate::new(200).set_body_json(serde_json::json!({
                    "token_type": "Bearer", "expires_in": 3600, "scope": "Mail.ReadWrite",
                    "access_token": graph_t, "refresh_token": "RT-GRAPH"}))
            } else {
                ResponseTemplate::new(400).set_body_json(serde_json::json!({
                    "error": "invalid_scope", "error_description": format!("AADSTS70011: unexpected {scope}")}))
            }
        })
        .mount(&login)
        .await;
    let (graph, fake) = graph_fake(
        USER,
        &graph_token,
        1,
        vec![
            b"From: a@example.org\r\nSubject: via Graph\r\nMessage-ID: <g1@x>\r\n\r\nhello\r\n"
                .to_vec(),
        ],
    )
    .await;
    dc.deliver(
        USER,
        b"From: b@example.org\r\nSubject: via IMAP\r\nMessage-ID: <i1@x>\r\n\r\nhello\r\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &format!(
            "{}[[channel]]\nname = \"imap\"\nproject = \"IM\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             mailbox = \"{USER}\"\nauth = \"oauth:m365\"\n\n{}",
            integration(
                &login.uri(),
                &format!(
                    "client_secret = \"env:M365_SECRET\"\ngraph_url = \"{}\"",
                    graph.uri()
                )
            ),
            dc.imap_port,
            graph_channel(USER, ""),
        ),
    );
    let db = TestDb::sqlite();
    let o = intake()
        .args([
            "--config",
            &cfg,
            "--db",
            &db.url,
            "authorize",
            "m365",
            "--mailbox",
            USER,
            "--json",
        ])
        .env("INTAKE_SECRET_KEY", KEY)
        .env("M365_SECRET", SECRET)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("ABCD-EFGH"),
        "the device code is shown: {stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let tokens = v["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{v}");
    assert_eq!(tokens[0]["protocols"], serde_json::json!(["imap"]), "{v}");
    assert_eq!(tokens[0]["resource"], "exo", "{v}");
    assert_eq!(tokens[1]["protocols"], serde_json::json!(["graph"]), "{v}");
    assert_eq!(tokens[1]["audience"], "https://graph.microsoft.com", "{v}");
    let grants = grants.lock().unwrap().clone();
    assert_eq!(grants.len(), 2, "one sign-in, one redemption: {grants:?}");
    assert!(grants[0].contains("device_code"), "{grants:?}");
    assert!(
        grants[1].starts_with("refresh_token") && grants[1].contains("Mail.ReadWrite"),
        "{grants:?}"
    );

    let o = intake()
        .args(["--config", &cfg, "--db", &db.url, "run", "--once", "--json"])
        .env("INTAKE_SECRET_KEY", KEY)
        .env("M365_SECRET", SECRET)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["created"], 2,
        "one ticket from each channel: {v}\n{stderr}"
    );
    assert_eq!(
        *fake.patched.lock().unwrap(),
        1,
        "the Graph message was marked read"
    );
    let (code, report, text) = doctor(&cfg, &db.url);
    assert_eq!(code, 0, "{report}");
    assert!(
        codes(&report).iter().all(|(_, s)| s != "error"),
        "a healthy configuration has no error: {report}"
    );
    assert!(
        !text.contains(SECRET) && !text.contains(&imap_token) && !text.contains("RT-EXO"),
        "{text}"
    );
}

/// A healthy Graph channel on a flooded inbox, with an integration that has a `common`
/// tenant, a secret written in the file and expiring in 10 days: every one of these is a
/// warning (RC15 with the count and the `start` to use, RC8, RC14, PLAINTEXT_SECRET), the
/// exit code is 0 and the secret is not printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_warnings_rc15_flood_rc8_common_rc14_expiry_and_plaintext_secret_exit_0() {
    let login = MockServer::start().await;
    for tenant in ["common"] {
        Mock::given(method("POST"))
            .and(path(format!("/{tenant}/oauth2/v2.0/token")))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "token_type": "Bearer", "expires_in": 3600, "access_token": graph_app_token()})))
            .mount(&login)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/{tenant}/oauth2/v2.0/token")))
            .respond_with(ResponseTemplate::new(405))
            .mount(&login)
            .await;
    }
    const M: &str = "help@contoso.example";
    let (graph, _fake) = graph_fake(M, &graph_app_token(), 250_000, Vec::new()).await;
    let expires = {
        let days = intake_store::now() / 86_400 + 10;
        // days → date, the same arithmetic as the doctor's (proleptic Gregorian)
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!("{y:04}-{m:02}-{d:02}")
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &format!(
            "[[integration]]\nname = \"m365\"\nprovider = \"microsoft\"\ntenant = \"common\"\n\
             client_id = \"11111111-2222-3333-4444-555555555555\"\nauthority_url = \"{}\"\n\
             client_secret = \"{SECRET}\"\nclient_secret_expires = \"{expires}\"\ngrant = \"client_credentials\"\ngraph_url = \"{}\"\n\n{}",
            login.uri(),
            graph.uri(),
            graph_channel(M, "start = \"all\"\nbatch = 100")
        ),
    );
    let db = TestDb::sqlite();
    let (code, v, text) = doctor(&cfg, &db.url);
    assert_eq!(code, 0, "warnings only: {v}");
    let found = codes(&v);
    for want in ["RC15", "RC8", "RC14", "PLAINTEXT_SECRET"] {
        assert!(
            found.contains(&(want.to_string(), "warning".to_string())),
            "{want} warning missing: {found:?}\n{v}"
        );
    }
    assert!(found.iter().all(|(_, s)| s != "error"), "{v}");
    let flood = finding(&v, "RC15");
    assert!(
        flood["evidence"].as_str().unwrap().contains("250000"),
        "{flood}"
    );
    assert!(
        flood["fix"]
            .as_str()
            .unwrap()
            .contains("start = \\\"now\\\"")
            || flood["fix"].as_str().unwrap().contains("start = \"now\""),
        "{flood}"
    );
    assert!(
        flood["fix"].as_str().unwrap().contains("helpdesk"),
        "the fix names the channel: {flood}"
    );
    assert!(
        finding(&v, "RC14")["evidence"]
            .as_str()
            .unwrap()
            .contains("expires in"),
        "{v}"
    );
    assert_eq!(v[0]["stages"][0]["stage"], "token", "{v}");
    assert!(!text.contains(SECRET), "the secret is printed: {text}");
}

/// RC16 and RC7 on the login leg, found even though nothing is due for a refresh: a proxy that
/// refuses the connection, one that wants authentication (407), one that forbids the host
/// (403), and a login host whose port is closed. Each names the proxy (or host) and what it
/// answered; exit 1; no secret printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_the_proxy_and_its_answer_on_the_login_leg_rc16_and_a_closed_login_port_rc7() {
    const M: &str = "help@contoso.example";
    let p407 = answering_proxy("407 Proxy Authentication Required").await;
    let p403 = answering_proxy("403 Forbidden").await;
    let refused = closed_port();
    let cases = [
        (format!("http://127.0.0.1:{refused}"), "RC16", "refused"),
        (format!("http://127.0.0.1:{p407}"), "RC16", "407"),
        (format!("http://127.0.0.1:{p403}"), "RC16", "403"),
    ];
    let db = TestDb::sqlite();
    for (proxy, want, said) in cases {
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
                graph_channel(M, "")
            ),
        );
        let (code, v, text) = doctor(&cfg, &db.url);
        assert_eq!(code, 1, "{v}");
        let f = finding(&v, want);
        assert_eq!(f["severity"], "error", "{f}");
        let evidence = f["evidence"].as_str().unwrap().to_ascii_lowercase();
        assert!(evidence.contains(said), "{proxy}: {f}");
        assert!(
            f["fix"]
                .as_str()
                .unwrap()
                .contains(&proxy.replace("http://", "")),
            "the proxy is named: {f}"
        );
        assert_eq!(v[0]["stages"][0]["stage"], "token", "{v}");
        assert!(!text.contains(SECRET), "{text}");
    }
    // No proxy, and nothing listens on the login host's port.
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &format!(
            "{}{}",
            integration(
                &format!("https://127.0.0.1:{refused}"),
                "client_secret = \"env:M365_SECRET\"\ngrant = \"client_credentials\""
            ),
            graph_channel(M, "")
        ),
    );
    let (code, v, _) = doctor(&cfg, &db.url);
    assert_eq!(code, 1, "{v}");
    let f = finding(&v, "RC7");
    assert_eq!(f["severity"], "error", "{f}");
    assert!(
        f["evidence"]
            .as_str()
            .unwrap()
            .contains(&format!("127.0.0.1:{refused}")),
        "{f}"
    );
}

/// Errors of the identity provider and of Graph, each to its root cause with severity error:
/// AADSTS7000222 (RC14), AADSTS50194 (RC8), AADSTS900432 (RC9), AADSTS70011 (RC1); Graph's
/// Invalid audience (G1) and a folder that is a localized display name (RC5), or an unknown
/// folder ID (RC5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_decodes_aadsts_and_graph_errors_to_their_root_causes() {
    const M: &str = "help@contoso.example";
    let db = TestDb::sqlite();
    let aadsts = [
        (
            7_000_222u32,
            "invalid_client",
            "AADSTS7000222: The provided client secret keys for app are expired.",
            "RC14",
        ),
        (
            50_194,
            "invalid_request",
            "AADSTS50194: Application is not configured as a multi-tenant application.",
            "RC8",
        ),
        (
            900_432,
            "invalid_request",
            "AADSTS900432: Confidential Client is not supported in Cross Cloud request.",
            "RC9",
        ),
        (
            70_011,
            "invalid_scope",
            "AADSTS70011: The provided value for the input parameter 'scope' is not valid.",
            "RC1",
        ),
    ];
    for (n, error, text, want) in aadsts {
        let login = token_endpoint(
            400,
            serde_json::json!({"error": error, "error_description": text, "error_codes": [n], "trace_id": "tr-1"}),
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
        let (code, v, text) = doctor(&cfg, &db.url);
        assert_eq!(code, 1, "{v}");
        assert_eq!(finding(&v, want)["severity"], "error", "AADSTS{n}: {v}");
        assert!(!text.contains(SECRET), "{text}");
    }
    // Graph refuses the token's audience (G1); a display-name folder and an unknown folder
    // ID (RC5).
    let login = token_endpoint(
        200,
        serde_json::json!({"token_type": "Bearer", "expires_in": 3600, "access_token": graph_app_token()}),
    )
    .await;
    let (graph, _) = graph_fake(M, "another-token", 1, Vec::new()).await;
    let (graph_ok, _) = graph_fake(M, &graph_app_token(), 1, Vec::new()).await;
    let cases = [
        (graph.uri(), "", "G1"),
        (graph_ok.uri(), "folder = \"Posteingang\"", "RC5"),
        (
            graph_ok.uri(),
            "folder = \"AAMkAGI2TG93AAAAAAEMAAAbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb=\"",
            "RC5",
        ),
    ];
    for (graph_url, extra, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            dir.path(),
            &format!(
                "{}{}",
                integration(
                    &login.uri(),
                    &format!(
                        "client_secret = \"env:M365_SECRET\"\ngrant = \"client_credentials\"\ngraph_url = \"{graph_url}\""
                    )
                ),
                graph_channel(M, extra)
            ),
        );
        let (code, v, _) = doctor(&cfg, &db.url);
        assert_eq!(code, 1, "{v}");
        let f = finding(&v, want);
        assert_eq!(f["severity"], "error", "{f}");
        assert!(
            f["fix"].as_str().unwrap().contains("helpdesk"),
            "the fix names the channel: {f}"
        );
    }
}

/// Dovecot refusing the OAuth login of a token it does not know: RC1 at the `login` stage,
/// with a fix naming the integration, mailbox and the `intake authorize` / `intake token`
/// commands (no placeholders); and the same Dovecot asked for a folder that does not exist:
/// RC5 on IMAP too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_rc1_when_dovecot_refuses_the_token_and_rc5_for_a_missing_imap_folder() {
    const USER: &str = "help@example.test";
    let Some(idp) = Idp::start_or_skip("doctor_rc1_dovecot") else {
        return;
    };
    let Some(dc) = Dovecot::start_or_skip(
        "doctor_rc1_dovecot",
        &DovecotOptions::with_users(&[(USER, "unused")]).introspect(&idp),
    ) else {
        return;
    };
    let db = TestDb::sqlite();
    let store = intake_store::Store::connect(&db.url).await.unwrap();
    let keys = intake_store::Keyring::from_base64(KEY, &[]).unwrap();
    let seed = |token: String| intake_core::token::TokenSet {
        access_token: secrecy::SecretString::from(token),
        refresh_token: None,
        expires_at: intake_store::now() + 3000,
        scopes: vec!["mail".into()],
        id_token: None,
    };
    store
        .tokens("")
        .save_token(
            &keys,
            "idp",
            USER,
            &seed("not-a-token-dovecot-knows".into()),
            &Default::default(),
        )
        .await
        .unwrap();
    let channel = |folder: &str| {
        format!(
            "[[integration]]\nname = \"idp\"\nprovider = \"custom\"\nclient_id = \"{}\"\nclient_secret = \"env:M365_SECRET\"\n\
             grant = \"authorization_code\"\nauthorize_url = \"{}\"\ntoken_url = \"{}\"\nscopes = [\"openid\", \"email\", \"mail\"]\n\n\
             [[channel]]\nname = \"support\"\nproject = \"OPS\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             mailbox = \"{USER}\"\nauth = \"oauth:idp\"\nfolder = \"{folder}\"\n",
            idp.client_id,
            idp.authorization_endpoint(),
            idp.token_endpoint(),
            dc.imap_port
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), &channel("INBOX"));
    let (code, v, text) = doctor(&cfg, &db.url);
    assert_eq!(code, 1, "{v}");
    let f = finding(&v, "RC1");
    assert_eq!(f["severity"], "error", "{f}");
    let fix = f["fix"].as_str().unwrap();
    assert!(
        fix.contains(&format!("intake authorize idp --mailbox {USER}")),
        "{fix}"
    );
    assert!(
        fix.contains(&format!(
            "intake token idp --mailbox {USER} --protocol imap"
        )),
        "{fix}"
    );
    assert!(
        !text.contains("not-a-token-dovecot-knows"),
        "the token is printed: {text}"
    );

    let good = mail_access_token(&idp, USER).await.unwrap();
    store
        .tokens("")
        .save_token(&keys, "idp", USER, &seed(good.clone()), &Default::default())
        .await
        .unwrap();
    let cfg = write(dir.path(), &channel("Posteingang"));
    let (code, v, text) = doctor(&cfg, &db.url);
    assert_eq!(code, 1, "{v}");
    assert_eq!(finding(&v, "RC5")["severity"], "error", "{v}");
    assert!(!text.contains(&good), "{text}");
    let cfg = write(dir.path(), &channel("INBOX"));
    let (code, v, _) = doctor(&cfg, &db.url);
    assert_eq!(code, 0, "healthy: {v}");
    assert!(codes(&v).iter().all(|(_, s)| s != "error"), "{v}");
}

/// `intake run --once` on a channel whose client secret the identity provider calls expired
/// (AADSTS7000222): the mail log gets the doctor's diagnosis (`channel_diagnosis`, code RC14,
/// a fix naming the channel) beside `channel_failed`, and the run logs the RC14 warning of a
/// secret whose configured end is 10 days away (the 14-day stage), once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_records_the_diagnosis_in_the_mail_log_and_warns_of_expiry() {
    const M: &str = "help@contoso.example";
    let login = token_endpoint(
        400,
        serde_json::json!({"error": "invalid_client", "error_codes": [7000222],
            "error_description": "AADSTS7000222: The provided client secret keys for app are expired."}),
    )
    .await;
    let soon = {
        let t = std::time::SystemTime::now() + std::time::Duration::from_secs(10 * 86_400 + 3600);
        let days = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 / 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        format!("{:04}-{m:02}-{d:02}", yoe + era * 400 + i64::from(m <= 2))
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        &format!(
            "{}{}",
            integration(
                &login.uri(),
                &format!(
                    "client_secret = \"env:M365_SECRET\"\nclient_secret_expires = \"{soon}\"\ngrant = \"client_credentials\""
                )
            ),
            graph_channel(M, "")
        ),
    );
    let db = TestDb::sqlite();
    for _ in 0..2 {
        let o = intake()
            .args(["--config", &cfg, "--db", &db.url, "run", "--once"])
            .env("INTAKE_SECRET_KEY", KEY)
            .env("M365_SECRET", SECRET)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("RC14"), "{err}");
        assert!(!err.contains(SECRET), "{err}");
    }
    let o = intake()
        .args([
            "--config", &cfg, "--db", &db.url, "log", "--json", "--limit", "50",
        ])
        .output()
        .unwrap();
    let log: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let events = log.as_array().unwrap();
    let diagnosis: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "channel_diagnosis")
        .collect();
    assert!(!diagnosis.is_empty(), "{log}");
    assert_eq!(diagnosis[0]["fields"]["code"], "RC14", "{log}");
    assert!(
        diagnosis[0]["fields"]["fix"]
            .as_str()
            .unwrap()
            .contains("helpdesk"),
        "{log}"
    );
    let expiry: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "credential_expiry")
        .collect();
    assert_eq!(
        expiry.len(),
        1,
        "one warning per stage, not one per run: {log}"
    );
    assert_eq!(expiry[0]["fields"]["stage"], "14d", "{log}");
    assert!(!log.to_string().contains(SECRET));
}
