//! Administrators of `intake serve`: users (argon2id password hashes, computed by the caller),
//! API tokens and browser sessions (only SHA-256 hashes of the random values are stored, so a
//! copy of the database does not let anyone in), failed-login counts for the rate limit (shared
//! by every node), and the audit log (who changed what).
//!
//! The store never sees a password or a token in clear: callers pass hashes
//! (see `intake/src/serve/auth.rs`).

use serde::Serialize;
use sqlx::Row;

use crate::{Store, StoreError, now};

/// Who a token or session belongs to, and (for a session) its CSRF token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub user: String,
    pub csrf_token: String,
    pub expires_at: i64,
}

/// One audit-log entry.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
}

impl Store {
    /// Create an administrator, or replace the password hash of an existing one (`intake admin
    /// create` on an existing user resets the password). Returns true when the user is new.
    pub async fn upsert_admin_user(
        &self,
        name: &str,
        password_hash: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT 1 FROM admin_users WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if exists {
            sqlx::query("UPDATE admin_users SET password_hash = $1 WHERE name = $2")
                .bind(password_hash)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            // A new password ends the sessions opened with the old one.
            sqlx::query("DELETE FROM admin_sessions WHERE user_name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query(
                "INSERT INTO admin_users (name, password_hash, created_at) VALUES ($1, $2, $3)",
            )
            .bind(name)
            .bind(password_hash)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(!exists)
    }

    /// The stored password hash (PHC string) of a user, if the user exists.
    pub async fn admin_password_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query("SELECT password_hash FROM admin_users WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await?
                .map(|r| r.try_get("password_hash"))
                .transpose()?,
        )
    }

    /// Store the hash of a new API token for `user`. Fails when the user does not exist.
    pub async fn add_api_token(&self, user: &str, token_hash: &str) -> Result<(), StoreError> {
        if self.admin_password_hash(user).await?.is_none() {
            return Err(StoreError::NoUser(user.to_string()));
        }
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, user_name, created_at) VALUES ($1, $2, $3)",
        )
        .bind(token_hash)
        .bind(user)
        .bind(now())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The user an API token (by hash) belongs to.
    pub async fn api_token_user(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        let user: Option<String> =
            sqlx::query("SELECT user_name FROM api_tokens WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(self.pool())
                .await?
                .map(|r| r.try_get("user_name"))
                .transpose()?;
        if user.is_some() {
            let _ = sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2")
                .bind(now())
                .bind(token_hash)
                .execute(self.pool())
                .await;
        }
        Ok(user)
    }

    /// Open a browser session (by the hash of its cookie value).
    pub async fn create_session(
        &self,
        session_hash: &str,
        user: &str,
        csrf_token: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO admin_sessions (session_hash, user_name, csrf_token, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(session_hash)
        .bind(user)
        .bind(csrf_token)
        .bind(now())
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A live (unexpired) session by the hash of its cookie value.
    pub async fn session(&self, session_hash: &str) -> Result<Option<SessionInfo>, StoreError> {
        let row = sqlx::query(
            "SELECT user_name, csrf_token, expires_at FROM admin_sessions
             WHERE session_hash = $1 AND expires_at > $2",
        )
        .bind(session_hash)
        .bind(now())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(SessionInfo {
                user: r.try_get("user_name")?,
                csrf_token: r.try_get("csrf_token")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    /// End a session (logout).
    pub async fn delete_session(&self, session_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM admin_sessions WHERE session_hash = $1")
            .bind(session_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Record a failed login under each of `scopes` (e.g. `user:NAME`, `addr:IP`).
    pub async fn record_login_failure(&self, scopes: &[&str]) -> Result<(), StoreError> {
        let at = now();
        for s in scopes {
            sqlx::query("INSERT INTO login_failures (scope, at) VALUES ($1, $2)")
                .bind(*s)
                .bind(at)
                .execute(self.pool())
                .await?;
        }
        Ok(())
    }

    /// Failed logins under `scope` since `since` (Unix seconds).
    pub async fn login_failures_since(&self, scope: &str, since: i64) -> Result<i64, StoreError> {
        let n: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM login_failures WHERE scope = $1 AND at >= $2")
                .bind(scope)
                .bind(since)
                .fetch_one(self.pool())
                .await?
                .try_get("n")?;
        Ok(n)
    }

    /// Forget failed logins and sessions older than `before` (housekeeping).
    pub async fn purge_auth_records(&self, before: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_failures WHERE at < $1")
            .bind(before)
            .execute(self.pool())
            .await?;
        sqlx::query("DELETE FROM admin_sessions WHERE expires_at < $1")
            .bind(now())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Append to the audit log. `details` must not hold secrets (callers pass key names, not
    /// values).
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, details) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(now())
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(details.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Audit-log entries with id below `before` (all when `None`), newest first, at most
    /// `limit`.
    pub async fn audit_entries(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, details FROM audit_log
             WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let details: String = r.try_get("details")?;
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(self.pool()).await?;
        Ok(())
    }
}
