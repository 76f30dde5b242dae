//! The admin web UI of `intake serve`: server-rendered pages (askama templates in
//! `crates/intake/templates/`), progressively enhanced with htmx (vendored, [`assets`]) for the
//! live parts; every page works without JavaScript.
//!
//! - [`router`] is the one function `serve::app` merges: the login page and the assets are
//!   public, every other page sits behind [`require_page`].
//! - Authentication is serve's, not a second system: the session cookie and its CSRF token
//!   ([`crate::serve::auth::principal`]). A page form carries the token in a hidden `csrf`
//!   field, which [`require_page`] hands to that same check as the `X-CSRF-Token` header; a
//!   form posted without it is refused (403) before its handler runs.
//! - Without a session a page redirects to `/login?next=…` (htmx requests get `HX-Redirect`).
//! - Every answer carries a Content-Security-Policy without inline scripts and without remote
//!   images ([`csp`]), so mail HTML shown on a page ([`sanitize`]) can neither run a script nor
//!   make a request even if the sanitizer missed something.

mod admin;
pub mod assets;
mod authorize;
mod channel_form;
mod channels;
pub mod chart;
pub mod fmt;
mod integrations;
mod log;
mod overview;
pub mod sanitize;
mod session;
mod tickets;

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::serve::AppState;
use crate::serve::auth::{self, Principal, Via};

/// The hidden form field that carries the session's CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// The largest form body a page accepts.
const FORM_LIMIT: usize = 1 << 20;

/// The pages and assets, state applied, ready to merge into the serve application.
pub fn router(state: AppState) -> Router {
    let public = Router::new()
        .route("/login", get(session::form).post(session::submit))
        .route("/assets/{name}", get(asset));
    let pages = Router::new()
        .route("/", get(overview::page))
        .route("/logout", post(session::logout))
        .route("/tickets", get(tickets::list))
        .route("/tickets/{key}", get(tickets::show))
        .route("/tickets/{key}/reply", post(tickets::reply))
        .route(
            "/integrations",
            get(integrations::page).post(integrations::submit),
        )
        .route("/integrations/{name}/authorize", post(authorize::start))
        .route("/integrations/{name}/flows/{flow_id}", get(authorize::page))
        .route("/channels", get(channels::page).post(channels::submit))
        .route("/channels/{name}/pause", post(channels::pause))
        .route("/channels/{name}/resume", post(channels::resume))
        .route(
            "/channels/{name}/edit",
            get(channels::edit).post(channels::edit_submit),
        )
        .route("/channels/{name}/test", post(channels::test))
        .route("/channels/{name}/test/stream", get(channels::test_stream))
        .route("/admin", get(admin::page))
        .route("/admin/tokens", post(admin::create_token))
        .route("/admin/tokens/{id}/revoke", post(admin::revoke_token))
        .route("/log", get(log::mail_log))
        .route("/quarantine", get(log::quarantine))
        .route("/quarantine/{id}", get(log::quarantined))
        .route("/quarantine/{id}/discard", post(log::discard))
        .route("/quarantine/{id}/retry", post(log::retry))
        .route_layer(from_fn_with_state(state.clone(), require_page));
    public
        .merge(pages)
        .layer(from_fn(security_headers))
        .with_state(state)
}

/// The navigation, the same on every page: `(label, path)`.
pub const NAV: &[(&str, &str)] = &[
    ("Overview", "/"),
    ("Integrations", "/integrations"),
    ("Channels", "/channels"),
    ("Tickets", "/tickets"),
    ("Mail log", "/log"),
    ("Quarantine", "/quarantine"),
    ("Admin", "/admin"),
];

/// What every page's frame shows: who is logged in, the CSRF token for its forms, the
/// navigation with the current entry marked, and the open alerts.
pub struct Layout {
    pub title: String,
    pub user: String,
    pub csrf: String,
    /// The path of the navigation entry to mark as current.
    pub active: &'static str,
    pub alerts: Vec<String>,
    pub nav: &'static [(&'static str, &'static str)],
}

impl Layout {
    /// The frame for `who`, with the open alerts read now.
    pub async fn new(
        state: &AppState,
        who: &Principal,
        title: impl Into<String>,
        active: &'static str,
    ) -> Self {
        let csrf = match &who.via {
            Via::Session { csrf_token } => csrf_token.clone(),
            Via::Token => String::new(),
        };
        Self {
            title: title.into(),
            user: who.user.clone(),
            csrf,
            active,
            alerts: alerts(state).await,
            nav: NAV,
        }
    }

    /// Whether `path` is the navigation entry of this page.
    pub fn is_current(&self, path: &str) -> bool {
        path == self.active
    }
}

/// Open alerts: serve's open alerts (channel failing too long, token needing
/// re-authorization, credential about to expire), and every channel failing now.
async fn alerts(state: &AppState) -> Vec<String> {
    let now = intake_store::now();
    let mut out: Vec<String> = match state.store.open_alerts().await {
        Ok(open) => open
            .into_iter()
            .map(|a| {
                format!(
                    "{} ({}, since {}): {}",
                    a.subject,
                    a.severity,
                    fmt::time(a.raised_at),
                    a.message
                )
            })
            .collect(),
        Err(e) => vec![format!("The alerts could not be read: {e}")],
    };
    out.extend(failing_channels(state, now).await);
    out
}

/// Every channel failing now, with its last error.
async fn failing_channels(state: &AppState, now: i64) -> Vec<String> {
    match state.store.all_channel_health().await {
        Ok(all) => all
            .into_iter()
            .filter_map(|(name, h)| {
                let since = h.failing_since?;
                Some(format!(
                    "Channel {name} failing since {} ({}): {}",
                    fmt::time(since),
                    fmt::ago(since, now),
                    h.last_error.unwrap_or_else(|| "no error recorded".into())
                ))
            })
            .collect(),
        Err(e) => vec![format!("The database could not be read: {e}")],
    }
}

/// Render a template into an HTML answer (500 with a plain message if rendering fails).
pub fn render<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Option<Layout>,
    heading: String,
    message: String,
}

/// A page saying what went wrong (with the navigation when the user is known).
pub fn error_page(
    status: StatusCode,
    layout: Option<Layout>,
    message: impl Into<String>,
) -> Response {
    let heading = status.canonical_reason().unwrap_or("Error").to_string();
    render(
        status,
        &ErrorPage {
            layout,
            heading,
            message: message.into(),
        },
    )
}

impl From<crate::serve::error::ApiError> for PageError {
    fn from(e: crate::serve::error::ApiError) -> Self {
        PageError(e.status, e.message)
    }
}

impl From<intake_store::StoreError> for PageError {
    fn from(e: intake_store::StoreError) -> Self {
        tracing::error!(error = %e, "store error answering a page");
        PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

/// An error a page handler returns: shown as an error page.
#[derive(Debug)]
pub struct PageError(pub StatusCode, pub String);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        error_page(self.0, None, self.1)
    }
}

/// Middleware for every page but the login: finds the session through serve's
/// [`auth::principal`] (the CSRF token of a posted form comes from its [`CSRF_FIELD`]), puts
/// the [`Principal`] into the request, or redirects to the login page.
pub async fn require_page(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let changes = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    let body =
        if changes && is_form(&parts.headers) && !parts.headers.contains_key(auth::CSRF_HEADER) {
            let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
                return error_page(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    None,
                    "The form is too large.",
                );
            };
            if let Some(token) = form_field(&bytes, CSRF_FIELD)
                && let Ok(v) = HeaderValue::from_str(&token)
            {
                parts
                    .headers
                    .insert(HeaderName::from_static(auth::CSRF_HEADER), v);
            }
            Body::from(bytes)
        } else {
            body
        };
    match auth::principal(&state, &parts.method, &parts.headers).await {
        Ok(p) => {
            parts.extensions.insert(p);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            let target = if parts.method == Method::GET {
                login_url(
                    parts
                        .uri
                        .path_and_query()
                        .map(|p| p.as_str())
                        .unwrap_or("/"),
                )
            } else {
                "/login".to_string()
            };
            if parts.headers.contains_key("hx-request") {
                let mut r = StatusCode::UNAUTHORIZED.into_response();
                if let Ok(v) = HeaderValue::from_str(&target) {
                    r.headers_mut().insert("hx-redirect", v);
                }
                return r;
            }
            Redirect::to(&target).into_response()
        }
        Err(e) if e.status == StatusCode::FORBIDDEN => error_page(
            StatusCode::FORBIDDEN,
            None,
            "This form was refused: it did not carry this session's security token (it may come from another site, or from a page opened before you logged in again). Go back, reload the page and send it again.",
        ),
        Err(e) => error_page(e.status, None, e.message),
    }
}

/// `/login?next=PATH` for a page path.
fn login_url(next: &str) -> String {
    let enc: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    format!("/login?next={enc}")
}

/// A redirect target from `next` only when it is a path on this site (no `//host`, no scheme).
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.contains(['\r', '\n']) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

fn is_form(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The Content-Security-Policy of every page: scripts and styles only from this service, no
/// remote images (`remote_images` opens `img-src` to http(s) for a message whose images the
/// administrator asked to see), no frames, forms post only here.
pub fn csp(remote_images: bool) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:{}; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        if remote_images { " http: https:" } else { "" }
    )
}

/// Headers on every page answer: the CSP (unless the handler set its own), no framing, no
/// referrer to mail links, no sniffing, no caching of pages with data.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY)
        && let Ok(v) = HeaderValue::from_str(&csp(false))
    {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// `GET /assets/{name}`.
async fn asset(Path(name): Path<String>) -> Response {
    match assets::find(&name) {
        Some((ct, bytes)) => (
            [
                (header::CONTENT_TYPE, ct),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_after_login_stay_on_this_site() {
        assert_eq!(local_path(Some("/tickets?q=a")), "/tickets?q=a");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(None), "/");
        assert_eq!(
            login_url("/tickets?q=a b"),
            "/login?next=%2Ftickets%3Fq%3Da+b"
        );
    }

    #[test]
    fn the_csrf_field_is_read_from_a_form_body() {
        assert_eq!(
            form_field(b"a=1&csrf=x%2By&b=2", CSRF_FIELD).as_deref(),
            Some("x+y")
        );
        assert_eq!(form_field(b"a=1", CSRF_FIELD), None);
    }

    #[test]
    fn the_policy_allows_remote_images_only_when_asked() {
        assert!(!csp(false).contains("https:"));
        assert!(csp(true).contains("img-src 'self' data: http: https:"));
        assert!(csp(false).contains("script-src 'self';"));
    }
}
