//! Microsoft Graph mail source on plain reqwest (docs/troubleshooting.md, "Graph folders and sync"): delta query per folder for the
//! checkpoint, `$value` for the raw MIME, and the post-actions mark read (PATCH `isRead`), move
//! (POST `move`) and delete, applied only once the caller has committed the tickets.
//!
//! - The mailbox is `/me` (delegated token, the signed-in user) or `/users/{address}` (a shared
//!   or other user's mailbox; required with app-only tokens).
//! - The folder is a well-known name (`inbox`, locale-independent, RC5) or a folder ID, never a
//!   display name.
//! - Paging follows `@odata.nextLink` verbatim, one page per [`GraphSource::delta`] call; the
//!   last page's `@odata.deltaLink` is the checkpoint, to be stored only after the batch is
//!   committed. An expired delta state (410 Gone, `syncStateNotFound`, `resyncRequired`) is
//!   [`GraphError::Resync`]: start again without a checkpoint (the ledger de-duplicates).
//! - 429, 503 and 504 are retried a bounded number of times, waiting `Retry-After` seconds
//!   (exponential backoff without the header). Other errors keep Graph's `code`, `message` and
//!   `request-id` and name the root cause and its fix (docs/troubleshooting.md, "Graph errors").
//! - Every request carries `Prefer: IdType="ImmutableId"`, so a message keeps its ID when it is
//!   moved (the ledger identity `graph:<id>` stays the same across a move, docs/troubleshooting.md, "Graph folders and sync").
//! - Links (nextLink, deltaLink) are followed only on the configured Graph root's origin, so the
//!   bearer token never goes to another host. The token is never logged or put into an error.
//! - Bounds: HTTP connect and per-read deadlines ([`crate::http`]); a JSON answer is read up
//!   to [`JSON_BODY_CAP`], a message's MIME up to the size limit plus [`MIME_SLACK`].
//! - Sizes before download: the v1.0 `message` resource has no size property, so the delta
//!   request expands the MAPI property PidTagMessageSize ([`SIZE_PROPERTY`], `Integer 0x0E08`)
//!   through `singleValueExtendedProperties` — on the delta request itself (the message-delta
//!   documentation lists `$expand` among its query parameters, and Graph carries the query
//!   into every nextLink/deltaLink), so sizes cost no extra round trip. A listed message
//!   whose declared size passes the limit is never downloaded: its `internetMessageHeaders`
//!   (`$select`) become its header section and it is returned [`Oversized`]. An entry without
//!   the property (e.g. a deltaLink stored before this request carried `$expand`) keeps
//!   `size: None`, and the limit is then enforced while downloading: a `$value` that passes
//!   it is abandoned and the message quarantined the same way (with the bytes counted so far
//!   as its size: at least that large).
//! - A message gone since it was listed (404 `ErrorItemNotFound`) is left out of a fetch; any
//!   other failure is an error (never silently left out).

use std::fmt;
use std::time::Duration;

use intake_core::{ErrorKind, RootCause};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::{Fetched, Listed, Listing, MailSource, Oversized, PostAction, SourceError, Start};
use crate::http::{HttpError, HttpOptions};

/// Well-known mail folder names (docs/troubleshooting.md, "Graph folders and sync"): locale-independent, unlike display names.
pub const WELL_KNOWN_FOLDERS: &[&str] = &[
    "inbox",
    "archive",
    "clutter",
    "conflicts",
    "conversationhistory",
    "deleteditems",
    "drafts",
    "junkemail",
    "localfailures",
    "msgfolderroot",
    "outbox",
    "recoverableitemsdeletions",
    "scheduled",
    "searchfolders",
    "sentitems",
    "serverfailures",
    "syncissues",
];

/// The most folders [`GraphSource::folders`] lists (a mailbox with more is refused, not cut).
pub const MAX_FOLDERS: usize = 10_000;
/// Page size when the configuration says 0 (docs/troubleshooting.md, "Graph folders and sync": 50–100 with `$select`).
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// How many times a throttled (429) or unavailable (503/504) request is retried.
pub const MAX_RETRIES: u32 = 3;
/// The longest `Retry-After` honoured by sleeping; a longer one is returned as
/// [`GraphError::Throttled`] so the caller's scheduler waits instead of a blocked task.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// Asks Graph for IDs that survive a move (docs/troubleshooting.md, "Graph folders and sync").
const IMMUTABLE_ID: &str = "IdType=\"ImmutableId\"";

/// The MAPI property PidTagMessageSize (ID 0x0E08, 32-bit integer): the message's size in
/// bytes as the store counts it, which is what Exchange's own size limits use.
pub const SIZE_PROPERTY: &str = "Integer 0x0E08";

const DELTA_QUERY: &str = "$select=id,isRead,receivedDateTime\
    &$expand=singleValueExtendedProperties($filter=id eq 'Integer 0x0E08')";

/// The largest JSON answer read (a delta page of 1,000 entries with `$select` is far smaller).
pub const JSON_BODY_CAP: u64 = 16 * 1024 * 1024;
/// What a MIME download may exceed the size limit by before it is abandoned.
pub const MIME_SLACK: u64 = 1024 * 1024;

/// Where and how to read mail.
#[derive(Debug, Clone)]
pub struct GraphSettings {
    /// Graph root without `/v1.0` (`Cloud::graph_root()` or the `graph_url` override).
    pub graph_url: String,
    /// `None`: the signed-in user (`/me`); `Some(address)`: `/users/{address}` (shared mailbox).
    pub mailbox: Option<String>,
    /// Well-known folder name (empty means `inbox`) or a folder ID; never a display name.
    pub folder: String,
    /// Messages per delta page (`Prefer: odata.maxpagesize`), 1–1000; 0 means the default.
    pub page_size: u32,
    pub http: HttpOptions,
    /// The channel's `max_message_bytes`: a MIME download past it (plus [`MIME_SLACK`]) is
    /// abandoned and the message returned [`Oversized`]; `None`: no bound.
    pub max_message_bytes: Option<u64>,
}

/// Where a delta sequence goes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// More pages: pass this `@odata.nextLink` to the next [`GraphSource::delta`] call.
    More(String),
    /// The round is complete: this `@odata.deltaLink` is the checkpoint to persist once the
    /// batch is committed, and the starting point of the next round.
    Done(String),
}

/// One page of a delta query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaPage {
    /// Added or changed messages, in Graph's order (removed ones are skipped). The same message
    /// can be delivered more than once: process idempotently.
    pub ids: Vec<String>,
    /// Per entry of `ids`: (`isRead`, `receivedDateTime`) as Graph sent them, for the
    /// first-sync policy.
    pub meta: Vec<(Option<bool>, Option<String>)>,
    /// Per entry of `ids`: the declared size (PidTagMessageSize, [`SIZE_PROPERTY`]) when Graph
    /// returned it.
    pub sizes: Vec<Option<u64>>,
    pub next: Next,
}

/// Graph's error envelope `{"error":{"code","message","innerError":{…}}}`, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
    pub client_request_id: Option<String>,
    pub date: Option<String>,
}

impl fmt::Display for GraphApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} {}", self.status, self.code)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        let ids: Vec<String> = [
            self.request_id.as_ref().map(|v| format!("request-id={v}")),
            self.client_request_id
                .as_ref()
                .map(|v| format!("client-request-id={v}")),
            self.date.as_ref().map(|v| format!("date={v}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !ids.is_empty() {
            write!(f, " [{}]", ids.join(", "))?;
        }
        Ok(())
    }
}

/// The root cause and fix of a Graph error (docs/troubleshooting.md, "Graph errors").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphDiagnosis {
    pub cause: Option<RootCause>,
    pub kind: ErrorKind,
    /// What to do; the root cause's fix when there is one.
    pub fix: String,
}

impl fmt::Display for GraphDiagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(cause) = self.cause {
            write!(f, "{cause}. ")?;
        }
        write!(f, "Fix: {}", self.fix)
    }
}

/// What went wrong talking to Graph.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The delta state is gone (expired or reset): start over without a checkpoint.
    #[error(
        "the Graph delta state must be rebuilt ({reason}): start a full sync without a checkpoint"
    )]
    Resync { reason: String },
    /// Graph answered with its error envelope.
    #[error("Microsoft Graph answered {error}. {diagnosis}")]
    Api {
        error: Box<GraphApiError>,
        diagnosis: Box<GraphDiagnosis>,
    },
    /// Still throttled (429) or unavailable (503/504) after the retries.
    #[error("Microsoft Graph is throttling or unavailable (HTTP {status}) after {attempts} attempts{}{}",
        .retry_after.map(|d| format!("; retry after {} s", d.as_secs())).unwrap_or_default(),
        .request_id.as_ref().map(|r| format!(" [request-id={r}]")).unwrap_or_default())]
    Throttled {
        status: u16,
        attempts: u32,
        retry_after: Option<Duration>,
        request_id: Option<String>,
    },
    /// An error status whose body is not Graph's error envelope.
    #[error("Microsoft Graph answered HTTP {status} with a body that is not a Graph error ({len} bytes){}",
        .request_id.as_ref().map(|r| format!(" [request-id={r}]")).unwrap_or_default())]
    Status {
        status: u16,
        len: usize,
        request_id: Option<String>,
    },
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("configuration: {message}")]
    Config {
        cause: Option<RootCause>,
        message: String,
    },
    /// A success answer Intake cannot use (bad JSON, a link to another host, no link at all).
    #[error("unexpected Graph answer: {0}")]
    Protocol(String),
    /// An answer larger than its bound; `seen` bytes (or the declared length) so far.
    #[error(
        "Graph's answer to {what} is larger than {cap} bytes ({seen} bytes seen); not read further"
    )]
    TooLarge { what: String, cap: u64, seen: u64 },
}

impl GraphError {
    /// The known root cause, when one applies.
    pub fn root_cause(&self) -> Option<RootCause> {
        match self {
            Self::Api { diagnosis, .. } => diagnosis.cause,
            Self::Config { cause, .. } => *cause,
            _ => None,
        }
    }

    /// How to react.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Api { diagnosis, .. } => diagnosis.kind,
            Self::Throttled { .. }
            | Self::Status { .. }
            | Self::Http(_)
            | Self::Protocol(_)
            | Self::TooLarge { .. } => ErrorKind::Transient,
            Self::Config { .. } => ErrorKind::Configuration,
            // Not an error to act on by hand: the caller restarts the sync.
            Self::Resync { .. } => ErrorKind::Transient,
        }
    }

    /// Graph's error envelope, when there was one.
    pub fn api(&self) -> Option<&GraphApiError> {
        match self {
            Self::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether the message is gone (`ErrorItemNotFound`: moved or deleted meanwhile).
    pub fn is_not_found(&self) -> bool {
        self.api().is_some_and(|a| a.code == "ErrorItemNotFound")
    }

    /// Whether the access token has expired: refresh it ([`GraphSource::set_token`]) and retry.
    pub fn is_token_expired(&self) -> bool {
        self.api().is_some_and(|e| {
            e.status == 401 && e.code == "InvalidAuthenticationToken" && mentions_expiry(&e.message)
        })
    }
}

fn mentions_expiry(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("expired") || m.contains("lifetime validation")
}

/// Decode Graph's `code` + message into a root cause (docs/troubleshooting.md, "Graph errors"). `shared` says whether the
/// request named another mailbox (`/users/{address}`).
pub fn diagnose(status: u16, code: &str, message: &str, shared: bool) -> GraphDiagnosis {
    let cause = |c: RootCause| GraphDiagnosis {
        cause: Some(c),
        kind: ErrorKind::Configuration,
        fix: c.fix().to_string(),
    };
    let plain = |kind: ErrorKind, fix: &str| GraphDiagnosis {
        cause: None,
        kind,
        fix: fix.to_string(),
    };
    let lower = message.to_ascii_lowercase();
    match code {
        "InvalidAuthenticationToken" if mentions_expiry(message) => plain(
            ErrorKind::Transient,
            "the access token expired: refresh it and retry once",
        ),
        // "Access token validation failure. Invalid audience." and the other validation
        // failures of a token issued for another resource or cloud.
        "InvalidAuthenticationToken" => cause(RootCause::G1),
        "MailboxNotEnabledForRESTAPI"
        | "MailboxNotSupportedForRESTAPI"
        | "UserHasNoMailboxAndNoLicenseAssignedError" => cause(RootCause::Rc4),
        _ if lower.contains("rest api is not yet supported for this mailbox") => {
            cause(RootCause::Rc4)
        }
        // Another user's mailbox: no delegation, or outside the Application Access Policy
        // ("Access to OData is disabled."), or `Mail.ReadWrite.Shared` not granted.
        "ErrorAccessDenied" | "AccessDenied" if shared => cause(RootCause::Rc3),
        // The signed-in user's own mailbox: the token lacks `Mail.ReadWrite`.
        "ErrorAccessDenied" | "AccessDenied" => cause(RootCause::Rc1),
        "ErrorInvalidUser" | "ResourceNotFound" if shared => plain(
            ErrorKind::Configuration,
            "Graph does not know this mailbox: check the connection's mailbox address (its UPN or \
             primary SMTP address)",
        ),
        "syncStateNotFound" | "resyncRequired" | "SyncStateNotFound" => plain(
            ErrorKind::Transient,
            "the delta state expired: start a full sync without a checkpoint",
        ),
        "ErrorItemNotFound" => plain(
            ErrorKind::Transient,
            "the message is no longer there (moved or deleted): treat it as handled",
        ),
        _ if status >= 500 => plain(ErrorKind::Transient, "retry later"),
        _ => plain(
            ErrorKind::Configuration,
            "see Graph's code and message; quote the request-id to Microsoft support",
        ),
    }
}

#[derive(Deserialize)]
struct Envelope {
    error: EnvelopeError,
}

#[derive(Deserialize)]
struct EnvelopeError {
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default, rename = "innerError", alias = "innererror")]
    inner: Option<InnerError>,
}

#[derive(Deserialize)]
struct InnerError {
    #[serde(default, rename = "request-id")]
    request_id: Option<String>,
    #[serde(default, rename = "client-request-id")]
    client_request_id: Option<String>,
    #[serde(default)]
    date: Option<String>,
}

#[derive(Deserialize)]
struct DeltaBody {
    #[serde(default)]
    value: Vec<DeltaItem>,
    #[serde(default, rename = "@odata.nextLink")]
    next_link: Option<String>,
    #[serde(default, rename = "@odata.deltaLink")]
    delta_link: Option<String>,
}

#[derive(Deserialize)]
struct DeltaItem {
    id: String,
    #[serde(default, rename = "@removed")]
    removed: Option<serde_json::Value>,
    #[serde(default, rename = "isRead")]
    is_read: Option<bool>,
    #[serde(default, rename = "receivedDateTime")]
    received: Option<String>,
    #[serde(default, rename = "singleValueExtendedProperties")]
    extended: Vec<ExtendedProperty>,
}

#[derive(Deserialize)]
struct ExtendedProperty {
    id: String,
    #[serde(default)]
    value: Option<String>,
}

impl DeltaItem {
    /// PidTagMessageSize when expanded. Graph echoes the id normalised (`Integer 0xe08`), so
    /// the type and the tag are compared, not the text.
    fn size(&self) -> Option<u64> {
        self.extended
            .iter()
            .find(|p| is_size_property(&p.id))
            .and_then(|p| p.value.as_deref()?.trim().parse::<u64>().ok())
    }
}

fn is_size_property(id: &str) -> bool {
    let mut parts = id.split_whitespace();
    let (Some(kind), Some(tag), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let tag = tag
        .strip_prefix("0x")
        .or_else(|| tag.strip_prefix("0X"))
        .and_then(|h| u32::from_str_radix(h, 16).ok());
    kind.eq_ignore_ascii_case("Integer") && tag == Some(0x0E08)
}

/// An authenticated Graph client for one mailbox folder.
pub struct GraphSource {
    client: reqwest::Client,
    token: SecretString,
    /// `{root}/v1.0/me` or `{root}/v1.0/users/{address}`.
    mailbox_url: Url,
    shared: bool,
    folder: String,
    page_size: u32,
    max_message_bytes: Option<u64>,
    /// The `@odata.nextLink` of a round in progress ([`MailSource::list`]).
    next_link: Option<String>,
    /// Whether the round in progress applies the first-sync filter.
    filtering: bool,
    /// IDs the last listing showed as read already: `mark-read` skips them (our own PATCH
    /// makes a message reappear in the next delta; patching it again would never settle).
    read: std::collections::HashSet<String>,
}

impl fmt::Debug for GraphSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphSource")
            .field("mailbox_url", &self.mailbox_url.as_str())
            .field("folder", &self.folder)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

fn config(cause: Option<RootCause>, message: impl Into<String>) -> GraphError {
    GraphError::Config {
        cause,
        message: message.into(),
    }
}

/// The folder as sent: a well-known name (lower-cased) or something shaped like a Graph folder
/// ID. Anything else is taken for a display name (RC5).
fn folder_name(folder: &str) -> Result<String, GraphError> {
    let f = folder.trim();
    if f.is_empty() {
        return Ok("inbox".into());
    }
    let lower = f.to_ascii_lowercase();
    if WELL_KNOWN_FOLDERS.contains(&lower.as_str()) {
        return Ok(lower);
    }
    let id_like = f.len() >= 40
        && f.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'+' | b'/'));
    if id_like {
        return Ok(f.to_string());
    }
    Err(config(
        Some(RootCause::Rc5),
        format!(
            "Graph folder {f:?} is neither a well-known folder name ({}) nor a folder ID; \
             display names are localized and not accepted",
            WELL_KNOWN_FOLDERS.join(", ")
        ),
    ))
}

fn origin(u: &Url) -> (String, Option<String>, Option<u16>) {
    (
        u.scheme().to_string(),
        u.host_str().map(str::to_ascii_lowercase),
        u.port_or_known_default(),
    )
}

fn origin_text(u: &Url) -> String {
    u.origin().ascii_serialization()
}

fn is_loopback(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

impl GraphSource {
    /// Check the settings and build the HTTP client. No request is made.
    pub fn new(settings: GraphSettings, token: SecretString) -> Result<Self, GraphError> {
        let root = settings.graph_url.trim().trim_end_matches('/');
        let root = root.strip_suffix("/v1.0").unwrap_or(root);
        let mut url = Url::parse(root)
            .map_err(|e| config(None, format!("graph_url {root:?} is not a URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            _ => {
                return Err(config(
                    None,
                    format!(
                        "graph_url {root:?} must be an https URL (the token would travel in clear)"
                    ),
                ));
            }
        }
        if url.host_str().is_none() || url.query().is_some() {
            return Err(config(
                None,
                format!("graph_url {root:?} is not a Graph root"),
            ));
        }
        let shared = settings
            .mailbox
            .as_deref()
            .is_some_and(|m| !m.trim().is_empty());
        {
            let mut segs = url
                .path_segments_mut()
                .map_err(|()| config(None, format!("graph_url {root:?} is not a Graph root")))?;
            segs.pop_if_empty().push("v1.0");
            match settings.mailbox.as_deref().map(str::trim) {
                Some(m) if !m.is_empty() => {
                    segs.push("users").push(m);
                }
                _ => {
                    segs.push("me");
                }
            }
        }
        let folder = folder_name(&settings.folder)?;
        let page_size = match settings.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(1000),
        };
        let client = crate::http::client(&settings.http)?;
        Ok(Self {
            client,
            token,
            mailbox_url: url,
            shared,
            folder,
            page_size,
            max_message_bytes: settings.max_message_bytes,
            next_link: None,
            filtering: false,
            read: Default::default(),
        })
    }

    /// Replace the access token (after a refresh).
    pub fn set_token(&mut self, token: SecretString) {
        self.token = token;
    }

    /// The ledger identity of a message: `graph:<id>`.
    pub fn identity(id: &str) -> String {
        format!("graph:{id}")
    }

    /// The mailbox URL (`…/v1.0/me` or `…/v1.0/users/{address}`), for messages and the doctor.
    pub fn mailbox_url(&self) -> &str {
        self.mailbox_url.as_str()
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut u = self.mailbox_url.clone();
        u.path_segments_mut()
            .expect("checked in new()")
            .extend(segments);
        u
    }

    fn first_delta_url(&self) -> Url {
        let mut u = self.url(&["mailFolders", &self.folder, "messages", "delta"]);
        u.set_query(Some(DELTA_QUERY));
        u
    }

    fn same_origin(&self, link: &str) -> Result<Url, Url> {
        match Url::parse(link) {
            Ok(u) if origin(&u) == origin(&self.mailbox_url) => Ok(u),
            Ok(u) => Err(u),
            Err(_) => Err(self.mailbox_url.clone()),
        }
    }

    /// One delta page. `checkpoint`: `None` starts a full round over the folder; a stored
    /// `@odata.deltaLink` asks for what changed since; a [`Next::More`] link continues a round.
    pub async fn delta(&mut self, checkpoint: Option<&str>) -> Result<DeltaPage, GraphError> {
        let url = match checkpoint.map(str::trim).filter(|c| !c.is_empty()) {
            None => self.first_delta_url(),
            Some(link) => match self.same_origin(link) {
                Ok(u) => u,
                // A checkpoint from another Graph root (the cloud or graph_url changed) is
                // useless there and must not receive the token: start over.
                Err(other) => {
                    return Err(GraphError::Resync {
                        reason: format!(
                            "the stored delta link is not on the configured Graph root {} (it \
                             points at {})",
                            origin_text(&self.mailbox_url),
                            origin_text(&other)
                        ),
                    });
                }
            },
        };
        let prefer = format!("odata.maxpagesize={}", self.page_size);
        let resp = self
            .send(Method::GET, url, None, Some(&prefer), true)
            .await?;
        let body: DeltaBody = serde_json::from_slice(&resp)
            .map_err(|e| GraphError::Protocol(format!("delta page is not valid JSON: {e}")))?;
        let mut ids = Vec::new();
        let mut meta = Vec::new();
        let mut sizes = Vec::new();
        for m in body.value.into_iter().filter(|m| m.removed.is_none()) {
            sizes.push(m.size());
            ids.push(m.id);
            meta.push((m.is_read, m.received));
        }
        let next = match (body.next_link, body.delta_link) {
            (Some(next), _) => Next::More(self.checked_link(next)?),
            (None, Some(delta)) => Next::Done(self.checked_link(delta)?),
            (None, None) => {
                return Err(GraphError::Protocol(
                    "delta page has neither @odata.nextLink nor @odata.deltaLink".into(),
                ));
            }
        };
        Ok(DeltaPage {
            ids,
            meta,
            sizes,
            next,
        })
    }

    fn checked_link(&self, link: String) -> Result<String, GraphError> {
        match self.same_origin(&link) {
            Ok(_) => Ok(link),
            Err(other) => Err(GraphError::Protocol(format!(
                "Graph returned a paging link on {} instead of {}; not followed",
                origin_text(&other),
                origin_text(&self.mailbox_url)
            ))),
        }
    }

    /// (total, unread) of the folder (`GET …/mailFolders/{folder}` with `totalItemCount` and
    /// `unreadItemCount`): counts only, for the connection check (RC15).
    pub async fn folder_counts(&mut self) -> Result<(u64, u64), GraphError> {
        #[derive(Deserialize)]
        struct Counts {
            #[serde(rename = "totalItemCount")]
            total: u64,
            #[serde(rename = "unreadItemCount")]
            unread: u64,
        }
        let mut url = self.url(&["mailFolders", &self.folder]);
        url.set_query(Some("$select=totalItemCount,unreadItemCount"));
        let body = self.send(Method::GET, url, None, None, false).await?;
        let c: Counts = serde_json::from_slice(&body)
            .map_err(|e| GraphError::Protocol(format!("folder counts are not valid JSON: {e}")))?;
        Ok((c.total, c.unread))
    }

    /// Every mail folder of the mailbox (`mailFolders`, then `childFolders` of each folder
    /// that has some), with display paths, IDs, counts and the roles of the well-known
    /// folders (each looked up by its well-known name; one Graph does not have, such as an
    /// unprovisioned `archive`, is left out). See [`super::folders`]. Bounded to
    /// [`MAX_FOLDERS`] folders.
    pub async fn folders(&mut self) -> Result<Vec<super::folders::Folder>, GraphError> {
        use super::folders::{Folder, GRAPH_WELL_KNOWN_ROLES};
        #[derive(Deserialize)]
        struct Id {
            id: String,
        }
        #[derive(Deserialize)]
        struct Entry {
            id: String,
            #[serde(default, rename = "displayName")]
            name: String,
            #[serde(default, rename = "childFolderCount")]
            children: u64,
            #[serde(default, rename = "totalItemCount")]
            total: Option<u64>,
            #[serde(default, rename = "unreadItemCount")]
            unread: Option<u64>,
        }
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            value: Vec<Entry>,
            #[serde(default, rename = "@odata.nextLink")]
            next: Option<String>,
        }
        const SELECT: &str =
            "$top=100&$select=id,displayName,childFolderCount,totalItemCount,unreadItemCount";
        let mut roles = Vec::new();
        for (name, role) in GRAPH_WELL_KNOWN_ROLES {
            let mut url = self.url(&["mailFolders", name]);
            url.set_query(Some("$select=id"));
            match self.send(Method::GET, url, None, None, false).await {
                Ok(body) => {
                    let f: Id = serde_json::from_slice(&body).map_err(|e| {
                        GraphError::Protocol(format!("mailFolders/{name} is not valid JSON: {e}"))
                    })?;
                    roles.push((f.id, *name, *role));
                }
                Err(e) if e.api().is_some_and(|a| a.status == 404) => {}
                Err(GraphError::Status { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut out: Vec<Folder> = Vec::new();
        // (URL of a listing, display path of its parent)
        let mut todo = std::collections::VecDeque::new();
        let mut first = self.url(&["mailFolders"]);
        first.set_query(Some(SELECT));
        todo.push_back((first, String::new()));
        while let Some((url, parent)) = todo.pop_front() {
            let mut next = Some(url);
            while let Some(url) = next.take() {
                let body = self.send(Method::GET, url, None, None, false).await?;
                let page: Page = serde_json::from_slice(&body).map_err(|e| {
                    GraphError::Protocol(format!("a mailFolders page is not valid JSON: {e}"))
                })?;
                for f in page.value {
                    if out.len() >= MAX_FOLDERS {
                        return Err(GraphError::TooLarge {
                            what: "mailFolders".into(),
                            cap: MAX_FOLDERS as u64,
                            seen: out.len() as u64,
                        });
                    }
                    let path = if parent.is_empty() {
                        f.name.clone()
                    } else {
                        format!("{parent}/{}", f.name)
                    };
                    if f.children > 0 {
                        let mut u = self.url(&["mailFolders", &f.id, "childFolders"]);
                        u.set_query(Some(SELECT));
                        todo.push_back((u, path.clone()));
                    }
                    let known = roles.iter().find(|(id, _, _)| *id == f.id);
                    out.push(Folder {
                        id: f.id.clone(),
                        name: path,
                        role: known.map(|(_, _, r)| *r),
                        well_known: known.map(|(_, n, _)| (*n).to_string()),
                        selectable: true,
                        messages: f.total,
                        unread: f.unread,
                    });
                }
                next = match page.next {
                    Some(link) => Some(Url::parse(&self.checked_link(link)?).map_err(|e| {
                        GraphError::Protocol(format!("a mailFolders nextLink is not a URL: {e}"))
                    })?),
                    None => None,
                };
            }
        }
        Ok(out)
    }

    /// The message's full MIME content (`GET …/messages/{id}/$value`), bytes as received.
    /// Bounded by the size limit plus [`MIME_SLACK`] ([`GraphError::TooLarge`] past it).
    pub async fn fetch_mime(&mut self, id: &str) -> Result<Vec<u8>, GraphError> {
        let url = self.url(&["messages", id, "$value"]);
        let cap = self
            .max_message_bytes
            .map_or(u64::MAX, |l| l.saturating_add(MIME_SLACK));
        self.send_capped(Method::GET, url, None, None, false, cap)
            .await
    }

    /// The message's header section rebuilt from `internetMessageHeaders` (`Name: value`
    /// lines and the empty line after them), for a message too large to download.
    pub async fn fetch_headers(&mut self, id: &str) -> Result<Vec<u8>, GraphError> {
        #[derive(Deserialize)]
        struct Header {
            name: String,
            value: String,
        }
        #[derive(Deserialize)]
        struct Headers {
            #[serde(default, rename = "internetMessageHeaders")]
            headers: Vec<Header>,
        }
        let mut url = self.url(&["messages", id]);
        url.set_query(Some("$select=internetMessageHeaders"));
        let body = self.send(Method::GET, url, None, None, false).await?;
        let h: Headers = serde_json::from_slice(&body).map_err(|e| {
            GraphError::Protocol(format!("message headers are not valid JSON: {e}"))
        })?;
        let mut out = Vec::new();
        for Header { name, value } in h.headers {
            let value = value.replace(['\r', '\n'], " ");
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        Ok(out)
    }

    /// Apply the post-action to a committed message. A message that is no longer there
    /// (`ErrorItemNotFound`: already moved or deleted, e.g. by an earlier attempt) counts as
    /// handled.
    pub async fn acknowledge(&mut self, id: &str, action: &PostAction) -> Result<(), GraphError> {
        let result = match action {
            PostAction::MarkRead => {
                let url = self.url(&["messages", id]);
                let body = serde_json::json!({ "isRead": true });
                self.send(Method::PATCH, url, Some(body), None, false).await
            }
            PostAction::Move(folder) => {
                let destination = folder_name(folder)?;
                let url = self.url(&["messages", id, "move"]);
                let body = serde_json::json!({ "destinationId": destination });
                self.send(Method::POST, url, Some(body), None, false).await
            }
            PostAction::Delete => {
                let url = self.url(&["messages", id]);
                self.send(Method::DELETE, url, None, None, false).await
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => {
                tracing::debug!(
                    request_id = e.api().and_then(|a| a.request_id.as_deref()),
                    "Graph message already gone; post-action treated as done"
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Send with the bearer token, retrying 429/503/504; the body on 2xx, else the decoded
    /// error. `delta` turns 410 and the sync-state codes into [`GraphError::Resync`].
    async fn send(
        &self,
        method: Method,
        url: Url,
        json: Option<serde_json::Value>,
        prefer: Option<&str>,
        delta: bool,
    ) -> Result<Vec<u8>, GraphError> {
        self.send_capped(method, url, json, prefer, delta, JSON_BODY_CAP)
            .await
    }

    /// [`GraphSource::send`] reading at most `cap` bytes of a successful answer (an error
    /// answer at most [`JSON_BODY_CAP`]).
    async fn send_capped(
        &self,
        method: Method,
        url: Url,
        json: Option<serde_json::Value>,
        prefer: Option<&str>,
        delta: bool,
        cap: u64,
    ) -> Result<Vec<u8>, GraphError> {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let mut req = self
                .client
                .request(method.clone(), url.clone())
                .bearer_auth(self.token.expose_secret());
            req = match prefer {
                Some(p) => req.header("Prefer", format!("{p}, {IMMUTABLE_ID}")),
                None => req.header("Prefer", IMMUTABLE_ID),
            };
            if let Some(body) = &json {
                req = req.json(body);
            }
            let transport = |e: reqwest::Error| {
                GraphError::Http(HttpError::Request {
                    url: format!("{} {}", method, url.path()),
                    message: crate::http::explain(&e),
                })
            };
            let resp = req.send().await.map_err(transport)?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let cap = if status.is_success() {
                cap
            } else {
                JSON_BODY_CAP
            };
            let body = crate::http::read_capped(resp, cap)
                .await
                .map_err(transport)?
                .map_err(|seen| GraphError::TooLarge {
                    what: format!("{} {}", method, url.path()),
                    cap,
                    seen,
                })?;
            if status.is_success() {
                return Ok(body);
            }
            let request_id = header(&headers, "request-id");
            if matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ) {
                let wait = retry_after(&headers);
                let backoff = wait.unwrap_or(Duration::from_secs(1 << (attempt - 1).min(5)));
                if attempt <= MAX_RETRIES && backoff <= MAX_RETRY_AFTER {
                    tracing::info!(
                        status = status.as_u16(),
                        wait_s = backoff.as_secs(),
                        attempt,
                        request_id = request_id.as_deref(),
                        "Graph throttled the request; waiting"
                    );
                    tokio::time::sleep(backoff).await;
                    continue;
                }
                return Err(GraphError::Throttled {
                    status: status.as_u16(),
                    attempts: attempt,
                    retry_after: wait,
                    request_id,
                });
            }
            return Err(self.decode_error(status, &headers, &body, delta));
        }
    }

    fn decode_error(
        &self,
        status: StatusCode,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
        delta: bool,
    ) -> GraphError {
        let Ok(env) = serde_json::from_slice::<Envelope>(body) else {
            if delta && status == StatusCode::GONE {
                return GraphError::Resync {
                    reason: "HTTP 410 Gone".into(),
                };
            }
            return GraphError::Status {
                status: status.as_u16(),
                len: body.len(),
                request_id: header(headers, "request-id"),
            };
        };
        let e = env.error;
        let inner = e.inner.unwrap_or(InnerError {
            request_id: None,
            client_request_id: None,
            date: None,
        });
        let code_says_resync = matches!(
            e.code.as_str(),
            "syncStateNotFound" | "SyncStateNotFound" | "resyncRequired" | "syncStateInvalid"
        );
        if delta && (status == StatusCode::GONE || code_says_resync) {
            return GraphError::Resync {
                reason: format!("HTTP {} {}", status.as_u16(), e.code),
            };
        }
        let diagnosis = diagnose(status.as_u16(), &e.code, &e.message, self.shared);
        GraphError::Api {
            error: Box::new(GraphApiError {
                status: status.as_u16(),
                code: e.code,
                message: e.message,
                request_id: inner.request_id.or_else(|| header(headers, "request-id")),
                client_request_id: inner
                    .client_request_id
                    .or_else(|| header(headers, "client-request-id")),
                date: inner.date,
            }),
            diagnosis: Box::new(diagnosis),
        }
    }
}

impl GraphSource {
    /// Whether a delta entry passes the first-sync filter of `start`.
    fn wanted(start: Start, meta: &(Option<bool>, Option<String>)) -> bool {
        match start {
            Start::All => true,
            // `now` after a lost delta state: take what is still unread.
            Start::Unread | Start::Now => meta.0 != Some(true),
            Start::Since(d) => meta.1.as_deref().is_none_or(|r| r >= d.iso().as_str()),
        }
    }
}

/// Graph as a [`MailSource`]: one delta page per listing (`limit` is the page size set at
/// construction); the deltaLink of the last page is the checkpoint. A first sync (and a resync
/// after the delta state expired) applies `start`: `unread` and `since:` filter on `isRead` and
/// `receivedDateTime`; `now` pages through the folder taking nothing and keeps the deltaLink (a
/// resync under `now` takes unread mail, so nothing that arrived meanwhile is lost).
impl MailSource for GraphSource {
    async fn list(
        &mut self,
        checkpoint: Option<&str>,
        start: Start,
        _limit: usize,
    ) -> Result<Listing, SourceError> {
        let mut link = match self.next_link.take() {
            Some(next) => Some(next),
            None => {
                self.filtering = checkpoint.is_none();
                checkpoint.map(str::to_string)
            }
        };
        let mut skip_all = self.filtering && start == Start::Now && link.is_none();
        let mut resynced = false;
        loop {
            let page = match self.delta(link.as_deref()).await {
                Err(GraphError::Resync { reason }) if !resynced => {
                    tracing::info!(%reason, "Graph delta state lost; resyncing through the ledger");
                    resynced = true;
                    self.filtering = true;
                    skip_all = false;
                    link = None;
                    continue;
                }
                r => r?,
            };
            self.read = page
                .ids
                .iter()
                .zip(&page.meta)
                .filter(|(_, m)| m.0 == Some(true))
                .map(|(id, _)| id.clone())
                .collect();
            let items: Vec<Listed> = if skip_all {
                Vec::new()
            } else {
                page.ids
                    .iter()
                    .zip(&page.meta)
                    .zip(&page.sizes)
                    .filter(|((_, m), _)| !self.filtering || Self::wanted(start, m))
                    .map(|((id, _), size)| Listed {
                        key: id.clone(),
                        identity: Self::identity(id),
                        size: *size,
                    })
                    .collect()
            };
            match page.next {
                Next::More(next) if skip_all => link = Some(next),
                Next::More(next) => {
                    self.next_link = Some(next);
                    return Ok(Listing {
                        items,
                        checkpoint: None,
                        more: true,
                    });
                }
                Next::Done(delta) => {
                    return Ok(Listing {
                        items,
                        checkpoint: Some(delta),
                        more: false,
                    });
                }
            }
        }
    }

    async fn fetch(&mut self, items: &[Listed]) -> Result<Vec<Fetched>, SourceError> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            // Declared larger than the limit: quarantined from its headers, never downloaded.
            if let (Some(size), Some(limit)) = (item.size, self.max_message_bytes)
                && size > limit
            {
                match self.fetch_headers(&item.key).await {
                    Ok(raw) => out.push(Fetched {
                        identity: item.identity.clone(),
                        raw,
                        oversized: Some(Oversized { size, limit }),
                    }),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
                continue;
            }
            match self.fetch_mime(&item.key).await {
                Ok(raw) => out.push(Fetched {
                    identity: item.identity.clone(),
                    raw,
                    oversized: None,
                }),
                // Deleted or moved away since it was listed: nothing to take.
                Err(e) if e.is_not_found() => {}
                // Larger than the limit: quarantined from its headers, body left on the server.
                Err(GraphError::TooLarge { seen, .. }) if self.max_message_bytes.is_some() => {
                    let limit = self.max_message_bytes.unwrap_or_default();
                    match self.fetch_headers(&item.key).await {
                        Ok(raw) => out.push(Fetched {
                            identity: item.identity.clone(),
                            raw,
                            oversized: Some(Oversized {
                                size: seen.max(limit + 1),
                                limit,
                            }),
                        }),
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    async fn acknowledge(
        &mut self,
        items: &[Listed],
        action: &PostAction,
    ) -> Result<(), SourceError> {
        for item in items {
            if *action == PostAction::MarkRead && self.read.contains(&item.key) {
                continue;
            }
            GraphSource::acknowledge(self, &item.key, action).await?;
        }
        Ok(())
    }

    fn checkpoint_after(&self, _item: &Listed) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_refused_as_folders() {
        assert_eq!(folder_name("").unwrap(), "inbox");
        assert_eq!(folder_name("Inbox").unwrap(), "inbox");
        assert_eq!(folder_name("DeletedItems").unwrap(), "deleteditems");
        let id = "AAMkAGI2TAAA-0123456789_abcdefghijklmnopqrstuvwxyz=";
        assert_eq!(folder_name(id).unwrap(), id);
        let e = folder_name("Posteingang").unwrap_err();
        assert_eq!(e.root_cause(), Some(RootCause::Rc5));
    }

    #[test]
    fn the_size_property_is_recognised_in_graphs_normalised_spelling() {
        for id in [
            "Integer 0x0E08",
            "Integer 0xe08",
            "integer 0X0e08",
            " Integer  0xE08 ",
        ] {
            assert!(is_size_property(id), "{id}");
        }
        for id in [
            "Long 0x0E08",
            "Integer 0x0E07",
            "Integer",
            "Integer 0x0E08 x",
            "String 0xe08",
        ] {
            assert!(!is_size_property(id), "{id}");
        }
        let item: DeltaItem = serde_json::from_value(serde_json::json!({
            "id": "m1",
            "singleValueExtendedProperties": [
                {"id": "String 0x1000", "value": "99"},
                {"id": "Integer 0xe08", "value": "123456"}
            ]
        }))
        .unwrap();
        assert_eq!(item.size(), Some(123_456));
        let bare: DeltaItem = serde_json::from_value(serde_json::json!({"id": "m2"})).unwrap();
        assert_eq!(bare.size(), None);
    }

    #[test]
    fn graph_codes_name_their_root_cause() {
        let d = diagnose(
            401,
            "InvalidAuthenticationToken",
            "Access token validation failure. Invalid audience.",
            false,
        );
        assert_eq!(d.cause, Some(RootCause::G1));
        let d = diagnose(
            401,
            "InvalidAuthenticationToken",
            "Lifetime validation failed, the token is expired.",
            false,
        );
        assert_eq!(d.cause, None);
        assert_eq!(d.kind, ErrorKind::Transient);
        for code in [
            "MailboxNotEnabledForRESTAPI",
            "UserHasNoMailboxAndNoLicenseAssignedError",
        ] {
            assert_eq!(diagnose(404, code, "", false).cause, Some(RootCause::Rc4));
        }
        assert_eq!(
            diagnose(403, "ErrorAccessDenied", "Access is denied.", true).cause,
            Some(RootCause::Rc3)
        );
        assert_eq!(
            diagnose(403, "ErrorAccessDenied", "Access is denied.", false).cause,
            Some(RootCause::Rc1)
        );
    }

    #[test]
    fn graph_url_must_be_https_off_loopback() {
        let s = |url: &str| GraphSettings {
            graph_url: url.into(),
            mailbox: None,
            folder: String::new(),
            page_size: 0,
            http: HttpOptions::default(),
            max_message_bytes: None,
        };
        let t = || SecretString::from("t".to_string());
        assert!(GraphSource::new(s("http://graph.example"), t()).is_err());
        let g = GraphSource::new(s("https://graph.microsoft.us/v1.0/"), t()).unwrap();
        assert_eq!(g.mailbox_url(), "https://graph.microsoft.us/v1.0/me");
        assert!(GraphSource::new(s("http://127.0.0.1:9"), t()).is_ok());
    }
}
