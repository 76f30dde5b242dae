//! The known root causes of OAuth mail failures, and findings that point at them.
//!
//! [`RootCause`] is the closed list of docs/troubleshooting.md (RC1–RC16, G1, G2). Each cause carries a
//! title and a fix an administrator can act on (portal, setting, PowerShell cmdlet or
//! configuration key). Every text is written in an exhaustive `match`, so a new variant without
//! its text does not compile.
//!
//! A [`Finding`] is one problem found in a configuration, a token or a server answer: severity,
//! the configuration key path it concerns (`integration[0].scopes`), a message, and the root
//! cause when one applies. Findings are what `intake doctor` prints and what configuration
//! loading rejects.

use std::fmt;

use serde::{Serialize, Serializer};

/// One of the known root causes of a failing OAuth mailbox connection (docs/troubleshooting.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RootCause {
    Rc1,
    Rc2,
    Rc3,
    Rc4,
    Rc5,
    Rc6,
    Rc7,
    Rc8,
    Rc9,
    Rc10,
    Rc11,
    Rc12,
    Rc13,
    Rc14,
    Rc15,
    Rc16,
    G1,
    G2,
}

impl RootCause {
    /// Every root cause, in docs/troubleshooting.md order.
    pub fn all() -> &'static [RootCause] {
        use RootCause::*;
        &[
            Rc1, Rc2, Rc3, Rc4, Rc5, Rc6, Rc7, Rc8, Rc9, Rc10, Rc11, Rc12, Rc13, Rc14, Rc15, Rc16,
            G1, G2,
        ]
    }

    /// The identifier used in docs/troubleshooting.md, logs and the doctor's JSON: `RC1` … `RC16`, `G1`, `G2`.
    pub fn id(self) -> &'static str {
        match self {
            RootCause::Rc1 => "RC1",
            RootCause::Rc2 => "RC2",
            RootCause::Rc3 => "RC3",
            RootCause::Rc4 => "RC4",
            RootCause::Rc5 => "RC5",
            RootCause::Rc6 => "RC6",
            RootCause::Rc7 => "RC7",
            RootCause::Rc8 => "RC8",
            RootCause::Rc9 => "RC9",
            RootCause::Rc10 => "RC10",
            RootCause::Rc11 => "RC11",
            RootCause::Rc12 => "RC12",
            RootCause::Rc13 => "RC13",
            RootCause::Rc14 => "RC14",
            RootCause::Rc15 => "RC15",
            RootCause::Rc16 => "RC16",
            RootCause::G1 => "G1",
            RootCause::G2 => "G2",
        }
    }

    /// The cause looked up by its identifier (`"RC9"`, case-insensitive).
    pub fn from_id(id: &str) -> Option<RootCause> {
        RootCause::all()
            .iter()
            .copied()
            .find(|c| c.id().eq_ignore_ascii_case(id.trim()))
    }

    /// A short name of the failure.
    pub fn title(self) -> &'static str {
        match self {
            RootCause::Rc1 => "wrong OAuth scopes",
            RootCause::Rc2 => "IMAP or POP disabled on the mailbox",
            RootCause::Rc3 => "shared or other user's mailbox without Full Access delegation",
            RootCause::Rc4 => "mailbox has no Exchange Online licence",
            RootCause::Rc5 => "localized Inbox name used as the folder",
            RootCause::Rc6 => "tenant client-access rules block IMAP4/POP3",
            RootCause::Rc7 => "firewall blocks the mail or token host",
            RootCause::Rc8 => "single-tenant app used with the /common endpoint",
            RootCause::Rc9 => "mixed clouds: hosts or endpoints of another Microsoft cloud",
            RootCause::Rc10 => "POP3 OAuth needs the two-line authentication format",
            RootCause::Rc11 => "the browser authorized the wrong account",
            RootCause::Rc12 => "a second OAuth channel in the same project breaks",
            RootCause::Rc13 => "cluster nodes lose the OAuth flow or race on refresh",
            RootCause::Rc14 => "client secret expired or invalid",
            RootCause::Rc15 => "a flooded inbox makes the test and the handler fail",
            RootCause::Rc16 => "an outbound proxy blocks the token or mail host",
            RootCause::G1 => "Graph rejects the token: invalid audience",
            RootCause::G2 => "Graph host of the wrong cloud",
        }
    }

    /// What an administrator does about it, concretely.
    pub fn fix(self) -> &'static str {
        match self {
            RootCause::Rc1 => {
                "Remove `scopes` from the [[integration]] table and let Intake compute them from \
                 provider + cloud + protocol. If you must override, request one resource per \
                 token: for IMAP/POP/SMTP `{EXO resource}/IMAP.AccessAsUser.All` (or \
                 `POP.AccessAsUser.All`, `SMTP.Send`) plus bare `offline_access`; for Graph \
                 `Mail.ReadWrite` plus bare `offline_access`; never write `offline_access`, \
                 `openid`, `profile` or `email` with a resource prefix; for client credentials \
                 request only `{resource}/.default`. Add the same permissions under Entra admin \
                 center > App registrations > your app > API permissions (Office 365 Exchange \
                 Online for IMAP/POP/SMTP, Microsoft Graph for Graph), grant consent, then \
                 authorize again with `intake authorize`."
            }
            RootCause::Rc2 => {
                "In Exchange Online PowerShell check the mailbox with `Get-CASMailbox <mailbox> | \
                 fl ImapEnabled,PopEnabled` and enable the protocol with `Set-CASMailbox \
                 -Identity <mailbox> -ImapEnabled $true` (or `-PopEnabled $true`). New mailboxes \
                 inherit `Set-CASMailboxPlan` defaults (kiosk plans start with IMAP off). Or \
                 switch the connection to `protocol = \"graph\"`, which does not need IMAP or POP."
            }
            RootCause::Rc3 => {
                "Give the signed-in account Full Access to the mailbox: `Add-MailboxPermission \
                 -Identity <mailbox> -User <signed-in user> -AccessRights FullAccess` (Exchange \
                 Online PowerShell). Keep the shared mailbox address as the connection's mailbox \
                 (it is sent as the SASL `user=`). For app-only access register the app with \
                 `New-ServicePrincipal -AppId <appId> -ObjectId <Enterprise Application object \
                 id>` and grant that service principal FullAccess the same way. For Graph \
                 delegated access request `Mail.ReadWrite.Shared`."
            }
            RootCause::Rc4 => {
                "Assign an Exchange Online licence to the mailbox's user in the Microsoft 365 \
                 admin center (Users > Active users > Licences and apps), or use a mailbox that \
                 lives in Exchange Online (not on-premises, not a guest or soft-deleted mailbox). \
                 Graph answers `MailboxNotEnabledForRESTAPI` until this is done."
            }
            RootCause::Rc5 => {
                "Set the connection's `folder = \"INBOX\"` (or leave it unset): INBOX is the \
                 protocol's case-insensitive name for the primary mailbox in every language. Do \
                 not use a display name such as \"Posteingang\"; for Graph Intake uses the \
                 well-known folder name `inbox`. For another folder use a name (IMAP) or a \
                 well-known name or ID (Graph) listed by `intake folders`."
            }
            RootCause::Rc6 => {
                "List the tenant's client access rules in Exchange Online PowerShell with \
                 `Get-ClientAccessRule | fl Name,Action,AnyOfProtocols,Priority`, and change or \
                 remove the rule that blocks IMAP4/POP3 for this mailbox or Intake's IP address \
                 (`Set-ClientAccessRule` / `Remove-ClientAccessRule`); or use \
                 `protocol = \"graph\"`."
            }
            RootCause::Rc7 => {
                "Run `intake doctor` to see the stage and host:port that failed, then allow \
                 outbound TCP from the Intake host to the cloud's login host on 443 and to the \
                 mail host: IMAP 993, POP3 995, SMTP 587, Graph 443 (for example \
                 outlook.office365.com and login.microsoftonline.com in the worldwide cloud)."
            }
            RootCause::Rc8 => {
                "Set `tenant` in the [[integration]] table to the directory (tenant) ID or a \
                 verified domain (Entra admin center > Overview), not `common`, `organizations` \
                 or `consumers`; or, if the app really serves other organisations, change App \
                 registrations > your app > Authentication > Supported account types to \
                 multitenant."
            }
            RootCause::Rc9 => {
                "Set `cloud` to the cloud the tenant lives in (`worldwide`, `gcc`, `gcc-high`, \
                 `dod`, `china`) and remove overrides (`authority_url`, `graph_url`, \
                 `authorize_url`, `token_url`, prefixed `scopes`) that point at another cloud's \
                 hosts. Register the app in that cloud's portal (portal.azure.com, \
                 portal.azure.us for GCC High and DoD, portal.azure.cn for China): app \
                 registrations, consents and tokens do not cross clouds."
            }
            RootCause::Rc10 => {
                "Nothing to configure: Intake sends the POP3 XOAUTH2 response on a second line \
                 after the server's `+` challenge when needed (RFC 5034) and falls back \
                 automatically. If the server still closes the connection, make the token \
                 smaller by requesting only the POP scope for this integration."
            }
            RootCause::Rc11 => {
                "Authorize again (`intake authorize`, or Reconnect in the UI) and pick the \
                 mailbox's own account in the account chooser (Intake asks with \
                 `prompt=select_account`); use a private browser window if another account is \
                 signed in. If a different account is meant to read this mailbox, give it Full \
                 Access (`Add-MailboxPermission … -AccessRights FullAccess`) and confirm the \
                 delegation."
            }
            RootCause::Rc12 => {
                "Authorize each channel's mailbox separately: every channel keeps its own token \
                 in Intake, so re-authorize only the failing channel with `intake authorize`; \
                 the other channels and their tokens are unaffected."
            }
            RootCause::Rc13 => {
                "Point every node at the same database (`database_url`, PostgreSQL for several \
                 nodes): OAuth flow state and the refresh lock live there, so sticky sessions \
                 are not needed. If a token was marked as needing re-authorization, run \
                 `intake authorize` for that channel once."
            }
            RootCause::Rc14 => {
                "Create a new client secret in Entra admin center > App registrations > your app \
                 > Certificates & secrets, copy its Value (not its Secret ID; the Value is shown \
                 only once), put it in `client_secret` (preferably `env:VAR` or `file:PATH`) and \
                 its expiry date in `client_secret_expires = \"YYYY-MM-DD\"` so Intake warns 30, \
                 14 and 3 days ahead. Better: upload a certificate and set `client_certificate` \
                 and `client_key` instead of a secret."
            }
            RootCause::Rc15 => {
                "No change is needed for the connection test, which reads message counts only. \
                 If ingestion batches time out, lower the channel's `batch`; Intake \
                 resumes from its checkpoint. Archiving old mail out of the watched folder \
                 shortens the first import."
            }
            RootCause::Rc16 => {
                "Set `proxy` (`http://host:port`, or `socks5://host:port` for IMAP/POP3) on the \
                 integration or channel and list hosts that must bypass it in `no_proxy`; the proxy must \
                 allow CONNECT to the login host on 443 and to the mail host on 993/995/587. \
                 `intake doctor` prints which proxy each host goes through."
            }
            RootCause::G1 => {
                "Use a Graph token for Graph: request `Mail.ReadWrite` (bare, or with this \
                 cloud's Graph root) plus `offline_access`, not Exchange scopes such as \
                 `https://outlook.office.com/IMAP.AccessAsUser.All`, and get it from the same \
                 cloud as the Graph host. Remove a `scopes` override that mixes resources, then \
                 authorize again."
            }
            RootCause::G2 => {
                "Set `cloud` to the tenant's cloud so the Graph root follows it: \
                 https://graph.microsoft.com (worldwide, GCC), https://graph.microsoft.us (GCC \
                 High), https://dod-graph.microsoft.us (DoD), \
                 https://microsoftgraph.chinacloudapi.cn (China); remove a `graph_url` override \
                 or fully-qualified Graph scope that names another cloud's Graph host."
            }
        }
    }
}

impl fmt::Display for RootCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.id(), self.title())
    }
}

impl Serialize for RootCause {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id())
    }
}

/// How bad a finding is: errors stop a configuration from loading (or a connection from being
/// attempted); warnings are shown and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in a configuration, a token or a server answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The known root cause, when one applies.
    pub cause: Option<RootCause>,
    pub severity: Severity,
    /// Configuration key path (`integration[0].scopes`) or claim (`token.aud`) it concerns.
    pub path: String,
    /// What is wrong, naming the offending value.
    pub message: String,
}

impl Finding {
    /// An error finding.
    pub fn error(
        cause: Option<RootCause>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            cause,
            severity: Severity::Error,
            path: path.into(),
            message: message.into(),
        }
    }

    /// A warning finding.
    pub fn warning(
        cause: Option<RootCause>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            cause,
            severity: Severity::Warning,
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The same finding with its path's leading `integration.` turned into `integration[index].`,
    /// for findings of the `index`-th `[[integration]]` table.
    pub fn at_index(mut self, index: usize) -> Finding {
        if let Some(rest) = self.path.strip_prefix("integration.") {
            self.path = format!("integration[{index}].{rest}");
        } else if self.path == "integration" {
            self.path = format!("integration[{index}]");
        }
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.path, self.message)?;
        if let Some(cause) = self.cause {
            write!(f, " [{cause}]")?;
        }
        Ok(())
    }
}

/// How much a doctor finding weighs: an `error` makes `intake doctor` exit 1; `warning` and
/// `info` do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warning,
    Info,
}

impl From<Severity> for Level {
    fn from(s: Severity) -> Level {
        match s {
            Severity::Error => Level::Error,
            Severity::Warning => Level::Warning,
        }
    }
}

/// Intake's own finding codes, for problems that are none of the sixteen root causes
/// (docs/troubleshooting.md lists them with the root causes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OwnCode {
    /// No token is stored for the mailbox and the resource its protocol needs.
    TokenMissing,
    /// The token was refused for good (revoked, expired, reused): sign in again.
    TokenReauthorize,
    /// A secret is written in the configuration file itself.
    PlaintextSecret,
    /// A check failed with no known root cause: the evidence is the server's own words.
    Undiagnosed,
    /// A configuration value the lint warns about that is none of the root causes.
    Config,
    /// The mail server refused the user name or password of a password login (IMAP `NO
    /// [AUTHENTICATIONFAILED]`, POP3 `-ERR [AUTH]`): none of the root causes, which are about
    /// OAuth.
    PasswordRefused,
}

impl OwnCode {
    pub fn id(self) -> &'static str {
        match self {
            OwnCode::TokenMissing => "TOKEN_MISSING",
            OwnCode::TokenReauthorize => "TOKEN_REAUTHORIZE",
            OwnCode::PlaintextSecret => "PLAINTEXT_SECRET",
            OwnCode::Undiagnosed => "UNDIAGNOSED",
            OwnCode::Config => "CONFIG",
            OwnCode::PasswordRefused => "PASSWORD_REFUSED",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            OwnCode::TokenMissing => "no token for this mailbox and protocol",
            OwnCode::TokenReauthorize => "the token needs re-authorization",
            OwnCode::PlaintextSecret => "a secret is written in the configuration file",
            OwnCode::Undiagnosed => "the check failed for a reason Intake does not know",
            OwnCode::Config => "a configuration value to review",
            OwnCode::PasswordRefused => "the mail server refused the user name or password",
        }
    }
}

/// One finding of `intake doctor --json`: `code` (RC1–RC16, G1, G2 or an [`OwnCode`]), how bad
/// it is, what showed it (`evidence`: the server's words, the counts, the claim) and the fix
/// with the real channel, mailbox and command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosed {
    pub code: &'static str,
    pub severity: Level,
    pub title: &'static str,
    pub evidence: String,
    pub fix: String,
}

impl Diagnosed {
    /// A finding of a known root cause.
    pub fn cause(
        rc: RootCause,
        severity: Level,
        evidence: impl Into<String>,
        fix: impl Into<String>,
    ) -> Diagnosed {
        Diagnosed {
            code: rc.id(),
            severity,
            title: rc.title(),
            evidence: evidence.into(),
            fix: fix.into(),
        }
    }

    /// A finding with one of Intake's own codes.
    pub fn own(
        code: OwnCode,
        severity: Level,
        evidence: impl Into<String>,
        fix: impl Into<String>,
    ) -> Diagnosed {
        Diagnosed {
            code: code.id(),
            severity,
            title: code.title(),
            evidence: evidence.into(),
            fix: fix.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Level::Error
    }

    /// `error`, `warning` or `info`.
    pub fn severity_label(&self) -> &'static str {
        match self.severity {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Info => "info",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_cause_has_title_and_fix_and_a_unique_id() {
        let mut ids = HashSet::new();
        for cause in RootCause::all() {
            assert!(!cause.title().trim().is_empty(), "{cause:?} has no title");
            assert!(
                cause.fix().len() > 80,
                "{cause:?} fix is too short to act on"
            );
            assert!(ids.insert(cause.id()), "duplicate id {}", cause.id());
            assert_eq!(RootCause::from_id(cause.id()), Some(*cause));
        }
        assert_eq!(ids.len(), 18, "RC1..RC16, G1, G2");
    }

    #[test]
    fn all_lists_every_variant_in_product_order() {
        let ids: Vec<_> = RootCause::all().iter().map(|c| c.id()).collect();
        let mut expected: Vec<String> = (1..=16).map(|n| format!("RC{n}")).collect();
        expected.push("G1".into());
        expected.push("G2".into());
        assert_eq!(ids, expected);
    }

    #[test]
    fn finding_displays_severity_path_message_and_cause() {
        let f = Finding::error(
            Some(RootCause::Rc8),
            "integration.tenant",
            "tenant is common",
        )
        .at_index(2);
        assert_eq!(
            f.to_string(),
            "error integration[2].tenant: tenant is common [RC8: single-tenant app used with the /common endpoint]"
        );
        let w = Finding::warning(None, "integration", "x");
        assert_eq!(w.to_string(), "warning integration: x");
    }

    #[test]
    fn finding_serializes_cause_as_id() {
        let f = Finding::warning(Some(RootCause::G2), "integration.graph_url", "m");
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(
            json,
            r#"{"cause":"G2","severity":"warning","path":"integration.graph_url","message":"m"}"#
        );
    }
}
