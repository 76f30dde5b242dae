//! `GET /admin`: the administrators, the API tokens and the audit log (who changed what, newest
//! first). `POST /admin/tokens` creates a token for the logged-in administrator and shows it
//! once (only its hash is stored, as `intake admin token` does); `POST
//! /admin/tokens/{id}/revoke` revokes one (the API answers 401 to it from then on). Both are
//! audited.

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use intake_store::access::TOKEN_ID_LEN;

use super::{Layout, PageError, fmt, render};
use crate::serve::AppState;
use crate::serve::auth::{self, Principal};

pub struct AuditRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: String,
}

pub struct UserRow {
    pub name: String,
    pub created: String,
    pub tokens: i64,
    pub sessions: i64,
}

pub struct TokenRow {
    pub id: String,
    pub user: String,
    pub created: String,
    pub last_used: String,
}

#[derive(Template)]
#[template(path = "admin.html")]
struct Page {
    layout: Layout,
    users: Vec<UserRow>,
    tokens: Vec<TokenRow>,
    audit: Vec<AuditRow>,
    /// A token just created (shown once) and its id.
    new_token: Option<(String, String)>,
    /// What the last form did.
    notice: Option<String>,
    next_before: Option<i64>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct Before {
    before: Option<i64>,
}

const PER_PAGE: i64 = 50;

async fn show(
    state: &AppState,
    who: &Principal,
    before: Option<i64>,
    new_token: Option<(String, String)>,
    notice: Option<String>,
) -> Result<Response, PageError> {
    let now = intake_store::now();
    let users = state
        .store
        .admin_users()
        .await?
        .into_iter()
        .map(|u| UserRow {
            name: u.name,
            created: fmt::time(u.created_at),
            tokens: u.tokens,
            sessions: u.sessions,
        })
        .collect();
    let tokens = state
        .store
        .api_tokens()
        .await?
        .into_iter()
        .map(|t| TokenRow {
            id: t.id,
            user: t.user,
            created: fmt::time(t.created_at),
            last_used: t
                .last_used_at
                .map_or_else(|| "never".into(), |at| fmt::ago(at, now)),
        })
        .collect();
    let entries = state.store.audit_entries(before, PER_PAGE).await?;
    let next_before = (entries.len() as i64 == PER_PAGE)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let audit = entries
        .into_iter()
        .map(|e| AuditRow {
            at: fmt::time(e.at),
            actor: e.actor,
            action: e.action,
            target: e.target,
            details: if e.details.as_object().is_some_and(|m| m.is_empty()) {
                String::new()
            } else {
                e.details.to_string()
            },
        })
        .collect();
    let layout = Layout::new(state, who, "Admin", "/admin").await;
    Ok(render(
        StatusCode::OK,
        &Page {
            layout,
            users,
            tokens,
            audit,
            new_token,
            notice,
            next_before,
        },
    ))
}

/// `GET /admin`.
pub async fn page(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<Before>,
) -> Result<Response, PageError> {
    show(&state, &who, q.before, None, None).await
}

/// `POST /admin/tokens`: a new API token for the logged-in administrator, shown once.
pub async fn create_token(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Response, PageError> {
    let token = auth::random_secret()?;
    let hash = auth::hash_secret(&token);
    state.store.add_api_token(&who.user, &hash).await?;
    let id: String = hash.chars().take(TOKEN_ID_LEN).collect();
    state
        .store
        .audit(
            &who.user,
            "api_token_created",
            &who.user,
            serde_json::json!({"via": "web", "token_id": id}),
        )
        .await?;
    show(&state, &who, None, Some((token, id)), None).await
}

/// `POST /admin/tokens/{id}/revoke`: the token with this id stops working at once.
pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let Some(owner) = state.store.revoke_api_token(&id).await? else {
        return Err(PageError(
            StatusCode::NOT_FOUND,
            format!("There is no API token {id}: it may have been revoked already."),
        ));
    };
    state
        .store
        .audit(
            &who.user,
            "api_token_revoked",
            &owner,
            serde_json::json!({"via": "web", "token_id": id}),
        )
        .await?;
    show(
        &state,
        &who,
        None,
        None,
        Some(format!("API token {id} of {owner} is revoked.")),
    )
    .await
}
