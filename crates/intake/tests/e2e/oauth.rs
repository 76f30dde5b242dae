use std::collections::HashSet;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use intake_core::integration::{ClientCredential, IntegrationConfig};
use intake_core::preset::{Protocol, Provider};
use intake_core::secret::SecretRef;
use intake_core::token::{TokenIdentity, TokenSet};
use intake_mail::oauth::{OAuthClient, OAuthError};
use intake_store::{Keyring, Store, TokenStatus, now};
use intake_testkit::TestDb;
use secrecy::{ExposeSecret, SecretString};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::intake;

const TENANT: &str = "contoso.onmicrosoft.com";
const MAILBOX: &str = "help@contoso.example";
const CLIENT_SECRET: &str = "CS-very-secret-value";

fn key_b64() -> String {
    STANDARD.encode([7u8; 32])
}

fn keyring() -> Keyring {
    Keyring::from_base64(&key_b64(), &[]).unwrap()
}

fn jwt(claims: serde_json::Value) -> String {
    format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn token_path() -> String {
    format!("/{TENANT}/oauth2/v2.0/token")
}

fn config(dir: &std::path::Path, authority: &str, extra: &str) -> String {
    let p = dir.join("intake.toml");
    std::fs::write(
        &p,
        format!(
            r#"
[[integration]]
name = "m365"
provider = "microsoft"
cloud = "worldwide"
tenant = "{TENANT}"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret = "env:M365_SECRET"
client_secret_expires = "2099-01-01"
grant = "authorization_code"
authority_url = "{authority}"
{extra}
"#
        ),
    )
    .unwrap();
    p.display().to_string()
}

fn run_token(cfg: &str, db: &str, log: &str) -> std::process::Child {
    intake()
        .args([
            "--config",
            cfg,
            "--db",
            db,
            "token",
            "m365",
            "--mailbox",
            MAILBOX,
            "--json",
        ])
        .env("INTAKE_SECRET_KEY", key_b64())
        .env("M365_SECRET", CLIENT_SECRET)
        .env("INTAKE_LOG", log)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

async fn seed(store: &Store, access: &str, refresh: &str, expires_at: i64) {
    seed_for(store, "exo", access, refresh, expires_at).await;
}

/// A stored token of `resource` (`exo` for IMAP/POP3/SMTP, `graph` for Graph).
async fn seed_for(store: &Store, resource: &str, access: &str, refresh: &str, expires_at: i64) {
    let t = TokenSet {
        access_token: SecretString::from(access.to_string()),
        refresh_token: Some(SecretString::from(refresh.to_string())),
        expires_at,
        scopes: vec!["https://outlook.office.com/IMAP.AccessAsUser.All".into()],
        id_token: None,
    };
    let id = TokenIdentity {
        username: Some(MAILBOX.into()),
        ..Default::default()
    };
    store
        .tokens(resource)
        .save_token(&keyring(), "m365", MAILBOX, &t, &id)
        .await
        .unwrap();
}

/// A token endpoint that, like providers that rotate-and-revoke, accepts each refresh token
/// exactly once, and counts the refresh requests it receives.
#[derive(Clone, Default)]
struct RotatingEndpoint {
    state: Arc<Mutex<(u32, HashSet<String>)>>,
}

impl Respond for RotatingEndpoint {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let form: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(&req.body)
                .into_owned()
                .collect();
        let mut s = self.state.lock().unwrap();
        s.0 += 1;
        let n = s.0;
        let rt = form.get("refresh_token").cloned().unwrap_or_default();
        let ok_secret = form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET);
        if form.get("grant_type").map(String::as_str) != Some("refresh_token")
            || !ok_secret
            || !s.1.insert(rt.clone())
            || !rt.starts_with("RT-")
        {
            return ResponseTemplate::new(400).set_body_json(serde_json::json!({
                "error": "invalid_grant",
                "error_description": "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.",
                "error_codes": [70008],
                "trace_id": "trace-1", "correlation_id": "corr-1"
            }));
        }
        ResponseTemplate::new(200)
            .set_delay(Duration::from_millis(300))
            .set_body_json(serde_json::json!({
                "token_type": "Bearer", "expires_in": 3600,
                "scope": "https://outlook.office.com/IMAP.AccessAsUser.All",
                "access_token": format!("AT-NEW-{n}"), "refresh_token": format!("RT-ROTATED-{n}")
            }))
    }
}

fn out(o: Output) -> (i32, serde_json::Value, String) {
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    let v = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    (o.status.code().unwrap_or(-1), v, stderr)
}

/// RC13: two `intake` processes sharing PostgreSQL need a refresh at the same moment; the
/// provider invalidates a refresh token once used. Exactly one refresh request reaches it, and
/// both processes end up with the same valid access token. Logs at trace level carry no secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rc13_two_processes_refresh_once_against_a_rotating_provider() {
    let fake = MockServer::start().await;
    let endpoint = RotatingEndpoint::default();
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(endpoint.clone())
        .mount(&fake)
        .await;
    let db = TestDb::postgres().await;
    let store = Store::connect(&db.url).await.unwrap();
    seed(&store, "AT-OLD-0", "RT-1", now() + 10).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &fake.uri(), "");
    let a = run_token(&cfg, &db.url, "trace");
    let b = run_token(&cfg, &db.url, "trace");
    let (ca, va, ea) = out(a.wait_with_output().unwrap());
    let (cb, vb, eb) = out(b.wait_with_output().unwrap());
    assert_eq!((ca, cb), (0, 0), "a: {ea}\nb: {eb}");
    assert_eq!(
        endpoint.state.lock().unwrap().0,
        1,
        "exactly one refresh request reached the provider"
    );
    assert_eq!(
        va["fingerprint"], vb["fingerprint"],
        "both processes use the one refreshed token"
    );
    let stored = store
        .tokens("exo")
        .load_token(&keyring(), "m365", MAILBOX)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.tokens.access_token.expose_secret(), "AT-NEW-1");
    assert_eq!(
        stored
            .tokens
            .refresh_token
            .as_ref()
            .unwrap()
            .expose_secret(),
        "RT-ROTATED-1",
        "rotated refresh token persisted"
    );
    for log in [&ea, &eb] {
        assert!(
            log.contains("TRACE") || log.contains("DEBUG"),
            "trace logging was on: {log}"
        );
        for secret in [
            "AT-NEW-1",
            "RT-1",
            "RT-ROTATED-1",
            CLIENT_SECRET,
            "AT-OLD-0",
        ] {
            assert!(!log.contains(secret), "secret {secret} in the logs");
        }
    }
    // The next call uses the stored token without asking the provider.
    let (c, _, e) = out(run_token(&cfg, &db.url, "warn").wait_with_output().unwrap());
    assert_eq!(c, 0, "{e}");
    assert_eq!(endpoint.state.lock().unwrap().0, 1);
}

/// A refresh the provider refuses for good marks the token `needs_reauthorization` for every
/// process, with the decoded reason; re-authorizing brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_refresh_token_needs_reauthorization_everywhere_until_reauthorized() {
    let fake = MockServer::start().await;
    let endpoint = RotatingEndpoint::default();
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(endpoint.clone())
        .mount(&fake)
        .await;
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    seed(&store, "AT-OLD", "REVOKED", now() - 5).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &fake.uri(), "");
    let (c, _, e) = out(run_token(&cfg, &db.url, "warn").wait_with_output().unwrap());
    assert_eq!(c, 3, "exit code 3 = needs re-authorization: {e}");
    assert!(
        e.contains("AADSTS70008") && e.contains("intake authorize m365"),
        "{e}"
    );
    let stored = store
        .tokens("exo")
        .load_token(&keyring(), "m365", MAILBOX)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(stored.status, TokenStatus::NeedsReauthorization { ref reason } if reason.contains("70008")),
        "{:?}",
        stored.status
    );
    let (c, _, e) = out(run_token(&cfg, &db.url, "warn").wait_with_output().unwrap());
    assert_eq!(c, 3, "{e}");
    assert_eq!(
        endpoint.state.lock().unwrap().0,
        1,
        "a dead token is not retried against the provider"
    );
    seed(&store, "AT-REAUTH", "RT-9", now() + 3600).await; // what `intake authorize` stores
    let (c, v, e) = out(run_token(&cfg, &db.url, "warn").wait_with_output().unwrap());
    assert_eq!(c, 0, "{e}");
    assert_eq!(v["status"], "valid");
}

fn integration(authority: &str) -> IntegrationConfig {
    let mut i = IntegrationConfig::new("m365", Provider::Microsoft);
    i.tenant = Some(TENANT.into());
    i.client_id = Some("11111111-2222-3333-4444-555555555555".into());
    i.client_secret = Some(SecretRef::Literal(SecretString::from(
        CLIENT_SECRET.to_string(),
    )));
    i.client_secret_expires = Some("2099-01-01".into());
    i.authority_url = Some(authority.into());
    i
}

/// Token-endpoint errors keep Microsoft's fields and decode into the root cause and fix.
#[tokio::test]
async fn aadsts_errors_keep_microsofts_fields_and_name_the_root_cause() {
    let fake = MockServer::start().await;
    for (code, error, cause) in [
        (7000222, "invalid_client", Some("RC14")),
        (50194, "invalid_request", Some("RC8")),
        (900432, "invalid_request", Some("RC9")),
        (70011, "invalid_scope", Some("RC1")),
    ] {
        fake.reset().await;
        Mock::given(method("POST"))
            .and(path(token_path()))
            .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
                "error": error,
                "error_description": format!("AADSTS{code}: something went wrong.\r\nTrace ID: t\r\nCorrelation ID: c\r\nTimestamp: 2026-11-23 10:00:00Z"),
                "error_codes": [code], "timestamp": "2026-11-23 10:00:00Z",
                "trace_id": "0d2f1c9e-trace", "correlation_id": "7a5b-corr"
            })))
            .mount(&fake)
            .await;
        let client = OAuthClient::new(&integration(&fake.uri()).resolve().unwrap()).unwrap();
        let err = client
            .refresh(&SecretString::from("RT".to_string()), &["x".into()])
            .await
            .unwrap_err();
        let OAuthError::Endpoint { diagnosis, raw } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(raw.error_codes, vec![code]);
        assert_eq!(raw.trace_id.as_deref(), Some("0d2f1c9e-trace"));
        assert_eq!(raw.correlation_id.as_deref(), Some("7a5b-corr"));
        assert_eq!(diagnosis.code, Some(code));
        assert_eq!(diagnosis.cause.map(|c| c.id()), cause, "AADSTS{code}");
        assert!(!diagnosis.fix.is_empty());
        let text = err.to_string();
        assert!(
            text.contains(&format!("AADSTS{code}")) && text.contains("0d2f1c9e-trace"),
            "{text}"
        );
        assert!(!text.contains(CLIENT_SECRET));
    }
}

/// Device code: `authorization_pending` and `slow_down` keep polling; `expired_token` ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_code_polling_handles_pending_slow_down_and_expiry() {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/devicecode")))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "device_code": "DC-1", "user_code": "ABCD-EFGH", "verification_uri": "https://microsoft.com/devicelogin",
            "expires_in": 900, "interval": 1, "message": "To sign in, use a web browser…"
        })))
        .mount(&fake)
        .await;
    let calls = Arc::new(Mutex::new(0u32));
    let c2 = calls.clone();
    let at = jwt(
        serde_json::json!({"aud": "https://outlook.office.com", "scp": "IMAP.AccessAsUser.All", "tid": "t-1"}),
    );
    let idt = jwt(
        serde_json::json!({"preferred_username": "someone.else@contoso.example", "tid": "t-1"}),
    );
    let (at2, idt2) = (at.clone(), idt.clone());
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(move |_: &Request| {
            let mut n = c2.lock().unwrap();
            *n += 1;
            let pending = |e: &str, code: u32| {
                ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": e, "error_description": format!("AADSTS{code}: waiting"), "error_codes": [code]}))
            };
            match *n {
                1 => pending("authorization_pending", 70016),
                2 => pending("slow_down", 70016),
                _ => ResponseTemplate::new(200).set_body_json(serde_json::json!({
                    "token_type": "Bearer", "expires_in": 3600, "scope": "https://outlook.office.com/IMAP.AccessAsUser.All",
                    "access_token": at2, "refresh_token": "RT-DEVICE", "id_token": idt2
                })),
            }
        })
        .mount(&fake)
        .await;
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &fake.uri(), "");
    let o = intake()
        .args([
            "--config",
            &cfg,
            "--db",
            &db.url,
            "authorize",
            "m365",
            "--mailbox",
            MAILBOX,
            // the file says grant = "authorization_code" (the browser); --device overrides it
            "--device",
            "--json",
        ])
        .env("INTAKE_SECRET_KEY", key_b64())
        .env("M365_SECRET", CLIENT_SECRET)
        .output()
        .unwrap();
    let (c, v, e) = out(o);
    assert_eq!(c, 0, "{e}");
    assert!(e.contains("ABCD-EFGH"), "the user code is shown: {e}");
    assert_eq!(
        *calls.lock().unwrap(),
        3,
        "pending and slow_down were polled through"
    );
    assert_eq!(v["username"], "someone.else@contoso.example");
    let warnings = v["warnings"].to_string();
    assert!(
        warnings.contains("RC3") || warnings.contains("RC11"),
        "identity mismatch is named: {warnings}"
    );
    let store = Store::connect(&db.url).await.unwrap();
    assert!(
        store
            .tokens("exo")
            .load_token(&keyring(), "m365", MAILBOX)
            .await
            .unwrap()
            .is_some()
    );

    // expired_token ends the flow with the decoded kind.
    fake.reset().await;
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/devicecode")))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "device_code": "DC-2", "user_code": "X", "verification_uri": "https://microsoft.com/devicelogin", "expires_in": 900, "interval": 1
        })))
        .mount(&fake)
        .await;
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": "expired_token", "error_description": "AADSTS70020: The provided value for the input parameter 'device_code' is not valid. This device code has expired.", "error_codes": [70020]})))
        .mount(&fake)
        .await;
    let client = OAuthClient::new(&integration(&fake.uri()).resolve().unwrap()).unwrap();
    let scopes = vec!["https://outlook.office.com/IMAP.AccessAsUser.All".to_string()];
    let sign_in = client.start_device(&scopes).await.unwrap();
    let err = client.finish_device(&sign_in, &scopes).await.unwrap_err();
    assert_eq!(
        err.kind(),
        intake_core::aadsts::ErrorKind::DeviceCodeExpired,
        "{err}"
    );
}

/// Client credentials with a certificate: the fake verifies the client assertion's signature with
/// the certificate's public key, its `x5t#S256` thumbprint, audience, issuer and subject.
#[tokio::test]
async fn client_credentials_with_a_certificate_send_a_verifiable_assertion() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["intake.example".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_pem, key_pem, pub_pem) = (cert.pem(), key.serialize_pem(), key.public_key_pem());
    let thumb = URL_SAFE_NO_PAD.encode(<sha2::Sha256 as sha2::Digest>::digest(cert.der().as_ref()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.pem"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("k.pem"), &key_pem).unwrap();
    let fake = MockServer::start().await;
    let token_url = format!("{}{}", fake.uri(), token_path());
    let (tu, th) = (token_url.clone(), thumb.clone());
    let verified = Arc::new(Mutex::new(None::<String>));
    let v2 = verified.clone();
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(move |req: &Request| {
            let form: std::collections::HashMap<String, String> = url::form_urlencoded::parse(&req.body).into_owned().collect();
            let check = || -> Result<(), String> {
                if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
                    return Err("grant_type".into());
                }
                if form.get("client_assertion_type").map(String::as_str) != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
                    return Err("assertion type".into());
                }
                if form.contains_key("client_secret") {
                    return Err("secret sent with a certificate".into());
                }
                let jwt = form.get("client_assertion").ok_or("no assertion")?;
                let header = jsonwebtoken::decode_header(jwt).map_err(|e| e.to_string())?;
                if header.alg != jsonwebtoken::Algorithm::PS256 || header.x5t_s256.as_deref() != Some(th.as_str()) {
                    return Err(format!("header {header:?}"));
                }
                let mut val = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::PS256);
                val.set_audience(&[tu.as_str()]);
                val.set_issuer(&["11111111-2222-3333-4444-555555555555"]);
                let key = jsonwebtoken::DecodingKey::from_rsa_pem(pub_pem.as_bytes()).map_err(|e| e.to_string())?;
                let data = jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &val).map_err(|e| e.to_string())?;
                if data.claims["sub"] != "11111111-2222-3333-4444-555555555555" || data.claims["jti"].as_str().unwrap_or("").is_empty() {
                    return Err("claims".into());
                }
                Ok(())
            };
            match check() {
                Ok(()) => {
                    *v2.lock().unwrap() = Some("ok".into());
                    ResponseTemplate::new(200).set_body_json(serde_json::json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "APP-TOKEN"}))
                }
                Err(e) => ResponseTemplate::new(401).set_body_json(serde_json::json!({"error": "invalid_client", "error_description": e})),
            }
        })
        .mount(&fake)
        .await;
    let mut i = integration(&fake.uri());
    i.client_secret = None;
    i.client_secret_expires = None;
    i.client_certificate = Some(SecretRef::File(dir.path().join("c.pem")));
    i.client_key = Some(SecretRef::File(dir.path().join("k.pem")));
    i.grant = Some(intake_core::preset::Grant::ClientCredentials);
    let resolved = i.resolve().unwrap();
    assert!(matches!(
        resolved.credential,
        ClientCredential::Certificate { .. }
    ));
    let client = OAuthClient::new(&resolved).unwrap();
    let scopes = resolved.scopes_for(Protocol::Imap).unwrap().to_vec();
    assert_eq!(scopes, ["https://outlook.office365.com/.default"]);
    let t = client.client_credentials(&scopes).await.unwrap();
    assert_eq!(t.access_token.expose_secret(), "APP-TOKEN");
    assert_eq!(verified.lock().unwrap().as_deref(), Some("ok"));
    // The certificate's notAfter drives the RC14 warnings.
    let not_after =
        intake_mail::oauth::assertion::certificate_not_after(cert_pem.as_bytes()).unwrap();
    assert!(
        not_after > now(),
        "rcgen's default validity lies in the future: {not_after}"
    );
}

/// RC14: secrets expiring soon are warned about in the mail log once per stage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rc14_expiring_secret_is_warned_once_per_stage_in_the_mail_log() {
    let fake = MockServer::start().await;
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    seed(&store, "AT", "RT", now() + 3600).await;
    let dir = tempfile::tempdir().unwrap();
    let soon = intake_core::expiry::days_from_civil(1970, 1, 1) + (now() / 86_400) + 10;
    let date = {
        // Unix days → YYYY-MM-DD (inverse of days_from_civil, by search: fine for a test).
        let mut y = 2020;
        while intake_core::expiry::days_from_civil(y + 1, 1, 1) <= soon {
            y += 1;
        }
        let mut m = 1;
        while m < 12 && intake_core::expiry::days_from_civil(y, m + 1, 1) <= soon {
            m += 1;
        }
        let d = soon - intake_core::expiry::days_from_civil(y, m, 1) + 1;
        format!("{y}-{m:02}-{d:02}")
    };
    let cfg = config(dir.path(), &fake.uri(), "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("2099-01-01", &date);
    std::fs::write(&cfg, text).unwrap();
    for _ in 0..2 {
        let (c, _, e) = out(run_token(&cfg, &db.url, "warn").wait_with_output().unwrap());
        assert_eq!(c, 0, "{e}");
        assert!(
            e.contains("expires in 9 day") || e.contains("expires in 10 day"),
            "{e}"
        );
    }
    let events = store.recent_events(50).await.unwrap();
    let warnings: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "credential_expiry")
        .collect();
    assert_eq!(warnings.len(), 1, "{events:?}");
    assert_eq!(warnings[0].fields["stage"], "14d");
    assert!(warnings[0].message.contains("RC14"));
}

/// A Microsoft Graph channel through `intake run --once` against a Graph fake: delta page →
/// `$value` MIME → tickets → PATCH isRead after the commit → deltaLink stored; the next run
/// resumes from the deltaLink and takes nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_channel_runs_delta_value_patch_and_resumes_from_the_delta_link() {
    use wiremock::matchers::{query_param, query_param_is_missing};
    let fake = MockServer::start().await;
    let base = format!("/v1.0/users/{MAILBOX}/mailFolders/inbox/messages");
    let delta_link = |t: &str| format!("{}{base}/delta?$deltatoken={t}", fake.uri());
    Mock::given(method("GET"))
        .and(path(format!("{base}/delta")))
        .and(query_param_is_missing("$deltatoken"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "value": [{"id": "AAA1", "isRead": false}, {"id": "AAA2", "isRead": false}],
            "@odata.deltaLink": delta_link("T1")
        })))
        .expect(1)
        .mount(&fake)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{base}/delta")))
        .and(query_param("$deltatoken", "T1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "value": [{"id": "AAA1", "isRead": true}], "@odata.deltaLink": delta_link("T2")
        })))
        .expect(1)
        .mount(&fake)
        .await;
    for (id, subject) in [("AAA1", "Graph one"), ("AAA2", "Graph two")] {
        Mock::given(method("GET"))
            .and(path(format!("/v1.0/users/{MAILBOX}/messages/{id}/$value")))
            .respond_with(ResponseTemplate::new(200).set_body_raw(
                format!("From: a@customer.example\r\nSubject: {subject}\r\nMessage-ID: <{id}@x>\r\n\r\nbody\r\n").into_bytes(),
                "message/rfc822",
            ))
            .expect(1)
            .mount(&fake)
            .await;
        Mock::given(method("PATCH"))
            .and(path(format!("/v1.0/users/{MAILBOX}/messages/{id}")))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"id": id, "isRead": true})),
            )
            .expect(1)
            .mount(&fake)
            .await;
    }
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    seed_for(&store, "graph", "GRAPH-TOKEN", "RT-G", now() + 3600).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &fake.uri(),
        &format!(
            "graph_url = \"{}\"\n\n[[channel]]\nname = \"graph\"\nproject = \"GR\"\nprotocol = \"graph\"\nmailbox = \"{MAILBOX}\"\nauth = \"oauth:m365\"\n",
            fake.uri()
        ),
    );
    for expected in [2, 0] {
        let o = intake()
            .args(["--config", &cfg, "--db", &db.url, "run", "--once", "--json"])
            .env("INTAKE_SECRET_KEY", key_b64())
            .env("M365_SECRET", CLIENT_SECRET)
            .output()
            .unwrap();
        let (c, v, e) = out(o);
        assert_eq!(c, 0, "{e}");
        assert_eq!(v["created"], expected, "{v}");
    }
    assert_eq!(
        store.checkpoint("graph").await.unwrap(),
        Some(delta_link("T2"))
    );
}
