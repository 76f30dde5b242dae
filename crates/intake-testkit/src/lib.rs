//! Test helpers shared by the crates' integration tests (dev-dependency only).
//!
//! [`TestDb`] gives each test its own database: a SQLite file in a temporary directory, or a
//! uniquely named PostgreSQL database on the server at `INTAKE_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/test`), dropped when the guard is dropped unless
//! `INTAKE_KEEP_DB=1` is set.
//!
//! [`idp::Idp`] runs a real OAuth 2.0 / OpenID Connect server (panva's oidc-provider) on a free
//! loopback port, installed by `bash scripts/testbed/idp.sh install`.
//!
//! [`fault::FaultProxy`] is a TCP proxy on loopback that cuts, stalls, drips, resets and
//! refuses connections on command (the fault-injection tests and the soak benchmark).
//!
//! [`dovecot::Dovecot`] runs a real Dovecot 2.3 (IMAP, POP3, LMTP; passwords and OAuth bearer
//! tokens from the IdP) on free loopback ports, installed by `bash scripts/testbed/dovecot.sh install`;
//! with [`dovecot::DovecotOptions::submission`] also its SMTP submission service (the same
//! password and OAuth checks), relaying into a [`smtp_sink::SmtpSink`] the tests read, or into
//! a [`sent_relay::SentRelay`] that delivers through Dovecot's LMTP with a copy in the sender's
//! Sent folder (the provider's save-to-Sent on submission).

pub mod dovecot;
pub mod fault;
pub mod idp;
pub mod proxy;
pub mod sent_relay;
pub mod smtp_sink;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// The PostgreSQL server tests use to create their databases.
pub fn pg_admin_url() -> String {
    std::env::var("INTAKE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A throwaway database. `url` is what `intake --db` and `Store::connect` take.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    pub kind: &'static str,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

fn unique_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "intake_t_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestDb {
    /// A fresh SQLite database file in its own temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("intake.db").display());
        Self {
            url,
            kind: "sqlite",
            _dir: Some(dir),
            pg_name: None,
        }
    }

    /// A fresh, empty PostgreSQL database.
    pub async fn postgres() -> Self {
        let name = unique_name();
        let admin = pg_admin_url();
        let mut conn = PgConnection::connect(&admin)
            .await
            .expect("connect to PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let _ = conn.close().await;
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(admin);
        Self {
            url: format!("{base}/{name}"),
            kind: "postgres",
            _dir: None,
            pg_name: Some(name),
        }
    }

    /// One fresh database of each kind: run a conformance story on both.
    pub async fn each() -> Vec<Self> {
        vec![Self::sqlite(), Self::postgres().await]
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        if std::env::var("INTAKE_KEEP_DB").is_ok_and(|v| v == "1") {
            eprintln!("keeping test database {name}");
            return;
        }
        // Drop runs outside any async context we can rely on: use a short-lived runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(mut c) = PgConnection::connect(&pg_admin_url()).await {
                        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                    }
                });
            }
        })
        .join();
    }
}
