//! Smoke tests of the OAuth test server (oidc-provider on loopback): authorization code with
//! PKCE, refresh token rotation, loopback redirect ports, device flow. They skip (visibly)
//! without node or the npm install, unless INTAKE_REQUIRE_IDP=1.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use intake_testkit::idp::{DEFAULT_LOGIN, Idp, IdpOptions, pkce_pair, random_token};
use reqwest::Url;
use serde_json::Value;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
}

fn authorize_url(
    idp: &Idp,
    client_id: &str,
    redirect_uri: &str,
    state: &str,
    challenge: Option<&str>,
    login_hint: Option<&str>,
) -> String {
    let mut url = Url::parse(idp.authorization_endpoint()).expect("authorization endpoint");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", "openid email profile offline_access mail")
            .append_pair("state", state);
        if let Some(c) = challenge {
            q.append_pair("code_challenge", c)
                .append_pair("code_challenge_method", "S256");
        }
        if let Some(l) = login_hint {
            q.append_pair("login_hint", l);
        }
    }
    url.to_string()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

/// POSTs a token request as `intake` (client_secret_basic). Returns (status, body).
async fn token(idp: &Idp, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = http()
        .post(idp.token_endpoint())
        .basic_auth(&idp.client_id, Some(&idp.client_secret))
        .form(form)
        .send()
        .await
        .expect("token request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("token JSON"))
}

#[tokio::test]
async fn code_pkce_refresh_rotation() {
    let started = std::time::Instant::now();
    let Some(idp) = Idp::start_or_skip("code_pkce_refresh_rotation") else {
        return;
    };
    eprintln!("idp {} started in {:?}", idp.issuer, started.elapsed());
    assert_eq!(idp.issuer, format!("http://127.0.0.1:{}", idp.port));
    assert_eq!(idp.discovery["issuer"], idp.issuer.as_str());

    // A loopback redirect_uri on some port the client never registered.
    let redirect_uri = "http://127.0.0.1:49152/callback";
    let (verifier, challenge) = pkce_pair();
    let state = random_token();
    let url = authorize_url(
        &idp,
        &idp.client_id,
        redirect_uri,
        &state,
        Some(&challenge),
        None,
    );

    let t = std::time::Instant::now();
    let back = idp.browser_login(&url).await.expect("browser login");
    eprintln!("browser login took {:?}", t.elapsed());
    assert!(
        back.starts_with(redirect_uri),
        "redirected to {back}, want {redirect_uri}"
    );
    assert_eq!(query_param(&back, "state").as_deref(), Some(state.as_str()));
    assert_eq!(
        query_param(&back, "iss").as_deref(),
        Some(idp.issuer.as_str())
    );
    let code = query_param(&back, "code").expect("code in the redirect");

    let (status, tokens) = token(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().expect("access_token");
    let refresh1 = tokens["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_string();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    let scope = tokens["scope"].as_str().expect("scope");
    for s in ["openid", "email", "profile", "offline_access", "mail"] {
        assert!(scope.split(' ').any(|x| x == s), "scope {s} in {scope}");
    }
    let id = jwt_claims(tokens["id_token"].as_str().expect("id_token"));
    assert_eq!(id["email"], DEFAULT_LOGIN);
    assert_eq!(id["sub"], DEFAULT_LOGIN);
    assert_eq!(id["iss"], idp.issuer.as_str());
    assert_eq!(id["aud"], idp.client_id.as_str());

    // The access token works at userinfo.
    let me: Value = http()
        .get(idp.userinfo_endpoint())
        .bearer_auth(access)
        .send()
        .await
        .expect("userinfo")
        .json()
        .await
        .expect("userinfo JSON");
    assert_eq!(me["email"], DEFAULT_LOGIN, "{me}");

    // Refresh: a new refresh token every time.
    let (status, refreshed) = token(
        &idp,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh1),
        ],
    )
    .await;
    assert_eq!(status, 200, "{refreshed}");
    let refresh2 = refreshed["refresh_token"]
        .as_str()
        .expect("rotated refresh_token")
        .to_string();
    assert_ne!(refresh2, refresh1, "refresh token must rotate");
    assert!(refreshed["access_token"].is_string());
    assert_ne!(refreshed["access_token"].as_str(), Some(access));
    // The id_token from a refresh still names the user.
    assert_eq!(
        jwt_claims(refreshed["id_token"].as_str().expect("id_token"))["email"],
        DEFAULT_LOGIN
    );

    // And again, with the new one.
    let (status, refreshed) = token(
        &idp,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh2),
        ],
    )
    .await;
    assert_eq!(status, 200, "{refreshed}");
    let refresh3 = refreshed["refresh_token"]
        .as_str()
        .expect("rotated refresh_token")
        .to_string();
    assert_ne!(refresh3, refresh2, "refresh token must rotate");

    // The first refresh token is dead.
    let (status, err) = token(
        &idp,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh1),
        ],
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"], "invalid_grant", "{err}");
    eprintln!("reused refresh token: {err}");

    // oidc-provider treats reuse as theft and revokes the grant: the newest one is dead too.
    let (status, err) = token(
        &idp,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh3),
        ],
    )
    .await;
    assert_eq!(
        (status, &err["error"]),
        (400, &Value::from("invalid_grant"))
    );

    // The code is single-use (oidc-provider also revokes what was issued from a reused code).
    let (status, err) = token(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(
        (status, &err["error"]),
        (400, &Value::from("invalid_grant"))
    );
}

#[tokio::test]
async fn post_client_login_hint_and_any_loopback_port() {
    let Some(idp) = Idp::start_or_skip("post_client_login_hint_and_any_loopback_port") else {
        return;
    };
    for (port, path, who) in [
        (50001, "/", "bob@example.org"),
        (61234, "/oauth/callback", "carol@example.net"),
    ] {
        let redirect_uri = format!("http://127.0.0.1:{port}{path}");
        let (verifier, challenge) = pkce_pair();
        let url = authorize_url(
            &idp,
            &idp.post_client_id,
            &redirect_uri,
            "s1",
            Some(&challenge),
            Some(who),
        );
        let back = idp.browser_login(&url).await.expect("browser login");
        assert!(back.starts_with(&redirect_uri), "{back}");
        let code = query_param(&back, "code").expect("code");
        // client_secret_post: credentials in the body.
        let resp = http()
            .post(idp.token_endpoint())
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", redirect_uri.as_str()),
                ("code_verifier", verifier.as_str()),
                ("client_id", idp.post_client_id.as_str()),
                ("client_secret", idp.client_secret.as_str()),
            ])
            .send()
            .await
            .expect("token");
        assert_eq!(resp.status(), 200);
        let tokens: Value = resp.json().await.expect("JSON");
        assert_eq!(
            jwt_claims(tokens["id_token"].as_str().expect("id_token"))["email"],
            who
        );
        assert!(tokens["refresh_token"].is_string());
    }

    // A wrong secret.
    let resp = http()
        .post(idp.token_endpoint())
        .basic_auth(&idp.client_id, Some("wrong"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 401);
    let err: Value = resp.json().await.expect("JSON");
    assert_eq!(err["error"], "invalid_client", "{err}");

    // A path that is not registered is refused by the IdP itself (no redirect).
    let (_, challenge) = pkce_pair();
    let url = authorize_url(
        &idp,
        &idp.client_id,
        "http://127.0.0.1:5000/elsewhere",
        "s",
        Some(&challenge),
        None,
    );
    let err = idp.browser_login(&url).await.expect_err("bad redirect_uri");
    assert!(err.contains("redirect_uri"), "{err}");
}

#[tokio::test]
async fn pkce_is_required_and_checked() {
    let Some(idp) = Idp::start_or_skip("pkce_is_required_and_checked") else {
        return;
    };
    let redirect_uri = "http://127.0.0.1:40000/callback";
    // No code_challenge: the error comes back to the redirect_uri.
    let url = authorize_url(&idp, &idp.client_id, redirect_uri, "s", None, None);
    let back = idp.browser_login(&url).await.expect("redirect");
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("invalid_request"),
        "{back}"
    );

    // A wrong verifier at the token endpoint.
    let (_, challenge) = pkce_pair();
    let (other_verifier, _) = pkce_pair();
    let url = authorize_url(
        &idp,
        &idp.client_id,
        redirect_uri,
        "s",
        Some(&challenge),
        None,
    );
    let back = idp.browser_login(&url).await.expect("redirect");
    let code = query_param(&back, "code").expect("code");
    let (status, err) = token(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &other_verifier),
        ],
    )
    .await;
    assert_eq!(
        (status, &err["error"]),
        (400, &Value::from("invalid_grant"))
    );
}

#[tokio::test]
async fn access_ttl_is_configurable() {
    let opts = IdpOptions {
        access_ttl_secs: Some(7),
        ..IdpOptions::default()
    };
    let Some(idp) = Idp::start_with_or_skip("access_ttl_is_configurable", &opts) else {
        return;
    };
    let redirect_uri = "http://localhost:40001/callback";
    let (verifier, challenge) = pkce_pair();
    let url = authorize_url(
        &idp,
        &idp.client_id,
        redirect_uri,
        "s",
        Some(&challenge),
        None,
    );
    let back = idp.browser_login(&url).await.expect("login");
    let code = query_param(&back, "code").expect("code");
    let (status, tokens) = token(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["expires_in"], 7);
}

#[tokio::test]
async fn device_flow_with_test_approval() {
    let Some(idp) = Idp::start_or_skip("device_flow_with_test_approval") else {
        return;
    };
    let device = |scope: &'static str| {
        http()
            .post(idp.device_authorization_endpoint())
            .basic_auth(&idp.client_id, Some(&idp.client_secret))
            .form(&[("scope", scope)])
            .send()
    };
    let auth: Value = device("openid email offline_access mail")
        .await
        .expect("device authorization")
        .json()
        .await
        .expect("JSON");
    let device_code = auth["device_code"].as_str().expect("device_code");
    let user_code = auth["user_code"].as_str().expect("user_code");
    assert!(auth["verification_uri"].is_string(), "{auth}");

    let poll = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", device_code),
    ];
    let (status, pending) = token(&idp, &poll).await;
    assert_eq!(
        (status, &pending["error"]),
        (400, &Value::from("authorization_pending"))
    );

    idp.approve_device(user_code, "dave@example.com")
        .await
        .expect("approve");
    let (status, tokens) = token(&idp, &poll).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
    assert_eq!(
        jwt_claims(tokens["id_token"].as_str().expect("id_token"))["email"],
        "dave@example.com"
    );
    // The code is used up.
    assert!(
        idp.approve_device(user_code, "dave@example.com")
            .await
            .is_err()
    );

    // Denied: the poll says access_denied.
    let auth: Value = device("openid email")
        .await
        .expect("device authorization")
        .json()
        .await
        .expect("JSON");
    idp.deny_device(auth["user_code"].as_str().expect("user_code"))
        .await
        .expect("deny");
    let (status, err) = token(
        &idp,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            (
                "device_code",
                auth["device_code"].as_str().expect("device_code"),
            ),
        ],
    )
    .await;
    assert_eq!(
        (status, &err["error"]),
        (400, &Value::from("access_denied"))
    );
}

/// Writes an executable shell script standing in for `node`: it appends a line to `starts`
/// each time it runs, then stalls (sleeps) on the runs listed in `stall_on` and runs the real
/// node otherwise.
fn node_wrapper(dir: &std::path::Path, name: &str, stall_on: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let starts = dir.join(format!("{name}.starts"));
    let script = dir.join(name);
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho start >> '{starts}'\nn=$(wc -l < '{starts}')\n\
             case \" {stall_on} \" in *\" $n \"*) exec sleep 600 ;; esac\nexec node \"$@\"\n",
            starts = starts.display()
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

fn starts(dir: &std::path::Path, name: &str) -> usize {
    std::fs::read_to_string(dir.join(format!("{name}.starts")))
        .unwrap_or_default()
        .lines()
        .count()
}

/// A start that stalls (no "listening" line in time) is killed and the server started again;
/// one that stalls every time gives up after `START_ATTEMPTS` tries instead of hanging.
#[test]
fn a_stalled_start_is_killed_and_retried() {
    // Only where the server can start at all.
    let Some(plain) = Idp::start_or_skip("a_stalled_start_is_killed_and_retried") else {
        return;
    };
    drop(plain);
    let dir = tempfile::tempdir().expect("temp dir");
    let timeout = Some(std::time::Duration::from_secs(2));

    let once = node_wrapper(dir.path(), "stalls-once", "1");
    let idp = Idp::start_with(&IdpOptions {
        node: Some(once),
        start_timeout: timeout,
        ..IdpOptions::default()
    })
    .expect("the second start comes up");
    assert_eq!(starts(dir.path(), "stalls-once"), 2);
    assert_eq!(idp.discovery["issuer"], idp.issuer.as_str());
    drop(idp);

    let always = node_wrapper(dir.path(), "stalls-always", "1 2 3 4 5");
    let none = Idp::start_with(&IdpOptions {
        node: Some(always),
        start_timeout: timeout,
        ..IdpOptions::default()
    });
    assert!(none.is_none(), "a server that never answers cannot start");
    assert_eq!(
        starts(dir.path(), "stalls-always"),
        intake_testkit::idp::START_ATTEMPTS as usize
    );
}
