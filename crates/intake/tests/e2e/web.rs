//! The admin web UI in a real browser: Debian's headless Chromium driven by playwright-core
//! (tests/browser/run.mjs, installed by scripts/testbed/browser.sh) against a real
//! `intake serve` with a Maildir channel taking mail while the pages are open. Screenshots of
//! every page land in `target/web-screenshots/` (docs/ui.md shows some of them).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use intake_testkit::TestDb;
use sha2::{Digest, Sha256};

use crate::serve::{Node, admin_token, create_admin};

const PASSWORD: &str = "a long enough password";
/// A fixed at-rest key (base64 of 32 bytes).
const TEST_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn browser_dir() -> PathBuf {
    crate::repo().join("tests/browser")
}

/// Whether Chromium and the npm packages are installed; without them the test fails when
/// INTAKE_REQUIRE_BROWSER=1 (as `./scripts/test` sets it) and is skipped visibly otherwise.
fn browser_ready() -> bool {
    let ok = Path::new("/usr/bin/chromium").exists()
        && browser_dir()
            .join("node_modules/playwright-core/package.json")
            .exists()
        && browser_dir()
            .join("node_modules/axe-core/axe.min.js")
            .exists();
    if !ok {
        assert!(
            std::env::var("INTAKE_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "INTAKE_REQUIRE_BROWSER=1 but chromium or tests/browser/node_modules is missing: run `bash scripts/testbed/browser.sh install`"
        );
        eprintln!(
            "SKIPPED: no /usr/bin/chromium or tests/browser/node_modules (scripts/testbed/browser.sh install)"
        );
    }
    ok
}

/// Drop one message into a Maildir the way a delivery agent does (tmp/ then rename to new/).
fn deliver(root: &Path, name: &str, bytes: &[u8]) {
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let tmp = root.join("tmp").join(name);
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, root.join("new").join(name)).unwrap();
}

fn with_attachment(data: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    format!(
        "From: Ann Example <ann@example.com>\r\nTo: help@example.com\r\nSubject: Printer on fire\r\n\
Message-ID: <first@example.com>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
The printer on floor 3 is on fire. Log attached.\r\n--b1\r\nContent-Type: application/octet-stream\r\n\
Content-Disposition: attachment; filename=\"printer-log.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b1--\r\n"
    )
    .into_bytes()
}

const REPLY: &str = "From: Ann Example <ann@example.com>\r\nTo: help@example.com\r\nSubject: Re: Printer on fire\r\n\
Message-ID: <second@example.com>\r\nIn-Reply-To: <first@example.com>\r\nReferences: <first@example.com>\r\n\
Date: Mon, 1 Jan 2024 11:00:00 +0000\r\n\r\nThe fire is out, the printer is not.\r\n";

/// No From: quarantined, with markup that must show as text.
const HOSTILE: &str = "Subject: <b>hostile</b>\r\nContent-Type: text/html\r\n\r\n\
<script>window.__pwned = 1; alert('pwned')</script><img src=\"http://192.0.2.1/pixel.gif\">\r\n";

async fn wait_for(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A running `intake serve` with a Maildir channel `box` (a ticket HELP-1 with an attachment and
/// a comment, a quarantined message), a channel `broken` whose server refuses connections, and
/// what the browser scripts are told about them.
struct Fixture {
    node: Node,
    _dir: tempfile::TempDir,
    _db: TestDb,
    root: PathBuf,
    attachment: Vec<u8>,
    quarantined: i64,
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn fixture() -> Fixture {
    let db = TestDb::sqlite();
    create_admin(&db.url, "alice", PASSWORD);
    let token = admin_token(&db.url, "alice");
    let env = [
        ("INTAKE_LOG_FORMAT", "json"),
        ("INTAKE_LOG", "info"),
        ("INTAKE_SECRET_KEY", TEST_KEY),
        ("INTAKE_LEASE_SECONDS", "3"),
        ("WEB_TEST_PW", "not used: nothing listens"),
    ];
    let node = Node::start(&db.url, None, &[], &env).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    let attachment: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 256) as u8).collect();
    deliver(&root, "1700000001.M1.host", &with_attachment(&attachment));
    deliver(&root, "1700000002.M2.host", REPLY.as_bytes());
    deliver(&root, "1700000003.M3.host", HOSTILE.as_bytes());

    let c = reqwest::Client::new();
    let r = c
        .post(node.url("/api/channels"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "name": "box", "project": "HELP", "protocol": "maildir",
            "path": root.display().to_string(), "mode": "poll", "poll_seconds": 1,
            "after": "mark-read",
            // Replies are recorded and queued; their delivery fails (nothing listens there)
            // and is retried by the outbox, which the pages do not wait for.
            "send": {"transport": "smtp", "host": "127.0.0.1", "port": closed_port(),
                     "tls": "none", "auth": "password:env:WEB_TEST_PW",
                     "from": "help@example.com"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    // A channel whose server refuses connections: failing on the overview, an alert banner on
    // every page, and a connection test that names the failing stage.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = c
        .post(node.url("/api/channels"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "name": "broken", "project": "HELP", "protocol": "imap", "host": "127.0.0.1",
            "port": closed, "tls": "none", "mailbox": "help@example.test",
            "auth": "password:env:WEB_TEST_PW", "timeout_seconds": 2
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let store = intake_store::Store::connect(&db.url).await.unwrap();
    wait_for(
        "the first ticket with its comment",
        Duration::from_secs(30),
        async || {
            store
                .ticket("HELP-1")
                .await
                .unwrap()
                .is_some_and(|t| t.comments.len() == 1)
        },
    )
    .await;
    let mut id = None;
    wait_for(
        "the quarantined message",
        Duration::from_secs(30),
        async || {
            id = store
                .quarantine_page(1, 10)
                .await
                .unwrap()
                .items
                .first()
                .map(|q| q.id);
            id.is_some()
        },
    )
    .await;
    Fixture {
        node,
        _dir: dir,
        _db: db,
        root,
        attachment,
        quarantined: id.unwrap(),
    }
}

/// Run one browser script against the fixture; fails the test unless every check passed.
fn run_script(f: &Fixture, script: &str) -> PathBuf {
    let shots = crate::repo().join("target/web-screenshots");
    let out = Command::new("node")
        .arg(browser_dir().join(script))
        .current_dir(browser_dir())
        .env("BASE", &f.node.base)
        .env("USER", "alice")
        .env("PASSWORD", PASSWORD)
        .env("SHOTS", &shots)
        .env("MAILDIR", &f.root)
        .env("TICKET", "HELP-1")
        .env("ATTACHMENT", "printer-log.bin")
        .env(
            "ATTACHMENT_SHA256",
            format!("{:x}", Sha256::digest(&f.attachment)),
        )
        .env("QUARANTINED", f.quarantined.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains(" passed, 0 failed"),
        "browser checks of {script} failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        f.node.stderr.lock().unwrap()
    );
    shots
}

/// Log in, every page redirects without a session, navigation, axe audit of every page, the
/// CSRF refusal, a ticket appearing live, the conversation, the attachment byte-identical, the
/// quarantined message as text, an HTML message sanitized (no script, no remote image until
/// asked, against a loopback image host), API tokens created once and revoked (401), no remote
/// request, log out — all in Chromium.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_pages_in_a_real_browser_login_audit_live_tickets_attachments_and_csrf() {
    if !browser_ready() {
        return;
    }
    let f = fixture().await;
    let shots = run_script(&f, "run.mjs");
    for name in [
        "login",
        "overview",
        "tickets",
        "ticket",
        "ticket-html",
        "mail-log",
        "quarantine",
        "quarantined",
        "integrations",
        "channels",
        "admin",
        "admin-token",
    ] {
        assert!(
            shots.join(format!("{name}.png")).exists(),
            "no screenshot {name}.png"
        );
    }
}

/// The same pages with JavaScript off: every page renders, log-in, pause/resume, Test
/// connection, the integration preview, discard and token revocation work as full-page posts,
/// and the live ticket list degrades to a reload link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_pages_work_without_javascript_through_full_page_posts() {
    if !browser_ready() {
        return;
    }
    let f = fixture().await;
    run_script(&f, "nojs.mjs");
}

/// The channel pages against a real Dovecot: a channel created in the form with its folder
/// chosen from the server's list and the first-sync count, Test connection turning every stage
/// ✓ live (each stage on the page before the result), a message appended to Dovecot appearing
/// in the ticket list without a reload, the edit form prefilled with a validation error next to
/// its field, and after editing the password to a wrong one, Test connection failing at login
/// with the server's words and the PASSWORD_REFUSED card with its fix (tests/browser/dovecot.mjs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_form_test_connection_and_live_tickets_against_dovecot_in_a_browser() {
    use intake_testkit::dovecot::{Dovecot, DovecotOptions};
    if !browser_ready() {
        return;
    }
    const MAILBOX: &str = "help@example.test";
    const MAILBOX_PW: &str = "dovecot-pw-1";
    let Some(dc) = Dovecot::start_or_skip(
        "channel_form_test_connection_and_live_tickets_against_dovecot_in_a_browser",
        &DovecotOptions::with_users(&[(MAILBOX, MAILBOX_PW)]).localized(),
    ) else {
        return;
    };
    for n in 1..=2 {
        dc.deliver(
            MAILBOX,
            format!(
                "From: ann@example.com\r\nTo: {MAILBOX}\r\nSubject: waiting {n}\r\nMessage-ID: <waiting-{n}@example.com>\r\n\r\nbody {n}\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    }
    let db = TestDb::sqlite();
    create_admin(&db.url, "alice", PASSWORD);
    let env = [
        ("INTAKE_LOG_FORMAT", "json"),
        ("INTAKE_LOG", "info"),
        ("INTAKE_SECRET_KEY", TEST_KEY),
        ("INTAKE_LEASE_SECONDS", "3"),
    ];
    let node = Node::start(&db.url, None, &[], &env).await;
    let shots = crate::repo().join("target/web-screenshots");
    let out = Command::new("node")
        .arg(browser_dir().join("dovecot.mjs"))
        .current_dir(browser_dir())
        .env("BASE", &node.base)
        .env("USER", "alice")
        .env("PASSWORD", PASSWORD)
        .env("SHOTS", &shots)
        .env("IMAP_PORT", dc.imap_port.to_string())
        .env("MAILBOX", MAILBOX)
        .env("MAILBOX_PASSWORD", MAILBOX_PW)
        .env("WAITING", "2")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains(" passed, 0 failed"),
        "browser checks of dovecot.mjs failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        node.stderr.lock().unwrap()
    );
    let log = node.stderr.lock().unwrap().clone();
    assert!(
        !log.contains(MAILBOX_PW) && !log.contains("not-the-password"),
        "a password reached the server log"
    );
}

/// Authorize from the integrations page against the local OAuth server (oidc-provider with its
/// sign-in page on), in Chromium (tests/browser/oauth.mjs): a custom integration created in the
/// form (a missing token URL refused next to its field first), the browser redirect through
/// the provider's sign-in page back to the flow's page ("authorized as …"), the device code
/// (code, link, a countdown that moves, the panel turning into the result without a reload,
/// the code entered at the provider's device page by another tab; the account is not the
/// mailbox: RC3 in red), an account of another domain by browser redirect (RC11 in red), a
/// device code refused at the provider (the decoded error), the device panel without
/// JavaScript (a reload shows the result), the authorize form refused without the CSRF token,
/// axe on every new panel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_from_the_integrations_page_by_browser_redirect_and_device_code_in_a_browser() {
    use intake_testkit::idp::{Idp, IdpOptions};
    if !browser_ready() {
        return;
    }
    let Some(idp) = Idp::start_with_or_skip(
        "authorize_from_the_integrations_page_by_browser_redirect_and_device_code_in_a_browser",
        &IdpOptions {
            login_form: true,
            ..IdpOptions::default()
        },
    ) else {
        return;
    };
    let db = TestDb::sqlite();
    create_admin(&db.url, "alice", PASSWORD);
    let env = [
        ("INTAKE_LOG_FORMAT", "json"),
        ("INTAKE_LOG", "info"),
        ("INTAKE_SECRET_KEY", TEST_KEY),
        ("INTAKE_LEASE_SECONDS", "3"),
    ];
    let node = Node::start(&db.url, None, &[], &env).await;
    let shots = crate::repo().join("target/web-screenshots");
    let out = Command::new("node")
        .arg(browser_dir().join("oauth.mjs"))
        .current_dir(browser_dir())
        .env("BASE", &node.base)
        .env("USER", "alice")
        .env("PASSWORD", PASSWORD)
        .env("SHOTS", &shots)
        .env("IDP_ISSUER", &idp.issuer)
        .env("AUTHORIZE_URL", idp.authorization_endpoint())
        .env("TOKEN_URL", idp.token_endpoint())
        .env("DEVICE_URL", idp.device_authorization_endpoint())
        .env("CLIENT_ID", &idp.post_client_id)
        .env("CLIENT_SECRET", &idp.client_secret)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains(" passed, 0 failed"),
        "browser checks of oauth.mjs failed:\n{stdout}\n{}\nserver log:\n{}\nidp log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        node.stderr.lock().unwrap(),
        idp.log()
    );
    // The tokens the pages reported are stored for the mailboxes they were for.
    let store = intake_store::Store::connect(&db.url).await.unwrap();
    let keys = intake_store::Keyring::from_base64(TEST_KEY, &[]).unwrap();
    for (mailbox, signed_in) in [
        ("alice@example.com", "alice@example.com"),
        ("help@example.com", "alice@example.com"),
        ("carol@example.com", "carol@example.com"),
        ("dave@example.com", "mallory@other.test"),
    ] {
        let saved = store
            .tokens("")
            .load_token(&keys, "idp", mailbox)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no token stored for {mailbox}"));
        assert_eq!(saved.identity.username.as_deref(), Some(signed_in));
    }
    let log = node.stderr.lock().unwrap().clone();
    assert!(
        !log.contains(&idp.client_secret),
        "the client secret reached the server log"
    );
    for name in [
        "integration-custom-error",
        "integration-authorize",
        "idp-sign-in",
        "authorize-browser-done",
        "authorize-device-pending",
        "authorize-device-mismatch",
        "authorize-device-nojs",
        "authorize-browser-rc11",
        "authorize-device-refused",
    ] {
        assert!(
            shots.join(format!("{name}.png")).exists(),
            "no screenshot {name}.png"
        );
    }
}

/// A channel from the configuration file: its edit page shows the settings read-only and says
/// why (no Save button, the fields disabled), and a save posted anyway is refused with the
/// reason on the page; the file is untouched. A Maildir channel's page says the form is for
/// server channels, and a save posted anyway changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_from_the_configuration_file_is_read_only_on_its_edit_page() {
    let db = TestDb::sqlite();
    create_admin(&db.url, "alice", PASSWORD);
    let token = admin_token(&db.url, "alice");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let cfg = dir.path().join("intake.toml");
    let toml = format!(
        "[[channel]]\nname = \"filed\"\nproject = \"HELP\"\nprotocol = \"maildir\"\npath = \"{}\"\n",
        root.display()
    );
    std::fs::write(&cfg, &toml).unwrap();
    let env = [
        ("INTAKE_SECRET_KEY", TEST_KEY),
        ("INTAKE_LEASE_SECONDS", "3"),
    ];
    let node = Node::start(&db.url, Some(&cfg), &[], &env).await;
    let c = reqwest::Client::new();
    let page = c
        .get(node.url("/channels/filed/edit"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("filed is managed by the configuration file"),
        "{html}"
    );
    assert!(
        html.contains("<fieldset class=\"plain\" disabled>"),
        "{html}"
    );
    assert!(!html.contains("Save the changes"), "{html}");
    let r = c
        .post(node.url("/channels/filed/edit"))
        .bearer_auth(&token)
        .form(&[
            ("project", "OTHER"),
            ("protocol", "maildir"),
            ("auth", "oauth"),
            ("action", "save"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("is managed by the configuration file (--config)"),
        "{html}"
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), toml);

    // A Maildir channel made through the API: the form (server channels) does not show its
    // path, so the page says so instead of saving it as an IMAP channel.
    let r = c
        .post(node.url("/api/channels"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "name": "local", "project": "HELP", "protocol": "maildir",
            "path": root.display().to_string()
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let html = c
        .get(node.url("/channels/local/edit"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("local is a maildir channel"), "{html}");
    assert!(!html.contains("Save the changes"), "{html}");
    let r = c
        .post(node.url("/channels/local/edit"))
        .bearer_auth(&token)
        .form(&[
            ("project", "HELP"),
            ("protocol", "imap"),
            ("action", "save"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let v: serde_json::Value = c
        .get(node.url("/api/channels/local"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["table"]["protocol"], "maildir", "{v}");
}
