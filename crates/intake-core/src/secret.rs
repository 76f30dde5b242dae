//! Where a configured secret comes from: `env:VAR`, `file:PATH` or the literal value.
//!
//! [`SecretRef`] is how `client_secret`, `client_certificate`, `client_key` and `ca_file` are
//! written in `intake.toml`. A literal is held as a `SecretString` and never printed: `Debug`,
//! `Display` and `Serialize` show `[REDACTED]` in its place. Reading the variable or file is the
//! binary's job (this crate does no I/O).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What `Debug`, `Display` and `Serialize` print instead of a literal secret. Parsing it back is
/// an error, so a redacted configuration cannot be saved over the real one by accident.
pub const REDACTED: &str = "[REDACTED]";

/// A secret's source.
#[derive(Clone)]
pub enum SecretRef {
    /// `env:VAR`: the value of an environment variable.
    Env(String),
    /// `file:PATH`: the contents of a file.
    File(PathBuf),
    /// Anything else: the value itself.
    Literal(SecretString),
}

/// Why a secret reference did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretRefError {
    #[error("the value is empty")]
    Empty,
    #[error("`env:` needs a variable name made of letters, digits and `_`, got {0:?}")]
    BadEnvName(String),
    #[error("`file:` needs a path")]
    EmptyPath,
    #[error("the value is the redaction placeholder {REDACTED}, not a secret")]
    Placeholder,
}

impl SecretRef {
    /// Parses `env:VAR`, `file:PATH` or a literal.
    pub fn parse(text: &str) -> Result<SecretRef, SecretRefError> {
        if let Some(var) = text.strip_prefix("env:") {
            let var = var.trim();
            let valid = var
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            return if valid {
                Ok(SecretRef::Env(var.to_string()))
            } else {
                Err(SecretRefError::BadEnvName(var.to_string()))
            };
        }
        if let Some(path) = text.strip_prefix("file:") {
            let path = path.trim();
            return if path.is_empty() {
                Err(SecretRefError::EmptyPath)
            } else {
                Ok(SecretRef::File(PathBuf::from(path)))
            };
        }
        if text.trim().is_empty() {
            return Err(SecretRefError::Empty);
        }
        if text.trim() == REDACTED {
            return Err(SecretRefError::Placeholder);
        }
        Ok(SecretRef::Literal(SecretString::from(text)))
    }

    /// Whether the secret is written in the configuration itself.
    pub fn is_literal(&self) -> bool {
        matches!(self, SecretRef::Literal(_))
    }

    /// The literal value, exposed explicitly at the point of use.
    pub fn literal(&self) -> Option<&str> {
        match self {
            SecretRef::Literal(s) => Some(s.expose_secret()),
            SecretRef::Env(_) | SecretRef::File(_) => None,
        }
    }
}

impl FromStr for SecretRef {
    type Err = SecretRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SecretRef::parse(s)
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(var) => f.debug_tuple("Env").field(var).finish(),
            SecretRef::File(path) => f.debug_tuple("File").field(path).finish(),
            SecretRef::Literal(_) => write!(f, "Literal({REDACTED})"),
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(var) => write!(f, "env:{var}"),
            SecretRef::File(path) => write!(f, "file:{}", path.display()),
            SecretRef::Literal(_) => f.write_str(REDACTED),
        }
    }
}

impl Serialize for SecretRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        SecretRef::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "Zq8~s3cr3t.VALUE_do-not-print";

    #[test]
    fn parses_the_three_forms() {
        assert!(
            matches!(SecretRef::parse("env:INTAKE_SECRET"), Ok(SecretRef::Env(v)) if v == "INTAKE_SECRET")
        );
        assert!(
            matches!(SecretRef::parse("file:/run/secrets/x"), Ok(SecretRef::File(p)) if p.as_path() == std::path::Path::new("/run/secrets/x"))
        );
        let lit = SecretRef::parse(SECRET).unwrap();
        assert!(lit.is_literal());
        assert_eq!(lit.literal(), Some(SECRET));
        assert_eq!(SecretRef::parse("").err(), Some(SecretRefError::Empty));
        assert_eq!(
            SecretRef::parse("file: ").err(),
            Some(SecretRefError::EmptyPath)
        );
        assert!(matches!(
            SecretRef::parse("env:1BAD"),
            Err(SecretRefError::BadEnvName(_))
        ));
        assert!(matches!(
            SecretRef::parse("env:"),
            Err(SecretRefError::BadEnvName(_))
        ));
        assert_eq!(
            SecretRef::parse(REDACTED).err(),
            Some(SecretRefError::Placeholder)
        );
    }

    #[test]
    fn literal_never_prints() {
        let lit = SecretRef::parse(SECRET).unwrap();
        let debug = format!("{lit:?}");
        let pretty = format!("{lit:#?}");
        let display = lit.to_string();
        let json = serde_json::to_string(&lit).unwrap();
        for out in [&debug, &pretty, &display, &json] {
            assert!(!out.contains(SECRET), "secret leaked: {out}");
            assert!(!out.contains("s3cr3t"), "secret leaked: {out}");
            assert!(out.contains(REDACTED), "{out}");
        }
        // Inside a containing struct's derived Debug, too.
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            client_secret: Option<SecretRef>,
        }
        let holder = format!(
            "{:?}",
            Holder {
                client_secret: Some(lit)
            }
        );
        assert!(!holder.contains(SECRET), "{holder}");
    }

    #[test]
    fn references_print_their_source() {
        let env = SecretRef::parse("env:MS_SECRET").unwrap();
        assert_eq!(format!("{env:?}"), r#"Env("MS_SECRET")"#);
        assert_eq!(env.to_string(), "env:MS_SECRET");
        let file = SecretRef::parse("file:/etc/intake/key.pem").unwrap();
        assert_eq!(file.to_string(), "file:/etc/intake/key.pem");
        let back: SecretRef = serde_json::from_str(&serde_json::to_string(&file).unwrap()).unwrap();
        assert_eq!(back.to_string(), "file:/etc/intake/key.pem");
    }

    #[test]
    fn serialized_literal_does_not_parse_back_as_a_secret() {
        let lit = SecretRef::parse(SECRET).unwrap();
        let json = serde_json::to_string(&lit).unwrap();
        assert!(serde_json::from_str::<SecretRef>(&json).is_err());
    }
}
