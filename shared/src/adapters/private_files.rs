//! The embedded runtime's files are private to their user: the data directory is created 0700
//! and the database 0600 (the key file already is), since the database holds execution plans
//! and sealed secrets next to everything an attacker would want to read. Files and folders made
//! by someone else (or before this rule) are checked, with a warning when others can read them.

use std::path::Path;

use crate::{Error, Result};

/// Creates `dir` (and its missing parents) readable by its owner only.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))
}

/// Creates the empty file `path` readable and writable by its owner only, unless it exists.
pub fn create_private_file(path: &Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(format!("creating {}", path.display()), e)),
    }
}

/// What is wrong with the permissions of `paths`, one sentence each: any of them that its group
/// or others may read, write or enter.
pub fn permission_warnings(paths: &[&Path]) -> Vec<String> {
    let mut warnings = Vec::new();
    #[cfg(unix)]
    for path in paths {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else { continue };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            let wanted = if meta.is_dir() { "700" } else { "600" };
            warnings.push(format!(
                "{} has mode {mode:o}: others on this machine can read it; chmod {wanted} it",
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = paths;
    warnings
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).expect("exists").permissions().mode() & 0o777
    }

    #[test]
    fn a_new_data_directory_and_database_are_private_and_an_open_one_is_warned_about() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = root.path().join("data/nested");
        create_private_dir(&dir).expect("created");
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("rotator.db");
        create_private_file(&file).expect("created");
        assert_eq!(mode(&file), 0o600);
        assert!(permission_warnings(&[&dir, &file]).is_empty());

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let warnings = permission_warnings(&[&dir, &file]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("mode 755") && warnings[0].contains("chmod 700"), "{warnings:?}");
        assert!(warnings[1].contains("mode 644") && warnings[1].contains("chmod 600"), "{warnings:?}");
        create_private_file(&file).expect("an existing file is left as it is");
        assert_eq!(mode(&file), 0o644);
    }
}
