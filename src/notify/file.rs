//! [`FileTransport`]: with no `[smtp] host`, each email is written as `<dir>/<key>.eml`.
//!
//! A file appears whole or not at all (written to a temporary name, flushed to disk, then renamed), so
//! a reader — a person, a test, a mail tool watching the directory — never sees half a message.
//! Writing the same key again replaces the file: one file per key, however often it is sent.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{SendError, SendErrorKind};

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
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
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
