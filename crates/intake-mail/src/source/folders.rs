//! Folder listings, so that a channel's `folder` (and a `move:` target) is chosen from what the
//! server has instead of guessed (RC5: display names are localized, protocol names are not).
//!
//! - IMAP: `LIST "" "*"` after login (nothing selected, so a channel whose folder is missing
//!   can still list); each name decoded from modified UTF-7, its role from the SPECIAL-USE
//!   attributes (RFC 6154: `\Sent \Drafts \Trash \Junk \Archive \All \Flagged`) and `INBOX`
//!   (case-insensitive, never localized). [`crate::source::imap::list_folders`].
//! - Graph: `mailFolders` and their `childFolders` (display names, which may be localized, and
//!   IDs), each well-known folder found by asking Graph for its well-known name
//!   (`mailFolders/inbox`, `sentitems`, …): v1.0 has no `wellKnownName` property on the folder.
//!   [`crate::source::graph::GraphSource::folders`].
//! - POP3 has one maildrop, the inbox: nothing to list.

use serde::Serialize;

/// What a folder is for, as the server says it (not guessed from its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FolderRole {
    Inbox,
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
    /// IMAP `\All` (Gmail's "All Mail").
    All,
    /// IMAP `\Flagged` (a virtual folder of flagged mail).
    Flagged,
}

impl FolderRole {
    pub fn as_str(self) -> &'static str {
        match self {
            FolderRole::Inbox => "inbox",
            FolderRole::Sent => "sent",
            FolderRole::Drafts => "drafts",
            FolderRole::Trash => "trash",
            FolderRole::Junk => "junk",
            FolderRole::Archive => "archive",
            FolderRole::All => "all",
            FolderRole::Flagged => "flagged",
        }
    }
}

/// Graph's well-known names of the folders with a role, in the order they are looked up.
pub const GRAPH_WELL_KNOWN_ROLES: &[(&str, FolderRole)] = &[
    ("inbox", FolderRole::Inbox),
    ("sentitems", FolderRole::Sent),
    ("drafts", FolderRole::Drafts),
    ("deleteditems", FolderRole::Trash),
    ("junkemail", FolderRole::Junk),
    ("archive", FolderRole::Archive),
];

/// One folder of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Folder {
    /// What to write as the channel's `folder` (or `after = "move:…"`): the IMAP name (full
    /// path, UTF-8; Intake encodes it for the wire), or the Graph folder ID.
    pub id: String,
    /// How people see it: the IMAP name, or the Graph display path (`Posteingang/Support`),
    /// possibly localized.
    pub name: String,
    /// The role the server gives it, if any.
    pub role: Option<FolderRole>,
    /// Graph's language-independent well-known name (`inbox`, `sentitems`, …), usable as
    /// `folder` instead of the ID. `None` on IMAP.
    pub well_known: Option<String>,
    /// Whether it holds messages (IMAP `\Noselect` / `\NonExistent` do not).
    pub selectable: bool,
    /// Messages and unread messages, where the listing says (Graph); IMAP does not count here.
    pub messages: Option<u64>,
    pub unread: Option<u64>,
}

/// Decode an IMAP mailbox name from modified UTF-7 (RFC 3501 §5.1.3): `Gel&APY-schte
/// Elemente` → `Gelöschte Elemente`. A name that is not valid modified UTF-7 is returned as
/// received.
pub fn mutf7_decode(name: &str) -> String {
    fn b64(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b',' => 63,
            _ => return None,
        } as u32)
    }
    let decode = || -> Option<String> {
        let mut out = String::with_capacity(name.len());
        let bytes = name.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'&' {
                out.push(char::from(bytes[i]));
                i += 1;
                continue;
            }
            let end = i + 1 + name[i + 1..].find('-')?;
            if end == i + 1 {
                out.push('&');
                i = end + 1;
                continue;
            }
            let (mut acc, mut bits, mut units) = (0u32, 0u32, Vec::new());
            for &c in &bytes[i + 1..end] {
                acc = (acc << 6) | b64(c)?;
                bits += 6;
                if bits >= 16 {
                    bits -= 16;
                    units.push(((acc >> bits) & 0xFFFF) as u16);
                }
            }
            out.push_str(&String::from_utf16(&units).ok()?);
            i = end + 1;
        }
        Some(out)
    };
    if !name.is_ascii() {
        return name.to_string();
    }
    decode().unwrap_or_else(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_utf7_names_decode_and_round_trip() {
        for name in [
            "INBOX",
            "Gelöschte Elemente",
            "Entwürfe",
            "A&B",
            "受信トレイ",
            "Posteingang/Ä",
        ] {
            let wire = crate::source::imap::mutf7(name);
            assert_eq!(mutf7_decode(&wire), name, "{wire}");
        }
        assert_eq!(mutf7_decode("Gel&APY-schte Elemente"), "Gelöschte Elemente");
        // Not modified UTF-7: kept as received.
        assert_eq!(mutf7_decode("bad&-x&AP"), "bad&-x&AP");
        assert_eq!(mutf7_decode("bad&!!-"), "bad&!!-");
    }

    #[test]
    fn roles_serialize_lowercase() {
        assert_eq!(
            serde_json::to_string(&FolderRole::Trash).unwrap(),
            "\"trash\""
        );
        assert_eq!(FolderRole::Junk.as_str(), "junk");
    }
}
