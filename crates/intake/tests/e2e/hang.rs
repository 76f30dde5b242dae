//! A hung mail server: a TCP listener on 127.0.0.1 that accepts connections and never says a
//! word. `intake run --once` fails within its documented bound naming the stage that timed
//! out, and `intake run` stops within 10 s of SIGTERM even while a channel hangs on it.

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use intake_testkit::TestDb;

use crate::intake;

/// Accepts connections on 127.0.0.1 and keeps them open without answering. Returns the port
/// and the number of connections accepted so far.
fn hung_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            let Ok(s) = s else { return };
            held.push(s);
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, accepted)
}

fn config(dir: &Path, port: u16, timeout_seconds: u64) -> String {
    let p = dir.join("intake.toml");
    std::fs::write(
        &p,
        format!(
            "lease_seconds = 6\n[[channel]]\nname = \"hung\"\nproject = \"HELP\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nmailbox = \"help@example.test\"\nauth = \"password:env:HUNG_PW\"\ntimeout_seconds = {timeout_seconds}\n"
        ),
    )
    .unwrap();
    p.display().to_string()
}

/// `intake run --once` against a server that never answers fails within the connect stage's
/// bound (4 × timeout_seconds) with an error naming the stage; nothing is left holding the
/// channel's lease.
#[test]
fn run_once_against_a_hung_server_fails_in_time_naming_the_stage() {
    let dir = tempfile::tempdir().unwrap();
    let (port, accepted) = hung_server();
    let db = TestDb::sqlite();
    let cfg = config(dir.path(), port, 2);
    let started = Instant::now();
    let out = intake()
        .args(["--config", &cfg, "--db", &db.url, "run", "--once"])
        .env("HUNG_PW", "s3cret")
        .output()
        .unwrap();
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(accepted.load(Ordering::SeqCst) >= 1, "intake connected");
    assert!(
        took < Duration::from_secs(30),
        "failed after {took:?}, not within the bound: {err}"
    );
    assert!(
        err.contains("channel hung") && err.contains("connect") && err.contains("timed out"),
        "the error names the stage that timed out: {err}"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = intake_store::Store::connect(&db.url).await.unwrap();
        assert_eq!(store.lease_holder("hung").await.unwrap(), None);
        let events = store.recent_events(10).await.unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.kind == "channel_failed" && e.message.contains("timed out")),
            "{events:?}"
        );
    });
}

/// `intake run` with a channel stuck on a server that never answers (its stage bound is
/// minutes away) still ends within 10 s of SIGTERM, successfully, and releases its lease.
#[test]
fn sigterm_ends_intake_run_within_10_seconds_while_a_server_hangs() {
    stops_within_10_seconds("-TERM");
}

/// The same for Ctrl-C (SIGINT).
#[test]
fn ctrl_c_ends_intake_run_within_10_seconds_while_a_server_hangs() {
    stops_within_10_seconds("-INT");
}

fn stops_within_10_seconds(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (port, accepted) = hung_server();
    let db = TestDb::sqlite();
    let cfg = config(dir.path(), port, 60);
    let mut child = intake()
        .args(["--config", &cfg, "--db", &db.url, "run"])
        .env("HUNG_PW", "s3cret")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while accepted.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "intake never connected");
        assert!(
            child.try_wait().unwrap().is_none(),
            "intake run ended early"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Well inside the hung connect stage.
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id().to_string();
    let signalled = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(15),
            "intake run did not stop on {signal}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = signalled.elapsed();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        took < Duration::from_secs(10),
        "stopped after {took:?}: {err}"
    );
    assert!(status.success(), "{status:?}: {err}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = intake_store::Store::connect(&db.url).await.unwrap();
        assert_eq!(
            store.lease_holder("hung").await.unwrap(),
            None,
            "the lease was released at exit"
        );
    });
}

/// `intake doctor` against a server that never answers fails the check in time instead of
/// hanging, and says the channel failed.
#[test]
fn doctor_against_a_hung_server_fails_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let (port, accepted) = hung_server();
    let db = TestDb::sqlite();
    let cfg = config(dir.path(), port, 1);
    let started = Instant::now();
    let out = intake()
        .args(["--config", &cfg, "--db", &db.url, "doctor", "--json"])
        .env("HUNG_PW", "s3cret")
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    assert!(accepted.load(Ordering::SeqCst) >= 1, "doctor connected");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["channel"], "hung");
    assert_eq!(v[0]["ok"], false, "{v}");
    let last = v[0]["stages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["ok"], false, "{v}");
}
