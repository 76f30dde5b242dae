//! Certificate credentials: the client assertion JWT Microsoft documents (docs/troubleshooting.md, "Credentials and token lifetimes").
//!
//! Header `alg=PS256`, `typ=JWT`, `x5t#S256` = base64url SHA-256 of the certificate's DER;
//! claims `aud` = token endpoint, `iss` = `sub` = client id, a unique `jti`, and a five-minute
//! `nbf`/`iat`/`exp` window. Signed with jsonwebtoken (aws-lc-rs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// `client_assertion_type` for a JWT client assertion (RFC 7523).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    #[error("client_certificate is not a PEM certificate")]
    Certificate,
    #[error("client_key is not a PEM RSA private key: {0}")]
    Key(String),
    #[error("signing the client assertion failed: {0}")]
    Sign(String),
}

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: u64,
    iat: u64,
    exp: u64,
}

/// base64url SHA-256 thumbprint of the first certificate in `cert_pem`.
pub fn thumbprint_s256(cert_pem: &[u8]) -> Result<String, AssertionError> {
    let der = CertificateDer::from_pem_slice(cert_pem).map_err(|_| AssertionError::Certificate)?;
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(der.as_ref())))
}

/// A signed client assertion for `token_url`.
pub fn client_assertion(
    client_id: &str,
    token_url: &str,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<String, AssertionError> {
    crate::init_crypto();
    static N: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!(
        "{client_id}:{nanos}:{}:{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let h = Sha256::digest(seed.as_bytes());
    let jti = format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
        u16::from_be_bytes([h[4], h[5]]),
        u16::from_be_bytes([h[6], h[7]]) & 0xfff,
        u16::from_be_bytes([h[8], h[9]]) & 0xfff,
        u64::from_be_bytes([0, 0, h[10], h[11], h[12], h[13], h[14], h[15]])
    );
    let mut header = Header::new(Algorithm::PS256);
    header.typ = Some("JWT".into());
    header.x5t_s256 = Some(thumbprint_s256(cert_pem)?);
    let key = EncodingKey::from_rsa_pem(key_pem).map_err(|e| AssertionError::Key(e.to_string()))?;
    let claims = Claims {
        aud: token_url,
        iss: client_id,
        sub: client_id,
        jti,
        nbf: now,
        iat: now,
        exp: now + 300,
    };
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| AssertionError::Sign(e.to_string()))
}

/// The certificate's `notAfter` (Unix seconds), read from the DER with a minimal walker over
/// `Certificate → TBSCertificate → Validity` (no X.509 crate needed for one field).
pub fn certificate_not_after(cert_pem: &[u8]) -> Option<i64> {
    let der = CertificateDer::from_pem_slice(cert_pem).ok()?;
    let (_, cert, _) = tlv(der.as_ref())?; // Certificate SEQUENCE
    let (_, mut tbs, _) = tlv(cert)?; // TBSCertificate SEQUENCE
    let mut field = 0;
    loop {
        let (tag, value, rest) = tlv(tbs)?;
        if field == 0 && tag == 0xa0 {
            tbs = rest; // [0] version
            continue;
        }
        // serialNumber, signature, issuer, then validity.
        if field == 3 {
            let (_, _not_before, after) = tlv(value)?;
            let (t, not_after, _) = tlv(after)?;
            return der_time(t, not_after);
        }
        field += 1;
        tbs = rest;
    }
}

/// One DER tag-length-value: (tag, value, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = b
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |a, x| (a << 8) | usize::from(*x));
        (len, 2 + n)
    };
    let value = b.get(head..head.checked_add(len)?)?;
    Some((tag, value, &b[head + len..]))
}

/// UTCTime (`YYMMDDHHMMSSZ`, tag 0x17) or GeneralizedTime (`YYYYMMDDHHMMSSZ`, tag 0x18).
fn der_time(tag: u8, v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?.strip_suffix('Z')?;
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, o) = match tag {
        0x17 => {
            let y = num(0..2)?;
            (if y < 50 { 2000 + y } else { 1900 + y }, 2)
        }
        0x18 => (num(0..4)?, 4),
        _ => return None,
    };
    let days = intake_core::expiry::days_from_civil(
        year,
        u32::try_from(num(o..o + 2)?).ok()?,
        u32::try_from(num(o + 2..o + 4)?).ok()?,
    );
    Some(days * 86_400 + num(o + 4..o + 6)? * 3600 + num(o + 6..o + 8)? * 60 + num(o + 8..o + 10)?)
}
