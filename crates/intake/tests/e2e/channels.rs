//! Channels through `intake run --once`, one behaviour per test: IMAP first-sync policies
//! (`start = "unread" | "now" | "since:"`) and a UIDVALIDITY change against a real Dovecot,
//! POP3 `start = "now"`, and the local `maildir` and `mbox` channels with their post-actions.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use intake_mail::source::PostAction;
use intake_mail::source::imap::{ImapAuth, ImapSettings, ImapSource, Tls};
use intake_store::{Store, Table};
use intake_testkit::TestDb;
use intake_testkit::dovecot::{Dovecot, DovecotOptions};
use secrecy::SecretString;

use crate::intake;

const USER: &str = "help@example.test";
const PW: &str = "s3cret";

/// A message with its own subject (so each one opens its own ticket).
fn mail(id: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Jane <jane@customer.example>\r\nTo: {USER}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nContent-Type: text/plain\r\n\r\nBody of {subject}\r\n"
    )
    .into_bytes()
}

/// Writes `intake.toml` into `dir` with one channel named `name` of `protocol` against the
/// Dovecot (IMAPS or POP3S, password auth), plus `extra` lines; returns its path.
fn server_config(dir: &Path, dc: &Dovecot, protocol: &str, extra: &str) -> String {
    let port = if protocol == "pop3" {
        dc.pop3s_port
    } else {
        dc.imaps_port
    };
    let cfg = dir.join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[channel]]\nname = \"helpdesk\"\nproject = \"HELP\"\nprotocol = \"{protocol}\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             tls = \"implicit\"\nca_file = \"file:{}\"\nmailbox = \"{USER}\"\nauth = \"password:env:IMAP_PW\"\n{extra}",
            dc.ca_path.display()
        ),
    )
    .unwrap();
    cfg.display().to_string()
}

/// Writes `intake.toml` with one local channel (`maildir` or `mbox`) reading `path`.
fn local_config(dir: &Path, protocol: &str, path: &Path, extra: &str) -> String {
    let cfg = dir.join("intake.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[channel]]\nname = \"local\"\nproject = \"HELP\"\nprotocol = \"{protocol}\"\npath = \"{}\"\n{extra}",
            path.display()
        ),
    )
    .unwrap();
    cfg.display().to_string()
}

/// `intake run --once --json`, whatever its outcome.
fn run(cfg: &str, db: &str) -> Output {
    intake()
        .args(["--config", cfg, "--db", db, "run", "--once", "--json"])
        .env("IMAP_PW", PW)
        .env("INTAKE_LEASE_SECONDS", "2")
        .output()
        .unwrap()
}

/// `intake run --once --json`, which must succeed; its summary.
fn run_ok(cfg: &str, db: &str) -> serde_json::Value {
    let o = run(cfg, db);
    assert!(
        o.status.success(),
        "intake run failed: {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `(created, duplicate)` of a summary.
fn created_dup(v: &serde_json::Value) -> (u64, u64) {
    (
        v["created"].as_u64().unwrap(),
        v["duplicate"].as_u64().unwrap(),
    )
}

async fn imap(dc: &Dovecot) -> ImapSource {
    ImapSource::connect(&ImapSettings {
        host: "127.0.0.1".into(),
        port: dc.imaps_port,
        tls: Tls::Implicit,
        ca_pem: Some(dc.ca_pem.clone().into_bytes()),
        auth: ImapAuth::Password {
            user: USER.into(),
            password: SecretString::from(PW.to_string()),
        },
        folder: "INBOX".into(),
        proxy: None,
        timeouts: Default::default(),
        max_message_bytes: None,
    })
    .await
    .unwrap_or_else(|e| panic!("IMAP login: {e}\n{}", dc.log()))
}

/// The UID of the INBOX message whose Message-ID is `id`.
async fn uid_of(src: &mut ImapSource, id: &str) -> u32 {
    let uids = src.new_uids(None, usize::MAX).await.unwrap();
    let want = format!("Message-ID: <{id}>");
    src.fetch(&uids)
        .await
        .unwrap()
        .into_iter()
        .find(|(_, f)| String::from_utf8_lossy(&f.raw).contains(&want))
        .map(|(uid, _)| uid)
        .unwrap_or_else(|| panic!("no message <{id}> in INBOX"))
}

/// Marks the message `id` \Seen (as a person reading it in a mail client would).
async fn mark_seen(dc: &Dovecot, id: &str) {
    let mut src = imap(dc).await;
    let uid = uid_of(&mut src, id).await;
    src.acknowledge(&[uid], &PostAction::MarkRead)
        .await
        .unwrap();
    assert!(src.seen_uids().await.unwrap().contains(&uid));
    let _ = src.logout().await;
}

/// `doveadm -c <the server's config> ARGS` against this Dovecot instance (its own base_dir,
/// auth sockets and mail), which must succeed.
fn doveadm(dc: &Dovecot, args: &[&str]) {
    let bin = ["/usr/bin/doveadm", "/usr/local/bin/doveadm"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("doveadm"));
    let o = std::process::Command::new(bin)
        .arg("-c")
        .arg(dc.config_path())
        .args(args)
        .output()
        .expect("doveadm runs (installed with dovecot-core)");
    assert!(
        o.status.success(),
        "doveadm {args:?}: {}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Delivers `raw` and gives it the internal (received) date `when`: Dovecot's Maildir takes a
/// message's INTERNALDATE, which `SEARCH SINCE` compares, from its file's mtime. Must happen
/// before Dovecot first sees the file (it caches the date in its index).
fn deliver_dated(dc: &Dovecot, id: &str, subject: &str, when: SystemTime) {
    let new = dc.maildir(USER).join("new");
    let before: Vec<PathBuf> = files(&new);
    dc.deliver(USER, &mail(id, subject)).unwrap();
    let added: Vec<PathBuf> = files(&new)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(added.len(), 1, "one file delivered into {}", new.display());
    std::fs::File::options()
        .write(true)
        .open(&added[0])
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// The files (not directories) in `dir`, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn days_since_epoch(days: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(days * 86_400)
}

async fn ticket_summaries(store: &Store) -> Vec<String> {
    let mut v: Vec<String> = store
        .list_tickets(None)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.summary)
        .collect();
    v.sort();
    v
}

/// The folder's UIDVALIDITY changes between runs (the server rebuilt its index, a migration):
/// the stale `UIDVALIDITY:UID` checkpoint is void, the folder is re-scanned, and the ledger
/// (Message-ID + content hash) turns the three messages taken before into duplicates — no
/// second ticket for them — while the one new message becomes a ticket. The checkpoint then
/// carries the new UIDVALIDITY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uidvalidity_change_rescans_without_duplicating_tickets() {
    let Some(dc) = Dovecot::start_or_skip(
        "uidvalidity_change_rescans",
        &DovecotOptions::with_users(&[(USER, PW)]),
    ) else {
        return;
    };
    for i in 1..=3 {
        dc.deliver(USER, &mail(&format!("v{i}@x"), &format!("Before {i}")))
            .unwrap();
    }
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = server_config(
        dir.path(),
        &dc,
        "imap",
        "start = \"all\"\nafter = \"mark-read\"\n",
    );
    let v = run_ok(&cfg, &db.url);
    assert_eq!(created_dup(&v), (3, 0), "{v}");

    let src = imap(&dc).await;
    let old = src.uid_validity();
    let _ = src.logout().await;
    let cp = store.checkpoint("helpdesk").await.unwrap().unwrap();
    assert!(cp.starts_with(&format!("{old}:")), "{cp}");

    let new = old + 1000;
    doveadm(
        &dc,
        &[
            "mailbox",
            "update",
            "-u",
            USER,
            "--uid-validity",
            &new.to_string(),
            "INBOX",
        ],
    );
    let src = imap(&dc).await;
    assert_eq!(src.uid_validity(), new, "doveadm changed the UIDVALIDITY");
    let _ = src.logout().await;

    dc.deliver(USER, &mail("v4@x", "After the change")).unwrap();
    let v = run_ok(&cfg, &db.url);
    assert_eq!(
        created_dup(&v),
        (1, 3),
        "the re-scan found the 3 old messages as duplicates: {v}"
    );
    assert_eq!(store.count(Table::Tickets).await.unwrap(), 4);
    let cp = store.checkpoint("helpdesk").await.unwrap().unwrap();
    assert!(
        cp.starts_with(&format!("{new}:")),
        "checkpoint under the new UIDVALIDITY: {cp}"
    );
    // And the re-scan is not repeated.
    let v = run_ok(&cfg, &db.url);
    assert_eq!(created_dup(&v), (0, 0), "{v}");
}

/// `start = "unread"`: the first sync skips what was already read (here the last message, so
/// the filtered part of the first sync ends on a skipped UID); after it, every new message
/// counts, read or not — a message read in a mail client before Intake saw it is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_start_unread_skips_read_mail_only_in_the_first_sync() {
    let Some(dc) = Dovecot::start_or_skip(
        "imap_start_unread",
        &DovecotOptions::with_users(&[(USER, PW)]),
    ) else {
        return;
    };
    for i in 1..=3 {
        dc.deliver(USER, &mail(&format!("u{i}@x"), &format!("Unread {i}")))
            .unwrap();
    }
    mark_seen(&dc, "u3@x").await;
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = server_config(dir.path(), &dc, "imap", "start = \"unread\"\n");
    let v = run_ok(&cfg, &db.url);
    assert_eq!(created_dup(&v), (2, 0), "{v}");
    assert_eq!(ticket_summaries(&store).await, ["Unread 1", "Unread 2"]);
    let cp = store.checkpoint("helpdesk").await.unwrap().unwrap();
    assert!(!cp.contains("/first:"), "first sync finished: {cp}");

    dc.deliver(USER, &mail("u4@x", "Read before Intake saw it"))
        .unwrap();
    mark_seen(&dc, "u4@x").await;
    let v = run_ok(&cfg, &db.url);
    assert_eq!(
        created_dup(&v),
        (1, 0),
        "the new (already read) message and nothing else: {v}"
    );
    assert_eq!(
        ticket_summaries(&store).await,
        ["Read before Intake saw it", "Unread 1", "Unread 2"]
    );
}

/// `start = "now"`: what is in the folder at the first run is left alone (a checkpoint is set
/// all the same); mail arriving afterwards is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_start_now_takes_only_mail_arriving_later() {
    let Some(dc) =
        Dovecot::start_or_skip("imap_start_now", &DovecotOptions::with_users(&[(USER, PW)]))
    else {
        return;
    };
    for i in 1..=2 {
        dc.deliver(USER, &mail(&format!("n{i}@x"), &format!("Old {i}")))
            .unwrap();
    }
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = server_config(dir.path(), &dc, "imap", "start = \"now\"\n");
    let v = run_ok(&cfg, &db.url);
    assert_eq!(created_dup(&v), (0, 0), "{v}");
    let src = imap(&dc).await;
    let validity = src.uid_validity();
    let _ = src.logout().await;
    assert_eq!(
        store.checkpoint("helpdesk").await.unwrap().as_deref(),
        Some(format!("{validity}:2").as_str()),
        "checkpoint at the last message present"
    );
    dc.deliver(USER, &mail("n3@x", "New")).unwrap();
    let v = run_ok(&cfg, &db.url);
    assert_eq!(created_dup(&v), (1, 0), "{v}");
    assert_eq!(ticket_summaries(&store).await, ["New"]);
    let v = run_ok(&cfg, &db.url);
    assert_eq!(created_dup(&v), (0, 0), "{v}");
}

/// `start = "since:2023-01-01"`: the first sync takes only messages whose INTERNALDATE (the
/// server's received date, not the Date header) is on or after that day; afterwards a new
/// message counts whatever its date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_start_since_filters_the_first_sync_by_internal_date() {
    let Some(dc) = Dovecot::start_or_skip(
        "imap_start_since",
        &DovecotOptions::with_users(&[(USER, PW)]),
    ) else {
        return;
    };
    let old = days_since_epoch(18_687); // 2021-03-01
    let recent = days_since_epoch(20_240); // 2025-06-01
    // Interleaved, so the filter is not just "the last N UIDs".
    deliver_dated(&dc, "s1@x", "Old 1", old);
    deliver_dated(&dc, "s2@x", "Recent 1", recent);
    deliver_dated(&dc, "s3@x", "Old 2", old);
    deliver_dated(&dc, "s4@x", "Recent 2", recent);
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = server_config(dir.path(), &dc, "imap", "start = \"since:2023-01-01\"\n");
    let v = run_ok(&cfg, &db.url);
    assert_eq!(created_dup(&v), (2, 0), "{v}");
    assert_eq!(ticket_summaries(&store).await, ["Recent 1", "Recent 2"]);

    deliver_dated(&dc, "s5@x", "Old but new", old);
    let v = run_ok(&cfg, &db.url);
    assert_eq!(
        created_dup(&v),
        (1, 0),
        "after the first sync the date filter is off: {v}"
    );
    assert_eq!(
        ticket_summaries(&store).await,
        ["Old but new", "Recent 1", "Recent 2"]
    );
}

/// POP3 `start = "now"` against Dovecot: the messages on the server at the first run are
/// skipped, a later one is taken once (kept on the server with `mark-read`, and not taken
/// again on the next run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_start_now_skips_what_is_there_and_takes_new_mail_once() {
    let Some(dc) =
        Dovecot::start_or_skip("pop3_start_now", &DovecotOptions::with_users(&[(USER, PW)]))
    else {
        return;
    };
    for i in 1..=2 {
        dc.deliver(USER, &mail(&format!("q{i}@x"), &format!("Old {i}")))
            .unwrap();
    }
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = server_config(dir.path(), &dc, "pop3", "start = \"now\"\n");
    let v = run_ok(&cfg, &db.url);
    assert_eq!(created_dup(&v), (0, 0), "{v}");
    assert!(
        store.checkpoint("helpdesk").await.unwrap().is_some(),
        "the skipped messages are remembered"
    );
    dc.deliver(USER, &mail("q3@x", "New")).unwrap();
    let v = run_ok(&cfg, &db.url);
    assert_eq!(v["created"], 1, "{v}");
    assert_eq!(ticket_summaries(&store).await, ["New"]);
    let v = run_ok(&cfg, &db.url);
    assert_eq!(v["created"], 0, "{v}");
    assert_eq!(store.count(Table::Tickets).await.unwrap(), 1);
}

/// A Maildir with `n` messages in `new/` and one already-seen message in `cur/`.
fn maildir(root: &Path, n: usize) -> Vec<String> {
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("17000000{i:02}.M{i}P1.host");
        std::fs::write(
            root.join("new").join(&name),
            mail(&format!("m{i}@x"), &format!("Maildir {i}")),
        )
        .unwrap();
        names.push(name);
    }
    let name = "1700000099.M99P1.host".to_string();
    std::fs::write(
        root.join("cur").join(format!("{name}:2,S")),
        mail("mseen@x", "Maildir seen"),
    )
    .unwrap();
    names.push(name);
    names
}

/// `protocol = "maildir"` with `after = "move:Done"`: every file (new/ and cur/) becomes a
/// ticket, each is moved into the Maildir++ folder `.Done/cur/`, and a second run finds
/// nothing.
#[test]
fn maildir_channel_moves_committed_mail_and_takes_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    let names = maildir(&root, 3);
    let db = TestDb::sqlite();
    let cfg = local_config(
        dir.path(),
        "maildir",
        &root,
        "start = \"all\"\nafter = \"move:Done\"\n",
    );
    let v = run_ok(&cfg, &db.url);
    assert_eq!(created_dup(&v), (4, 0), "{v}");
    assert!(files(&root.join("new")).is_empty(), "new/ emptied");
    assert!(files(&root.join("cur")).is_empty(), "cur/ emptied");
    let done: Vec<String> = files(&root.join(".Done").join("cur"))
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(done.len(), 4, "{done:?}");
    for n in &names {
        assert!(done.iter().any(|d| d.starts_with(n.as_str())), "{n} moved");
    }
    let v = run_ok(&cfg, &db.url);
    assert_eq!(created_dup(&v), (0, 0), "{v}");
}

/// `protocol = "maildir"` with `after = "mark-read"` (and the default `start = "unread"`):
/// files already flagged `S` are left out, new/ files move to cur/ with `:2,S`, and a second run
/// creates nothing.
#[test]
fn maildir_channel_mark_read_moves_new_to_cur_with_the_seen_flag() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    let names = maildir(&root, 2);
    let db = TestDb::sqlite();
    let cfg = local_config(dir.path(), "maildir", &root, "after = \"mark-read\"\n");
    let v = run_ok(&cfg, &db.url);
    assert_eq!(created_dup(&v), (2, 0), "the seen one is skipped: {v}");
    assert!(files(&root.join("new")).is_empty(), "new/ emptied");
    let cur: Vec<PathBuf> = files(&root.join("cur"));
    let expected: Vec<PathBuf> = names
        .iter()
        .map(|n| root.join("cur").join(format!("{n}:2,S")))
        .collect();
    assert_eq!(cur, expected);
    let v = run_ok(&cfg, &db.url);
    assert_eq!(created_dup(&v), (0, 0), "{v}");
}

fn mbox(path: &Path, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        out.extend_from_slice(b"From jane@customer.example Mon Nov 23 10:00:00 2026\n");
        let m = String::from_utf8(mail(&format!("b{i}@x"), &format!("Mbox {i}")))
            .unwrap()
            .replace("\r\n", "\n");
        out.extend_from_slice(m.as_bytes());
        out.push(b'\n');
    }
    std::fs::write(path, &out).unwrap();
    out
}

/// `protocol = "mbox"`: every message becomes a ticket, the file is left as it is, and a
/// second run creates nothing.
#[test]
fn mbox_channel_ingests_once_and_keeps_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("support.mbox");
    let bytes = mbox(&path, 3);
    let db = TestDb::sqlite();
    let cfg = local_config(dir.path(), "mbox", &path, "start = \"all\"\n");
    let v = run_ok(&cfg, &db.url);
    assert_eq!(created_dup(&v), (3, 0), "{v}");
    let v = run_ok(&cfg, &db.url);
    assert_eq!(v["created"], 0, "{v}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "file unchanged");
}

/// `after = "delete"` on an mbox channel is refused before anything is committed: each run
/// fails (exit code 1, the reason on stderr), no ticket exists, and the file is not touched.
#[test]
fn mbox_channel_refuses_delete_and_leaves_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("support.mbox");
    let bytes = mbox(&path, 2);
    let db = TestDb::sqlite();
    let cfg = local_config(
        dir.path(),
        "mbox",
        &path,
        "start = \"all\"\nafter = \"delete\"\n",
    );
    for _ in 0..2 {
        let o = run(&cfg, &db.url);
        assert_eq!(o.status.code(), Some(1), "after = delete must fail on mbox");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("channel \"local\"") && err.contains("an mbox channel keeps its file"),
            "the reason is reported: {err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "file unchanged");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tickets = rt.block_on(async {
        let store = intake_store::Store::connect(&db.url).await.unwrap();
        store.count(intake_store::Table::Tickets).await.unwrap()
    });
    assert_eq!(
        tickets, 0,
        "nothing committed that could not be acknowledged"
    );
}
