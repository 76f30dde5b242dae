//! Durable before destructive, and housekeeping at the store level:
//! - a store opened the default way (`intake run`'s) commits batches power-loss durable
//!   (SQLite `synchronous=FULL` on the batch writer and on every pool connection), and only an
//!   explicit `Durability::Process` store (`intake ingest`) runs `NORMAL`;
//! - PostgreSQL sessions never run with `synchronous_commit = off`, even when the database's
//!   default says so;
//! - the SQLite file and its `-wal`/`-shm` are created 0600 whatever the umask;
//! - mail-log retention deletes old events in bounded chunks and keeps new ones;
//! - PostgreSQL over TLS: `sslmode=require` is encrypted, `verify-full` checks the certificate.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use intake_store::{Durability, Store, StoreError};
use intake_testkit::TestDb;
use sqlx::{AssertSqlSafe, Connection};

const FULL: i64 = 2;
const NORMAL: i64 = 1;

async fn pool_synchronous(store: &Store) -> i64 {
    sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

fn path_of(db: &TestDb) -> PathBuf {
    PathBuf::from(db.url.trim_start_matches("sqlite://"))
}

#[tokio::test]
async fn default_store_commits_power_loss_durable_and_ingest_store_does_not() {
    let db = TestDb::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    // The connection that commits ticket batches: its commit is what a delete, move or DELE
    // depends on.
    assert_eq!(store.batch_writer_synchronous().unwrap(), Some(FULL));
    assert_eq!(pool_synchronous(&store).await, FULL);
    store.close().await;

    let db = TestDb::sqlite();
    let store = Store::connect_with(&db.url, Durability::Process)
        .await
        .unwrap();
    assert_eq!(store.batch_writer_synchronous().unwrap(), Some(NORMAL));
    assert_eq!(pool_synchronous(&store).await, NORMAL);
    store.close().await;
    assert!(matches!(
        store.batch_writer_synchronous(),
        Err(StoreError::Closed)
    ));
}

#[tokio::test]
async fn postgres_sessions_never_run_with_synchronous_commit_off() {
    let db = TestDb::postgres().await;
    let name = db.url.rsplit('/').next().unwrap().to_string();
    let mut admin = sqlx::PgConnection::connect(&intake_testkit::pg_admin_url())
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "ALTER DATABASE {name} SET synchronous_commit = off"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let _ = admin.close().await;

    let store = Store::connect(&db.url).await.unwrap();
    // Several pooled sessions, each set up by the store.
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut c = store.pool().acquire().await.unwrap();
        let v: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        assert_eq!(v, "on");
        conns.push(c);
    }
    drop(conns);
    assert_eq!(store.batch_writer_synchronous().unwrap(), None);
    store.close().await;
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Run this test's body in a child process (this test binary, this test only) whose umask is
/// 000, so a file created with the process default would be world-readable. Returns `true` in
/// the child, where the caller runs the body.
fn in_child_with_open_umask(test: &str) -> bool {
    if std::env::var_os("INTAKE_TEST_OPEN_UMASK").is_some() {
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("sh")
        .args(["-c", "umask 000 && exec \"$0\" \"$@\""])
        .arg(exe)
        .args(["--exact", test, "--nocapture"])
        .env("INTAKE_TEST_OPEN_UMASK", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child test failed:\n{text}");
    assert!(text.contains("1 passed"), "the child ran no test:\n{text}");
    false
}

#[tokio::test]
async fn sqlite_file_wal_and_shm_are_created_0600_whatever_the_umask() {
    if !in_child_with_open_umask("sqlite_file_wal_and_shm_are_created_0600_whatever_the_umask") {
        return;
    }
    // The umask really is open here: a plain file comes out 0666.
    let probe = tempfile::tempdir().unwrap();
    std::fs::write(probe.path().join("probe"), b"").unwrap();
    assert_eq!(mode(&probe.path().join("probe")), 0o666);

    let db = TestDb::sqlite();
    let path = path_of(&db);
    let store = Store::connect(&db.url).await.unwrap();
    let help = "HELP".parse().unwrap();
    store.ensure_project(&help, "Help").await.unwrap();
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    let shm = PathBuf::from(format!("{}-shm", path.display()));
    for p in [&path, &wal, &shm] {
        assert!(p.exists(), "{} exists", p.display());
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
    store.close().await;
    // Reopened later (the WAL and SHM are created again): still 0600.
    let store = Store::connect(&db.url).await.unwrap();
    store.ensure_project(&help, "Help").await.unwrap();
    for p in [&path, &wal, &shm] {
        assert_eq!(mode(p), 0o600, "{}", p.display());
    }
    store.close().await;
}

#[test]
fn key_file_is_created_0600_whatever_the_umask() {
    if !in_child_with_open_umask("key_file_is_created_0600_whatever_the_umask") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys").join("intake.key");
    intake_store::Keyring::from_file(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    // And it is accepted again on the next start.
    intake_store::Keyring::from_file(&path).unwrap();
}

#[tokio::test]
async fn existing_database_file_keeps_its_mode() {
    let db = TestDb::sqlite();
    let path = path_of(&db);
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let store = Store::connect(&db.url).await.unwrap();
    assert_eq!(mode(&path), 0o640);
    store.close().await;
}

async fn insert_event(store: &Store, at: i64, n: i64) {
    sqlx::query(
        "INSERT INTO mail_log (at, channel, level, kind, message, fields)
         VALUES ($1, 'c', 'info', 'ignored', $2, '{}')",
    )
    .bind(at)
    .bind(format!("event {n}"))
    .execute(store.pool())
    .await
    .unwrap();
}

#[tokio::test]
async fn mail_log_retention_deletes_old_events_in_chunks_and_keeps_new_ones() {
    for db in TestDb::each().await {
        let store = Store::connect(&db.url).await.unwrap();
        let cutoff = 1_800_000_000;
        // 30 old events interleaved with 5 new ones.
        for n in 0..35 {
            let at = if n % 7 == 3 {
                cutoff + n
            } else {
                cutoff - 1000 + n
            };
            insert_event(&store, at, n).await;
        }
        insert_event(&store, cutoff, 99).await; // exactly at the cut-off: kept
        // Chunks of 4: the 30 old rows take 8 statements; all of them go.
        assert_eq!(
            store.purge_mail_log(cutoff, 4).await.unwrap(),
            30,
            "{}",
            db.kind
        );
        assert_eq!(
            store.purge_mail_log(cutoff, 4).await.unwrap(),
            0,
            "{}",
            db.kind
        );
        let left = store.recent_events(100).await.unwrap();
        assert_eq!(left.len(), 6, "{}", db.kind);
        assert!(left.iter().all(|e| e.at >= cutoff), "{}", db.kind);
        store.close().await;
    }
}

async fn connection_is_tls(store: &Store) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn postgres_over_tls_require_encrypts_and_verify_full_checks_the_certificate() {
    let db = TestDb::postgres().await;
    let store = Store::connect(&format!("{}?sslmode=require", db.url))
        .await
        .unwrap();
    assert!(connection_is_tls(&store).await, "sslmode=require is TLS");
    store.close().await;
    let store = Store::connect(&format!("{}?sslmode=disable", db.url))
        .await
        .unwrap();
    assert!(!connection_is_tls(&store).await, "sslmode=disable is not");
    store.close().await;

    // verify-full against the server's own (self-signed, `DNS:localhost`) certificate as the
    // root: refused on 127.0.0.1, which the certificate does not name, with an error that says
    // why; accepted on `localhost`.
    let mut admin = sqlx::PgConnection::connect(&intake_testkit::pg_admin_url())
        .await
        .unwrap();
    let cert: String = sqlx::query_scalar("SHOW ssl_cert_file")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    let _ = admin.close().await;
    assert!(
        db.url.contains("@127.0.0.1:"),
        "this test expects the server on 127.0.0.1: {}",
        db.url
    );
    let verify = format!("{}?sslmode=verify-full&sslrootcert={cert}", db.url);
    let err = Store::connect(&verify).await.unwrap_err();
    assert!(matches!(err, StoreError::Tls(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("not valid for name") && text.contains("verify-full"),
        "{text}"
    );
    let by_name = verify.replace("@127.0.0.1:", "@localhost:");
    let store = Store::connect(&by_name).await.unwrap();
    assert!(connection_is_tls(&store).await, "verify-full is TLS");
    store.close().await;
}
