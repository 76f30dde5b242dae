//! Resolving secret references from the configuration: `env:VAR`, `file:PATH` or a literal.
//! The value never appears in errors.

use intake_core::secret::SecretRef;
use secrecy::SecretString;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    #[error("cannot read secret file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A password that resolved to nothing: refused before anything is sent to a server.
    #[error("the password {0} is empty: nothing was sent to the server")]
    Empty(String),
}

/// The secret's value. Files are read whole and trimmed of a trailing newline.
pub fn resolve(r: &SecretRef) -> Result<SecretString, SecretError> {
    match r {
        SecretRef::Env(var) => std::env::var(var)
            .map(SecretString::from)
            .map_err(|_| SecretError::MissingEnv(var.clone())),
        SecretRef::File(path) => std::fs::read_to_string(path)
            .map(|s| SecretString::from(s.trim_end_matches(['\r', '\n']).to_string()))
            .map_err(|source| SecretError::File {
                path: path.display().to_string(),
                source,
            }),
        SecretRef::Literal(s) => Ok(s.clone()),
    }
}

/// A password's value ([`resolve`]); an empty one (an empty variable or file, or a literal
/// `password:` with nothing after it) is [`SecretError::Empty`], so a login is never tried with
/// it.
pub fn resolve_password(r: &SecretRef) -> Result<SecretString, SecretError> {
    use secrecy::ExposeSecret;
    let v = resolve(r)?;
    if !v.expose_secret().is_empty() {
        return Ok(v);
    }
    Err(SecretError::Empty(match r {
        SecretRef::Env(var) => format!("from environment variable {var}"),
        SecretRef::File(path) => format!("from file {}", path.display()),
        SecretRef::Literal(_) => "written in the configuration".to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn an_empty_password_is_refused_naming_its_source_never_a_value() {
        let lit = |s: &str| SecretRef::Literal(SecretString::from(s.to_string()));
        assert_eq!(resolve_password(&lit("pw")).unwrap().expose_secret(), "pw");
        let e = resolve_password(&lit("")).unwrap_err().to_string();
        assert_eq!(
            e,
            "the password written in the configuration is empty: nothing was sent to the server"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "\n").unwrap();
        let e = resolve_password(&SecretRef::File(f.clone()))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("from file {}", f.display())), "{e}");
    }
}
