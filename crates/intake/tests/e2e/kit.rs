//! Helpers shared by the doctor's end-to-end tests (diagnose.rs, rootcause.rs): configuration
//! snippets, `intake doctor --json` and its findings, a Microsoft Graph fake (folders with
//! localized display names, a delta listing, errors), a fake token endpoint, tokens with
//! claims, small proxies that refuse, answer or stay silent, and a TLS listener with a
//! certificate for another host.

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::intake;

pub const TENANT: &str = "contoso.onmicrosoft.com";
pub const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
pub const SECRET: &str = "CS-doctor-very-secret-1234";

/// An unsigned JWT with these claims (Intake reads claims for diagnosis only).
pub fn jwt(claims: serde_json::Value) -> String {
    format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

pub fn token_path() -> String {
    format!("/{TENANT}/oauth2/v2.0/token")
}

/// Write `intake.toml` in `dir`; its path.
pub fn write(dir: &std::path::Path, text: &str) -> String {
    let p = dir.join("intake.toml");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// `intake ARGS` with the key and the client secret in the environment → (exit code, stdout,
/// stderr).
pub fn intake_with(
    cfg: &str,
    db: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut c = intake();
    c.args(["--config", cfg, "--db", db])
        .args(args)
        .env("INTAKE_SECRET_KEY", KEY)
        .env("M365_SECRET", SECRET);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

/// `intake doctor --json` → (exit code, JSON, stdout + stderr as text).
pub fn doctor(cfg: &str, db: &str) -> (i32, serde_json::Value, String) {
    doctor_with(cfg, db, &[])
}

/// [`doctor`] with more environment variables.
pub fn doctor_with(cfg: &str, db: &str, env: &[(&str, &str)]) -> (i32, serde_json::Value, String) {
    let (code, stdout, stderr) = intake_with(cfg, db, &["doctor", "--json"], env);
    let v =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (code, v, format!("{stdout}\n{stderr}"))
}

/// Every finding of the report (channel and integration), as (code, severity).
pub fn codes(v: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for ch in v.as_array().unwrap() {
        let integration = ch["integration"]["findings"].as_array().cloned();
        for f in ch["findings"]
            .as_array()
            .unwrap()
            .iter()
            .chain(integration.iter().flatten())
        {
            out.push((
                f["code"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// The first finding with `code` (channel, then integration); panics when there is none.
pub fn finding<'a>(v: &'a serde_json::Value, code: &str) -> &'a serde_json::Value {
    for ch in v.as_array().unwrap() {
        for list in [&ch["findings"], &ch["integration"]["findings"]] {
            if let Some(f) = list
                .as_array()
                .and_then(|l| l.iter().find(|f| f["code"] == code))
            {
                return f;
            }
        }
    }
    panic!("no {code} finding in {v}")
}

/// A Microsoft integration `m365` on `authority` (a fake login host).
pub fn integration(authority: &str, extra: &str) -> String {
    format!(
        "[[integration]]\nname = \"m365\"\nprovider = \"microsoft\"\ntenant = \"{TENANT}\"\n\
         client_id = \"11111111-2222-3333-4444-555555555555\"\nauthority_url = \"{authority}\"\n{extra}\n"
    )
}

/// A Graph channel `helpdesk` on `mailbox` through `m365`.
pub fn graph_channel(mailbox: &str, extra: &str) -> String {
    format!(
        "[[channel]]\nname = \"helpdesk\"\nproject = \"GR\"\nprotocol = \"graph\"\nmailbox = \"{mailbox}\"\n\
         auth = \"oauth:m365\"\ntimeout_seconds = 5\n{extra}\n"
    )
}

/// A folder of the Graph fake.
#[derive(Clone, Debug)]
pub struct FakeFolder {
    pub id: &'static str,
    pub name: &'static str,
    pub parent: Option<&'static str>,
    pub well_known: Option<&'static str>,
    pub total: u64,
}

/// A Graph fake for one mailbox: folder counts, folder listings (`mailFolders`,
/// `childFolders`, two per page), a delta listing of `messages`, their MIME, PATCH (mark
/// read). Only `Bearer {token}` is accepted; anything else is answered like Graph answers a
/// token of another audience. With `error` set, every request with the right token gets that
/// error (status, code, message).
#[derive(Clone)]
pub struct GraphFake {
    pub origin: String,
    pub mailbox: String,
    pub token: String,
    pub total: u64,
    pub messages: Vec<Vec<u8>>,
    pub folders: Vec<FakeFolder>,
    pub error: Option<(u16, &'static str, &'static str)>,
    pub patched: Arc<Mutex<usize>>,
}

fn not_found() -> ResponseTemplate {
    ResponseTemplate::new(404).set_body_json(serde_json::json!({"error": {
        "code": "ErrorItemNotFound", "message": "The specified object was not found in the store."}}))
}

impl GraphFake {
    fn folder_json(f: &FakeFolder, all: &[FakeFolder]) -> serde_json::Value {
        let children = all.iter().filter(|c| c.parent == Some(f.id)).count();
        serde_json::json!({"id": f.id, "displayName": f.name, "childFolderCount": children,
            "totalItemCount": f.total, "unreadItemCount": f.total})
    }

    /// `mailFolders` (parent `None`) or a folder's `childFolders`, two per page.
    fn page(&self, parent: Option<&str>, skip: usize, base_url: &str) -> ResponseTemplate {
        let all: Vec<_> = self.folders.iter().filter(|f| f.parent == parent).collect();
        let value: Vec<_> = all
            .iter()
            .skip(skip)
            .take(2)
            .map(|f| Self::folder_json(f, &self.folders))
            .collect();
        let mut body = serde_json::json!({ "value": value });
        if skip + 2 < all.len() {
            body["@odata.nextLink"] =
                serde_json::json!(format!("{}{base_url}?$skip={}", self.origin, skip + 2));
        }
        ResponseTemplate::new(200).set_body_json(body)
    }
}

impl wiremock::Respond for GraphFake {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let auth = req
            .headers
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if auth != format!("Bearer {}", self.token) {
            return ResponseTemplate::new(401).set_body_json(serde_json::json!({"error": {
                "code": "InvalidAuthenticationToken",
                "message": "Access token validation failure. Invalid audience."}}));
        }
        if let Some((status, code, message)) = self.error {
            return ResponseTemplate::new(status)
                .set_body_json(serde_json::json!({"error": {"code": code, "message": message}}));
        }
        let base = format!("/v1.0/users/{}", self.mailbox);
        let p = req.url.path().to_string();
        let skip: usize = req
            .url
            .query_pairs()
            .find(|(k, _)| k == "$skip")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        if p == format!("{base}/mailFolders") {
            return self.page(None, skip, &p);
        }
        if let Some(rest) = p.strip_prefix(&format!("{base}/mailFolders/"))
            && !rest.contains("/messages")
        {
            let (key, children) = match rest.strip_suffix("/childFolders") {
                Some(k) => (k, true),
                None => (rest, false),
            };
            let found = self
                .folders
                .iter()
                .find(|f| f.id == key || f.well_known.is_some_and(|w| w.eq_ignore_ascii_case(key)));
            return match (found, children) {
                (Some(f), true) => self.page(Some(f.id), skip, &p),
                (Some(f), false) => {
                    ResponseTemplate::new(200).set_body_json(Self::folder_json(f, &self.folders))
                }
                // Without folders, the inbox alone (counts), as before.
                (None, false) if key == "inbox" && self.folders.is_empty() => {
                    ResponseTemplate::new(200).set_body_json(serde_json::json!({
                        "id": "inbox-id", "totalItemCount": self.total, "unreadItemCount": self.total}))
                }
                _ => not_found(),
            };
        }
        if p == format!("{base}/mailFolders/inbox/messages/delta") {
            let value: Vec<_> = (0..self.messages.len())
                .map(|i| serde_json::json!({"id": format!("m{i}"), "isRead": false}))
                .collect();
            return ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "value": value,
                "@odata.deltaLink": format!("{}{base}/mailFolders/inbox/messages/delta?$deltatoken=x", self.origin)
            }));
        }
        if let Some(id) = p.strip_prefix(&format!("{base}/messages/")) {
            let i: usize = id
                .trim_end_matches("/$value")
                .trim_start_matches('m')
                .parse()
                .unwrap_or(usize::MAX);
            if i < self.messages.len() {
                if req.method.as_str() == "PATCH" {
                    *self.patched.lock().unwrap() += 1;
                    return ResponseTemplate::new(200)
                        .set_body_json(serde_json::json!({"id": id, "isRead": true}));
                }
                return ResponseTemplate::new(200)
                    .set_body_raw(self.messages[i].clone(), "message/rfc822");
            }
        }
        ResponseTemplate::new(404)
    }
}

/// A Graph fake for `mailbox` that accepts `token`, with `total` messages in the inbox and
/// `messages` to list.
pub async fn graph_fake(
    mailbox: &str,
    token: &str,
    total: u64,
    messages: Vec<Vec<u8>>,
) -> (MockServer, GraphFake) {
    graph_fake_with(mailbox, token, total, messages, Vec::new(), None).await
}

/// [`graph_fake`] with folders and an error for every request.
pub async fn graph_fake_with(
    mailbox: &str,
    token: &str,
    total: u64,
    messages: Vec<Vec<u8>>,
    folders: Vec<FakeFolder>,
    error: Option<(u16, &'static str, &'static str)>,
) -> (MockServer, GraphFake) {
    let server = MockServer::start().await;
    let fake = GraphFake {
        origin: server.uri(),
        mailbox: mailbox.to_string(),
        token: token.to_string(),
        total,
        messages,
        folders,
        error,
        patched: Arc::new(Mutex::new(0)),
    };
    Mock::given(path_regex("^/v1.0/"))
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    (server, fake)
}

/// Client credentials at a fake token endpoint, answering `body` (status 200 or an error).
pub async fn token_endpoint(status: u16, body: serde_json::Value) -> MockServer {
    let fake = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(token_path()))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(&fake)
        .await;
    // The doctor's `token` stage: any HTTP answer proves the login host is reachable.
    Mock::given(method("GET"))
        .and(path(token_path()))
        .respond_with(ResponseTemplate::new(405))
        .mount(&fake)
        .await;
    fake
}

/// An app-only Graph token (worldwide).
pub fn graph_app_token() -> String {
    jwt(
        serde_json::json!({"aud": "https://graph.microsoft.com", "roles": ["Mail.ReadWrite"], "tid": "t"}),
    )
}

/// A tiny HTTP proxy that answers every CONNECT with `status`.
pub async fn answering_proxy(status: &'static str) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            });
        }
    });
    port
}

/// A port nothing listens on.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Store an access token (and refresh token) for `integration`/`mailbox` under `resource`
/// (`exo`, `graph`, or `""` for providers with one resource), valid for 50 minutes, with the
/// claims `identity` describes (as `intake authorize` would have read them).
pub async fn seed_token(
    db: &str,
    integration: &str,
    mailbox: &str,
    resource: &str,
    access: &str,
    refresh: Option<&str>,
    identity: intake_core::token::TokenIdentity,
) {
    let store = intake_store::Store::connect(db).await.unwrap();
    let keys = intake_store::Keyring::from_base64(KEY, &[]).unwrap();
    let set = intake_core::token::TokenSet {
        access_token: secrecy::SecretString::from(access.to_string()),
        refresh_token: refresh.map(|r| secrecy::SecretString::from(r.to_string())),
        expires_at: intake_store::now() + 3000,
        scopes: identity.scopes.clone(),
        id_token: None,
    };
    store
        .tokens(resource)
        .save_token(&keys, integration, mailbox, &set, &identity)
        .await
        .unwrap();
    store.close().await;
}

/// One connection's script of a [`line_server`]: each line received → the reply (`None`
/// hangs up; a reply ending in `CLOSE` is sent, then the server hangs up).
pub type Session = Box<dyn FnMut(&str) -> Option<String> + Send>;

/// A scripted line-based server on 127.0.0.1 standing in for a mail server whose answers no
/// local server gives (Exchange Online's texts): sends `greeting`, then answers each line
/// with a fresh `session()` per connection. Returns its port and every line received.
pub async fn line_server(
    greeting: &'static str,
    session: fn() -> Session,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    use tokio::io::AsyncBufReadExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut script = session();
                let (r, mut w) = sock.into_split();
                let mut r = tokio::io::BufReader::new(r);
                if w.write_all(greeting.as_bytes()).await.is_err() {
                    return;
                }
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.trim_end_matches(['\r', '\n']).to_string();
                    log.lock().unwrap().push(l.clone());
                    let Some(reply) = script(&l) else { return };
                    let (text, close) = match reply.strip_suffix("CLOSE") {
                        Some(t) => (t.to_string(), true),
                        None => (reply, false),
                    };
                    if w.write_all(text.as_bytes()).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

/// A server (or proxy) that accepts connections and never answers: every connection is kept
/// open, silent, until the test ends.
pub async fn silent_server() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    port
}

/// A TLS server on 127.0.0.1 whose certificate (self-signed, generated with rcgen) is issued
/// for `wrong.example` only: returns its port and the certificate as PEM, to be trusted as
/// `ca_file`, so that the only thing wrong is the host name. It completes handshakes and
/// then closes.
pub async fn wrong_host_tls() -> (u16, String) {
    use std::sync::Arc as StdArc;
    intake_mail::init_crypto();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["wrong.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pem = cert.pem();
    let der = rustls_pki_types::CertificateDer::from(cert.der().to_vec());
    let key_der =
        rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("a private key");
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![der], key_der)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(StdArc::new(config));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(s).await;
            });
        }
    });
    (port, pem)
}

/// `intake run` (long-running) in the background; SIGKILLed when dropped, so a failing test
/// leaves no process behind. [`Running::stop`] sends SIGTERM and returns its stderr.
pub struct Running(Option<std::process::Child>);

impl Running {
    pub fn start(cfg: &str, db: &str) -> Running {
        // The database exists before the run, so that the tests' `intake log` never races it
        // through the migrations.
        let (code, _, stderr) = intake_with(cfg, db, &["log", "--json"], &[]);
        assert_eq!(code, 0, "{stderr}");
        let child = intake()
            .args(["--config", cfg, "--db", db, "run"])
            .env("INTAKE_SECRET_KEY", KEY)
            .env("M365_SECRET", SECRET)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        Running(Some(child))
    }

    /// SIGTERM, wait, and the process's stderr.
    pub fn stop(mut self) -> String {
        let child = self.0.take().unwrap();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).to_string()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The mail-log events of `kind`, oldest first (`intake log --json`).
pub fn log_events(cfg: &str, db: &str, kind: &str) -> Vec<serde_json::Value> {
    let (_, stdout, stderr) = intake_with(cfg, db, &["log", "--json", "--limit", "500"], &[]);
    let v: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    let mut out: Vec<serde_json::Value> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect();
    out.reverse();
    out
}
