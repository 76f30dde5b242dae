//! `POST /api/session` (log in: cookie + CSRF token), `GET /api/session` (who am I, and the CSRF
//! token again), `DELETE /api/session` (log out).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use crate::serve::AppState;
use crate::serve::auth::{self, Principal, Via};
use crate::serve::error::{ApiError, ErrorBody};

/// Login body.
#[derive(serde::Deserialize, utoipa::ToSchema)]
pub struct Login {
    pub user: String,
    /// Write-only.
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// A session: who, and the CSRF token to send in `X-CSRF-Token` on every request that changes
/// something.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SessionAnswer {
    pub user: String,
    /// `session` or `token`.
    pub via: String,
    /// Only for a session.
    pub csrf_token: Option<String>,
    /// Unix seconds; only for a session created by this request.
    pub expires_at: Option<i64>,
}

/// Log in with a user name and password. Sets the session cookie (HttpOnly, SameSite=Lax,
/// Secure when the public URL is https). Failed logins are limited per user and per address.
#[utoipa::path(post, path = "/api/session", tag = "session", request_body = Login,
    responses(
        (status = 201, body = SessionAnswer),
        (status = 401, body = ErrorBody),
        (status = 422, description = "the body is not {user, password}"),
        (status = 429, body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<Login>,
) -> Result<Response, ApiError> {
    let addr = auth::client_address(peer);
    auth::check_rate(&state, &body.user, &addr).await?;
    let stored = state.store.admin_password_hash(&body.user).await?;
    let password = body.password;
    let ok = tokio::task::spawn_blocking(move || match stored {
        Some(h) => auth::verify_password(&password, &h),
        None => {
            // The same work for an unknown user, so timing does not tell users apart.
            let _ = auth::verify_password(&password, dummy_hash());
            false
        }
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    if !ok {
        state
            .store
            .record_login_failure(&[&format!("user:{}", body.user), &format!("addr:{addr}")])
            .await?;
        let _ = state
            .store
            .audit(
                &body.user,
                "login_failed",
                "session",
                serde_json::json!({"address": addr}),
            )
            .await;
        return Err(ApiError::unauthorized("wrong user name or password"));
    }
    let sid = auth::random_secret()?;
    let csrf = auth::random_secret()?;
    let expires_at = intake_store::now() + auth::SESSION_TTL.as_secs() as i64;
    state
        .store
        .create_session(&auth::hash_secret(&sid), &body.user, &csrf, expires_at)
        .await?;
    let _ = state
        .store
        .audit(
            &body.user,
            "login",
            "session",
            serde_json::json!({"address": addr}),
        )
        .await;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::SET_COOKIE,
        auth::session_cookie(&sid, state.secure_cookies()),
    );
    Ok((
        StatusCode::CREATED,
        headers,
        Json(SessionAnswer {
            user: body.user,
            via: "session".into(),
            csrf_token: Some(csrf),
            expires_at: Some(expires_at),
        }),
    )
        .into_response())
}

/// An argon2id hash of a random password (made once per process), verified against for unknown
/// users.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| {
        let pw = auth::random_secret().unwrap_or_else(|_| "intake-dummy-password".into());
        auth::hash_password(&pw).unwrap_or_default()
    })
}

/// Who is logged in (and the session's CSRF token).
#[utoipa::path(get, path = "/api/session", tag = "session",
    responses((status = 200, body = SessionAnswer), (status = 401, body = ErrorBody)))]
pub async fn current(Extension(who): Extension<Principal>) -> Json<SessionAnswer> {
    let (via, csrf_token) = match who.via {
        Via::Token => ("token", None),
        Via::Session { csrf_token } => ("session", Some(csrf_token)),
    };
    Json(SessionAnswer {
        user: who.user,
        via: via.into(),
        csrf_token,
        expires_at: None,
    })
}

/// Log out: ends the session and clears the cookie.
#[utoipa::path(delete, path = "/api/session", tag = "session",
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn logout(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(sid) = auth::cookie(&headers, auth::SESSION_COOKIE) {
        state.store.delete_session(&auth::hash_secret(sid)).await?;
    }
    let _ = state
        .store
        .audit(&who.user, "logout", "session", serde_json::json!({}))
        .await;
    let mut h = HeaderMap::new();
    h.insert(
        header::SET_COOKIE,
        auth::clear_cookie(state.secure_cookies()),
    );
    Ok((StatusCode::NO_CONTENT, h).into_response())
}
