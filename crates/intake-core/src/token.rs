//! OAuth tokens as the rest of Intake sees them.
//!
//! Secrets are `SecretString`: their `Debug` prints `[REDACTED]`, they are zeroised on drop and
//! must be exposed explicitly (`expose_secret()`), once, at the point of use (the HTTP request or
//! the SASL exchange). [`TokenIdentity`] holds only non-secret claims, for display and diagnosis.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// A token set from a token endpoint.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: SecretString,
    /// Absent for client credentials, or when `offline_access` was not granted.
    pub refresh_token: Option<SecretString>,
    /// When the access token expires (Unix seconds).
    pub expires_at: i64,
    /// Scopes granted, as the token endpoint returned them.
    pub scopes: Vec<String>,
    pub id_token: Option<SecretString>,
}

/// Who and what a token is for, read from the id_token or access-token claims (diagnosis only:
/// Microsoft access tokens may be opaque and their format may change).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenIdentity {
    /// `upn`, else `preferred_username`, else `email`, else `unique_name`.
    pub username: Option<String>,
    /// `tid`.
    pub tenant: Option<String>,
    /// `aud` of the access token.
    pub audience: Option<String>,
    /// `iss`.
    pub issuer: Option<String>,
    /// `scp` (delegated) split on spaces.
    pub scopes: Vec<String>,
    /// `roles` (application permissions).
    pub roles: Vec<String>,
    /// `azp` / `appid`.
    pub client_id: Option<String>,
}
