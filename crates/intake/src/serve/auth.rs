//! Authentication of `intake serve`: API tokens (`Authorization: Bearer …`), browser sessions
//! (cookie + CSRF token), passwords (argon2id), the login rate limit.
//!
//! - Tokens and session ids are 256 random bits, base64url; only their SHA-256 is stored
//!   (`intake-store/src/admin.rs`), so the database cannot be replayed against the API.
//! - [`require`] is the one middleware every protected route sits behind (the API router and,
//!   later, the web pages): it puts a [`Principal`] in the request's extensions, answers 401
//!   without credentials and 403 when a cookie-authenticated request that changes state lacks the
//!   session's CSRF token (header [`CSRF_HEADER`]).
//! - Logins are limited per user and per client address ([`LOGIN_WINDOW`], counted in the
//!   database so every node shares the count).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "intake_session";
/// The header carrying the CSRF token on state-changing requests made with the cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a browser session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The window over which failed logins are counted.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed logins allowed per user within [`LOGIN_WINDOW`].
pub const MAX_FAILURES_PER_USER: i64 = 5;
/// Failed logins allowed per client address within [`LOGIN_WINDOW`].
pub const MAX_FAILURES_PER_ADDRESS: i64 = 20;
/// Shortest password `intake admin create` accepts.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Who made a request, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub via: Via,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// `Authorization: Bearer`.
    Token,
    /// The session cookie; the CSRF token has been checked when the method changes state.
    Session { csrf_token: String },
}

/// 256 random bits, base64url without padding.
pub fn random_secret() -> Result<String, ApiError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(format!("no random numbers: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// What the store keeps of a token or session id.
pub fn hash_secret(secret: &str) -> String {
    let d = Sha256::digest(secret.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// argon2id PHC string of `password` (random salt).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::PasswordHasher as _;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches the PHC string `stored`.
pub fn verify_password(password: &str, stored: &str) -> bool {
    use argon2::password_hash::PasswordVerifier as _;
    let Ok(parsed) = argon2::password_hash::phc::PasswordHash::new(stored) else {
        return false;
    };
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Compare without an early exit (CSRF tokens).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Who the request's credentials name, if any. `Err` for credentials that were sent but are
/// wrong (401) or a missing CSRF token (403).
pub async fn principal(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let token = auth
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header is not `Bearer TOKEN`")
            })?;
        let user = state
            .store
            .api_token_user(&hash_secret(token))
            .await?
            .ok_or_else(|| ApiError::unauthorized("unknown or revoked API token"))?;
        return Ok(Principal {
            user,
            via: Via::Token,
        });
    }
    let Some(sid) = cookie(headers, SESSION_COOKIE) else {
        return Err(ApiError::unauthorized(
            "authentication required: send `Authorization: Bearer TOKEN` or log in (POST /api/session)",
        ));
    };
    let session = state
        .store
        .session(&hash_secret(sid))
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized("the session has expired or was ended; log in again")
        })?;
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !sent.is_some_and(|t| same(t, &session.csrf_token)) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                format!(
                    "a request that changes something needs the session's CSRF token in the {CSRF_HEADER} header"
                ),
            ));
        }
    }
    Ok(Principal {
        user: session.user,
        via: Via::Session {
            csrf_token: session.csrf_token,
        },
    })
}

/// Middleware: the request goes on only with valid credentials ([`principal`]), which it then
/// carries as an extension.
pub async fn require(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    match principal(&state, req.method(), req.headers()).await {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// The client's address for the rate limit: the TCP peer (behind a reverse proxy, the proxy:
/// then the per-user limit is the one that bites; docs/deploy.md).
pub fn client_address(peer: SocketAddr) -> String {
    peer.ip().to_string()
}

/// Refuse a login attempt when the user or the address has too many recent failures.
pub async fn check_rate(state: &AppState, user: &str, addr: &str) -> Result<(), ApiError> {
    let since = intake_store::now() - LOGIN_WINDOW.as_secs() as i64;
    let by_user = state
        .store
        .login_failures_since(&format!("user:{user}"), since)
        .await?;
    let by_addr = state
        .store
        .login_failures_since(&format!("addr:{addr}"), since)
        .await?;
    if by_user >= MAX_FAILURES_PER_USER || by_addr >= MAX_FAILURES_PER_ADDRESS {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many failed logins; try again in {} minutes",
                LOGIN_WINDOW.as_secs() / 60
            ),
        );
        e.retry_after = Some(LOGIN_WINDOW.as_secs());
        return Err(e);
    }
    Ok(())
}

/// The `Set-Cookie` value opening a session (`Secure` when the public URL is https).
pub fn session_cookie(value: &str, secure: bool) -> HeaderValue {
    let s = format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value ending a session.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    let s = format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a phc string"));
    }

    #[test]
    fn secrets_are_random_and_hashes_hide_them() {
        let a = random_secret().unwrap();
        let b = random_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(!hash_secret(&a).contains(&a));
        assert_eq!(hash_secret(&a), hash_secret(&a));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; intake_session=xyz"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "b"), None);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
