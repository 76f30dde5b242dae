//! Authorize a mailbox from the integrations page: `POST /integrations/{name}/authorize` (the
//! mailbox and the flow) and `GET /integrations/{name}/flows/{flow_id}` (the flow's page).
//!
//! Both run serve's code ([`crate::serve::authorize`], behind the API's
//! `POST /api/integrations/{name}/authorize` and `GET /api/flows/{id}`):
//! - **browser redirect**: the answer redirects the browser to the provider; the provider sends
//!   it back to `/oauth/callback`, which finishes the flow and, for a browser logged in here,
//!   redirects on to the flow's page.
//! - **device code**: the answer redirects to the flow's page, which shows the code, the link
//!   and the time left; with JavaScript the panel asks again every 2 s (htmx) and turns into the
//!   result when the node polling the provider has it; without, a reload does.
//!
//! The result reads "authorized as X for Y (audience, scopes)"; when X is not the mailbox the
//! doctor's identity check ([`check_identity_matches_mailbox`], RC11 / RC3) is shown in red with
//! what it means and what to do.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use intake_core::lint::check_identity_matches_mailbox;
use intake_core::token::TokenIdentity;
use serde_json::Value;

use super::integrations::{AuthorizeForm, NewForm, derive, full_page};
use super::{Layout, PageError, fmt, render};
use crate::serve::AppState;
use crate::serve::auth::Principal;
use crate::serve::authorize::{self, FlowKind, FlowStatus};

/// How often the panel of a pending flow asks again (with JavaScript).
const POLL: &str = "every 2s";

/// `POST /integrations/{name}/authorize`.
pub async fn start(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    Form(mut form): Form<AuthorizeForm>,
) -> Result<Response, PageError> {
    let flow = match FlowKind::parse(form.flow.trim()) {
        Ok(f) => f,
        Err(e) => {
            form.flow_error = Some(if form.flow.trim().is_empty() {
                "choose how to sign in: browser redirect or device code".into()
            } else {
                e.message
            });
            return refused(&state, &who, &name, form, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    match authorize::start(&state, &who.user, &name, &form.mailbox, flow).await {
        Ok(started) => match (flow, started.url) {
            (FlowKind::Browser, Some(url)) => Ok(Redirect::to(&url).into_response()),
            _ => Ok(Redirect::to(&flow_path(&name, &started.flow_id)).into_response()),
        },
        Err(e) if e.status == StatusCode::NOT_FOUND => Err(e.into()),
        Err(e) => {
            // The flow choice is what a refusal naming the flow is about (no device-code
            // endpoint, client credentials); anything else stands above the form.
            if e.message.contains("flow") {
                form.flow_error = Some(e.message);
            } else {
                form.error = Some(e.message);
            }
            refused(&state, &who, &name, form, e.status).await
        }
    }
}

/// The integrations page again, the Authorize form of `name` showing why it was refused.
async fn refused(
    state: &AppState,
    who: &Principal,
    name: &str,
    form: AuthorizeForm,
    status: StatusCode,
) -> Result<Response, PageError> {
    let new = NewForm {
        provider: "microsoft".into(),
        cloud: "worldwide".into(),
        ..NewForm::default()
    };
    let preview = derive(&new.body(false)).ok();
    full_page(state, who, status, new, preview, None, Some((name, &form))).await
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn flow_path(integration: &str, flow_id: &str) -> String {
    format!("/integrations/{}/flows/{}", enc(integration), enc(flow_id))
}

/// What the flow's panel shows.
pub struct FlowView {
    pub path: String,
    pub integration: String,
    pub mailbox: String,
    /// `browser redirect` or `device code`.
    pub kind: String,
    /// `pending`, `done` or `failed`.
    pub state: String,
    /// Pending: `9 min 58 s`, and the UTC time it expires at.
    pub remaining: String,
    pub expires: String,
    /// Pending device flow: the code and where to enter it.
    pub user_code: Option<String>,
    pub verification_uri: Option<String>,
    /// Done: who signed in.
    pub result: Option<Authorized>,
    /// Failed: why.
    pub failure: Option<Failure>,
}

pub struct Authorized {
    /// `authorized as X for Y (audience A, scopes S)`.
    pub sentence: String,
    /// Every token obtained: `(protocols, audience, scopes)`.
    pub tokens: Vec<(String, String, String)>,
    /// The identity is not the mailbox: `(RC11 or RC3, its title, the finding, the fix)`.
    pub mismatch: Option<(String, String, String, String)>,
    /// The other pre-flight findings, as sentences.
    pub warnings: Vec<String>,
}

pub struct Failure {
    pub message: String,
    pub title: Option<String>,
    pub root_cause: Option<String>,
    pub fix: Option<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The result of a finished flow, from the document of `intake authorize --json`.
pub fn authorized(doc: &Value) -> Authorized {
    let text = |k: &str| doc[k].as_str().unwrap_or_default().to_string();
    let username = text("username");
    let mailbox = text("mailbox");
    let audience = doc["audience"]
        .as_str()
        .map(|a| format!("audience {a}"))
        .unwrap_or_else(|| "the token names no audience".into());
    let (claimed, granted) = (strings(&doc["scopes"]), strings(&doc["granted"]));
    let scopes = if !claimed.is_empty() {
        format!("scopes {}", claimed.join(" "))
    } else if !granted.is_empty() {
        // An opaque access token: the token endpoint's answer is all there is.
        format!("scopes granted {}", granted.join(" "))
    } else {
        "no scopes named".to_string()
    };
    let who = if username.is_empty() {
        "an account the token does not name".to_string()
    } else {
        username.clone()
    };
    let for_whom = if mailbox.is_empty() {
        "no mailbox".to_string()
    } else {
        mailbox.clone()
    };
    let identity = TokenIdentity {
        username: (!username.is_empty()).then(|| username.clone()),
        ..TokenIdentity::default()
    };
    let finding = check_identity_matches_mailbox(&identity, &mailbox);
    let mismatch_text = finding.as_ref().map(|f| f.to_string());
    let mismatch = finding.and_then(|f| {
        let c = f.cause?;
        Some((
            c.id().to_string(),
            c.title().to_string(),
            f.message.clone(),
            c.fix().to_string(),
        ))
    });
    let tokens = doc["tokens"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    (
                        strings(&t["protocols"]).join(", "),
                        t["audience"].as_str().unwrap_or("none").to_string(),
                        {
                            let s = strings(&t["scopes"]);
                            if s.is_empty() {
                                strings(&t["granted"])
                            } else {
                                s
                            }
                            .join(" ")
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Authorized {
        sentence: format!("Authorized as {who} for {for_whom} ({audience}, {scopes})."),
        tokens,
        mismatch,
        warnings: strings(&doc["warnings"])
            .into_iter()
            .filter(|w| Some(w) != mismatch_text.as_ref())
            .collect(),
    }
}

fn view(s: FlowStatus, now: i64) -> FlowView {
    let left = (s.expires_at - now).max(0);
    FlowView {
        path: flow_path(&s.integration, &s.flow_id),
        kind: if s.flow == "device" {
            "device code".into()
        } else {
            "browser redirect".into()
        },
        remaining: format!("{} min {:02} s", left / 60, left % 60),
        expires: fmt::time(s.expires_at),
        result: s.authorized.as_ref().map(authorized),
        failure: s.error.map(|e| Failure {
            // The provider's decoded message may carry the fix already: say it once.
            fix: e.fix.filter(|f| !e.message.contains(f.as_str())),
            message: e.message,
            title: e.title,
            root_cause: e.root_cause,
        }),
        integration: s.integration,
        mailbox: s.mailbox,
        state: s.state,
        user_code: s.user_code,
        verification_uri: s.verification_uri,
    }
}

#[derive(Template)]
#[template(path = "flow.html")]
struct FlowPage {
    layout: Layout,
    f: FlowView,
    poll: &'static str,
}

#[derive(Template)]
#[template(path = "_flow.html")]
struct FlowPanel {
    f: FlowView,
    poll: &'static str,
}

/// `GET /integrations/{name}/flows/{flow_id}`: the whole page, or (htmx) only the panel.
pub async fn page(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path((name, flow_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let status = authorize::status(&state.store, &flow_id)
        .await?
        .filter(|s| s.integration == name)
        .ok_or_else(|| {
            PageError(
                StatusCode::NOT_FOUND,
                format!("No authorization {flow_id} for integration {name} (unknown, or older than a week)."),
            )
        })?;
    let f = view(status, intake_store::now());
    if headers.contains_key("hx-request") {
        return Ok(render(StatusCode::OK, &FlowPanel { f, poll: POLL }));
    }
    let layout = Layout::new(
        &state,
        &who,
        format!("Authorize for {name}"),
        "/integrations",
    )
    .await;
    Ok(render(
        StatusCode::OK,
        &FlowPage {
            layout,
            f,
            poll: POLL,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_names_who_signed_in_for_which_mailbox_with_audience_and_scopes() {
        let a = authorized(&serde_json::json!({
            "integration": "idp", "mailbox": "help@example.com", "username": "help@example.com",
            "audience": "api://mail", "scopes": ["mail", "offline_access"], "warnings": [],
            "tokens": [{"protocols": ["imap"], "audience": "api://mail", "scopes": ["mail"]}]
        }));
        assert_eq!(
            a.sentence,
            "Authorized as help@example.com for help@example.com (audience api://mail, scopes mail offline_access)."
        );
        assert!(a.mismatch.is_none());
        assert_eq!(
            a.tokens,
            vec![("imap".into(), "api://mail".into(), "mail".into())]
        );
    }

    #[test]
    fn an_opaque_token_shows_the_scopes_the_token_endpoint_granted() {
        let a = authorized(&serde_json::json!({
            "mailbox": "a@example.com", "username": "a@example.com", "audience": null,
            "scopes": [], "granted": ["openid", "mail"],
            "tokens": [{"protocols": ["imap"], "audience": null, "scopes": [], "granted": ["mail"]}]
        }));
        assert_eq!(
            a.sentence,
            "Authorized as a@example.com for a@example.com (the token names no audience, scopes granted openid mail)."
        );
        assert_eq!(
            a.tokens,
            vec![("imap".into(), "none".into(), "mail".into())]
        );
    }

    #[test]
    fn another_account_than_the_mailbox_is_rc3_or_rc11_with_the_doctors_words() {
        let doc = |user: &str| {
            serde_json::json!({"mailbox": "help@contoso.com", "username": user,
                "warnings": [check_identity_matches_mailbox(
                    &TokenIdentity { username: Some(user.into()), ..TokenIdentity::default() },
                    "help@contoso.com").unwrap().to_string(), "warning token.scp: other"]})
        };
        let a = authorized(&doc("alice@contoso.com"));
        let (id, title, message, fix) = a.mismatch.unwrap();
        assert_eq!(id, "RC3");
        assert!(title.contains("Full Access"), "{title}");
        assert!(
            message.contains(
                "the token belongs to alice@contoso.com but the mailbox is help@contoso.com"
            ),
            "{message}"
        );
        assert!(!fix.is_empty());
        assert_eq!(
            a.warnings,
            vec!["warning token.scp: other".to_string()],
            "the mismatch is shown once"
        );
        let (id, _, _, _) = authorized(&doc("me@gmail.com")).mismatch.unwrap();
        assert_eq!(id, "RC11");
    }
}
