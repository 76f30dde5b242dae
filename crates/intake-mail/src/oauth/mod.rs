//! OAuth 2.0 against Microsoft Entra (every cloud), Google and custom providers.
//!
//! Built on the `oauth2` crate (PKCE, CSRF state, the four grants, device-code polling) with two
//! additions it does not have: the token-endpoint error type keeps Microsoft's `error_codes`,
//! `trace_id` and `correlation_id` so errors decode into root causes
//! ([`intake_core::aadsts::classify`]), and certificate credentials send a client assertion
//! ([`assertion`]). Secrets stay in `SecretString` and are exposed only into the request.

pub mod assertion;
pub mod claims;

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use intake_core::aadsts::{Diagnosis, ErrorKind, TokenEndpointError, classify};
use intake_core::integration::{ClientCredential, ResolvedIntegration};
use intake_core::preset::Provider;
use intake_core::token::TokenSet;
use oauth2::basic::{
    BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    DeviceAuthorizationUrl, EmptyExtraDeviceAuthorizationFields, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, StandardDeviceAuthorizationResponse, StandardRevocableToken,
    StandardTokenResponse, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::http::{self, HttpError, HttpOptions};
use crate::secret::{self, SecretError};

/// Token-endpoint error body, Microsoft's shape (other providers send a subset).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_codes: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suberror: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        if let Some(d) = &self.error_description {
            write!(f, ": {}", d.lines().next().unwrap_or_default())?;
        }
        Ok(())
    }
}

impl oauth2::ErrorResponse for ErrorBody {}

impl From<ErrorBody> for TokenEndpointError {
    fn from(b: ErrorBody) -> Self {
        TokenEndpointError {
            error: b.error,
            error_description: b.error_description,
            error_codes: b.error_codes,
            suberror: b.suberror,
            trace_id: b.trace_id,
            correlation_id: b.correlation_id,
        }
    }
}

/// The id_token next to the standard token fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl ExtraTokenFields for IdTokenField {}

type TokenResp = StandardTokenResponse<IdTokenField, BasicTokenType>;
type Client = oauth2::Client<
    ErrorBody,
    TokenResp,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointMaybeSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// What went wrong talking to the identity provider.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The token endpoint answered with an OAuth error: decoded, with Microsoft's ids kept.
    #[error("{diagnosis} [error={}{}{}]", .raw.error,
        .raw.trace_id.as_ref().map(|t| format!(", trace_id={t}")).unwrap_or_default(),
        .raw.correlation_id.as_ref().map(|t| format!(", correlation_id={t}")).unwrap_or_default())]
    Endpoint {
        diagnosis: Box<Diagnosis>,
        raw: Box<TokenEndpointError>,
    },
    #[error(
        "the token endpoint answered HTTP {status} with a body that is not an OAuth response ({len} bytes)"
    )]
    Unreadable { status: u16, len: usize },
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Assertion(#[from] assertion::AssertionError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("there is no refresh token: sign in again (was `offline_access` granted?)")]
    NoRefreshToken,
}

impl OAuthError {
    /// How to react: re-authorize, fix configuration, retry, keep polling.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Endpoint { diagnosis, .. } => diagnosis.kind,
            Self::Http(_) | Self::Unreadable { .. } => ErrorKind::Transient,
            Self::NoRefreshToken => ErrorKind::NeedsReauthorization,
            Self::Secret(_) | Self::Assertion(_) | Self::Config(_) => ErrorKind::Configuration,
        }
    }
}

fn endpoint_error(b: TokenEndpointError) -> OAuthError {
    OAuthError::Endpoint {
        diagnosis: Box::new(classify(&b)),
        raw: Box::new(b),
    }
}

fn map_err(e: RequestTokenError<HttpError, ErrorBody>) -> OAuthError {
    match e {
        RequestTokenError::ServerResponse(b) => endpoint_error(b.into()),
        RequestTokenError::Request(h) => OAuthError::Http(h),
        // The body may be a token response that failed to parse: never echo it.
        RequestTokenError::Parse(_, body) => OAuthError::Unreadable {
            status: 0,
            len: body.len(),
        },
        RequestTokenError::Other(s) => OAuthError::Config(s),
    }
}

/// A device-code sign-in in progress: show `message` (or the URI and code) to the user.
#[derive(Debug, Clone)]
pub struct DeviceSignIn {
    pub user_code: String,
    pub verification_uri: String,
    pub expires_in: Duration,
    pub interval: Duration,
    details: StandardDeviceAuthorizationResponse,
}

impl DeviceSignIn {
    pub fn message(&self) -> String {
        format!(
            "To sign in, open {} and enter the code {} (valid for {} minutes).",
            self.verification_uri,
            self.user_code,
            self.expires_in.as_secs() / 60
        )
    }
}

/// An authorization-code request: send the user to `url`; keep `state` and `verifier` for the
/// callback (they are stored in the database, so any node can finish it).
#[derive(Debug)]
pub struct AuthorizationStart {
    pub url: String,
    pub state: String,
    pub verifier: SecretString,
}

/// A configured OAuth client for one integration.
pub struct OAuthClient {
    integration: ResolvedIntegration,
    client: Client,
    http: reqwest::Client,
    secret: Option<SecretString>,
    certificate: Option<(Vec<u8>, SecretString)>,
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("integration", &self.integration.name)
            .finish_non_exhaustive()
    }
}

/// Add the certificate client assertion (if configured) to any token request type: they share
/// `add_extra_param` but no trait.
macro_rules! with_assertion {
    ($client:expr, $req:expr) => {
        match $client.assertion()? {
            Some(a) => $req
                .add_extra_param("client_assertion_type", assertion::ASSERTION_TYPE)
                .add_extra_param("client_assertion", a),
            None => $req,
        }
    };
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl OAuthClient {
    /// Resolve the integration's secrets and build the client.
    pub fn new(integration: &ResolvedIntegration) -> Result<Self, OAuthError> {
        let e = &integration.endpoints;
        let bad =
            |what: &str, u: &str| OAuthError::Config(format!("{what} {u:?} is not a valid URL"));
        let ca_pem = match &integration.ca_file {
            Some(r) => Some(secret::resolve(r)?.expose_secret().as_bytes().to_vec()),
            None => None,
        };
        let http = http::client(&HttpOptions {
            proxy: integration.proxy.clone(),
            no_proxy: integration.no_proxy.clone(),
            ca_pem,
            timeout: None,
            timeouts: Default::default(),
        })?;
        let device = match &e.device_authorization_url {
            Some(u) => Some(
                DeviceAuthorizationUrl::new(u.clone())
                    .map_err(|_| bad("device_authorization_url", u))?,
            ),
            None => None,
        };
        let mut client: Client = oauth2::Client::new(ClientId::new(integration.client_id.clone()))
            .set_auth_uri(
                AuthUrl::new(e.authorize_url.clone())
                    .map_err(|_| bad("authorize_url", &e.authorize_url))?,
            )
            .set_token_uri(
                TokenUrl::new(e.token_url.clone()).map_err(|_| bad("token_url", &e.token_url))?,
            )
            .set_device_authorization_url_option(device)
            .set_auth_type(AuthType::RequestBody);
        let (mut secret, mut certificate) = (None, None);
        match &integration.credential {
            ClientCredential::None => {}
            ClientCredential::Secret { secret: s, .. } => {
                let s = secret::resolve(s)?;
                client = client.set_client_secret(ClientSecret::new(s.expose_secret().to_string()));
                secret = Some(s);
            }
            ClientCredential::Certificate {
                certificate: c,
                key,
            } => {
                let cert = secret::resolve(c)?.expose_secret().as_bytes().to_vec();
                assertion::thumbprint_s256(&cert)?;
                certificate = Some((cert, secret::resolve(key)?));
            }
        }
        Ok(Self {
            integration: integration.clone(),
            client,
            http,
            secret,
            certificate,
        })
    }

    pub fn integration(&self) -> &ResolvedIntegration {
        &self.integration
    }

    /// Whether a client secret is configured (for diagnostics; the secret itself stays inside).
    pub fn has_secret(&self) -> bool {
        self.secret.is_some()
    }

    fn assertion(&self) -> Result<Option<String>, OAuthError> {
        match &self.certificate {
            Some((cert, key)) => Ok(Some(assertion::client_assertion(
                &self.integration.client_id,
                &self.integration.endpoints.token_url,
                cert,
                key.expose_secret().as_bytes(),
            )?)),
            None => Ok(None),
        }
    }

    fn scopes(scopes: &[String]) -> impl Iterator<Item = Scope> + '_ {
        scopes.iter().map(|s| Scope::new(s.clone()))
    }

    /// Start an authorization-code flow with PKCE (S256) and a random `state`, asking the user to
    /// pick the account (`prompt=select_account`) with the mailbox as `login_hint` (RC11).
    pub fn start_authorization(
        &self,
        mailbox: &str,
        redirect_uri: &str,
        scopes: &[String],
    ) -> Result<AuthorizationStart, OAuthError> {
        let redirect = RedirectUrl::new(redirect_uri.to_string()).map_err(|_| {
            OAuthError::Config(format!("redirect URI {redirect_uri:?} is not a URL"))
        })?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = self
            .client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(Self::scopes(scopes))
            .set_pkce_challenge(challenge)
            .set_redirect_uri(Cow::Owned(redirect))
            .add_extra_param("login_hint", mailbox.to_string());
        req = match self.integration.provider {
            // Google issues a refresh token only with access_type=offline, and again only on consent.
            Provider::Google => req
                .add_extra_param("access_type", "offline")
                .add_extra_param("prompt", "consent select_account"),
            Provider::Microsoft => req.add_extra_param("prompt", "select_account"),
            // Generic servers may not know select_account (oidc-provider rejects it).
            Provider::Custom => req,
        };
        let (url, state) = req.url();
        Ok(AuthorizationStart {
            url: url.to_string(),
            state: state.secret().clone(),
            verifier: SecretString::from(verifier.secret().clone()),
        })
    }

    /// Redeem the authorization code from the callback.
    pub async fn exchange_code(
        &self,
        code: &str,
        verifier: &SecretString,
        redirect_uri: &str,
        scopes: &[String],
    ) -> Result<TokenSet, OAuthError> {
        let redirect = RedirectUrl::new(redirect_uri.to_string()).map_err(|_| {
            OAuthError::Config(format!("redirect URI {redirect_uri:?} is not a URL"))
        })?;
        let http = http::OAuthHttp(self.http.clone());
        let mut req = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.expose_secret().to_string()))
            .set_redirect_uri(Cow::Owned(redirect));
        req = with_assertion!(self, req);
        let r = req.request_async(&http).await.map_err(map_err)?;
        Ok(token_set(&r, scopes, None))
    }

    /// Redeem a refresh token. A response without a new refresh token keeps `refresh_token`.
    pub async fn refresh(
        &self,
        refresh_token: &SecretString,
        scopes: &[String],
    ) -> Result<TokenSet, OAuthError> {
        let http = http::OAuthHttp(self.http.clone());
        let rt = RefreshToken::new(refresh_token.expose_secret().to_string());
        let mut req = self
            .client
            .exchange_refresh_token(&rt)
            .add_scopes(Self::scopes(scopes));
        req = with_assertion!(self, req);
        let r = req.request_async(&http).await.map_err(map_err)?;
        Ok(token_set(&r, scopes, Some(refresh_token)))
    }

    /// App-only token (client credentials with a secret or a certificate).
    pub async fn client_credentials(&self, scopes: &[String]) -> Result<TokenSet, OAuthError> {
        let http = http::OAuthHttp(self.http.clone());
        let mut req = self
            .client
            .exchange_client_credentials()
            .add_scopes(Self::scopes(scopes));
        req = with_assertion!(self, req);
        let r = req.request_async(&http).await.map_err(map_err)?;
        Ok(token_set(&r, scopes, None))
    }

    /// Start a device-code sign-in.
    pub async fn start_device(&self, scopes: &[String]) -> Result<DeviceSignIn, OAuthError> {
        let http = http::OAuthHttp(self.http.clone());
        let req = self
            .client
            .exchange_device_code()
            .map_err(|e| OAuthError::Config(e.to_string()))?;
        let details: StandardDeviceAuthorizationResponse = req
            .add_scopes(Self::scopes(scopes))
            .request_async::<_, EmptyExtraDeviceAuthorizationFields>(&http)
            .await
            .map_err(map_err)?;
        Ok(DeviceSignIn {
            user_code: details.user_code().secret().clone(),
            verification_uri: details.verification_uri().to_string(),
            expires_in: details.expires_in(),
            interval: details.interval(),
            details,
        })
    }

    /// Poll until the user finished the device sign-in (honouring `slow_down`), the code expired,
    /// or the provider refused.
    pub async fn finish_device(
        &self,
        sign_in: &DeviceSignIn,
        scopes: &[String],
    ) -> Result<TokenSet, OAuthError> {
        let http = http::OAuthHttp(self.http.clone());
        let r = self
            .client
            .exchange_device_access_token(&sign_in.details)
            .request_async(&http, tokio::time::sleep, Some(sign_in.expires_in))
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(b) => endpoint_error(TokenEndpointError {
                    error: serde_json::to_value(b.error())
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_else(|| "invalid_request".into()),
                    error_description: b.error_description().cloned(),
                    ..Default::default()
                }),
                RequestTokenError::Request(h) => OAuthError::Http(h),
                RequestTokenError::Parse(_, body) => OAuthError::Unreadable {
                    status: 0,
                    len: body.len(),
                },
                RequestTokenError::Other(s) if s.contains("timed out") || s.contains("expired") => {
                    endpoint_error(TokenEndpointError {
                        error: "expired_token".into(),
                        error_description: Some(s),
                        ..Default::default()
                    })
                }
                RequestTokenError::Other(s) => OAuthError::Config(s),
            })?;
        Ok(token_set(&r, scopes, None))
    }
}

fn token_set(r: &TokenResp, requested: &[String], old_refresh: Option<&SecretString>) -> TokenSet {
    let expires_in = r.expires_in().map(|d| d.as_secs() as i64).unwrap_or(3600);
    TokenSet {
        access_token: SecretString::from(r.access_token().secret().clone()),
        refresh_token: r
            .refresh_token()
            .map(|t| SecretString::from(t.secret().clone()))
            .or_else(|| old_refresh.cloned()),
        expires_at: now() + expires_in,
        scopes: r
            .scopes()
            .map(|s| s.iter().map(|s| s.to_string()).collect())
            .unwrap_or_else(|| requested.to_vec()),
        id_token: r.extra_fields().id_token.clone().map(SecretString::from),
    }
}
