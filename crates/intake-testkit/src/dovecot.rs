//! A real Dovecot 2.3 (Debian's `dovecot-core`, `-imapd`, `-pop3d`, `-lmtpd`, installed by
//! `bash scripts/testbed/dovecot.sh install`) for the IMAP/POP3 connector tests. Each
//! [`Dovecot`] is its own `dovecot -F -c <tempdir>/dovecot.conf` master process: all state,
//! sockets, logs and mail live in a temporary directory, `/etc/dovecot` and the system service
//! are never used, and the four listeners (IMAP, IMAPS, POP3, POP3S) are on free `127.0.0.1`
//! ports. Dropping it stops the server (SIGTERM, then SIGKILL) and removes the directory; a
//! watchdog process also stops it when the test process dies without dropping it.
//!
//! What the server offers:
//! - users from [`DovecotOptions::users`] in a passwd-file with plain passwords (`PLAIN` and
//!   `LOGIN` SASL, IMAP `LOGIN`, POP3 `USER`/`PASS`); user names are compared lowercased;
//! - with [`OAuthValidation::Introspect`], SASL `XOAUTH2` and `OAUTHBEARER` with bearer
//!   tokens from a running [`Idp`], validated by RFC 7662 introspection (Dovecot authenticates
//!   as the IdP's `intake-post` client, `client_secret_post`). The token must carry scope `mail`
//!   and its `email` (the IdP's login) must equal the user name; get one with
//!   [`mail_access_token`]. A bad token gets the `+ eyJ…` challenge, then
//!   `NO [AUTHENTICATIONFAILED]` / `-ERR [AUTH]`; the reason is only in [`Dovecot::log`];
//! - TLS on the IMAPS/POP3S ports and STARTTLS/STLS on the plain ones, with a self-signed
//!   certificate for `localhost` and `127.0.0.1` ([`Dovecot::ca_pem`], also in
//!   [`Dovecot::ca_path`]); plaintext auth is allowed on the plain ports;
//! - no failed-auth penalty (anvil's `anvil-auth-penalty` listener is off), so wrong passwords
//!   and bad tokens fail at once instead of after 2..15 s; `mail_fsync = never`;
//! - Maildir under `<state>/home/<user>/Maildir`; [`Dovecot::deliver`] writes messages straight
//!   into `new/` (Dovecot picks them up on the next SELECT/STAT/NOOP), named as Dovecot's own
//!   delivery names them, with the size (`S=`) and the CRLF size (`W=`) in the file name;
//! - with [`DovecotOptions::localized_folders`], German folder names with SPECIAL-USE flags
//!   (see [`LOCALIZED_FOLDERS`]), created and subscribed on first login. IMAP has no way to
//!   rename INBOX for display, so a connector test proves it goes by the protocol's names
//!   (`INBOX`, `\Trash`, ...) rather than by English folder names;
//! - LMTP on a unix socket ([`Dovecot::lmtp_socket`]);
//! - [`Dovecot::appender`]: an IMAP connection that `APPEND`s (mail arriving as it does for
//!   real); with [`DovecotOptions::max_connections`], limits for 1,000+ connections and
//!   [`Dovecot::idle_connections`], how many are in IDLE.
//!
//! Dovecot refuses mail access as root ("Mail access not allowed for root"), so when the tests
//! run as root the mail belongs to the system user `mail` (Debian: uid 8), and
//! [`Dovecot::deliver`] hands its files to that user. As another user, everything runs as that
//! user (not tested here: this machine runs the tests as root).
//!
//! ```ignore
//! let Some(dc) = Dovecot::start_or_skip("my_test", &DovecotOptions::with_users(&[("alice@example.test", "pw")])) else { return };
//! dc.deliver("alice@example.test", b"Subject: hi\r\n\r\nbody\r\n")?;
//! // IMAP on 127.0.0.1:{dc.imap_port}, IMAPS on dc.imaps_port trusting dc.ca_pem, ...
//! ```
//! `start_or_skip` panics instead of skipping when `INTAKE_REQUIRE_DOVECOT=1`.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::idp::{Idp, pkce_pair, random_token};

/// How long [`Dovecot::start`] waits for the listeners to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stop waits after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often [`Dovecot::start`] picks new ports when one was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// The extra folders of [`DovecotOptions::localized_folders`]: (name, SPECIAL-USE flag or "").
/// On the wire they are modified UTF-7 (`Gel&APY-schte Elemente`); on disk Maildir++
/// (`.Gel&APY-schte Elemente`).
pub const LOCALIZED_FOLDERS: &[(&str, &str)] = &[
    ("Posteingang-Archiv", "\\Archive"),
    ("Gelöschte Elemente", "\\Trash"),
    ("Gesendete Elemente", "\\Sent"),
    ("Entwürfe", "\\Drafts"),
    ("Junk-E-Mail", "\\Junk"),
    ("Aufgaben", ""),
];

/// How Dovecot checks OAuth bearer tokens (SASL XOAUTH2 / OAUTHBEARER).
#[derive(Debug, Clone, Copy)]
pub enum OAuthValidation<'a> {
    /// RFC 7662 introspection at `idp`'s introspection endpoint (POST, as client
    /// `intake-post` with `client_secret_post`), requiring scope `mail`, `active: true` and
    /// `email` equal to the SASL user. Revoking a token takes effect at once. The IdP must
    /// outlive the server (tokens die with the IdP anyway).
    Introspect { idp: &'a Idp },
}

/// Settings for [`Dovecot::start`].
#[derive(Debug, Clone, Default)]
pub struct DovecotOptions<'a> {
    /// `(email, password)`: the users and their plain passwords. Names are lowercased.
    pub users: Vec<(String, String)>,
    /// Turns on SASL XOAUTH2 and OAUTHBEARER.
    pub oauth: Option<OAuthValidation<'a>>,
    /// Adds the [`LOCALIZED_FOLDERS`] (non-English names with SPECIAL-USE flags) to every
    /// mailbox, created and subscribed at first login.
    pub localized_folders: bool,
    /// Raises Dovecot's limits so this many IMAP connections can be open at once (e.g. 1,000
    /// IDLE channels in one process): `imap` processes, clients per process of the shared
    /// services (log, anvil, auth, stats, config: `default_client_limit`) and
    /// `mail_max_userip_connections`. A few login processes serve all connections
    /// (`service_count = 0`); every IMAP connection keeps its own `imap` process whose title
    /// shows its command (`verbose_proctitle`; [`Dovecot::idle_connections`] counts those in
    /// IDLE); `mailbox_idle_check_interval` is 1 s, the fallback when inotify instances run
    /// out (`fs.inotify.max_user_instances`, often 128 per user). `None`: Dovecot's defaults
    /// (100 processes per service, 10 connections per user and IP).
    pub max_connections: Option<u32>,
    /// Turns on the SMTP submission service (package dovecot-submissiond) on
    /// [`Dovecot::submission_port`] (STARTTLS offered, AUTH with the same passdbs as IMAP:
    /// passwords and, with [`DovecotOptions::oauth`], XOAUTH2 checked by introspection), relaying
    /// every accepted message to the SMTP server on this 127.0.0.1 port (e.g. a
    /// [`crate::smtp_sink::SmtpSink`]).
    pub submission: Option<u16>,
    /// A folder `Sent` marked `\Sent` in every mailbox, and LMTP filing `user+Sent@domain`
    /// into it (`recipient_delimiter = +`, `lmtp_save_to_detail_mailbox = yes`): what
    /// [`crate::sent_relay::SentRelay`] uses to keep the sender's copy like a provider does.
    pub sent_folder: bool,
}

impl<'a> DovecotOptions<'a> {
    /// Adds [`DovecotOptions::sent_folder`].
    pub fn sent_folder(mut self) -> Self {
        self.sent_folder = true;
        self
    }

    /// Adds the submission service relaying to 127.0.0.1:`relay_port`.
    pub fn submission(mut self, relay_port: u16) -> Self {
        self.submission = Some(relay_port);
        self
    }

    /// Options with these `(email, password)` users and nothing else.
    pub fn with_users(users: &[(&str, &str)]) -> Self {
        Self {
            users: users
                .iter()
                .map(|(u, p)| ((*u).to_string(), (*p).to_string()))
                .collect(),
            ..Self::default()
        }
    }

    /// Adds introspection against `idp`.
    pub fn introspect(mut self, idp: &'a Idp) -> Self {
        self.oauth = Some(OAuthValidation::Introspect { idp });
        self
    }

    /// Adds the localized folders.
    pub fn localized(mut self) -> Self {
        self.localized_folders = true;
        self
    }

    /// Sets [`DovecotOptions::max_connections`].
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = Some(n);
        self
    }
}

/// A running Dovecot. Dropping it stops the server.
#[derive(Debug)]
pub struct Dovecot {
    /// The SMTP submission port (STARTTLS), 0 without [`DovecotOptions::submission`].
    pub submission_port: u16,
    /// Where submission relays to.
    submission_relay: Option<u16>,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub pop3_port: u16,
    pub pop3s_port: u16,
    /// The server's self-signed certificate (CN `localhost`, SAN `localhost` and `127.0.0.1`),
    /// PEM: the one certificate a client must trust.
    pub ca_pem: String,
    /// [`Dovecot::ca_pem`] as a file (for curl's `--cacert` and the like).
    pub ca_path: PathBuf,
    /// The temporary directory holding everything (config, logs, sockets, mail).
    pub state_dir: PathBuf,
    /// The users as given, names lowercased.
    pub users: Vec<(String, String)>,
    /// The IdP's issuer when OAuth is on.
    pub oauth_issuer: Option<String>,
    conf_path: PathBuf,
    log_path: PathBuf,
    stderr_path: PathBuf,
    bin: PathBuf,
    owner: Owner,
    max_connections: Option<u32>,
    sent_folder: bool,
    child: Option<Child>,
    watchdog: Option<(Child, ChildStdin)>,
    _dir: tempfile::TempDir,
}

/// Who owns the mail (Dovecot will not access mail as root).
#[derive(Debug, Clone)]
struct Owner {
    uid: u32,
    gid: u32,
    /// Set when not running as root: the user and group every Dovecot process runs as.
    unprivileged: Option<(String, String)>,
}

/// True when `INTAKE_REQUIRE_DOVECOT=1`: tests must fail rather than skip without Dovecot.
pub fn dovecot_required() -> bool {
    std::env::var("INTAKE_REQUIRE_DOVECOT").is_ok_and(|v| v == "1")
}

/// The base64 SASL XOAUTH2 initial response: `user=U^Aauth=Bearer T^A^A`.
pub fn xoauth2_b64(user: &str, token: &str) -> String {
    STANDARD.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"))
}

/// The base64 SASL OAUTHBEARER (RFC 7628) initial response: `n,a=U,^Aauth=Bearer T^A^A`.
pub fn oauthbearer_b64(user: &str, token: &str) -> String {
    STANDARD.encode(format!("n,a={user},\x01auth=Bearer {token}\x01\x01"))
}

/// The base64 SASL PLAIN initial response: `^@user^@password`.
pub fn plain_b64(user: &str, password: &str) -> String {
    STANDARD.encode(format!("\0{user}\0{password}"))
}

/// A fresh access token for `login` from `idp` with scope `openid email mail` (authorization
/// code flow with PKCE as client `intake`): opaque, so Dovecot can introspect it, and its
/// `email` is `login`.
pub async fn mail_access_token(idp: &Idp, login: &str) -> Result<String, String> {
    let redirect_uri = "http://127.0.0.1/callback";
    let (verifier, challenge) = pkce_pair();
    let state = random_token();
    let mut url = reqwest::Url::parse(idp.authorization_endpoint()).map_err(|e| e.to_string())?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &idp.client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", "openid email mail")
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("login_hint", login);
    let back = idp.browser_login_as(url.as_str(), login).await?;
    let back = reqwest::Url::parse(&back).map_err(|e| format!("{back}: {e}"))?;
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| format!("no code in {back}"))?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = http
        .post(idp.token_endpoint())
        .basic_auth(&idp.client_id, Some(&idp.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .map_err(|e| format!("token request: {e}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.map_err(|e| format!("token JSON: {e}"))?;
    body["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("token endpoint said {status}: {body}"))
}

/// Modified UTF-7 (RFC 3501 5.1.3), as IMAP and Dovecot's Maildir++ folder names use it.
pub fn mutf7(name: &str) -> String {
    let alphabet = base64::alphabet::Alphabet::new(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,",
    )
    .expect("alphabet");
    let engine = base64::engine::GeneralPurpose::new(
        &alphabet,
        base64::engine::GeneralPurposeConfig::new().with_encode_padding(false),
    );
    let mut out = String::new();
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if !pending.is_empty() {
            let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
            out.push('&');
            out.push_str(&engine.encode(bytes));
            out.push('-');
            pending.clear();
        }
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

fn find_dovecot() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("INTAKE_DOVECOT") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join("dovecot"))
        .find(|p| p.is_file())
}

/// `(uid, gid)` of the process, from `/proc/self` (no libc: the workspace forbids unsafe).
fn current_ids() -> io::Result<(u32, u32)> {
    let m = fs::metadata("/proc/self")?;
    Ok((m.uid(), m.gid()))
}

/// `(name, uid, gid)` from /etc/passwd where `pick` says so.
fn passwd_entry(pick: impl Fn(&str, u32) -> bool) -> Option<(String, u32, u32)> {
    let text = fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let (name, uid, gid) = (f.first()?, f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?);
        pick(name, uid).then(|| ((*name).to_string(), uid, gid))
    })
}

fn group_name(gid: u32) -> Option<String> {
    let text = fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.get(2)?.parse::<u32>().ok()? == gid).then(|| f[0].to_string())
    })
}

fn owner() -> Result<Owner, String> {
    let (uid, gid) = current_ids().map_err(|e| format!("/proc/self: {e}"))?;
    if uid == 0 {
        let want = std::env::var("INTAKE_DOVECOT_MAIL_USER").unwrap_or_else(|_| "mail".into());
        let (_, uid, gid) = passwd_entry(|n, u| n == want && u != 0)
            .or_else(|| passwd_entry(|n, u| n == "nobody" && u != 0))
            .ok_or_else(|| {
                format!("no user {want:?} (or nobody) in /etc/passwd to own the mail")
            })?;
        Ok(Owner {
            uid,
            gid,
            unprivileged: None,
        })
    } else {
        let (name, _, _) = passwd_entry(|_, u| u == uid)
            .ok_or_else(|| format!("uid {uid} is not in /etc/passwd (Dovecot needs a name)"))?;
        let group = group_name(gid).ok_or_else(|| format!("gid {gid} is not in /etc/group"))?;
        Ok(Owner {
            uid,
            gid,
            unprivileged: Some((name, group)),
        })
    }
}

/// Four distinct free ports on 127.0.0.1 (bound at once, then released for Dovecot).
fn free_ports() -> io::Result<[u16; 5]> {
    let ls = (0..5)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<io::Result<Vec<_>>>()?;
    let mut ports = [0u16; 5];
    for (p, l) in ports.iter_mut().zip(&ls) {
        *p = l.local_addr()?.port();
    }
    Ok(ports)
}

fn self_signed() -> Result<(String, String), String> {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Intake test Dovecot");
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn chown(path: &Path, owner: &Owner) -> io::Result<()> {
    if owner.unprivileged.is_none() {
        std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))?;
    }
    Ok(())
}

fn mkdir_owned(path: &Path, owner: &Owner) -> io::Result<()> {
    for dir in path.ancestors().collect::<Vec<_>>().into_iter().rev() {
        if !dir.exists() {
            fs::create_dir(dir)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
            chown(dir, owner)?;
        }
    }
    Ok(())
}

/// A passwd-file field must not hold ':' or a line break.
fn check_field(what: &str, v: &str) -> Result<(), String> {
    if v.contains([':', '\n', '\r']) || v.is_empty() {
        Err(format!(
            "dovecot: bad {what} {v:?} (empty, or has ':' or a line break)"
        ))
    } else {
        Ok(())
    }
}

impl Dovecot {
    /// Starts a server. `None` (with the reason on stderr) when Dovecot is not installed or
    /// does not come up.
    pub fn start(opts: &DovecotOptions<'_>) -> Option<Dovecot> {
        match Self::try_start(opts) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("dovecot: {e}");
                None
            }
        }
    }

    /// [`Dovecot::start`], but when that is `None`: panics if `INTAKE_REQUIRE_DOVECOT=1`,
    /// else prints `SKIPPED: <test>: ...` and returns `None` for the test to return early.
    pub fn start_or_skip(test: &str, opts: &DovecotOptions<'_>) -> Option<Dovecot> {
        match Self::try_start(opts) {
            Ok(d) => Some(d),
            Err(e) if dovecot_required() => panic!(
                "{test}: the Dovecot test server could not start and INTAKE_REQUIRE_DOVECOT=1: {e}\n\
                 (run `bash scripts/testbed/dovecot.sh install`)"
            ),
            Err(e) => {
                eprintln!(
                    "SKIPPED: {test}: no Dovecot test server ({e}; run `bash scripts/testbed/dovecot.sh install`, \
                     INTAKE_REQUIRE_DOVECOT=1 makes this fail)"
                );
                None
            }
        }
    }

    /// [`Dovecot::start`] with the reason as an error.
    pub fn try_start(opts: &DovecotOptions<'_>) -> Result<Dovecot, String> {
        let bin = find_dovecot()
            .ok_or("dovecot is not installed (no dovecot on PATH or in /usr/sbin)")?;
        let lib = Path::new("/usr/lib/dovecot");
        let wanted: &[&str] = if opts.submission.is_some() {
            &["imap", "pop3", "lmtp", "submission"]
        } else {
            &["imap", "pop3", "lmtp"]
        };
        for p in wanted {
            if std::env::var_os("INTAKE_DOVECOT").is_none() && !lib.join(p).exists() {
                return Err(format!(
                    "{} is missing (dovecot-{p}d not installed)",
                    lib.join(p).display()
                ));
            }
        }
        let owner = owner()?;
        let mut users = Vec::new();
        for (u, p) in &opts.users {
            check_field("user", u)?;
            check_field("password", p)?;
            users.push((u.to_lowercase(), p.clone()));
        }

        let dir = tempfile::Builder::new()
            .prefix("intake-dovecot-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let state = dir.path().to_path_buf();
        let io = |what: &str, e: io::Error| format!("{what}: {e}");
        // Dovecot's unprivileged processes (auth as `dovecot`, imap as the mail owner) must
        // get through; nothing secret lives here.
        fs::set_permissions(&state, fs::Permissions::from_mode(0o755))
            .map_err(|e| io("chmod", e))?;
        for d in ["run", "lib", "home"] {
            fs::create_dir(state.join(d)).map_err(|e| io(d, e))?;
        }
        fs::set_permissions(state.join("home"), fs::Permissions::from_mode(0o755))
            .map_err(|e| io("chmod home", e))?;

        let (ca_pem, key_pem) = self_signed()?;
        let ca_path = state.join("cert.pem");
        fs::write(&ca_path, &ca_pem).map_err(|e| io("cert.pem", e))?;
        let key_path = state.join("key.pem");
        fs::write(&key_path, key_pem).map_err(|e| io("key.pem", e))?;
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600))
            .map_err(|e| io("chmod key", e))?;

        let mut passwd = String::new();
        for (u, p) in &users {
            let home = state.join("home").join(u);
            for sub in ["cur", "new", "tmp"] {
                mkdir_owned(&home.join("Maildir").join(sub), &owner).map_err(|e| io("home", e))?;
            }
            let _ = writeln!(
                passwd,
                "{u}:{{PLAIN}}{p}:{}:{}::{}::",
                owner.uid,
                owner.gid,
                home.display()
            );
        }
        fs::write(state.join("users"), passwd).map_err(|e| io("users", e))?;

        let oauth_issuer = match opts.oauth {
            Some(OAuthValidation::Introspect { idp }) => {
                let conf = format!(
                    "introspection_mode = post\n\
                     introspection_url = {}\n\
                     client_id = {}\n\
                     client_secret = {}\n\
                     username_attribute = email\n\
                     active_attribute = active\n\
                     active_value = true\n\
                     scope = mail\n\
                     openid_configuration_url = {}\n",
                    idp.introspection_endpoint(),
                    idp.post_client_id,
                    idp.client_secret,
                    idp.discovery_url(),
                );
                let p = state.join("oauth2.conf.ext");
                fs::write(&p, conf).map_err(|e| io("oauth2.conf.ext", e))?;
                Some(idp.issuer.clone())
            }
            None => None,
        };

        let mut dc = Dovecot {
            submission_port: 0,
            submission_relay: opts.submission,
            imap_port: 0,
            imaps_port: 0,
            pop3_port: 0,
            pop3s_port: 0,
            ca_pem,
            ca_path,
            conf_path: state.join("dovecot.conf"),
            log_path: state.join("dovecot.log"),
            stderr_path: state.join("dovecot.stderr"),
            state_dir: state,
            users,
            oauth_issuer,
            bin,
            owner,
            max_connections: opts.max_connections,
            sent_folder: opts.sent_folder,
            child: None,
            watchdog: None,
            _dir: dir,
        };
        let started = Instant::now();
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let [a, b, c, d, e] = free_ports().map_err(|e| io("free ports", e))?;
            (dc.imap_port, dc.imaps_port, dc.pop3_port, dc.pop3s_port) = (a, b, c, d);
            if dc.submission_relay.is_some() {
                dc.submission_port = e;
            }
            dc.write_config(opts.localized_folders)
                .map_err(|e| io("dovecot.conf", e))?;
            match dc.spawn() {
                Ok(()) => {
                    if std::env::var_os("INTAKE_DOVECOT_VERBOSE").is_some() {
                        eprintln!(
                            "dovecot: up in {:?} (imap {}, imaps {}, pop3 {}, pop3s {}, {})",
                            started.elapsed(),
                            dc.imap_port,
                            dc.imaps_port,
                            dc.pop3_port,
                            dc.pop3s_port,
                            dc.state_dir.display()
                        );
                    }
                    return Ok(dc);
                }
                Err(e) if e.contains("Address already in use") => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(format!(
            "no free ports after {PORT_ATTEMPTS} attempts: {last}"
        ))
    }

    fn write_config(&self, localized: bool) -> io::Result<()> {
        let s = self.state_dir.display();
        let mut c = String::new();
        let oauth = self.oauth_issuer.is_some();
        let _ = write!(
            c,
            "# Written by intake_testkit::dovecot (Dovecot 2.3 syntax).\n\
             base_dir = {s}/run\n\
             state_dir = {s}/lib\n\
             instance_name = intake-{port}\n\
             listen = 127.0.0.1\n\
             protocols = imap pop3 lmtp{submission}\n\
             log_path = {s}/dovecot.log\n\
             ssl = yes\n\
             ssl_cert = <{s}/cert.pem\n\
             ssl_key = <{s}/key.pem\n\
             disable_plaintext_auth = no\n\
             auth_mechanisms = plain login{mechs}\n\
             auth_failure_delay = 0\n\
             auth_verbose = yes\n\
             first_valid_uid = {uid}\n\
             first_valid_gid = {gid}\n\
             mail_uid = {uid}\n\
             mail_gid = {gid}\n\
             mail_location = maildir:~/Maildir\n\
             mail_fsync = never\n\
             login_greeting = Dovecot (Intake test) ready.\n\
             passdb {{\n  driver = passwd-file\n  mechanisms = plain login\n  args = scheme=PLAIN username_format=%Lu {s}/users\n}}\n",
            port = self.imap_port,
            submission = if self.submission_relay.is_some() {
                " submission"
            } else {
                ""
            },
            mechs = if oauth { " xoauth2 oauthbearer" } else { "" },
            uid = self.owner.uid,
            gid = self.owner.gid,
        );
        if oauth {
            let _ = write!(
                c,
                "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {s}/oauth2.conf.ext\n}}\n"
            );
        }
        let _ = write!(
            c,
            "userdb {{\n  driver = passwd-file\n  args = username_format=%Lu {s}/users\n}}\n\
             namespace inbox {{\n  inbox = yes\n  separator = /\n"
        );
        if self.sent_folder {
            c.push_str("  mailbox Sent {\n    auto = subscribe\n    special_use = \\Sent\n  }\n");
        }
        if localized {
            for (name, flag) in LOCALIZED_FOLDERS {
                let _ = write!(c, "  mailbox \"{name}\" {{\n    auto = subscribe\n");
                if !flag.is_empty() {
                    let _ = writeln!(c, "    special_use = {flag}");
                }
                c.push_str("  }\n");
            }
        }
        c.push_str("}\n");
        if self.sent_folder {
            c.push_str(
                "recipient_delimiter = +\nlmtp_save_to_detail_mailbox = yes\nlda_mailbox_autocreate = yes\n",
            );
        }
        // With `max_connections`: global limits here, per-service ones inside the blocks below.
        let (anvil_limits, login_limits, imap_service) = match self.max_connections {
            Some(n) => {
                let n = u64::from(n);
                // Every process connects to log, anvil, stats and config: those need clients;
                // only `imap` needs processes (a few login processes serve all connections).
                let _ = write!(
                    c,
                    "default_client_limit = {clients}\n\
                     mail_max_userip_connections = {userip}\n\
                     verbose_proctitle = yes\n\
                     mailbox_idle_check_interval = 1 secs\n",
                    clients = 2 * n + 1000,
                    userip = n + 10,
                );
                (
                    format!("  client_limit = {}\n", 2 * n + 1000),
                    format!(
                        "  service_count = 0\n  process_min_avail = 2\n  process_limit = 8\n  client_limit = {}\n",
                        n + 100
                    ),
                    format!("service imap {{\n  process_limit = {}\n}}\n", n + 100),
                )
            }
            None => (String::new(), String::new(), String::new()),
        };
        c.push_str(&imap_service);
        let _ = write!(
            c,
            "service anvil {{\n{anvil_limits}  unix_listener anvil-auth-penalty {{\n    mode = 0\n  }}\n}}\n\
             service imap-login {{\n{login_limits}  inet_listener imap {{\n    port = {}\n  }}\n  inet_listener imaps {{\n    port = {}\n    ssl = yes\n  }}\n{chroot}}}\n\
             service pop3-login {{\n  inet_listener pop3 {{\n    port = {}\n  }}\n  inet_listener pop3s {{\n    port = {}\n    ssl = yes\n  }}\n{chroot}}}\n\
             service lmtp {{\n  unix_listener lmtp {{\n    mode = 0666\n  }}\n}}\n",
            self.imap_port,
            self.imaps_port,
            self.pop3_port,
            self.pop3s_port,
            chroot = if self.owner.unprivileged.is_some() {
                "  chroot =\n"
            } else {
                ""
            },
        );
        if let Some(relay) = self.submission_relay {
            let _ = write!(
                c,
                "hostname = localhost\n\
                 submission_relay_host = 127.0.0.1\n\
                 submission_relay_port = {relay}\n\
                 submission_relay_trusted = yes\n\
                 submission_relay_ssl = no\n\
                 service submission-login {{\n  inet_listener submission {{\n    port = {}\n  }}\n{chroot}}}\n",
                self.submission_port,
                chroot = if self.owner.unprivileged.is_some() {
                    "  chroot =\n"
                } else {
                    ""
                },
            );
        }
        if let Some((user, group)) = &self.owner.unprivileged {
            let _ = write!(
                c,
                "default_internal_user = {user}\ndefault_internal_group = {group}\ndefault_login_user = {user}\n"
            );
        }
        fs::write(&self.conf_path, c)
    }

    /// Runs the master and waits until all four listeners answer.
    fn spawn(&mut self) -> Result<(), String> {
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .map_err(|e| format!("{}: {e}", self.stderr_path.display()))?;
        let log_start = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
        let stderr_start = stderr.metadata().map(|m| m.len()).unwrap_or(0);
        let child = Command::new(&self.bin)
            .arg("-F")
            .arg("-c")
            .arg(&self.conf_path)
            // Its own process group: stopping signals the master and every process it forked
            // (an imap process would otherwise keep a client connection for ~10 s).
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stderr.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        let pid = child.id();
        // Stops the master when this process dies without dropping us: the watchdog's stdin
        // reaches EOF, it checks the pid is still our dovecot, and sends SIGTERM.
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(
                "read _x; if grep -qF -- \"$1\" /proc/\"$2\"/cmdline 2>/dev/null; then kill -TERM -- -\"$2\"; fi",
            )
            .arg("sh")
            .arg(&self.conf_path)
            .arg(pid.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()
            .and_then(|mut w| w.stdin.take().map(|i| (w, i)));
        self.child = Some(child);
        self.watchdog = watchdog;

        let deadline = Instant::now() + START_TIMEOUT;
        let ports = [
            self.imap_port,
            self.imaps_port,
            self.pop3_port,
            self.pop3s_port,
        ];
        let mut ready = [false; 4];
        let mut submission_ready = self.submission_relay.is_none();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                self.stop_watchdog();
                let out = format!(
                    "{}{}",
                    tail_from(&self.stderr_path, stderr_start),
                    tail_from(&self.log_path, log_start)
                );
                return Err(format!("dovecot exited ({status}) while starting:\n{out}"));
            }
            for (i, port) in ports.iter().enumerate() {
                if !ready[i] {
                    ready[i] = probe(*port, i == 0 || i == 2);
                }
            }
            if !submission_ready {
                submission_ready = probe_smtp(self.submission_port);
            }
            if ready.iter().all(|r| *r) && submission_ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!(
                    "dovecot did not answer on {ports:?} within {START_TIMEOUT:?}:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop_watchdog(&mut self) {
        if let Some((mut w, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = w.wait();
        }
    }

    /// SIGTERM to the server's process group (the master and the login, auth and mail
    /// processes: Dovecot's clean shutdown, clients get `* BYE Server shutting down.`), then
    /// SIGKILL after [`STOP_TIMEOUT`]; returns when the group is gone.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = format!("-{}", child.id());
            signal("-TERM", &group);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
            // The rest of the group (reparented once the master is gone).
            while signal("-0", &group) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            signal("-KILL", &group);
        }
        self.stop_watchdog();
    }

    /// Stops the server and starts it again on the same ports with the same state and mail
    /// (for a server-restart-mid-batch test). Open connections are cut. Retries for a while
    /// when a port is still held by a leftover process.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if e.contains("Address already in use") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }

    /// Stops the server without dropping it (connections are refused until
    /// [`Dovecot::restart`]).
    pub fn shutdown(&mut self) {
        self.stop();
    }

    /// True while the master process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The user's Maildir (`cur/`, `new/`, `tmp/` inside). Dovecot keeps its index files there too.
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.state_dir
            .join("home")
            .join(user.to_lowercase())
            .join("Maildir")
    }

    /// The Maildir++ directory of one of the user's folders (`INBOX` is [`Dovecot::maildir`]);
    /// `/` separates levels.
    pub fn folder_dir(&self, user: &str, mailbox: &str) -> PathBuf {
        if mailbox.eq_ignore_ascii_case("INBOX") {
            return self.maildir(user);
        }
        self.maildir(user)
            .join(format!(".{}", mutf7(mailbox).replace('/', ".")))
    }

    /// Puts one message into the user's INBOX: written to `tmp/`, then renamed into `new/`
    /// under a unique name (`…,S=<size>,W=<CRLF size>`), owned by the mail user. Visible at the
    /// next SELECT/STAT.
    pub fn deliver(&self, user: &str, raw: &[u8]) -> io::Result<()> {
        self.deliver_to(user, "INBOX", raw)
    }

    /// [`Dovecot::deliver`] for each message, in order.
    pub fn deliver_many(&self, user: &str, messages: Vec<Vec<u8>>) -> io::Result<()> {
        for m in &messages {
            self.deliver(user, m)?;
        }
        Ok(())
    }

    /// [`Dovecot::deliver`] into another folder (created on disk if missing; Dovecot lists it
    /// from then on), e.g. `"Gelöschte Elemente"`.
    pub fn deliver_to(&self, user: &str, mailbox: &str, raw: &[u8]) -> io::Result<()> {
        static N: AtomicU64 = AtomicU64::new(0);
        if !self.users.iter().any(|(u, _)| *u == user.to_lowercase()) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no user {user} on this Dovecot"),
            ));
        }
        let dir = self.folder_dir(user, mailbox);
        for sub in ["cur", "new", "tmp"] {
            mkdir_owned(&dir.join(sub), &self.owner)?;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // Named as Dovecot's own delivery names a file: `S=` the size on disk, `W=` the size
        // with every line ending CRLF (what IMAP's RFC822.SIZE and literals count). Without
        // `W=` Dovecot reads the whole file again to count line endings on each fetch that
        // needs the size.
        let bare_lf = raw
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'\n' && (i == 0 || raw[i - 1] != b'\r'))
            .count();
        let name = format!(
            "{}.M{}P{}Q{}.intake-testkit,S={},W={}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            raw.len(),
            raw.len() + bare_lf
        );
        let tmp = dir.join("tmp").join(&name);
        {
            let mut f = File::create(&tmp)?;
            f.write_all(raw)?;
        }
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
        chown(&tmp, &self.owner)?;
        fs::rename(&tmp, dir.join("new").join(&name))
    }

    /// The unix socket of Dovecot's LMTP service (delivery through Dovecot, with its headers).
    pub fn lmtp_socket(&self) -> PathBuf {
        self.state_dir.join("run").join("lmtp")
    }

    /// Logs in as `user` on the plain IMAP port (`LOGIN`) and returns a connection that can
    /// `APPEND` messages: the way real mail arrives (the server assigns the UID and updates its
    /// index at once), where [`Dovecot::deliver`] drops a file into `new/` behind Dovecot's
    /// back. Either way, sessions in IDLE hear of it through inotify, and Dovecot 2.3 waits a
    /// fixed 500 ms after the change before it tells them (`NOTIFY_DELAY_MSECS`).
    pub fn appender(&self, user: &str) -> io::Result<Appender> {
        let password = self
            .users
            .iter()
            .find(|(u, _)| *u == user.to_lowercase())
            .map(|(_, p)| p.clone())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no user {user} on this Dovecot"),
                )
            })?;
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.imap_port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        let mut a = Appender {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            tag: 0,
        };
        let mut greeting = String::new();
        a.reader.read_line(&mut greeting)?;
        if !greeting.starts_with("* OK") {
            return Err(io::Error::other(format!("greeting: {greeting:?}")));
        }
        a.command(&format!(
            "LOGIN {} {}",
            imap_quoted(user),
            imap_quoted(&password)
        ))?;
        Ok(a)
    }

    /// This server's processes (its process group: the master and what it forked and still
    /// runs) with the numeric fields of their `/proc/<pid>/stat` after `pid (comm)`, numbered
    /// from 1 with pid as field 1 (state is field 3, so field `n` is at index `n - 3`).
    fn group_stats(&self) -> Vec<(u32, Vec<u64>)> {
        let Some(pgid) = self.child.as_ref().map(Child::id) else {
            return Vec::new();
        };
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses. The
            // state is a letter: it reads as 0, which no field below uses.
            let fields: Vec<u64> = stat
                .rsplit_once(')')
                .map(|(_, rest)| {
                    rest.split_whitespace()
                        .map(|v| v.parse().unwrap_or(0))
                        .collect()
                })
                .unwrap_or_default();
            if fields.get(5 - 3) == Some(&u64::from(pgid)) {
                out.push((pid, fields));
            }
        }
        out
    }

    /// Titles of this server's processes (`dovecot/imap [user 127.0.0.1 IDLE]` and the like;
    /// the user and command are shown only with [`DovecotOptions::max_connections`], which
    /// turns on `verbose_proctitle`).
    pub fn process_titles(&self) -> Vec<String> {
        self.group_stats()
            .into_iter()
            .filter_map(|(pid, _)| fs::read(format!("/proc/{pid}/cmdline")).ok())
            .map(|cmdline| {
                String::from_utf8_lossy(&cmdline)
                    .replace('\0', " ")
                    .trim()
                    .to_string()
            })
            .collect()
    }

    /// CPU seconds (user + system) this server has used so far: every process of its group
    /// plus what the master's children that have ended used (the master reaps them). The
    /// difference of two readings is the server's CPU in between — for benchmarks, where the
    /// server shares the machine's cores.
    pub fn cpu_seconds(&self) -> f64 {
        // Clock ticks per second: 100 on Linux (USER_HZ) whatever the kernel's own rate.
        const TICKS: f64 = 100.0;
        let master = self.child.as_ref().map(Child::id);
        let ticks: u64 = self
            .group_stats()
            .into_iter()
            .map(|(pid, f)| {
                let field = |n: usize| f.get(n - 3).copied().unwrap_or(0);
                // utime (14) + stime (15); the master also cutime (16) + cstime (17).
                let reaped = if Some(pid) == master {
                    field(16) + field(17)
                } else {
                    0
                };
                field(14) + field(15) + reaped
            })
            .sum();
        ticks as f64 / TICKS
    }

    /// How many IMAP connections are in IDLE right now, from the `imap` process titles: needs
    /// [`DovecotOptions::max_connections`] (one connection per `imap` process, verbose titles).
    pub fn idle_connections(&self) -> usize {
        self.process_titles()
            .iter()
            .filter(|t| t.contains("imap [") && t.ends_with(" IDLE]"))
            .count()
    }

    /// The config file the server runs with.
    pub fn config_path(&self) -> &Path {
        &self.conf_path
    }

    /// Dovecot's log so far (`log_path`, with auth failure reasons such as
    /// `oauth2 failed: Introspection failed: ...`) followed by what the master wrote to
    /// stdout/stderr.
    pub fn log(&self) -> String {
        let mut s = fs::read_to_string(&self.log_path).unwrap_or_default();
        s.push_str(&fs::read_to_string(&self.stderr_path).unwrap_or_default());
        s
    }
}

/// An IMAP connection from [`Dovecot::appender`], logged in.
#[derive(Debug)]
pub struct Appender {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
}

impl Appender {
    /// `APPEND mailbox {n}` + the message; returns when the server said `OK` (the message is in
    /// the mailbox and IDLE sessions are being told).
    pub fn append(&mut self, mailbox: &str, raw: &[u8]) -> io::Result<()> {
        self.tag += 1;
        let tag = format!("x{}", self.tag);
        write!(
            self.writer,
            "{tag} APPEND {} {{{}}}\r\n",
            imap_quoted(&mutf7(mailbox)),
            raw.len()
        )?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        if !line.starts_with('+') {
            return Err(io::Error::other(format!("APPEND refused: {line:?}")));
        }
        self.writer.write_all(raw)?;
        self.writer.write_all(b"\r\n")?;
        self.finish(&tag)
    }

    /// `LOGOUT`.
    pub fn logout(mut self) -> io::Result<()> {
        self.command("LOGOUT").map(|_| ())
    }

    fn command(&mut self, cmd: &str) -> io::Result<()> {
        self.tag += 1;
        let tag = format!("x{}", self.tag);
        write!(self.writer, "{tag} {cmd}\r\n")?;
        self.finish(&tag)
    }

    /// Reads up to the tagged response; `Ok` for `OK`.
    fn finish(&mut self, tag: &str) -> io::Result<()> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
            if let Some(rest) = line.strip_prefix(tag).and_then(|r| r.strip_prefix(' ')) {
                return if rest.starts_with("OK") {
                    Ok(())
                } else {
                    Err(io::Error::other(format!("{tag}: {}", rest.trim_end())))
                };
            }
        }
    }
}

/// An IMAP quoted string.
fn imap_quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `kill <sig> -- <target>`; true when it succeeded (for `-0`: some process is left).
fn signal(sig: &str, target: &str) -> bool {
    Command::new("kill")
        .args([sig, "--", target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Connects; for the plain ports also waits for the greeting (`* OK` / `+OK`).
fn probe(port: u16, greeting: bool) -> bool {
    let Ok(s) = TcpStream::connect_timeout(
        &(Ipv4Addr::LOCALHOST, port).into(),
        Duration::from_millis(500),
    ) else {
        return false;
    };
    if !greeting {
        return true;
    }
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    let ok = BufReader::new(&s).read_line(&mut line).is_ok()
        && (line.starts_with("* OK") || line.starts_with("+OK"));
    let _ = s.shutdown(std::net::Shutdown::Both);
    ok
}

/// The submission listener answers with an SMTP greeting.
fn probe_smtp(port: u16) -> bool {
    let Ok(s) = TcpStream::connect_timeout(
        &(Ipv4Addr::LOCALHOST, port).into(),
        Duration::from_millis(500),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    let ok = BufReader::new(&s).read_line(&mut line).is_ok() && line.starts_with("220");
    let _ = s.shutdown(std::net::Shutdown::Both);
    ok
}

fn tail_from(path: &Path, from: u64) -> String {
    let mut out = String::new();
    if let Ok(mut f) = File::open(path) {
        use std::io::Seek;
        if f.seek(io::SeekFrom::Start(from)).is_ok() {
            let _ = f.read_to_string(&mut out);
        }
    }
    out
}
