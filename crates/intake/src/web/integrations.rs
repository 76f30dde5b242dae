//! `GET /integrations` (each integration with what its preset derives: login host, token and
//! device endpoints, IMAP/POP3/SMTP/Graph hosts, scopes per protocol, lint findings with their
//! fix, the client secret's expiry countdown) and the create form, which shows the same
//! derivation for the values typed *before* saving (`POST /integrations` with
//! `action=preview`; htmx previews on every change, without JavaScript the Preview button
//! does). Saving goes through serve's `POST /api/integrations` handler: the same validation as
//! the file and the API, errors shown next to the form; the secret is write-only.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form, Json};
use intake_core::diagnosis::Finding;
use intake_core::integration::IntegrationConfig;
use serde_json::{Map, Value};

use super::{Layout, PageError, render};
use crate::serve::AppState;
use crate::serve::api::config;
use crate::serve::auth::Principal;

/// What a preset derives, ready to show.
#[derive(Default)]
pub struct Derived {
    /// `(label, value)` rows: login host, endpoints, mail hosts.
    pub endpoints: Vec<(String, String)>,
    /// `(protocol, scopes joined by spaces)`.
    pub scopes: Vec<(String, String)>,
    pub findings: Vec<FindingView>,
}

pub struct FindingView {
    pub severity: String,
    pub path: String,
    pub message: String,
    pub cause: Option<String>,
    pub fix: Option<String>,
}

fn finding(f: &Finding) -> FindingView {
    FindingView {
        severity: f.severity.to_string(),
        path: f.path.clone(),
        message: f.message.clone(),
        cause: f.cause.map(|c| format!("{c}: {}", c.title())),
        fix: f.cause.map(|c| c.fix().to_string()),
    }
}

/// Resolve `body` (an `[[integration]]` table as JSON) the way the loader does.
pub fn derive(body: &Value) -> Result<Derived, String> {
    let cfg: IntegrationConfig = serde_json::from_value(body.clone()).map_err(|e| e.to_string())?;
    match cfg.resolve() {
        Ok(r) => {
            let e = &r.endpoints;
            let host = |(h, p): &(String, u16)| {
                if h.is_empty() {
                    "(the channel names it)".to_string()
                } else {
                    format!("{h}:{p}")
                }
            };
            let mut endpoints = vec![
                ("Login host".into(), e.authority.clone()),
                ("Authorize".into(), e.authorize_url.clone()),
                ("Token".into(), e.token_url.clone()),
                (
                    "Device code".into(),
                    e.device_authorization_url
                        .clone()
                        .unwrap_or_else(|| "none known".into()),
                ),
                ("IMAP".into(), host(&e.imap)),
                ("POP3".into(), host(&e.pop3)),
                ("SMTP".into(), host(&e.smtp)),
            ];
            if let Some(g) = &e.graph_url {
                endpoints.push(("Graph".into(), g.clone()));
            }
            Ok(Derived {
                endpoints,
                scopes: r
                    .scopes
                    .iter()
                    .map(|(p, s)| (p.to_string(), s.join(" ")))
                    .collect(),
                findings: r.warnings.iter().map(finding).collect(),
            })
        }
        Err(findings) => Ok(Derived {
            findings: findings.iter().map(finding).collect(),
            ..Derived::default()
        }),
    }
}

pub struct IntegrationRow {
    pub name: String,
    pub provider: String,
    pub cloud: String,
    pub tenant: String,
    pub client_id: String,
    pub managed_by: String,
    pub secret: String,
    /// The secret expires within 30 days (or has).
    pub expiring: bool,
    /// Always present (an `Option` for the template's `if let`).
    pub derived: Option<Derived>,
    /// Someone signs in (not client credentials): the Authorize form is shown.
    pub authorizable: bool,
    /// The provider has a device-code endpoint.
    pub device: bool,
    /// The mailboxes of the channels using it (offered in the Authorize form).
    pub mailboxes: Vec<String>,
    /// The Authorize form as last posted, with its error (only on the integration it was for).
    pub authorize: AuthorizeForm,
}

/// `POST /integrations/{name}/authorize`: the mailbox and the flow.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct AuthorizeForm {
    #[serde(default)]
    pub mailbox: String,
    #[serde(default)]
    pub flow: String,
    /// Why the flow was refused; shown next to the flow choice or above the form.
    #[serde(skip)]
    pub flow_error: Option<String>,
    #[serde(skip)]
    pub error: Option<String>,
}

impl AuthorizeForm {
    pub fn device(&self) -> bool {
        self.flow == "device"
    }
}

/// `2027-01-31` → days from `now` (Unix seconds) to that date's midnight UTC.
fn days_until(date: &str, now: i64) -> Option<i64> {
    let mut it = date.trim().splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (it.next()??, it.next()??, it.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (H. Hinnant).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days - now.div_euclid(86_400))
}

fn secret_text(table: &Value, now: i64) -> (String, bool) {
    match table.get("client_secret") {
        Some(Value::Object(m)) => {
            let exp = m.get("expires").and_then(|v| v.as_str());
            match exp.and_then(|d| days_until(d, now).map(|n| (d, n))) {
                Some((d, n)) if n < 0 => (format!("set; EXPIRED on {d} ({} days ago)", -n), true),
                Some((d, n)) => (format!("set; expires {d} (in {n} days)"), n <= 30),
                None => ("set; no expiry date given".into(), false),
            }
        }
        Some(Value::String(r)) => (format!("from {r}"), false),
        _ if table.get("client_certificate").is_some() => ("certificate".into(), false),
        _ => ("none".into(), false),
    }
}

#[derive(Template)]
#[template(path = "integrations.html")]
struct Page {
    layout: Layout,
    integrations: Vec<IntegrationRow>,
    form: NewForm,
    preview: Option<Derived>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "integration_preview.html")]
struct Preview {
    preview: Option<Derived>,
    error: Option<String>,
}

/// The create form's fields, as typed (the secret is never sent back).
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct NewForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub cloud: String,
    #[serde(default)]
    pub tenant: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default, skip_serializing)]
    pub client_secret: String,
    #[serde(default)]
    pub client_secret_expires: String,
    /// Other OAuth 2.0 server (`provider = "custom"`): the authorization endpoint.
    #[serde(default)]
    pub authorize_url: String,
    /// Custom: the token endpoint.
    #[serde(default)]
    pub token_url: String,
    /// Custom: the device authorization endpoint (optional; without it no device-code sign-in).
    #[serde(default)]
    pub device_authorization_url: String,
    /// Custom: the scopes, separated by spaces or commas.
    #[serde(default)]
    pub scopes: String,
    #[serde(default)]
    pub action: String,
    /// Errors to show next to a field: `(field, message)`. Never read from the form.
    #[serde(skip)]
    pub errors: Vec<(String, String)>,
}

/// The form's fields that can carry an error of their own.
const FIELDS: &[&str] = &[
    "name",
    "provider",
    "cloud",
    "tenant",
    "client_id",
    "client_secret",
    "client_secret_expires",
    "authorize_url",
    "token_url",
    "device_authorization_url",
    "scopes",
];

impl NewForm {
    /// The `[[integration]]` table the form describes (empty fields left out).
    pub fn body(&self, with_secret: bool) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: &str| {
            if !v.trim().is_empty() {
                m.insert(k.into(), Value::String(v.trim().to_string()));
            }
        };
        put("name", &self.name);
        put("provider", &self.provider);
        if self.provider == "microsoft" {
            put("cloud", &self.cloud);
            put("tenant", &self.tenant);
        }
        put("client_id", &self.client_id);
        if self.provider == "custom" {
            put("authorize_url", &self.authorize_url);
            put("token_url", &self.token_url);
            put("device_authorization_url", &self.device_authorization_url);
        }
        put("client_secret_expires", &self.client_secret_expires);
        if with_secret {
            put("client_secret", &self.client_secret);
        } else if !self.client_secret.trim().is_empty() {
            // The preview must lint a secret as present without holding it.
            put("client_secret", "env:INTAKE_PREVIEW_SECRET");
        }
        if self.provider == "custom" {
            let scopes: Vec<Value> = self
                .scopes
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|x| !x.is_empty())
                .map(|x| Value::String(x.to_string()))
                .collect();
            if !scopes.is_empty() {
                m.insert("scopes".into(), Value::Array(scopes));
            }
        }
        if self.name.trim().is_empty() {
            m.insert("name".into(), Value::String("preview".into()));
        }
        Value::Object(m)
    }
    /// The error shown next to `field`, if any.
    pub fn err(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }
    /// Put each error finding of the lint (the validation the API runs) next to the field of
    /// the key it names (`integration.token_url` → the token URL field).
    fn place_errors(&mut self, d: &Derived) {
        for f in d.findings.iter().filter(|f| f.severity == "error") {
            let Some(key) = f.path.strip_prefix("integration.") else {
                continue;
            };
            let field = match key {
                "client_certificate" | "client_key" => "client_secret",
                k => k,
            };
            if FIELDS.contains(&field) && self.err(field).is_none() {
                self.errors.push((field.to_string(), f.message.clone()));
            }
        }
    }
    fn is(&self, provider: &str) -> bool {
        self.provider == provider
    }
    fn cloud_is(&self, cloud: &str) -> bool {
        self.cloud == cloud || (self.cloud.is_empty() && cloud == "worldwide")
    }
}

/// Every integration, with `posted` (the integration's name and its Authorize form as posted)
/// filled into its row.
pub async fn rows(
    state: &AppState,
    posted: Option<(&str, &AuthorizeForm)>,
) -> Result<Vec<IntegrationRow>, PageError> {
    let now = intake_store::now();
    let list = config::list_integrations(State(state.clone())).await?.0;
    let settings = state.live.snapshot().settings.clone();
    Ok(list
        .into_iter()
        .map(|i| {
            let t = &i.table;
            let s = |k: &str| {
                t.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let (secret, expiring) = secret_text(t, now);
            // Derive from the stored table with the secret present but not read.
            let mut probe = t.clone();
            if probe.get("client_secret").is_some() {
                probe["client_secret"] = Value::String("env:INTAKE_PREVIEW_SECRET".into());
            }
            let derived = Some(derive(&probe).unwrap_or_default());
            let resolved = settings.integration(&i.name).ok();
            let authorize = match posted {
                Some((name, f)) if name == i.name => f.clone(),
                _ => AuthorizeForm {
                    flow: "browser".into(),
                    ..AuthorizeForm::default()
                },
            };
            IntegrationRow {
                authorizable: resolved
                    .is_some_and(|r| r.grant != intake_core::preset::Grant::ClientCredentials),
                device: resolved.is_some_and(|r| r.endpoints.device_authorization_url.is_some()),
                mailboxes: crate::cli::authorize::channel_mailboxes(&settings, &i.name),
                authorize,
                name: i.name,
                provider: s("provider"),
                cloud: s("cloud"),
                tenant: s("tenant"),
                client_id: s("client_id"),
                managed_by: i.managed_by,
                secret,
                expiring,
                derived,
            }
        })
        .collect())
}

/// The page's Content-Security-Policy: [`super::csp`] with `form-action` opened to the origin
/// of every integration's authorization endpoint, since the Authorize form's answer redirects
/// the browser there (browsers apply `form-action` to a form's redirects).
fn page_csp(state: &AppState) -> String {
    let settings = state.live.snapshot().settings.clone();
    let mut origins: Vec<String> = Vec::new();
    for i in settings.integrations.values() {
        if let Ok(u) = url::Url::parse(&i.endpoints.authorize_url)
            && matches!(u.scheme(), "http" | "https")
        {
            let o = u.origin().ascii_serialization();
            if !origins.contains(&o) {
                origins.push(o);
            }
        }
    }
    let base = super::csp(false);
    if origins.is_empty() {
        return base;
    }
    base.replace(
        "form-action 'self'",
        &format!("form-action 'self' {}", origins.join(" ")),
    )
}

/// The integrations page (with its policy), `status` and all.
pub async fn full_page(
    state: &AppState,
    who: &Principal,
    status: StatusCode,
    form: NewForm,
    preview: Option<Derived>,
    error: Option<String>,
    posted: Option<(&str, &AuthorizeForm)>,
) -> Result<Response, PageError> {
    let layout = Layout::new(state, who, "Integrations", "/integrations").await;
    let mut r = render(
        status,
        &Page {
            layout,
            integrations: rows(state, posted).await?,
            form,
            preview,
            error,
        },
    );
    if let Ok(v) = axum::http::HeaderValue::from_str(&page_csp(state)) {
        r.headers_mut()
            .insert(axum::http::header::CONTENT_SECURITY_POLICY, v);
    }
    Ok(r)
}

/// `GET /integrations`.
pub async fn page(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Response, PageError> {
    let form = NewForm {
        provider: "microsoft".into(),
        cloud: "worldwide".into(),
        ..NewForm::default()
    };
    let preview = derive(&form.body(false)).ok();
    full_page(&state, &who, StatusCode::OK, form, preview, None, None).await
}

/// `POST /integrations`: `action=preview` shows what the values derive; `action=save`
/// creates the integration through the API's handler.
pub async fn submit(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    Form(mut form): Form<NewForm>,
) -> Result<Response, PageError> {
    let htmx = headers.contains_key("hx-request");
    if form.action != "save" {
        let (preview, error) = match derive(&form.body(false)) {
            Ok(d) => (Some(d), None),
            Err(e) => (None, Some(e)),
        };
        if htmx {
            return Ok(render(StatusCode::OK, &Preview { preview, error }));
        }
        form.client_secret.clear();
        if let Some(d) = &preview {
            form.place_errors(d);
        }
        return full_page(&state, &who, StatusCode::OK, form, preview, error, None).await;
    }
    let answer = config::create_integration(
        State(state.clone()),
        Extension(who.clone()),
        Json(form.body(true)),
    )
    .await;
    match answer {
        Ok(_) => Ok(Redirect::to("/integrations").into_response()),
        Err(e) => {
            let preview = derive(&form.body(false)).ok();
            form.client_secret.clear();
            if let Some(d) = &preview {
                form.place_errors(d);
            }
            if e.status == StatusCode::CONFLICT {
                form.errors.push(("name".into(), e.message.clone()));
            }
            full_page(&state, &who, e.status, form, preview, Some(e.message), None).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_microsoft_preset_derives_its_hosts_and_scopes_before_saving() {
        let f = NewForm {
            name: "m365".into(),
            provider: "microsoft".into(),
            cloud: "gcc-high".into(),
            tenant: "contoso.onmicrosoft.us".into(),
            client_id: "00000000-0000-0000-0000-000000000001".into(),
            client_secret: "s3cret".into(),
            ..NewForm::default()
        };
        let body = f.body(false);
        assert!(
            !body.to_string().contains("s3cret"),
            "the preview must not carry the secret"
        );
        let d = derive(&body).unwrap();
        let all = format!("{:?} {:?}", d.endpoints, d.scopes);
        assert!(all.contains("login.microsoftonline.us"), "{all}");
        assert!(all.contains("outlook.office365.us"), "{all}");
        assert!(
            d.scopes
                .iter()
                .any(|(p, s)| p == "imap" && s.contains("IMAP.AccessAsUser.All")),
            "{all}"
        );
    }

    #[test]
    fn a_missing_tenant_is_a_finding_with_its_fix() {
        let f = NewForm {
            provider: "microsoft".into(),
            client_id: "x".into(),
            ..NewForm::default()
        };
        let d = derive(&f.body(false)).unwrap();
        assert!(
            d.findings
                .iter()
                .any(|x| x.severity == "error" && x.fix.is_some()),
            "no finding with a fix"
        );
    }

    #[test]
    fn expiry_countdown_counts_days() {
        let now = 1_796_444_700; // 2026-12-05
        assert_eq!(days_until("2026-12-05", now), Some(0));
        assert_eq!(days_until("2027-01-04", now), Some(30));
        assert_eq!(days_until("2026-12-01", now), Some(-4));
        assert_eq!(days_until("nonsense", now), None);
        let (t, soon) = secret_text(
            &serde_json::json!({"client_secret": {"set": true, "expires": "2026-12-20"}}),
            now,
        );
        assert!(soon && t.contains("in 15 days"), "{t}");
    }
}
