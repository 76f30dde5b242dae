use intake_core::token::{TokenIdentity, TokenSet};
use intake_mail::sasl::Mechanism;
use intake_mail::source::SourceError;
use intake_mail::source::imap::{ImapAuth, ImapSettings, ImapSource, Tls};
use intake_store::{Keyring, Store, now};
use intake_testkit::TestDb;
use intake_testkit::dovecot::{Dovecot, DovecotOptions, mail_access_token};
use intake_testkit::idp::Idp;
use secrecy::SecretString;

use crate::intake;

const USER: &str = "help@example.test";
const KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

fn mail(id: &str, subject: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: Jane <jane@customer.example>\r\nTo: {USER}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: Mon, 23 Nov 2026 10:00:0{} +0000\r\n{extra}Content-Type: text/plain\r\n\r\nBody of {subject}\r\n",
        id.len() % 10
    )
    .into_bytes()
}

fn settings(dc: &Dovecot, auth: ImapAuth) -> ImapSettings {
    ImapSettings {
        host: "127.0.0.1".into(),
        port: dc.imaps_port,
        tls: Tls::Implicit,
        ca_pem: Some(dc.ca_pem.clone().into_bytes()),
        auth,
        folder: "INBOX".into(),
        proxy: None,
        timeouts: Default::default(),
        max_message_bytes: None,
    }
}

fn run_once(cfg: &str, db: &str) -> serde_json::Value {
    let o = intake()
        .args(["--config", cfg, "--db", db, "run", "--once", "--json"])
        .env("IMAP_PW", "s3cret")
        // A killed run leaves its channel lease behind; the next run waits it out.
        .env("INTAKE_LEASE_SECONDS", "2")
        .env("INTAKE_SECRET_KEY", KEY)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A real Dovecot over IMAPS with a password: messages become tickets (a reply a comment),
/// each exactly once, they are marked read only after the commit, and later runs take only what
/// is new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_channel_ingests_once_marks_read_and_resumes_from_its_checkpoint() {
    let Some(dc) = Dovecot::start_or_skip(
        "imap_channel_ingests_once",
        &DovecotOptions::with_users(&[(USER, "s3cret")]),
    ) else {
        return;
    };
    dc.deliver(USER, &mail("a1@x", "Printer broken", ""))
        .unwrap();
    dc.deliver(
        USER,
        &mail(
            "a2@x",
            "Re: Printer broken",
            "In-Reply-To: <a1@x>\r\nReferences: <a1@x>\r\n",
        ),
    )
    .unwrap();
    dc.deliver(USER, &mail("a3@x", "VPN down", "")).unwrap();
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[channel]]\nname = \"helpdesk\"\nproject = \"HELP\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\n\
             tls = \"implicit\"\nca_file = \"file:{}\"\nmailbox = \"{USER}\"\nauth = \"password:env:IMAP_PW\"\nbatch = 2\n",
            dc.imaps_port,
            dc.ca_path.display()
        ),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let v = run_once(&cfg, &db.url);
    assert_eq!(
        (v["created"].as_u64(), v["commented"].as_u64()),
        (Some(2), Some(1)),
        "{v}"
    );
    let mut src = ImapSource::connect(&settings(
        &dc,
        ImapAuth::Password {
            user: USER.into(),
            password: SecretString::from("s3cret".to_string()),
        },
    ))
    .await
    .unwrap();
    assert_eq!(
        src.seen_uids().await.unwrap().len(),
        3,
        "post-action applied after commit"
    );
    let v = run_once(&cfg, &db.url);
    assert_eq!(
        v["created"].as_u64().unwrap()
            + v["commented"].as_u64().unwrap()
            + v["duplicate"].as_u64().unwrap(),
        0,
        "{v}"
    );
    dc.deliver(USER, &mail("a4@x", "New laptop", "")).unwrap();
    let v = run_once(&cfg, &db.url);
    assert_eq!(v["created"], 1, "{v}");
    let store = Store::connect(&db.url).await.unwrap();
    let ledger = store.ledger(Some("helpdesk")).await.unwrap();
    assert_eq!(ledger.len(), 4);
    assert!(ledger.iter().all(|r| {
        r.identity
            .starts_with(&format!("imap:{}:", src.uid_validity()))
    }));
    let _ = src.logout().await;
}

/// XOAUTH2 and OAUTHBEARER with a real token from a real OAuth server, validated by Dovecot;
/// a rejected token surfaces the server's own challenge and text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_oauth_login_with_real_tokens_and_the_servers_rejection_text() {
    let Some(idp) = Idp::start_or_skip("imap_oauth_login") else {
        return;
    };
    let Some(dc) = Dovecot::start_or_skip(
        "imap_oauth_login",
        &DovecotOptions::with_users(&[(USER, "unused")]).introspect(&idp),
    ) else {
        return;
    };
    let token = mail_access_token(&idp, USER).await.unwrap();
    for mechanism in [Mechanism::XOAuth2, Mechanism::OAuthBearer] {
        let auth = ImapAuth::OAuth {
            mechanism,
            user: USER.into(),
            token: SecretString::from(token.clone()),
        };
        let src = ImapSource::connect(&settings(&dc, auth))
            .await
            .unwrap_or_else(|e| panic!("{mechanism:?}: {e}\n{}", dc.log()));
        let _ = src.logout().await;
    }
    let bad = ImapAuth::OAuth {
        mechanism: Mechanism::XOAuth2,
        user: USER.into(),
        token: SecretString::from("garbage".to_string()),
    };
    match ImapSource::connect(&settings(&dc, bad)).await {
        Err(SourceError::Auth {
            server, challenge, ..
        }) => {
            assert!(
                server.contains("AUTHENTICATIONFAILED") || server.contains("Authentication failed"),
                "{server}"
            );
            assert!(
                challenge
                    .as_deref()
                    .is_some_and(|c| c.contains("\"status\":\"401\"")),
                "{challenge:?}"
            );
        }
        other => panic!("expected an auth error, got {other:?}"),
    }

    // The same through `intake run --once` with a stored (encrypted) token.
    dc.deliver(USER, &mail("o1@x", "Via OAuth", "")).unwrap();
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let keys = Keyring::from_base64(KEY, &[]).unwrap();
    let t = TokenSet {
        access_token: SecretString::from(token),
        refresh_token: None,
        expires_at: now() + 3000,
        scopes: vec!["mail".into()],
        id_token: None,
    };
    store
        .tokens("")
        .save_token(&keys, "idp", USER, &t, &TokenIdentity::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[integration]]\nname = \"idp\"\nprovider = \"custom\"\nclient_id = \"{}\"\nclient_secret = \"env:IMAP_PW\"\ngrant = \"authorization_code\"\n\
             authorize_url = \"{}\"\ntoken_url = \"{}\"\nscopes = [\"openid\", \"email\", \"mail\"]\n\n\
             [[channel]]\nname = \"oauth\"\nproject = \"OPS\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"file:{}\"\n\
             mailbox = \"{USER}\"\nauth = \"oauth:idp\"\nsasl = \"oauthbearer\"\n",
            idp.client_id,
            idp.authorization_endpoint(),
            idp.token_endpoint(),
            dc.imaps_port,
            dc.ca_path.display()
        ),
    )
    .unwrap();
    let v = run_once(&cfg.display().to_string(), &db.url);
    assert_eq!(v["created"], 1, "{v}");
}

/// SIGKILL `intake run --once` at several points while it drains 600 messages from Dovecot with
/// `after = "move:Archive"`, then let it finish: every delivered message has exactly one outcome,
/// no ticket is doubled, and every message was moved exactly once (INBOX empty, Archive holds
/// each exactly once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_batch_against_dovecot_each_message_once_and_moved_once() {
    use std::collections::HashSet;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    use intake::mailgen::{GenOptions, generate};
    use intake_store::Table;

    let Some(dc) = Dovecot::start_or_skip(
        "sigkill_mid_batch_against_dovecot",
        &DovecotOptions::with_users(&[(USER, "s3cret")]),
    ) else {
        return;
    };
    const N: usize = 600;
    let mut msgs = Vec::new();
    let stats = generate(
        &GenOptions {
            messages: N,
            seed: 11,
            ..Default::default()
        },
        |_, m| {
            msgs.push(m);
            Ok(())
        },
    )
    .unwrap();
    dc.deliver_many(USER, msgs).unwrap();
    let password = || ImapAuth::Password {
        user: USER.into(),
        password: SecretString::from("s3cret".to_string()),
    };
    let mut admin = ImapSource::connect(&settings(&dc, password()))
        .await
        .unwrap();
    admin.ensure_folder("Archive").await.unwrap();
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[channel]]\nname = \"helpdesk\"\nproject = \"HELP\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\n\
             ca_file = \"file:{}\"\nmailbox = \"{USER}\"\nauth = \"password:env:IMAP_PW\"\nbatch = 25\nstart = \"all\"\nafter = \"move:Archive\"\n",
            dc.imaps_port,
            dc.ca_path.display()
        ),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let mut kills = Vec::new();
    for threshold in [50_i64, 200, 400] {
        let mut child = intake()
            .args(["--config", &cfg, "--db", &db.url, "run", "--once", "--json"])
            .env("IMAP_PW", "s3cret")
            // A killed run leaves its channel lease behind; the next run waits it out.
            .env("INTAKE_LEASE_SECONDS", "2")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none()
            && store.count(Table::Ledger).await.unwrap() < threshold
            && started.elapsed() < Duration::from_secs(60)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills.push(store.count(Table::Ledger).await.unwrap());
    }
    assert!(
        kills.iter().filter(|n| **n > 0 && **n < N as i64).count() >= 2,
        "kills landed mid-run: {kills:?}"
    );
    let v = run_once(&cfg, &db.url);
    assert!(v.is_object(), "{v}");
    let ledger = store.ledger(Some("helpdesk")).await.unwrap();
    assert_eq!(
        ledger.len(),
        N,
        "one outcome per delivered message (kills at {kills:?})"
    );
    assert_eq!(
        ledger
            .iter()
            .map(|r| &r.identity)
            .collect::<HashSet<_>>()
            .len(),
        N
    );
    let created = ledger.iter().filter(|r| r.outcome == "created").count() as i64;
    let commented = ledger.iter().filter(|r| r.outcome == "commented").count() as i64;
    assert_eq!(store.count(Table::Tickets).await.unwrap(), created);
    assert_eq!(store.count(Table::Comments).await.unwrap(), commented);
    assert_eq!((created + commented) as u64, stats.messages);
    // Moved exactly once: INBOX is empty, Archive holds N messages with N distinct Message-IDs.
    let _ = admin.logout().await;
    let mut inbox = ImapSource::connect(&settings(&dc, password()))
        .await
        .unwrap();
    assert!(
        inbox.new_uids(None, usize::MAX).await.unwrap().is_empty(),
        "INBOX drained"
    );
    let _ = inbox.logout().await;
    let mut archive_settings = settings(&dc, password());
    archive_settings.folder = "Archive".into();
    let mut archive = ImapSource::connect(&archive_settings).await.unwrap();
    let uids = archive.new_uids(None, usize::MAX).await.unwrap();
    assert_eq!(uids.len(), N, "each message moved once");
    let fetched = archive.fetch(&uids).await.unwrap();
    let ids: HashSet<String> = fetched
        .iter()
        .filter_map(|(_, f)| {
            let text = String::from_utf8_lossy(&f.raw);
            text.lines()
                .find(|l| l.starts_with("Message-ID:"))
                .map(str::to_string)
        })
        .collect();
    assert_eq!(ids.len(), N, "no message duplicated in Archive");
}

/// `intake run` (continuous): IMAP IDLE delivers a message appended while waiting, a server
/// restart is survived (reconnect with backoff), and SIGTERM ends the process cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_picks_up_new_mail_survives_a_server_restart_and_stops_on_sigterm() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let Some(mut dc) = Dovecot::start_or_skip(
        "idle_picks_up_new_mail",
        &DovecotOptions::with_users(&[(USER, "s3cret")]),
    ) else {
        return;
    };
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[channel]]\nname = \"helpdesk\"\nproject = \"HELP\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\n\
             ca_file = \"file:{}\"\nmailbox = \"{USER}\"\nauth = \"password:env:IMAP_PW\"\nmode = \"push\"\npoll_seconds = 20\n",
            dc.imaps_port,
            dc.ca_path.display()
        ),
    )
    .unwrap();
    let mut child = intake()
        .args([
            "--config",
            &cfg.display().to_string(),
            "--db",
            &db.url,
            "run",
        ])
        .env("IMAP_PW", "s3cret")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tickets = |n: i64| {
        let store = store.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if store.count(intake_store::Table::Tickets).await.unwrap() >= n {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    tokio::time::sleep(Duration::from_millis(500)).await; // connected and idling
    dc.deliver(USER, &mail("i1@x", "Arrived during IDLE", ""))
        .unwrap();
    assert!(
        tickets(1).await,
        "IDLE noticed the new message\n{}",
        dc.log()
    );

    dc.restart().unwrap();
    dc.deliver(USER, &mail("i2@x", "After the restart", ""))
        .unwrap();
    assert!(
        tickets(2).await,
        "reconnected after the server restart\n{}",
        dc.log()
    );

    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "intake run did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    let events = store.recent_events(50).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "channel_failed"),
        "the restart was logged as a reconnect: {events:?}"
    );
}

/// RC5 and RC12: `INBOX` is the protocol's case-insensitive name even where folders are
/// localized, post-actions move into non-ASCII folders (modified UTF-7 on the wire), and a second
/// channel with a wrong password fails on its own without stopping the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rc05_localized_folders_and_rc12_one_failing_channel_does_not_stop_another() {
    const OTHER: &str = "sales@example.test";
    let opts = DovecotOptions::with_users(&[(USER, "s3cret"), (OTHER, "right")]).localized();
    let Some(dc) = Dovecot::start_or_skip("rc05_localized_folders", &opts) else {
        return;
    };
    dc.deliver(USER, &mail("l1@x", "Localized", "")).unwrap();
    dc.deliver(OTHER, &mail("l2@x", "Never read", "")).unwrap();
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("intake.toml");
    let ca = dc.ca_path.display().to_string();
    std::fs::write(
        &cfg,
        format!(
            "[[channel]]\nname = \"de\"\nproject = \"HELP\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {p}\nca_file = \"file:{ca}\"\n\
             mailbox = \"{USER}\"\nauth = \"password:env:IMAP_PW\"\nfolder = \"inbox\"\nafter = \"move:Gelöschte Elemente\"\n\n\
             [[channel]]\nname = \"sales\"\nproject = \"SALES\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {p}\nca_file = \"file:{ca}\"\n\
             mailbox = \"{OTHER}\"\nauth = \"password:env:IMAP_PW\"\n",
            p = dc.imaps_port
        ),
    )
    .unwrap();
    // IMAP_PW is right for the first channel only.
    let o = intake()
        .args([
            "--config",
            &cfg.display().to_string(),
            "--db",
            &db.url,
            "run",
            "--once",
            "--json",
        ])
        .env("IMAP_PW", "s3cret")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed channel makes the exit code 1"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["created"], 1, "the good channel ran: {v}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("channel sales") && err.contains("AUTHENTICATIONFAILED"),
        "the server's words: {err}"
    );
    let mut s = settings(
        &dc,
        ImapAuth::Password {
            user: USER.into(),
            password: SecretString::from("s3cret".to_string()),
        },
    );
    s.folder = "Gelöschte Elemente".into();
    let mut trash = ImapSource::connect(&s).await.unwrap();
    assert_eq!(
        trash.new_uids(None, 10).await.unwrap().len(),
        1,
        "moved into the localized folder"
    );
}

/// RC16: the IMAP connection goes through a real HTTP CONNECT proxy (tinyproxy) when the
/// channel names one, and around it for hosts in `no_proxy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rc16_imap_through_a_real_http_connect_proxy_and_no_proxy_bypass() {
    let Some(proxy) = intake_testkit::proxy::TinyProxy::start_or_skip("rc16_imap_through_proxy")
    else {
        return;
    };
    let Some(dc) = Dovecot::start_or_skip(
        "rc16_imap_through_proxy",
        &DovecotOptions::with_users(&[(USER, "s3cret")]),
    ) else {
        return;
    };
    dc.deliver(USER, &mail("p1@x", "Through the proxy", ""))
        .unwrap();
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[channel]]\nname = \"proxied\"\nproject = \"HELP\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"file:{}\"\n\
             mailbox = \"{USER}\"\nauth = \"password:env:IMAP_PW\"\nproxy = \"{}\"\n",
            dc.imaps_port,
            dc.ca_path.display(),
            proxy.url
        ),
    )
    .unwrap();
    let v = run_once(&cfg.display().to_string(), &db.url);
    assert_eq!(v["created"], 1, "{v}");
    let target = format!("127.0.0.1:{}", dc.imaps_port);
    assert!(
        proxy.log().contains(&target),
        "the proxy tunnelled the IMAP connection:\n{}",
        proxy.log()
    );

    let auth = || ImapAuth::Password {
        user: USER.into(),
        password: SecretString::from("s3cret".to_string()),
    };
    let mut s = settings(&dc, auth());
    s.proxy = Some(intake_mail::net::ProxySettings {
        url: proxy.url.clone(),
        no_proxy: vec!["127.0.0.1".into()],
    });
    let before = proxy.log().matches(&target).count();
    let src = ImapSource::connect(&s).await.unwrap();
    let _ = src.logout().await;
    assert_eq!(
        proxy.log().matches(&target).count(),
        before,
        "no_proxy bypassed the proxy"
    );
    // A proxy that refuses is reported as such, naming the proxy.
    s.proxy = Some(intake_mail::net::ProxySettings {
        url: format!("http://127.0.0.1:{}", dc.imap_port),
        no_proxy: vec![],
    });
    let err = ImapSource::connect(&s).await.unwrap_err().to_string();
    assert!(err.contains("proxy"), "{err}");
}

/// POP3 channels against the real Dovecot: new mail becomes tickets once; `after = "delete"`
/// deletes only what is committed; `mark-read` (keep) leaves mail on the server and the ledger
/// keeps later runs from taking it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_channel_ingests_once_and_deletes_only_after_commit() {
    const KEEP: &str = "keep@example.test";
    let Some(dc) = Dovecot::start_or_skip(
        "pop3_channel",
        &DovecotOptions::with_users(&[(USER, "s3cret"), (KEEP, "s3cret")]),
    ) else {
        return;
    };
    for i in 0..3 {
        dc.deliver(USER, &mail(&format!("p{i}@x"), &format!("POP {i}"), ""))
            .unwrap();
    }
    dc.deliver(KEEP, &mail("k1@x", "Kept", "")).unwrap();
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("intake.toml");
    let ca = dc.ca_path.display().to_string();
    std::fs::write(
        &cfg,
        format!(
            "[[channel]]\nname = \"pop\"\nproject = \"HELP\"\nprotocol = \"pop3\"\nhost = \"127.0.0.1\"\nport = {p}\nca_file = \"file:{ca}\"\n\
             mailbox = \"{USER}\"\nauth = \"password:env:IMAP_PW\"\nafter = \"delete\"\nbatch = 2\n\n\
             [[channel]]\nname = \"keep\"\nproject = \"HELP\"\nprotocol = \"pop3\"\nhost = \"127.0.0.1\"\nport = {p}\nca_file = \"file:{ca}\"\n\
             mailbox = \"{KEEP}\"\nauth = \"password:env:IMAP_PW\"\nafter = \"mark-read\"\n",
            p = dc.pop3s_port
        ),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let v = run_once(&cfg, &db.url);
    assert_eq!(v["created"], 4, "{v}");
    let v = run_once(&cfg, &db.url);
    assert_eq!(v["created"], 0, "nothing twice: {v}");
    let pop = |user: &str| intake_mail::source::pop3::Pop3Settings {
        host: "127.0.0.1".into(),
        port: dc.pop3s_port,
        tls: Tls::Implicit,
        ca_pem: Some(dc.ca_pem.clone().into_bytes()),
        auth: intake_mail::source::pop3::Pop3Auth::Password {
            user: user.into(),
            password: SecretString::from("s3cret".to_string()),
        },
        sasl_form: Default::default(),
        proxy: None,
        timeouts: Default::default(),
        max_message_bytes: None,
    };
    let mut deleted = intake_mail::source::pop3::Pop3Source::connect(&pop(USER))
        .await
        .unwrap();
    assert_eq!(
        deleted.stat().await.unwrap().0,
        0,
        "committed messages were deleted"
    );
    let mut kept = intake_mail::source::pop3::Pop3Source::connect(&pop(KEEP))
        .await
        .unwrap();
    assert_eq!(
        kept.stat().await.unwrap().0,
        1,
        "mark-read keeps POP3 mail on the server"
    );
}

/// STARTTLS on IMAP's plain port, and POP3 through the real proxy, against the real servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_starttls_and_pop3_through_the_proxy() {
    let Some(proxy) =
        intake_testkit::proxy::TinyProxy::start_or_skip("imap_starttls_and_pop3_proxy")
    else {
        return;
    };
    let Some(dc) = Dovecot::start_or_skip(
        "imap_starttls_and_pop3_proxy",
        &DovecotOptions::with_users(&[(USER, "s3cret")]),
    ) else {
        return;
    };
    dc.deliver(USER, &mail("s1@x", "StartTLS", "")).unwrap();
    let mut s = settings(
        &dc,
        ImapAuth::Password {
            user: USER.into(),
            password: SecretString::from("s3cret".to_string()),
        },
    );
    s.port = dc.imap_port;
    s.tls = Tls::StartTls;
    let mut src = ImapSource::connect(&s)
        .await
        .unwrap_or_else(|e| panic!("STARTTLS: {e}"));
    assert_eq!(src.new_uids(None, 10).await.unwrap().len(), 1);
    let _ = src.logout().await;
    // Without the test CA, the upgraded connection must fail certificate checks.
    s.ca_pem = None;
    assert!(
        matches!(ImapSource::connect(&s).await, Err(SourceError::Tls { .. })),
        "STARTTLS really upgraded to verified TLS"
    );

    let pop = intake_mail::source::pop3::Pop3Settings {
        host: "127.0.0.1".into(),
        port: dc.pop3s_port,
        tls: Tls::Implicit,
        ca_pem: Some(dc.ca_pem.clone().into_bytes()),
        auth: ImapAuth::Password {
            user: USER.into(),
            password: SecretString::from("s3cret".to_string()),
        },
        sasl_form: Default::default(),
        proxy: Some(intake_mail::net::ProxySettings {
            url: proxy.url.clone(),
            no_proxy: vec![],
        }),
        timeouts: Default::default(),
        max_message_bytes: None,
    };
    let mut p = intake_mail::source::pop3::Pop3Source::connect(&pop)
        .await
        .unwrap();
    assert_eq!(p.stat().await.unwrap().0, 1);
    p.quit().await.unwrap();
    assert!(
        proxy
            .log()
            .contains(&format!("127.0.0.1:{}", dc.pop3s_port)),
        "POP3 went through the proxy:\n{}",
        proxy.log()
    );
}

/// RC16: IMAP (implicit TLS) and POP3 channels through a real SOCKS5 proxy (microsocks) with
/// username/password authentication (a password that needs percent-encoding in the URL): both
/// ingest, the proxy's log names both tunnels, a channel with the wrong proxy password fails on
/// its own with the SOCKS error, a refused target reports the proxy's reply code, and `no_proxy`
/// goes around the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rc16_imap_and_pop3_through_a_real_socks5_proxy() {
    const POP: &str = "pop@example.test";
    const OTHER: &str = "other@example.test";
    let Some(socks) = intake_testkit::proxy::MicroSocks::start_or_skip(
        "rc16_socks5",
        Some(("intake", "p@ss:w0rd")),
    ) else {
        return;
    };
    let Some(dc) = Dovecot::start_or_skip(
        "rc16_socks5",
        &DovecotOptions::with_users(&[(USER, "s3cret"), (POP, "s3cret"), (OTHER, "s3cret")]),
    ) else {
        return;
    };
    dc.deliver(USER, &mail("k1@x", "IMAP via SOCKS", ""))
        .unwrap();
    dc.deliver(POP, &mail("k2@x", "POP3 via SOCKS", ""))
        .unwrap();
    dc.deliver(OTHER, &mail("k3@x", "Never read", "")).unwrap();
    let wrong = format!("socks5://intake:wrong@127.0.0.1:{}", socks.port);
    let ca = dc.ca_path.display().to_string();
    let channels = |proxy: &str, no_proxy: &str| {
        format!(
            "[[channel]]\nname = \"imap-socks\"\nproject = \"HELP\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {i}\n\
             tls = \"implicit\"\nca_file = \"file:{ca}\"\nmailbox = \"{USER}\"\nauth = \"password:env:IMAP_PW\"\n\
             proxy = \"{proxy}\"\nno_proxy = [{no_proxy}]\n\n\
             [[channel]]\nname = \"pop-socks\"\nproject = \"HELP\"\nprotocol = \"pop3\"\nhost = \"127.0.0.1\"\nport = {p}\n\
             ca_file = \"file:{ca}\"\nmailbox = \"{POP}\"\nauth = \"password:env:IMAP_PW\"\nafter = \"delete\"\n\
             proxy = \"{proxy}\"\nno_proxy = [{no_proxy}]\n",
            i = dc.imaps_port,
            p = dc.pop3s_port
        )
    };
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[[channel]]\nname = \"bad-socks\"\nproject = \"HELP\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {}\nca_file = \"file:{ca}\"\nmailbox = \"{OTHER}\"\nauth = \"password:env:IMAP_PW\"\nproxy = \"{wrong}\"\n",
            channels(&socks.url, ""),
            dc.imaps_port
        ),
    )
    .unwrap();
    let o = intake()
        .args([
            "--config",
            &cfg.display().to_string(),
            "--db",
            &db.url,
            "run",
            "--once",
            "--json",
        ])
        .env("IMAP_PW", "s3cret")
        .env("INTAKE_LEASE_SECONDS", "2")
        .env("INTAKE_SECRET_KEY", KEY)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "the bad channel fails: {err}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["created"], 2,
        "IMAP and POP3 ingested through SOCKS5: {v}\n{err}"
    );
    assert!(
        err.contains("channel bad-socks")
            && err.contains(&format!("proxy socks5://127.0.0.1:{}", socks.port))
            && err.contains("SOCKS5 username/password authentication failed")
            && !err.contains("wrong"),
        "the proxy's rejection, without the password: {err}"
    );
    let imap_tunnel = format!("connected to 127.0.0.1:{}", dc.imaps_port);
    let pop_tunnel = format!("connected to 127.0.0.1:{}", dc.pop3s_port);
    let log = socks.log();
    assert!(
        log.contains(&imap_tunnel) && log.contains(&pop_tunnel),
        "microsocks opened both tunnels:\n{log}"
    );

    // The proxy's own reply code, from the real proxy: nothing listens on the target.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = settings(
        &dc,
        ImapAuth::Password {
            user: USER.into(),
            password: SecretString::from("s3cret".to_string()),
        },
    );
    s.port = closed;
    s.proxy = Some(intake_mail::net::ProxySettings {
        url: socks.url.clone(),
        no_proxy: vec![],
    });
    let e = ImapSource::connect(&s).await.map(|_| ()).unwrap_err();
    assert!(
        e.to_string()
            .contains("SOCKS5 reply 0x05: connection refused"),
        "{e}"
    );

    // no_proxy: even with the wrong proxy password, 127.0.0.1 goes direct and nothing new
    // passes the proxy.
    let before = socks.log();
    let tunnels = |l: &str| {
        (
            l.matches(&imap_tunnel).count(),
            l.matches(&pop_tunnel).count(),
        )
    };
    dc.deliver(USER, &mail("k4@x", "IMAP direct", "")).unwrap();
    dc.deliver(POP, &mail("k5@x", "POP3 direct", "")).unwrap();
    std::fs::write(&cfg, channels(&wrong, "\"127.0.0.1\"")).unwrap();
    let v = run_once(&cfg.display().to_string(), &db.url);
    assert_eq!(v["created"], 2, "{v}");
    assert_eq!(
        tunnels(&socks.log()),
        tunnels(&before),
        "no_proxy bypassed the proxy:\n{}",
        socks.log()
    );
}

/// New mail the server reports in answer to a drain's command (here a FETCH) is not repeated
/// when IDLE starts: `wait_for_change` must see it and return at once instead of idling until
/// the next arrival; and IDLE ends on our own deadline even though the server keeps the
/// connection alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_wakes_for_mail_reported_during_a_drain_and_respects_its_deadline() {
    use intake_mail::source::{MailSource, Start};
    use std::time::{Duration, Instant};

    let Some(dc) = Dovecot::start_or_skip(
        "idle_wakes_for_mail_reported_during_a_drain",
        &DovecotOptions::with_users(&[(USER, "s3cret")]),
    ) else {
        return;
    };
    dc.deliver(USER, &mail("w1@x", "First", "")).unwrap();
    let mut src = ImapSource::connect(&settings(
        &dc,
        ImapAuth::Password {
            user: USER.into(),
            password: SecretString::from("s3cret".to_string()),
        },
    ))
    .await
    .unwrap();
    let listing = MailSource::list(&mut src, None, Start::All, 100)
        .await
        .unwrap();
    assert_eq!(listing.items.len(), 1);
    // Mail arrives while the drain is still busy; the server tells us in the FETCH answer.
    dc.deliver(USER, &mail("w2@x", "Second", "")).unwrap();
    let fetched = MailSource::fetch(&mut src, &listing.items).await.unwrap();
    assert_eq!(fetched.len(), 1);
    let t = Instant::now();
    let changed = src
        .wait_for_change(Duration::from_secs(60), std::future::pending::<()>())
        .await
        .unwrap();
    assert!(
        changed,
        "the EXISTS seen during the drain counts as a change"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "no IDLE until the next arrival: {:?}",
        t.elapsed()
    );
    let again = MailSource::list(&mut src, listing.checkpoint.as_deref(), Start::All, 100)
        .await
        .unwrap();
    assert_eq!(again.items.len(), 1, "the second message is listed now");

    // Nothing new: IDLE returns on our deadline with no change.
    let t = Instant::now();
    let changed = src
        .wait_for_change(Duration::from_secs(2), std::future::pending::<()>())
        .await
        .unwrap();
    assert!(!changed);
    assert!(
        t.elapsed() >= Duration::from_secs(2) && t.elapsed() < Duration::from_secs(10),
        "{:?}",
        t.elapsed()
    );
}

/// Defect 6: `intake run --once` with `INTAKE_LOG=trace` against Dovecot, once with a password
/// login and once with an XOAUTH2 token from the test identity provider (whose client secret is
/// configured): stderr has trace output (the run's own `UID FETCH` trace line) but neither the
/// password, nor the token (plain or inside the base64 SASL blob), nor the client secret —
/// async-imap's protocol trace, which carries all of them, is capped whatever INTAKE_LOG says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_never_contain_the_password_token_or_client_secret() {
    use base64::Engine as _;

    const PW: &str = "pw-Trace-7f3a91c2";
    let run = |cfg: &std::path::Path, db: &str, env: &[(&str, &str)]| {
        let mut c = intake();
        c.args([
            "--config",
            &cfg.display().to_string(),
            "--db",
            db,
            "run",
            "--once",
            "--json",
        ])
        .env("INTAKE_LOG", "trace")
        .env("INTAKE_LEASE_SECONDS", "2")
        .env("INTAKE_SECRET_KEY", KEY);
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{err}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["created"], 1, "{v}");
        err
    };
    let traced = |log: &str| {
        assert!(
            log.lines()
                .any(|l| l.contains("TRACE") && l.contains("UID FETCH")),
            "the run logged at trace level (else this test could not fail)"
        );
    };

    // Password login.
    let Some(dc) = Dovecot::start_or_skip(
        "trace_logs_password",
        &DovecotOptions::with_users(&[(USER, PW)]),
    ) else {
        return;
    };
    dc.deliver(USER, &mail("t1@x", "Traced", "")).unwrap();
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[channel]]\nname = \"pw\"\nproject = \"HELP\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\n\
             tls = \"implicit\"\nca_file = \"file:{}\"\nmailbox = \"{USER}\"\nauth = \"password:env:IMAP_PW\"\n",
            dc.imaps_port,
            dc.ca_path.display()
        ),
    )
    .unwrap();
    let log = run(&cfg, &db.url, &[("IMAP_PW", PW)]);
    traced(&log);
    assert!(!log.contains(PW), "the password is in the trace log");
    assert!(!log.contains("LOGIN"), "the LOGIN line is not traced");

    // XOAUTH2 with a real token; the integration's client secret is configured.
    let Some(idp) = Idp::start_or_skip("trace_logs_oauth") else {
        return;
    };
    let Some(dc) = Dovecot::start_or_skip(
        "trace_logs_oauth",
        &DovecotOptions::with_users(&[(USER, "unused")]).introspect(&idp),
    ) else {
        return;
    };
    dc.deliver(USER, &mail("t2@x", "Traced OAuth", "")).unwrap();
    let token = mail_access_token(&idp, USER).await.unwrap();
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let keys = Keyring::from_base64(KEY, &[]).unwrap();
    let t = TokenSet {
        access_token: SecretString::from(token.clone()),
        refresh_token: None,
        expires_at: now() + 3000,
        scopes: vec!["mail".into()],
        id_token: None,
    };
    store
        .tokens("")
        .save_token(&keys, "idp", USER, &t, &TokenIdentity::default())
        .await
        .unwrap();
    let cfg = dir.path().join("oauth.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[integration]]\nname = \"idp\"\nprovider = \"custom\"\nclient_id = \"{}\"\nclient_secret = \"env:IDP_SECRET\"\ngrant = \"authorization_code\"\n\
             authorize_url = \"{}\"\ntoken_url = \"{}\"\nscopes = [\"openid\", \"email\", \"mail\"]\n\n\
             [[channel]]\nname = \"oauth\"\nproject = \"OPS\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"file:{}\"\n\
             mailbox = \"{USER}\"\nauth = \"oauth:idp\"\nsasl = \"xoauth2\"\n",
            idp.client_id,
            idp.authorization_endpoint(),
            idp.token_endpoint(),
            dc.imaps_port,
            dc.ca_path.display()
        ),
    )
    .unwrap();
    let log = run(&cfg, &db.url, &[("IDP_SECRET", idp.client_secret.as_str())]);
    traced(&log);
    let blob = base64::engine::general_purpose::STANDARD
        .encode(format!("user={USER}\x01auth=Bearer {token}\x01\x01"));
    assert!(
        !log.contains(&token),
        "the access token is in the trace log"
    );
    assert!(!log.contains(&blob), "the XOAUTH2 blob is in the trace log");
    assert!(
        !log.contains(&idp.client_secret),
        "the client secret is in the trace log"
    );
}

/// An access and a refresh token for `login` from `idp` (authorization code flow with PKCE and
/// `offline_access`, as client `intake` with its secret).
async fn offline_tokens(idp: &Idp, login: &str) -> (String, String) {
    use intake_testkit::idp::{pkce_pair, random_token};
    let redirect_uri = "http://127.0.0.1/callback";
    let (verifier, challenge) = pkce_pair();
    let mut url = reqwest::Url::parse(idp.authorization_endpoint()).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &idp.client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", "openid email mail offline_access")
        .append_pair("prompt", "consent")
        .append_pair("state", &random_token())
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("login_hint", login);
    let back = idp.browser_login_as(url.as_str(), login).await.unwrap();
    let back = reqwest::Url::parse(&back).unwrap();
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code in {back}"));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let body: serde_json::Value = http
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
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        body["access_token"].as_str().expect("access token").into(),
        body["refresh_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no refresh token: {body}"))
            .into(),
    )
}

/// Defect 6 over POP3 and through a token refresh, with `INTAKE_LOG=trace`: a POP3 password
/// login (`USER`/`PASS`), a POP3 XOAUTH2 login with a fresh token, and a POP3 OAUTHBEARER
/// login whose stored token has expired, so `intake run` first refreshes it at the test IdP
/// (the client secret and the refresh token go over the wire; the IdP rotates the refresh
/// token). Each run emits TRACE lines (the POP3 command trace), and stderr never holds the
/// password, an access token (old or refreshed, plain or inside its base64 SASL blob), a
/// refresh token (old or rotated) or the client secret (plain or as Basic credentials).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_over_pop3_and_a_token_refresh_never_contain_secrets() {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use secrecy::ExposeSecret as _;

    const PW: &str = "pw-Pop3-Trace-5e2b7d41";
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, toml: String, db: &str, env: &[(&str, &str)]| {
        let cfg = dir.path().join(format!("{name}.toml"));
        std::fs::write(&cfg, toml).unwrap();
        let mut c = intake();
        c.args([
            "--config",
            &cfg.display().to_string(),
            "--db",
            db,
            "run",
            "--once",
            "--json",
        ])
        .env("INTAKE_LOG", "trace")
        .env("INTAKE_LEASE_SECONDS", "2")
        .env("INTAKE_SECRET_KEY", KEY);
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{name}: {err}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["created"], 1, "{name}: {v}");
        assert!(
            err.lines()
                .any(|l| l.contains("TRACE") && l.contains("POP3 command")),
            "{name}: the run logged POP3 at trace level (else this test could not fail)"
        );
        err
    };
    let pop3 = |name: &str, port: u16, ca: &std::path::Path, auth: &str| {
        format!(
            "[[channel]]\nname = \"{name}\"\nproject = \"HELP\"\nprotocol = \"pop3\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             tls = \"implicit\"\nca_file = \"file:{}\"\nmailbox = \"{USER}\"\n{auth}\nafter = \"delete\"\n",
            ca.display()
        )
    };

    // POP3 USER/PASS.
    let Some(dc) = Dovecot::start_or_skip(
        "trace_pop3_password",
        &DovecotOptions::with_users(&[(USER, PW)]),
    ) else {
        return;
    };
    dc.deliver(USER, &mail("p1@x", "Traced POP3", "")).unwrap();
    let db = TestDb::sqlite();
    let log = run(
        "pw",
        pop3(
            "pw",
            dc.pop3s_port,
            &dc.ca_path,
            "auth = \"password:env:POP_PW\"",
        ),
        &db.url,
        &[("POP_PW", PW)],
    );
    assert!(!log.contains(PW), "the password is in the trace log");
    assert!(
        log.lines()
            .any(|l| l.contains("TRACE") && l.contains("POP3 command") && l.contains("PASS")),
        "the PASS command is traced by name only"
    );
    drop(dc);

    // POP3 OAuth against Dovecot introspecting the test IdP's tokens.
    let Some(idp) = Idp::start_or_skip("trace_pop3_oauth") else {
        return;
    };
    let Some(dc) = Dovecot::start_or_skip(
        "trace_pop3_oauth",
        &DovecotOptions::with_users(&[(USER, "unused")]).introspect(&idp),
    ) else {
        return;
    };
    let integration = format!(
        "[[integration]]\nname = \"idp\"\nprovider = \"custom\"\nclient_id = \"{}\"\nclient_secret = \"env:IDP_SECRET\"\ngrant = \"authorization_code\"\n\
         authorize_url = \"{}\"\ntoken_url = \"{}\"\nscopes = [\"openid\", \"email\", \"mail\", \"offline_access\"]\n\n",
        idp.client_id,
        idp.authorization_endpoint(),
        idp.token_endpoint(),
    );
    let secret = idp.client_secret.clone();
    let basic = STANDARD.encode(format!("{}:{}", idp.client_id, secret));
    let env = [("IDP_SECRET", secret.as_str())];
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let keys = Keyring::from_base64(KEY, &[]).unwrap();
    let save = |access: &str, refresh: Option<&str>, expires_at: i64| TokenSet {
        access_token: SecretString::from(access.to_string()),
        refresh_token: refresh.map(|r| SecretString::from(r.to_string())),
        expires_at,
        scopes: vec!["mail".into()],
        id_token: None,
    };
    let no_secrets = |log: &str, what: &str| {
        assert!(
            !log.contains(&secret),
            "{what}: the client secret is in the trace log"
        );
        assert!(
            !log.contains(&basic),
            "{what}: the Basic credentials are in the trace log"
        );
    };

    // XOAUTH2 with a fresh access token.
    dc.deliver(USER, &mail("p2@x", "Traced POP3 XOAUTH2", ""))
        .unwrap();
    let token = mail_access_token(&idp, USER).await.unwrap();
    store
        .tokens("")
        .save_token(
            &keys,
            "idp",
            USER,
            &save(&token, None, now() + 3000),
            &TokenIdentity::default(),
        )
        .await
        .unwrap();
    let log = run(
        "xoauth2",
        format!(
            "{integration}{}",
            pop3(
                "xoauth2",
                dc.pop3s_port,
                &dc.ca_path,
                "auth = \"oauth:idp\"\nsasl = \"xoauth2\""
            )
        ),
        &db.url,
        &env,
    );
    let blob = STANDARD.encode(intake_mail::sasl::xoauth2(USER, &token));
    assert!(
        !log.contains(&token),
        "the access token is in the trace log"
    );
    assert!(!log.contains(&blob), "the XOAUTH2 blob is in the trace log");
    no_secrets(&log, "xoauth2");

    // OAUTHBEARER after a refresh: the stored access token has expired.
    dc.deliver(USER, &mail("p3@x", "Traced POP3 refresh", ""))
        .unwrap();
    let (old_access, old_refresh) = offline_tokens(&idp, USER).await;
    store
        .tokens("")
        .save_token(
            &keys,
            "idp",
            USER,
            &save(&old_access, Some(&old_refresh), now() - 60),
            &TokenIdentity::default(),
        )
        .await
        .unwrap();
    let log = run(
        "refresh",
        format!(
            "{integration}{}",
            pop3(
                "refresh",
                dc.pop3s_port,
                &dc.ca_path,
                "auth = \"oauth:idp\"\nsasl = \"oauthbearer\""
            )
        ),
        &db.url,
        &env,
    );
    let stored = store
        .tokens("")
        .load_token(&keys, "idp", USER)
        .await
        .unwrap()
        .unwrap();
    let new_access = stored.tokens.access_token.expose_secret().to_string();
    let new_refresh = stored
        .tokens
        .refresh_token
        .as_ref()
        .expect("the rotated refresh token is stored")
        .expose_secret()
        .to_string();
    assert_ne!(new_access, old_access, "the run refreshed the token");
    assert_ne!(
        new_refresh, old_refresh,
        "the IdP rotated the refresh token"
    );
    assert!(stored.expires_at > now(), "the refreshed token is fresh");
    for (what, value) in [
        ("the expired access token", &old_access),
        ("the refresh token sent", &old_refresh),
        ("the refreshed access token", &new_access),
        ("the rotated refresh token", &new_refresh),
    ] {
        assert!(!log.contains(value.as_str()), "{what} is in the trace log");
    }
    let blob = STANDARD.encode(intake_mail::sasl::oauthbearer(
        USER,
        "127.0.0.1",
        dc.pop3s_port,
        &new_access,
    ));
    assert!(
        !log.contains(&blob),
        "the OAUTHBEARER blob is in the trace log"
    );
    no_secrets(&log, "refresh");
}

/// The `intake` process's peak resident set (VmHWM, bytes), sampled from /proc until it exits;
/// returns its output and the peak.
fn peak_rss(mut cmd: std::process::Command) -> (std::process::Output, u64) {
    use std::io::Read as _;
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let _ = so.read_to_end(&mut out);
        out
    });
    let t2 = std::thread::spawn(move || {
        let _ = se.read_to_end(&mut err);
        err
    });
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(&status_path)
            && let Some(kb) = s
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        {
            peak = peak.max(kb * 1024);
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let stdout = t1.join().unwrap();
    let stderr = t2.join().unwrap();
    (
        std::process::Output {
            status,
            stdout,
            stderr,
        },
        peak,
    )
}

/// A ~40 MB message: a short text part and a base64 attachment of 30,000,000 pseudo-random
/// bytes (over the 25 MiB attachment limit, so it is noted, not stored).
fn forty_mb_mail(n: usize) -> Vec<u8> {
    use base64::Engine as _;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ n as u64;
    let bytes: Vec<u8> = (0..30_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let mut m = format!(
        "From: Jane <jane@customer.example>\r\nTo: {USER}\r\nSubject: Big {n}\r\nMessage-ID: <big{n}@x>\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
         Scan attached.\r\n--b\r\nContent-Type: application/octet-stream; name=\"scan.bin\"\r\n\
         Content-Disposition: attachment; filename=\"scan.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    for line in b64.as_bytes().chunks(76) {
        m.extend_from_slice(line);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--b--\r\n");
    m
}

/// Defect 5's measurement: `intake run --once` drains a mailbox of ten ~40 MB messages over
/// IMAP with its peak RSS (VmHWM) under 300 MB — once with `max_message_bytes` = 25 MiB (each
/// is quarantined from its headers, nothing downloaded) and once with the default 100 MiB (each
/// downloaded and ingested: batches bounded in bytes by the declared sizes). The figures are
/// printed (`--nocapture`) and recorded in docs/BENCHMARKS.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_40_mb_messages_over_imap_keep_peak_rss_under_300_mb() {
    const LIMIT: u64 = 300 * 1000 * 1000;
    let users = [
        ("big1@example.test", "s3cret"),
        ("big2@example.test", "s3cret"),
    ];
    let Some(dc) =
        Dovecot::start_or_skip("ten_40_mb_messages", &DovecotOptions::with_users(&users))
    else {
        return;
    };
    let mut size = 0;
    for n in 0..10 {
        let m = forty_mb_mail(n);
        size = m.len();
        for (u, _) in users {
            dc.deliver(u, &m).unwrap();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    for (i, (user, rules, expect)) in [
        (
            users[0].0,
            "[rules]\nmax_message_bytes = 26214400\n\n",
            "quarantined",
        ),
        (users[1].0, "", "created"),
    ]
    .into_iter()
    .enumerate()
    {
        let db = TestDb::sqlite();
        let cfg = dir.path().join(format!("big{i}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "{rules}[[channel]]\nname = \"big\"\nproject = \"BIG\"\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\n\
                 tls = \"implicit\"\nca_file = \"file:{}\"\nmailbox = \"{user}\"\nauth = \"password:env:IMAP_PW\"\nstart = \"all\"\n",
                dc.imaps_port,
                dc.ca_path.display()
            ),
        )
        .unwrap();
        let mut cmd = intake();
        cmd.args([
            "--config",
            &cfg.display().to_string(),
            "--db",
            &db.url,
            "run",
            "--once",
            "--json",
        ])
        .env("IMAP_PW", "s3cret")
        .env("INTAKE_SECRET_KEY", KEY);
        let started = std::time::Instant::now();
        let (o, peak) = peak_rss(cmd);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        println!(
            "ten messages of {size} bytes, {expect}: peak RSS {:.1} MB in {:.1} s ({v})",
            peak as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        assert_eq!(v[expect], 10, "{v}");
        assert!(peak > 0, "VmHWM was read");
        assert!(
            peak < LIMIT,
            "{expect}: peak RSS {peak} bytes is over 300 MB"
        );
    }
}
