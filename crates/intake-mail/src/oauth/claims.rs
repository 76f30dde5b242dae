//! Reading who and what a token is for from its claims, without verifying it.
//!
//! For diagnosis only (docs/troubleshooting.md, "Token claims"): Microsoft access tokens for APIs we do not own may be opaque
//! or change format, so a token that is not a three-part JWT simply yields no claims. The
//! id_token is the stable place for the user's identity.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use intake_core::token::TokenIdentity;
use serde_json::Value;

/// The JSON payload of a JWT, if `token` is one.
pub fn payload(token: &str) -> Option<serde_json::Map<String, Value>> {
    let mut parts = token.split('.');
    let (_, body, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(body.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn text(m: &serde_json::Map<String, Value>, k: &str) -> Option<String> {
    match m.get(k)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// Identity from an access token and (preferred for the user name) an id_token.
pub fn identity(access_token: &str, id_token: Option<&str>) -> TokenIdentity {
    let at = payload(access_token).unwrap_or_default();
    let id = id_token.and_then(payload).unwrap_or_default();
    let user = |m: &serde_json::Map<String, Value>| {
        ["upn", "preferred_username", "email", "unique_name"]
            .iter()
            .find_map(|k| text(m, k))
    };
    let list = |k: &str| -> Vec<String> {
        match at.get(k) {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    };
    TokenIdentity {
        username: user(&id).or_else(|| user(&at)),
        tenant: text(&at, "tid").or_else(|| text(&id, "tid")),
        audience: text(&at, "aud"),
        issuer: text(&at, "iss").or_else(|| text(&id, "iss")),
        scopes: list("scp"),
        roles: list("roles"),
        client_id: ["azp", "appid", "client_id"]
            .iter()
            .find_map(|k| text(&at, k)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        format!("eyJhbGciOiJub25lIn0.{}.sig", URL_SAFE_NO_PAD.encode(claims))
    }

    #[test]
    fn reads_microsoft_claims_and_prefers_the_id_token_user() {
        let at = jwt(
            r#"{"aud":"https://outlook.office.com","tid":"t1","scp":"IMAP.AccessAsUser.All SMTP.Send","upn":"a@x","appid":"c1","iss":"https://sts.windows.net/t1/"}"#,
        );
        let idt = jwt(r#"{"preferred_username":"help@x","tid":"t1"}"#);
        let i = identity(&at, Some(&idt));
        assert_eq!(i.username.as_deref(), Some("help@x"));
        assert_eq!(i.audience.as_deref(), Some("https://outlook.office.com"));
        assert_eq!(i.scopes, ["IMAP.AccessAsUser.All", "SMTP.Send"]);
        assert_eq!(i.client_id.as_deref(), Some("c1"));
        assert_eq!(i.tenant.as_deref(), Some("t1"));
    }

    #[test]
    fn opaque_tokens_give_no_claims() {
        assert_eq!(identity("EwBopaque", None), TokenIdentity::default());
        assert!(payload("a.b").is_none());
        assert!(payload("a.!!!.c").is_none());
    }
}
