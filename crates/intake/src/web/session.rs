//! `GET/POST /login` and `POST /logout`: the page face of serve's `POST/DELETE /api/session`
//! (the same handler runs: rate limit, argon2 check, session row, audit entry, cookie).

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form, Json};

use super::{local_path, render};
use crate::serve::AppState;
use crate::serve::api::session as api;
use crate::serve::auth::Principal;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    next: String,
    user: String,
    error: Option<String>,
}

#[derive(serde::Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// `GET /login`.
pub async fn form(Query(q): Query<Next>) -> Response {
    render(
        StatusCode::OK,
        &LoginPage {
            next: local_path(q.next.as_deref()),
            user: String::new(),
            error: None,
        },
    )
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    user: String,
    password: String,
    next: Option<String>,
}

/// `POST /login`: a session cookie and a redirect to `next`, or the form again with the error
/// (a wrong password and an unknown user read the same).
pub async fn submit(
    State(state): State<AppState>,
    info: ConnectInfo<SocketAddr>,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = local_path(f.next.as_deref());
    let user = f.user.trim().to_string();
    let answer = api::login(
        State(state),
        info,
        Json(api::Login {
            user: user.clone(),
            password: f.password,
        }),
    )
    .await;
    match answer {
        Ok(r) => {
            let mut out = Redirect::to(&next).into_response();
            for c in r.headers().get_all(header::SET_COOKIE) {
                out.headers_mut().append(header::SET_COOKIE, c.clone());
            }
            out
        }
        Err(e) => {
            let error = if e.status == StatusCode::UNAUTHORIZED {
                "Wrong user name or password.".to_string()
            } else {
                e.message
            };
            render(
                e.status,
                &LoginPage {
                    next,
                    user,
                    error: Some(error),
                },
            )
        }
    }
}

/// `POST /logout` (CSRF checked by `require_page`): ends the session, back to the login page.
pub async fn logout(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    match api::logout(State(state), Extension(who), headers).await {
        Ok(r) => {
            let mut out = Redirect::to("/login").into_response();
            for c in r.headers().get_all(header::SET_COOKIE) {
                out.headers_mut().append(header::SET_COOKIE, c.clone());
            }
            out
        }
        Err(e) => super::error_page(e.status, None, e.message),
    }
}
