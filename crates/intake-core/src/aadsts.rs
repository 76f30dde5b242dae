//! Token-endpoint errors (Microsoft Entra `AADSTS…`, Google, RFC 6749/8628) decoded into a
//! root cause, a kind the caller can act on, and a fix (docs/troubleshooting.md, "AADSTS codes", "Hosts and endpoints").
//!
//! Microsoft answers HTTP 400/401 with JSON `error`, `error_description` (starting
//! `AADSTSnnnn:`), `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`. The
//! numeric code picks the explanation; what to do next ([`ErrorKind`]) comes from the code when
//! Intake knows it and from the OAuth `error` value otherwise, except that the values that
//! settle it by themselves (`authorization_pending`, `slow_down`, `expired_token`,
//! `temporarily_unavailable`, `server_error`) always win. This is how `invalid_grant` is told
//! apart: revoked, expired, reused or MFA-bound grants need re-authorization, while
//! AADSTS50196 (loop detected) only needs a pause.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::diagnosis::RootCause;

/// The JSON error body of a token endpoint (Microsoft's shape; Google's is a subset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TokenEndpointError {
    /// OAuth 2.0 error value (`invalid_grant`, `invalid_client`, …).
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
    /// Entra's numeric codes (the `nnnn` of `AADSTSnnnn`); absent for other providers.
    #[serde(default)]
    pub error_codes: Vec<u32>,
    #[serde(default)]
    pub suberror: Option<String>,
    #[serde(default)]
    pub trace_id: Option<String>,
    #[serde(default)]
    pub correlation_id: Option<String>,
}

impl TokenEndpointError {
    /// The AADSTS code: the first of `error_codes`, else the number after `AADSTS` in the
    /// description.
    pub fn code(&self) -> Option<u32> {
        self.error_codes
            .first()
            .copied()
            .or_else(|| self.error_description.as_deref().and_then(code_in_text))
    }

    /// The first line of the description (Entra appends trace/correlation lines).
    pub fn description_line(&self) -> Option<&str> {
        self.error_description
            .as_deref()
            .and_then(|d| d.lines().map(str::trim).find(|l| !l.is_empty()))
    }
}

impl fmt::Display for TokenEndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error)?;
        if let Some(line) = self.description_line() {
            write!(f, ": {line}")?;
        }
        if let Some(id) = &self.trace_id {
            write!(f, " (trace id {id}")?;
            match &self.correlation_id {
                Some(c) => write!(f, ", correlation id {c})")?,
                None => f.write_str(")")?,
            }
        } else if let Some(c) = &self.correlation_id {
            write!(f, " (correlation id {c})")?;
        }
        Ok(())
    }
}

/// The number after the first `AADSTS` in a text.
fn code_in_text(text: &str) -> Option<u32> {
    let start = text.find("AADSTS")? + "AADSTS".len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// What the caller should do about a token-endpoint error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The grant is gone (revoked, expired, password changed, consent withdrawn, code or refresh
    /// token reused or invalid, MFA now required): mark the channel "needs re-authorization";
    /// retrying the same token will not help.
    NeedsReauthorization,
    /// An administrator must change the app registration or Intake's configuration.
    Configuration,
    /// Retry later with backoff.
    Transient,
    /// Device code: the user has not finished yet (`authorization_pending`, `slow_down`).
    Pending,
    /// Device code: the code expired before the user finished; start again.
    DeviceCodeExpired,
}

/// A decoded token-endpoint error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    /// The AADSTS number, from `error_codes` or parsed from `AADSTSnnnn:` in the description.
    pub code: Option<u32>,
    pub cause: Option<RootCause>,
    pub kind: ErrorKind,
    pub title: String,
    pub fix: String,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.title)?;
        if let Some(cause) = self.cause {
            write!(f, " [{}]", cause.id())?;
        }
        write!(f, ". Fix: {}", self.fix)
    }
}

/// One known AADSTS code.
struct Entry {
    code: u32,
    cause: Option<RootCause>,
    kind: ErrorKind,
    title: &'static str,
    fix: &'static str,
}

use ErrorKind::{Configuration, NeedsReauthorization, Pending, Transient};

/// Every code of docs/troubleshooting.md, "AADSTS codes", with Microsoft's meaning (paraphrased) and the fix.
const TABLE: &[Entry] = &[
    Entry {
        code: 50194,
        cause: Some(RootCause::Rc8),
        kind: Configuration,
        title: "the app is not multi-tenant, so the /common endpoint is not allowed for it",
        fix: "Set `tenant` to the tenant ID or a verified domain so Intake uses the /{tenant}/ \
              endpoints, or make the app multi-tenant (Entra admin center > App registrations > \
              your app > Authentication > Supported account types).",
    },
    Entry {
        code: 900432,
        cause: Some(RootCause::Rc9),
        kind: Configuration,
        title: "confidential client isn't supported in a cross-cloud request",
        fix: "Set `cloud` to the user's cloud (for example `gcc-high`) so Intake signs in at that \
              cloud's authority, remove host overrides of another cloud, and use an app \
              registered in that cloud's portal (portal.azure.us for GCC High/DoD, \
              portal.azure.cn for China).",
    },
    Entry {
        code: 900382,
        cause: Some(RootCause::Rc9),
        kind: Configuration,
        title: "confidential client isn't supported in a cross-cloud request",
        fix: "Set `cloud` to the user's cloud (for example `gcc-high`) so Intake signs in at that \
              cloud's authority, remove host overrides of another cloud, and use an app \
              registered in that cloud's portal (portal.azure.us for GCC High/DoD, \
              portal.azure.cn for China).",
    },
    Entry {
        code: 90038,
        cause: Some(RootCause::Rc9),
        kind: Configuration,
        title: "the tenant lives in another national cloud (NationalCloudTenantRedirection)",
        fix: "Switch `cloud` to the tenant's cloud (`gcc-high`, `dod` or `china`) and register \
              the app in that cloud's portal.",
    },
    Entry {
        code: 90002,
        cause: Some(RootCause::Rc9),
        kind: Configuration,
        title: "tenant not found",
        fix: "Check `tenant` (the tenant ID or a verified domain, Entra admin center > Overview) \
              and `cloud`: a GCC High, DoD or China tenant is not found at the worldwide login \
              host, and a deleted tenant cannot be used.",
    },
    Entry {
        code: 700016,
        cause: None,
        kind: Configuration,
        title: "application with this client ID not found in the directory",
        fix: "Check `client_id` (Application (client) ID on the app's Overview page), `tenant` \
              and `cloud`; an app registered in another tenant must first be consented to by an \
              administrator of this tenant.",
    },
    Entry {
        code: 7000215,
        cause: Some(RootCause::Rc14),
        kind: Configuration,
        title: "invalid client secret",
        fix: "The secret's ID was probably pasted instead of its Value: in Entra admin center > \
              App registrations > your app > Certificates & secrets create a new client secret, \
              copy its Value (shown only once) into `client_secret`, and set \
              `client_secret_expires`.",
    },
    Entry {
        code: 7000222,
        cause: Some(RootCause::Rc14),
        kind: Configuration,
        title: "client secret expired",
        fix: "Create a new client secret in Entra admin center > App registrations > your app > \
              Certificates & secrets, put its Value in `client_secret` and its expiry date in \
              `client_secret_expires` so Intake warns ahead next time, or move to a certificate \
              (`client_certificate` + `client_key`).",
    },
    Entry {
        code: 7000218,
        cause: None,
        kind: Configuration,
        title: "the request must contain client_assertion or client_secret (public client flows \
                are not allowed for this app)",
        fix: "For device-code sign-in set Entra admin center > App registrations > your app > \
              Authentication > Allow public client flows = Yes; otherwise configure \
              `client_secret` or `client_certificate`.",
    },
    Entry {
        code: 70008,
        cause: None,
        kind: NeedsReauthorization,
        title: "the authorization code or refresh token expired or was revoked",
        fix: "Authorize the mailbox again (`intake authorize`, or Reconnect in the UI).",
    },
    Entry {
        code: 700082,
        cause: None,
        kind: NeedsReauthorization,
        title: "the refresh token expired after 90 days without use",
        fix: "Authorize the mailbox again; a running channel uses its token long before 90 days, \
              so check whether the channel was stopped.",
    },
    Entry {
        code: 700084,
        cause: None,
        kind: NeedsReauthorization,
        title: "single-page-app refresh token past its 24-hour limit",
        fix: "Intake is not a single-page app: register its redirect URI under the Web platform \
              (App registrations > your app > Authentication), not Single-page application, so \
              refresh tokens last 90 days, then authorize again.",
    },
    Entry {
        code: 54005,
        cause: None,
        kind: NeedsReauthorization,
        title: "the authorization code was already redeemed",
        fix: "Start the authorization again: each code can be redeemed once (a repeated or \
              retried callback redeemed it).",
    },
    Entry {
        code: 50173,
        cause: None,
        kind: NeedsReauthorization,
        title: "the grant was revoked (FreshTokenNeeded), for example after a password change or \
                reset",
        fix: "Authorize the mailbox again with the account's current password.",
    },
    Entry {
        code: 50076,
        cause: None,
        kind: NeedsReauthorization,
        title: "multi-factor authentication is now required",
        fix: "Authorize again interactively so the user completes MFA; a refresh cannot satisfy \
              the new policy.",
    },
    Entry {
        code: 50079,
        cause: None,
        kind: NeedsReauthorization,
        title: "the user must register for multi-factor authentication",
        fix: "The user completes MFA registration at the next interactive sign-in; then authorize \
              the mailbox again.",
    },
    Entry {
        code: 53003,
        cause: None,
        kind: Configuration,
        title: "access blocked by Conditional Access",
        fix: "An administrator finds the sign-in in Entra admin center > Sign-in logs (search by \
              the correlation id) and adjusts the Conditional Access policy that blocked it, \
              then the mailbox is authorized again.",
    },
    Entry {
        code: 70043,
        cause: None,
        kind: NeedsReauthorization,
        title: "the token expired under the Conditional Access sign-in frequency policy",
        fix: "Authorize the mailbox again; an administrator can relax the sign-in frequency for \
              this app in Conditional Access.",
    },
    Entry {
        code: 65001,
        cause: Some(RootCause::Rc1),
        kind: NeedsReauthorization,
        title: "the user or an administrator has not consented to the app or its scopes",
        fix: "Make sure the requested permissions are listed under App registrations > your app \
              > API permissions, then let the user consent by authorizing again, or have an \
              administrator grant consent (API permissions > Grant admin consent, or the \
              {authority}/{tenant}/v2.0/adminconsent URL).",
    },
    Entry {
        code: 70011,
        cause: Some(RootCause::Rc1),
        kind: Configuration,
        title: "the scope value is not valid",
        fix: "Fix `scopes` or remove it to use the computed ones: no typos or unknown \
              permissions, `.default` not mixed with other scopes of the same resource, the \
              right resource prefix for the cloud, and only `{resource}/.default` for client \
              credentials.",
    },
    Entry {
        code: 700022,
        cause: Some(RootCause::Rc1),
        kind: Configuration,
        title: "the scopes name several resources in one request",
        fix: "Request one resource per token: Exchange scopes for IMAP/POP/SMTP, Graph scopes \
              for Graph; remove the mixed `scopes` override.",
    },
    Entry {
        code: 9002313,
        cause: None,
        kind: Configuration,
        title: "the request is malformed or invalid",
        fix: "Check the endpoint URLs and parameters (Intake logs them without secrets): a custom \
              `authorize_url`/`token_url` on the wrong path or a broken proxy rewriting the body \
              causes this.",
    },
    Entry {
        code: 50020,
        cause: Some(RootCause::Rc11),
        kind: NeedsReauthorization,
        title: "the signed-in account does not exist in this tenant",
        fix: "Authorize again with an account of the configured tenant (or invite the user as a \
              guest); check that `tenant` is the mailbox's tenant and that a personal account is \
              not used with an organisations-only app.",
    },
    Entry {
        code: 50011,
        cause: None,
        kind: Configuration,
        title: "the redirect URI does not match the app registration",
        fix: "Register Intake's exact redirect URI (scheme, host, port, path and trailing slash) \
              under App registrations > your app > Authentication > Web.",
    },
    Entry {
        code: 70016,
        cause: None,
        kind: Pending,
        title: "device code sign-in not completed yet (authorization_pending)",
        fix: "Keep polling at the returned interval until the user finishes signing in.",
    },
    Entry {
        code: 50196,
        cause: None,
        kind: Transient,
        title: "loop detected: the client requested tokens too often",
        fix: "Back off and retry later; cache tokens until shortly before they expire (repeated \
              requests usually mean several processes refreshing the same token).",
    },
];

/// The AADSTS codes [`classify`] explains.
pub fn known_codes() -> impl Iterator<Item = u32> {
    TABLE.iter().map(|e| e.code)
}

/// Kind, cause, title and fix by the OAuth `error` value alone.
fn by_error_value(error: &str) -> (ErrorKind, Option<RootCause>, &'static str, &'static str) {
    match error {
        "invalid_grant" => (
            NeedsReauthorization,
            None,
            "the authorization code or refresh token is no longer usable",
            "Authorize the mailbox again (`intake authorize`, or Reconnect in the UI); retrying \
             the same token will not help.",
        ),
        "invalid_client" => (
            Configuration,
            None,
            "client authentication failed",
            "Check `client_id` and the credential: the secret's Value (not its ID) and expiry, or \
             the certificate; for device code, that the app allows public client flows.",
        ),
        "interaction_required" => (
            NeedsReauthorization,
            None,
            "a user must sign in interactively (MFA, consent or Conditional Access)",
            "Authorize the mailbox again in a browser.",
        ),
        "consent_required" => (
            NeedsReauthorization,
            Some(RootCause::Rc1),
            "consent is missing",
            "Authorize again and consent, or have an administrator grant admin consent for the \
             app's permissions.",
        ),
        "invalid_scope" => (
            Configuration,
            Some(RootCause::Rc1),
            "the scope list is wrong",
            "Fix `scopes` or remove it to use the computed ones.",
        ),
        "invalid_request" => (
            Configuration,
            None,
            "the request is malformed, or went to the wrong endpoint or cloud",
            "Check `tenant`, `cloud` and any endpoint overrides.",
        ),
        "unauthorized_client" => (
            Configuration,
            None,
            "the client is not allowed this grant, or was not found",
            "Check `client_id`, `grant` and the app registration's platform and permissions.",
        ),
        "unsupported_grant_type" => (
            Configuration,
            None,
            "the server does not support this grant",
            "Choose another `grant` for this integration.",
        ),
        "access_denied" | "authorization_declined" => (
            NeedsReauthorization,
            None,
            "the user declined the authorization",
            "Authorize again and accept the requested permissions.",
        ),
        "authorization_pending" | "slow_down" => (
            Pending,
            None,
            "device code sign-in not completed yet",
            "Keep polling at the returned interval (add 5 seconds after slow_down).",
        ),
        "expired_token" => (
            ErrorKind::DeviceCodeExpired,
            None,
            "the device code expired before sign-in finished",
            "Start the device-code sign-in again; the user has 15 minutes to enter the code.",
        ),
        "temporarily_unavailable" | "server_error" => (
            Transient,
            None,
            "the authorization server is busy or failed",
            "Retry later with backoff.",
        ),
        _ => (
            Configuration,
            None,
            "the token endpoint refused the request",
            "Read the error and description below; check the integration's configuration.",
        ),
    }
}

/// `error` values that decide the kind whatever the code says.
fn decisive_kind(error: &str) -> Option<ErrorKind> {
    match error {
        "authorization_pending" | "slow_down" => Some(Pending),
        "expired_token" => Some(ErrorKind::DeviceCodeExpired),
        "temporarily_unavailable" | "server_error" => Some(Transient),
        _ => None,
    }
}

/// Google's refresh failure (docs/troubleshooting.md, "Hosts and endpoints").
const GOOGLE_EXPIRED_OR_REVOKED: &str = "Token has been expired or revoked";

/// Decodes a token-endpoint error.
pub fn classify(err: &TokenEndpointError) -> Diagnosis {
    let error = err.error.trim();
    let code = err.code();
    let decisive = decisive_kind(error);
    if let Some(entry) = code.and_then(|c| TABLE.iter().find(|e| e.code == c)) {
        return Diagnosis {
            code,
            cause: entry.cause,
            kind: decisive.unwrap_or(entry.kind),
            title: format!("AADSTS{}: {}", entry.code, entry.title),
            fix: entry.fix.to_string(),
        };
    }
    let description = err.description_line();
    if error == "invalid_grant"
        && description.is_some_and(|d| d.contains(GOOGLE_EXPIRED_OR_REVOKED))
    {
        return Diagnosis {
            code,
            cause: None,
            kind: NeedsReauthorization,
            title: "Google refresh token expired or revoked".to_string(),
            fix: "Authorize the mailbox again. If this recurs every 7 days, the OAuth consent \
                  screen is in Testing with External users: publish the app (In production) or \
                  use an Internal app. Google also ends tokens when the user revokes access or \
                  changes the password, after 6 months unused, beyond 100 live tokens for one \
                  account and client, or by a Workspace admin policy."
                .to_string(),
        };
    }
    let (kind, cause, meaning, fix) = by_error_value(error);
    // Unknown code or provider: keep the raw error so nothing is lost.
    let raw = match description {
        Some(d) => format!("{error}: {d}"),
        None => error.to_string(),
    };
    Diagnosis {
        code,
        cause,
        kind: decisive.unwrap_or(kind),
        title: format!("{meaning} ({raw})"),
        fix: fix.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorKind::DeviceCodeExpired;

    /// A Microsoft-shaped error body (docs/troubleshooting.md, "AADSTS codes").
    fn entra_body(error: &str, code: u32, text: &str) -> String {
        serde_json::json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {text}\r\nTrace ID: 0b1c5e2a-8f35-4e2b-9f0e-7d3a2c1b0a00\r\n\
                 Correlation ID: 5f6e7d8c-1111-2222-3333-444455556666\r\n\
                 Timestamp: 2026-11-02 10:11:12Z"
            ),
            "error_codes": [code],
            "timestamp": "2026-11-02 10:11:12Z",
            "trace_id": "0b1c5e2a-8f35-4e2b-9f0e-7d3a2c1b0a00",
            "correlation_id": "5f6e7d8c-1111-2222-3333-444455556666",
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}")
        })
        .to_string()
    }

    fn parse(body: &str) -> TokenEndpointError {
        serde_json::from_str(body).expect("Microsoft error body parses")
    }

    /// (code, usual `error` value, expected cause, expected kind) for every row of docs/troubleshooting.md, "AADSTS codes".
    /// Rows whose `error` column is "—" use `invalid_request`/`invalid_grant` as seen in practice.
    const CASES: &[(u32, &str, Option<RootCause>, ErrorKind)] = &[
        (
            50194,
            "invalid_request",
            Some(RootCause::Rc8),
            Configuration,
        ),
        (
            900432,
            "invalid_request",
            Some(RootCause::Rc9),
            Configuration,
        ),
        (
            900382,
            "invalid_request",
            Some(RootCause::Rc9),
            Configuration,
        ),
        (
            90038,
            "invalid_request",
            Some(RootCause::Rc9),
            Configuration,
        ),
        (
            90002,
            "invalid_request",
            Some(RootCause::Rc9),
            Configuration,
        ),
        (700016, "unauthorized_client", None, Configuration),
        (
            7000215,
            "invalid_client",
            Some(RootCause::Rc14),
            Configuration,
        ),
        (
            7000222,
            "invalid_client",
            Some(RootCause::Rc14),
            Configuration,
        ),
        (7000218, "invalid_client", None, Configuration),
        (70008, "invalid_grant", None, NeedsReauthorization),
        (700082, "invalid_grant", None, NeedsReauthorization),
        (700084, "invalid_grant", None, NeedsReauthorization),
        (54005, "invalid_grant", None, NeedsReauthorization),
        (50173, "invalid_grant", None, NeedsReauthorization),
        (50076, "interaction_required", None, NeedsReauthorization),
        (50079, "interaction_required", None, NeedsReauthorization),
        (53003, "invalid_grant", None, Configuration),
        (70043, "invalid_grant", None, NeedsReauthorization),
        (
            65001,
            "invalid_grant",
            Some(RootCause::Rc1),
            NeedsReauthorization,
        ),
        (70011, "invalid_scope", Some(RootCause::Rc1), Configuration),
        (700022, "invalid_scope", Some(RootCause::Rc1), Configuration),
        (9002313, "invalid_request", None, Configuration),
        (
            50020,
            "invalid_request",
            Some(RootCause::Rc11),
            NeedsReauthorization,
        ),
        (50011, "invalid_request", None, Configuration),
        (70016, "authorization_pending", None, Pending),
        (50196, "invalid_grant", None, Transient),
    ];

    #[test]
    fn every_documented_code_is_classified() {
        let mut covered: Vec<u32> = CASES.iter().map(|c| c.0).collect();
        let mut known: Vec<u32> = known_codes().collect();
        covered.sort_unstable();
        known.sort_unstable();
        assert_eq!(covered, known, "test table and classifier table differ");
        for &(code, error, cause, kind) in CASES {
            let err = parse(&entra_body(error, code, "text as Microsoft prints it."));
            let d = classify(&err);
            assert_eq!(d.code, Some(code), "{code}");
            assert_eq!(d.cause, cause, "{code}");
            assert_eq!(d.kind, kind, "{code}");
            assert!(
                d.title.starts_with(&format!("AADSTS{code}: ")),
                "{}",
                d.title
            );
            assert!(!d.fix.is_empty(), "{code}");
        }
    }

    #[test]
    fn code_is_read_from_the_description_when_error_codes_is_absent() {
        let err = parse(
            r#"{"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys for app 'x' are expired.\r\nTrace ID: t"}"#,
        );
        assert!(err.error_codes.is_empty());
        let d = classify(&err);
        assert_eq!(d.code, Some(7_000_222));
        assert_eq!(d.cause, Some(RootCause::Rc14));
        assert_eq!(d.kind, Configuration);
    }

    #[test]
    fn all_fields_of_the_entra_shape_are_read() {
        let err = parse(&entra_body(
            "invalid_grant",
            70008,
            "The refresh token has expired.",
        ));
        assert_eq!(err.error, "invalid_grant");
        assert_eq!(err.error_codes, vec![70008]);
        assert_eq!(
            err.trace_id.as_deref(),
            Some("0b1c5e2a-8f35-4e2b-9f0e-7d3a2c1b0a00")
        );
        assert_eq!(
            err.correlation_id.as_deref(),
            Some("5f6e7d8c-1111-2222-3333-444455556666")
        );
        assert_eq!(
            err.description_line(),
            Some("AADSTS70008: The refresh token has expired.")
        );
        let shown = err.to_string();
        assert!(shown.contains("trace id 0b1c5e2a"), "{shown}");
        assert!(shown.contains("correlation id 5f6e7d8c"), "{shown}");
        let with_suberror = parse(
            r#"{"error":"invalid_grant","error_description":"AADSTS50076: x","suberror":"basic_action"}"#,
        );
        assert_eq!(with_suberror.suberror.as_deref(), Some("basic_action"));
    }

    #[test]
    fn invalid_grant_is_told_apart() {
        let revoked = classify(&parse(&entra_body("invalid_grant", 50173, "revoked")));
        assert_eq!(revoked.kind, NeedsReauthorization);
        let looped = classify(&parse(&entra_body("invalid_grant", 50196, "loop")));
        assert_eq!(looped.kind, Transient);
        let busy = classify(&parse(r#"{"error":"temporarily_unavailable"}"#));
        assert_eq!(busy.kind, Transient);
        let server = classify(&parse(&entra_body("server_error", 70008, "x")));
        assert_eq!(
            server.kind, Transient,
            "the error value wins when it is decisive"
        );
    }

    #[test]
    fn device_code_states() {
        let pending = classify(&parse(r#"{"error":"authorization_pending"}"#));
        assert_eq!(pending.kind, Pending);
        let slow = classify(&parse(r#"{"error":"slow_down"}"#));
        assert_eq!(slow.kind, Pending);
        let expired = classify(&parse(
            r#"{"error":"expired_token","error_description":"AADSTS70020: The provided value for the input parameter 'device_code' is not valid. This device code has expired."}"#,
        ));
        assert_eq!(expired.kind, DeviceCodeExpired);
        assert_eq!(expired.code, Some(70020));
    }

    #[test]
    fn unknown_codes_keep_the_raw_error() {
        let d = classify(&parse(&entra_body(
            "invalid_grant",
            12345,
            "Something new happened.",
        )));
        assert_eq!(d.code, Some(12345));
        assert_eq!(d.kind, NeedsReauthorization);
        assert_eq!(d.cause, None);
        assert!(
            d.title
                .contains("invalid_grant: AADSTS12345: Something new happened."),
            "{}",
            d.title
        );
        let d = classify(&parse(r#"{"error":"invalid_scope"}"#));
        assert_eq!((d.kind, d.cause), (Configuration, Some(RootCause::Rc1)));
        let d = classify(&parse(r#"{"error":"weird_new_error"}"#));
        assert_eq!(d.kind, Configuration);
        assert!(d.title.contains("weird_new_error"), "{}", d.title);
    }

    #[test]
    fn google_errors() {
        let d = classify(&parse(
            r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
        ));
        assert_eq!(d.code, None);
        assert_eq!(d.kind, NeedsReauthorization);
        assert!(d.title.contains("Google"), "{}", d.title);
        assert!(d.fix.contains("7 days"), "{}", d.fix);
        let d = classify(&parse(
            r#"{"error":"invalid_client","error_description":"The OAuth client was not found."}"#,
        ));
        assert_eq!(d.kind, Configuration);
        assert!(
            d.title.contains("The OAuth client was not found."),
            "{}",
            d.title
        );
        let d = classify(&parse(
            r#"{"error":"invalid_grant","error_description":"Bad Request"}"#,
        ));
        assert_eq!(d.kind, NeedsReauthorization);
    }

    #[test]
    fn diagnosis_displays_title_cause_and_fix() {
        let d = classify(&parse(&entra_body("invalid_request", 50194, "x")));
        let shown = d.to_string();
        assert!(shown.starts_with("AADSTS50194: "), "{shown}");
        assert!(shown.contains("[RC8]"), "{shown}");
        assert!(shown.contains("Fix: Set `tenant`"), "{shown}");
    }
}
