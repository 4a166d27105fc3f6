//! [`FileTransport`]: with no `[smtp] host`, each email is written as `<dir>/<key>.eml`.
//!
//! A file appears whole or not at all (written to a temporary name, flushed to disk, then renamed), so
//! a reader — a person, a test, a mail tool watching the directory — never sees half a message.
//! Writing the same key again replaces the file: one file per key, however often it is sent.
//!
//! The files hold live signed ack/resolve links, so they are the owner's alone: each is created mode
//! `0600` (its temporary file too, before a byte is written) in a directory kept at `0700`, whatever
//! the umask. They go with their outbox rows: [`FileTransport::prune`] (run by the store's retention
//! task, through [`Sweep`]) deletes the file of every row retention deletes, and any other `.eml` or
//! temporary file older than the retention whose key has no row any more (rows pruned before files
//! were, a crash between the two).

use std::collections::HashSet;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Mode of every `.eml` file and temporary file: owner read/write only.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the directory: owner only.
pub const DIR_MODE: u32 = 0o700;

use super::{SendError, SendErrorKind};
use crate::store::retention::Sweep;

/// Writes emails as `.eml` files into one directory (created when missing).
#[derive(Debug, Clone)]
pub struct FileTransport {
    dir: PathBuf,
}

impl FileTransport {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory the files go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the email with this key is written.
    pub fn path_for(&self, key: &str) -> PathBuf {
        self.dir.join(file_name(key))
    }

    pub(super) async fn send(&self, key: &str, message: &[u8]) -> Result<(), SendError> {
        let dir = self.dir.clone();
        let path = self.path_for(key);
        let message = message.to_vec();
        let written = tokio::task::spawn_blocking(move || write_atomically(&dir, &path, &message))
            .await
            .map_err(|e| std::io::Error::other(format!("writer task failed: {e}")))
            .and_then(|r| r);
        match written {
            Ok(()) => {
                tracing::info!(key, path = %self.path_for(key).display(), "email written as a file");
                Ok(())
            }
            Err(e) => Err(SendError::new(
                SendErrorKind::Io,
                format!("cannot write {}: {e}", self.path_for(key).display()),
            )),
        }
    }
}

fn write_atomically(dir: &Path, path: &Path, message: &[u8]) -> std::io::Result<()> {
    private_dir(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    // A temporary file left by a crash keeps its old mode if opened again: start from none, and
    // create it `0600` (`create_new` also refuses a symlink planted in its place).
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&tmp)?;
    file.write_all(message)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    // Make the rename itself durable; a failure here leaves a complete file, so it is not an error.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Creates `dir` (and its parents) when missing, `0700`, and brings an existing one to `0700` (one
/// made by an older version under the default umask).
fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let meta = std::fs::metadata(dir)?;
    if meta.permissions().mode() & 0o777 != DIR_MODE {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// What one [`FileTransport::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrunedFiles {
    /// Files of outbox rows retention just deleted.
    pub forgotten: usize,
    /// Older files whose key has no row any more (or temporary files left by a crash).
    pub orphans: usize,
}

impl FileTransport {
    /// Deletes the files of `forgotten` (keys whose outbox rows retention deleted), then every other
    /// `.eml` or temporary file last modified before `cutoff` whose key is not among `live` (the
    /// keys still in the outbox), and makes every file kept `0600`. A directory that does not exist
    /// (emails go over SMTP and never went to files) is nothing to do. Synchronous: call it from the
    /// blocking pool.
    pub fn prune(
        &self,
        forgotten: &[String],
        live: &[String],
        cutoff: SystemTime,
    ) -> std::io::Result<PrunedFiles> {
        let mut pruned = PrunedFiles::default();
        if !self.dir.is_dir() {
            return Ok(pruned);
        }
        for key in forgotten {
            match std::fs::remove_file(self.path_for(key)) {
                Ok(()) => pruned.forgotten += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let live: HashSet<String> = live.iter().map(|k| file_name(k)).collect();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name.ends_with(".eml") || (name.starts_with('.') && name.ends_with(".tmp"));
            let meta = entry.metadata()?;
            if !ours || !meta.is_file() {
                continue;
            }
            let old = meta.modified().is_ok_and(|m| m < cutoff);
            if old && !live.contains(&name) {
                std::fs::remove_file(entry.path())?;
                pruned.orphans += 1;
            } else if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(FILE_MODE))?;
            }
        }
        Ok(pruned)
    }
}

/// The store's retention task deletes the files of the rows it deletes and sweeps old orphans
/// through this; what was done, or why not, is logged here (the next round tries again).
impl Sweep for FileTransport {
    fn sweep(&self, forgotten: &[String], live: &[String], cutoff: SystemTime) {
        match self.prune(forgotten, live, cutoff) {
            Ok(f) if f.forgotten + f.orphans > 0 => tracing::info!(
                dir = %self.dir().display(),
                files = f.forgotten,
                orphans = f.orphans,
                "email files pruned with their outbox rows"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(
                dir = %self.dir().display(),
                error = %e,
                "cannot prune the email files; retried later"
            ),
        }
    }
}

/// `<incident>/<level>/<event>/<n>` → `<incident>_<level>_<event>_<n>.eml`. Only ASCII letters,
/// digits, `-`, `_` and `.` survive (anything else becomes `-`), and a leading `.` becomes `_`, so
/// the name can neither leave the directory nor hide. Keys differ in their level/event/number
/// parts, which contain no `_`, so two keys never share a file.
pub fn file_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| match c {
            '/' => '_',
            c if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') => c,
            _ => '-',
        })
        .collect();
    if name.starts_with('.') {
        name.replace_range(..1, "_");
    }
    name.push_str(".eml");
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_flat_and_safe() {
        assert_eq!(
            file_name("latency-20261118T110640Z/L1/opened/0"),
            "latency-20261118T110640Z_L1_opened_0.eml"
        );
        assert_eq!(file_name("../../etc/passwd"), "_._.._etc_passwd.eml");
        assert_eq!(file_name("a b/ç"), "a-b_-.eml");
    }
}
