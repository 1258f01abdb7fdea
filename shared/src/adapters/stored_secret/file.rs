//! The secret file of one machine: the secret alone (a trailing newline trimmed), mode 0600,
//! replaced atomically (a private temporary file in the same folder, synced, renamed over it, the
//! folder synced), so a reader sees the old secret or the new one, never half of one.

use std::io::Write;
use std::path::PathBuf;

use super::PlaceFailure;
use crate::domain::secret::SecretValue;

#[derive(Debug)]
pub(super) struct SecretFile {
    path: PathBuf,
}

impl SecretFile {
    pub(super) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    fn fail(&self, what: &str, e: &std::io::Error) -> PlaceFailure {
        // An io::Error's text is the OS's words, never the file's contents.
        let message = format!("{what} {}: {e}", self.path.display());
        match e.kind() {
            std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                PlaceFailure::retryable(message)
            }
            _ => PlaceFailure::permanent(message),
        }
    }

    pub(super) fn read(&self) -> Result<SecretValue, PlaceFailure> {
        let mut text = std::fs::read_to_string(&self.path).map_err(|e| self.fail("cannot read", &e))?;
        let trimmed = text.strip_suffix('\n').unwrap_or(&text);
        let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
        let value = SecretValue::new(trimmed);
        zeroize::Zeroize::zeroize(&mut text);
        Ok(value)
    }

    pub(super) fn write(&self, value: &SecretValue) -> Result<(), PlaceFailure> {
        let dir = self.folder();
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let result = (|| {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&temp).map_err(|e| self.fail("cannot create a temporary file beside", &e))?;
            file.write_all(value.expose().as_bytes()).map_err(|e| self.fail("cannot write beside", &e))?;
            file.write_all(b"\n").map_err(|e| self.fail("cannot write beside", &e))?;
            file.sync_all().map_err(|e| self.fail("cannot sync the file beside", &e))?;
            std::fs::rename(&temp, &self.path).map_err(|e| self.fail("cannot replace", &e))?;
            // The rename itself survives a power cut only once the folder is synced.
            #[cfg(unix)]
            if let Ok(d) = std::fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    /// The folder can take a new file, and the file (if there) is the owner's to replace.
    pub(super) fn check_writable(&self) -> Result<(), PlaceFailure> {
        let dir = self.folder();
        let probe = dir.join(format!(".rotator-probe.{}.tmp", uuid::Uuid::new_v4().simple()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(&probe).map_err(|e| self.fail("cannot create a file beside", &e))?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }

    fn folder(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_written_secret_replaces_the_file_privately_and_reads_back_without_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "old\n").unwrap();
        let file = SecretFile::new(path.clone());
        assert_eq!(file.read().unwrap().expose(), "old");
        file.write(&SecretValue::new("new-value")).unwrap();
        assert_eq!(file.read().unwrap().expose(), "new-value");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_folder_that_cannot_be_written_fails_the_check_and_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let file = SecretFile::new(dir.path().join("missing-folder/secret"));
        let failure = file.check_writable().unwrap_err();
        assert!(!failure.retryable && failure.message.contains("missing-folder"), "{failure:?}");
        assert!(file.write(&SecretValue::new("v")).is_err());
    }
}
