//! `GET /tickets` (search, project and status filters, paging; the rows refresh themselves
//! every 5 s with htmx, so new mail appears without a reload) and `GET /tickets/{key}` (the
//! conversation: the first message and the comments in order, participants, attachments to
//! download through the API's `GET /api/tickets/{key}/attachments/{id}`, and the original HTML
//! of each message that has one, sanitized, its remote images blocked unless `?images=shown`).

use askama::Template;
use axum::Extension;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::response::{IntoResponse, Redirect};
use intake_store::browse::TicketQuery;

use axum::http::{HeaderValue, header};

use super::sanitize::{self, Images, SafeHtml};
use super::{Layout, PageError, csp, error_page, fmt, render};
use crate::serve::AppState;
use crate::serve::auth::Principal;

/// Tickets per page.
const PER_PAGE: i64 = 25;

#[derive(Debug, Default, serde::Deserialize)]
pub struct Filters {
    q: Option<String>,
    project: Option<String>,
    status: Option<String>,
    page: Option<i64>,
}

pub struct Row {
    pub key: String,
    pub summary: String,
    pub reporter: String,
    pub status: String,
    pub comments: i64,
    pub attachments: i64,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "tickets.html")]
struct ListPage {
    layout: Layout,
    q: String,
    project: String,
    status: String,
    rows: Vec<Row>,
    total: i64,
    page: i64,
    pages: i64,
    /// The query string of this page (for the live refresh) and of its neighbours.
    this_query: String,
    prev_query: Option<String>,
    next_query: Option<String>,
}

fn query_string(q: &str, project: &str, status: &str, page: i64) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [("q", q), ("project", project), ("status", status)] {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    if page > 1 {
        s.append_pair("page", &page.to_string());
    }
    s.finish()
}

/// `GET /tickets`.
pub async fn list(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(f): Query<Filters>,
) -> Result<Response, PageError> {
    let q = f.q.unwrap_or_default().trim().to_string();
    let project = f.project.unwrap_or_default().trim().to_ascii_uppercase();
    let status = f.status.unwrap_or_default().trim().to_string();
    let page = f.page.unwrap_or(1).max(1);
    let p = state
        .store
        .search_tickets(&TicketQuery {
            project: Some(project.clone()).filter(|s| !s.is_empty()),
            q: Some(q.clone()).filter(|s| !s.is_empty()),
            status: Some(status.clone()).filter(|s| !s.is_empty()),
            page,
            per_page: PER_PAGE,
            before: None,
        })
        .await?;
    let now = intake_store::now();
    let pages = ((p.total + PER_PAGE - 1) / PER_PAGE).max(1);
    let rows = p
        .items
        .into_iter()
        .map(|t| Row {
            key: t.key,
            summary: t.summary,
            reporter: t.reporter,
            status: t.status,
            comments: t.comments,
            attachments: t.attachments,
            updated: fmt::ago(t.updated_at, now),
        })
        .collect();
    let layout = Layout::new(&state, &who, "Tickets", "/tickets").await;
    Ok(render(
        StatusCode::OK,
        &ListPage {
            layout,
            this_query: query_string(&q, &project, &status, page),
            prev_query: (page > 1).then(|| query_string(&q, &project, &status, page - 1)),
            next_query: (page < pages).then(|| query_string(&q, &project, &status, page + 1)),
            q,
            project,
            status,
            rows,
            total: p.total,
            page,
            pages,
        },
    ))
}

pub struct Attachment {
    pub name: String,
    pub size: String,
    pub content_type: String,
    pub href: String,
}

pub struct Message {
    pub author: String,
    pub at: String,
    pub body: String,
    pub attachments: Vec<Attachment>,
    /// The kept original's HTML part, sanitized.
    pub html: Option<SafeHtml>,
}

/// The query of a ticket page.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Show {
    /// `shown`: load the remote images of the messages' HTML.
    images: Option<String>,
}

/// The sanitized HTML part of a kept original, if it has one.
fn original_html(raw: Option<&Vec<u8>>, images: Images) -> Option<SafeHtml> {
    intake_mime::original::html_part(raw?).map(|h| sanitize::mail_html(&h, images))
}

#[derive(Template)]
#[template(path = "ticket.html")]
struct TicketPage {
    layout: Layout,
    key: String,
    summary: String,
    status: String,
    channel: String,
    reporter: String,
    participants: Vec<String>,
    related: Vec<(String, String)>,
    messages: Vec<Message>,
    images_shown: bool,
    /// Why the last reply was refused (shown next to the reply box).
    reply_error: Option<String>,
    /// The reply text to show again after a refusal.
    reply_body: String,
}

/// The reply box's form.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ReplyForm {
    #[serde(default)]
    body: String,
}

/// `POST /tickets/{key}/reply`: the reply box, through the API's `POST
/// /api/tickets/{key}/replies` handler (an outgoing comment and its mail in the outbox, one
/// transaction, audited). Back to the conversation, or the page again with the reason next to
/// the box.
pub async fn reply(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(key): Path<String>,
    Form(form): Form<ReplyForm>,
) -> Result<Response, PageError> {
    let answer = crate::serve::api::outbox::reply(
        State(state.clone()),
        Extension(who.clone()),
        Path(key.clone()),
        axum::Json(crate::serve::api::outbox::NewReplyBody {
            body: form.body.clone(),
            attachments: Vec::new(),
            channel: None,
        }),
    )
    .await;
    match answer {
        Ok(_) => {
            let enc: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
            Ok(Redirect::to(&format!("/tickets/{enc}#reply")).into_response())
        }
        Err(e) => {
            page(
                &state,
                &who,
                key,
                Images::Blocked,
                Some(e.message),
                form.body,
            )
            .await
        }
    }
}

/// `GET /tickets/{key}`.
pub async fn show(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(key): Path<String>,
    Query(q): Query<Show>,
) -> Result<Response, PageError> {
    let images = if q.images.as_deref() == Some("shown") {
        Images::Shown
    } else {
        Images::Blocked
    };
    page(&state, &who, key, images, None, String::new()).await
}

async fn page(
    state: &AppState,
    who: &Principal,
    key: String,
    images: Images,
    reply_error: Option<String>,
    reply_body: String,
) -> Result<Response, PageError> {
    let layout = Layout::new(state, who, key.clone(), "/tickets").await;
    let Some(t) = state.store.ticket(&key).await? else {
        return Ok(error_page(
            StatusCode::NOT_FOUND,
            Some(layout),
            format!("There is no ticket {key}."),
        ));
    };
    let refs = state.store.attachment_refs(&t.key).await?;
    let originals = state.store.originals(&t.key).await?;
    let enc = |s: &str| -> String { url::form_urlencoded::byte_serialize(s.as_bytes()).collect() };
    let attachments_of = |comment: Option<i64>| -> Vec<Attachment> {
        refs.iter()
            .filter(|a| a.comment_id == comment)
            .map(|a| Attachment {
                name: a.filename.clone(),
                size: fmt::bytes(a.size),
                content_type: a.content_type.clone(),
                href: format!("/api/tickets/{}/attachments/{}", enc(&t.key), a.id),
            })
            .collect()
    };
    let mut messages = vec![Message {
        author: t.reporter.clone(),
        at: fmt::time(t.created_at),
        body: t.description.clone(),
        attachments: attachments_of(None),
        html: original_html(originals.first.as_ref(), images),
    }];
    for c in &t.comments {
        messages.push(Message {
            author: c.author.clone(),
            at: fmt::time(c.created_at),
            body: c.body.clone(),
            attachments: attachments_of(Some(c.id)),
            html: original_html(originals.comments.get(&c.id), images),
        });
    }
    let mut layout = layout;
    layout.title = format!("{} {}", t.key, t.summary);
    let mut page = render(
        StatusCode::OK,
        &TicketPage {
            layout,
            key: t.key,
            summary: t.summary,
            status: t.status,
            channel: t.channel,
            reporter: t.reporter,
            participants: t.participants,
            related: t.related.into_iter().map(|r| (r.key, r.relation)).collect(),
            messages,
            images_shown: images == Images::Shown,
            reply_error,
            reply_body,
        },
    );
    // Remote images load only on the page where the administrator asked for them.
    if images == Images::Shown
        && let Ok(v) = HeaderValue::from_str(&csp(true))
    {
        page.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    Ok(page)
}
