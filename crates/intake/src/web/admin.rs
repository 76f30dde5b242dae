//! `GET /admin`: the audit log (who changed what, newest first) and API tokens: `POST
//! /admin/tokens` creates one for the logged-in administrator and shows it once (only its hash
//! is stored, as `intake admin token` does).

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;

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

#[derive(Template)]
#[template(path = "admin.html")]
struct Page {
    layout: Layout,
    audit: Vec<AuditRow>,
    new_token: Option<String>,
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
    new_token: Option<String>,
) -> Result<Response, PageError> {
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
            audit,
            new_token,
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
    show(&state, &who, q.before, None).await
}

/// `POST /admin/tokens`: a new API token for the logged-in administrator, shown once.
pub async fn create_token(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Response, PageError> {
    let token = auth::random_secret()?;
    state
        .store
        .add_api_token(&who.user, &auth::hash_secret(&token))
        .await?;
    state
        .store
        .audit(
            &who.user,
            "api_token_created",
            &who.user,
            serde_json::json!({"via": "web"}),
        )
        .await?;
    show(&state, &who, None, Some(token)).await
}
