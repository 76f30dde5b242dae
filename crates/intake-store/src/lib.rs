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
//! - [`browse`]: paged reads for the REST API (ticket search, attachments by id, mail-log
//!   filters, quarantine).
//! - [`access`]: the administrators and API tokens listed, a token revoked (the admin page).
//! - [`activity`]: messages per channel and hour (the admin UI's overview charts).
//! - [`original`]: the kept original (raw) message of a ticket or comment with HTML.
//! - [`query`]: reading tickets, comments, attachments and the ledger back.
//! - [`log`]: the mail log (structured events);
//! - [`crypto`]: at-rest encryption (XChaCha20-Poly1305, key from `INTAKE_SECRET_KEY` or a 0600
//!   key file, key ids for rotation);
//! - [`tokens`]: encrypted OAuth tokens, pending OAuth flows (any node finishes a callback),
//!   cross-node single-flight refresh leases and once-only credential warnings.
//! - [`outbox`]: outgoing effects (mail, webhook and tracker calls) written with the ticket
//!   effect that causes them, claimed with a lease by any node, delivered with a fixed identity.
//! - [`admin`]: administrators of `intake serve`, hashed API tokens and sessions, failed-login
//!   counts (rate limit) and the audit log.
//! - [`config_store`]: integrations and channels kept in the database (sealed bodies, a version
//!   every node polls), for `intake serve`.
//! - [`status`]: what the node working a channel last saw (last success, last error, failing
//!   since), for the status API and alerts.
//! - [`alerts`]: open/cleared alerts (one open per key) and who sends their webhook.
//! - [`backlog`]: messages a channel's last listing found without an outcome yet.
//! - [`flows`]: authorization flows started through the API (pending / done / failed), read by
//!   every node.
//! - [`retry`]: a quarantined message applied again, exactly once.
//! - [`lease`]: per-channel leases, so that of several nodes on one database exactly one at a
//!   time works a channel (mailbox + folder), and another takes over when the holder dies.

pub mod access;
pub mod activity;
pub mod admin;
pub mod alerts;
pub mod apply;
pub mod backlog;
pub mod browse;
pub mod checkpoint;
pub mod config_store;
pub mod crypto;
pub mod flows;
pub mod lease;
pub mod log;
pub mod original;
pub mod outbox;
pub mod query;
pub mod retry;
pub mod status;
pub mod tokens;

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use intake_core::ProjectKey;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, AssertSqlSafe, Executor};

pub use apply::{
    Acknowledge, Applied, BatchRules, Incoming, LoopGuardState, OutboxRules, SinkRoute, Staged,
};
pub use crypto::{CryptoError, Keyring, Sealed};
pub use lease::node_id;
pub use outbox::{NewOutbox, OutboxItem, OutboxKind, OutboxTally};
pub use query::{
    AttachmentInfo, CommentInfo, LedgerRow, RelatedTicket, Table, TicketDetail, TicketSummary,
};
pub use tokens::{PendingFlow, StoredToken, TokenStatus, Tokens};

/// Errors from the store. Messages never contain stored secrets or message bodies.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("no administrator named {0:?} (create one with `intake admin create`)")]
    NoUser(String),
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
    /// Another writer recorded one of the batch's messages between this batch's look-up and
    /// its ledger insert; the transaction was rolled back and the batch is applied again
    /// (see `apply`).
    #[error("another writer recorded one of this batch's messages first")]
    Raced,
    /// A read the store will not do as asked (the message says what to ask instead).
    #[error("{0}")]
    Invalid(String),
    #[error(
        "TLS connection to PostgreSQL failed: {0}. With sslmode=verify-full the server's \
         certificate must chain to sslrootcert (or a public root) and name the host in the URL \
         (a certificate for a name does not cover an IP address); sslmode=require encrypts \
         without checking the certificate"
    )]
    Tls(String),
    #[error("database file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

/// Which database the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What a committed transaction survives. It matters where a commit is followed by a
/// destructive action on the mail source (delete, move, POP3 `DELE`, `\\Seen` under
/// `start = "unread"`): if a power loss undid the commit after the server forgot the message, the
/// message would be lost. PostgreSQL commits are always power-loss durable (the store never lets
/// a session run with `synchronous_commit = off`); this setting is for SQLite files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// A commit returns only after it is on disk: SQLite `synchronous=FULL`, which in WAL mode
    /// fsyncs the WAL at every commit (once per batch). The default, and what `intake run`
    /// uses: every channel there acknowledges to its source after the commit.
    #[default]
    PowerLoss,
    /// A commit survives a crash of the process (SIGKILL, panic, out of memory) but a power loss
    /// or kernel crash may undo the last ones: SQLite `synchronous=NORMAL` (WAL frames reach the
    /// disk at the next checkpoint). Only for work that never destroys its input, such as
    /// `intake ingest` of files: a re-run imports what a power loss undid.
    Process,
}

impl Durability {
    /// The SQLite `synchronous` setting for this durability.
    fn sqlite_synchronous(self) -> &'static str {
        match self {
            Self::PowerLoss => "FULL",
            Self::Process => "NORMAL",
        }
    }
}

/// A connected, migrated store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    durability: Durability,
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
    /// Connect to `sqlite://PATH` (the file is created if missing, mode 0600) or
    /// `postgres://…`, and run the migrations. Commits are power-loss durable
    /// ([`Durability::PowerLoss`]).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, Durability::PowerLoss).await
    }

    /// [`Store::connect`] with the durability of commits chosen (it only changes SQLite files).
    pub async fn connect_with(url: &str, durability: Durability) -> Result<Self, StoreError> {
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
        // A SQLite file holds every ticket and mail body: Intake creates it readable by its own
        // user only, whatever the umask, before SQLite opens it (SQLite gives the -wal and -shm
        // files the database file's mode).
        let file = match backend {
            Backend::Sqlite => sqlite_file(&url)?,
            Backend::Postgres => None,
        };
        let created = match &file {
            Some(p) if url.contains("mode=rwc") => create_private(p)?,
            _ => false,
        };
        let opts = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        let pool = match backend {
            Backend::Sqlite => {
                let synchronous = durability.sqlite_synchronous();
                opts.max_connections(4)
                    .after_connect(move |conn, _| {
                        Box::pin(async move {
                            // WAL: readers never block the writer. `synchronous` per
                            // `Durability`: NORMAL survives process crashes, FULL power loss.
                            // Page size only takes effect on a new, empty database (before WAL);
                            // 16 KiB pages keep typical mail bodies out of overflow chains.
                            conn.execute("PRAGMA page_size=16384").await?;
                            conn.execute("PRAGMA journal_mode=WAL").await?;
                            conn.execute("PRAGMA cache_size=-65536").await?;
                            conn.execute("PRAGMA wal_autocheckpoint=8192").await?;
                            // Statement journals (multi-row INSERT … ON CONFLICT) stay in memory.
                            conn.execute("PRAGMA temp_store=MEMORY").await?;
                            conn.execute(AssertSqlSafe(format!(
                                "PRAGMA synchronous={synchronous}"
                            )))
                            .await?;
                            conn.execute("PRAGMA busy_timeout=10000").await?;
                            conn.execute("PRAGMA foreign_keys=ON").await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => opts
                .max_connections(8)
                .after_connect(|conn, _| Box::pin(async move { synchronous_commit_on(conn).await }))
                .connect(&url)
                .await
                .map_err(tls_error)?,
        };
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let native = file
            .as_deref()
            .map(|p| apply::NativeWriter::open(p, durability.sqlite_synchronous()))
            .transpose()?;
        if let Some(p) = &file {
            private_companions(p, created)?;
        }
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(apply::PgWriter::connect(&url)?),
        };
        Ok(Self {
            pool,
            backend,
            durability,
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

    /// A transaction that will write. On SQLite it takes the write lock at `BEGIN IMMEDIATE`:
    /// a deferred transaction that reads first and then writes fails at once with "database is
    /// locked" when another connection (the ingest writer) committed in between — the busy
    /// timeout does not apply to that upgrade. PostgreSQL needs nothing of the kind.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// What this store's commits survive (always [`Durability::PowerLoss`] on PostgreSQL).
    pub fn durability(&self) -> Durability {
        match self.backend {
            Backend::Sqlite => self.durability,
            Backend::Postgres => Durability::PowerLoss,
        }
    }

    /// SQLite's `synchronous` setting (0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA) on the connection that
    /// commits ticket batches, read back from that connection; `None` when there is none
    /// (PostgreSQL, in-memory SQLite).
    pub fn batch_writer_synchronous(&self) -> Result<Option<i64>, StoreError> {
        self.native.as_ref().map(|n| n.synchronous()).transpose()
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

/// A failed TLS handshake (sqlx reports rustls' verdict as an I/O error) becomes
/// [`StoreError::Tls`], which says what `sslmode` checks; anything else stays a database error.
fn tls_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Tls(e) => StoreError::Tls(e.to_string()),
        sqlx::Error::Io(io) => match io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(tls) => StoreError::Tls(tls.to_string()),
            None => StoreError::Db(sqlx::Error::Io(io)),
        },
        e => StoreError::Db(e),
    }
}

/// Keep every PostgreSQL session power-loss durable: with `synchronous_commit = off` (a server,
/// database or role default) a commit returns before its WAL is flushed, and a crash of the
/// server can undo it after Intake has already deleted or moved the message on the mail server.
/// `local`, `remote_write`, `on` and `remote_apply` all flush locally first and are left alone.
async fn synchronous_commit_on(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut *conn)
        .await?;
    if setting == "off" {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "PostgreSQL has synchronous_commit = off; Intake sets it to on for its own \
                 sessions, since it deletes and moves mail only after a durable commit"
            );
        });
        conn.execute("SET synchronous_commit = on").await?;
    }
    Ok(())
}

/// Create the database file empty with mode 0600 if it does not exist (SQLite takes an empty
/// file for an empty database). Returns whether it was created here.
fn create_private(path: &Path) -> Result<bool, StoreError> {
    let err = |source| StoreError::File {
        path: path.display().to_string(),
        source,
    };
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => {
            // `mode` above is filtered by the umask; this is not.
            f.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(err)?;
            // The new directory entry reaches the disk too (SQLite syncs the directory for the
            // WAL it creates, not for a database file someone else created).
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(err(e)),
    }
}

/// After SQLite opened the file: a database Intake created gets its `-wal` and `-shm` files set
/// to 0600 too (SQLite already copies the database file's mode onto them; this does not depend
/// on it). An existing database that others can read is left as the administrator made it,
/// with a warning.
fn private_companions(path: &Path, created: bool) -> Result<(), StoreError> {
    if !created {
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:03o}", meta.permissions().mode() & 0o777),
                "the database file is accessible by group or others; `chmod 600` it"
            );
        }
        return Ok(());
    }
    for suffix in ["-wal", "-shm"] {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        match std::fs::set_permissions(&companion, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError::File {
                    path: PathBuf::from(companion).display().to_string(),
                    source: e,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// The file behind a `sqlite:` URL, or `None` for an in-memory or read-only database (those
/// keep every write on the sqlx pool).
fn sqlite_file(url: &str) -> Result<Option<PathBuf>, StoreError> {
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
