//! A Maildir folder or an mbox file as a [`MailSource`], so `protocol = "maildir"` and
//! `protocol = "mbox"` channels run in `intake run` through the same drain loop, engine and
//! ledger as IMAP, POP3 and Graph.
//!
//! - Maildir: listing is every file in `new/` and `cur/` (by name, which starts with the
//!   delivery time); the identity is `maildir:<unique name>` (the name before `:2,`), which
//!   stays the same when the file moves from `new/` to `cur/` or gains flags. Post-actions:
//!   `mark-read` moves the file to `cur/` with the `S` flag; `move:FOLDER` renames it into the
//!   Maildir++ subfolder `.FOLDER/cur/`; `delete` removes it. `start = "unread"` skips files
//!   already flagged `S`; `now` and `since:` are refused.
//! - mbox: the file is read whole at each listing; the identity is `sha256:<content hash>`
//!   (as `intake ingest` uses); `mark-read` keeps the file as it is, `move:` and `delete` are
//!   refused (Intake never rewrites an mbox).
//!
//! There is no checkpoint: the ledger says what is new.

use std::path::{Path, PathBuf};

use intake_mail::source::{Fetched, Listed, Listing, MailSource, PostAction, SourceError, Start};

fn io_err(path: &Path, e: &std::io::Error) -> SourceError {
    SourceError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The message files of a Maildir: (file name, `new` or `cur`), in no particular order. Hidden
/// files, non-files and names that are not UTF-8 are not messages; a missing `new/` or `cur/`
/// is empty.
fn maildir_files(root: &Path) -> Result<Vec<(String, &'static str)>, SourceError> {
    let mut files = Vec::new();
    for sub in ["new", "cur"] {
        let dir = root.join(sub);
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&dir, &e)),
        };
        for e in rd {
            let e = e.map_err(|e| io_err(&dir, &e))?;
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if !name.starts_with('.') && e.path().is_file() {
                files.push((name, sub));
            }
        }
    }
    Ok(files)
}

/// Count the messages of a Maildir (unread: in `new/` or without the `S` flag) or an mbox
/// file (no read flag), for the connection check; nothing is parsed or moved.
pub fn count(path: &Path) -> Result<intake_mail::check::Counts, SourceError> {
    if path.is_dir() {
        // The same files a channel would list.
        let files = maildir_files(path)?;
        let unread = files
            .iter()
            .filter(|(name, sub)| *sub == "new" || !flags(name).contains('S'))
            .count();
        return Ok(intake_mail::check::Counts {
            messages: files.len() as u64,
            unread: Some(unread as u64),
        });
    }
    let file = std::fs::File::open(path).map_err(|e| io_err(path, &e))?;
    let mut messages = 0u64;
    super::local::read_mbox(std::io::BufReader::new(file), |_| {
        messages += 1;
        true
    })
    .map_err(|e| io_err(path, &e))?;
    Ok(intake_mail::check::Counts {
        messages,
        unread: None,
    })
}

/// A Maildir folder channel.
#[derive(Debug)]
pub struct MaildirSource {
    root: PathBuf,
}

/// The unique part of a Maildir file name (before the `:2,` info).
fn unique(name: &str) -> &str {
    name.split_once(':').map_or(name, |(u, _)| u)
}

fn flags(name: &str) -> &str {
    name.split_once(":2,").map_or("", |(_, f)| f)
}

impl MaildirSource {
    pub fn new(root: PathBuf) -> Result<Self, SourceError> {
        if !root.join("cur").is_dir() && !root.join("new").is_dir() {
            return Err(SourceError::Io {
                path: root.display().to_string(),
                message: "not a Maildir (no cur/ or new/)".into(),
            });
        }
        Ok(Self { root })
    }

    /// Where the message with this unique name is now (it may have moved between listing
    /// and acknowledging).
    fn locate(&self, key: &str) -> Option<PathBuf> {
        let direct = self.root.join(key);
        if direct.is_file() {
            return Some(direct);
        }
        let want = unique(Path::new(key).file_name()?.to_str()?);
        ["new", "cur"].iter().find_map(|sub| {
            std::fs::read_dir(self.root.join(sub))
                .ok()?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| unique(n) == want)
                })
        })
    }

    fn mark_read(&self, path: &Path) -> Result<(), SourceError> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let f = flags(name);
        let in_cur = path.parent().and_then(Path::file_name) == Some("cur".as_ref());
        if in_cur && f.contains('S') {
            return Ok(());
        }
        let mut fl: Vec<char> = f.chars().chain(['S']).collect();
        fl.sort_unstable();
        fl.dedup();
        let target = self.root.join("cur").join(format!(
            "{}:2,{}",
            unique(name),
            fl.into_iter().collect::<String>()
        ));
        std::fs::create_dir_all(self.root.join("cur")).map_err(|e| io_err(&self.root, &e))?;
        std::fs::rename(path, &target).map_err(|e| io_err(path, &e))
    }

    fn move_to(&self, path: &Path, folder: &str) -> Result<(), SourceError> {
        if folder.contains('/') || folder.starts_with('.') {
            return Err(SourceError::Unsupported(format!(
                "Maildir folder {folder:?}: use a Maildir++ name without '/' or a leading '.'"
            )));
        }
        let dir = self.root.join(format!(".{folder}"));
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| io_err(&dir, &e))?;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        // Files in cur/ carry the info part; a file from new/ gets an empty one.
        let target = if name.contains(":2,") {
            name.to_string()
        } else {
            format!("{}:2,", unique(name))
        };
        std::fs::rename(path, dir.join("cur").join(target)).map_err(|e| io_err(path, &e))
    }
}

impl MailSource for MaildirSource {
    async fn list(
        &mut self,
        _checkpoint: Option<&str>,
        start: Start,
        _limit: usize,
    ) -> Result<Listing, SourceError> {
        if matches!(start, Start::Now | Start::Since(_)) {
            return Err(SourceError::Unsupported(
                "a Maildir channel takes start = \"unread\" or \"all\"".into(),
            ));
        }
        let mut files = maildir_files(&self.root)?;
        if start == Start::Unread {
            files.retain(|(name, sub)| *sub == "new" || !flags(name).contains('S'));
        }
        files.sort_by_cached_key(|(name, _)| super::local::delivery_key(name));
        Ok(Listing {
            items: files
                .into_iter()
                .map(|(name, sub)| Listed {
                    identity: format!("maildir:{}", unique(&name)),
                    key: format!("{sub}/{name}"),
                    size: None,
                })
                .collect(),
            checkpoint: None,
            more: false,
        })
    }

    async fn fetch(&mut self, items: &[Listed]) -> Result<Vec<Fetched>, SourceError> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let Some(path) = self.locate(&item.key) else {
                continue; // gone since it was listed
            };
            match std::fs::read(&path) {
                Ok(raw) => out.push(Fetched {
                    identity: item.identity.clone(),
                    raw,
                    oversized: None,
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path, &e)),
            }
        }
        Ok(out)
    }

    async fn acknowledge(
        &mut self,
        items: &[Listed],
        action: &PostAction,
    ) -> Result<(), SourceError> {
        for item in items {
            let Some(path) = self.locate(&item.key) else {
                continue; // already moved or deleted: the post-action was done
            };
            match action {
                PostAction::MarkRead => self.mark_read(&path)?,
                PostAction::Move(folder) => self.move_to(&path, folder)?,
                PostAction::Delete => match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&path, &e)),
                },
            }
        }
        Ok(())
    }

    fn checkpoint_after(&self, _item: &Listed) -> Option<String> {
        None
    }
}

/// An mbox file channel (read-only).
#[derive(Debug)]
pub struct MboxSource {
    path: PathBuf,
    /// The messages of the last listing, by identity.
    cache: std::collections::HashMap<String, Vec<u8>>,
}

impl MboxSource {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            cache: Default::default(),
        }
    }
}

impl MailSource for MboxSource {
    async fn list(
        &mut self,
        _checkpoint: Option<&str>,
        start: Start,
        _limit: usize,
    ) -> Result<Listing, SourceError> {
        if matches!(start, Start::Now | Start::Since(_)) {
            return Err(SourceError::Unsupported(
                "an mbox channel takes start = \"unread\" or \"all\"".into(),
            ));
        }
        let file = std::fs::File::open(&self.path).map_err(|e| io_err(&self.path, &e))?;
        let mut msgs = Vec::new();
        super::local::read_mbox(std::io::BufReader::new(file), |m| {
            msgs.push(m);
            true
        })
        .map_err(|e| io_err(&self.path, &e))?;
        self.cache.clear();
        let mut items = Vec::with_capacity(msgs.len());
        for (n, m) in msgs.into_iter().enumerate() {
            let identity = format!("sha256:{}", intake_mime::content_hash(&m));
            items.push(Listed {
                key: format!("{}", n + 1),
                identity: identity.clone(),
                size: None,
            });
            self.cache.insert(identity, m);
        }
        Ok(Listing {
            items,
            checkpoint: None,
            more: false,
        })
    }

    async fn fetch(&mut self, items: &[Listed]) -> Result<Vec<Fetched>, SourceError> {
        Ok(items
            .iter()
            .filter_map(|i| {
                Some(Fetched {
                    identity: i.identity.clone(),
                    raw: self.cache.get(&i.identity)?.clone(),
                    oversized: None,
                })
            })
            .collect())
    }

    async fn acknowledge(
        &mut self,
        _items: &[Listed],
        action: &PostAction,
    ) -> Result<(), SourceError> {
        // `mark-read` keeps the file as it is; anything else is refused.
        self.supports(action)
    }

    fn checkpoint_after(&self, _item: &Listed) -> Option<String> {
        None
    }

    fn supports(&self, action: &PostAction) -> Result<(), SourceError> {
        match action {
            PostAction::MarkRead => Ok(()),
            _ => Err(SourceError::Unsupported(
                "an mbox channel keeps its file: use after = \"mark-read\"".into(),
            )),
        }
    }

    async fn finish(&mut self) -> Result<(), SourceError> {
        self.cache.clear();
        Ok(())
    }
}
