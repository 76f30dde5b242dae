//! Encryption at rest for secrets the store keeps (OAuth tokens, PKCE verifiers).
//!
//! Why: a copy of the database (a backup, a replica, a stolen laptop's `intake.db`) must not
//! give anyone a working refresh token for a customer's mailbox. Secrets are sealed with
//! **XChaCha20-Poly1305** under a key that lives *outside* the database (environment or a
//! 0600 key file), so the database alone is useless to an attacker.
//!
//! - A random 24-byte nonce per seal: XChaCha's 192-bit nonces are safe to draw at random for
//!   any realistic number of rows, so no counter has to be kept in sync across nodes.
//! - **AAD binds a ciphertext to its row** (e.g. integration + mailbox): a ciphertext copied
//!   into another row fails to open instead of silently handing over another mailbox's token.
//! - **Rotation**: a [`Keyring`] has one current key (all new seals) and any number of old keys
//!   (opening only). Every [`Sealed`] records the id of the key that sealed it (the first 16 hex
//!   characters of the SHA-256 of the key), so old rows stay readable until they are re-sealed.
//! - Keys and opened plaintext are zeroised on drop; errors never contain key material or
//!   plaintext.
//!
//! Where the key comes from ([`Keyring::from_env_or_file`]): `INTAKE_SECRET_KEY` (base64 of 32
//! bytes) plus optional `INTAKE_SECRET_KEY_OLD` (comma-separated, base64), else a key file that
//! is created with 32 random bytes and mode 0600 on first run. The key file's first key line is
//! the current key and further lines are old keys; blank lines and `#` comments are ignored.

use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// Environment variable holding the current key (base64 of 32 bytes).
pub const KEY_ENV: &str = "INTAKE_SECRET_KEY";
/// Environment variable holding old keys still accepted for opening (comma-separated base64).
pub const OLD_KEYS_ENV: &str = "INTAKE_SECRET_KEY_OLD";

/// Length of a key in bytes.
pub const KEY_LEN: usize = 32;
/// Length of an XChaCha20-Poly1305 nonce in bytes.
pub const NONCE_LEN: usize = 24;

/// Errors from sealing, opening and loading keys. Messages never contain key material or
/// plaintext (not even a fragment of a malformed key).
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("{source_name} is not a valid key: {problem}")]
    BadKey {
        /// Where the key came from: an environment variable name or a file path.
        source_name: String,
        problem: &'static str,
    },
    #[error(
        "key file {path} is accessible by group or others (mode {mode:03o}); run `chmod 600 {path}`"
    )]
    KeyFileTooOpen { path: String, mode: u32 },
    #[error("key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no random numbers from the operating system: {0}")]
    Random(String),
    #[error("sealed with key {0}, which is not in the keyring (was an old key removed?)")]
    UnknownKey(String),
    #[error("sealed value has a {0}-byte nonce, expected 24")]
    BadNonce(usize),
    #[error(
        "sealed value failed authentication (wrong key, copied from another row, or tampered with)"
    )]
    Open,
    #[error("sealing failed")]
    Seal,
}

/// A sealed secret as stored in a row: which key sealed it, the nonce and the ciphertext (which
/// ends in the 16-byte Poly1305 tag). Nothing in here is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

struct KeyEntry {
    id: String,
    cipher: XChaCha20Poly1305,
    /// The key that marks Intake's own outgoing mail (see [`Keyring::sent_mail_keys`]).
    sent: Zeroizing<[u8; KEY_LEN]>,
}

impl KeyEntry {
    fn new(key: &[u8; KEY_LEN]) -> Self {
        let mut h = Sha256::new();
        h.update(b"intake sent-mail header key v1\0");
        h.update(key);
        let mut sent = Zeroizing::new([0u8; KEY_LEN]);
        sent.copy_from_slice(&h.finalize());
        Self {
            id: key_id(key),
            cipher: XChaCha20Poly1305::new(key.into()),
            sent,
        }
    }
}

/// The current key (sealing and opening) and old keys (opening only, for rotation).
///
/// `Debug` shows only key ids.
pub struct Keyring {
    current: KeyEntry,
    old: Vec<KeyEntry>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field(
                "old",
                &self.old.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The id of a key: the first 16 hex characters of its SHA-256.
pub fn key_id(key: &[u8; KEY_LEN]) -> String {
    let digest = Sha256::digest(key);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn random_key() -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    let mut k = Key::try_generate().map_err(|e| CryptoError::Random(e.to_string()))?;
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    out.copy_from_slice(k.as_slice());
    k.as_mut_slice().zeroize();
    Ok(out)
}

fn decode_key(b64: &str, source_name: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    let bad = |problem| CryptoError::BadKey {
        source_name: source_name.to_string(),
        problem,
    };
    // The decoder's own error names the offending character: do not pass it on.
    let bytes = Zeroizing::new(
        B64.decode(b64.trim())
            .map_err(|_| bad("not standard base64"))?,
    );
    if bytes.len() != KEY_LEN {
        return Err(bad("must be base64 of exactly 32 bytes"));
    }
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    out.copy_from_slice(&bytes);
    Ok(out)
}

impl Keyring {
    /// A keyring with one key and no old keys.
    pub fn new(current: &[u8; KEY_LEN]) -> Self {
        Self {
            current: KeyEntry::new(current),
            old: Vec::new(),
        }
    }

    /// Add an old key, accepted for opening only. Adding the current key or a key already
    /// present does nothing.
    pub fn with_old_key(mut self, old: &[u8; KEY_LEN]) -> Self {
        let id = key_id(old);
        if id != self.current.id && !self.old.iter().any(|k| k.id == id) {
            self.old.push(KeyEntry::new(old));
        }
        self
    }

    /// A keyring with a fresh random key that exists only in memory (tests, one-off tools).
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self::new(&*random_key()?))
    }

    /// A keyring from base64 keys: the current one and old ones.
    pub fn from_base64(current: &str, old: &[&str]) -> Result<Self, CryptoError> {
        let mut ring = Self::new(&*decode_key(current, "current key")?);
        for o in old {
            ring = ring.with_old_key(&*decode_key(o, "old key")?);
        }
        Ok(ring)
    }

    /// The keyring the service runs with.
    ///
    /// If `INTAKE_SECRET_KEY` is set (and not empty) it is the current key, base64 of 32 bytes.
    /// Otherwise the key file at `path` is used, and created with a random key (mode 0600) if it
    /// does not exist yet; a key file that group or others can access is refused. Old keys come
    /// from `INTAKE_SECRET_KEY_OLD` (comma-separated base64) and from further lines of the key
    /// file.
    pub fn from_env_or_file(path: &Path) -> Result<Self, CryptoError> {
        let env = |name| {
            std::env::var(name)
                .ok()
                .map(Zeroizing::new)
                .filter(|v| !v.trim().is_empty())
        };
        Self::from_sources(env(KEY_ENV), env(OLD_KEYS_ENV), path)
    }

    fn from_sources(
        env_key: Option<Zeroizing<String>>,
        env_old: Option<Zeroizing<String>>,
        path: &Path,
    ) -> Result<Self, CryptoError> {
        let mut ring = match env_key {
            Some(k) => Self::new(&*decode_key(&k, KEY_ENV)?),
            None => Self::from_file(path)?,
        };
        if let Some(old) = env_old {
            for o in old.split(',').filter(|o| !o.trim().is_empty()) {
                ring = ring.with_old_key(&*decode_key(o, OLD_KEYS_ENV)?);
            }
        }
        Ok(ring)
    }

    /// Load the key file at `path`, creating it with a random key on first use.
    pub fn from_file(path: &Path) -> Result<Self, CryptoError> {
        let io = |source| CryptoError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                create_key_file(path)?;
                File::open(path).map_err(io)?
            }
            Err(e) => return Err(io(e)),
        };
        // Check the file we actually opened (not the path again), so a swap cannot slip in.
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(io(std::io::Error::other("not a regular file")));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CryptoError::KeyFileTooOpen {
                path: path.display().to_string(),
                mode,
            });
        }
        let mut text = Zeroizing::new(String::new());
        (&file).read_to_string(&mut text).map_err(io)?;
        let name = path.display().to_string();
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let Some(first) = lines.next() else {
            return Err(CryptoError::BadKey {
                source_name: name,
                problem: "the file holds no key",
            });
        };
        let mut ring = Self::new(&*decode_key(first, &name)?);
        for l in lines {
            ring = ring.with_old_key(&*decode_key(l, &name)?);
        }
        Ok(ring)
    }

    /// Keys for the HMAC in the header that marks Intake's own outgoing mail, derived from each
    /// key (SHA-256 of a fixed label and the key), the current one first: mail is marked with
    /// the first and recognised by any, so a rotation does not make Intake ingest its own mail.
    pub fn sent_mail_keys(&self) -> Vec<Zeroizing<[u8; KEY_LEN]>> {
        std::iter::once(&self.current)
            .chain(&self.old)
            .map(|k| k.sent.clone())
            .collect()
    }

    /// Id of the key new seals use.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// Ids of all keys, the current one first.
    pub fn key_ids(&self) -> Vec<&str> {
        std::iter::once(&self.current)
            .chain(&self.old)
            .map(|k| k.id.as_str())
            .collect()
    }

    /// Seal `plaintext` with the current key and a fresh random nonce. `aad` must name the row
    /// the value belongs to; [`Keyring::open`] needs the same `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, CryptoError> {
        let nonce = XNonce::try_generate().map_err(|e| CryptoError::Random(e.to_string()))?;
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        Ok(Sealed {
            key_id: self.current.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Open a sealed value with the key it names. Fails if the key is not in the keyring, the
    /// `aad` differs from the one it was sealed with, or any byte was changed.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let key = std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| CryptoError::UnknownKey(sealed.key_id.clone()))?;
        let nonce = XNonce::try_from(sealed.nonce.as_slice())
            .map_err(|_| CryptoError::BadNonce(sealed.nonce.len()))?;
        key.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &sealed.ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Open)
    }

    /// Whether a sealed value uses an old key and should be re-sealed with the current one.
    pub fn needs_reseal(&self, sealed: &Sealed) -> bool {
        sealed.key_id != self.current.id
    }
}

/// Create the key file with a random key, atomically: the key is written to a private
/// temporary file which is then hard-linked into place, so a concurrent reader sees either no
/// file or the whole key, and of two processes racing on first run exactly one key wins (the
/// loser simply reads the winner's file).
fn create_key_file(path: &Path) -> Result<(), CryptoError> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |source| CryptoError::KeyFile { path: p, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
    }
    let key = random_key()?;
    let mut line = Zeroizing::new(B64.encode(key.as_slice()));
    line.push('\n');
    let tmp = tmp_path(path);
    let write = |p: &Path| -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(p)?;
        f.write_all(line.as_bytes())?;
        f.sync_all()
    };
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&tmp)(e));
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        // Another process created it first: use theirs.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(()),
        // A filesystem without hard links: create the file in place (still create_new).
        Err(_) => match write(path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => return Err(io(path)(e)),
        },
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the new directory entry durable; failure here is not worth refusing to start.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    name.push(format!(".tmp.{}.{nanos}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring::generate().unwrap()
    }

    #[test]
    fn round_trip() {
        let k = ring();
        let s = k.seal(b"AT-SECRET-123", b"token:a:b").unwrap();
        assert_eq!(s.key_id, k.current_key_id());
        assert_eq!(s.key_id.len(), 16);
        assert_eq!(s.nonce.len(), NONCE_LEN);
        assert!(!s.ciphertext.windows(13).any(|w| w == b"AT-SECRET-123"));
        assert_eq!(
            k.open(&s, b"token:a:b").unwrap().as_slice(),
            b"AT-SECRET-123"
        );
        // Two seals of the same plaintext differ (random nonce).
        let s2 = k.seal(b"AT-SECRET-123", b"token:a:b").unwrap();
        assert_ne!(s.nonce, s2.nonce);
        assert_ne!(s.ciphertext, s2.ciphertext);
    }

    #[test]
    fn wrong_aad_fails() {
        let k = ring();
        let s = k.seal(b"secret", b"token:a:b").unwrap();
        assert!(matches!(k.open(&s, b"token:a:c"), Err(CryptoError::Open)));
        assert!(matches!(k.open(&s, b""), Err(CryptoError::Open)));
    }

    #[test]
    fn tampering_fails() {
        let k = ring();
        let s = k.seal(b"secret", b"aad").unwrap();
        for i in 0..s.ciphertext.len() {
            let mut t = s.clone();
            t.ciphertext[i] ^= 1;
            assert!(matches!(k.open(&t, b"aad"), Err(CryptoError::Open)), "{i}");
        }
        let mut t = s.clone();
        t.nonce[0] ^= 1;
        assert!(matches!(k.open(&t, b"aad"), Err(CryptoError::Open)));
        let mut t = s.clone();
        t.ciphertext.truncate(5);
        assert!(matches!(k.open(&t, b"aad"), Err(CryptoError::Open)));
        let mut t = s.clone();
        t.nonce.pop();
        assert!(matches!(k.open(&t, b"aad"), Err(CryptoError::BadNonce(23))));
        assert!(k.open(&s, b"aad").is_ok());
    }

    #[test]
    fn rotation_opens_with_old_key() {
        let old = random_key().unwrap();
        let new = random_key().unwrap();
        let before = Keyring::new(&old);
        let s = before.seal(b"secret", b"aad").unwrap();
        // New current key without the old one: cannot open, and says which key is missing.
        let without = Keyring::new(&new);
        match without.open(&s, b"aad") {
            Err(CryptoError::UnknownKey(id)) => assert_eq!(id, key_id(&old)),
            other => panic!("{other:?}"),
        }
        let after = Keyring::new(&new).with_old_key(&old);
        assert_eq!(after.open(&s, b"aad").unwrap().as_slice(), b"secret");
        assert!(after.needs_reseal(&s));
        let resealed = after.seal(b"secret", b"aad").unwrap();
        assert_eq!(resealed.key_id, key_id(&new));
        assert!(!after.needs_reseal(&resealed));
        assert_eq!(after.key_ids(), vec![key_id(&new), key_id(&old)]);
        // Same via base64 (the environment path).
        let b = Keyring::from_base64(&B64.encode(*new), &[&B64.encode(*old)]).unwrap();
        assert_eq!(b.open(&s, b"aad").unwrap().as_slice(), b"secret");
    }

    #[test]
    fn key_id_is_sha256_prefix() {
        // SHA-256 of 32 zero bytes is 66687aadf862bd77...
        assert_eq!(key_id(&[0u8; 32]), "66687aadf862bd77");
    }

    #[test]
    fn key_file_created_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("intake.key");
        let a = Keyring::from_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(B64.decode(text.trim()).unwrap().len(), 32);
        // No temporary file left behind.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
        // Second run reads the same key.
        let b = Keyring::from_file(&path).unwrap();
        assert_eq!(a.current_key_id(), b.current_key_id());
        let s = a.seal(b"x", b"y").unwrap();
        assert_eq!(b.open(&s, b"y").unwrap().as_slice(), b"x");
    }

    #[test]
    fn concurrent_first_runs_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("intake.key");
        let ids: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        Keyring::from_file(&path)
                            .unwrap()
                            .current_key_id()
                            .to_string()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn open_key_file_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("intake.key");
        Keyring::from_file(&path).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = Keyring::from_file(&path).unwrap_err();
            assert!(
                matches!(err, CryptoError::KeyFileTooOpen { .. }),
                "{mode:o}: {err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("chmod 600 {}", path.display())),
                "{msg}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        Keyring::from_file(&path).unwrap();
    }

    #[test]
    fn key_file_with_old_keys_and_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let (cur, old) = (random_key().unwrap(), random_key().unwrap());
        let text = format!(
            "# current\n{}\n\n# retired 2026-11\n{}\n",
            B64.encode(*cur),
            B64.encode(*old)
        );
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
        let k = Keyring::from_file(&path).unwrap();
        assert_eq!(k.key_ids(), vec![key_id(&cur), key_id(&old)]);
    }

    #[test]
    fn env_key_wins_over_file_and_bad_keys_do_not_leak() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let (cur, old) = (random_key().unwrap(), random_key().unwrap());
        let k = Keyring::from_sources(
            Some(Zeroizing::new(B64.encode(*cur))),
            Some(Zeroizing::new(format!(" {} ,", B64.encode(*old)))),
            &path,
        )
        .unwrap();
        assert_eq!(k.key_ids(), vec![key_id(&cur), key_id(&old)]);
        assert!(!path.exists(), "no key file when the environment has a key");

        let secretish = "c2VjcmV0LWtleS1tYXRlcmlhbC10aGF0LWlzLXNob3J0"; // 33 bytes
        let err =
            Keyring::from_sources(Some(Zeroizing::new(secretish.into())), None, &path).unwrap_err();
        assert!(!err.to_string().contains(secretish), "{err}");
        assert!(err.to_string().contains(KEY_ENV), "{err}");
        let err = Keyring::from_sources(Some(Zeroizing::new("not*base64!".into())), None, &path)
            .unwrap_err();
        assert!(!err.to_string().contains('*'), "{err}");
        assert!(!format!("{err:?}").contains("base64!"), "{err:?}");

        // Debug of a keyring shows ids only.
        let dbg = format!("{k:?}");
        assert!(dbg.contains(&key_id(&cur)) && !dbg.contains(&B64.encode(*cur)));
    }
}
