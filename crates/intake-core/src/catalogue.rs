//! The catalogue: every error text administrators meet in OAuth mail setups — in Intake, in the
//! answers of Microsoft, Google and mail servers, and in the reference systems' troubleshooting
//! articles (Jira / Jira Service Management mail handlers) — mapped to its root causes, most
//! likely first, each with what tells it apart from the next. docs/troubleshooting.md is the
//! same list for people.
//!
//! [`lookup`] finds the entries whose key occurs in a message (case and spacing ignored). The
//! live decoders (`aadsts::classify`, intake-mail's `diagnose_login` and Graph `diagnose`) must
//! agree with the first cause of every entry they decode: `intake-mail/tests/catalogue.rs`
//! checks each entry against them, and the unit tests here check that every entry is found by
//! its own text and that its causes are ranked without repeats.

use crate::diagnosis::{OwnCode, RootCause};

/// A root cause or one of Intake's own codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Root(RootCause),
    Own(OwnCode),
}

impl Code {
    pub fn id(self) -> &'static str {
        match self {
            Code::Root(rc) => rc.id(),
            Code::Own(c) => c.id(),
        }
    }
}

/// Which live decoder understands the text (tested against it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    /// A mail server's answer to a login or SELECT (`diagnose_login`, OAuth login).
    Login,
    /// A mail server's answer to a password login (`password_refused`): [`OwnCode::PasswordRefused`]
    /// when the channel logs in with a password; with OAuth the same words are RC1.
    Password,
    /// A token-endpoint error with an AADSTS code (`aadsts::classify`).
    Aadsts,
    /// A Graph error: HTTP status and `error.code` (Graph `diagnose`).
    Graph(u16, &'static str),
    /// Only this catalogue (texts of other systems: Java exceptions, Jira messages).
    Catalogue,
}

/// One known text.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The text as it is shown (a quote, exact).
    pub text: &'static str,
    /// The distinctive part [`lookup`] looks for (a substring of `text`).
    pub key: &'static str,
    /// Where it is seen.
    pub seen_in: &'static str,
    /// The causes, most likely first, each with what tells it apart.
    pub causes: &'static [(Code, &'static str)],
    pub decoder: Decoder,
}

use Code::{Own, Root};
use RootCause::*;

/// Every known text. Order does not matter; [`lookup`] returns entries in this order.
pub static CATALOGUE: &[Entry] = &[
    Entry {
        text: "OAuth token not defined for connection. OAuth Authorisation required.",
        key: "oauth token not defined for connection",
        seen_in: "Jira Service Management email channel (test connection)",
        causes: &[
            (
                Own(OwnCode::TokenMissing),
                "the mailbox was never authorized: no token is stored",
            ),
            (
                Root(Rc13),
                "the authorization finished on another cluster node than the one that started it",
            ),
        ],
        decoder: Decoder::Catalogue,
    },
    Entry {
        text: "JIRA couldn't open the folder 'inbox' at outlook.office365.com. Check and make sure the folder name is correct and try again.",
        key: "couldn't open the folder",
        seen_in: "Jira Service Management email channel (test connection)",
        causes: &[
            (
                Root(Rc2),
                "IMAP/POP disabled for the mailbox: Get-CASMailbox shows ImapEnabled False",
            ),
            (
                Root(Rc3),
                "the signed-in user is not the mailbox and has no Full Access",
            ),
            (
                Root(Rc5),
                "a folder name that does not exist (a localized display name)",
            ),
            (
                Root(Rc4),
                "no Exchange Online licence: the mailbox does not open in Outlook on the web either",
            ),
            (Root(Rc15), "a huge folder: the test times out opening it"),
        ],
        decoder: Decoder::Catalogue,
    },
    Entry {
        text: "ConnectionException: * BYE Jakarta Mail Exception: java.net.SocketTimeoutException: Read timed out",
        key: "read timed out",
        seen_in: "Jira incoming mail server test",
        causes: &[
            (
                Root(Rc15),
                "a flooded inbox: the connection works for small folders",
            ),
            (
                Root(Rc7),
                "a firewall drops the traffic: nothing works from this host",
            ),
            (
                Root(Rc16),
                "a proxy holds the connection open without forwarding it",
            ),
        ],
        decoder: Decoder::Catalogue,
    },
    Entry {
        text: "AuthenticationFailedException: AUTHENTICATE failed",
        key: "authenticate failed",
        seen_in: "Exchange Online IMAP (`NO AUTHENTICATE failed.`), Jira",
        causes: &[
            (
                Root(Rc1),
                "the token's aud/scp do not fit IMAP: `intake token … --protocol imap` shows them",
            ),
            (
                Root(Rc11),
                "the token belongs to another account than the mailbox",
            ),
            (
                Root(Rc3),
                "app-only or delegated access without Full Access on the mailbox",
            ),
            (Root(Rc4), "the mailbox has no licence"),
            (
                Root(Rc9),
                "the token comes from another Microsoft cloud (iss/aud host)",
            ),
        ],
        decoder: Decoder::Login,
    },
    Entry {
        text: "AuthenticationFailedException: Protocol error. Connection is closed. 10",
        key: "protocol error. connection is closed. 10",
        seen_in: "Exchange Online POP3 (`-ERR Protocol error. Connection is closed. 10`), Jira",
        causes: &[(
            Root(Rc10),
            "the XOAUTH2 response was sent on the AUTH line; the two-line form works",
        )],
        decoder: Decoder::Login,
    },
    Entry {
        text: "AuthenticationFailedException: Authentication failure: unknown user name or bad password.",
        key: "unknown user name or bad password",
        seen_in: "Exchange Online POP3 (`-ERR Authentication failure: …`), Jira",
        causes: &[
            (
                Root(Rc1),
                "the token lacks POP.AccessAsUser.All / POP.AccessAsApp",
            ),
            (Root(Rc2), "POP disabled for the mailbox (PopEnabled False)"),
            (Root(Rc11), "the token belongs to another account"),
        ],
        decoder: Decoder::Login,
    },
    Entry {
        text: "Authorization has failed. Go to Jira administration > System > Oauth 2.o and verify the integration you've selected for this mail server",
        key: "authorization has failed",
        seen_in: "Jira incoming mail server",
        causes: &[
            (
                Root(Rc14),
                "the client secret expired (AADSTS7000222 in the log)",
            ),
            (
                Root(Rc1),
                "the scopes of the integration do not fit the protocol",
            ),
            (
                Root(Rc8),
                "a single-tenant app with /common (AADSTS50194 in the log)",
            ),
        ],
        decoder: Decoder::Catalogue,
    },
    Entry {
        text: "A3 BAD User is authenticated but not connected.",
        key: "user is authenticated but not connected",
        seen_in: "Exchange Online IMAP, Microsoft Remote Connectivity Analyzer",
        causes: &[
            (Root(Rc2), "IMAP disabled for the mailbox"),
            (
                Root(Rc3),
                "shared or other user's mailbox without Full Access",
            ),
            (
                Root(Rc6),
                "a client access rule blocks IMAP4 for the mailbox or the address",
            ),
            (
                Root(Rc11),
                "the browser signed in another account than the mailbox",
            ),
            (Root(Rc4), "the mailbox has no licence"),
        ],
        decoder: Decoder::Login,
    },
    Entry {
        text: "UserHasNoMailboxAndNoLicenseAssignedError",
        key: "userhasnomailboxandnolicenseassigned",
        seen_in: "Outlook on the web, Graph",
        causes: &[(Root(Rc4), "no Exchange Online licence assigned to the user")],
        decoder: Decoder::Catalogue,
    },
    Entry {
        text: "Failed to validate and save token: jep.mail.connection.verifier.missing.folder.error",
        key: "missing.folder.error",
        seen_in: "Jira Service Management email channel",
        causes: &[
            (
                Root(Rc5),
                "the folder name does not exist on the server (a localized name)",
            ),
            (Root(Rc2), "the mailbox cannot be opened over IMAP at all"),
            (Root(Rc15), "a flooded folder makes the folder test fail"),
        ],
        decoder: Decoder::Catalogue,
    },
    Entry {
        text: "The following error occurred: \"Connection reset by peer: socket write error\"",
        key: "connection reset by peer",
        seen_in: "Jira Service Management email channel",
        causes: &[
            (
                Root(Rc7),
                "a firewall resets connections to the mail or login host",
            ),
            (Root(Rc16), "a proxy closes the tunnel"),
        ],
        decoder: Decoder::Catalogue,
    },
    Entry {
        text: "The following error occurred: \"connect timed out\"",
        key: "connect timed out",
        seen_in: "Jira Service Management email channel, Intake's tcp stage",
        causes: &[
            (Root(Rc7), "nothing answers on host:port from this machine"),
            (Root(Rc16), "the proxy does not answer"),
        ],
        decoder: Decoder::Catalogue,
    },
    Entry {
        text: "org.apache.http.conn.HttpHostConnectException: Connect to host:443 failed: Connection refused: connect",
        key: "connection refused",
        seen_in: "Jira health check, Intake's tcp and token stages",
        causes: &[
            (Root(Rc7), "no route or a closed port to the host"),
            (Root(Rc16), "the proxy itself refuses the connection"),
        ],
        decoder: Decoder::Catalogue,
    },
    Entry {
        text: "AADSTS50194: Application '79c86cf8-e761-4fdc-bc20-a629c5d04260'(Single Tenant - Test) is not configured as a multi-tenant application.",
        key: "aadsts50194",
        seen_in: "Microsoft token endpoint (authorize)",
        causes: &[(
            Root(Rc8),
            "tenant = common/organizations with a single-tenant app",
        )],
        decoder: Decoder::Aadsts,
    },
    Entry {
        text: "AADSTS900432: Confidential Client is not supported in Cross Cloud request.",
        key: "aadsts900432",
        seen_in: "Microsoft token endpoint",
        causes: &[(
            Root(Rc9),
            "the login host is another cloud's than the tenant's",
        )],
        decoder: Decoder::Aadsts,
    },
    Entry {
        text: "Failed to retrieve the OAuth token. Try authorizing again or contact your Jira system admin. Details: Token already marked as invalid",
        key: "token already marked as invalid",
        seen_in: "Jira Data Center cluster",
        causes: &[
            (
                Root(Rc13),
                "two nodes refreshed the same rotating refresh token",
            ),
            (
                Own(OwnCode::TokenReauthorize),
                "the grant was revoked: every node fails the same way",
            ),
        ],
        decoder: Decoder::Catalogue,
    },
    Entry {
        text: "MailConnectionException: OAuth token not found with ID XXXXXXXXXXXXXXXX.",
        key: "oauth token not found with id",
        seen_in: "Jira Data Center cluster",
        causes: &[
            (Root(Rc13), "the flow or token lives on another node"),
            (
                Own(OwnCode::TokenMissing),
                "the token was deleted: authorize again",
            ),
        ],
        decoder: Decoder::Catalogue,
    },
    Entry {
        text: "OAuth token is unrecoverable - manual re-authorisation required",
        key: "manual re-authorisation required",
        seen_in: "Jira",
        causes: &[
            (
                Root(Rc14),
                "the client secret expired, so no refresh can succeed",
            ),
            (
                Own(OwnCode::TokenReauthorize),
                "the refresh token was revoked or expired",
            ),
            (
                Root(Rc13),
                "a concurrent refresh on another node burnt the refresh token",
            ),
        ],
        decoder: Decoder::Catalogue,
    },
    Entry {
        text: "Error code: InvalidAuthenticationToken Error message: Access token validation failure. Invalid audience.",
        key: "invalid audience",
        seen_in: "Microsoft Graph (HTTP 401), Jira Service Management Graph handler",
        causes: &[
            (
                Root(G1),
                "the token is for Exchange Online (aud outlook.office.com) or prefixed scopes",
            ),
            (Root(G2), "the token is for another cloud's Graph"),
            (
                Root(Rc1),
                "scopes written with the https://graph.microsoft.com/ prefix",
            ),
        ],
        decoder: Decoder::Graph(401, "InvalidAuthenticationToken"),
    },
    Entry {
        text: "https://graph.microsoft.com/Mail.ReadWrite https://graph.microsoft.com/offline_access",
        key: "graph.microsoft.com/offline_access",
        seen_in: "Jira OAuth 2.0 integration scopes",
        causes: &[(
            Root(Rc1),
            "offline_access written with a resource prefix: no refresh token",
        )],
        decoder: Decoder::Catalogue,
    },
    Entry {
        text: "* BYE Session invalidated - AccessTokenExpired",
        key: "accesstokenexpired",
        seen_in: "Exchange Online IMAP (long sessions, IDLE)",
        causes: &[(
            Root(Rc1),
            "never a configuration error when it happens after an hour: the token expired mid-session and Intake reconnects with a fresh one; at once it means a token that was never valid for IMAP",
        )],
        decoder: Decoder::Catalogue,
    },
    Entry {
        text: "535 5.7.3 Authentication unsuccessful",
        key: "5.7.3 authentication unsuccessful",
        seen_in: "Exchange Online SMTP submission",
        causes: &[
            (Root(Rc1), "the token lacks SMTP.Send"),
            (
                Root(Rc2),
                "SMTP AUTH disabled for the mailbox (SmtpClientAuthenticationDisabled)",
            ),
        ],
        decoder: Decoder::Login,
    },
    Entry {
        text: "NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)",
        key: "invalid credentials",
        seen_in: "Gmail IMAP",
        causes: &[
            (Root(Rc1), "an expired or wrong-scope token"),
            (Root(Rc2), "IMAP disabled in the Gmail / Workspace settings"),
        ],
        decoder: Decoder::Login,
    },
    Entry {
        text: "REST API is not yet supported for this mailbox.",
        key: "rest api is not yet supported for this mailbox",
        seen_in: "Microsoft Graph (MailboxNotEnabledForRESTAPI)",
        causes: &[(Root(Rc4), "no Exchange Online mailbox or licence")],
        decoder: Decoder::Graph(404, "MailboxNotEnabledForRESTAPI"),
    },
    Entry {
        text: "AADSTS7000222: The provided client secret keys for app are expired.",
        key: "aadsts7000222",
        seen_in: "Microsoft token endpoint",
        causes: &[(Root(Rc14), "the secret's end date passed")],
        decoder: Decoder::Aadsts,
    },
    Entry {
        text: "AADSTS700022: The provided value for the input parameter scope is not valid because it contains more than one resource.",
        key: "aadsts700022",
        seen_in: "Microsoft token endpoint",
        causes: &[(Root(Rc1), "Exchange and Graph scopes in one request")],
        decoder: Decoder::Aadsts,
    },
    Entry {
        text: "AADSTS70011: The provided value for the input parameter 'scope' is not valid.",
        key: "aadsts70011",
        seen_in: "Microsoft token endpoint",
        causes: &[(
            Root(Rc1),
            "a typo, an unknown permission or .default mixed with other scopes",
        )],
        decoder: Decoder::Aadsts,
    },
    Entry {
        text: "AADSTS50020: User account from identity provider does not exist in tenant.",
        key: "aadsts50020",
        seen_in: "Microsoft sign-in",
        causes: &[(
            Root(Rc11),
            "an account of another tenant (or a personal account) signed in",
        )],
        decoder: Decoder::Aadsts,
    },
    Entry {
        text: "AADSTS54005: OAuth2 Authorization code was already redeemed.",
        key: "aadsts54005",
        seen_in: "Microsoft token endpoint",
        causes: &[(
            Root(Rc13),
            "the callback was handled twice (two nodes, a retried request)",
        )],
        decoder: Decoder::Catalogue,
    },
    Entry {
        text: "ErrorAccessDenied: Access is denied. Check credentials and try again.",
        key: "access is denied. check credentials",
        seen_in: "Microsoft Graph (HTTP 403)",
        causes: &[
            (
                Root(Rc3),
                "another user's or a shared mailbox without delegation",
            ),
            (Root(Rc1), "the token lacks Mail.ReadWrite (scp or roles)"),
        ],
        decoder: Decoder::Graph(403, "ErrorAccessDenied"),
    },
    Entry {
        text: "NO Mailbox doesn't exist: Posteingang",
        key: "mailbox doesn't exist",
        seen_in: "IMAP SELECT of a localized folder name",
        causes: &[(
            Root(Rc5),
            "the folder is a display name; INBOX is the protocol's name",
        )],
        decoder: Decoder::Login,
    },
    Entry {
        text: "a NO [AUTHENTICATIONFAILED] Authentication failed.",
        key: "[authenticationfailed] authentication failed",
        seen_in: "Dovecot IMAP (LOGIN with a password; also Cyrus, Stalwart and others with the RFC 5530 code)",
        causes: &[
            (
                Own(OwnCode::PasswordRefused),
                "a password login: the password (or the login name) is not the one the server has",
            ),
            (
                Root(Rc1),
                "an OAuth login (XOAUTH2 / OAUTHBEARER): the server refused the token",
            ),
            (
                Root(Rc2),
                "the account may not use IMAP (disabled for the mailbox, or passwords refused for IMAP as Microsoft 365 and Gmail do)",
            ),
        ],
        decoder: Decoder::Password,
    },
    Entry {
        text: "-ERR [AUTH] Authentication failed.",
        key: "[auth] authentication failed",
        seen_in: "Dovecot POP3 (USER/PASS or AUTH PLAIN with a password; RFC 3206 code)",
        causes: &[
            (
                Own(OwnCode::PasswordRefused),
                "a password login: the password (or the login name) is not the one the server has",
            ),
            (
                Root(Rc1),
                "an OAuth login (XOAUTH2 / OAUTHBEARER): the server refused the token",
            ),
            (
                Root(Rc2),
                "the account may not use POP3 (disabled for the mailbox, or passwords refused for POP3)",
            ),
        ],
        decoder: Decoder::Password,
    },
];

fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// The entries whose key occurs in `message` (case and spacing ignored), in catalogue order.
pub fn lookup(message: &str) -> Vec<&'static Entry> {
    let m = normalize(message);
    CATALOGUE
        .iter()
        .filter(|e| m.contains(&normalize(e.key)))
        .collect()
}

/// The most likely cause of `message`, with the others that fit (ranked), when the catalogue
/// knows the text.
pub fn most_likely(message: &str) -> Option<(&'static Entry, Code)> {
    let e = lookup(message).into_iter().next()?;
    Some((e, e.causes.first()?.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every entry is found by its own text (its key is part of it), first among the entries
    /// that match, and ranks distinct causes, each with what tells it apart.
    #[test]
    fn every_entry_is_found_by_its_text_and_ranks_distinct_causes() {
        for e in CATALOGUE {
            let found = lookup(e.text);
            assert!(
                found.iter().any(|f| std::ptr::eq(*f, e)),
                "{:?} is not found by its own text",
                e.key
            );
            assert!(!e.causes.is_empty(), "{:?} names no cause", e.key);
            let mut ids: Vec<&str> = e.causes.iter().map(|(c, _)| c.id()).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), e.causes.len(), "{:?} repeats a cause", e.key);
            for (c, why) in e.causes {
                assert!(why.len() > 10, "{:?}: {} says nothing", e.key, c.id());
            }
        }
    }

    #[test]
    fn lookup_ignores_case_and_spacing_and_ranks() {
        let (e, first) = most_likely("javax.mail: NO   authenticate FAILED.").unwrap();
        assert_eq!(e.key, "authenticate failed");
        assert_eq!(first, Code::Root(RootCause::Rc1));
        assert!(most_likely("everything is fine").is_none());
    }

    /// The root causes RC1–RC16, G1, G2 the texts point to cover every cause with a text
    /// (RC12 has none: Intake keeps channels apart by design).
    #[test]
    fn texts_cover_the_root_causes() {
        for rc in RootCause::all() {
            if *rc == RootCause::Rc12 {
                continue;
            }
            assert!(
                CATALOGUE
                    .iter()
                    .any(|e| e.causes.iter().any(|(c, _)| *c == Code::Root(*rc))),
                "no text points to {}",
                rc.id()
            );
        }
    }
}
