//! IMAP source on async-imap: implicit TLS, STARTTLS or plain; XOAUTH2, OAUTHBEARER or
//! LOGIN; checkpoint by UIDVALIDITY + UID; BODY.PEEK[] so fetching never marks anything read;
//! post-actions `\Seen`, MOVE (COPY + `\Deleted` + UID EXPUNGE without the MOVE extension) and
//! delete, applied only when the caller has committed the tickets.
//!
//! The folder is always the protocol name (`INBOX` is case-insensitive and never localized,
//! RC5), never a display name.
//!
//! Every network operation has a deadline ([`crate::transport`]): connect, TLS, greeting and
//! login as a whole; every other command per read (a FETCH that keeps delivering bytes is never
//! cut, one that stalls is after [`Timeouts::command`]); IDLE to its own re-issue deadline.
//! A stall is [`SourceError::Timeout`] naming the command and the server.
//!
//! Fetching keeps the [`MailSource::fetch`] contract: a UID asked for that the server did not
//! return with its body is looked up (`UID SEARCH UID …`, only when something is missing); gone
//! means expunged since the listing (left out), still there is an error naming the UID. The
//! listing carries each message's `RFC822.SIZE` (one `UID FETCH … (RFC822.SIZE)` per listing);
//! a message over [`ImapSettings::max_message_bytes`] is fetched as `BODY.PEEK[HEADER]` only and
//! marked [`Oversized`].

use std::fmt::Debug;

use async_imap::{Client, Session};
use futures_util::TryStreamExt;
use secrecy::ExposeSecret;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Fetched, Listed, Listing, MailSource, Oversized, PostAction, SourceError, Start};
use crate::sasl::OAuthSasl;
use crate::transport::{self, Deadline, Endpoint, Timeouts, stalled, timeout_error, within};

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    Implicit,
    StartTls,
    None,
}

/// How to log in (shared with the other sources).
pub type ImapAuth = super::MailAuth;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub ca_pem: Option<Vec<u8>>,
    pub auth: ImapAuth,
    pub folder: String,
    /// HTTP CONNECT proxy for this connection (RC16); environment variables are never used.
    pub proxy: Option<crate::net::ProxySettings>,
    /// Deadlines for connect, TLS and every command's answer.
    pub timeouts: Timeouts,
    /// A message whose `RFC822.SIZE` is over this is fetched headers-only and marked
    /// [`Oversized`] (the channel's `max_message_bytes`); `None`: no check before download.
    pub max_message_bytes: Option<u64>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> Io for T {}
type Stream = Box<dyn Io>;

/// A logged-in session with the folder selected.
pub struct ImapSource {
    /// `None` only while IDLE holds the connection; after a failed IDLE the source must be
    /// dropped and reconnected (every method then says so instead of panicking).
    session: Option<Session<Stream>>,
    folder: String,
    uid_validity: u32,
    can_move: bool,
    /// The `/first:MAX` part of the checkpoint being worked through (see [`Checkpoint`]).
    first_until: Option<u32>,
    /// The server reported a change since the last listing (see [`ImapSource::absorb`]).
    news: bool,
    /// `host:port`, for timeout errors.
    addr: String,
    timeouts: Timeouts,
    /// Moves the connection's read deadline (raised during IDLE).
    deadline: Deadline,
    max_message_bytes: Option<u64>,
}

impl Debug for ImapSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapSource")
            .field("folder", &self.folder)
            .field("uid_validity", &self.uid_validity)
            .finish_non_exhaustive()
    }
}

fn server_text(e: &async_imap::error::Error) -> String {
    match e {
        async_imap::error::Error::No(s) | async_imap::error::Error::Bad(s) => s.trim().to_string(),
        other => other.to_string(),
    }
}

/// An error from async-imap for `command`: a stalled connection is [`SourceError::Timeout`],
/// a `NO`/`BAD` is [`SourceError::Refused`] with the server's words, anything else
/// [`SourceError::Protocol`].
fn imap_error(addr: &str, command: &str, e: async_imap::error::Error) -> SourceError {
    if let Some(after) = stalled(&e) {
        return timeout_error(command, addr, after);
    }
    match e {
        async_imap::error::Error::No(_) | async_imap::error::Error::Bad(_) => {
            SourceError::Refused {
                command: command.into(),
                server: server_text(&e),
            }
        }
        other => SourceError::Protocol(format!("{command}: {other}")),
    }
}

/// Like [`imap_error`], but every non-timeout error is [`SourceError::Refused`] (the shape the
/// post-actions and SELECT always had).
fn refused(addr: &str, command: &str, e: async_imap::error::Error) -> SourceError {
    if let Some(after) = stalled(&e) {
        return timeout_error(command, addr, after);
    }
    SourceError::Refused {
        command: command.into(),
        server: server_text(&e),
    }
}

/// Read the server's greeting within the command deadline.
async fn greeting<T: AsyncRead + AsyncWrite + Unpin + Debug + Send>(
    c: &mut Client<T>,
    addr: &str,
    t: &Timeouts,
) -> Result<(), SourceError> {
    within("greeting", addr, t.command, async {
        match c.read_response().await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(SourceError::Protocol(
                "the server closed the connection before its greeting".into(),
            )),
            Err(e) => Err(match stalled(&e) {
                Some(after) => timeout_error("greeting", addr, after),
                None => SourceError::Protocol(e.to_string()),
            }),
        }
    })
    .await
}

/// A logged-in session with nothing selected, its `host:port` and its read deadline.
type LoggedIn = (Session<Stream>, String, Deadline);

/// Connect, read the greeting (STARTTLS as configured) and log in.
async fn login(s: &ImapSettings) -> Result<LoggedIn, SourceError> {
    let ep = Endpoint {
        host: &s.host,
        port: s.port,
        proxy: s.proxy.as_ref(),
        ca_pem: s.ca_pem.as_deref(),
        timeouts: s.timeouts,
    };
    let addr = ep.addr();
    let t = s.timeouts;
    let tcp = transport::connect(&ep).await?;
    let deadline = tcp.deadline();
    let client: Client<Stream> = match s.tls {
        Tls::Implicit => {
            let mut c = Client::new(Box::new(transport::tls(&ep, tcp).await?) as Stream);
            greeting(&mut c, &addr, &t).await?;
            c
        }
        Tls::None => {
            let mut c = Client::new(Box::new(tcp) as Stream);
            greeting(&mut c, &addr, &t).await?;
            c
        }
        Tls::StartTls => {
            let mut plain = Client::new(tcp);
            greeting(&mut plain, &addr, &t).await?;
            within("STARTTLS", &addr, t.command, async {
                plain
                    .run_command_and_check_ok("STARTTLS", None)
                    .await
                    .map_err(|e| refused(&addr, "STARTTLS", e))
            })
            .await?;
            Client::new(Box::new(transport::tls(&ep, plain.into_inner()).await?) as Stream)
        }
    };
    let login = async {
        match &s.auth {
            ImapAuth::Password { user, password } => client
                .login(user, password.expose_secret())
                .await
                .map_err(|(e, _)| match stalled(&e) {
                    Some(after) => timeout_error("LOGIN", &addr, after),
                    None => SourceError::Auth {
                        mechanism: "LOGIN".into(),
                        server: server_text(&e),
                        challenge: None,
                    },
                }),
            ImapAuth::OAuth {
                mechanism,
                user,
                token,
            } => {
                let mut sasl =
                    OAuthSasl::new(*mechanism, user, &s.host, s.port, token.expose_secret());
                let name = mechanism.name();
                match client.authenticate(name, &mut sasl).await {
                    Ok(session) => Ok(session),
                    Err((e, _)) => Err(match stalled(&e) {
                        Some(after) => timeout_error(format!("AUTHENTICATE {name}"), &addr, after),
                        None => SourceError::Auth {
                            mechanism: name.into(),
                            server: server_text(&e),
                            challenge: sasl.server_error.clone(),
                        },
                    }),
                }
            }
        }
    };
    let operation = match &s.auth {
        ImapAuth::Password { .. } => "LOGIN".to_string(),
        ImapAuth::OAuth { mechanism, .. } => format!("AUTHENTICATE {}", mechanism.name()),
    };
    let session = within(&operation, &addr, t.command, login).await?;
    Ok((session, addr, deadline))
}

/// The folders of the mailbox (`LIST "" "*"`), with their roles (`INBOX`, SPECIAL-USE): see
/// [`super::folders`]. Logs in without selecting anything, so a channel whose `folder` does
/// not exist can still list; logs out at the end.
pub async fn list_folders(s: &ImapSettings) -> Result<Vec<super::folders::Folder>, SourceError> {
    use super::folders::{Folder, FolderRole, mutf7_decode};
    use async_imap::imap_proto::NameAttribute as A;
    let (mut session, addr, _deadline) = login(s).await?;
    let t = s.timeouts;
    let names: Vec<async_imap::types::Name> = within("LIST", &addr, t.command, async {
        session
            .list(Some(""), Some("*"))
            .await
            .map_err(|e| imap_error(&addr, "LIST", e))?
            .try_collect()
            .await
            .map_err(|e| imap_error(&addr, "LIST", e))
    })
    .await?;
    let mut out: Vec<Folder> = names
        .iter()
        .map(|n| {
            let name = mutf7_decode(n.name());
            let mut role = name
                .eq_ignore_ascii_case("INBOX")
                .then_some(FolderRole::Inbox);
            let mut selectable = true;
            for a in n.attributes() {
                match a {
                    A::Sent => role = Some(FolderRole::Sent),
                    A::Drafts => role = Some(FolderRole::Drafts),
                    A::Trash => role = Some(FolderRole::Trash),
                    A::Junk => role = Some(FolderRole::Junk),
                    A::Archive => role = Some(FolderRole::Archive),
                    A::All => role = Some(FolderRole::All),
                    A::Flagged => role = Some(FolderRole::Flagged),
                    A::NoSelect => selectable = false,
                    A::Extension(x) if x.eq_ignore_ascii_case("\\NonExistent") => {
                        selectable = false;
                    }
                    _ => {}
                }
            }
            Folder {
                id: name.clone(),
                name,
                role,
                well_known: None,
                selectable,
                messages: None,
                unread: None,
            }
        })
        .collect();
    // INBOX first, then by name.
    out.sort_by(|a, b| {
        (a.role != Some(FolderRole::Inbox), &a.name)
            .cmp(&(b.role != Some(FolderRole::Inbox), &b.name))
    });
    let _ = within("LOGOUT", &addr, t.command, async {
        session
            .logout()
            .await
            .map_err(|e| imap_error(&addr, "LOGOUT", e))
    })
    .await;
    Ok(out)
}

impl ImapSource {
    /// Connect, log in and select the folder.
    pub async fn connect(s: &ImapSettings) -> Result<Self, SourceError> {
        let (mut session, addr, deadline) = login(s).await?;
        let t = s.timeouts;
        let caps = session
            .capabilities()
            .await
            .map_err(|e| imap_error(&addr, "CAPABILITY", e))?;
        let can_move = caps.has_str("MOVE");
        let select = format!("SELECT {}", s.folder);
        let mailbox = within(&select, &addr, t.command, async {
            session
                .select(mutf7(&s.folder))
                .await
                .map_err(|e| refused(&addr, &select, e))
        })
        .await?;
        Ok(Self {
            session: Some(session),
            folder: s.folder.clone(),
            uid_validity: mailbox.uid_validity.unwrap_or(0),
            can_move,
            first_until: None,
            news: false,
            addr,
            timeouts: t,
            deadline,
            max_message_bytes: s.max_message_bytes,
        })
    }

    /// Empty the queue of unsolicited responses (async-imap keeps up to 100 and drops the
    /// rest), noting whether any says the folder changed (`EXISTS`, `RECENT`). A queue found
    /// full may have lost such a response: that counts as a change.
    fn absorb(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let full = session.unsolicited_responses.is_full();
        let mut news = full;
        while let Ok(r) = session.unsolicited_responses.try_recv() {
            news |= matches!(
                r,
                async_imap::types::UnsolicitedResponse::Exists(_)
                    | async_imap::types::UnsolicitedResponse::Recent(_)
            );
        }
        self.news |= news;
    }

    fn s(&mut self) -> Result<&mut Session<Stream>, SourceError> {
        self.session.as_mut().ok_or_else(|| {
            SourceError::Protocol("the connection was lost during IDLE; reconnect".into())
        })
    }

    /// IDLE until the server reports a change, `timeout` passes (re-issue before the server's
    /// ~30-minute limit), or `stop` completes. Returns whether the server reported new data.
    pub async fn wait_for_change(
        &mut self,
        timeout: std::time::Duration,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<bool, SourceError> {
        // New mail the server reported in answer to an earlier command (a drain's SEARCH,
        // FETCH or STORE) is not repeated when IDLE starts: look before idling.
        self.absorb();
        if std::mem::take(&mut self.news) {
            return Ok(true);
        }
        let session = self
            .session
            .take()
            .ok_or_else(|| SourceError::Protocol("no session".into()))?;
        let addr = self.addr.clone();
        let command = self.timeouts.command;
        let mut idle = session.idle();
        idle.init().await.map_err(|e| refused(&addr, "IDLE", e))?;
        // While idling, silence is expected up to our own deadline; a dead connection shows
        // at the latest when DONE gets no answer (TCP keep-alive usually finds it sooner).
        self.deadline.set(timeout + command);
        let changed = {
            let (wait, interrupt) = idle.wait_with_timeout(timeout);
            tokio::pin!(stop);
            // Our own deadline: async-imap restarts its timeout on every response, and servers
            // send keep-alives (`* OK Still here`) more often than the re-issue interval.
            let r = tokio::select! {
                r = wait => r,
                () = &mut stop => { drop(interrupt); Ok(async_imap::extensions::idle::IdleResponse::ManualInterrupt) }
                () = tokio::time::sleep(timeout) => { drop(interrupt); Ok(async_imap::extensions::idle::IdleResponse::Timeout) }
            };
            self.deadline.set(command);
            matches!(
                r.map_err(|e| imap_error(&addr, "IDLE", e))?,
                async_imap::extensions::idle::IdleResponse::NewData(_)
            )
        };
        let session = idle
            .done()
            .await
            .map_err(|e| imap_error(&addr, "DONE (end of IDLE)", e))?;
        self.session = Some(session);
        Ok(changed)
    }

    /// Create `folder` if it does not exist (an existing one is not an error).
    pub async fn ensure_folder(&mut self, folder: &str) -> Result<(), SourceError> {
        let addr = self.addr.clone();
        match self.s()?.create(mutf7(folder)).await {
            Ok(()) => Ok(()),
            Err(e)
                if stalled(&e).is_none()
                    && server_text(&e).to_ascii_lowercase().contains("exists") =>
            {
                Ok(())
            }
            Err(e) => Err(refused(&addr, &format!("CREATE {folder}"), e)),
        }
    }

    pub fn uid_validity(&self) -> u32 {
        self.uid_validity
    }

    /// UIDs after `after_uid` (all when the checkpoint's UIDVALIDITY differs: a re-scan the
    /// ledger de-duplicates), ascending, at most `limit`.
    pub async fn new_uids(
        &mut self,
        checkpoint: Option<(u32, u32)>,
        limit: usize,
    ) -> Result<Vec<u32>, SourceError> {
        let after = match checkpoint {
            Some((validity, uid)) if validity == self.uid_validity => uid,
            _ => 0,
        };
        let addr = self.addr.clone();
        let found = self
            .s()?
            .uid_search(format!("UID {}:*", after + 1))
            .await
            .map_err(|e| refused(&addr, "UID SEARCH", e))?;
        // `n:*` also matches the highest UID when it is below n: filter.
        let mut uids: Vec<u32> = found.into_iter().filter(|u| *u > after).collect();
        uids.sort_unstable();
        uids.truncate(limit);
        Ok(uids)
    }

    /// Fetch raw messages with BODY.PEEK[] (the \Seen flag is not touched), without a size
    /// check. See [`ImapSource::fetch_sized`].
    pub async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<(u32, Fetched)>, SourceError> {
        let items: Vec<(u32, Option<u64>)> = uids.iter().map(|u| (*u, None)).collect();
        self.fetch_sized(&items).await
    }

    /// Fetch messages given with their declared sizes: `BODY.PEEK[]` for those within
    /// `max_message_bytes` (or of unknown size), `BODY.PEEK[HEADER]` for the others, marked
    /// [`Oversized`]. A UID the server returned no body for is looked up: expunged since the
    /// listing → left out; still there → an error naming it (never silently dropped).
    /// Ascending by UID.
    pub async fn fetch_sized(
        &mut self,
        items: &[(u32, Option<u64>)],
    ) -> Result<Vec<(u32, Fetched)>, SourceError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let limit = self.max_message_bytes;
        let over = |size: Option<u64>| match (size, limit) {
            (Some(n), Some(l)) => n > l,
            _ => false,
        };
        let whole: Vec<u32> = items
            .iter()
            .filter(|(_, n)| !over(*n))
            .map(|(u, _)| *u)
            .collect();
        let heads: std::collections::HashMap<u32, u64> = items
            .iter()
            .filter_map(|(u, n)| n.filter(|_| over(*n)).map(|n| (*u, n)))
            .collect();
        let mut out = self.fetch_section(&whole, false).await?;
        if !heads.is_empty() {
            let keys: Vec<u32> = heads.keys().copied().collect();
            let limit = limit.unwrap_or(0);
            for (uid, f) in self.fetch_section(&keys, true).await? {
                let size = heads.get(&uid).copied().unwrap_or_default();
                out.insert(
                    uid,
                    Fetched {
                        oversized: Some(Oversized { size, limit }),
                        ..f
                    },
                );
            }
        }
        let missing: Vec<u32> = items
            .iter()
            .map(|(u, _)| *u)
            .filter(|u| !out.contains_key(u))
            .collect();
        if !missing.is_empty() {
            let set = uid_set(&missing);
            let still = self.search(&format!("UID {set}")).await?;
            let still: Vec<u32> = still.into_iter().filter(|u| missing.contains(u)).collect();
            if !still.is_empty() {
                return Err(SourceError::Protocol(format!(
                    "the server answered UID FETCH without the message for UID {} of {} \
                     (still in the folder); nothing of this batch is acknowledged, it is \
                     fetched again next round",
                    uid_set(&still),
                    self.folder
                )));
            }
            tracing::debug!(
                uids = %set,
                "messages expunged since they were listed; left out"
            );
        }
        Ok(out.into_iter().collect())
    }

    /// One `UID FETCH` of the whole message (`BODY.PEEK[]`) or its header section
    /// (`BODY.PEEK[HEADER]`): what came back, by UID (answers for UIDs not asked for, such as
    /// unsolicited flag updates, are ignored).
    async fn fetch_section(
        &mut self,
        uids: &[u32],
        header: bool,
    ) -> Result<std::collections::BTreeMap<u32, Fetched>, SourceError> {
        let mut out = std::collections::BTreeMap::new();
        if uids.is_empty() {
            return Ok(out);
        }
        let set = uid_set(uids);
        let validity = self.uid_validity;
        let addr = self.addr.clone();
        let query = if header {
            "(UID BODY.PEEK[HEADER])"
        } else {
            "(UID BODY.PEEK[])"
        };
        let asked: std::collections::HashSet<u32> = uids.iter().copied().collect();
        tracing::trace!(uids = %set, query, "UID FETCH");
        let mut stream = self
            .s()?
            .uid_fetch(&set, query)
            .await
            .map_err(|e| refused(&addr, "UID FETCH", e))?;
        while let Some(f) = stream
            .try_next()
            .await
            .map_err(|e| imap_error(&addr, "UID FETCH", e))?
        {
            let Some(uid) = f.uid.filter(|u| asked.contains(u)) else {
                continue;
            };
            let data = if header { f.header() } else { f.body() };
            if let Some(raw) = data
                && !out.contains_key(&uid)
            {
                out.insert(
                    uid,
                    Fetched {
                        identity: format!("imap:{validity}:{uid}"),
                        raw: raw.to_vec(),
                        oversized: None,
                    },
                );
            }
        }
        Ok(out)
    }

    /// `RFC822.SIZE` of each UID (one `UID FETCH`); UIDs expunged meanwhile are absent.
    pub async fn sizes(
        &mut self,
        uids: &[u32],
    ) -> Result<std::collections::HashMap<u32, u64>, SourceError> {
        let mut out = std::collections::HashMap::with_capacity(uids.len());
        if uids.is_empty() {
            return Ok(out);
        }
        let addr = self.addr.clone();
        let mut stream = self
            .s()?
            .uid_fetch(uid_set(uids), "(UID RFC822.SIZE)")
            .await
            .map_err(|e| refused(&addr, "UID FETCH (RFC822.SIZE)", e))?;
        while let Some(f) = stream
            .try_next()
            .await
            .map_err(|e| imap_error(&addr, "UID FETCH (RFC822.SIZE)", e))?
        {
            if let (Some(uid), Some(size)) = (f.uid, f.size) {
                out.insert(uid, u64::from(size));
            }
        }
        Ok(out)
    }

    /// Apply the post-action to committed messages.
    pub async fn acknowledge(
        &mut self,
        uids: &[u32],
        action: &PostAction,
    ) -> Result<(), SourceError> {
        if uids.is_empty() {
            return Ok(());
        }
        let set = uid_set(uids);
        let addr = self.addr.clone();
        let refused = |command: &str, e| refused(&addr, command, e);
        match action {
            PostAction::MarkRead => {
                let s = self
                    .s()?
                    .uid_store(&set, "+FLAGS.SILENT (\\Seen)")
                    .await
                    .map_err(|e| refused("UID STORE", e))?;
                let _: Vec<_> = s.try_collect().await.map_err(|e| refused("UID STORE", e))?;
            }
            PostAction::Move(folder) if self.can_move => {
                self.s()?
                    .uid_mv(&set, mutf7(folder))
                    .await
                    .map_err(|e| refused("UID MOVE", e))?;
            }
            PostAction::Move(folder) => {
                self.s()?
                    .uid_copy(&set, mutf7(folder))
                    .await
                    .map_err(|e| refused("UID COPY", e))?;
                self.delete(&set).await?;
            }
            PostAction::Delete => self.delete(&set).await?,
        }
        Ok(())
    }

    async fn delete(&mut self, set: &str) -> Result<(), SourceError> {
        let addr = self.addr.clone();
        let refused = |command: &str, e| refused(&addr, command, e);
        let s = self
            .s()?
            .uid_store(set, "+FLAGS.SILENT (\\Deleted)")
            .await
            .map_err(|e| refused("UID STORE", e))?;
        let _: Vec<_> = s.try_collect().await.map_err(|e| refused("UID STORE", e))?;
        let s = self
            .s()?
            .uid_expunge(set)
            .await
            .map_err(|e| refused("UID EXPUNGE", e))?;
        let _: Vec<_> = s
            .try_collect()
            .await
            .map_err(|e| refused("UID EXPUNGE", e))?;
        Ok(())
    }

    /// (messages, unseen) of the selected folder by `STATUS` — counts only, nothing listed or
    /// fetched, however full the folder is (RC15's connection check).
    pub async fn counts(&mut self) -> Result<(u64, Option<u64>), SourceError> {
        let folder = mutf7(&self.folder);
        let (addr, command) = (self.addr.clone(), format!("STATUS {}", self.folder));
        let m = self
            .s()?
            .status(&folder, "(MESSAGES UNSEEN)")
            .await
            .map_err(|e| refused(&addr, &command, e))?;
        Ok((u64::from(m.exists), m.unseen.map(u64::from)))
    }

    /// UIDs without \Seen, ascending (the `unread` first-sync policy).
    pub async fn unseen_uids(&mut self) -> Result<Vec<u32>, SourceError> {
        self.search("UNSEEN").await
    }

    /// UIDs currently flagged \Seen (for checks and the connection test).
    pub async fn seen_uids(&mut self) -> Result<Vec<u32>, SourceError> {
        self.search("SEEN").await
    }

    async fn search(&mut self, query: &str) -> Result<Vec<u32>, SourceError> {
        let addr = self.addr.clone();
        let mut v: Vec<u32> = self
            .s()?
            .uid_search(query)
            .await
            .map_err(|e| refused(&addr, &format!("UID SEARCH {query}"), e))?
            .into_iter()
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    /// Look for a message by its Message-ID (without angle brackets) in the folder marked
    /// `\Sent` (RFC 6154 SPECIAL-USE, as `LIST` reports it): `EXAMINE` it (read-only) and
    /// `UID SEARCH HEADER Message-ID "<id>"`. `Ok(None)`: the server marks no folder `\Sent`.
    /// Selects the Sent folder: use a connection opened for this (see `crate::send::sent`).
    pub async fn find_in_sent(&mut self, message_id: &str) -> Result<Option<bool>, SourceError> {
        let addr = self.addr.clone();
        let t = self.timeouts.command;
        let sent = within("LIST", &addr, t, async {
            let names: Vec<async_imap::types::Name> = self
                .s()?
                .list(Some(""), Some("*"))
                .await
                .map_err(|e| imap_error(&addr, "LIST", e))?
                .try_collect()
                .await
                .map_err(|e| imap_error(&addr, "LIST", e))?;
            Ok::<_, SourceError>(
                names
                    .iter()
                    .find(|n| {
                        n.attributes()
                            .iter()
                            .any(|a| matches!(a, async_imap::types::NameAttribute::Sent))
                    })
                    .map(|n| n.name().to_string()),
            )
        })
        .await?;
        let Some(folder) = sent else {
            return Ok(None);
        };
        let examine = format!("EXAMINE {folder}");
        within(&examine, &addr, t, async {
            self.s()?
                .examine(&folder)
                .await
                .map_err(|e| refused(&addr, &examine, e))
        })
        .await?;
        // The id is Intake's own (letters, digits, `.-_@`); anything else is refused rather
        // than quoted.
        if message_id
            .bytes()
            .any(|b| matches!(b, b'"' | b'\\' | b'\r' | b'\n'))
        {
            return Err(SourceError::Protocol(format!(
                "cannot search for the Message-ID {message_id:?}"
            )));
        }
        let found = self
            .search(&format!("HEADER Message-ID \"<{message_id}>\""))
            .await?;
        Ok(Some(!found.is_empty()))
    }

    pub async fn logout(mut self) -> Result<(), SourceError> {
        let addr = self.addr.clone();
        let t = self.timeouts.command;
        within("LOGOUT", &addr, t, async {
            self.s()?
                .logout()
                .await
                .map_err(|e| imap_error(&addr, "LOGOUT", e))
        })
        .await
    }
}

/// An IMAP checkpoint: `UIDVALIDITY:UID` (everything up to UID is done), plus `/first:MAX`
/// while a first sync under a filtering policy (`unread`, `since:`) is under way — the filter
/// applies to UIDs up to MAX, so a crash in the middle of a first sync resumes with the same
/// filter instead of taking messages the policy left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub validity: u32,
    pub uid: u32,
    pub first_until: Option<u32>,
}

impl Checkpoint {
    pub fn parse(s: &str) -> Option<Self> {
        let (main, first) = match s.split_once("/first:") {
            Some((m, f)) => (m, Some(f.parse().ok()?)),
            None => (s, None),
        };
        let (v, u) = main.split_once(':')?;
        Some(Self {
            validity: v.parse().ok()?,
            uid: u.parse().ok()?,
            first_until: first,
        })
    }
}

impl std::fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.validity, self.uid)?;
        match self.first_until {
            Some(max) if max > self.uid => write!(f, "/first:{max}"),
            _ => Ok(()),
        }
    }
}

/// How many UIDs one listing hands out at most (RC15: a flooded folder is taken in rounds).
pub const MAX_LISTED: usize = 10_000;

impl ImapSource {
    /// `UID SEARCH` for the first-sync filter of `start` (`None`: no filter).
    fn filter_query(start: Start) -> Option<String> {
        match start {
            Start::Unread => Some("UNSEEN".into()),
            Start::Since(d) => Some(format!("SINCE {}", d.imap())),
            Start::All | Start::Now => None,
        }
    }

    async fn list_impl(
        &mut self,
        checkpoint: Option<&str>,
        start: Start,
        limit: usize,
    ) -> Result<Listing, SourceError> {
        let validity = self.uid_validity;
        // This listing covers every change reported so far.
        self.absorb();
        self.news = false;
        // A checkpoint of another UIDVALIDITY is void: the folder was rebuilt and every UID
        // may mean another message. Re-scan as a first sync; the ledger (Message-ID + content
        // hash) turns messages seen before into duplicates.
        let cp = checkpoint
            .and_then(Checkpoint::parse)
            .filter(|c| c.validity == validity);
        let after = cp.map_or(0, |c| c.uid);
        let mut uids = self.new_uids(Some((validity, after)), usize::MAX).await?;
        let first_until = match cp {
            Some(c) => c.first_until,
            // A first sync: `uids` is the whole folder now.
            None => {
                let max = uids.last().copied().unwrap_or(0);
                match start {
                    Start::Now => {
                        return Ok(Listing {
                            items: Vec::new(),
                            checkpoint: Some(format!("{validity}:{max}")),
                            more: false,
                        });
                    }
                    Start::All => None,
                    Start::Unread | Start::Since(_) => Some(max),
                }
            }
        };
        if let (Some(max), Some(q)) = (first_until, Self::filter_query(start))
            && max > after
        {
            let wanted = self.search(&q).await?;
            uids.retain(|u| *u > max || wanted.binary_search(u).is_ok());
        }
        let more = uids.len() > limit;
        uids.truncate(limit.max(1));
        self.first_until = first_until;
        let last = uids.last().copied().unwrap_or(after);
        // Declared sizes before any download: one command for the whole listing.
        let sizes = self.sizes(&uids).await?;
        let checkpoint = match first_until {
            // The filtered part is done only when the listing reached past it.
            Some(max) if !more => Some(Checkpoint {
                validity,
                uid: last.max(max),
                first_until: None,
            }),
            _ if uids.is_empty() => None,
            _ => Some(Checkpoint {
                validity,
                uid: last,
                first_until,
            }),
        };
        Ok(Listing {
            items: uids
                .into_iter()
                .map(|u| Listed {
                    key: u.to_string(),
                    identity: format!("imap:{validity}:{u}"),
                    size: sizes.get(&u).copied(),
                })
                .collect(),
            checkpoint: checkpoint.map(|c| c.to_string()),
            more,
        })
    }
}

fn keys(items: &[Listed]) -> Vec<u32> {
    items.iter().filter_map(|i| i.key.parse().ok()).collect()
}

impl MailSource for ImapSource {
    async fn list(
        &mut self,
        checkpoint: Option<&str>,
        start: Start,
        limit: usize,
    ) -> Result<Listing, SourceError> {
        let listing = self
            .list_impl(checkpoint, start, limit.min(MAX_LISTED))
            .await?;
        self.absorb();
        Ok(listing)
    }

    async fn fetch(&mut self, items: &[Listed]) -> Result<Vec<Fetched>, SourceError> {
        let sized: Vec<(u32, Option<u64>)> = items
            .iter()
            .filter_map(|i| Some((i.key.parse().ok()?, i.size)))
            .collect();
        let fetched = self.fetch_sized(&sized).await?;
        self.absorb();
        Ok(fetched.into_iter().map(|(_, f)| f).collect())
    }

    async fn acknowledge(
        &mut self,
        items: &[Listed],
        action: &PostAction,
    ) -> Result<(), SourceError> {
        ImapSource::acknowledge(self, &keys(items), action).await?;
        self.absorb();
        Ok(())
    }

    fn checkpoint_after(&self, item: &Listed) -> Option<String> {
        Some(
            Checkpoint {
                validity: self.uid_validity,
                uid: item.key.parse().ok()?,
                first_until: self.first_until,
            }
            .to_string(),
        )
    }

    async fn wait_for_change(
        &mut self,
        timeout: std::time::Duration,
        stop: impl std::future::Future<Output = ()> + Send,
    ) -> Result<bool, SourceError> {
        ImapSource::wait_for_change(self, timeout, stop).await
    }

    async fn close(self) {
        let _ = self.logout().await;
    }
}

/// A folder name as IMAP wants it on the wire: modified UTF-7 (RFC 3501 §5.1.3), so
/// `Gelöschte Elemente` becomes `Gel&APY-schte Elemente`. ASCII names pass unchanged.
pub fn mutf7(name: &str) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        for chunk in bytes.chunks(3) {
            let n = (u32::from(chunk[0]) << 16)
                | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
                | u32::from(*chunk.get(2).unwrap_or(&0));
            for k in 0..=chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * k)) & 63) as usize]));
            }
        }
        out.push('-');
        pending.clear();
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            out.push(c);
            if c == '&' {
                out.push('-');
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// `1,3:5,9` from sorted UIDs.
pub fn uid_set(uids: &[u32]) -> String {
    let mut v = uids.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    #[test]
    fn folder_names_are_modified_utf7() {
        assert_eq!(super::mutf7("INBOX"), "INBOX");
        assert_eq!(super::mutf7("Gelöschte Elemente"), "Gel&APY-schte Elemente");
        assert_eq!(super::mutf7("A&B"), "A&-B");
        assert_eq!(super::mutf7("受信トレイ"), "&U9dP4TDIMOwwpA-");
    }

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(super::uid_set(&[5, 1, 2, 3, 9, 10, 12]), "1:3,5,9:10,12");
        assert_eq!(super::uid_set(&[7]), "7");
    }

    #[test]
    fn checkpoints_round_trip_with_and_without_the_first_sync_part() {
        use super::Checkpoint;
        let plain = Checkpoint {
            validity: 1_700_000_000,
            uid: 42,
            first_until: None,
        };
        assert_eq!(plain.to_string(), "1700000000:42");
        assert_eq!(Checkpoint::parse("1700000000:42"), Some(plain));
        let first = Checkpoint {
            validity: 7,
            uid: 3,
            first_until: Some(10),
        };
        assert_eq!(first.to_string(), "7:3/first:10");
        assert_eq!(Checkpoint::parse("7:3/first:10"), Some(first));
        for cp in [plain, first] {
            assert_eq!(Checkpoint::parse(&cp.to_string()), Some(cp));
        }
        // Past its filtered part, a first sync is over: the `/first:` part is dropped.
        for uid in [10, 11] {
            let done = Checkpoint {
                validity: 7,
                uid,
                first_until: Some(10),
            };
            assert_eq!(done.to_string(), format!("7:{uid}"));
            assert_eq!(
                Checkpoint::parse(&done.to_string()).map(|c| c.first_until),
                Some(None)
            );
        }
        // A first sync on an empty folder starts at UID 0.
        assert_eq!(
            Checkpoint::parse("9:0/first:0"),
            Some(Checkpoint {
                validity: 9,
                uid: 0,
                first_until: Some(0)
            })
        );
    }

    #[test]
    fn malformed_checkpoints_are_not_parsed() {
        use super::Checkpoint;
        for bad in [
            "",
            "7",
            "7:",
            ":3",
            "x:3",
            "7:x",
            "7:-1",
            "7:3/first:",
            "7:3/first:x",
            "7:3/first:10/first:11",
            "4294967296:1",
            // Another source's checkpoint (POP3) is not an IMAP one.
            "pop3-skip:abc",
        ] {
            assert_eq!(Checkpoint::parse(bad), None, "{bad:?}");
        }
    }
}
