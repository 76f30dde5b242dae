//! Authorization flows started through `intake serve`'s API (`api_flows`): one row per flow,
//! `pending` until the node that runs it (the callback of a browser flow on any node, or the
//! background task polling a device flow) records `done` or `failed` with its document, so that
//! every node answers `GET /api/flows/{flow_id}` alike.
//!
//! While a device flow is pending its row holds the user code and the verification URI
//! ([`Store::set_api_flow_prompt`]) so that any node's page can show them.
//!
//! No secret is kept here: the PKCE verifier of a browser flow is sealed in `oauth_flows`
//! ([`crate::tokens`]), and a device code lives only in the memory of the node polling it.

use sqlx::Row;

use crate::{Store, StoreError, now};

/// Rows older than this are deleted when a new flow starts (a finished flow is looked at for
/// a little while, then it is history in the mail log and the audit log).
pub const KEEP_SECONDS: i64 = 7 * 24 * 3600;

/// A flow as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFlow {
    pub flow_id: String,
    /// `browser` or `device`.
    pub kind: String,
    pub integration: String,
    pub mailbox: String,
    /// `pending`, `done` or `failed`.
    pub state: String,
    /// The node that started it (a device flow is polled there).
    pub node: Option<String>,
    /// `done`: the authorization document; `failed`: the decoded error.
    pub result: Option<serde_json::Value>,
    pub expires_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Store {
    /// Record a started flow as `pending`; rows older than [`KEEP_SECONDS`] go.
    pub async fn start_api_flow(
        &self,
        flow_id: &str,
        kind: &str,
        integration: &str,
        mailbox: &str,
        node: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let ts = now();
        sqlx::query("DELETE FROM api_flows WHERE created_at < $1")
            .bind(ts - KEEP_SECONDS)
            .execute(self.pool())
            .await?;
        sqlx::query(
            "INSERT INTO api_flows (flow_id, kind, integration, mailbox, state, node, result,
                 expires_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'pending', $5, NULL, $6, $7, $7)",
        )
        .bind(flow_id)
        .bind(kind)
        .bind(integration)
        .bind(mailbox)
        .bind(node)
        .bind(expires_at)
        .bind(ts)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// What a pending flow shows the user while it waits (a device flow's user code and
    /// verification URI: not secrets, the user types them), kept in `result` until the flow
    /// finishes and replaces it. Does nothing once the flow has finished.
    pub async fn set_api_flow_prompt(
        &self,
        flow_id: &str,
        prompt: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_flows SET result = $1 WHERE flow_id = $2 AND state = 'pending'")
            .bind(prompt.to_string())
            .bind(flow_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Finish a pending flow: `state` is `done` or `failed`, `result` its document. Returns
    /// false when the flow is unknown or already finished (the first answer stays).
    pub async fn finish_api_flow(
        &self,
        flow_id: &str,
        state: &str,
        result: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE api_flows SET state = $1, result = $2, updated_at = $3
             WHERE flow_id = $4 AND state = 'pending'",
        )
        .bind(state)
        .bind(result.to_string())
        .bind(now())
        .bind(flow_id)
        .execute(self.pool())
        .await?
        .rows_affected()
            == 1)
    }

    /// One flow, as stored (a `pending` flow past `expires_at` is still `pending` here; the
    /// caller decides what that means).
    pub async fn api_flow(&self, flow_id: &str) -> Result<Option<ApiFlow>, StoreError> {
        let r = sqlx::query(
            "SELECT flow_id, kind, integration, mailbox, state, node, result, expires_at,
                    created_at, updated_at
             FROM api_flows WHERE flow_id = $1",
        )
        .bind(flow_id)
        .fetch_optional(self.pool())
        .await?;
        r.map(|r| {
            let result: Option<String> = r.try_get("result")?;
            Ok(ApiFlow {
                flow_id: r.try_get("flow_id")?,
                kind: r.try_get("kind")?,
                integration: r.try_get("integration")?,
                mailbox: r.try_get("mailbox")?,
                state: r.try_get("state")?,
                node: r.try_get("node")?,
                result: result
                    .map(|s| serde_json::from_str(&s))
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(format!("api_flows.result: {e}")))?,
                expires_at: r.try_get("expires_at")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .transpose()
    }
}
