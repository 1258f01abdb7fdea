//! The atomic writer: resolves the path, edits the text, and replaces the file so that a crash at
//! any point leaves either the old file or the new one in place.
//!
//! The new text goes to a temporary file in the same directory (a rename is atomic only within one
//! file system), is synced, takes the old file's permissions, and is renamed over the target. The
//! temporary file has a fixed name, so a leftover from a crash is recognisable and simply replaced
//! by the next write.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::SecretValue;
use crate::formats::{self, Edit, FormatError};
use crate::roots::{AllowedRoots, PathRefusal};

/// Files larger than this are not configuration files the agent should be rewriting.
pub const MAX_FILE_SIZE: u64 = 10 * 1024 * 1024;

const BOM: char = '\u{feff}';

/// One write the server asked for.
#[derive(Debug)]
pub struct FileTask {
    pub target_path: String,
    pub format: String,
    pub secret_key: String,
    pub value: SecretValue,
    pub create_if_missing: bool,
    pub backup: bool,
}

impl FileTask {
    /// `secret_key` split as the step defines it: `:` separates nested keys for json and yaml.
    fn key_path(&self) -> Vec<&str> {
        match self.format.to_ascii_lowercase().as_str() {
            "json" | "yaml" | "yml" => self.secret_key.split(':').collect(),
            "text" => Vec::new(),
            _ => vec![self.secret_key.as_str()],
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The value was already in the file; the file was not touched.
    Unchanged,
    /// The file was replaced; `backup` is where the previous version was copied, if asked.
    Written { backup: Option<PathBuf> },
}

/// Why a write did not happen. None of these name the secret.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Path(#[from] PathRefusal),
    #[error("{path}: {source}")]
    Format {
        path: String,
        #[source]
        source: FormatError,
    },
    #[error("{0} does not exist (set create_if_missing on the step to create it)")]
    Missing(String),
    #[error("{0}: the directory does not exist; the agent does not create directories")]
    NoDirectory(String),
    #[error("{0} is not a regular file")]
    NotAFile(String),
    #[error("{path} is {size} bytes, more than the {MAX_FILE_SIZE} bytes the agent edits")]
    TooLarge { path: String, size: u64 },
    #[error("{0} is not UTF-8 text")]
    NotUtf8(String),
    #[error("{path}: {action} failed: {source}")]
    Io {
        path: String,
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

/// The points of a write a test can stop at, to show what a crash there leaves behind.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The temporary file is written and synced; the target is not replaced yet.
    TempWritten,
}

/// Writes `task.value` into the file `task` names, if the roots allow that path.
pub fn write_secret(roots: &AllowedRoots, task: &FileTask) -> Result<WriteOutcome, WriteError> {
    write_secret_with(roots, task, &|_| {})
}

/// [`write_secret`] with a hook called at each [`Stage`], for the crash tests.
#[doc(hidden)]
pub fn write_secret_with(
    roots: &AllowedRoots,
    task: &FileTask,
    hook: &dyn Fn(Stage),
) -> Result<WriteOutcome, WriteError> {
    let resolved = roots.resolve(&task.target_path)?;
    let shown = task.target_path.clone();
    let io_err = |action: &'static str| {
        let path = shown.clone();
        move |source| WriteError::Io { path, action, source }
    };
    if !resolved.dir.is_dir() {
        return Err(WriteError::NoDirectory(shown));
    }
    let target = resolved.path();
    let existing = match fs::symlink_metadata(&target) {
        Ok(meta) if !meta.is_file() => return Err(WriteError::NotAFile(shown)),
        Ok(meta) if meta.len() > MAX_FILE_SIZE => return Err(WriteError::TooLarge { path: shown, size: meta.len() }),
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("reading the file's metadata")(e)),
    };
    if existing.is_none() && !task.create_if_missing {
        return Err(WriteError::Missing(shown));
    }

    let old_text = match &existing {
        Some(_) => {
            let bytes = fs::read(&target).map_err(io_err("reading the file"))?;
            // The old text holds the old secret: wiped when dropped, like the new one.
            let text = String::from_utf8(bytes).map_err(|_| WriteError::NotUtf8(shown.clone()))?;
            Some(zeroize::Zeroizing::new(text))
        }
        None => None,
    };
    let (bom, body) = match &old_text {
        Some(text) => match text.strip_prefix(BOM) {
            Some(rest) => (true, rest),
            None => (false, text.as_str()),
        },
        None => (false, ""),
    };
    let key_path = task.key_path();
    let edit = formats::set(&task.format, body, &key_path, &task.value, old_text.is_none())
        .map_err(|source| WriteError::Format { path: shown.clone(), source })?;
    let new_body = match edit {
        Edit::Unchanged => return Ok(WriteOutcome::Unchanged),
        Edit::Changed(text) => zeroize::Zeroizing::new(text),
    };

    let tmp = resolved.dir.join(format!(".{}.rotator-tmp", resolved.file_name));
    {
        // A leftover from an earlier crash is ours (the name says so) and is replaced.
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing a leftover temporary file")(e)),
        }
        let mut file = create_private(&tmp).map_err(io_err("creating the temporary file"))?;
        if bom {
            file.write_all(BOM.to_string().as_bytes()).map_err(io_err("writing the temporary file"))?;
        }
        file.write_all(new_body.as_bytes()).map_err(io_err("writing the temporary file"))?;
        if let Some(meta) = &existing {
            copy_owner_and_mode(&file, meta).map_err(io_err("setting the temporary file's permissions"))?;
        }
        file.sync_all().map_err(io_err("syncing the temporary file"))?;
    }
    hook(Stage::TempWritten);

    let backup = match (&existing, task.backup) {
        (Some(meta), true) => {
            let path = resolved.dir.join(format!("{}.rotator-backup", resolved.file_name));
            write_backup(&target, &path, meta).map_err(io_err("writing the backup"))?;
            Some(path)
        }
        _ => None,
    };
    replace(&tmp, &target, existing.is_some()).map_err(io_err("replacing the file"))?;
    sync_dir(&resolved.dir).map_err(io_err("syncing the directory"))?;
    Ok(WriteOutcome::Written { backup })
}

/// A new file readable by its owner only: it is about to hold a secret.
fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// The backup holds the old secret, so it gets the original's permissions, written the same way.
fn write_backup(target: &Path, backup: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let tmp = backup.with_file_name(format!(
        ".{}.tmp",
        backup.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    let _ = fs::remove_file(&tmp);
    let mut file = create_private(&tmp)?;
    file.write_all(&fs::read(target)?)?;
    copy_owner_and_mode(&file, meta)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, backup)
}

#[cfg(unix)]
fn copy_owner_and_mode(file: &File, meta: &fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // Owner first: changing the owner may clear set-id bits, which the mode then restores. Only
    // root may give a file away; an agent running as the file's owner keeps it anyway.
    match std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid())) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(1) => {} // EPERM
        Err(e) => return Err(e),
    }
    file.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))
}

#[cfg(not(unix))]
fn copy_owner_and_mode(file: &File, meta: &fs::Metadata) -> io::Result<()> {
    // On Windows the replaced file's ACL and attributes come with ReplaceFileW.
    let _ = (file, meta);
    Ok(())
}

#[cfg(unix)]
fn replace(tmp: &Path, target: &Path, _existed: bool) -> io::Result<()> {
    fs::rename(tmp, target)
}

#[cfg(windows)]
fn replace(tmp: &Path, target: &Path, existed: bool) -> io::Result<()> {
    windows_replace::replace(tmp, target, existed)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    // The rename is durable only once the directory entry is.
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// The one call into Win32 the agent needs: `ReplaceFileW` keeps the replaced file's ACL,
/// attributes and alternate streams, which a plain rename would drop.
#[cfg(windows)]
#[allow(unsafe_code)]
mod windows_replace {
    use std::io;
    use std::os::windows::ffi::OsStrExt;
    use std::path::Path;

    use windows_sys::Win32::Storage::FileSystem::{
        MOVEFILE_REPLACE_EXISTING, MOVEFILE_WRITE_THROUGH, MoveFileExW, REPLACEFILE_WRITE_THROUGH, ReplaceFileW,
    };

    fn wide(path: &Path) -> Vec<u16> {
        path.as_os_str().encode_wide().chain(Some(0)).collect()
    }

    pub(super) fn replace(tmp: &Path, target: &Path, existed: bool) -> io::Result<()> {
        let (tmp_w, target_w) = (wide(tmp), wide(target));
        // SAFETY: both pointers are NUL-terminated UTF-16 strings owned by this frame and alive for
        // the whole call; the optional backup name and the reserved pointers are null, as allowed.
        let ok = unsafe {
            if existed {
                ReplaceFileW(
                    target_w.as_ptr(),
                    tmp_w.as_ptr(),
                    std::ptr::null(),
                    REPLACEFILE_WRITE_THROUGH,
                    std::ptr::null(),
                    std::ptr::null(),
                )
            } else {
                MoveFileExW(tmp_w.as_ptr(), target_w.as_ptr(), MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH)
            }
        };
        if ok == 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    const SECRET: &str = "Zx9~TEST-SECRET.q4";

    fn task(path: &Path, format: &str, key: &str) -> FileTask {
        FileTask {
            target_path: path.to_str().unwrap().to_owned(),
            format: format.into(),
            secret_key: key.into(),
            value: SecretValue::new(SECRET),
            create_if_missing: false,
            backup: false,
        }
    }

    fn roots_for(dir: &Path) -> AllowedRoots {
        AllowedRoots::new([dir.to_str().unwrap()]).unwrap()
    }

    #[test]
    fn the_files_permissions_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.env");
        fs::write(&path, "A=1\nSECRET=old\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let outcome = write_secret(&roots_for(dir.path()), &task(&path, "env", "SECRET")).unwrap();
        assert_eq!(outcome, WriteOutcome::Written { backup: None });
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("A=1\nSECRET='{SECRET}'\n"));
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o640);
    }

    #[test]
    fn a_backup_keeps_the_old_file_and_its_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.txt");
        fs::write(&path, "old\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let mut t = task(&path, "text", "");
        t.backup = true;
        let outcome = write_secret(&roots_for(dir.path()), &t).unwrap();
        let backup = fs::canonicalize(dir.path()).unwrap().join("secret.txt.rotator-backup");
        assert_eq!(outcome, WriteOutcome::Written { backup: Some(backup.clone()) });
        assert_eq!(fs::read_to_string(&backup).unwrap(), "old\n");
        assert_eq!(fs::metadata(&backup).unwrap().mode() & 0o7777, 0o640);
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{SECRET}\n"));
    }

    #[test]
    fn a_missing_file_is_created_only_when_asked_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.env");
        let mut t = task(&path, "env", "SECRET");
        let err = write_secret(&roots_for(dir.path()), &t).unwrap_err().to_string();
        assert!(err.ends_with("does not exist (set create_if_missing on the step to create it)"), "{err}");
        t.create_if_missing = true;
        write_secret(&roots_for(dir.path()), &t).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("SECRET='{SECRET}'\n"));
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
    }

    #[test]
    fn a_redelivered_task_does_not_touch_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.env");
        fs::write(&path, format!("SECRET={SECRET}\n")).unwrap();
        let before = fs::metadata(&path).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let outcome = write_secret(&roots_for(dir.path()), &task(&path, "env", "SECRET")).unwrap();
        assert_eq!(outcome, WriteOutcome::Unchanged);
        let after = fs::metadata(&path).unwrap();
        assert_eq!(
            (before.ino(), before.mtime(), before.mtime_nsec()),
            (after.ino(), after.mtime(), after.mtime_nsec())
        );
    }

    #[test]
    fn a_utf8_bom_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.txt");
        fs::write(&path, "\u{feff}old").unwrap();
        write_secret(&roots_for(dir.path()), &task(&path, "text", "")).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("\u{feff}{SECRET}"));
    }

    #[test]
    fn a_json_files_bom_comments_and_trailing_commas_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("appsettings.json");
        fs::write(&path, "\u{feff}{\n  // c\n  \"Entra\": {\n    \"ClientSecret\": \"old\",\n  },\n}\n").unwrap();
        write_secret(&roots_for(dir.path()), &task(&path, "json", "entra:ClientSecret")).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("\u{feff}{{\n  // c\n  \"Entra\": {{\n    \"ClientSecret\": \"{SECRET}\",\n  }},\n}}\n")
        );
    }

    #[test]
    fn a_missing_directory_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = task(&dir.path().join("no/such/dir/app.env"), "env", "S");
        t.create_if_missing = true;
        let err = write_secret(&roots_for(dir.path()), &t).unwrap_err().to_string();
        assert!(err.ends_with("the directory does not exist; the agent does not create directories"), "{err}");
        assert!(!dir.path().join("no").exists());
    }

    #[test]
    fn a_task_the_editor_refuses_leaves_the_file_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.json");
        fs::write(&path, "{\"Entra\": 5}").unwrap();
        let err = write_secret(&roots_for(dir.path()), &task(&path, "json", "Entra:ClientSecret")).unwrap_err();
        assert!(matches!(err, WriteError::Format { .. }), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"Entra\": 5}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn large_and_non_utf8_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.txt");
        fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        let err = write_secret(&roots_for(dir.path()), &task(&path, "text", "")).unwrap_err().to_string();
        assert!(err.contains("is not UTF-8 text"), "{err}");
        let big = File::create(&path).unwrap();
        big.set_len(MAX_FILE_SIZE + 1).unwrap();
        let err = write_secret(&roots_for(dir.path()), &task(&path, "text", "")).unwrap_err().to_string();
        assert!(err.contains("more than the"), "{err}");
    }

    #[test]
    fn a_path_outside_the_roots_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let path = other.path().join("x.txt");
        fs::write(&path, "old").unwrap();
        let err = write_secret(&roots_for(dir.path()), &task(&path, "text", "")).unwrap_err().to_string();
        assert!(err.contains("outside the allowed roots"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
    }

    const CRASH_VAR: &str = "ROTATOR_AGENT_CRASH_IN";

    /// The child half of the crash test: only does something when the parent re-ran the test binary
    /// with the variable set, then aborts between the temporary file and the rename.
    #[test]
    fn crash_child() {
        // The test harness is the only way the parent can reach the child; this is not configuration.
        #[allow(clippy::disallowed_methods)]
        let Ok(dir) = std::env::var(CRASH_VAR) else { return };
        let dir = PathBuf::from(dir);
        let path = dir.join("appsettings.json");
        let hook = |stage: Stage| {
            if stage == Stage::TempWritten {
                std::process::abort();
            }
        };
        let _ = write_secret_with(&roots_for(&dir), &task(&path, "json", "Entra:ClientSecret"), &hook);
        panic!("the write did not reach the crash point");
    }

    #[test]
    fn a_crash_between_temp_file_and_rename_leaves_the_old_file_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("appsettings.json");
        let old = "{\n  // the app's settings\n  \"Entra\": { \"ClientSecret\": \"old\" },\n}\n";
        fs::write(&path, old).unwrap();

        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "write::tests::crash_child", "--nocapture"])
            .env(CRASH_VAR, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child should have aborted");
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(6), "SIGABRT, not a test failure");
        assert_eq!(fs::read_to_string(&path).unwrap(), old, "the target is byte-identical");
        let leftover = dir.path().join(".appsettings.json.rotator-tmp");
        assert!(leftover.exists(), "the crash left its temporary file");

        let outcome = write_secret(&roots_for(dir.path()), &task(&path, "json", "Entra:ClientSecret")).unwrap();
        assert_eq!(outcome, WriteOutcome::Written { backup: None });
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{{\n  // the app's settings\n  \"Entra\": {{ \"ClientSecret\": \"{SECRET}\" }},\n}}\n")
        );
        assert!(!leftover.exists(), "the leftover was replaced and renamed away");
    }

    #[test]
    fn no_error_text_or_debug_output_holds_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let roots = roots_for(dir.path());
        let mut errors: Vec<String> = Vec::new();
        let mut check = |path: &str, content: Option<&str>, format: &str, key: &str| {
            let p = dir.path().join(path);
            if let Some(c) = content {
                fs::write(&p, c).unwrap();
            }
            let t = task(&p, format, key);
            errors.push(format!("{t:?}"));
            match write_secret(&roots, &t) {
                Ok(o) => errors.push(format!("{o:?}")),
                Err(e) => {
                    errors.push(e.to_string());
                    errors.push(format!("{e:?}"));
                }
            }
        };
        check("missing.json", None, "json", "A");
        check("a.ini", Some("x"), "ini", "A");
        check("bad.json", Some("{ \"A\": 5 "), "json", "A:B");
        check("num.json", Some("{ \"A\": 5 }"), "json", "A:B");
        check("flow.yaml", Some("A: {B: 1}\n"), "yaml", "A:B");
        check("multi.yaml", Some("A: 1\n---\nA: 2\n"), "yaml", "A");
        check("block.yaml", Some("A: |\n  x\n"), "yaml", "A");
        check("web.config", Some("<configuration><appSettings file=\"x.config\"/></configuration>"), "xml", "K");
        check("bad.env", Some("X=1\n"), "env", "BAD KEY");
        check("ok.env", Some("X=1\n"), "env", "SECRET");
        // Broken files that hold the secret (as an old value would be) must not be quoted back.
        check("holds.json", Some(&format!("{{\"A\": \"{SECRET}\" {SECRET} }}")), "json", "A");
        check("holds.yaml", Some(&format!("A: [{SECRET}\n")), "yaml", "A");
        check(
            "holds.xml",
            Some(&format!(
                "<configuration><appSettings><add key=\"K\" value=\"&{SECRET};\"/></appSettings></configuration>"
            )),
            "xml",
            "K",
        );
        check("holds2.xml", Some(&format!("<configuration><{SECRET}></configuration>")), "xml", "K");
        check("holds.env", Some(&format!("SECRET='{SECRET}\n")), "env", "SECRET");
        errors.push(format!("{:?}", formats::set("json", "{}", &["A"], &SecretValue::new(SECRET), false).unwrap()));
        errors.push(format!("{:?}", roots.resolve("/etc/passwd").unwrap_err()));
        assert!(errors.len() > 20);
        for e in &errors {
            assert!(!e.contains(SECRET), "{e}");
        }
    }
}
