use std::io::{BufRead, BufReader};
use std::process::Stdio;

use intake_core::integration::IntegrationConfig;
use intake_core::preset::{Grant, Protocol, Provider};
use intake_core::secret::SecretRef;
use intake_mail::oauth::OAuthClient;
use intake_store::{Keyring, Store};
use intake_testkit::TestDb;
use intake_testkit::idp::Idp;
use secrecy::{ExposeSecret, SecretString};

use crate::intake;

fn idp_integration(idp: &Idp) -> IntegrationConfig {
    let mut i = IntegrationConfig::new("idp", Provider::Custom);
    i.client_id = Some(idp.post_client_id.clone());
    i.client_secret = Some(SecretRef::Literal(SecretString::from(
        idp.client_secret.clone(),
    )));
    i.grant = Some(Grant::AuthorizationCode);
    i.authorize_url = Some(idp.authorization_endpoint().to_string());
    i.token_url = Some(idp.token_endpoint().to_string());
    i.scopes = Some(vec![
        "openid".into(),
        "email".into(),
        "offline_access".into(),
        "mail".into(),
    ]);
    i
}

/// RC13 with a real OAuth server (panva's oidc-provider): an authorization-code + PKCE flow
/// started on node A is completed on node B (the pending flow lives in PostgreSQL), the token
/// identifies the user, and a refresh rotates the refresh token — the provider then refuses the
/// old one, so persisting the rotated token is what keeps the mailbox alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rc13_flow_started_on_one_node_completes_on_another_and_refresh_rotates() {
    let Some(idp) = Idp::start_or_skip("rc13_flow_started_on_one_node_completes_on_another") else {
        return;
    };
    let db = TestDb::postgres().await;
    let keys =
        || Keyring::from_base64("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=", &[]).unwrap();
    let node_a = intake::oauth::TokenService::new(Store::connect(&db.url).await.unwrap(), keys());
    let node_b = intake::oauth::TokenService::new(Store::connect(&db.url).await.unwrap(), keys());
    let resolved = idp_integration(&idp)
        .resolve()
        .expect("custom integration resolves");
    let client = OAuthClient::new(&resolved).unwrap();
    let url = node_a
        .start_authorization(
            &client,
            "bob@example.com",
            "http://127.0.0.1:53682/callback",
            Protocol::Imap,
        )
        .await
        .unwrap();
    assert!(
        url.contains("code_challenge_method=S256") && url.contains("state="),
        "{url}"
    );
    let back = idp.browser_login_as(&url, "bob@example.com").await.unwrap();
    let q: std::collections::HashMap<String, String> = url::Url::parse(&back)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let (mailbox, identity) = node_b
        .complete_authorization(&client, &q["state"], &q["code"], Protocol::Imap)
        .await
        .unwrap();
    assert_eq!(mailbox, "bob@example.com");
    assert_eq!(identity.username.as_deref(), Some("bob@example.com"));
    // The flow is single use: the same callback cannot be replayed on node A.
    assert!(
        node_a
            .complete_authorization(&client, &q["state"], &q["code"], Protocol::Imap)
            .await
            .is_err()
    );

    let store = Store::connect(&db.url).await.unwrap();
    let first = store
        .tokens("")
        .load_token(&keys(), "idp", "bob@example.com")
        .await
        .unwrap()
        .unwrap();
    let old_rt = first
        .tokens
        .refresh_token
        .clone()
        .expect("offline_access gave a refresh token");
    let refreshed = client
        .refresh(&old_rt, resolved.scopes_for(Protocol::Imap).unwrap())
        .await
        .unwrap();
    let new_rt = refreshed.refresh_token.clone().unwrap();
    assert_ne!(
        new_rt.expose_secret(),
        old_rt.expose_secret(),
        "the provider rotated the refresh token"
    );
    let err = client.refresh(&old_rt, &[]).await.unwrap_err();
    assert_eq!(
        err.kind(),
        intake_core::aadsts::ErrorKind::NeedsReauthorization,
        "{err}"
    );
}

/// The terminal flow end to end against the real server: `intake authorize --browser` prints
/// the URL, listens on 127.0.0.1, and finishes when the browser comes back; then
/// `--print-url` on one process and `--callback-url` on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_browser_flow_from_the_terminal_and_across_processes() {
    let Some(idp) = Idp::start_or_skip("authorize_browser_flow_from_the_terminal") else {
        return;
    };
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[integration]]\nname = \"idp\"\nprovider = \"custom\"\nclient_id = \"{}\"\nclient_secret = \"env:IDP_SECRET\"\ngrant = \"authorization_code\"\nauthorize_url = \"{}\"\ntoken_url = \"{}\"\nscopes = [\"openid\", \"email\", \"offline_access\", \"mail\"]\n",
            idp.post_client_id,
            idp.authorization_endpoint(),
            idp.token_endpoint()
        ),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let key = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
    let mut child = intake()
        .args([
            "--config",
            &cfg,
            "--db",
            &db.url,
            "authorize",
            "idp",
            "--browser",
            "--mailbox",
            "carol@example.com",
            "--json",
        ])
        .env("INTAKE_SECRET_KEY", key)
        .env("IDP_SECRET", &idp.client_secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut url = String::new();
    let mut line = String::new();
    while url.is_empty() && err.read_line(&mut line).unwrap() > 0 {
        if line.trim().starts_with("http") {
            url = line.trim().to_string();
        }
        line.clear();
    }
    let back = idp
        .browser_login_as(&url, "carol@example.com")
        .await
        .unwrap();
    let page = reqwest::get(&back).await.unwrap().text().await.unwrap();
    assert!(page.contains("authorized"), "{page}");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["username"], "carol@example.com");
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(0), "{v}");

    // Started by one process, finished by another.
    let start = intake()
        .args([
            "--config",
            &cfg,
            "--db",
            &db.url,
            "authorize",
            "idp",
            "--browser",
            "--print-url",
            "--mailbox",
            "dan@example.com",
            "--json",
        ])
        .env("INTAKE_SECRET_KEY", key)
        .env("IDP_SECRET", &idp.client_secret)
        .output()
        .unwrap();
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&start.stdout).unwrap();
    let back = idp
        .browser_login_as(v["url"].as_str().unwrap(), "dan@example.com")
        .await
        .unwrap();
    let finish = intake()
        .args([
            "--config",
            &cfg,
            "--db",
            &db.url,
            "authorize",
            "idp",
            "--callback-url",
            &back,
            "--json",
        ])
        .env("INTAKE_SECRET_KEY", key)
        .env("IDP_SECRET", &idp.client_secret)
        .output()
        .unwrap();
    assert!(
        finish.status.success(),
        "{}",
        String::from_utf8_lossy(&finish.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&finish.stdout).unwrap();
    assert_eq!(
        (v["mailbox"].as_str(), v["username"].as_str()),
        (Some("dan@example.com"), Some("dan@example.com"))
    );
    let tok = intake()
        .args([
            "--config",
            &cfg,
            "--db",
            &db.url,
            "token",
            "idp",
            "--mailbox",
            "dan@example.com",
            "--json",
        ])
        .env("INTAKE_SECRET_KEY", key)
        .env("IDP_SECRET", &idp.client_secret)
        .output()
        .unwrap();
    assert!(
        tok.status.success(),
        "{}",
        String::from_utf8_lossy(&tok.stderr)
    );
}
