//! `intake doctor`: the staged connection check counts a flooded inbox without fetching it
//! (RC15), names the failing stage and host:port (RC7), and changes nothing on the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use intake_store::{Store, Table};
use intake_testkit::TestDb;
use intake_testkit::dovecot::{Dovecot, DovecotOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::intake;

const USER: &str = "help@example.test";

/// A TCP relay on 127.0.0.1 counting the bytes the server sends.
async fn counting_relay(target: u16) -> (u16, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let from_server = Arc::new(AtomicU64::new(0));
    let counter = from_server.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(("127.0.0.1", target))
                .await
                .unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                    let _ = sw.shutdown().await;
                };
                let down = async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                counter.fetch_add(n as u64, Ordering::Relaxed);
                                if cw.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                };
                tokio::join!(up, down);
            });
        }
    });
    (port, from_server)
}

fn doctor(cfg: &std::path::Path, db: &str) -> (i32, serde_json::Value) {
    let o = intake()
        .args([
            "--config",
            &cfg.display().to_string(),
            "--db",
            db,
            "doctor",
            "--json",
        ])
        .env("IMAP_PW", "s3cret")
        .env("WRONG_PW", "not-the-password")
        .env("EMPTY_PW", "")
        .output()
        .unwrap();
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code().unwrap_or(-1), v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rc15_doctor_counts_a_flooded_inbox_without_fetching_and_rc7_names_the_stage() {
    let Some(dc) = Dovecot::start_or_skip(
        "rc15_doctor_counts",
        &DovecotOptions::with_users(&[(USER, "s3cret")]),
    ) else {
        return;
    };
    const N: usize = 3000;
    let body = "x".repeat(1500);
    let msgs: Vec<Vec<u8>> = (0..N)
        .map(|n| {
            format!(
                "From: c{n}@example.org\r\nSubject: flood {n}\r\nMessage-ID: <flood{n}@x>\r\n\r\n{body}\r\n"
            )
            .into_bytes()
        })
        .collect();
    let total_bytes: usize = msgs.iter().map(Vec::len).sum();
    dc.deliver_many(USER, msgs).unwrap();
    let (relay, from_server) = counting_relay(dc.imap_port).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // nothing listens there any more
    let maildir = tempfile::tempdir().unwrap();
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.path().join(sub)).unwrap();
    }
    std::fs::write(maildir.path().join("new/1.a"), b"Subject: a\r\n\r\nx\r\n").unwrap();
    std::fs::write(
        maildir.path().join("cur/2.b:2,S"),
        b"Subject: b\r\n\r\nx\r\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("intake.toml");
    let chan = |name: &str, protocol: &str, port: u16, pw: &str| {
        format!(
            "[[channel]]\nname = \"{name}\"\nproject = \"HELP\"\nprotocol = \"{protocol}\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             tls = \"none\"\nmailbox = \"{USER}\"\nauth = \"password:env:{pw}\"\n\n"
        )
    };
    let toml = [
        chan("flooded", "imap", relay, "IMAP_PW"),
        chan("pop", "pop3", dc.pop3_port, "IMAP_PW"),
        chan("closed", "imap", closed, "IMAP_PW"),
        chan("wrongpw", "imap", dc.imap_port, "WRONG_PW"),
        chan("wrongpop", "pop3", dc.pop3_port, "WRONG_PW"),
        chan("emptypw", "imap", dc.imap_port, "EMPTY_PW"),
        format!(
            "[[channel]]\nname = \"local\"\nproject = \"HELP\"\nprotocol = \"maildir\"\npath = \"{}\"\n",
            maildir.path().display()
        ),
    ]
    .concat();
    std::fs::write(&cfg, toml).unwrap();
    let db = TestDb::sqlite();
    let (code, v) = doctor(&cfg, &db.url);
    assert_eq!(code, 1, "two channels fail: {v}");
    let by = |name: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["channel"] == name)
            .unwrap_or_else(|| panic!("{name} in {v}"))
            .clone()
    };

    let f = by("flooded");
    assert_eq!(f["ok"], true, "{f}");
    assert_eq!(f["counts"]["messages"], N as u64, "{f}");
    assert_eq!(f["counts"]["unread"], N as u64, "{f}");
    let stages: Vec<_> = f["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stages, ["dns", "tcp", "login", "folder", "counts"], "{f}");
    let received = from_server.load(Ordering::Relaxed);
    assert!(
        received < 8 * 1024,
        "the check read {received} bytes from the server for a {total_bytes}-byte inbox"
    );

    let p = by("pop");
    assert_eq!(p["ok"], true, "{p}");
    assert_eq!(p["counts"]["messages"], N as u64, "{p}");
    assert!(p["counts"]["unread"].is_null(), "{p}");

    let c = by("closed");
    assert_eq!(c["ok"], false);
    let last = c["stages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["stage"], "tcp", "{c}");
    assert_eq!(last["target"], format!("127.0.0.1:{closed}"), "{c}");
    assert_eq!(c["root_cause"]["id"], "RC7", "{c}");

    let w = by("wrongpw");
    let last = w["stages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["stage"], "login", "{w}");
    assert!(
        last["detail"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("authentication failed"),
        "the server's words are kept: {w}"
    );

    // A refused password is PASSWORD_REFUSED with the server's words and a fix naming the
    // channel and the login, on IMAP and POP3 (it was UNDIAGNOSED before).
    for (name, words) in [
        ("wrongpw", "[AUTHENTICATIONFAILED] Authentication failed."),
        ("wrongpop", "[AUTH] Authentication failed."),
    ] {
        let w = by(name);
        assert_eq!(w["ok"], false, "{w}");
        let f = &w["findings"][0];
        assert_eq!(f["code"], "PASSWORD_REFUSED", "{w}");
        assert_eq!(f["severity"], "error", "{w}");
        assert!(f["evidence"].as_str().unwrap().contains(words), "{w}");
        let fix = f["fix"].as_str().unwrap();
        assert!(
            fix.contains(&format!("[[channel]] \"{name}\"")) && fix.contains(USER),
            "{w}"
        );
        assert!(!w.to_string().contains("not-the-password"), "{w}");
    }
    // An empty password is refused before connecting: no login stage, the variable named.
    let e = by("emptypw");
    let stages = e["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 1, "{e}");
    assert_eq!(stages[0]["stage"], "config", "{e}");
    assert!(
        stages[0]["detail"]
            .as_str()
            .unwrap()
            .contains("password from environment variable EMPTY_PW is empty"),
        "{e}"
    );
    assert_eq!(e["findings"][0]["code"], "CONFIG", "{e}");

    let l = by("local");
    assert_eq!(l["counts"]["messages"], 2, "{l}");
    assert_eq!(l["counts"]["unread"], 1, "{l}");

    // Nothing changed: no ledger rows, nothing marked read, the Maildir untouched.
    let store = Store::connect(&db.url).await.unwrap();
    assert_eq!(store.count(Table::Ledger).await.unwrap(), 0);
    assert!(maildir.path().join("new/1.a").exists());
    let (code, v) = doctor(&cfg, &db.url);
    assert_eq!(code, 1);
    assert_eq!(by("flooded")["counts"]["unread"], N as u64, "{v}");
}

/// RC16: environment proxies are used only when configured (`proxy = "env"`): the same
/// `HTTPS_PROXY` is ignored by a channel without it and used (through a real tinyproxy, which
/// logs the CONNECT) by a channel with it; `NO_PROXY` from the environment is honoured then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rc16_environment_proxy_only_when_configured() {
    let Some(dc) = Dovecot::start_or_skip(
        "rc16_environment_proxy",
        &DovecotOptions::with_users(&[(USER, "s3cret")]),
    ) else {
        return;
    };
    let Some(proxy) = intake_testkit::proxy::TinyProxy::start_or_skip("rc16_environment_proxy")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("intake.toml");
    let chan = |name: &str, extra: &str| {
        format!(
            "[[channel]]\nname = \"{name}\"\nproject = \"HELP\"\nhost = \"127.0.0.1\"\nport = {}\n\
             tls = \"none\"\nmailbox = \"{USER}\"\nauth = \"password:env:IMAP_PW\"\n{extra}\n",
            dc.imap_port
        )
    };
    std::fs::write(
        &cfg,
        [chan("plain", ""), chan("envproxy", "proxy = \"env\"\n")].concat(),
    )
    .unwrap();
    let db = TestDb::sqlite();
    let run = |no_proxy: &str| {
        let o = intake()
            .args([
                "--config",
                &cfg.display().to_string(),
                "--db",
                &db.url,
                "doctor",
                "--json",
            ])
            .env("IMAP_PW", "s3cret")
            .env("HTTPS_PROXY", &proxy.url)
            .env("NO_PROXY", no_proxy)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let tcp = |name: &str| {
            v.as_array()
                .unwrap()
                .iter()
                .find(|r| r["channel"] == name)
                .unwrap()["stages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["stage"] == "tcp")
                .unwrap()["detail"]
                .as_str()
                .unwrap()
                .to_string()
        };
        (tcp("plain"), tcp("envproxy"))
    };
    let (plain, via_env) = run("");
    assert_eq!(plain, "direct", "HTTPS_PROXY alone changes nothing");
    assert_eq!(via_env, format!("through proxy 127.0.0.1:{}", proxy.port));
    assert!(
        proxy.log().contains(&format!("127.0.0.1:{}", dc.imap_port)),
        "the tunnel went through tinyproxy: {}",
        proxy.log()
    );
    let (_, bypass) = run("127.0.0.1");
    assert_eq!(
        bypass, "direct",
        "NO_PROXY from the environment is honoured"
    );
}
