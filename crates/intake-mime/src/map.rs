//! Assembling a [`Prepared`] from raw bytes: quarantine checks, sender, addresses, bodies,
//! attachments and limits, under one channel's [`ChannelRules`].
//!
//! Damaged MIME is recovered where the content is still there (see [`crate::repair`]): a part
//! whose boundary was never found is decoded by its declared transfer encoding instead of being
//! kept still in base64, a multipart whose boundary never occurs is read as the body text, and
//! RFC 2231 continued filenames are decoded as a whole.

use std::panic::{AssertUnwindSafe, catch_unwind};

use intake_core::{
    AttachmentDraft, ChannelRules, Envelope, IgnoreReason, MailDraft, Prepared, PreparedKind,
    QuarantineReason, ReplyToPolicy,
};
use mail_parser::{Address, Message, MessageParser, MimeHeaders, PartType};
use regex::Regex;
use sha2::{Digest, Sha256};

use crate::{body, loops, repair, thread};

/// A channel's rules compiled for reading (regexes built once, addresses lower-cased).
#[derive(Debug, Clone)]
pub struct Reader {
    rules: ChannelRules,
    own: Vec<String>,
    sent_keys: SentKeys,
    markers: Vec<Regex>,
    allowed: Vec<String>,
}

/// The keys of the own-mail header; `Debug` shows only how many there are.
#[derive(Clone, Default)]
struct SentKeys(Vec<Vec<u8>>);

impl std::fmt::Debug for SentKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SentKeys({} keys)", self.0.len())
    }
}

/// A rule that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("split marker {marker:?} is not a valid regular expression: {source}")]
pub struct RulesError {
    pub marker: String,
    #[source]
    pub source: regex::Error,
}

/// Lower-case hex SHA-256 of the raw message: the content half of a message's identity.
pub fn content_hash(raw: &[u8]) -> String {
    let digest = Sha256::digest(raw);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    s
}

fn lower(v: &[String]) -> Vec<String> {
    v.iter()
        .map(|a| a.trim().to_lowercase())
        .filter(|a| !a.is_empty())
        .collect()
}

fn addr_of(a: &mail_parser::Addr<'_>) -> Option<String> {
    let s = a
        .address()?
        .trim()
        .trim_matches(|c| c == '<' || c == '>')
        .to_lowercase();
    let (local, domain) = s.split_once('@')?;
    (!local.is_empty() && domain.contains('.') || domain == "localhost").then_some(s)
}

fn addresses<'a>(a: Option<&'a Address<'a>>) -> impl Iterator<Item = String> + 'a {
    a.into_iter().flat_map(|a| a.iter()).filter_map(addr_of)
}

fn clip(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn safe_filename(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | ':' | '\0') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_string();
    clip(&cleaned, 200)
}

fn extension_for(ctype: &str) -> &'static str {
    match ctype {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "application/pdf" => "pdf",
        "text/plain" => "txt",
        "text/html" => "html",
        "text/calendar" => "ics",
        "message/rfc822" => "eml",
        _ => "bin",
    }
}

impl Reader {
    pub fn new(rules: &ChannelRules) -> Result<Self, RulesError> {
        let markers = rules
            .split_markers
            .iter()
            .map(|m| {
                Regex::new(m).map_err(|source| RulesError {
                    marker: m.clone(),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            own: lower(&rules.addresses),
            sent_keys: SentKeys::default(),
            allowed: lower(&rules.allowed_domains),
            markers,
            rules: rules.clone(),
        })
    }

    /// Recognise Intake's own mail by its [`loops::OWN_HEADER`] under these keys (the store's
    /// `Keyring::sent_mail_keys`). Without keys the header is never trusted.
    pub fn with_sent_keys(mut self, keys: Vec<Vec<u8>>) -> Self {
        self.sent_keys = SentKeys(keys);
        self
    }

    pub fn rules(&self) -> &ChannelRules {
        &self.rules
    }

    /// Read one message. Never panics; never drops: every input yields a [`Prepared`].
    pub fn prepare(&self, raw: &[u8]) -> Prepared {
        self.prepare_hashed(raw, content_hash(raw))
    }

    /// [`Reader::prepare`] for a caller that already computed [`content_hash`] of `raw`.
    pub fn prepare_hashed(&self, raw: &[u8], hash: String) -> Prepared {
        match catch_unwind(AssertUnwindSafe(|| {
            crate::sanitize::prepared(self.prepare_inner(raw, hash.clone()))
        })) {
            Ok(p) => p,
            Err(_) => Prepared {
                envelope: Envelope {
                    content_hash: hash,
                    size: raw.len() as u64,
                    ..Envelope::default()
                },
                kind: PreparedKind::Quarantined(QuarantineReason::Unreadable(
                    "the MIME parser failed on this message".into(),
                )),
            },
        }
    }

    /// A message left on the server because its declared `size` is over `limit` (the source
    /// fetched only its header section, `headers`): quarantined as
    /// [`QuarantineReason::TooLarge`], with the Message-ID, sender and date read from the
    /// headers where possible. The content hash is that of `headers` (what is stored as the
    /// raw message); the envelope's size is the declared one. Never panics.
    pub fn prepare_oversized(&self, headers: &[u8], size: u64, limit: u64) -> Prepared {
        let mut envelope = Envelope {
            content_hash: content_hash(headers),
            size,
            ..Envelope::default()
        };
        let read = catch_unwind(AssertUnwindSafe(|| {
            MessageParser::default().parse(headers).map(|m| {
                (
                    m.message_id().and_then(thread::normalize_id),
                    m.date()
                        .filter(|d| d.is_valid())
                        .map(|d| d.to_timestamp())
                        .filter(|t| (315_532_800..4_102_444_800).contains(t)),
                    addresses(m.from()).next(),
                )
            })
        }));
        if let Ok(Some((message_id, sent_at, sender))) = read {
            envelope.message_id = message_id;
            envelope.sent_at = sent_at;
            envelope.sender = sender;
        }
        crate::sanitize::prepared(Prepared {
            envelope,
            kind: PreparedKind::Quarantined(QuarantineReason::TooLarge { size, limit }),
        })
    }

    pub(crate) fn prepare_inner(&self, raw: &[u8], hash: String) -> Prepared {
        let mut envelope = Envelope {
            content_hash: hash,
            size: raw.len() as u64,
            ..Envelope::default()
        };
        let quarantine = |envelope, r| Prepared {
            envelope,
            kind: PreparedKind::Quarantined(r),
        };
        if raw.iter().all(|b| b.is_ascii_whitespace()) {
            return quarantine(envelope, QuarantineReason::Empty);
        }
        if envelope.size > self.rules.max_message_bytes {
            let (size, limit) = (envelope.size, self.rules.max_message_bytes);
            return quarantine(envelope, QuarantineReason::TooLarge { size, limit });
        }
        if let Some(why) = not_mail(raw) {
            return quarantine(envelope, QuarantineReason::NotMail(why));
        }
        let Some(m) = MessageParser::default().parse(raw) else {
            return quarantine(
                envelope,
                QuarantineReason::Unreadable("no MIME structure".into()),
            );
        };
        envelope.message_id = m.message_id().and_then(thread::normalize_id);
        envelope.sent_at = m
            .date()
            .filter(|d| d.is_valid())
            .map(|d| d.to_timestamp())
            .filter(|t| (315_532_800..4_102_444_800).contains(t));
        let Some(from) = addresses(m.from()).next() else {
            return quarantine(envelope, QuarantineReason::NoSender);
        };
        let reporter = match self.rules.reply_to {
            ReplyToPolicy::Prefer => addresses(m.reply_to()).next().unwrap_or(from.clone()),
            ReplyToPolicy::Ignore => from.clone(),
        };
        envelope.sender = Some(reporter.clone());
        let ignore = |envelope, r| Prepared {
            envelope,
            kind: PreparedKind::Ignored(r),
        };
        if let Some(r) = loops::classify(
            &m,
            &from,
            &self.own,
            &self.sent_keys.0,
            self.rules.accept_list_mail,
        ) {
            return ignore(envelope, r);
        }
        if !self.allowed.is_empty() {
            let domain = reporter.rsplit('@').next().unwrap_or_default();
            if !self
                .allowed
                .iter()
                .any(|d| domain == d || domain.ends_with(&format!(".{d}")))
            {
                return ignore(envelope, IgnoreReason::SenderNotAllowed(reporter));
            }
        }
        let draft = self.draft(&m, raw, reporter, &from);
        Prepared {
            envelope,
            kind: PreparedKind::Mail(Box::new(draft)),
        }
    }

    fn draft(&self, m: &Message<'_>, raw: &[u8], reporter: String, from: &str) -> MailDraft {
        let subject = m
            .subject()
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>();
        let summary = match subject.join(" ") {
            s if s.is_empty() => "(no subject)".to_string(),
            s => clip(&s, 250),
        };
        let reporter_name = m
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.name())
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty());
        let mut participants: Vec<String> = Vec::new();
        for a in addresses(m.to()).chain(addresses(m.cc())) {
            if a != reporter && a != from && !self.own.contains(&a) && !participants.contains(&a) {
                participants.push(a);
            }
        }
        if from != reporter && !participants.iter().any(|p| p == from) {
            participants.push(from.to_string());
        }
        let mut notes = Vec::new();
        let mut used = Vec::new();
        let description = text_body(m, &mut notes, &mut used);
        let reply_text = if self.rules.strip_quotes {
            body::strip_reply(&description, &self.markers)
        } else {
            description.clone()
        };
        let attachments = self.attachments(m, raw, &used, &mut notes);
        let subject_keys = thread::subject_keys(&summary);
        let references = thread::references(m);
        let with_notes = |t: String| {
            if notes.is_empty() {
                t
            } else {
                let n: Vec<String> = notes.iter().map(|n| format!("[Intake: {n}]")).collect();
                format!("{t}\n\n{}", n.join("\n")).trim_start().to_string()
            }
        };
        MailDraft {
            description: with_notes(description),
            reply_text: with_notes(reply_text),
            summary,
            reporter,
            reporter_name,
            participants,
            subject_keys,
            references,
            attachments,
            notes,
            html: crate::original::kept(m),
        }
    }

    fn attachments(
        &self,
        m: &Message<'_>,
        raw: &[u8],
        used_as_body: &[usize],
        notes: &mut Vec<String>,
    ) -> Vec<AttachmentDraft> {
        let mut out = Vec::new();
        for (i, id) in m.attachments.iter().map(|id| *id as usize).enumerate() {
            let Some(part) = m.parts.get(id) else {
                continue;
            };
            if used_as_body.contains(&id) {
                continue;
            }
            let ctype = part
                .content_type()
                .map(|c| match c.subtype() {
                    Some(s) => format!("{}/{}", c.ctype(), s).to_ascii_lowercase(),
                    None => c.ctype().to_ascii_lowercase(),
                })
                .unwrap_or_else(|| "application/octet-stream".into());
            let data: Vec<u8> = match &part.body {
                PartType::Message(inner) => {
                    let (s, e) = (part.offset_body as usize, part.offset_end as usize);
                    raw.get(s..e)
                        .map(<[u8]>::to_vec)
                        .unwrap_or_else(|| inner.raw_message.to_vec())
                }
                PartType::Multipart(_) => continue,
                _ => part.contents().to_vec(),
            };
            // A part whose boundary was never found comes still transfer-encoded.
            let mut encoding_problem = part.is_encoding_problem;
            let data = match encoding_problem
                .then(|| repair::decode_transfer(part, &data))
                .flatten()
            {
                Some((decoded, clean)) => {
                    encoding_problem = !clean;
                    decoded
                }
                None => data,
            };
            let name = repair::continued_filename(part, raw)
                .or_else(|| part.attachment_name().map(str::to_string))
                .map(|n| safe_filename(&n))
                .filter(|n| !n.is_empty());
            let name = name.unwrap_or_else(|| match &part.body {
                PartType::Message(inner) => {
                    let s = inner.subject().map(safe_filename).unwrap_or_default();
                    if s.is_empty() {
                        format!("message-{}.eml", i + 1)
                    } else {
                        format!("{s}.eml")
                    }
                }
                _ => format!("attachment-{}.{}", i + 1, extension_for(&ctype)),
            });
            if data.len() as u64 > self.rules.max_attachment_bytes {
                notes.push(format!(
                    "attachment {name:?} ({} bytes) is over the {}-byte limit and was not stored",
                    data.len(),
                    self.rules.max_attachment_bytes
                ));
                continue;
            }
            let content_id = part.content_id().and_then(thread::normalize_id);
            let inline = matches!(part.body, PartType::InlineBinary(_))
                || part.content_disposition().is_some_and(|d| d.is_inline());
            if encoding_problem {
                notes.push(format!("attachment {name:?} had an encoding problem"));
            }
            let hash = content_hash(&data);
            out.push(AttachmentDraft {
                filename: name,
                content_type: ctype,
                content_id,
                inline,
                hash,
                data,
            });
        }
        out
    }
}

/// The text of a text part. A part flagged as an encoding problem came undecoded (its boundary
/// was not found): it is decoded leniently by its declared transfer encoding and charset.
fn part_text(part: &mail_parser::MessagePart<'_>, text: &str) -> (String, bool) {
    if !part.is_encoding_problem {
        return (text.to_string(), false);
    }
    match repair::decode_transfer(part, text.as_bytes()) {
        Some((bytes, clean)) => {
            let decoder = part
                .content_type()
                .and_then(|c| c.attribute("charset"))
                .and_then(|c| mail_parser::decoders::charsets::map::charset_decoder(c.as_bytes()));
            let s = match decoder {
                Some(d) => d(&bytes),
                None => String::from_utf8_lossy(&bytes).into_owned(),
            };
            (s, !clean)
        }
        None => (text.to_string(), true),
    }
}

/// The body as text: every text body part in order, HTML converted. When there is none, the HTML
/// body; failing that, text that damaged MIME hid among the attachments (a multipart whose
/// boundary never occurs, a text part whose boundary never came). Parts read here that
/// mail-parser lists as attachments are recorded in `used`.
fn text_body(m: &Message<'_>, notes: &mut Vec<String>, used: &mut Vec<usize>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut any_problem = false;
    for id in &m.text_body {
        let Some(part) = m.parts.get(*id as usize) else {
            continue;
        };
        match &part.body {
            PartType::Text(t) => {
                let (t, problem) = part_text(part, t);
                any_problem |= problem;
                parts.push(body::tidy(&t));
            }
            PartType::Html(h) => {
                let (h, problem) = part_text(part, h);
                any_problem |= problem;
                parts.push(body::html_to_text(&h));
            }
            _ => {}
        }
    }
    if parts.iter().all(|p| p.trim().is_empty()) {
        parts.clear();
        for id in &m.html_body {
            let Some(part) = m.parts.get(*id as usize) else {
                continue;
            };
            if let PartType::Html(h) = &part.body {
                let (h, problem) = part_text(part, h);
                any_problem |= problem;
                parts.push(body::html_to_text(&h));
            }
        }
    }
    if parts.iter().all(|p| p.trim().is_empty()) {
        // No body found: text parts that mail-parser demoted because the MIME was damaged.
        parts.clear();
        let mut unsplit = false;
        for id in m.attachments.iter().map(|id| *id as usize) {
            let Some(part) = m.parts.get(id) else {
                continue;
            };
            let (PartType::Text(t) | PartType::Html(t)) = &part.body else {
                continue;
            };
            if repair::is_unsplit_multipart(part) {
                unsplit = true;
                parts.push(body::tidy(t));
            } else if repair::is_damaged_body_text(part) {
                let (t, problem) = part_text(part, t);
                any_problem |= problem;
                parts.push(if repair::is_declared_html(part) {
                    body::html_to_text(&t)
                } else {
                    body::tidy(&t)
                });
            } else {
                continue;
            }
            used.push(id);
        }
        if unsplit {
            notes.push(
                "the message declares MIME parts that are not there; its body is shown as sent"
                    .into(),
            );
        }
    }
    if any_problem {
        notes.push("the body had an encoding problem and is shown on a best-effort reading".into());
    }
    parts.retain(|p| !p.trim().is_empty());
    parts.join("\n\n")
}

/// Quick structural checks before MIME parsing: binary junk and header-less text are not mail.
fn not_mail(raw: &[u8]) -> Option<String> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(raw.len().min(64 * 1024));
    let head = &raw[..head_end.min(raw.len())];
    if head.contains(&0) {
        return Some("binary data in the header section".into());
    }
    let controls = head
        .iter()
        .filter(|b| b.is_ascii_control() && !matches!(b, b'\r' | b'\n' | b'\t'))
        .count();
    if controls * 20 > head.len().max(1) {
        return Some("binary data in the header section".into());
    }
    let first = head
        .split(|b| *b == b'\n')
        .find(|l| !l.iter().all(u8::is_ascii_whitespace));
    let looks_like_header = first.is_some_and(|l| {
        let l = l
            .strip_prefix(b"From ")
            .map(|_| b"X: y".as_slice())
            .unwrap_or(l);
        match l.iter().position(|b| *b == b':') {
            Some(p) if p > 0 => l[..p].iter().all(|b| b.is_ascii_graphic() && *b != b':'),
            _ => false,
        }
    });
    (!looks_like_header).then(|| "the first line is not a header field".into())
}
