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
