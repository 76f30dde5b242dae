//! The ticket store and message ledger, on SQLite (default, embedded) and PostgreSQL (several
//! nodes).
//!
//! One code path for both backends through sqlx's `Any` driver: the schema uses only TEXT,
//! BIGINT and BLOB/BYTEA, and `$N` placeholders work on both. Each backend has its own
//! migration folder (`migrations/sqlite`, `migrations/postgres`) with the same numbered files;
//! a test checks the two lists match.
//!
//! - [`apply`]: the exactly-once engine: a batch of prepared messages is claimed in the ledger
//!   and applied (ticket created / comment added / ignored / quarantined) in one transaction.
//! - [`query`]: reading tickets, comments, attachments and the ledger back.
//! - [`log`]: the mail log (structured events);
//! - [`crypto`]: at-rest encryption (XChaCha20-Poly1305, key from `INTAKE_SECRET_KEY` or a 0600
//!   key file, key ids for rotation);
//! - [`tokens`]: encrypted OAuth tokens, pending OAuth flows (any node finishes a callback),
//!   cross-node single-flight refresh leases and once-only credential warnings.
//! - [`lease`]: per-channel leases, so that of several nodes on one database exactly one at a
//!   time works a channel (mailbox + folder), and another takes over when the holder dies.

pub mod apply;
pub mod checkpoint;
pub mod crypto;
pub mod lease;
pub mod log;
pub mod query;
pub mod tokens;

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use intake_core::ProjectKey;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

pub use apply::{Applied, BatchRules, Incoming, LoopGuardState};
pub use crypto::{CryptoError, Keyring, Sealed};
pub use lease::node_id;
pub use query::{
    AttachmentInfo, CommentInfo, LedgerRow, RelatedTicket, Table, TicketDetail, TicketSummary,
};
pub use tokens::{PendingFlow, StoredToken, TokenStatus};

/// Errors from the store. Messages never contain stored secrets or message bodies.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("project {0} does not exist")]
    NoProject(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the store is closed")]
    Closed,
}

/// Which database the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connected, migrated store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// On a SQLite file: the connection that writes ticket batches (see [`apply`]).
    native: Option<apply::NativeWriter>,
    /// On PostgreSQL: the native-driver pool that writes ticket batches (see [`apply`]).
    pg: Option<apply::PgWriter>,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// Current time in Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Connect to `sqlite://PATH` (the file is created if missing) or `postgres://…`, and run
    /// the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let sep = if rest.contains('?') { '&' } else { '?' };
            let url = if rest.contains("mode=") {
                url.to_string()
            } else {
                format!("{url}{sep}mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let opts = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        let pool = match backend {
            Backend::Sqlite => {
                opts.max_connections(4)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL: readers never block the writer; NORMAL sync is crash-safe for
                            // process crashes (a committed transaction survives SIGKILL).
                            // Page size only takes effect on a new, empty database (before WAL);
                            // 16 KiB pages keep typical mail bodies out of overflow chains.
                            conn.execute("PRAGMA page_size=16384").await?;
                            conn.execute("PRAGMA journal_mode=WAL").await?;
                            conn.execute("PRAGMA cache_size=-65536").await?;
                            conn.execute("PRAGMA wal_autocheckpoint=8192").await?;
                            // Statement journals (multi-row INSERT … ON CONFLICT) stay in memory.
                            conn.execute("PRAGMA temp_store=MEMORY").await?;
                            conn.execute("PRAGMA synchronous=NORMAL").await?;
                            conn.execute("PRAGMA busy_timeout=10000").await?;
                            conn.execute("PRAGMA foreign_keys=ON").await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => opts.max_connections(8).connect(&url).await?,
        };
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let native = match backend {
            Backend::Sqlite => sqlite_file(&url)?
                .map(|p| apply::NativeWriter::open(&p))
                .transpose()?,
            Backend::Postgres => None,
        };
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(apply::PgWriter::connect(&url)?),
        };
        Ok(Self {
            pool,
            backend,
            native,
            pg,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Create the project if it does not exist yet (idempotent, safe with several nodes).
    pub async fn ensure_project(&self, key: &ProjectKey, name: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO projects (key, name, next_number, created_at) VALUES ($1, $2, 1, $3)
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key.as_str())
        .bind(name)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Close the store: the batch writer, then the pool, waiting for connections to finish.
    /// On SQLite the last connection to close checkpoints the WAL into the database file.
    pub async fn close(&self) {
        if let Some(n) = &self.native {
            n.close();
        }
        if let Some(pg) = &self.pg {
            pg.close().await;
        }
        self.pool.close().await;
    }
}

/// The file behind a `sqlite:` URL, or `None` for an in-memory or read-only database (those
/// keep every write on the sqlx pool).
fn sqlite_file(url: &str) -> Result<Option<std::path::PathBuf>, StoreError> {
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
    let path = opts.get_filename();
    let memory = path.as_os_str().is_empty()
        || path.as_os_str() == ":memory:"
        || url.contains("mode=memory")
        || url.contains("mode=ro");
    Ok((!memory).then(|| path.to_path_buf()))
}

/// Names of the migration files of one backend, for the parity test.
pub fn migration_names(backend: Backend) -> Vec<String> {
    let m = match backend {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::Postgres => &POSTGRES_MIGRATIONS,
    };
    m.iter()
        .map(|m| format!("{}_{}", m.version, m.description))
        .collect()
}

impl FromStr for Backend {
    type Err = StoreError;
    fn from_str(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(url.to_string()))
        }
    }
}
