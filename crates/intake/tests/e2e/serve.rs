//! `intake serve` as a process: health and readiness, authentication (API tokens, sessions and
//! CSRF, the login rate limit), the audit log, JSON logs, and SIGTERM within 10 s while a
//! channel hangs.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use intake_testkit::TestDb;
use reqwest::{Method, StatusCode};

use crate::intake;

/// A running `intake serve` (killed when dropped); its standard error is collected.
pub struct Node {
    pub child: Child,
    pub base: String,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Start `intake serve` on a free port with `args` after `serve`, and wait until it answers
    /// `/healthz`.
    pub async fn start(db: &str, cfg: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Node {
        let mut cmd = intake();
        if let Some(c) = cfg {
            cmd.arg("--config").arg(c);
        }
        cmd.args(["--db", db, "serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while err.read_line(&mut line).unwrap_or(0) > 0 {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let Some(base) = line
            .trim()
            .strip_prefix("listening on ")
            .map(str::to_string)
        else {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(200));
            panic!(
                "intake serve did not start: {line:?} {}",
                stderr.lock().unwrap()
            );
        };
        let node = Node {
            child,
            base,
            stderr,
        };
        let c = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = c.get(node.url("/healthz")).send().await
                && r.status() == StatusCode::OK
            {
                break;
            }
            assert!(Instant::now() < deadline, "no /healthz");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        node
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// How many JSON log lines so far say `message` about `channel`.
    pub fn logged(&self, message: &str, channel: &str) -> usize {
        self.stderr
            .lock()
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"] == message && v["fields"]["channel"] == channel)
            .count()
    }

    /// Wait up to `within` until a JSON log line says `message` (about anything).
    pub async fn wait_logged_any(&self, message: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let seen = self
                .stderr
                .lock()
                .unwrap()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .any(|v| v["fields"]["message"] == message);
            if seen {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{message:?} not logged within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait up to `within` until [`Node::logged`] reaches `n`.
    pub async fn wait_logged(&self, message: &str, channel: &str, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.logged(message, channel) < n {
            assert!(
                Instant::now() < deadline,
                "{message:?} for {channel} not logged {n} times within {within:?}: {}",
                self.stderr.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `intake admin create USER` with `password` on standard input.
pub fn create_admin(db: &str, user: &str, password: &str) {
    let mut child = intake()
        .args(["--db", db, "admin", "create", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `intake admin token USER`: the token is the last word of the output.
pub fn admin_token(db: &str, user: &str) -> String {
    let out = crate::ok(
        intake()
            .args(["--db", db, "admin", "token", user])
            .output()
            .unwrap(),
    );
    out.split_whitespace().last().unwrap().to_string()
}

/// Every (method, path) of the OpenAPI document, with `{param}` filled with `x`.
pub fn routes(doc: &serde_json::Value) -> Vec<(Method, String, String)> {
    let mut v = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in ["get", "post", "put", "patch", "delete"] {
            if item.get(m).is_some() {
                let filled = path
                    .split('/')
                    .map(|seg| if seg.starts_with('{') { "x" } else { seg })
                    .collect::<Vec<_>>()
                    .join("/");
                v.push((
                    m.to_uppercase().parse().unwrap(),
                    filled,
                    format!("{m} {path}"),
                ));
            }
        }
    }
    v
}

const PASSWORD: &str = "a long enough password";

/// The response schemas of the OpenAPI document `intake serve` publishes: every JSON answer a
/// test checks with [`Schemas::check`] must validate against the schema its operation documents
/// for that status (JSON Schema 2020-12, the dialect of OpenAPI 3.1).
pub struct Schemas {
    doc: serde_json::Value,
}

impl Schemas {
    /// Fetch `/api/openapi.json` from `node`.
    pub async fn load(node: &Node, token: &str) -> Schemas {
        let doc = reqwest::Client::new()
            .get(node.url("/api/openapi.json"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Schemas { doc }
    }

    /// The documented path that `path` (concrete, no query) is an instance of: the template
    /// with the most literal segments among those that match.
    fn template(&self, path: &str) -> String {
        let segs: Vec<&str> = path.split('/').collect();
        self.doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .filter_map(|t| {
                let ts: Vec<&str> = t.split('/').collect();
                (ts.len() == segs.len()
                    && ts
                        .iter()
                        .zip(&segs)
                        .all(|(a, b)| a.starts_with('{') || a == b))
                .then(|| (ts.iter().filter(|a| !a.starts_with('{')).count(), t.clone()))
            })
            .max()
            .map(|(_, t)| t)
            .unwrap_or_else(|| panic!("{path} is not in the OpenAPI document"))
    }

    /// Check one answer: its status must be documented for the operation, and a JSON body
    /// must validate against the documented schema. Returns the number of schema checks made
    /// (0 when the documented answer is not JSON).
    pub fn check(&self, method: &str, url: &str, status: u16, body: &str) -> usize {
        let path = url
            .split_once("://")
            .map(|(_, rest)| &rest[rest.find('/').unwrap_or(rest.len())..])
            .unwrap_or(url);
        let path = path.split('?').next().unwrap();
        let template = self.template(path);
        let op = &self.doc["paths"][&template][method.to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {template} is not documented");
        let answer = &op["responses"][status.to_string()];
        assert!(
            answer.is_object(),
            "{method} {template} answered {status}, which it does not document: {body}"
        );
        let Some(schema) = answer["content"]["application/json"].get("schema") else {
            return 0;
        };
        let mut schema = schema.clone();
        schema["components"] = self.doc["components"].clone();
        let validator = jsonschema::draft202012::new(&schema)
            .unwrap_or_else(|e| panic!("the schema of {method} {template} {status}: {e}"));
        let instance: serde_json::Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{method} {path} {status} is not JSON ({e}): {body}"));
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{e} (at {})", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status} does not match its OpenAPI schema:\n{}\nanswer: {body}",
            errors.join("\n")
        );
        1
    }
}

/// Send `rq`, check the answer against the OpenAPI document, return (status, body text).
pub async fn checked(schemas: &Schemas, rq: reqwest::RequestBuilder) -> (StatusCode, String) {
    let built = rq.build().unwrap();
    let (method, url) = (built.method().to_string(), built.url().to_string());
    let r = reqwest::Client::new().execute(built).await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    schemas.check(&method, &url, status.as_u16(), &text);
    (status, text)
}

/// The security contract: without credentials every route of the OpenAPI document but the
/// login answers 401 (and `/metrics` too), `/healthz` and `/readyz` answer; a bearer token and a
/// session both work; a cookie request that changes state without the CSRF token is refused
/// 403 on every such route; the cookie is HttpOnly and SameSite=Lax; failed logins are limited
/// per user; the audit log records logins and tokens; no answer carries the password, the API
/// token or the session cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_credentials_sessions_need_csrf_and_logins_are_rate_limited() {
    let db = TestDb::sqlite();
    create_admin(&db.url, "alice", PASSWORD);
    let token = admin_token(&db.url, "alice");
    assert_eq!(token.len(), 43, "a 256-bit token, base64url");
    let node = Node::start(&db.url, None, &[], &[]).await;
    let c = reqwest::Client::new();
    let mut answers = String::new();

    assert_eq!(
        c.get(node.url("/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        c.get(node.url("/readyz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        c.get(node.url("/metrics")).send().await.unwrap().status(),
        401
    );

    let r = c
        .get(node.url("/api/openapi.json"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    let all = routes(&doc);
    // The routes of issue 12 this node serves are all in the document (routes registered
    // outside `utoipa_axum::routes!` would be missing here and escape the loops below).
    let names: Vec<&str> = all.iter().map(|(_, _, n)| n.as_str()).collect();
    for r in [
        "get /api/integrations",
        "post /api/integrations",
        "get /api/integrations/{name}",
        "patch /api/integrations/{name}",
        "delete /api/integrations/{name}",
        "get /api/channels",
        "post /api/channels",
        "get /api/channels/{name}",
        "patch /api/channels/{name}",
        "delete /api/channels/{name}",
        "post /api/channels/{name}/pause",
        "post /api/channels/{name}/resume",
        "post /api/channels/{name}/test",
        "get /api/channels/{name}/status",
        "get /api/tickets",
        "get /api/tickets/{key}",
        "get /api/tickets/{key}/attachments/{id}",
        "get /api/log",
        "get /api/quarantine",
        "get /api/quarantine/{id}/raw",
        "get /api/alerts",
        "get /api/audit",
        "post /api/session",
        "get /api/session",
        "delete /api/session",
        "get /api/openapi.json",
        "post /api/integrations/{name}/authorize",
        "get /api/flows/{flow_id}",
        "get /oauth/callback",
    ] {
        assert!(
            names.contains(&r),
            "{r} missing from the OpenAPI document: {names:?}"
        );
    }
    for (m, path, name) in &all {
        let r = c.request(m.clone(), node.url(path)).send().await.unwrap();
        if name == "post /api/session" || name == "get /oauth/callback" {
            // Logging in and the OAuth callback need no credentials: without a body or a
            // state they are refused.
            assert!(r.status().is_client_error(), "{name}: {}", r.status());
            continue;
        }
        assert_eq!(r.status(), 401, "{name} without credentials");
        assert!(r.headers().contains_key("www-authenticate"), "{name}");
        // A wrong token is no better.
        let r = c
            .request(m.clone(), node.url(path))
            .bearer_auth("not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{name} with a wrong token");
    }

    // With the token every route answers, and with a status its operation documents (the
    // answers of this test validate against the document: path, method, status and schema).
    let schemas = Schemas::load(&node, &token).await;
    let mut validated = 0;
    for (m, path, name) in &all {
        let mut rq = c.request(m.clone(), node.url(path)).bearer_auth(&token);
        if *m == Method::POST || *m == Method::PATCH {
            rq = rq.json(&serde_json::json!({}));
        }
        let r = rq.send().await.unwrap();
        let status = r.status().as_u16().to_string();
        let (method, template) = name.split_once(' ').unwrap();
        let documented = doc["paths"][template][method]["responses"].clone();
        let text = r.text().await.unwrap();
        assert!(
            documented.get(&status).is_some(),
            "{name} answered {status}, not among the documented {documented}: {text}"
        );
        // …and its body validates against the schema documented for that status.
        validated += schemas.check(method, &node.url(path), status.parse().unwrap(), &text);
        answers += &text;
    }
    assert!(
        validated >= 25,
        "only {validated} answers had a JSON schema"
    );

    // Bearer.
    let r = c
        .get(node.url("/api/session"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let me: serde_json::Value = r.json().await.unwrap();
    assert_eq!(me["user"], "alice");
    assert_eq!(me["via"], "token");
    assert_eq!(
        c.get(node.url("/metrics"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Session.
    let bad = c
        .post(node.url("/api/session"))
        .json(&serde_json::json!({"user": "alice", "password": "wrong password!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    answers += &bad.text().await.unwrap();
    let r = c
        .post(node.url("/api/session"))
        .json(&serde_json::json!({"user": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    assert!(
        !set_cookie.contains("Secure"),
        "http public URL: {set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let session_value = cookie.split_once('=').unwrap().1.to_string();
    let login: serde_json::Value = r.json().await.unwrap();
    answers += &login.to_string();
    let csrf = login["csrf_token"].as_str().unwrap().to_string();
    let r = c
        .get(node.url("/api/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let me: serde_json::Value = r.json().await.unwrap();
    assert_eq!(me["via"], "session");
    assert_eq!(me["csrf_token"], csrf.as_str());
    // Every state-changing route refuses the cookie without the CSRF token, or a wrong one.
    for (m, path, name) in &all {
        if *m == Method::GET || name == "post /api/session" {
            continue;
        }
        for sent in [None, Some("wrong")] {
            let mut rq = c
                .request(m.clone(), node.url(path))
                .header("cookie", &cookie);
            if let Some(t) = sent {
                rq = rq.header("x-csrf-token", t);
            }
            let r = rq.send().await.unwrap();
            assert_eq!(r.status(), 403, "{name} with the cookie and CSRF {sent:?}");
        }
    }
    let r = c
        .delete(node.url("/api/session"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = c
        .get(node.url("/api/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the session ended with the logout");

    // Rate limit: after 5 failures for a user, even the right password is refused for a while.
    for _ in 0..4 {
        let r = c
            .post(node.url("/api/session"))
            .json(&serde_json::json!({"user": "alice", "password": "still wrong!!"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = c
        .post(node.url("/api/session"))
        .json(&serde_json::json!({"user": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "the 6th attempt after 5 failures");
    assert!(r.headers().contains_key("retry-after"));
    // The token still works: the limit is on logins.
    let r = c
        .get(node.url("/api/audit"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let audit: serde_json::Value = r.json().await.unwrap();
    answers += &audit.to_string();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "admin_created",
        "token_created",
        "login",
        "login_failed",
        "logout",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    for secret in [PASSWORD, token.as_str(), session_value.as_str()] {
        assert!(!answers.contains(secret), "an answer carried a secret");
    }
    // The database keeps only hashes.
    let store = intake_store::Store::connect(&db.url).await.unwrap();
    let raw = std::fs::read(db.url.strip_prefix("sqlite://").unwrap()).unwrap();
    let raw = String::from_utf8_lossy(&raw);
    assert!(!raw.contains(&token) && !raw.contains(&session_value) && !raw.contains(PASSWORD));
    assert!(
        store
            .admin_password_hash("alice")
            .await
            .unwrap()
            .unwrap()
            .starts_with("$argon2id$")
    );
}

/// `--metrics-public` serves /metrics without credentials (and nothing else).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_public_opens_only_the_metrics() {
    let db = TestDb::sqlite();
    let node = Node::start(&db.url, None, &["--metrics-public"], &[]).await;
    let c = reqwest::Client::new();
    let r = c.get(node.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("intake_http_requests_total")
    );
    assert_eq!(
        c.get(node.url("/api/audit")).send().await.unwrap().status(),
        401
    );
}

/// `intake admin create` refuses a short password and a bad user name; `admin token` for an
/// unknown user fails.
#[test]
fn admin_commands_check_their_input() {
    let db = TestDb::sqlite();
    let mut child = intake()
        .args(["--db", &db.url, "admin", "create", "bob"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "short").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 12"));
    let out = intake()
        .args(["--db", &db.url, "admin", "token", "bob"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no administrator named"));
    let out = intake()
        .args(["--db", &db.url, "admin", "create", "bad name"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// With `INTAKE_LOG_FORMAT=json` every log line is a JSON object; SIGTERM ends `intake serve`
/// within 10 s while a channel hangs on a server that never answers, `/readyz` goes 503 first,
/// and the channel's lease is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_serve_within_10_seconds_with_json_logs_while_a_channel_hangs() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            let Ok(s) = s else { return };
            held.push(s);
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "lease_seconds = 6\n[[channel]]\nname = \"hung\"\nproject = \"HELP\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nmailbox = \"help@example.test\"\nauth = \"password:env:HUNG_PW\"\ntimeout_seconds = 60\n"
        ),
    )
    .unwrap();
    let db = TestDb::sqlite();
    let mut node = Node::start(
        &db.url,
        Some(&cfg),
        &[],
        &[
            ("INTAKE_LOG_FORMAT", "json"),
            ("INTAKE_LOG", "info"),
            ("HUNG_PW", "s3cret"),
        ],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while accepted.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the channel never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let store = intake_store::Store::connect(&db.url).await.unwrap();
    assert!(store.lease_holder("hung").await.unwrap().is_some());
    let pid = node.child.id().to_string();
    let signalled = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(s) = node.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(15),
            "serve did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = signalled.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    let err = node.stderr.lock().unwrap().clone();
    assert!(
        took < Duration::from_secs(10),
        "stopped after {took:?}: {err}"
    );
    assert!(status.success(), "{status:?}: {err}");
    assert_eq!(
        store.lease_holder("hung").await.unwrap(),
        None,
        "lease released"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "info logs were written");
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{l}");
    }
    assert!(err.contains("intake serve listening"), "{err}");
}

/// A bad `INTAKE_LOG_FORMAT` fails naming the variable.
#[test]
fn a_bad_log_format_is_refused_naming_the_variable() {
    let out = intake()
        .args(["tickets", "list"])
        .env("INTAKE_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("INTAKE_LOG_FORMAT"));
}

/// A fixed at-rest key shared by the nodes of a test (base64 of 32 bytes).
const TEST_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn node_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("INTAKE_LOG_FORMAT", "json"),
        ("INTAKE_LOG", "info"),
        ("INTAKE_SECRET_KEY", TEST_KEY),
        ("INTAKE_LEASE_SECONDS", "3"),
    ]
}

fn mail(id: &str, subject: &str) -> String {
    format!(
        "From: Ann <ann@example.com>\r\nTo: help@example.com\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nBody of {subject}\r\n"
    )
}

fn drop_mail(root: &Path, i: usize) {
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let tmp = root.join("tmp").join(format!("m{i}"));
    std::fs::write(&tmp, mail(&format!("live{i}@x"), &format!("Live {i}"))).unwrap();
    std::fs::rename(
        &tmp,
        root.join("new").join(format!("17000000{i:02}.M{i}P1.host")),
    )
    .unwrap();
}

async fn wait_tickets(store: &intake_store::Store, n: i64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let have = store.count(intake_store::Table::Tickets).await.unwrap();
        if have >= n {
            assert_eq!(have, n, "more tickets than messages");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{have} tickets, not {n}, within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two `intake serve` on one PostgreSQL database: a channel created through node A starts on
/// node B too (B logs it within 5 s) and ingests mail; an edit on A restarts it on B and the
/// new project applies; a pause on A stops it on B (no mail taken while paused, B's status says
/// paused); resume takes the mail; a delete on A stops it on B and its lease is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_created_edited_paused_and_deleted_on_node_a_takes_effect_on_node_b() {
    let db = TestDb::postgres().await;
    create_admin(&db.url, "alice", PASSWORD);
    let token = admin_token(&db.url, "alice");
    let a = Node::start(&db.url, None, &[], &node_env()).await;
    let b = Node::start(&db.url, None, &[], &node_env()).await;
    let store = intake_store::Store::connect(&db.url).await.unwrap();
    let c = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    drop_mail(&root, 1);
    drop_mail(&root, 2);

    let created = Instant::now();
    let r = c
        .post(a.url("/api/channels"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "name": "box", "project": "HELP", "protocol": "maildir",
            "path": root.display().to_string(), "mode": "poll", "poll_seconds": 1,
            "after": "mark-read"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    b.wait_logged("starting the channel", "box", 1, Duration::from_secs(5))
        .await;
    a.wait_logged("starting the channel", "box", 1, Duration::from_secs(5))
        .await;
    assert!(created.elapsed() < Duration::from_secs(6));
    wait_tickets(&store, 2, Duration::from_secs(20)).await;

    // Edit on A: B restarts the channel with the new project.
    let r = c
        .patch(a.url("/api/channels/box"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"project": "OPS"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    b.wait_logged(
        "configuration changed: stopping the channel",
        "box",
        1,
        Duration::from_secs(5),
    )
    .await;
    b.wait_logged("starting the channel", "box", 2, Duration::from_secs(10))
        .await;
    drop_mail(&root, 3);
    wait_tickets(&store, 3, Duration::from_secs(20)).await;
    let ops = store.list_tickets(Some("OPS")).await.unwrap();
    assert_eq!(ops.len(), 1, "the edited channel files into OPS: {ops:?}");

    // Pause on A: B stops it, its status says paused, new mail waits.
    let r = c
        .post(a.url("/api/channels/box/pause"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    b.wait_logged(
        "configuration changed: stopping the channel",
        "box",
        2,
        Duration::from_secs(5),
    )
    .await;
    let st: serde_json::Value = c
        .get(b.url("/api/channels/box/status"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["state"], "paused", "{st}");
    assert_eq!(st["counts"]["created"], 3, "{st}");
    drop_mail(&root, 4);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        store.count(intake_store::Table::Tickets).await.unwrap(),
        3,
        "paused: nothing taken"
    );
    let r = c
        .post(a.url("/api/channels/box/resume"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Both nodes run it again (a node may fold changes that follow each other quickly into one
    // reload, so each step is awaited before the next).
    b.wait_logged("starting the channel", "box", 3, Duration::from_secs(5))
        .await;
    a.wait_logged("starting the channel", "box", 3, Duration::from_secs(5))
        .await;
    wait_tickets(&store, 4, Duration::from_secs(20)).await;

    // Delete on A: stopped everywhere, lease released, gone from B's API.
    let r = c
        .delete(a.url("/api/channels/box"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    b.wait_logged(
        "configuration changed: stopping the channel",
        "box",
        3,
        Duration::from_secs(5),
    )
    .await;
    a.wait_logged(
        "configuration changed: stopping the channel",
        "box",
        3,
        Duration::from_secs(5),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(8);
    while store.lease_holder("box").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the lease was not released");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = c
        .get(b.url("/api/channels/box"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let audit: serde_json::Value = c
        .get(b.url("/api/audit"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<String> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == "box")
        .map(|e| {
            format!(
                "{} {}",
                e["actor"].as_str().unwrap(),
                e["action"].as_str().unwrap()
            )
        })
        .collect();
    for x in [
        "channel_created",
        "channel_changed",
        "channel_paused",
        "channel_resumed",
        "channel_deleted",
    ] {
        assert!(
            actions.contains(&format!("alice {x}")),
            "{x} in {actions:?}"
        );
    }
}

/// The file's entries are imported read-only (said in the answer; PATCH/DELETE refused 409);
/// the API validates with the file's code (a bad value or unknown key → 422 naming the key, an
/// integration a channel uses cannot be deleted); a literal client secret is write-only (never
/// in any answer, `{"set": true, "expires": …}`), sealed in the database, and `[REDACTED]` in
/// `intake config export`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_entries_are_read_only_the_api_validates_like_the_file_and_secrets_are_write_only() {
    const SECRET: &str = "Zq8~literal-client-SECRET-value";
    let db = TestDb::sqlite();
    create_admin(&db.url, "alice", PASSWORD);
    let token = admin_token(&db.url, "alice");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    drop_mail(&root, 1);
    let cfg = dir.path().join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[channel]]\nname = \"filed\"\nproject = \"HELP\"\nprotocol = \"maildir\"\npath = \"{}\"\nmode = \"poll\"\npoll_seconds = 1\n",
            root.display()
        ),
    )
    .unwrap();
    let node = Node::start(&db.url, Some(&cfg), &[], &node_env()).await;
    let c = reqwest::Client::new();
    let mut answers = String::new();
    let get = |path: &str| {
        let rq = c.get(node.url(path)).bearer_auth(&token);
        async move {
            let r = rq.send().await.unwrap();
            let status = r.status();
            (status, r.text().await.unwrap())
        }
    };

    let (st, body) = get("/api/channels/filed").await;
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["managed_by"], "file");
    assert_eq!(v["read_only"], true);
    let r = c
        .patch(node.url("/api/channels/filed"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"project": "OPS"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("configuration file"));
    let r = c
        .delete(node.url("/api/channels/filed"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    // The file's validation, naming the key.
    let bad = [
        (
            serde_json::json!({"name": "x", "project": "HELP", "protocol": "maildir", "path": "/tmp", "mode": "pol"}),
            "mode",
        ),
        (
            serde_json::json!({"name": "x", "project": "HELP", "protocol": "maildir", "path": "/tmp", "colour": "red"}),
            "colour",
        ),
        (
            serde_json::json!({"name": "x", "project": "HELP", "auth": "oauth:nope", "mailbox": "a@b.c", "host": "h"}),
            "nope",
        ),
        (
            serde_json::json!({"name": "filed", "project": "HELP", "protocol": "maildir", "path": "/tmp"}),
            "exists",
        ),
    ];
    for (body, word) in bad {
        let r = c
            .post(node.url("/api/channels"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status == 422 || status == 409, "{status} {text}");
        assert!(text.contains(word), "{word} named in {text}");
    }

    // An integration with a literal secret.
    let r = c
        .post(node.url("/api/integrations"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "name": "m365", "provider": "microsoft", "tenant": "contoso.onmicrosoft.com",
            "client_id": "11111111-2222-3333-4444-555555555555",
            "client_secret": SECRET, "client_secret_expires": "2099-01-01"
        }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 201, "{text}");
    answers += &text;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["table"]["client_secret"],
        serde_json::json!({"set": true, "expires": "2099-01-01"})
    );
    assert!(
        v["endpoints"]["token_url"]
            .as_str()
            .unwrap()
            .contains("contoso.onmicrosoft.com"),
        "{v}"
    );
    assert!(v["scopes"].is_object(), "{v}");
    // A channel using it; then the integration cannot go.
    let r = c
        .post(node.url("/api/channels"))
        .bearer_auth(&token)
        .json(
            &serde_json::json!({"name": "m", "project": "HELP", "protocol": "imap",
            "auth": "oauth:m365", "mailbox": "help@contoso.com"}),
        )
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 201, "{text}");
    answers += &text;
    let r = c
        .delete(node.url("/api/integrations/m365"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("m365"));
    // PATCH that sends the answer back keeps the secret; a new expiry is shown.
    let r = c
        .patch(node.url("/api/integrations/m365"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"client_secret": {"set": true}, "client_secret_expires": "2098-12-31"}))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    answers += &text;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["table"]["client_secret"]["expires"], "2098-12-31", "{v}");
    for path in [
        "/api/integrations",
        "/api/integrations/m365",
        "/api/channels",
        "/api/channels/m",
        "/api/audit",
        "/api/channels/m/status",
    ] {
        let (st, body) = get(path).await;
        assert_eq!(st, 200, "{path}: {body}");
        answers += &body;
    }
    assert!(!answers.contains(SECRET), "a secret in an answer");
    let store = intake_store::Store::connect(&db.url).await.unwrap();
    let keys = intake_store::Keyring::from_base64(TEST_KEY, &[]).unwrap();
    let e = store.config_entries(&keys).await.unwrap();
    let m365 = e.iter().find(|e| e.name == "m365").unwrap();
    assert_eq!(m365.body["client_secret"], SECRET, "kept as written");
    drop(node);
    let raw = std::fs::read(db.url.strip_prefix("sqlite://").unwrap()).unwrap();
    let wal = std::fs::read(format!("{}-wal", db.url.strip_prefix("sqlite://").unwrap()))
        .unwrap_or_default();
    for bytes in [raw, wal] {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(SECRET),
            "sealed at rest"
        );
    }
    let out = crate::ok(
        intake()
            .args(["--db", &db.url, "config", "export"])
            .env("INTAKE_SECRET_KEY", TEST_KEY)
            .output()
            .unwrap(),
    );
    assert!(!out.contains(SECRET), "{out}");
    assert!(out.contains("client_secret = \"[REDACTED]\""), "{out}");
    assert!(
        out.contains("name = \"filed\"") && out.contains("auth = \"oauth:m365\""),
        "{out}"
    );
    let parsed: toml::Value = toml::from_str(&out).unwrap();
    assert_eq!(parsed["channel"].as_array().unwrap().len(), 2);
}

/// `YYYY-MM-DD` of the day `days` from today (UTC).
fn date_in(days: i64) -> String {
    let z = intake_store::now() / 86_400 + days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Alerts: a channel failing longer than `alert_after_seconds` and a client secret expiring in
/// 10 days raise alerts (listed by the API, counted in /metrics, POSTed to the webhook, which
/// first refuses and gets the call again); when the channel works again its alert clears itself
/// and the webhook hears of it; the secret's alert stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_channels_and_expiring_secrets_raise_alerts_that_clear_themselves() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&hook)
        .await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&hook)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    let cfg = dir.path().join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "[alerts]\nwebhook = \"{}/hook\"\nalert_after_seconds = 2\n\
             [[integration]]\nname = \"m365\"\nprovider = \"microsoft\"\ntenant = \"contoso.onmicrosoft.com\"\n\
             client_id = \"11111111-2222-3333-4444-555555555555\"\nclient_secret = \"env:M365_SECRET\"\n\
             client_secret_expires = \"{}\"\n\
             [[channel]]\nname = \"late\"\nproject = \"HELP\"\nprotocol = \"maildir\"\npath = \"{}\"\nmode = \"poll\"\npoll_seconds = 1\n",
            hook.uri(),
            date_in(10),
            root.display()
        ),
    )
    .unwrap();
    let db = TestDb::sqlite();
    create_admin(&db.url, "alice", PASSWORD);
    let token = admin_token(&db.url, "alice");
    let node = Node::start(&db.url, Some(&cfg), &[], &node_env()).await;
    let c = reqwest::Client::new();
    let alerts = |all: bool| {
        let rq = c
            .get(node.url(&format!("/api/alerts?include_cleared={all}")))
            .bearer_auth(&token);
        async move {
            rq.send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let open = loop {
        let open = alerts(false).await;
        let kinds: Vec<&str> = open
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["kind"].as_str().unwrap())
            .collect();
        if kinds.contains(&"channel_failing") && kinds.contains(&"credential_expiry") {
            break open;
        }
        assert!(Instant::now() < deadline, "alerts not raised: {open}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let failing = open
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "channel_failing")
        .unwrap();
    assert_eq!(failing["subject"], "late");
    assert_eq!(failing["severity"], "critical");
    let expiry = open
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "credential_expiry")
        .unwrap();
    assert_eq!(expiry["subject"], "m365");
    assert_eq!(expiry["severity"], "warning", "10 days: within 14, not 3");
    assert!(
        expiry["message"].as_str().unwrap().contains("expires in"),
        "{expiry}"
    );
    let metrics = c
        .get(node.url("/metrics"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("intake_alerts_open{kind=\"channel_failing\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("intake_credential_expiry_seconds{integration=\"m365\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("intake_channel_up{channel=\"late\"} 0"),
        "{metrics}"
    );

    // The channel works once its Maildir exists: the alert clears itself.
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let open = alerts(false).await;
        if !open
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "channel_failing")
        {
            assert!(
                open.as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a["kind"] == "credential_expiry")
            );
            break;
        }
        assert!(Instant::now() < deadline, "the alert did not clear: {open}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let all = alerts(true).await;
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "channel_failing" && a["cleared_at"].is_i64()),
        "{all}"
    );
    // The webhook: raised for both (the refused call came again), then cleared.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: Vec<serde_json::Value> = hook
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect();
        let has = |event: &str, kind: &str| {
            got.iter()
                .any(|v| v["event"] == event && v["alert"]["kind"] == kind)
        };
        if has("raised", "channel_failing")
            && has("raised", "credential_expiry")
            && has("cleared", "channel_failing")
        {
            assert!(got.len() >= 4, "the refused call was sent again: {got:?}");
            break;
        }
        assert!(Instant::now() < deadline, "webhook calls: {got:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `POST /api/channels/{name}/test`: the staged check of `intake doctor --json`, through the
/// API: a Maildir channel passes; an IMAP channel on a closed port fails naming the stage and
/// the host:port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_test_runs_the_doctor_check_through_the_api() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    drop_mail(&root, 1);
    let db = TestDb::sqlite();
    create_admin(&db.url, "alice", PASSWORD);
    let token = admin_token(&db.url, "alice");
    let node = Node::start(&db.url, None, &[], &node_env()).await;
    let c = reqwest::Client::new();
    for body in [
        serde_json::json!({"name": "local", "project": "HELP", "protocol": "maildir",
            "path": root.display().to_string(), "mode": "poll", "poll_seconds": 1}),
        serde_json::json!({"name": "closed", "project": "HELP", "host": "127.0.0.1", "port": port,
            "tls": "none", "mailbox": "a@example.test", "auth": "password:env:NO_SUCH_PW", "timeout_seconds": 2}),
    ] {
        let r = c
            .post(node.url("/api/channels"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let test = |name: &str| {
        let rq = c
            .post(node.url(&format!("/api/channels/{name}/test")))
            .bearer_auth(&token);
        async move {
            let r = rq.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let ok = test("local").await;
    assert_eq!(ok["channel"], "local");
    assert_eq!(ok["ok"], true, "{ok}");
    assert!(
        ok["stages"].as_array().is_some_and(|s| !s.is_empty()),
        "{ok}"
    );
    assert!(ok["findings"].is_array(), "the doctor's findings: {ok}");
    let bad = test("closed").await;
    assert_eq!(bad["ok"], false, "{bad}");
    let last = bad["stages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["ok"], false, "{bad}");
    // The same document as `intake doctor --json`: the failure and the plaintext-secret
    // warning are findings with a code, a severity and a fix.
    let findings = bad["findings"].as_array().unwrap();
    assert!(!findings.is_empty(), "{bad}");
    for f in findings {
        for k in ["code", "severity", "title", "evidence", "fix"] {
            assert!(f[k].is_string(), "{k} in {f}");
        }
    }
    assert!(
        bad.get("integration").is_some() && bad.get("outgoing").is_some(),
        "{bad}"
    );
    let r = c
        .post(node.url("/api/channels/nope/test"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// Reading through the API what `intake ingest` made: search by a word of the body, the ticket
/// with its attachment, the attachment downloaded byte for byte with a safe
/// `Content-Disposition`, the quarantined message listed and its raw bytes identical, the mail
/// log filtered and paged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_attachments_quarantine_and_log_through_the_api() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let blob: Vec<u8> = (0..20_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&blob);
    let wrapped: String = b64
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
        .collect();
    std::fs::write(
        dir.path().join("a.eml"),
        format!(
            "From: Ann <ann@example.com>\r\nTo: help@example.com\r\nSubject: Printer on fire\r\n\
             Message-ID: <att1@x>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n\
             The toner smells of zebrafish.\r\n--b1\r\nContent-Type: application/octet-stream\r\n\
             Content-Disposition: attachment; filename=\"evil\\\"; x=.html\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{wrapped}--b1--\r\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.eml"),
        mail("other@x", "Something else entirely"),
    )
    .unwrap();
    let junk: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 256) as u8).collect();
    std::fs::write(dir.path().join("junk.bin"), &junk).unwrap();
    let db = TestDb::sqlite();
    crate::ok(
        intake()
            .args(["ingest", "--db", &db.url, dir.path().to_str().unwrap()])
            .output()
            .unwrap(),
    );
    create_admin(&db.url, "alice", PASSWORD);
    let token = admin_token(&db.url, "alice");
    let node = Node::start(&db.url, None, &[], &node_env()).await;
    let c = reqwest::Client::new();
    let get = |path: String| {
        let rq = c.get(node.url(&path)).bearer_auth(&token);
        async move { rq.send().await.unwrap() }
    };

    let page: serde_json::Value = get("/api/tickets?q=ZEBRAFISH&per_page=10".into())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["items"][0]["summary"], "Printer on fire");
    let key = page["items"][0]["key"].as_str().unwrap().to_string();
    let all: serde_json::Value = get("/api/tickets?project=HELP&per_page=1&page=2".into())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["total"], 2, "{all}");
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    let t: serde_json::Value = get(format!("/api/tickets/{key}"))
        .await
        .json()
        .await
        .unwrap();
    let att = &t["attachments"][0];
    let id = att["id"].as_i64().unwrap();
    let r = get(format!("/api/tickets/{key}/attachments/{id}")).await;
    assert_eq!(r.status(), 200);
    let cd = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cd.starts_with("attachment; filename=\""), "{cd}");
    assert_eq!(
        cd.matches('"').count(),
        2,
        "the stored name cannot break out: {cd}"
    );
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        blob.as_slice(),
        "byte-identical"
    );
    assert_eq!(
        get(format!("/api/tickets/{key}/attachments/999999"))
            .await
            .status(),
        404
    );
    assert_eq!(get("/api/tickets/NOPE-1".into()).await.status(), 404);

    let q: serde_json::Value = get("/api/quarantine".into()).await.json().await.unwrap();
    assert_eq!(q["total"], 1, "{q}");
    let qid = q["items"][0]["id"].as_i64().unwrap();
    assert!(q["items"][0]["reason"].is_string(), "{q}");
    let raw = get(format!("/api/quarantine/{qid}/raw")).await;
    assert_eq!(raw.headers()["content-type"], "message/rfc822");
    assert_eq!(raw.bytes().await.unwrap().as_ref(), junk.as_slice());

    let r = c
        .post(node.url(&format!("/api/quarantine/{qid}/discard")))
        .bearer_auth(&token)
        .json(&serde_json::json!({"reason": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "a reason is required");
    let r = c
        .post(node.url(&format!("/api/quarantine/{qid}/discard")))
        .bearer_auth(&token)
        .json(&serde_json::json!({"reason": "binary junk"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let q: serde_json::Value = get("/api/quarantine".into()).await.json().await.unwrap();
    assert_eq!(q["total"], 0, "{q}");
    let store = intake_store::Store::connect(&db.url).await.unwrap();
    let rows = store.ledger(None).await.unwrap();
    let d = rows.iter().find(|r| r.outcome == "discarded").unwrap();
    assert_eq!(d.reason.as_deref(), Some("discarded by alice: binary junk"));
    let again = c
        .post(node.url(&format!("/api/quarantine/{qid}/discard")))
        .bearer_auth(&token)
        .json(&serde_json::json!({"reason": "twice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);

    let log: serde_json::Value = get("/api/log?level=warn&per_page=5".into())
        .await
        .json()
        .await
        .unwrap();
    assert!(log["total"].as_i64().unwrap() >= 1, "{log}");
    assert!(
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["level"] == "warn"),
        "{log}"
    );
    let none: serde_json::Value = get("/api/log?since=4102444800".into())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["total"], 0, "{none}");
}

/// Three `intake serve` nodes on one PostgreSQL database with 20 Maildir channels (created
/// through the API) and mail arriving all the time: the channels spread over the nodes; after
/// `kill -9` of the node holding the most, each of its channels is taken over by another node
/// within the lease TTL (plus one poll), and every message ends with exactly one outcome (one
/// ledger row, one ticket, moved to cur/ once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_twenty_channels_kill_9_one_its_channels_move_and_every_message_has_one_outcome()
 {
    const CHANNELS: usize = 20;
    let db = TestDb::postgres().await;
    create_admin(&db.url, "alice", PASSWORD);
    let token = admin_token(&db.url, "alice");
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Node::start(&db.url, None, &[], &node_env()).await);
    }
    let store = intake_store::Store::connect(&db.url).await.unwrap();
    let c = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let roots: Vec<std::path::PathBuf> = (0..CHANNELS)
        .map(|i| dir.path().join(format!("box{i}")))
        .collect();
    for (i, root) in roots.iter().enumerate() {
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let r = c
            .post(nodes[i % 3].url("/api/channels"))
            .bearer_auth(&token)
            .json(&serde_json::json!({
                "name": format!("box{i}"), "project": "HELP", "protocol": "maildir",
                "path": root.display().to_string(), "mode": "poll", "poll_seconds": 1,
                "after": "mark-read"
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // Mail arrives all the time, round robin over the Maildirs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (roots, stop) = (roots.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let root = &roots[n % roots.len()];
                let tmp = root.join("tmp").join(format!("w{n}"));
                std::fs::write(&tmp, mail(&format!("k{n}@x"), &format!("Kill test {n}"))).unwrap();
                std::fs::rename(
                    &tmp,
                    root.join("new").join(format!("1700{n:08}.M{n}P9.host")),
                )
                .unwrap();
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            n
        })
    };
    // Every channel held by some node; they spread.
    let holders = |store: intake_store::Store| async move {
        let mut h = Vec::new();
        for i in 0..CHANNELS {
            let l = store.lease_holder(&format!("box{i}")).await.unwrap();
            h.push(
                l.filter(|(_, exp)| *exp > intake_store::now())
                    .map(|(n, _)| n),
            );
        }
        h
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let held = loop {
        let h = holders(store.clone()).await;
        if h.iter().all(Option::is_some) {
            break h.into_iter().map(Option::unwrap).collect::<Vec<_>>();
        }
        assert!(
            Instant::now() < deadline,
            "not every channel started: {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let pid_of = |holder: &str| holder.split(':').nth(1).unwrap().parse::<u32>().unwrap();
    let mut per_node = std::collections::BTreeMap::<u32, usize>::new();
    for h in &held {
        *per_node.entry(pid_of(h)).or_default() += 1;
    }
    assert!(
        per_node.len() >= 2,
        "the channels spread over the nodes: {per_node:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (victim_pid, _) = per_node
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(p, n)| (*p, *n))
        .unwrap();
    let victim = nodes
        .iter()
        .position(|n| n.child.id() == victim_pid)
        .unwrap();
    let theirs: Vec<usize> = (0..CHANNELS)
        .filter(|i| pid_of(&held[*i]) == victim_pid)
        .collect();
    let killed = Instant::now();
    nodes[victim].child.kill().unwrap(); // SIGKILL
    let _ = nodes[victim].child.wait();
    let deadline = killed + Duration::from_secs(20);
    let takeover = loop {
        let h = holders(store.clone()).await;
        if theirs
            .iter()
            .all(|i| h[*i].as_deref().is_some_and(|x| pid_of(x) != victim_pid))
        {
            break killed.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "channels of the killed node not taken over: {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // TTL 3 s, the others try every TTL/3, plus a little for a busy machine.
    assert!(
        takeover < Duration::from_secs(8),
        "takeover took {takeover:?}"
    );
    eprintln!(
        "takeover after kill -9 of a node with {} channels: {takeover:?}",
        theirs.len()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = writer.join().unwrap();
    // Every message gets exactly one outcome.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = store.ledger(None).await.unwrap();
        if rows.len() >= sent {
            let ids: std::collections::BTreeSet<&str> = rows
                .iter()
                .map(|r| r.message_id.as_deref().unwrap_or(""))
                .collect();
            assert_eq!(rows.len(), sent, "one ledger row per message");
            assert_eq!(ids.len(), sent, "no message twice");
            assert!(rows.iter().all(|r| r.outcome == "created"), "all created");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {sent} messages have an outcome",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        store.count(intake_store::Table::Tickets).await.unwrap(),
        sent as i64
    );
    let mut in_cur = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: usize = roots
            .iter()
            .map(|r| std::fs::read_dir(r.join("new")).unwrap().count())
            .sum();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} messages never marked read"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for r in &roots {
        in_cur += std::fs::read_dir(r.join("cur")).unwrap().count();
    }
    assert_eq!(in_cur, sent, "each message moved to cur/ once");
}

/// Benchmark of issue 12 (run on demand: `cargo nextest run -p intake --test e2e
/// --run-ignored only bench_idle_rss`): the resident memory of one idle node with 1,000
/// channels (Maildir, polling every 60 s), in the test binary's build of `intake`. Numbers in
/// docs/BENCHMARKS.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_idle_rss_with_1000_channels() {
    let dir = tempfile::tempdir().unwrap();
    // Idle RSS with 1,000 channels (Maildir, polling every 60 s).
    let mut cfg = String::new();
    for i in 0..1000 {
        let root = dir.path().join(format!("m{i}"));
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        cfg += &format!(
            "[[channel]]\nname = \"c{i}\"\nproject = \"HELP\"\nprotocol = \"maildir\"\npath = \"{}\"\nmode = \"poll\"\npoll_seconds = 60\n",
            root.display()
        );
    }
    let file = dir.path().join("intake.toml");
    std::fs::write(&file, cfg).unwrap();
    let db = TestDb::sqlite();
    let node = Node::start(
        &db.url,
        Some(&file),
        &[],
        &[("INTAKE_SECRET_KEY", TEST_KEY)],
    )
    .await;
    let store = intake_store::Store::connect(&db.url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let held: i64 = {
            let mut n = 0;
            for i in (0..1000).step_by(100) {
                n += i64::from(
                    store
                        .lease_holder(&format!("c{i}"))
                        .await
                        .unwrap()
                        .is_some(),
                );
            }
            n
        };
        if held == 10 {
            break;
        }
        assert!(Instant::now() < deadline, "channels did not start");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(20)).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.child.id())).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap()
        .to_string();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap()
        .to_string();
    eprintln!("BENCH idle node with 1000 channels: {rss}; {hwm}");
}

/// RC13 over the API: a browser flow started on node A (`POST /api/integrations/idp/authorize`)
/// is finished by the callback on node B (two `intake serve` on one PostgreSQL database, the
/// token endpoint a local fake that checks the code and that a PKCE verifier is sent); A then
/// reports the flow done; the same `state` again, or an unknown one, is refused; no secret in
/// any answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rc13_a_browser_flow_started_on_node_a_is_finished_by_the_callback_on_node_b() {
    use wiremock::matchers::{body_string_contains, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let idp = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("code=CODE-1"))
        .and(body_string_contains("code_verifier="))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "token_type": "Bearer", "expires_in": 3599,
            "access_token": "AT-API-SECRET-1", "refresh_token": "RT-API-SECRET-1"
        })))
        .expect(1)
        .mount(&idp)
        .await;
    let db = TestDb::postgres().await;
    create_admin(&db.url, "alice", PASSWORD);
    let token = admin_token(&db.url, "alice");
    let a = Node::start(&db.url, None, &[], &node_env()).await;
    let b = Node::start(&db.url, None, &[], &node_env()).await;
    let c = reqwest::Client::new();
    let mut answers = String::new();
    let r = c
        .post(a.url("/api/integrations"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "name": "idp", "provider": "custom", "client_id": "client-1",
            "client_secret": "CLIENT-SECRET-VALUE", "grant": "authorization_code",
            "authorize_url": format!("{}/authorize", idp.uri()),
            "token_url": format!("{}/token", idp.uri()),
            "scopes": ["openid", "offline_access", "mail"]
        }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 201, "{text}");
    answers += &text;
    // Node B must know the integration before the browser comes back to it.
    b.wait_logged_any(
        "configuration loaded from the database",
        Duration::from_secs(5),
    )
    .await;
    let r = c
        .post(a.url("/api/integrations/idp/authorize"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"mailbox": "ann@example.com", "flow": "browser"}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    answers += &text;
    let started: serde_json::Value = serde_json::from_str(&text).unwrap();
    let flow_id = started["flow_id"].as_str().unwrap().to_string();
    assert!(
        started["url"].as_str().unwrap().contains("code_challenge="),
        "{started}"
    );
    assert!(
        started["redirect_uri"]
            .as_str()
            .unwrap()
            .ends_with("/oauth/callback")
    );
    let flow = |node: &Node| {
        let rq = c
            .get(node.url(&format!("/api/flows/{flow_id}")))
            .bearer_auth(&token);
        async move { rq.send().await.unwrap().text().await.unwrap() }
    };
    let pending = flow(&b).await;
    assert!(pending.contains("pending"), "{pending}");
    // The browser comes back to node B (no credentials: the state is the credential).
    let r = c
        .get(b.url(&format!("/oauth/callback?state={flow_id}&code=CODE-1")))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("ann@example.com"), "{text}");
    let done = flow(&a).await;
    answers += &done;
    let v: serde_json::Value = serde_json::from_str(&done).unwrap();
    assert_eq!(v["state"], "done", "{v}");
    assert_eq!(v["mailbox"], "ann@example.com");
    assert_eq!(v["integration"], "idp");
    // Reused and unknown states are refused; the provider saw exactly one exchange.
    for state in [flow_id.as_str(), "not-a-state"] {
        let r = c
            .get(a.url(&format!("/oauth/callback?state={state}&code=CODE-1")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "state {state}");
        answers += &r.text().await.unwrap();
    }
    let r = c
        .get(a.url("/api/flows/not-a-state"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    for secret in ["AT-API-SECRET-1", "RT-API-SECRET-1", "CLIENT-SECRET-VALUE"] {
        assert!(!answers.contains(secret), "{secret} in an answer");
    }
    idp.verify().await;
}

/// POST `path` with a JSON body and the bearer token; (status, body text).
async fn post_json(
    c: &reqwest::Client,
    url: String,
    token: &str,
    body: serde_json::Value,
) -> (StatusCode, String) {
    let r = c
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.text().await.unwrap())
}

/// Poll `GET /api/flows/{id}` on `node` until it is no longer pending.
async fn wait_flow(
    c: &reqwest::Client,
    node: &Node,
    token: &str,
    flow_id: &str,
    within: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let v: serde_json::Value = c
            .get(node.url(&format!("/api/flows/{flow_id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["state"] != "pending" {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "flow {flow_id} still pending after {within:?}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The device flow over the API against the real OAuth server (oidc-provider), on two nodes of
/// one PostgreSQL database: node A answers the user code at once and polls in the background;
/// node B reports the flow pending, then — after the user approves at the provider — done, with
/// the document of `intake authorize --json` (username, audience, scopes, warnings, tokens);
/// the token is stored for the mailbox. A second flow the user denies ends `failed` with the
/// provider's error decoded. No answer carries the client secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_flow_over_the_api_polls_in_the_background_and_any_node_reports_it() {
    let Some(idp) = intake_testkit::idp::Idp::start_or_skip(
        "device_flow_over_the_api_polls_in_the_background_and_any_node_reports_it",
    ) else {
        return;
    };
    let db = TestDb::postgres().await;
    create_admin(&db.url, "alice", PASSWORD);
    let token = admin_token(&db.url, "alice");
    let a = Node::start(&db.url, None, &[], &node_env()).await;
    let b = Node::start(&db.url, None, &[], &node_env()).await;
    let c = reqwest::Client::new();
    let mut answers = String::new();
    let (status, text) = post_json(
        &c,
        a.url("/api/integrations"),
        &token,
        serde_json::json!({
            "name": "idp", "provider": "custom", "client_id": idp.post_client_id,
            "client_secret": idp.client_secret, "grant": "device_code",
            "authorize_url": idp.authorization_endpoint(),
            "token_url": idp.token_endpoint(),
            "device_authorization_url": idp.device_authorization_endpoint(),
            "scopes": ["openid", "email", "offline_access", "mail"]
        }),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    answers += &text;
    b.wait_logged_any(
        "configuration loaded from the database",
        Duration::from_secs(5),
    )
    .await;

    let started_at = Instant::now();
    let (status, text) = post_json(
        &c,
        a.url("/api/integrations/idp/authorize"),
        &token,
        serde_json::json!({"mailbox": "dave@example.com", "flow": "device"}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(
        started_at.elapsed() < Duration::from_secs(5),
        "the answer does not wait for the user"
    );
    answers += &text;
    let started: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(started["flow"], "device", "{started}");
    let flow_id = started["flow_id"].as_str().unwrap().to_string();
    let user_code = started["user_code"].as_str().unwrap().to_string();
    assert!(
        started["verification_uri"]
            .as_str()
            .unwrap()
            .starts_with(&idp.issuer),
        "{started}"
    );
    assert!(started["expires_in"].as_i64().unwrap() > 0, "{started}");
    let pending: serde_json::Value = c
        .get(b.url(&format!("/api/flows/{flow_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pending["state"], "pending", "{pending}");
    assert_eq!(pending["flow"], "device");
    assert_eq!(pending["mailbox"], "dave@example.com");

    // The user approves at the provider; node A's background task sees it; node B reports it.
    idp.approve_device(&user_code, "dave@example.com")
        .await
        .unwrap();
    let done = wait_flow(&c, &b, &token, &flow_id, Duration::from_secs(30)).await;
    answers += &done.to_string();
    assert_eq!(done["state"], "done", "{done}");
    let auth = &done["authorized"];
    assert_eq!(auth["integration"], "idp", "{done}");
    assert_eq!(auth["mailbox"], "dave@example.com", "{done}");
    assert_eq!(auth["username"], "dave@example.com", "{done}");
    assert!(auth["warnings"].is_array(), "{done}");
    assert_eq!(auth["tokens"].as_array().unwrap().len(), 1, "{done}");
    assert!(auth["expires_at"].as_i64().unwrap() > intake_store::now());
    let store = intake_store::Store::connect(&db.url).await.unwrap();
    let keys = intake_store::Keyring::from_base64(TEST_KEY, &[]).unwrap();
    let saved = store
        .tokens("")
        .load_token(&keys, "idp", "dave@example.com")
        .await
        .unwrap()
        .expect("the device flow's token is stored for the mailbox");
    assert_eq!(saved.identity.username.as_deref(), Some("dave@example.com"));

    // Denied: failed, with the provider's error decoded.
    let (status, text) = post_json(
        &c,
        b.url("/api/integrations/idp/authorize"),
        &token,
        serde_json::json!({"mailbox": "erin@example.com", "flow": "device"}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let started: serde_json::Value = serde_json::from_str(&text).unwrap();
    let denied_id = started["flow_id"].as_str().unwrap().to_string();
    idp.deny_device(started["user_code"].as_str().unwrap())
        .await
        .unwrap();
    let failed = wait_flow(&c, &a, &token, &denied_id, Duration::from_secs(30)).await;
    answers += &failed.to_string();
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "access_denied", "{failed}");
    assert!(failed["error"]["title"].is_string(), "{failed}");
    assert!(failed["error"]["fix"].is_string(), "{failed}");
    assert!(failed["authorized"].is_null(), "{failed}");

    // An unknown flow is refused.
    let (status, text) = post_json(
        &c,
        a.url("/api/integrations/idp/authorize"),
        &token,
        serde_json::json!({"mailbox": "dave@example.com", "flow": "carrier-pigeon"}),
    )
    .await;
    assert_eq!(status, 422, "{text}");
    assert!(
        !answers.contains(&idp.client_secret),
        "client secret in an answer"
    );
    assert!(
        !answers.contains(secrecy::ExposeSecret::expose_secret(
            &saved.tokens.access_token
        )),
        "access token in an answer"
    );
}

/// The API's authorize uses the mailbox's plan, like `intake authorize`: for a mailbox that a
/// Graph channel and an IMAP channel read (Microsoft, a fake login endpoint: no real Microsoft
/// can run here), one device sign-in gets the Exchange token and its refresh token is redeemed
/// for Graph; the browser flow asks consent for both resources, exchanges the code for the
/// Exchange token, then redeems for Graph. Both flows end `done` with two tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_authorize_signs_in_once_for_every_protocol_of_the_mailbox() {
    use base64::Engine as _;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};
    const TENANT: &str = "contoso.onmicrosoft.com";
    const USER: &str = "help@contoso.example";
    let jwt = |claims: serde_json::Value| {
        format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    };
    let exo = jwt(
        serde_json::json!({"aud": "https://outlook.office.com", "scp": "IMAP.AccessAsUser.All", "upn": USER, "tid": "t"}),
    );
    let graph = jwt(
        serde_json::json!({"aud": "https://graph.microsoft.com", "scp": "Mail.ReadWrite", "upn": USER, "tid": "t"}),
    );
    let id_token = jwt(serde_json::json!({"preferred_username": USER, "tid": "t"}));
    let login = MockServer::start().await;
    let grants = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = grants.clone();
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/devicecode")))
        .respond_with(move |r: &Request| {
            let form: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(&r.body).into_owned().collect();
            seen.lock().unwrap().push(format!(
                "devicecode {}",
                form.get("scope").cloned().unwrap_or_default()
            ));
            ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "device_code": "DC-API", "user_code": "WXYZ-1234",
                "verification_uri": "https://microsoft.com/devicelogin", "expires_in": 900, "interval": 1
            }))
        })
        .mount(&login)
        .await;
    let seen = grants.clone();
    let (exo_t, graph_t, idt) = (exo.clone(), graph.clone(), id_token.clone());
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .respond_with(move |r: &Request| {
            let form: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(&r.body).into_owned().collect();
            let grant = form.get("grant_type").cloned().unwrap_or_default();
            let scope = form.get("scope").cloned().unwrap_or_default();
            seen.lock().unwrap().push(format!("{grant} {scope}"));
            // The device-code poll and the code exchange: the Exchange token (the scopes were
            // asked at the device endpoint and the authorize URL).
            if grant.ends_with("device_code") || grant == "authorization_code" {
                ResponseTemplate::new(200).set_body_json(serde_json::json!({
                    "token_type": "Bearer", "expires_in": 3600,
                    "scope": "https://outlook.office.com/IMAP.AccessAsUser.All",
                    "access_token": exo_t, "refresh_token": "RT-EXO-SECRET", "id_token": idt}))
            } else if grant == "refresh_token" && scope.contains("Mail.ReadWrite") {
                ResponseTemplate::new(200).set_body_json(serde_json::json!({
                    "token_type": "Bearer", "expires_in": 3600, "scope": "Mail.ReadWrite",
                    "access_token": graph_t, "refresh_token": "RT-GRAPH-SECRET"}))
            } else {
                ResponseTemplate::new(400).set_body_json(serde_json::json!({
                    "error": "invalid_scope",
                    "error_description": format!("AADSTS70011: unexpected {grant} {scope}")}))
            }
        })
        .mount(&login)
        .await;
    let db = TestDb::sqlite();
    create_admin(&db.url, "alice", PASSWORD);
    let token = admin_token(&db.url, "alice");
    let node = Node::start(&db.url, None, &[], &node_env()).await;
    let c = reqwest::Client::new();
    let (status, text) = post_json(
        &c,
        node.url("/api/integrations"),
        &token,
        serde_json::json!({
            "name": "m365", "provider": "microsoft", "tenant": TENANT,
            "client_id": "11111111-2222-3333-4444-555555555555",
            "client_secret": "CS-API-VERY-SECRET", "client_secret_expires": "2099-01-01",
            "authority_url": login.uri()
        }),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    for body in [
        // Channels in name order: the IMAP one first, so the sign-in is for Exchange.
        serde_json::json!({"name": "a-imap", "project": "IM", "protocol": "imap",
            "host": "127.0.0.1", "port": 9, "tls": "none", "mailbox": USER, "auth": "oauth:m365"}),
        serde_json::json!({"name": "b-graph", "project": "GR", "protocol": "graph",
            "mailbox": USER, "auth": "oauth:m365"}),
    ] {
        let name = body["name"].as_str().unwrap().to_string();
        let (status, text) = post_json(&c, node.url("/api/channels"), &token, body).await;
        assert_eq!(status, 201, "{text}");
        // Paused, so that no channel worker asks for a token while the flows run (the plan
        // still counts paused channels).
        let (status, text) = post_json(
            &c,
            node.url(&format!("/api/channels/{name}/pause")),
            &token,
            serde_json::json!({}),
        )
        .await;
        assert_eq!(status, 200, "{text}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    grants.lock().unwrap().clear();

    let (status, text) = post_json(
        &c,
        node.url("/api/integrations/m365/authorize"),
        &token,
        serde_json::json!({"mailbox": USER, "flow": "device"}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let started: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(started["user_code"], "WXYZ-1234", "{started}");
    let done = wait_flow(
        &c,
        &node,
        &token,
        started["flow_id"].as_str().unwrap(),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(done["state"], "done", "{done}");
    let tokens = done["authorized"]["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{done}");
    assert_eq!(
        tokens[0]["protocols"],
        serde_json::json!(["imap"]),
        "{done}"
    );
    assert_eq!(tokens[0]["resource"], "exo", "{done}");
    assert_eq!(
        tokens[1]["protocols"],
        serde_json::json!(["graph"]),
        "{done}"
    );
    assert_eq!(
        tokens[1]["audience"], "https://graph.microsoft.com",
        "{done}"
    );
    let seen_device = grants.lock().unwrap().clone();
    assert_eq!(
        seen_device.len(),
        3,
        "one sign-in (device authorization, one poll), one redemption: {seen_device:?}"
    );
    assert!(
        seen_device[0].starts_with("devicecode")
            && seen_device[0].contains("IMAP.AccessAsUser.All")
            && !seen_device[0].contains("Mail.ReadWrite"),
        "the sign-in asks for the Exchange resource: {seen_device:?}"
    );
    assert!(seen_device[1].contains("device_code"), "{seen_device:?}");
    assert!(
        seen_device[2].starts_with("refresh_token") && seen_device[2].contains("Mail.ReadWrite"),
        "{seen_device:?}"
    );
    let store = intake_store::Store::connect(&db.url).await.unwrap();
    let keys = intake_store::Keyring::from_base64(TEST_KEY, &[]).unwrap();
    for resource in ["exo", "graph"] {
        assert!(
            store
                .tokens(resource)
                .load_token(&keys, "m365", USER)
                .await
                .unwrap()
                .is_some(),
            "{resource} token stored"
        );
    }

    // The browser flow: consent for both resources, the code for Exchange, redeemed for Graph.
    grants.lock().unwrap().clear();
    let (status, text) = post_json(
        &c,
        node.url("/api/integrations/m365/authorize"),
        &token,
        serde_json::json!({"mailbox": USER, "flow": "browser"}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let started: serde_json::Value = serde_json::from_str(&text).unwrap();
    let url = url::Url::parse(started["url"].as_str().unwrap()).unwrap();
    let scope: String = url
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.to_string())
        .unwrap();
    assert!(
        scope.contains("IMAP.AccessAsUser.All") && scope.contains("Mail.ReadWrite"),
        "consent for both resources: {scope}"
    );
    let flow_id = started["flow_id"].as_str().unwrap().to_string();
    let r = c
        .get(node.url(&format!("/oauth/callback?state={flow_id}&code=CODE-API")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let done = wait_flow(&c, &node, &token, &flow_id, Duration::from_secs(5)).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(
        done["authorized"]["tokens"].as_array().unwrap().len(),
        2,
        "{done}"
    );
    let seen_browser = grants.lock().unwrap().clone();
    assert_eq!(seen_browser.len(), 2, "{seen_browser:?}");
    assert!(
        seen_browser[0].starts_with("authorization_code"),
        "{seen_browser:?}"
    );
    assert!(
        seen_browser[1].starts_with("refresh_token") && seen_browser[1].contains("Mail.ReadWrite"),
        "{seen_browser:?}"
    );
    let all = format!("{started}{done}");
    for secret in [
        "CS-API-VERY-SECRET",
        "RT-EXO-SECRET",
        "RT-GRAPH-SECRET",
        &exo,
        &graph,
    ] {
        assert!(!all.contains(secret), "a secret in an answer");
    }
}

/// Write `text` as a new message into the Maildir at `root`.
fn drop_raw(root: &Path, name: &str, bytes: &[u8]) {
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let tmp = root.join("tmp").join(name);
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, root.join("new").join(format!("{name}.M1P1.host"))).unwrap();
}

/// `POST /api/quarantine/{id}/retry` on SQLite and PostgreSQL: a message quarantined because
/// it was over the channel's `max_message_bytes` is retried while the limit still holds (it
/// stays quarantined, same entry, new reason), and after the limit is raised (it becomes one
/// ticket; the entry is `retried` with the ticket's key and leaves the quarantine list; the
/// audit log and the mail log say who). Five retries of another entry at once: exactly one
/// makes a ticket, the others find nothing to retry. Junk stays quarantined. A retried entry
/// cannot be retried again.
async fn quarantine_retry_story(db_url: &str) {
    create_admin(db_url, "alice", PASSWORD);
    let token = admin_token(db_url, "alice");
    let node = Node::start(db_url, None, &[], &node_env()).await;
    let store = intake_store::Store::connect(db_url).await.unwrap();
    let c = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    let big = |n: usize| {
        let mut m = mail(&format!("big{n}@x"), &format!("Big report {n}")).into_bytes();
        m.extend(std::iter::repeat_n(b'x', 3000));
        m.extend(b"\r\n");
        m
    };
    drop_raw(&root, "big1", &big(1));
    drop_raw(&root, "big2", &big(2));
    let junk: Vec<u8> = (0..2048u32).map(|i| (i * 31 % 256) as u8).collect();
    drop_raw(&root, "junk", &junk);
    let (status, text) = post_json(
        &c,
        node.url("/api/channels"),
        &token,
        serde_json::json!({
            "name": "box", "project": "HELP", "protocol": "maildir",
            "path": root.display().to_string(), "mode": "poll", "poll_seconds": 1,
            "after": "mark-read", "rules": {"max_message_bytes": 2000}
        }),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let get = |path: String| {
        let rq = c.get(node.url(&path)).bearer_auth(&token);
        async move {
            rq.send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let q = loop {
        let q = get("/api/quarantine".into()).await;
        if q["total"] == 3 {
            break q;
        }
        assert!(Instant::now() < deadline, "3 quarantined: {q}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The two big messages (quarantined before their headers were read: no Message-ID) and
    // the junk, told apart by size.
    let items = q["items"].as_array().unwrap();
    let big: Vec<i64> = items
        .iter()
        .filter(|i| i["raw_size"].as_i64().unwrap() > 3000)
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(big.len(), 2, "{q}");
    let (big1, big2) = (big[0], big[1]);
    let junk_id = items
        .iter()
        .find(|i| i["raw_size"] == junk.len())
        .map(|i| i["id"].as_i64().unwrap())
        .unwrap();
    let retry = |id: i64| {
        post_json(
            &c,
            node.url(&format!("/api/quarantine/{id}/retry")),
            &token,
            serde_json::json!({}),
        )
    };

    // Still over the limit: stays quarantined, same entry, the new reason.
    let (status, text) = retry(big1).await;
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["result"], "quarantined", "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("exceeds the limit of 2000"),
        "{v}"
    );
    let (status, text) = retry(junk_id).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["result"],
        "quarantined"
    );
    assert_eq!(get("/api/quarantine".into()).await["total"], 3);
    assert_eq!(store.count(intake_store::Table::Tickets).await.unwrap(), 0);

    // Raise the limit; the node reloads its configuration within a second or two.
    let r = c
        .patch(node.url("/api/channels/box"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"rules": {"max_message_bytes": 100000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    let created = loop {
        let (status, text) = retry(big1).await;
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if v["result"] == "created" {
            break v;
        }
        assert_eq!(v["result"], "quarantined", "{v}");
        assert!(
            Instant::now() < deadline,
            "the raised limit never applied: {v}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let key = created["ticket_key"].as_str().unwrap().to_string();
    let t = get(format!("/api/tickets/{key}")).await;
    assert!(
        t["summary"].as_str().unwrap().starts_with("Big report"),
        "{t}"
    );
    assert_eq!(store.count(intake_store::Table::Tickets).await.unwrap(), 1);
    let (status, _) = retry(big1).await;
    assert_eq!(status, 404, "a retried entry is not retried again");

    // Five retries at once: one ticket.
    let racing: Vec<_> = (0..5).map(|_| retry(big2)).collect();
    let answers = futures_util::future::join_all(racing).await;
    let ok: Vec<_> = answers.iter().filter(|(s, _)| *s == 200).collect();
    assert_eq!(ok.len(), 1, "exactly one retry applies: {answers:?}");
    assert!(ok[0].1.contains("\"created\""), "{answers:?}");
    assert!(
        answers.iter().all(|(s, _)| *s == 200 || *s == 404),
        "{answers:?}"
    );
    assert_eq!(store.count(intake_store::Table::Tickets).await.unwrap(), 2);

    let q = get("/api/quarantine".into()).await;
    assert_eq!(q["total"], 1, "only the junk stays: {q}");
    assert_eq!(q["items"][0]["id"], junk_id);
    let rows = store.ledger(Some("box")).await.unwrap();
    let retried: Vec<_> = rows.iter().filter(|r| r.outcome == "retried").collect();
    assert_eq!(retried.len(), 2, "{rows:?}");
    assert!(
        retried
            .iter()
            .any(|r| r.ticket_key.as_deref() == Some(key.as_str()))
    );
    let created_rows = rows.iter().filter(|r| r.outcome == "created").count();
    assert_eq!(created_rows, 2, "one outcome per message: {rows:?}");
    let audit = get("/api/audit".into()).await;
    let retried_by_alice = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "quarantine_retried" && e["actor"] == "alice")
        .count();
    assert!(retried_by_alice >= 4, "{audit}");
    let status = get("/api/channels/box/status".into()).await;
    assert_eq!(status["backlog"], 0, "drained: {status}");
    assert!(status["backlog_at"].as_i64().unwrap() > 0, "{status}");
    let log = get("/api/log?kind=retry_quarantined&per_page=50".into()).await;
    assert!(log["total"].as_i64().unwrap() >= 4, "{log}");
    let (status, _) = retry(999_999).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_retry_reapplies_exactly_once_on_sqlite() {
    let db = TestDb::sqlite();
    quarantine_retry_story(&db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_retry_reapplies_exactly_once_on_postgres() {
    let db = TestDb::postgres().await;
    quarantine_retry_story(&db.url).await;
}

/// One Server-Sent Event of the channel test stream: (event, data, when it arrived).
type Sse = (String, serde_json::Value, Instant);

/// Read the Server-Sent Events of `r` until the stream ends.
async fn read_sse(mut r: reqwest::Response) -> Vec<Sse> {
    let mut out = Vec::new();
    let mut buf = String::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        let at = Instant::now();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if !event.is_empty() {
                out.push((event, serde_json::from_str(&data).unwrap(), at));
            }
        }
    }
    out
}

/// The streamed channel test sends one event per stage as the stage finishes: against a
/// server that accepts the connection and never greets, `dns` and `tcp` arrive at once, the
/// `login` failure only when its timeout (2 s) has run out, and then the whole document (with
/// the findings). A Maildir channel streams its `counts` stage and a passing result; an unknown
/// channel ends with an `error` event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_test_streams_one_event_per_stage_as_it_finishes() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = silent.accept().await {
            keep.lock().await.push(sock);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    drop_mail(&root, 1);
    let db = TestDb::sqlite();
    create_admin(&db.url, "alice", PASSWORD);
    let token = admin_token(&db.url, "alice");
    let mut env = node_env();
    env.push(("SSE_TEST_PW", "not-a-real-password"));
    let node = Node::start(&db.url, None, &[], &env).await;
    let c = reqwest::Client::new();
    for body in [
        serde_json::json!({"name": "local", "project": "HELP", "protocol": "maildir",
            "path": root.display().to_string(), "mode": "poll", "poll_seconds": 1}),
        serde_json::json!({"name": "mute", "project": "HELP", "host": "127.0.0.1", "port": port,
            "tls": "none", "mailbox": "a@example.test", "auth": "password:env:SSE_TEST_PW",
            "timeout_seconds": 2}),
    ] {
        let (status, text) = post_json(&c, node.url("/api/channels"), &token, body).await;
        assert_eq!(status, 201, "{text}");
    }
    let stream = |name: &str| {
        let rq = c
            .get(node.url(&format!("/api/channels/{name}/test/stream")))
            .bearer_auth(&token);
        async move {
            let r = rq.send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert!(
                r.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/event-stream")
            );
            r
        }
    };
    let started = Instant::now();
    let events = read_sse(stream("mute").await).await;
    let names: Vec<String> = events
        .iter()
        .map(|(e, d, _)| match e.as_str() {
            "stage" => format!("{}:{}", d["stage"].as_str().unwrap(), d["ok"]),
            other => other.to_string(),
        })
        .collect();
    assert_eq!(
        names,
        ["dns:true", "tcp:true", "login:false", "result"],
        "{events:?}"
    );
    let at = |i: usize| events[i].2.duration_since(started);
    assert!(
        at(1) < Duration::from_millis(1500),
        "tcp arrived when it finished, not with the end: {:?}",
        at(1)
    );
    assert!(
        at(2) >= Duration::from_millis(1800) && at(2) - at(1) >= Duration::from_millis(1500),
        "login failed only when its 2 s ran out: tcp at {:?}, login at {:?}",
        at(1),
        at(2)
    );
    // Each stage says how long it took: the login waited out its 2 s.
    let login_ms = events[2].1["ms"].as_u64().unwrap();
    assert!((1500..10_000).contains(&login_ms), "{events:?}");
    assert!(events[1].1["ms"].as_u64().unwrap() < 1500, "{events:?}");
    let result = &events[3].1;
    assert_eq!(result["channel"], "mute");
    assert_eq!(result["ok"], false);
    assert_eq!(result["stages"].as_array().unwrap().len(), 3, "{result}");
    assert!(
        !result["findings"].as_array().unwrap().is_empty(),
        "{result}"
    );

    let events = read_sse(stream("local").await).await;
    let last = events.last().unwrap();
    assert_eq!(last.0, "result", "{events:?}");
    assert_eq!(last.1["ok"], true, "{events:?}");
    let stages: Vec<_> = events.iter().filter(|(e, _, _)| e == "stage").collect();
    assert_eq!(
        stages.len(),
        last.1["stages"].as_array().unwrap().len(),
        "one event per stage of the document: {events:?}"
    );
    let events = read_sse(stream("nope").await).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "error");
    assert_eq!(events[0].1["error"], "not_found");
}

/// The whole path through the API alone, against the real OAuth server (oidc-provider) and a
/// real IMAP server (Dovecot, which checks every token at the OAuth server's introspection
/// endpoint): create an integration and an IMAP channel, authorize the mailbox with the device
/// flow, test the channel (every stage passes, login with the new token), deliver a message
/// with an attachment to Dovecot, see the ticket, and download the attachment byte-identical.
/// Every JSON answer on the way validates against the OpenAPI document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_path_over_the_api_oauth_server_and_dovecot_to_a_downloaded_attachment() {
    use base64::Engine as _;
    use intake_testkit::dovecot::{Dovecot, DovecotOptions};
    const USER: &str = "frank@example.com";
    let Some(idp) = intake_testkit::idp::Idp::start_or_skip("full_path_over_the_api") else {
        return;
    };
    let Some(dc) = Dovecot::start_or_skip(
        "full_path_over_the_api",
        &DovecotOptions::with_users(&[(USER, "unused")]).introspect(&idp),
    ) else {
        return;
    };
    let db = TestDb::sqlite();
    create_admin(&db.url, "alice", PASSWORD);
    let token = admin_token(&db.url, "alice");
    let node = Node::start(&db.url, None, &[], &node_env()).await;
    let schemas = Schemas::load(&node, &token).await;
    let c = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        checked(
            &schemas,
            c.post(node.url(path)).bearer_auth(&token).json(&body),
        )
    };
    let get = |path: String| checked(&schemas, c.get(node.url(&path)).bearer_auth(&token));

    let (status, text) = post(
        "/api/integrations",
        serde_json::json!({
            "name": "idp", "provider": "custom", "client_id": idp.post_client_id,
            "client_secret": idp.client_secret, "grant": "device_code",
            "authorize_url": idp.authorization_endpoint(), "token_url": idp.token_endpoint(),
            "device_authorization_url": idp.device_authorization_endpoint(),
            "scopes": ["openid", "email", "offline_access", "mail"]
        }),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let (status, text) = post(
        "/api/channels",
        serde_json::json!({
            "name": "inbox", "project": "HELP", "protocol": "imap", "host": "127.0.0.1",
            "port": dc.imap_port, "tls": "none", "mailbox": USER, "auth": "oauth:idp",
            "mode": "poll", "poll_seconds": 1, "timeout_seconds": 10
        }),
    )
    .await;
    assert_eq!(status, 201, "{text}");

    // Authorize (device flow), approved at the OAuth server as the mailbox's user.
    let (status, text) = post(
        "/api/integrations/idp/authorize",
        serde_json::json!({"mailbox": USER, "flow": "device"}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let started: serde_json::Value = serde_json::from_str(&text).unwrap();
    let flow_id = started["flow_id"].as_str().unwrap().to_string();
    idp.approve_device(started["user_code"].as_str().unwrap(), USER)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let (status, text) = get(format!("/api/flows/{flow_id}")).await;
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if v["state"] != "pending" {
            break v;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["authorized"]["username"], USER, "{done}");

    // Test: every stage passes, the login with the token just obtained.
    let (status, text) = post("/api/channels/inbox/test", serde_json::json!({})).await;
    assert_eq!(status, 200, "{text}");
    let test: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(test["ok"], true, "{test}\n{}", dc.log());
    let stages: Vec<&str> = test["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    for want in ["token", "dns", "tcp", "login", "folder", "counts"] {
        assert!(stages.contains(&want), "{want} in {stages:?}");
    }

    // Deliver a message with an attachment; the channel makes it a ticket.
    let blob: Vec<u8> = (0..30_000u32).map(|i| (i * 7919 % 253) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&blob);
    let wrapped: String = b64
        .as_bytes()
        .chunks(76)
        .map(|l| format!("{}\r\n", std::str::from_utf8(l).unwrap()))
        .collect();
    dc.deliver(
        USER,
        format!(
            "From: Gina <gina@example.org>\r\nTo: {USER}\r\nSubject: Scanner jammed\r\n\
             Message-ID: <full-path@x>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n\
             The scanner ate page four.\r\n--b1\r\nContent-Type: application/pdf\r\n\
             Content-Disposition: attachment; filename=\"scan.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{wrapped}--b1--\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let key = loop {
        let (status, text) = get("/api/tickets?q=scanner".into()).await;
        assert_eq!(status, 200, "{text}");
        let page: serde_json::Value = serde_json::from_str(&text).unwrap();
        if let Some(k) = page["items"][0]["key"].as_str() {
            break k.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no ticket: {page}\n{}",
            node.stderr.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let (status, text) = get(format!("/api/tickets/{key}")).await;
    assert_eq!(status, 200, "{text}");
    let t: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(t["summary"], "Scanner jammed", "{t}");
    let att = t["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["filename"] == "scan.pdf")
        .unwrap_or_else(|| panic!("{t}"))
        .clone();
    let r = c
        .get(node.url(&format!(
            "/api/tickets/{key}/attachments/{}",
            att["id"].as_i64().unwrap()
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        blob.as_slice(),
        "byte-identical"
    );
    let (status, text) = get("/api/channels/inbox/status".into()).await;
    assert_eq!(status, 200, "{text}");
    let st: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(st["counts"]["created"], 1, "{st}");
    assert_eq!(st["backlog"], 0, "{st}");
}
