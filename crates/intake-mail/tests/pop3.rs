//! The POP3 source against a real Dovecot 2.3 (and, for the OAuth tests, a real OAuth server
//! that Dovecot asks by introspection), plus a few scripted fake servers on 127.0.0.1 for what
//! Dovecot does not do (Exchange's refusal of the one-line AUTH form, bare-LF line endings).
//!
//! `INTAKE_REQUIRE_DOVECOT=1 INTAKE_REQUIRE_IDP=1` turns every skip into a failure.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use intake_mail::sasl::Mechanism;
use intake_mail::source::SourceError;
use intake_mail::source::pop3::{Pop3Auth, Pop3Settings, Pop3Source, SaslForm, Tls};
use intake_testkit::dovecot::{Dovecot, DovecotOptions, mail_access_token};
use intake_testkit::idp::Idp;
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const USER: &str = "help@example.test";
const PASSWORD: &str = "s3cret-pop";

fn mail(id: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Jane <jane@customer.example>\r\nTo: {USER}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nContent-Type: text/plain\r\n\r\n{body}"
    )
    .into_bytes()
}

fn password() -> Pop3Auth {
    Pop3Auth::Password {
        user: USER.into(),
        password: SecretString::from(PASSWORD.to_string()),
    }
}

fn oauth(mechanism: Mechanism, token: &str) -> Pop3Auth {
    Pop3Auth::OAuth {
        mechanism,
        user: USER.into(),
        token: SecretString::from(token.to_string()),
    }
}

fn settings(dc: &Dovecot, tls: Tls, auth: Pop3Auth, sasl_form: SaslForm) -> Pop3Settings {
    Pop3Settings {
        host: "127.0.0.1".into(),
        port: match tls {
            Tls::Implicit => dc.pop3s_port,
            Tls::StartTls | Tls::None => dc.pop3_port,
        },
        tls,
        ca_pem: Some(dc.ca_pem.clone().into_bytes()),
        auth,
        sasl_form,
        proxy: None,
        timeouts: Default::default(),
        max_message_bytes: None,
    }
}

fn dovecot(test: &str) -> Option<Dovecot> {
    Dovecot::start_or_skip(test, &DovecotOptions::with_users(&[(USER, PASSWORD)]))
}

async fn connect(s: &Pop3Settings) -> Pop3Source {
    tokio::time::timeout(Duration::from_secs(30), Pop3Source::connect(s))
        .await
        .expect("connect timed out")
        .unwrap_or_else(|e| panic!("{:?}: {e}", s.auth))
}

/// USER/PASS on the plain port; STAT only counts (and sees new mail on the next session); a
/// wrong password keeps Dovecot's words and never shows the password.
#[tokio::test]
async fn password_login_on_the_plain_port_and_stat_counts() {
    let Some(dc) = dovecot("password_login_on_the_plain_port_and_stat_counts") else {
        return;
    };
    let s = settings(&dc, Tls::None, password(), SaslForm::Auto);
    let mut src = connect(&s).await;
    assert!(src.capabilities().uidl, "{:?}", src.capabilities());
    assert!(
        src.capabilities().has_sasl("PLAIN"),
        "{:?}",
        src.capabilities()
    );
    assert_eq!(src.login_form(), None);
    assert_eq!(src.stat().await.unwrap(), (0, 0));
    src.quit().await.unwrap();

    let a = mail("s1@x", "One", "first\r\n");
    let b = mail("s2@x", "Two", "second\r\n");
    dc.deliver(USER, &a).unwrap();
    dc.deliver(USER, &b).unwrap();
    let mut src = connect(&s).await;
    assert_eq!(
        src.stat().await.unwrap(),
        (2, (a.len() + b.len()) as u64),
        "STAT counts what was delivered"
    );
    src.quit().await.unwrap();
    // STAT changed nothing: a later session sees the same.
    let mut src = connect(&s).await;
    assert_eq!(src.stat().await.unwrap().0, 2);
    src.quit().await.unwrap();

    let wrong = "wrong-password-42";
    let bad = Pop3Settings {
        auth: Pop3Auth::Password {
            user: USER.into(),
            password: SecretString::from(wrong.to_string()),
        },
        ..s.clone()
    };
    let err = Pop3Source::connect(&bad).await.unwrap_err();
    match &err {
        SourceError::Auth {
            mechanism,
            server,
            challenge,
        } => {
            assert_eq!(mechanism, "USER/PASS");
            assert_eq!(server, "-ERR [AUTH] Authentication failed.");
            assert!(challenge.is_none());
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.to_string().contains(wrong) && !format!("{err:?}").contains(wrong));
}

/// POP3S (implicit TLS) trusting the test CA; without the CA the handshake fails.
#[tokio::test]
async fn password_login_over_pop3s_with_the_test_ca() {
    let Some(dc) = dovecot("password_login_over_pop3s_with_the_test_ca") else {
        return;
    };
    dc.deliver(USER, &mail("t1@x", "TLS", "over TLS\r\n"))
        .unwrap();
    let s = settings(&dc, Tls::Implicit, password(), SaslForm::Auto);
    let mut src = connect(&s).await;
    assert_eq!(src.stat().await.unwrap().0, 1);
    assert!(!src.capabilities().stls, "no STLS inside TLS");
    src.quit().await.unwrap();

    let untrusted = Pop3Settings {
        ca_pem: None,
        ..s.clone()
    };
    match Pop3Source::connect(&untrusted).await.unwrap_err() {
        SourceError::Tls { .. } => {}
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

/// STLS on the plain port: CAPA advertises it, the session continues inside TLS.
#[tokio::test]
async fn password_login_after_stls() {
    let Some(dc) = dovecot("password_login_after_stls") else {
        return;
    };
    dc.deliver(USER, &mail("u1@x", "STLS", "upgraded\r\n"))
        .unwrap();
    let s = settings(&dc, Tls::StartTls, password(), SaslForm::Auto);
    let mut src = connect(&s).await;
    assert!(
        !src.capabilities().stls,
        "CAPA after STLS is the protected one (no STLS any more): {:?}",
        src.capabilities()
    );
    assert!(src.greeting().contains("Dovecot"), "{}", src.greeting());
    assert_eq!(src.stat().await.unwrap().0, 1);
    src.quit().await.unwrap();

    // The upgrade really happened: without the CA it fails at the TLS step.
    let untrusted = Pop3Settings { ca_pem: None, ..s };
    match Pop3Source::connect(&untrusted).await.unwrap_err() {
        SourceError::Tls { .. } => {}
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

/// XOAUTH2 and OAUTHBEARER with a real token from the IdP, each in the one-line form, the
/// two-line form and Auto (a short opaque token: one line), on the plain port and over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_logins_in_both_forms_and_auto() {
    let Some(idp) = Idp::start_or_skip("pop3_oauth_logins") else {
        return;
    };
    let Some(dc) = Dovecot::start_or_skip(
        "pop3_oauth_logins",
        &DovecotOptions::with_users(&[(USER, "unused")]).introspect(&idp),
    ) else {
        return;
    };
    dc.deliver(USER, &mail("o1@x", "OAuth", "token\r\n"))
        .unwrap();
    let token = mail_access_token(&idp, USER).await.unwrap();
    for tls in [Tls::None, Tls::Implicit] {
        for mechanism in [Mechanism::XOAuth2, Mechanism::OAuthBearer] {
            for (form, used) in [
                (SaslForm::InitialResponse, SaslForm::InitialResponse),
                (SaslForm::TwoLine, SaslForm::TwoLine),
                (SaslForm::Auto, SaslForm::InitialResponse),
            ] {
                let mut s = settings(&dc, tls, oauth(mechanism, &token), form);
                // On the plain port, go through a recording proxy to see the wire form.
                let sent = if tls == Tls::None {
                    let (port, sent) = recording_proxy(dc.pop3_port).await;
                    s.port = port;
                    Some(sent)
                } else {
                    None
                };
                let mut src = connect(&s).await;
                assert_eq!(
                    src.login_form(),
                    Some(used),
                    "{tls:?} {mechanism:?} {form:?}"
                );
                assert_eq!(src.stat().await.unwrap().0, 1);
                src.quit().await.unwrap();
                if let Some(sent) = sent {
                    let sent = String::from_utf8_lossy(&sent.lock().unwrap()).into_owned();
                    let auth = sent
                        .lines()
                        .find(|l| l.starts_with("AUTH "))
                        .unwrap_or_else(|| panic!("no AUTH in {sent}"));
                    let one_line = auth.trim_end() != format!("AUTH {}", mechanism.name());
                    assert_eq!(
                        one_line,
                        used == SaslForm::InitialResponse,
                        "{mechanism:?} {form:?}: {}",
                        &auth[..auth.len().min(24)]
                    );
                }
            }
        }
    }
    let log = dc.log();
    assert!(
        log.contains("method=XOAUTH2") && log.contains("method=OAUTHBEARER"),
        "{log}"
    );
}

/// A garbage token: Dovecot's `+ <base64 JSON>` challenge is decoded and kept, answered, and
/// its final `-ERR [AUTH] Authentication failed.` survives verbatim, in every form (a long
/// garbage token makes Auto take the two-line form). The token never appears in the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_token_keeps_the_servers_words_and_challenge() {
    let Some(idp) = Idp::start_or_skip("pop3_garbage_token") else {
        return;
    };
    let Some(dc) = Dovecot::start_or_skip(
        "pop3_garbage_token",
        &DovecotOptions::with_users(&[(USER, "unused")]).introspect(&idp),
    ) else {
        return;
    };
    let short = "garbage-token-0123456789";
    let long = format!("garbage-{}", "x".repeat(400));
    for tls in [Tls::None, Tls::Implicit] {
        for mechanism in [Mechanism::XOAuth2, Mechanism::OAuthBearer] {
            for form in [SaslForm::InitialResponse, SaslForm::TwoLine, SaslForm::Auto] {
                for token in [short, long.as_str()] {
                    let s = settings(&dc, tls, oauth(mechanism, token), form);
                    let err =
                        tokio::time::timeout(Duration::from_secs(30), Pop3Source::connect(&s))
                            .await
                            .expect("the challenge was answered (no hang)")
                            .unwrap_err();
                    let what = format!("{tls:?} {mechanism:?} {form:?} {}", token.len());
                    assert!(
                        !err.to_string().contains(token) && !format!("{err:?}").contains(token),
                        "{what}: the token leaked"
                    );
                    let SourceError::Auth {
                        mechanism: m,
                        server,
                        challenge,
                    } = &err
                    else {
                        panic!("{what}: {err:?}");
                    };
                    assert_eq!(m, mechanism.name());
                    assert_eq!(server, "-ERR [AUTH] Authentication failed.", "{what}");
                    let json: serde_json::Value =
                        serde_json::from_str(challenge.as_deref().expect("challenge kept"))
                            .unwrap_or_else(|e| panic!("{what}: {e}: {challenge:?}"));
                    let want = match mechanism {
                        Mechanism::XOAuth2 => "401",
                        Mechanism::OAuthBearer => "invalid_token",
                    };
                    assert_eq!(json["status"], want, "{what}: {json}");
                    assert_eq!(
                        json["openid-configuration"].as_str(),
                        Some(idp.discovery_url().as_str()),
                        "{what}: {json}"
                    );
                    assert!(err.to_string().contains(want), "{err}");
                }
            }
        }
    }
    assert!(
        dc.log().contains("Introspection failed"),
        "Dovecot really asked the IdP"
    );
}

/// UIDL is the identity: the same `(msgno, uid)` pairs in every session, distinct per
/// message, and unchanged for the survivors after a deletion.
#[tokio::test]
async fn uidl_is_stable_across_connections() {
    let Some(dc) = dovecot("uidl_is_stable_across_connections") else {
        return;
    };
    for i in 0..3 {
        dc.deliver(USER, &mail(&format!("d{i}@x"), &format!("M{i}"), "x\r\n"))
            .unwrap();
    }
    let s = settings(&dc, Tls::Implicit, password(), SaslForm::Auto);
    let mut src = connect(&s).await;
    let first = src.uidl().await.unwrap();
    src.quit().await.unwrap();
    assert_eq!(first.len(), 3, "{first:?}");
    assert_eq!(
        first.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let mut uids: Vec<&String> = first.iter().map(|(_, u)| u).collect();
    uids.dedup();
    assert_eq!(uids.len(), 3);
    let mut src = connect(&s).await;
    assert_eq!(
        src.uidl().await.unwrap(),
        first,
        "same UIDs in a new session"
    );
    let f = src.fetch(2, &first[1].1, None, None).await.unwrap();
    assert_eq!(f.identity, format!("pop3:{}", first[1].1));
    src.dele(1).await.unwrap();
    src.quit().await.unwrap();
    let mut src = connect(&s).await;
    let after: Vec<String> = src.uidl().await.unwrap().into_iter().map(|x| x.1).collect();
    assert_eq!(after, vec![first[1].1.clone(), first[2].1.clone()]);
    src.quit().await.unwrap();
}

/// RETR of a message with lines starting with "." (including a lone "." line, which must not
/// end the message) comes back byte-identical to what was delivered.
#[tokio::test]
async fn retr_unstuffs_dots_and_is_byte_identical() {
    let Some(dc) = dovecot("retr_unstuffs_dots_and_is_byte_identical") else {
        return;
    };
    let body = ".leading dot\r\n..two dots\r\n.\r\n...\r\nmiddle . line\r\n.\r\nend\r\n";
    let raw = mail("dots@x", "Dots", body);
    dc.deliver(USER, &raw).unwrap();
    let plain = mail("plain@x", "Plain", "nothing special\r\n");
    dc.deliver(USER, &plain).unwrap();
    for tls in [Tls::None, Tls::Implicit] {
        let mut src = connect(&settings(&dc, tls, password(), SaslForm::Auto)).await;
        let got = src.retr(1).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&raw),
            "{tls:?}"
        );
        assert_eq!(got, raw);
        // The connection is still in step after the multi-line reply.
        assert_eq!(src.retr(2).await.unwrap(), plain);
        src.quit().await.unwrap();
    }
}

/// DELE marks, QUIT deletes: without QUIT (a crash) the message is still there; with QUIT it
/// is gone.
#[tokio::test]
async fn dele_takes_effect_only_at_quit() {
    let Some(dc) = dovecot("dele_takes_effect_only_at_quit") else {
        return;
    };
    dc.deliver(USER, &mail("k1@x", "Keep", "keep\r\n")).unwrap();
    dc.deliver(USER, &mail("g1@x", "Gone", "gone\r\n")).unwrap();
    let s = settings(&dc, Tls::None, password(), SaslForm::Auto);
    let mut src = connect(&s).await;
    let uids = src.uidl().await.unwrap();
    src.dele(2).await.unwrap();
    // After DELE the session hides it, but nothing is removed yet.
    assert_eq!(src.stat().await.unwrap().0, 1);
    drop(src); // crash: no QUIT
    // Dovecot notices the dropped connection asynchronously; give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut src = connect(&s).await;
    assert_eq!(src.uidl().await.unwrap(), uids, "undeleted without QUIT");
    src.dele(2).await.unwrap();
    src.quit().await.unwrap();
    let mut src = connect(&s).await;
    let left = src.uidl().await.unwrap();
    assert_eq!(left, vec![(1, uids[0].1.clone())]);
    assert!(
        String::from_utf8_lossy(&src.retr(1).await.unwrap()).contains("Subject: Keep"),
        "the right one was deleted"
    );
    // DELE of a message that does not exist keeps the server's words.
    match src.dele(7).await.unwrap_err() {
        SourceError::Refused { command, server } => {
            assert_eq!(command, "DELE 7");
            assert!(server.starts_with("-ERR"), "{server}");
        }
        other => panic!("{other:?}"),
    }
    src.quit().await.unwrap();
}

/// A TCP proxy on 127.0.0.1 to `127.0.0.1:target` (one connection) recording what the client
/// sent.
async fn recording_proxy(target: u16) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent: std::sync::Arc<std::sync::Mutex<Vec<u8>>> = Default::default();
    let sent2 = sent.clone();
    tokio::spawn(async move {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
            return;
        };
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let up = async move {
            let mut buf = [0u8; 4096];
            loop {
                match tokio::io::AsyncReadExt::read(&mut cr, &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        sent2.lock().unwrap().extend_from_slice(&buf[..n]);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = sw.shutdown().await;
        };
        let down = async move {
            let _ = tokio::io::copy(&mut sr, &mut cw).await;
            let _ = cw.shutdown().await;
        };
        tokio::join!(up, down);
    });
    (port, sent)
}

// ---- scripted fake servers (127.0.0.1) for what Dovecot does not do ----

/// The lines each connection to a fake server received.
type Log = std::sync::Arc<std::sync::Mutex<Vec<Vec<String>>>>;

/// A scripted POP3 server: sends `greeting`, then answers each line with `script(connection
/// index, line)` (`None` hangs up). Returns the port and what each connection received.
async fn fake_server(
    greeting: &'static str,
    script: fn(usize, &str) -> Option<String>,
) -> (u16, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log: Log = Default::default();
    let log2 = log.clone();
    tokio::spawn(async move {
        let mut conn_no = 0;
        while let Ok((sock, _)) = listener.accept().await {
            let me = conn_no;
            conn_no += 1;
            log2.lock().unwrap().push(Vec::new());
            let log3 = log2.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
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
                    log3.lock().unwrap()[me].push(l.clone());
                    let Some(reply) = script(me, &l) else { return };
                    // A reply ending in "CLOSE" is sent, then the server hangs up.
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
    (port, log)
}

fn fake_settings(port: u16, auth: Pop3Auth, form: SaslForm) -> Pop3Settings {
    Pop3Settings {
        host: "127.0.0.1".into(),
        port,
        tls: Tls::None,
        ca_pem: None,
        auth,
        sasl_form: form,
        proxy: None,
        timeouts: Default::default(),
        max_message_bytes: None,
    }
}

/// Exchange-like behaviour (RC10): the one-line form gets `-ERR Protocol error. Connection is
/// closed. 10` and the connection is closed; Auto reconnects and logs in with the two-line
/// form. InitialResponse does not fall back and reports Exchange's words.
#[tokio::test]
async fn auto_falls_back_to_two_lines_on_a_new_connection_when_one_line_is_refused() {
    fn script(_conn: usize, l: &str) -> Option<String> {
        Some(match l {
            "CAPA" => "+OK\r\nUIDL\r\nSASL PLAIN XOAUTH2\r\n.\r\n".into(),
            "AUTH XOAUTH2" => "+ \r\n".into(),
            l if l.starts_with("AUTH XOAUTH2 ") => {
                "-ERR Protocol error. Connection is closed. 10\r\nCLOSE".into()
            }
            "STAT" => "+OK 4 400\r\n".into(),
            "QUIT" => "+OK bye\r\n".into(),
            l if STANDARD.decode(l).is_ok_and(|b| b.starts_with(b"user=")) => {
                "+OK User successfully authenticated.\r\n".into()
            }
            _ => "-ERR what\r\n".into(),
        })
    }
    let (port, log) = fake_server("+OK POP3 ready\r\n", script).await;
    let token = "tok-123";
    let mut src = connect(&fake_settings(
        port,
        oauth(Mechanism::XOAuth2, token),
        SaslForm::Auto,
    ))
    .await;
    assert_eq!(src.login_form(), Some(SaslForm::TwoLine));
    assert_eq!(src.stat().await.unwrap(), (4, 400));
    src.quit().await.unwrap();
    {
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 2, "a second connection: {log:?}");
        assert!(log[0][1].starts_with("AUTH XOAUTH2 "), "{log:?}");
        assert_eq!(log[1][1], "AUTH XOAUTH2", "{log:?}");
    }
    let err = Pop3Source::connect(&fake_settings(
        port,
        oauth(Mechanism::XOAuth2, token),
        SaslForm::InitialResponse,
    ))
    .await
    .unwrap_err();
    match &err {
        SourceError::Auth {
            server, challenge, ..
        } => {
            assert_eq!(server, "-ERR Protocol error. Connection is closed. 10");
            assert!(challenge.is_none());
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.to_string().contains(token));
}

/// An Exchange greeting makes Auto use the two-line form straight away, even for a short
/// token; a rejection without a challenge keeps Exchange's text.
#[tokio::test]
async fn auto_uses_two_lines_for_exchange() {
    fn script(_conn: usize, l: &str) -> Option<String> {
        Some(match l {
            "CAPA" => "+OK\r\nUIDL\r\nSASL PLAIN XOAUTH2\r\n.\r\n".into(),
            "AUTH XOAUTH2" => "+ \r\n".into(),
            l if l.starts_with("AUTH XOAUTH2 ") => "-ERR Protocol error.\r\n".into(),
            _ => "-ERR Authentication failure: unknown user name or bad password.\r\n".into(),
        })
    }
    let (port, log) = fake_server(
        "+OK The Microsoft Exchange POP3 service is ready. [QQBNADAAUABSADAA]\r\n",
        script,
    )
    .await;
    let err = Pop3Source::connect(&fake_settings(
        port,
        oauth(Mechanism::XOAuth2, "t"),
        SaslForm::Auto,
    ))
    .await
    .unwrap_err();
    match err {
        SourceError::Auth { server, .. } => assert_eq!(
            server,
            "-ERR Authentication failure: unknown user name or bad password."
        ),
        other => panic!("{other:?}"),
    }
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0][1], "AUTH XOAUTH2", "two-line form first: {log:?}");
}

/// A server with bare LF line endings: replies and multi-line bodies still parse, dots are
/// unstuffed, and the body keeps the server's line endings.
#[tokio::test]
async fn bare_lf_servers_are_understood() {
    fn script(_conn: usize, l: &str) -> Option<String> {
        Some(match l {
            "CAPA" => "+OK\nUIDL\nUSER\n.\n".into(),
            "USER a" | "PASS b" => "+OK\n".into(),
            "UIDL" => "+OK\n1 abc\n2 def\n.\n".into(),
            "RETR 1" => "+OK 30 octets\nSubject: x\n\n..dot\n.\n".into(),
            "STAT" => "+OK 2 60\n".into(),
            "QUIT" => "+OK\n".into(),
            _ => "-ERR no\n".into(),
        })
    }
    let (port, _) = fake_server("+OK hi\n", script).await;
    let mut src = connect(&fake_settings(
        port,
        Pop3Auth::Password {
            user: "a".into(),
            password: SecretString::from("b".to_string()),
        },
        SaslForm::Auto,
    ))
    .await;
    assert_eq!(
        src.uidl().await.unwrap(),
        vec![(1, "abc".to_string()), (2, "def".to_string())]
    );
    assert_eq!(src.retr(1).await.unwrap(), b"Subject: x\n\n.dot\n");
    assert_eq!(src.stat().await.unwrap(), (2, 60));
    src.quit().await.unwrap();
}

/// A one-line `-ERR` that leaves the connection open: Auto retries the two-line form on the
/// same connection; OAUTHBEARER's error challenge is answered with `AQ==` there.
#[tokio::test]
async fn auto_retries_two_lines_on_the_same_connection_and_answers_the_challenge() {
    fn script(_conn: usize, l: &str) -> Option<String> {
        Some(match l {
            "CAPA" => "+OK\r\nSASL OAUTHBEARER\r\n.\r\n".into(),
            "AUTH OAUTHBEARER" => "+ \r\n".into(),
            l if l.starts_with("AUTH OAUTHBEARER ") => "-ERR Protocol error.\r\n".into(),
            // {"status":"invalid_token"}
            l if l.starts_with("bixh") => "+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\r\n".into(),
            "AQ==" => "-ERR Authentication failed (challenge answered).\r\n".into(),
            _ => "-ERR unexpected\r\n".into(),
        })
    }
    let (port, log) = fake_server("+OK ready\r\n", script).await;
    let err = Pop3Source::connect(&fake_settings(
        port,
        oauth(Mechanism::OAuthBearer, "tok"),
        SaslForm::Auto,
    ))
    .await
    .unwrap_err();
    match err {
        SourceError::Auth {
            server, challenge, ..
        } => {
            assert_eq!(server, "-ERR Authentication failed (challenge answered).");
            assert_eq!(challenge.as_deref(), Some(r#"{"status":"invalid_token"}"#));
        }
        other => panic!("{other:?}"),
    }
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 1, "same connection: {log:?}");
    assert!(log[0][1].starts_with("AUTH OAUTHBEARER "), "{log:?}");
    assert_eq!(log[0][2], "AUTH OAUTHBEARER", "{log:?}");
    assert_eq!(log[0][4], "AQ==", "{log:?}");
}

/// Defect 5 on POP3: the listing carries each message's `LIST` size; a message over the limit
/// is fetched with `TOP n 0` (its header section only) and marked oversized; the other whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_sizes_and_an_oversized_message_is_fetched_with_top() {
    use intake_mail::source::pop3::Pop3Mailbox;
    use intake_mail::source::{MailSource, Start};
    let Some(dc) = dovecot("pop3_oversized_top") else {
        return;
    };
    let small = mail("small@x", "small", "short\r\n");
    let big = mail(
        "big@x",
        "big",
        &"0123456789abcdef0123456789abcdef\r\n".repeat(10_000),
    );
    dc.deliver(USER, &small).unwrap();
    dc.deliver(USER, &big).unwrap();
    let limit = 100_000;
    let mut mb = Pop3Mailbox::new(Pop3Settings {
        max_message_bytes: Some(limit),
        ..settings(&dc, Tls::None, password(), SaslForm::Auto)
    });
    let listing = mb.list(None, Start::All, 100).await.unwrap();
    let sizes: Vec<u64> = listing.items.iter().map(|i| i.size.unwrap()).collect();
    assert_eq!(sizes, vec![small.len() as u64, big.len() as u64]);
    let got = mb.fetch(&listing.items).await.unwrap();
    assert_eq!(got[0].raw, small);
    assert_eq!(got[0].oversized, None);
    let head_len = big.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(got[1].raw, big[..head_len], "TOP n 0: the header section");
    let o = got[1].oversized.unwrap();
    assert_eq!((o.size, o.limit), (big.len() as u64, limit));
}

/// A POP3 server that stops answering (here: after the greeting and CAPA, at USER) fails with
/// a timeout naming the command and the server, after the configured deadline.
#[tokio::test]
async fn a_silent_pop3_server_times_out_naming_the_command() {
    fn script(_conn: usize, l: &str) -> Option<String> {
        if l == "CAPA" {
            Some("+OK\r\nUSER\r\nUIDL\r\n.\r\n".into())
        } else {
            // Say nothing, keep the connection: the client must give up by itself.
            Some(String::new())
        }
    }
    let (port, _log) = fake_server("+OK ready\r\n", script).await;
    let s = Pop3Settings {
        timeouts: intake_mail::transport::Timeouts::uniform(Duration::from_millis(400)),
        ..fake_settings(port, password(), SaslForm::Auto)
    };
    let start = std::time::Instant::now();
    let err = Pop3Source::connect(&s).await.unwrap_err();
    assert!(
        matches!(&err, SourceError::Timeout { operation, .. } if operation == "USER"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("USER on 127.0.0.1:{port} timed out after 0.4 s")
    );
    assert!(!err.to_string().contains(PASSWORD));
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// A reply line longer than 64 KiB is refused instead of buffered without bound.
#[tokio::test]
async fn an_endless_reply_line_is_refused() {
    fn script(_conn: usize, l: &str) -> Option<String> {
        match l {
            "CAPA" => Some(format!("+OK {}\r\n", "x".repeat(100_000))),
            _ => None,
        }
    }
    let (port, _log) = fake_server("+OK ready\r\n", script).await;
    let err = Pop3Source::connect(&fake_settings(port, password(), SaslForm::Auto))
        .await
        .unwrap_err();
    assert!(matches!(&err, SourceError::TooLarge(_)), "{err:?}");
    assert!(err.to_string().contains("65536"), "{err}");
}

/// A server that sends more than a message's declared size (plus 1 MiB of slack) in answer to
/// RETR is cut off with an error instead of filling memory.
#[tokio::test]
async fn a_retr_answer_beyond_the_declared_size_is_refused() {
    fn script(_conn: usize, l: &str) -> Option<String> {
        Some(match l {
            "CAPA" => "+OK\r\nUSER\r\nUIDL\r\n.\r\n".into(),
            "USER help@example.test" | "PASS s3cret-pop" => "+OK\r\n".into(),
            "RETR 1" => {
                let line = format!("{}\r\n", "y".repeat(1000));
                format!("+OK\r\nSubject: x\r\n\r\n{}.\r\n", line.repeat(1100))
            }
            _ => "-ERR no\r\n".into(),
        })
    }
    let (port, _log) = fake_server("+OK ready\r\n", script).await;
    let mut src = Pop3Source::connect(&fake_settings(port, password(), SaslForm::Auto))
        .await
        .unwrap();
    // Declared 100 bytes, no limit: the budget is 100 bytes + 1 MiB; 1.1 MB arrive.
    let err = src.fetch(1, "u1", Some(100), None).await.unwrap_err();
    assert!(matches!(&err, SourceError::TooLarge(_)), "{err:?}");
    assert!(err.to_string().contains("RETR 1"), "{err}");
}
