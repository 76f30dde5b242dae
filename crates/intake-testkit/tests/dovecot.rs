//! Smoke tests of the Dovecot test server: password login on IMAP and POP3, delivery into
//! Maildir, IMAPS with the server's certificate, XOAUTH2/OAUTHBEARER with tokens from the
//! oidc-provider IdP, restart on the same ports, localized SPECIAL-USE folders. They skip
//! (visibly) without Dovecot (or the IdP, for the OAuth one), unless INTAKE_REQUIRE_DOVECOT=1
//! (INTAKE_REQUIRE_IDP=1 for the IdP).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use intake_testkit::dovecot::{
    Dovecot, DovecotOptions, mail_access_token, mutf7, oauthbearer_b64, plain_b64, xoauth2_b64,
};
use intake_testkit::idp::Idp;

const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";

fn message(n: usize) -> Vec<u8> {
    format!(
        "From: Sender <sender@example.org>\r\nTo: {ALICE}\r\nSubject: test {n}\r\n\
         Message-ID: <m{n}@example.org>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nbody {n}\r\n"
    )
    .into_bytes()
}

/// A line-based client on a plain port (IMAP or POP3).
struct Conn<S: Read + Write> {
    r: BufReader<S>,
}

impl Conn<TcpStream> {
    fn connect(port: u16) -> Self {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let mut c = Conn {
            r: BufReader::new(s),
        };
        let greeting = c.line();
        assert!(
            greeting.starts_with("* OK") || greeting.starts_with("+OK"),
            "greeting {greeting:?}"
        );
        c
    }
}

impl<S: Read + Write> Conn<S> {
    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("read");
        assert!(!l.is_empty(), "connection closed");
        l.trim_end_matches(['\r', '\n']).to_string()
    }

    fn send(&mut self, text: &str) {
        let s = self.r.get_mut();
        s.write_all(format!("{text}\r\n").as_bytes())
            .expect("write");
        s.flush().expect("flush");
    }

    /// An IMAP command: all lines up to and including the tagged answer.
    fn imap(&mut self, tag: &str, cmd: &str) -> Vec<String> {
        self.send(&format!("{tag} {cmd}"));
        self.until_tag(tag)
    }

    fn until_tag(&mut self, tag: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line();
            let done = l.starts_with(&format!("{tag} "));
            out.push(l);
            if done {
                return out;
            }
        }
    }

    /// A POP3 command with a one-line answer.
    fn pop(&mut self, cmd: &str) -> String {
        self.send(cmd);
        self.line()
    }
}

fn last(lines: &[String]) -> &str {
    lines.last().map(String::as_str).unwrap_or_default()
}

fn users() -> DovecotOptions<'static> {
    DovecotOptions::with_users(&[(ALICE, "alice-pw"), (BOB, "bob-pw")])
}

#[test]
fn password_login_imap_pop3_and_delivery() {
    let t = Instant::now();
    let Some(dc) = Dovecot::start_or_skip("password_login_imap_pop3_and_delivery", &users()) else {
        return;
    };
    eprintln!(
        "dovecot started in {:?}: imap {} imaps {} pop3 {} pop3s {}",
        t.elapsed(),
        dc.imap_port,
        dc.imaps_port,
        dc.pop3_port,
        dc.pop3s_port
    );
    dc.deliver(ALICE, &message(1)).expect("deliver");
    assert_eq!(
        std::fs::read_dir(dc.maildir(ALICE).join("new"))
            .unwrap()
            .count(),
        1
    );

    let mut imap = Conn::connect(dc.imap_port);
    let r = imap.imap("a1", &format!("LOGIN {ALICE} alice-pw"));
    assert!(
        last(&r).starts_with("a1 OK") && last(&r).ends_with("Logged in"),
        "{r:?}"
    );
    let r = imap.imap("a2", "SELECT INBOX");
    assert!(r.iter().any(|l| l == "* 1 EXISTS"), "{r:?}");
    let r = imap.imap("a3", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    assert!(r.iter().any(|l| l == "Subject: test 1"), "{r:?}");
    imap.imap("a4", "LOGOUT");

    // SASL PLAIN with an initial response, and a wrong password, which fails at once: the
    // failed-auth penalty is off.
    let mut imap = Conn::connect(dc.imap_port);
    let r = imap.imap(
        "b1",
        &format!("AUTHENTICATE PLAIN {}", plain_b64(BOB, "bob-pw")),
    );
    assert!(last(&r).starts_with("b1 OK"), "{r:?}");
    let mut imap = Conn::connect(dc.imap_port);
    for i in 0..3 {
        let t = Instant::now();
        let r = imap.imap(&format!("c{i}"), &format!("LOGIN {ALICE} wrong"));
        assert_eq!(
            last(&r),
            format!("c{i} NO [AUTHENTICATIONFAILED] Authentication failed.")
        );
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "penalty: {:?}",
            t.elapsed()
        );
    }
    assert!(dc.log().contains("Password mismatch"), "{}", dc.log());

    let mut pop = Conn::connect(dc.pop3_port);
    assert!(pop.pop(&format!("USER {ALICE}")).starts_with("+OK"));
    assert_eq!(pop.pop("PASS alice-pw"), "+OK Logged in.");
    let stat = pop.pop("STAT");
    assert!(stat.starts_with("+OK 1 "), "{stat}");
    assert!(pop.pop("QUIT").starts_with("+OK"));

    let mut pop = Conn::connect(dc.pop3_port);
    assert_eq!(
        pop.pop(&format!("AUTH PLAIN {}", plain_b64(BOB, "bob-pw"))),
        "+OK Logged in."
    );
    assert!(pop.pop("STAT").starts_with("+OK 0 "));
}

/// `deliver` names a file as Dovecot's own delivery does, with the size on disk (`S=`) and the
/// size with CRLF line endings (`W=`). Dovecot takes the sizes it reports from the name, so a
/// wrong `W=` would show here as a wrong `RFC822.SIZE`, literal length or POP3 `LIST` size.
#[test]
fn delivered_file_names_carry_the_sizes_dovecot_reports() {
    let Some(dc) = Dovecot::start_or_skip(
        "delivered_file_names_carry_the_sizes_dovecot_reports",
        &users(),
    ) else {
        return;
    };
    // Four bare LFs and one CRLF: 4 bytes more with every line ending CRLF.
    let raw = b"From: a@example.org\nSubject: lf\n\nline one\nline two\r\n";
    let (size, crlf) = (raw.len(), raw.len() + 4);
    dc.deliver(ALICE, raw).expect("deliver");
    let names: Vec<String> = std::fs::read_dir(dc.maildir(ALICE).join("new"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(
        names[0].ends_with(&format!(",S={size},W={crlf}")),
        "{names:?}"
    );

    let mut imap = Conn::connect(dc.imap_port);
    imap.imap("a1", &format!("LOGIN {ALICE} alice-pw"));
    imap.imap("a2", "SELECT INBOX");
    let r = imap.imap("a3", "FETCH 1 (RFC822.SIZE)");
    assert!(
        r.iter()
            .any(|l| l == &format!("* 1 FETCH (RFC822.SIZE {crlf})")),
        "{r:?}"
    );
    let r = imap.imap("a4", "FETCH 1 (BODY.PEEK[])");
    assert!(
        r.iter()
            .any(|l| l == &format!("* 1 FETCH (BODY[] {{{crlf}}}")),
        "{r:?}"
    );
    assert!(r.iter().any(|l| l == "line two"), "{r:?}");
    imap.imap("a5", "LOGOUT");

    let mut pop = Conn::connect(dc.pop3_port);
    assert!(pop.pop(&format!("USER {ALICE}")).starts_with("+OK"));
    assert!(pop.pop("PASS alice-pw").starts_with("+OK"));
    assert_eq!(pop.pop("LIST 1"), format!("+OK 1 {crlf}"));
}

#[test]
fn tls_ports_with_the_servers_certificate() {
    let Some(dc) = Dovecot::start_or_skip("tls_ports_with_the_servers_certificate", &users())
    else {
        return;
    };
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(dc.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    for (port, name, pop3) in [
        (dc.imaps_port, "localhost", false),
        (dc.imaps_port, "127.0.0.1", false),
        (dc.pop3s_port, "localhost", true),
    ] {
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let sni = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
        let tls = rustls::ClientConnection::new(config.clone(), sni).unwrap();
        let mut c = Conn {
            r: BufReader::new(rustls::StreamOwned::new(tls, tcp)),
        };
        let greeting = c.line();
        if pop3 {
            assert!(greeting.starts_with("+OK"), "{greeting}");
            assert_eq!(c.pop(&format!("USER {ALICE}")), "+OK");
            assert_eq!(c.pop("PASS alice-pw"), "+OK Logged in.");
        } else {
            assert!(greeting.starts_with("* OK"), "{greeting}");
            let r = c.imap("t1", &format!("LOGIN {ALICE} alice-pw"));
            assert!(last(&r).ends_with("Logged in"), "{r:?}");
        }
    }
    assert!(dc.log().contains("TLS"), "{}", dc.log());
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth_xoauth2_and_oauthbearer_by_introspection() {
    let Some(idp) = Idp::start_or_skip("oauth_xoauth2_and_oauthbearer_by_introspection") else {
        return;
    };
    let t = Instant::now();
    let Some(dc) = Dovecot::start_or_skip(
        "oauth_xoauth2_and_oauthbearer_by_introspection",
        &users().introspect(&idp),
    ) else {
        return;
    };
    eprintln!("dovecot with OAuth started in {:?}", t.elapsed());
    let token = mail_access_token(&idp, ALICE).await.expect("token");
    let bob_token = mail_access_token(&idp, BOB).await.expect("token");
    dc.deliver(ALICE, &message(1)).unwrap();

    let (imap_port, pop3_port) = (dc.imap_port, dc.pop3_port);
    let tok = token.clone();
    let log = tokio::task::spawn_blocking(move || {
        let mut imap = Conn::connect(imap_port);
        let caps = imap.imap("a0", "CAPABILITY");
        assert!(
            caps[0].contains("AUTH=XOAUTH2") && caps[0].contains("AUTH=OAUTHBEARER"),
            "{caps:?}"
        );
        // XOAUTH2 with SASL-IR.
        let r = imap.imap(
            "a1",
            &format!("AUTHENTICATE XOAUTH2 {}", xoauth2_b64(ALICE, &tok)),
        );
        assert!(
            last(&r).starts_with("a1 OK") && last(&r).ends_with("Logged in"),
            "{r:?}"
        );
        let r = imap.imap("a2", "SELECT INBOX");
        assert!(r.iter().any(|l| l == "* 1 EXISTS"), "{r:?}");

        // A garbage token: the challenge, then NO after the client's empty answer.
        let mut imap = Conn::connect(imap_port);
        imap.send(&format!(
            "b1 AUTHENTICATE XOAUTH2 {}",
            xoauth2_b64(ALICE, "garbage")
        ));
        let challenge = imap.line();
        assert!(challenge.starts_with("+ eyJ"), "{challenge}");
        let json = base64_decode(&challenge[2..]);
        assert!(
            json.contains("\"status\":\"401\"") && json.contains("\"scope\":\"mail\""),
            "{json}"
        );
        imap.send("");
        let r = imap.until_tag("b1");
        assert_eq!(
            last(&r),
            "b1 NO [AUTHENTICATIONFAILED] Authentication failed."
        );

        // Bob's token for Alice: refused.
        imap.send(&format!(
            "b2 AUTHENTICATE XOAUTH2 {}",
            xoauth2_b64(ALICE, &bob_token)
        ));
        assert!(imap.line().starts_with("+ eyJ"));
        imap.send("");
        assert!(last(&imap.until_tag("b2")).starts_with("b2 NO [AUTHENTICATIONFAILED]"));

        // OAUTHBEARER, the two-step way (no SASL-IR).
        let mut imap = Conn::connect(imap_port);
        imap.send("c1 AUTHENTICATE OAUTHBEARER");
        assert_eq!(imap.line(), "+ ");
        imap.send(&oauthbearer_b64(ALICE, &tok));
        let r = imap.until_tag("c1");
        assert!(last(&r).ends_with("Logged in"), "{r:?}");

        // POP3: one line, then two lines, for both mechanisms.
        for mech in ["XOAUTH2", "OAUTHBEARER"] {
            let b64 = if mech == "XOAUTH2" {
                xoauth2_b64(ALICE, &tok)
            } else {
                oauthbearer_b64(ALICE, &tok)
            };
            let mut pop = Conn::connect(pop3_port);
            assert_eq!(
                pop.pop(&format!("AUTH {mech} {b64}")),
                "+OK Logged in.",
                "{mech}"
            );
            assert!(pop.pop("STAT").starts_with("+OK 1 "));
            let mut pop = Conn::connect(pop3_port);
            assert_eq!(pop.pop(&format!("AUTH {mech}")), "+ ", "{mech}");
            assert_eq!(pop.pop(&b64), "+OK Logged in.", "{mech}");
        }
        let mut pop = Conn::connect(pop3_port);
        assert!(
            pop.pop(&format!("AUTH XOAUTH2 {}", xoauth2_b64(ALICE, "garbage")))
                .starts_with("+ eyJ")
        );
        assert_eq!(pop.pop(""), "-ERR [AUTH] Authentication failed.");
    })
    .await;
    if let Err(e) = log {
        panic!(
            "{e}\n--- dovecot log:\n{}\n--- idp log:\n{}",
            dc.log(),
            idp.log()
        );
    }
    let log = dc.log();
    assert!(log.contains("method=XOAUTH2"), "{log}");
    assert!(log.contains("method=OAUTHBEARER"), "{log}");
    assert!(log.contains("Introspection failed"), "{log}");
    assert!(log.contains("did not match"), "{log}");
}

fn base64_decode(s: &str) -> String {
    use base64::Engine as _;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .expect("base64"),
    )
    .expect("utf-8")
}

#[test]
fn restart_keeps_ports_and_mail() {
    let Some(mut dc) = Dovecot::start_or_skip("restart_keeps_ports_and_mail", &users()) else {
        return;
    };
    dc.deliver_many(ALICE, (1..=3).map(message).collect())
        .unwrap();
    let mut imap = Conn::connect(dc.imap_port);
    imap.imap("a1", &format!("LOGIN {ALICE} alice-pw"));
    let r = imap.imap("a2", "SELECT INBOX");
    assert!(r.iter().any(|l| l == "* 3 EXISTS"), "{r:?}");
    let uidvalidity = r.iter().find(|l| l.contains("UIDVALIDITY")).cloned();

    let ports = (dc.imap_port, dc.imaps_port, dc.pop3_port, dc.pop3s_port);
    let t = Instant::now();
    dc.restart().expect("restart");
    eprintln!("restart took {:?}", t.elapsed());
    assert_eq!(
        ports,
        (dc.imap_port, dc.imaps_port, dc.pop3_port, dc.pop3s_port)
    );
    // The old connection is gone.
    let mut buf = String::new();
    let gone = imap
        .r
        .read_line(&mut buf)
        .map(|n| n == 0 || buf.contains("BYE"));
    assert!(
        gone.unwrap_or(true),
        "old connection still answers: {buf:?}"
    );

    dc.deliver(ALICE, &message(4)).unwrap();
    let mut imap = Conn::connect(dc.imap_port);
    imap.imap("b1", &format!("LOGIN {ALICE} alice-pw"));
    let r = imap.imap("b2", "SELECT INBOX");
    assert!(r.iter().any(|l| l == "* 4 EXISTS"), "{r:?}");
    assert_eq!(
        r.iter().find(|l| l.contains("UIDVALIDITY")).cloned(),
        uidvalidity
    );

    dc.shutdown();
    assert!(!dc.is_running());
    assert!(TcpStream::connect(("127.0.0.1", ports.0)).is_err());
    dc.restart().expect("start again");
    Conn::connect(dc.imap_port);
}

#[test]
fn localized_special_use_folders() {
    let Some(dc) = Dovecot::start_or_skip("localized_special_use_folders", &users().localized())
    else {
        return;
    };
    assert_eq!(mutf7("Gelöschte Elemente"), "Gel&APY-schte Elemente");
    assert_eq!(mutf7("A&B"), "A&-B");
    dc.deliver_to(ALICE, "Gelöschte Elemente", &message(7))
        .unwrap();
    let mut imap = Conn::connect(dc.imap_port);
    imap.imap("a1", &format!("LOGIN {ALICE} alice-pw"));
    let r = imap.imap("a2", "LIST (SPECIAL-USE) \"\" \"*\"");
    for want in [
        "* LIST (\\Trash) \"/\" \"Gel&APY-schte Elemente\"",
        "* LIST (\\Archive) \"/\" Posteingang-Archiv",
        "* LIST (\\Sent) \"/\" \"Gesendete Elemente\"",
        "* LIST (\\Drafts) \"/\" Entw&APw-rfe",
        "* LIST (\\Junk) \"/\" Junk-E-Mail",
    ] {
        assert!(r.iter().any(|l| l == want), "{want} not in {r:?}");
    }
    let r = imap.imap("a3", "LSUB \"\" \"*\"");
    assert!(r.iter().any(|l| l.ends_with("Aufgaben")), "{r:?}");
    let r = imap.imap("a4", "SELECT \"Gel&APY-schte Elemente\"");
    assert!(r.iter().any(|l| l == "* 1 EXISTS"), "{r:?}");
    let r = imap.imap("a5", "STATUS INBOX (MESSAGES)");
    assert!(
        r.iter().any(|l| l == "* STATUS INBOX (MESSAGES 0)"),
        "{r:?}"
    );
}

/// The server's own processes are found by its process group: their titles, and the CPU they
/// used (the benchmarks report it), which grows while the server works.
#[test]
fn the_servers_processes_and_their_cpu_are_read_from_proc() {
    let Some(dc) = Dovecot::start_or_skip("the_servers_processes_and_their_cpu", &users()) else {
        return;
    };
    let titles = dc.process_titles();
    assert!(
        titles
            .iter()
            .any(|t| t.starts_with("dovecot") || t.contains("/dovecot")),
        "{titles:?}"
    );
    for i in 0..50 {
        dc.deliver(ALICE, &message(i)).expect("deliver");
    }
    let before = dc.cpu_seconds();
    let mut after = before;
    // Fetch the folder until the server has used at least one clock tick (10 ms) more.
    for round in 0..200 {
        let mut imap = Conn::connect(dc.imap_port);
        imap.imap("a1", &format!("LOGIN {ALICE} alice-pw"));
        imap.imap("a2", "SELECT INBOX");
        let r = imap.imap("a3", "FETCH 1:* (BODY.PEEK[])");
        assert!(last(&r).starts_with("a3 OK"), "round {round}: {r:?}");
        imap.imap("a4", "LOGOUT");
        after = dc.cpu_seconds();
        if after > before {
            break;
        }
    }
    assert!(after > before, "the server's CPU grew: {before} → {after}");
}
