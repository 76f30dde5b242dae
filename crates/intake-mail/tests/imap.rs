//! The IMAP source's fetch contract and bounds: against a real Dovecot (declared sizes in the
//! listing, an oversized message fetched headers-only), and against scripted fake servers on
//! 127.0.0.1 for what no real server can be made to do (a FETCH answer without the body for a
//! UID that still exists; a server that stops sending in the middle of a FETCH).
//!
//! `INTAKE_REQUIRE_DOVECOT=1` turns every skip into a failure.

use std::time::{Duration, Instant};

use intake_mail::source::imap::{ImapAuth, ImapSettings, ImapSource, Tls};
use intake_mail::source::{MailSource, SourceError, Start};
use intake_mail::transport::Timeouts;
use intake_testkit::dovecot::{Dovecot, DovecotOptions};
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const USER: &str = "help@example.test";
const PASSWORD: &str = "s3cret-imap";

fn password() -> ImapAuth {
    ImapAuth::Password {
        user: USER.into(),
        password: SecretString::from(PASSWORD.to_string()),
    }
}

fn mail(id: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Jane <jane@customer.example>\r\nTo: {USER}\r\nSubject: {id}\r\nMessage-ID: <{id}>\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nContent-Type: text/plain\r\n\r\n{body}"
    )
    .into_bytes()
}

/// A real Dovecot: the listing declares every message's `RFC822.SIZE`; a message over the
/// limit comes back as its header section only, marked oversized with its size and the limit;
/// the others whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_declares_sizes_and_an_oversized_message_is_fetched_headers_only() {
    let Some(dc) = Dovecot::start_or_skip(
        "imap_oversized_headers_only",
        &DovecotOptions::with_users(&[(USER, PASSWORD)]),
    ) else {
        return;
    };
    let small = mail("small@x", "short\r\n");
    let big = mail(
        "big@x",
        &"0123456789abcdef0123456789abcdef\r\n".repeat(10_000),
    );
    dc.deliver(USER, &small).unwrap();
    dc.deliver(USER, &big).unwrap();
    let limit = 100_000u64;
    let mut src = ImapSource::connect(&ImapSettings {
        host: "127.0.0.1".into(),
        port: dc.imaps_port,
        tls: Tls::Implicit,
        ca_pem: Some(dc.ca_pem.clone().into_bytes()),
        auth: password(),
        folder: "INBOX".into(),
        proxy: None,
        timeouts: Timeouts::default(),
        max_message_bytes: Some(limit),
    })
    .await
    .unwrap();
    let listing = src.list(None, Start::All, 100).await.unwrap();
    let sizes: Vec<Option<u64>> = listing.items.iter().map(|i| i.size).collect();
    assert_eq!(
        sizes,
        vec![Some(small.len() as u64), Some(big.len() as u64)],
        "RFC822.SIZE of each message, before any download"
    );
    let fetched = MailSource::fetch(&mut src, &listing.items).await.unwrap();
    assert_eq!(fetched.len(), 2);
    assert_eq!(fetched[0].raw, small);
    assert_eq!(fetched[0].oversized, None);
    let head_len = big.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        fetched[1].raw,
        big[..head_len],
        "the header section only, with its empty line"
    );
    let o = fetched[1].oversized.expect("marked oversized");
    assert_eq!((o.size, o.limit), (big.len() as u64, limit));
    // BODY.PEEK: nothing was marked read.
    assert!(src.seen_uids().await.unwrap().is_empty());
    let _ = src.logout().await;
}

/// What the fake server does with one command (`tag`, the rest of the line).
enum Reply {
    /// Send this (the tag is already in it).
    Send(String),
    /// Send this, then nothing more, without closing.
    Stall(String),
}

/// A scripted IMAP server: `* OK` greeting, LOGIN, CAPABILITY, SELECT (UIDVALIDITY 7) and
/// LOGOUT answered as a server would; every other command goes to `script`.
async fn fake_imap(script: fn(&str, &str) -> Reply) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"* OK fake IMAP ready\r\n").await.unwrap();
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.trim_end().to_string();
                    let (tag, cmd) = l.split_once(' ').unwrap_or((&l, ""));
                    let upper = cmd.to_ascii_uppercase();
                    let reply = if upper.starts_with("LOGIN") {
                        Reply::Send(format!("{tag} OK LOGIN done\r\n"))
                    } else if upper.starts_with("CAPABILITY") {
                        Reply::Send(format!(
                            "* CAPABILITY IMAP4rev1 UIDPLUS\r\n{tag} OK done\r\n"
                        ))
                    } else if upper.starts_with("SELECT") {
                        Reply::Send(format!(
                            "* 3 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 7] ok\r\n\
                             * OK [UIDNEXT 4] ok\r\n{tag} OK [READ-WRITE] SELECT done\r\n"
                        ))
                    } else if upper.starts_with("LOGOUT") {
                        Reply::Send(format!("* BYE bye\r\n{tag} OK done\r\n"))
                    } else {
                        script(tag, &upper)
                    };
                    match reply {
                        Reply::Send(s) => {
                            if w.write_all(s.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        Reply::Stall(s) => {
                            let _ = w.write_all(s.as_bytes()).await;
                            tokio::time::sleep(Duration::from_secs(600)).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

fn fake_settings(port: u16, timeouts: Timeouts) -> ImapSettings {
    ImapSettings {
        host: "127.0.0.1".into(),
        port,
        tls: Tls::None,
        ca_pem: None,
        auth: password(),
        folder: "INBOX".into(),
        proxy: None,
        timeouts,
        max_message_bytes: None,
    }
}

const MSG: &str = "From: a@b.example\r\nSubject: one\r\n\r\nbody\r\n";

fn fetch_answer(tag: &str) -> String {
    // UID 1 with its body; UID 2 answered without BODY[] (flags only); UID 3 not at all.
    format!(
        "* 1 FETCH (UID 1 BODY[] {{{}}}\r\n{MSG})\r\n* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n\
         {tag} OK FETCH done\r\n",
        MSG.len()
    )
}

/// Defect 1, source side: a FETCH answer without the body of a UID that still exists (UID
/// SEARCH finds it) is an error naming that UID, never a silent gap in the batch.
#[tokio::test]
async fn a_missing_body_for_a_uid_that_still_exists_is_an_error_naming_it() {
    fn script(tag: &str, cmd: &str) -> Reply {
        if cmd.starts_with("UID FETCH") {
            Reply::Send(fetch_answer(tag))
        } else if cmd.starts_with("UID SEARCH") {
            // UID 2 is still there; UID 3 was expunged.
            Reply::Send(format!("* SEARCH 2\r\n{tag} OK SEARCH done\r\n"))
        } else {
            Reply::Send(format!("{tag} BAD unexpected\r\n"))
        }
    }
    let port = fake_imap(script).await;
    let mut src = ImapSource::connect(&fake_settings(port, Timeouts::default()))
        .await
        .unwrap();
    let err = src.fetch(&[1, 2, 3]).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SourceError::Protocol(_)), "{err:?}");
    assert!(
        text.contains("UID 2 of INBOX") && text.contains("still in the folder"),
        "{text}"
    );
}

/// A UID the server no longer has (expunged since the listing: UID SEARCH does not find it)
/// is left out; what came back is returned.
#[tokio::test]
async fn messages_expunged_since_the_listing_are_left_out() {
    fn script(tag: &str, cmd: &str) -> Reply {
        if cmd.starts_with("UID FETCH") {
            Reply::Send(fetch_answer(tag))
        } else if cmd.starts_with("UID SEARCH") {
            Reply::Send(format!("* SEARCH\r\n{tag} OK SEARCH done\r\n"))
        } else {
            Reply::Send(format!("{tag} BAD unexpected\r\n"))
        }
    }
    let port = fake_imap(script).await;
    let mut src = ImapSource::connect(&fake_settings(port, Timeouts::default()))
        .await
        .unwrap();
    let got = src.fetch(&[1, 2, 3]).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 1);
    assert_eq!(got[0].1.identity, "imap:7:1");
    assert_eq!(got[0].1.raw, MSG.as_bytes());
}

/// Defect 4, source side: a server that stops sending in the middle of a FETCH literal fails
/// the fetch after the command deadline (per read, not per batch), naming the command, the
/// server and the wait.
#[tokio::test]
async fn a_server_that_stalls_mid_fetch_times_out_naming_uid_fetch() {
    fn script(_tag: &str, cmd: &str) -> Reply {
        if cmd.starts_with("UID FETCH") {
            Reply::Stall("* 1 FETCH (UID 1 BODY[] {100000}\r\nFrom: a@b.example\r\n".into())
        } else {
            Reply::Stall(String::new())
        }
    }
    let port = fake_imap(script).await;
    let t = Timeouts::uniform(Duration::from_millis(500));
    let mut src = ImapSource::connect(&fake_settings(port, t)).await.unwrap();
    let start = Instant::now();
    let err = src.fetch(&[1]).await.unwrap_err();
    let took = start.elapsed();
    match &err {
        SourceError::Timeout {
            operation,
            addr,
            after,
        } => {
            assert_eq!(operation, "UID FETCH");
            assert_eq!(addr, &format!("127.0.0.1:{port}"));
            assert_eq!(*after, Duration::from_millis(500));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!("UID FETCH on 127.0.0.1:{port} timed out after 0.5 s")
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// A server that accepts the connection but never greets: the connect fails after the
/// command deadline naming the greeting; one that stops answering after SELECT fails the next
/// command (here the listing's UID SEARCH).
#[tokio::test]
async fn silent_greeting_and_silent_search_time_out_naming_the_stage() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let (_sock, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(600)).await;
    });
    let t = Timeouts::uniform(Duration::from_millis(400));
    let err = ImapSource::connect(&fake_settings(port, t))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SourceError::Timeout { operation, .. } if operation == "greeting"),
        "{err:?}"
    );
    hold.abort();

    fn script(_tag: &str, _cmd: &str) -> Reply {
        Reply::Stall(String::new())
    }
    let port = fake_imap(script).await;
    let mut src = ImapSource::connect(&fake_settings(port, t)).await.unwrap();
    let err = src.list(None, Start::All, 10).await.unwrap_err();
    assert!(
        matches!(&err, SourceError::Timeout { operation, .. } if operation == "UID SEARCH"),
        "{err:?}"
    );
}

/// A connection that dies during IDLE (the server goes silent and never answers DONE) is
/// found: IDLE ends on its own deadline, and DONE's answer is bounded by the command deadline,
/// so `wait_for_change` fails naming it instead of hanging.
#[tokio::test]
async fn a_connection_dead_during_idle_is_found_when_done_gets_no_answer() {
    fn script(_tag: &str, cmd: &str) -> Reply {
        if cmd.starts_with("IDLE") {
            Reply::Stall("+ idling\r\n".into())
        } else {
            Reply::Stall(String::new())
        }
    }
    let port = fake_imap(script).await;
    let t = Timeouts::uniform(Duration::from_millis(400));
    let mut src = ImapSource::connect(&fake_settings(port, t)).await.unwrap();
    let start = Instant::now();
    let err = src
        .wait_for_change(Duration::from_millis(300), std::future::pending())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SourceError::Timeout { operation, .. } if operation.starts_with("DONE")),
        "{err:?}"
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(650) && took < Duration::from_secs(5),
        "IDLE deadline + DONE deadline: {took:?}"
    );
}
