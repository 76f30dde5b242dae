//! Secrets in configuration tables are write-only: an answer shows `{"set": true}` (with the
//! expiry for a client secret, and the reference for `env:`/`file:` sources), never the value.
//! `intake config export` writes `[REDACTED]` for literal secrets (which the loader refuses, so
//! an export cannot be loaded over the real configuration by accident).

use intake_store::config_store::Kind;
use serde_json::{Value, json};

/// Keys of an integration that hold a secret (or a reference to one).
pub const INTEGRATION_SECRETS: &[&str] = &[
    "client_secret",
    "client_certificate",
    "client_key",
    "ca_file",
];

/// `env:VAR` / `file:PATH`: a reference, shown as is; anything else is the secret itself.
fn reference(s: &str) -> Option<&str> {
    (s.starts_with("env:") || s.starts_with("file:")).then_some(s)
}

/// A table for an API answer.
pub fn for_answer(kind: Kind, body: &Value) -> Value {
    let mut out = body.clone();
    let Some(m) = out.as_object_mut() else {
        return out;
    };
    match kind {
        Kind::Integration => {
            let expires = m.get("client_secret_expires").cloned();
            for k in INTEGRATION_SECRETS {
                if let Some(Value::String(s)) = m.get(*k) {
                    let mut shown = json!({"set": true});
                    if let Some(r) = reference(s) {
                        shown["source"] = json!(r);
                    }
                    if *k == "client_secret"
                        && let Some(e) = &expires
                    {
                        shown["expires"] = e.clone();
                    }
                    m.insert((*k).to_string(), shown);
                }
            }
        }
        Kind::Channel => {
            if let Some(Value::String(a)) = m.get("auth")
                && let Some(rest) = a.strip_prefix("password:")
            {
                let mut shown = json!({"set": true, "kind": "password"});
                if let Some(r) = reference(rest) {
                    shown["source"] = json!(r);
                }
                m.insert("auth".into(), shown);
            }
            if let Some(Value::String(p)) = m.get("proxy") {
                let p = intake_mail::net::redact(p);
                m.insert("proxy".into(), json!(p));
            }
        }
    }
    out
}

/// A table for `intake config export`: literal secrets become `[REDACTED]`.
pub fn for_export(kind: Kind, body: &Value) -> Value {
    let mut out = body.clone();
    let Some(m) = out.as_object_mut() else {
        return out;
    };
    let placeholder = json!(intake_core::secret::REDACTED);
    match kind {
        Kind::Integration => {
            for k in INTEGRATION_SECRETS {
                if let Some(Value::String(s)) = m.get(*k)
                    && reference(s).is_none()
                {
                    m.insert((*k).to_string(), placeholder.clone());
                }
            }
        }
        Kind::Channel => {
            if let Some(Value::String(a)) = m.get("auth")
                && let Some(rest) = a.strip_prefix("password:")
                && reference(rest).is_none()
            {
                m.insert(
                    "auth".into(),
                    json!(format!("password:{}", intake_core::secret::REDACTED)),
                );
            }
            if let Some(Value::String(p)) = m.get("proxy")
                && p.contains('@')
            {
                let p = intake_mail::net::redact(p);
                m.insert("proxy".into(), json!(p));
            }
        }
    }
    out
}

/// Merge `patch` into `body` (JSON merge patch, RFC 7396): `null` removes a key. A secret key
/// sent as `{"set": true}` (an answer posted back) keeps the stored value.
pub fn merge(body: &mut Value, patch: &Value) {
    let (Some(b), Some(p)) = (body.as_object_mut(), patch.as_object()) else {
        *body = patch.clone();
        return;
    };
    for (k, v) in p {
        match v {
            Value::Null => {
                b.remove(k);
            }
            Value::Object(o) if o.get("set") == Some(&Value::Bool(true)) => {}
            _ => {
                b.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_secrets_never_show_and_references_do() {
        let i = json!({"name": "m", "client_secret": "s3cr3t-VALUE", "client_secret_expires": "2027-01-31",
                       "client_key": "file:/etc/intake/key.pem", "tenant": "t"});
        let a = for_answer(Kind::Integration, &i);
        assert!(!a.to_string().contains("s3cr3t-VALUE"));
        assert_eq!(
            a["client_secret"],
            json!({"set": true, "expires": "2027-01-31"})
        );
        assert_eq!(a["client_key"]["source"], "file:/etc/intake/key.pem");
        assert_eq!(a["tenant"], "t");
        let e = for_export(Kind::Integration, &i);
        assert_eq!(e["client_secret"], "[REDACTED]");
        assert_eq!(e["client_key"], "file:/etc/intake/key.pem");
        let c = json!({"name": "c", "auth": "password:hunter2-long", "proxy": "http://u:pw9@proxy:3128"});
        let a = for_answer(Kind::Channel, &c).to_string();
        assert!(!a.contains("hunter2-long") && !a.contains("pw9"), "{a}");
        let e = for_export(Kind::Channel, &c).to_string();
        assert!(!e.contains("hunter2-long") && !e.contains("pw9"), "{e}");
        let c = json!({"name": "c", "auth": "oauth:m"});
        assert_eq!(for_answer(Kind::Channel, &c)["auth"], "oauth:m");
    }

    #[test]
    fn merge_patch_removes_nulls_and_keeps_secrets_sent_back_as_set() {
        let mut b = json!({"name": "m", "client_secret": "s", "tenant": "t", "proxy": "http://p"});
        merge(
            &mut b,
            &json!({"client_secret": {"set": true}, "tenant": "u", "proxy": null}),
        );
        assert_eq!(b, json!({"name": "m", "client_secret": "s", "tenant": "u"}));
    }
}
