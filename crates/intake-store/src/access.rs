//! Who can get in, for the admin page: the administrators with how many API tokens and open
//! sessions each has, the API tokens (by a short id: the first 16 hex digits of the token's
//! SHA-256 — the token itself is never stored), and revoking one.

use sqlx::Row;

use crate::{Store, StoreError, now};

/// The length of a token id (hex digits of the stored hash).
pub const TOKEN_ID_LEN: usize = 16;

/// One administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUser {
    pub name: String,
    pub created_at: i64,
    pub tokens: i64,
    /// Sessions not yet expired.
    pub sessions: i64,
}

/// One API token, without the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenInfo {
    /// The first [`TOKEN_ID_LEN`] hex digits of the token's SHA-256.
    pub id: String,
    pub user: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl Store {
    /// Every administrator, by name.
    pub async fn admin_users(&self) -> Result<Vec<AdminUser>, StoreError> {
        let rows = sqlx::query(
            "SELECT u.name, u.created_at,
                    (SELECT COUNT(*) FROM api_tokens t WHERE t.user_name = u.name) AS tokens,
                    (SELECT COUNT(*) FROM admin_sessions s
                       WHERE s.user_name = u.name AND s.expires_at > $1) AS sessions
             FROM admin_users u ORDER BY u.name",
        )
        .bind(now())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AdminUser {
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                    tokens: r.try_get("tokens")?,
                    sessions: r.try_get("sessions")?,
                })
            })
            .collect()
    }

    /// Every API token, newest first.
    pub async fn api_tokens(&self) -> Result<Vec<ApiTokenInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT token_hash, user_name, created_at, last_used_at FROM api_tokens
             ORDER BY created_at DESC, token_hash",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let hash: String = r.try_get("token_hash")?;
                Ok(ApiTokenInfo {
                    id: hash.chars().take(TOKEN_ID_LEN).collect(),
                    user: r.try_get("user_name")?,
                    created_at: r.try_get("created_at")?,
                    last_used_at: r.try_get("last_used_at")?,
                })
            })
            .collect()
    }

    /// Revoke the API token with this id: the next request with it gets 401. Returns the user
    /// it belonged to, or `None` when no token has this id (or the id is not
    /// [`TOKEN_ID_LEN`] hex digits).
    pub async fn revoke_api_token(&self, id: &str) -> Result<Option<String>, StoreError> {
        if id.len() != TOKEN_ID_LEN || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let mut tx = self.begin_write().await?;
        let found = sqlx::query(
            "SELECT token_hash, user_name FROM api_tokens WHERE substr(token_hash, 1, 16) = $1",
        )
        .bind(id.to_ascii_lowercase())
        .fetch_all(&mut *tx)
        .await?;
        // Two tokens sharing 64 bits of a SHA-256 is not a case to guess about: revoke none.
        let [row] = found.as_slice() else {
            return Ok(None);
        };
        let hash: String = row.try_get("token_hash")?;
        let user: String = row.try_get("user_name")?;
        sqlx::query("DELETE FROM api_tokens WHERE token_hash = $1")
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(user))
    }
}
