//! A real OAuth 2.0 / OpenID Connect server on loopback: panva's `oidc-provider` (npm) on Node,
//! installed by `bash scripts/testbed/idp.sh install` into `<repo>/.testbed/idp` and run from
//! `scripts/testbed/idp/server.mjs`. Each [`Idp`] is its own server process on a free
//! `127.0.0.1` port with its own in-memory state; dropping it stops the process.
//!
//! What the server offers (see `server.mjs`):
//! - clients `intake` (registered `client_secret_basic`, the `oauth2` crate's
//!   `AuthType::BasicAuth`), `intake-post` (registered `client_secret_post`,
//!   `AuthType::RequestBody`) and `intake-public` (no secret), all with the same secret, grant
//!   types `authorization_code`, `refresh_token` and the device code grant. Note that
//!   oidc-provider 9 accepts the secret either way (Basic header or body) for both secret
//!   clients; it only refuses both at once (`invalid_request`) and a wrong secret
//!   (`invalid_client`, 401);
//! - loopback redirect URIs on `127.0.0.1`, `localhost` and `[::1]` with any port (native
//!   clients, RFC 8252), paths `/`, `/callback`, `/oauth/callback`, `/oauth2/callback`,
//!   `/auth/callback`, `/oauth2callback` or none, plus [`IdpOptions::redirect_uris`];
//! - PKCE (S256) required; scopes `openid email profile offline_access mail`; a refresh token
//!   whenever `offline_access` is granted; every refresh rotates the refresh token and reusing
//!   an old one is `invalid_grant` (and revokes the whole grant, as oidc-provider does);
//! - no login page (unless [`IdpOptions::login_form`]): the account is the request's
//!   `login_hint` (default `alice@example.com`), `sub` and `email` are that name, and every
//!   requested scope is granted.
//!
//! Tests that need it:
//! ```ignore
//! let Some(idp) = Idp::start_or_skip("my_test") else { return };
//! ```
//! which panics instead of skipping when `INTAKE_REQUIRE_IDP=1`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;
use sha2::{Digest, Sha256};

/// The oidc-provider version `scripts/testbed/idp.sh` installs.
pub const OIDC_PROVIDER_VERSION: &str = "9.13.3";
/// The secret of all the server's clients unless [`IdpOptions::client_secret`] says otherwise.
pub const DEFAULT_CLIENT_SECRET: &str = "intake-secret";
/// The account logged in when the authorization request has no `login_hint`.
pub const DEFAULT_LOGIN: &str = "alice@example.com";

/// How long one start of the server may take to say it is listening. It takes about a second
/// on a busy 2-core machine; one start in a CI run once stalled past 30 s, so a stalled start is
/// killed and retried rather than waited on.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Starts [`Idp::start_with`] makes before giving up.
pub const START_ATTEMPTS: u32 = 3;
/// Redirects [`Idp::browser_login`] follows before giving up.
const MAX_HOPS: usize = 30;

/// Settings for [`Idp::start_with`]; `Default` gives what [`Idp::start`] uses.
#[derive(Debug, Clone, Default)]
pub struct IdpOptions {
    /// Access token lifetime in seconds (`IDP_ACCESS_TTL`, default 3600).
    pub access_ttl_secs: Option<u64>,
    /// Refresh token (and grant) lifetime in seconds (`IDP_REFRESH_TTL`, default 14 days).
    pub refresh_ttl_secs: Option<u64>,
    /// The clients' secret (`IDP_CLIENT_SECRET`, default [`DEFAULT_CLIENT_SECRET`]).
    pub client_secret: Option<String>,
    /// A fixed port instead of a free one.
    pub port: Option<u16>,
    /// More redirect URIs to register, in full (loopback ones match with any port).
    pub redirect_uris: Vec<String>,
    /// The program to run `server.mjs` with (default `$INTAKE_NODE`, else `node`).
    pub node: Option<PathBuf>,
    /// How long one start may take (default [`START_TIMEOUT`]).
    pub start_timeout: Option<Duration>,
    /// A sign-in page (`IDP_LOGIN_FORM=1`): the interaction asks for the account in a form
    /// (prefilled with the login hint) instead of signing in at once, for browser tests.
    /// [`Idp::browser_login_as`] and [`Idp::approve_device`] name the account and skip it.
    pub login_form: bool,
}

/// Why one start of the server failed: `Retry` when starting it again can help (it stalled,
/// died, or its discovery document did not answer), `Fatal` when it cannot.
enum Spawn {
    Retry(String),
    Fatal(String),
}

/// A running oidc-provider. Dropping it kills the server.
#[derive(Debug)]
pub struct Idp {
    /// `http://127.0.0.1:PORT`, exactly as the server puts it in `iss`.
    pub issuer: String,
    pub port: u16,
    /// `intake`: authenticates with HTTP Basic (`client_secret_basic`).
    pub client_id: String,
    pub client_secret: String,
    /// `intake-post`: same secret, sent in the request body (`client_secret_post`).
    pub post_client_id: String,
    /// `intake-public`: a public client (no secret, PKCE only).
    pub public_client_id: String,
    /// The server's `/.well-known/openid-configuration`.
    pub discovery: serde_json::Value,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
    stdin: Option<ChildStdin>,
    child: Child,
}

/// The repository root (where `scripts/` and `.testbed/` are).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// True when `INTAKE_REQUIRE_IDP=1`: tests must fail rather than skip without the server.
pub fn idp_required() -> bool {
    std::env::var("INTAKE_REQUIRE_IDP").is_ok_and(|v| v == "1")
}

/// A fresh PKCE pair: `(code_verifier, code_challenge)` with the S256 method.
pub fn pkce_pair() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(random_bytes());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// A random-enough value for `state` or `nonce` in tests.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(&random_bytes()[..16])
}

/// 32 unpredictable-enough bytes without a `rand` dependency: the std hasher's random keys,
/// the clock, the process and a counter, through SHA-256.
fn random_bytes() -> [u8; 32] {
    use std::hash::{BuildHasher, Hasher};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha256::new();
    for _ in 0..4 {
        let mut s = std::collections::hash_map::RandomState::new().build_hasher();
        s.write_u64(N.fetch_add(1, Ordering::Relaxed));
        h.update(s.finish().to_le_bytes());
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.update(nanos.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.finalize().into()
}

impl Idp {
    /// Starts a server with the defaults. `None` (with the reason on stderr) when node or the
    /// npm install is missing or the server does not come up.
    pub fn start() -> Option<Idp> {
        Self::start_with(&IdpOptions::default())
    }

    /// [`Idp::start`], but when that is `None`: panics if `INTAKE_REQUIRE_IDP=1`, else prints
    /// `SKIPPED: <test>: ...` and returns `None` for the test to return early.
    pub fn start_or_skip(test: &str) -> Option<Idp> {
        Self::start_with_or_skip(test, &IdpOptions::default())
    }

    /// [`Idp::start_or_skip`] with options.
    pub fn start_with_or_skip(test: &str, opts: &IdpOptions) -> Option<Idp> {
        match Self::start_with(opts) {
            Some(idp) => Some(idp),
            None if idp_required() => panic!(
                "{test}: the OAuth test server (oidc-provider) could not start and \
                 INTAKE_REQUIRE_IDP=1; run `bash scripts/testbed/idp.sh install` (needs node and npm)"
            ),
            None => {
                eprintln!(
                    "SKIPPED: {test}: no OAuth test server (install node and run \
                     `bash scripts/testbed/idp.sh install`; INTAKE_REQUIRE_IDP=1 makes this fail)"
                );
                None
            }
        }
    }

    /// Starts a server with `opts`; see [`Idp::start`]. A server that does not come up within
    /// [`START_TIMEOUT`] (or dies first) is killed and started again, up to [`START_ATTEMPTS`]
    /// times; each failed attempt prints its log, whose `idp: +Nms …` lines name the start-up
    /// step it stopped at.
    pub fn start_with(opts: &IdpOptions) -> Option<Idp> {
        let root = repo_root();
        let server = root.join("scripts/testbed/idp/server.mjs");
        let modules = std::env::var_os("INTAKE_IDP_MODULES")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".testbed/idp/node_modules"));
        let pkg = modules.join("oidc-provider/package.json");
        let installed = std::fs::read_to_string(&pkg)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["version"].as_str().map(str::to_string));
        match installed.as_deref() {
            Some(OIDC_PROVIDER_VERSION) => {}
            Some(other) => {
                eprintln!(
                    "idp: {} has oidc-provider {other}, want {OIDC_PROVIDER_VERSION}; \
                     run `bash scripts/testbed/idp.sh install`",
                    modules.display()
                );
                return None;
            }
            None => {
                eprintln!(
                    "idp: oidc-provider is not installed in {}; run `bash scripts/testbed/idp.sh install`",
                    modules.display()
                );
                return None;
            }
        }
        for attempt in 1..=START_ATTEMPTS {
            match Self::spawn(opts, &server, &modules) {
                Ok(idp) => return Some(idp),
                Err(Spawn::Fatal(why)) => {
                    eprintln!("idp: {why}");
                    return None;
                }
                Err(Spawn::Retry(why)) => {
                    let next = if attempt < START_ATTEMPTS {
                        "; starting it again"
                    } else {
                        ""
                    };
                    eprintln!("idp: attempt {attempt} of {START_ATTEMPTS}: {why}{next}");
                }
            }
        }
        None
    }

    /// One start of the server process: the running server, or why not and whether another
    /// try can help.
    fn spawn(opts: &IdpOptions, server: &Path, modules: &Path) -> Result<Idp, Spawn> {
        let dir = tempfile::Builder::new()
            .prefix("intake-idp-")
            .tempdir()
            .map_err(|e| Spawn::Fatal(format!("temp dir: {e}")))?;
        let log_path = dir.path().join("idp.log");
        let log = File::create(&log_path)
            .map_err(|e| Spawn::Fatal(format!("{}: {e}", log_path.display())))?;
        let client_secret = opts
            .client_secret
            .clone()
            .unwrap_or_else(|| DEFAULT_CLIENT_SECRET.to_string());

        let node = opts
            .node
            .clone()
            .map(Into::into)
            .or_else(|| std::env::var_os("INTAKE_NODE"))
            .unwrap_or_else(|| "node".into());
        let mut cmd = Command::new(node);
        cmd.arg(server)
            .arg(opts.port.unwrap_or(0).to_string())
            .env("IDP_MODULES", modules)
            .env("IDP_CLIENT_SECRET", &client_secret)
            .env("NODE_NO_WARNINGS", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if let Some(ttl) = opts.access_ttl_secs {
            cmd.env("IDP_ACCESS_TTL", ttl.to_string());
        }
        if let Some(ttl) = opts.refresh_ttl_secs {
            cmd.env("IDP_REFRESH_TTL", ttl.to_string());
        }
        if opts.login_form {
            cmd.env("IDP_LOGIN_FORM", "1");
        }
        if !opts.redirect_uris.is_empty() {
            cmd.env("IDP_REDIRECT_URIS", opts.redirect_uris.join(","));
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Spawn::Fatal(
                    "node is not installed (or not on PATH)".to_string(),
                ));
            }
            Err(e) => return Err(Spawn::Fatal(format!("cannot run node: {e}"))),
        };
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");

        // Read the "listening" line on a thread (std pipes have no timeouts); the thread then
        // keeps draining stdout until the server exits.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            for _ in lines {}
        });
        let started = Instant::now();
        let timeout = opts.start_timeout.unwrap_or(START_TIMEOUT);
        let line = match rx.recv_timeout(timeout) {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                let why = match other {
                    Err(_) => format!("no answer in {timeout:?}"),
                    Ok(Some(Err(e))) => format!("reading its stdout: {e}"),
                    _ => "it exited".to_string(),
                };
                return Err(Spawn::Retry(format!(
                    "the server did not start ({why}); its log:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                )));
            }
        };

        let mut idp = Idp {
            issuer: String::new(),
            port: 0,
            client_id: "intake".to_string(),
            client_secret,
            post_client_id: "intake-post".to_string(),
            public_client_id: "intake-public".to_string(),
            discovery: serde_json::Value::Null,
            log_path,
            _dir: dir,
            stdin,
            child,
        };
        let hello: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| Spawn::Fatal(format!("bad first line {line:?}: {e}")))?;
        idp.issuer = hello["issuer"].as_str().unwrap_or_default().to_string();
        idp.port = hello["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(0);
        if idp.issuer.is_empty() || idp.port == 0 {
            return Err(Spawn::Fatal(format!("bad first line {line:?}")));
        }
        idp.discovery = http_get_json(idp.port, "/.well-known/openid-configuration")
            .map_err(|e| Spawn::Retry(format!("discovery failed: {e}\n{}", idp.log())))?;
        if std::env::var_os("INTAKE_IDP_VERBOSE").is_some() {
            eprintln!("idp: {} up in {:?}", idp.issuer, started.elapsed());
        }
        Ok(idp)
    }

    fn endpoint(&self, key: &str) -> &str {
        self.discovery[key]
            .as_str()
            .unwrap_or_else(|| panic!("the IdP's discovery document has no {key}"))
    }

    /// `authorization_endpoint` from the discovery document (`{issuer}/auth`).
    pub fn authorization_endpoint(&self) -> &str {
        self.endpoint("authorization_endpoint")
    }

    /// `token_endpoint` (`{issuer}/token`).
    pub fn token_endpoint(&self) -> &str {
        self.endpoint("token_endpoint")
    }

    /// `device_authorization_endpoint` (`{issuer}/device/auth`).
    pub fn device_authorization_endpoint(&self) -> &str {
        self.endpoint("device_authorization_endpoint")
    }

    /// `userinfo_endpoint` (`{issuer}/me`).
    pub fn userinfo_endpoint(&self) -> &str {
        self.endpoint("userinfo_endpoint")
    }

    /// `revocation_endpoint` (RFC 7009).
    pub fn revocation_endpoint(&self) -> &str {
        self.endpoint("revocation_endpoint")
    }

    /// `introspection_endpoint` (RFC 7662).
    pub fn introspection_endpoint(&self) -> &str {
        self.endpoint("introspection_endpoint")
    }

    /// `jwks_uri`: the id_token signing key (RS256, new for every server).
    pub fn jwks_uri(&self) -> &str {
        self.endpoint("jwks_uri")
    }

    /// `{issuer}/.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// What the server wrote to stderr so far (warnings, server errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Plays the browser: GETs `authorize_url` and follows redirects (carrying cookies) through
    /// the automatic login and consent until one leaves the IdP, and returns that location (the
    /// redirect_uri with `code`, `state` and `iss`, or with `error`) without fetching it. The
    /// account is the URL's `login_hint`, else [`DEFAULT_LOGIN`]. `Err` when the IdP answers
    /// with anything but a redirect (an error page names the problem).
    pub async fn browser_login(&self, authorize_url: &str) -> Result<String, String> {
        self.browse(authorize_url, None).await
    }

    /// [`Idp::browser_login`] as `login`, whatever the authorization request says.
    pub async fn browser_login_as(
        &self,
        authorize_url: &str,
        login: &str,
    ) -> Result<String, String> {
        self.browse(authorize_url, Some(login)).await
    }

    async fn browse(&self, start: &str, login: Option<&str>) -> Result<String, String> {
        let http = http_client()?;
        let issuer = Url::parse(&self.issuer).map_err(|e| e.to_string())?;
        let mut url = Url::parse(start).map_err(|e| format!("bad authorize URL {start:?}: {e}"))?;
        if url.origin() != issuer.origin() {
            return Err(format!("{start} is not on the IdP ({})", self.issuer));
        }
        let mut jar: BTreeMap<String, String> = BTreeMap::new();
        for _ in 0..MAX_HOPS {
            if url.origin() != issuer.origin() {
                return Ok(url.to_string());
            }
            if let Some(login) = login
                && url.path().starts_with("/interaction/")
            {
                url.query_pairs_mut().append_pair("login", login);
            }
            let mut req = http.get(url.clone());
            if !jar.is_empty() {
                let cookie = jar
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                req = req.header(reqwest::header::COOKIE, cookie);
            }
            let resp = req.send().await.map_err(|e| format!("GET {url}: {e}"))?;
            store_cookies(&mut jar, resp.headers());
            let status = resp.status();
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            match location {
                Some(loc) if status.is_redirection() => {
                    url = url
                        .join(&loc)
                        .map_err(|e| format!("bad Location {loc:?} from {url}: {e}"))?;
                }
                _ => {
                    let body = resp.text().await.unwrap_or_default();
                    return Err(format!("{status} from {url} (not a redirect): {body}"));
                }
            }
        }
        Err(format!("more than {MAX_HOPS} redirects from {start}"))
    }

    /// Approves a device code as `login` (what a user does at the verification page after
    /// typing `user_code`), through the server's test-only `POST /test/device/approve`.
    pub async fn approve_device(&self, user_code: &str, login: &str) -> Result<(), String> {
        self.device_decision(user_code, login, false).await
    }

    /// Denies a device code: polling then gets `access_denied`.
    pub async fn deny_device(&self, user_code: &str) -> Result<(), String> {
        self.device_decision(user_code, DEFAULT_LOGIN, true).await
    }

    async fn device_decision(
        &self,
        user_code: &str,
        login: &str,
        deny: bool,
    ) -> Result<(), String> {
        let http = http_client()?;
        let resp = http
            .post(format!("{}/test/device/approve", self.issuer))
            .form(&[
                ("user_code", user_code),
                ("login", login),
                ("deny", if deny { "1" } else { "0" }),
            ])
            .send()
            .await
            .map_err(|e| format!("device approval: {e}"))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("device approval: {status}: {body}"))
        }
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("http client: {e}"))
}

/// Keeps `name=value` of each Set-Cookie (paths ignored: one flow at a time), dropping
/// cookies the server clears.
fn store_cookies(jar: &mut BTreeMap<String, String>, headers: &reqwest::header::HeaderMap) {
    for value in headers.get_all(reqwest::header::SET_COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        let mut parts = text.split(';');
        let Some((name, val)) = parts.next().and_then(|p| p.split_once('=')) else {
            continue;
        };
        let expired = parts.any(|a| {
            let a = a.trim().to_ascii_lowercase();
            a == "max-age=0" || a.starts_with("expires=thu, 01 jan 1970")
        });
        if expired || val.trim().is_empty() {
            jar.remove(name.trim());
        } else {
            jar.insert(name.trim().to_string(), val.trim().to_string());
        }
    }
}

/// A blocking GET on 127.0.0.1 (usable from sync code inside a runtime), JSON body.
fn http_get_json(port: u16, path: &str) -> Result<serde_json::Value, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header end in {text:?}"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("{head}\n{body}"));
    }
    serde_json::from_str(body).map_err(|e| format!("JSON: {e}: {body}"))
}
