//! The directories this host lets the agent write in, and the check that a requested path lies
//! inside one of them, whatever the server asks.
//!
//! The check has two layers. The lexical one ([`normalise`]) reads the path as the target OS would
//! (Windows or Unix, chosen by its shape, so both are testable anywhere) and compares it with the
//! roots component by component. The file-system one ([`AllowedRoots::resolve`]) then follows
//! symbolic links in the directories that exist, so a link inside a root cannot lead out of it,
//! and hands the writer the canonical directory it checked, so the write goes exactly there.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a root from the agent's configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[error("allowed root {root} is not usable: {reason}")]
pub struct RootsError {
    root: String,
    reason: String,
}

/// Why the agent will not write at a requested path. Its text names the path and the roots, never
/// anything from the file.
#[derive(Debug, thiserror::Error)]
pub enum PathRefusal {
    #[error("{requested} is not a path the agent accepts: {reason}")]
    Invalid { requested: String, reason: String },
    #[error("{requested} is outside the allowed roots ({roots})")]
    Outside { requested: String, roots: String },
    #[error(
        "{requested} is a symbolic link; the agent does not follow links at the target, so it cannot be led out of the allowed roots ({roots})"
    )]
    Symlink { requested: String, roots: String },
    #[error("{requested} leads outside the allowed roots ({roots}) once symbolic links are followed ({canonical})")]
    LinkedOutside { requested: String, roots: String, canonical: String },
    #[error("{requested} is a {style} path; this agent runs on {host}")]
    OtherOs { requested: String, style: &'static str, host: &'static str },
    #[error("{requested} could not be checked: {source}")]
    Io {
        requested: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where a checked path points: the canonical directory (links resolved) and the file's name in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPath {
    /// The canonical form of the file's directory. It may not exist yet if the request named
    /// directories that do not exist; the writer refuses then.
    pub dir: PathBuf,
    pub file_name: String,
}

impl ResolvedPath {
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.file_name)
    }
}

/// How a path is spelled: which OS reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Unix,
    Windows,
}

/// Where a normalised path starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// `/` on Unix.
    UnixRoot,
    /// A drive letter, upper case.
    Drive(char),
    /// `\\server\share`, as written (compared case-insensitively).
    Unc { server: String, share: String },
}

/// A path after the target OS's own normalisation: absolute, no `.` or `..`, no empty components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    pub style: Style,
    pub anchor: Anchor,
    pub components: Vec<String>,
}

impl NormalPath {
    /// Whether `self` lies strictly below `root`: the same anchor and root's components as a prefix
    /// of its own, compared as the OS compares them (case-insensitively on Windows).
    pub fn is_strictly_inside(&self, root: &NormalPath) -> bool {
        if self.style != root.style || self.components.len() <= root.components.len() {
            return false;
        }
        let same = |a: &str, b: &str| match self.style {
            Style::Unix => a == b,
            Style::Windows => a.to_lowercase() == b.to_lowercase(),
        };
        let anchors = match (&self.anchor, &root.anchor) {
            (Anchor::UnixRoot, Anchor::UnixRoot) => true,
            (Anchor::Drive(a), Anchor::Drive(b)) => a == b,
            (Anchor::Unc { server: s1, share: h1 }, Anchor::Unc { server: s2, share: h2 }) => {
                same(s1, s2) && same(h1, h2)
            }
            _ => false,
        };
        anchors && self.components.iter().zip(&root.components).all(|(a, b)| same(a, b))
    }

    /// The path as the host OS spells it.
    fn to_path_buf(&self) -> PathBuf {
        let mut text = match &self.anchor {
            Anchor::UnixRoot => "/".to_owned(),
            Anchor::Drive(d) => format!("{d}:\\"),
            Anchor::Unc { server, share } => format!("\\\\{server}\\{share}\\"),
        };
        let sep = if self.style == Style::Windows { "\\" } else { "/" };
        text.push_str(&self.components.join(sep));
        PathBuf::from(text)
    }
}

impl fmt::Display for NormalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_path_buf().display())
    }
}

/// Reads `requested` as the OS it is written for would: a Windows path when it starts with a drive
/// letter or `\\`, a Unix path otherwise. `Err` holds the reason in words.
pub fn normalise(requested: &str) -> Result<NormalPath, String> {
    let bytes = requested.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if drive || requested.starts_with("\\\\") { normalise_windows(requested) } else { normalise_unix(requested) }
}

fn normalise_unix(requested: &str) -> Result<NormalPath, String> {
    if !requested.starts_with('/') {
        return Err("it is not absolute".into());
    }
    if requested.contains('\0') {
        return Err("it contains a NUL character".into());
    }
    let mut components: Vec<String> = Vec::new();
    for part in requested.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                components.pop();
            }
            other => components.push(other.to_owned()),
        }
    }
    Ok(NormalPath { style: Style::Unix, anchor: Anchor::UnixRoot, components })
}

fn is_windows_separator(c: char) -> bool {
    c == '\\' || c == '/'
}

fn normalise_windows(requested: &str) -> Result<NormalPath, String> {
    let (anchor, rest) = if let Some(after) = requested.strip_prefix("\\\\") {
        // `\\?\` and `\\.\` (with either separator after) skip Win32's normalisation and reach
        // devices and raw volumes: nothing a configuration file lives behind.
        let mut chars = after.chars();
        if let (Some('?' | '.'), Some(c)) = (chars.next(), chars.next())
            && is_windows_separator(c)
        {
            return Err("device paths (\\\\?\\ and \\\\.\\) are not accepted".into());
        }
        if after.starts_with(['?', '.']) && after.len() == 1 {
            return Err("device paths (\\\\?\\ and \\\\.\\) are not accepted".into());
        }
        let mut parts = after.splitn(3, is_windows_separator);
        let server = parts.next().unwrap_or_default();
        let share = parts.next().unwrap_or_default();
        if strip_trailing(server).is_empty() || strip_trailing(share).is_empty() {
            return Err("a UNC path needs \\\\server\\share".into());
        }
        for part in [server, share] {
            check_windows_component(part)?;
        }
        (Anchor::Unc { server: server.to_owned(), share: strip_trailing(share).to_owned() }, parts.next().unwrap_or(""))
    } else {
        let letter = requested.chars().next().map(|c| c.to_ascii_uppercase()).unwrap_or('C');
        let rest = &requested[2..];
        if !rest.starts_with(is_windows_separator) {
            // `C:foo` is relative to the drive's current directory, which the agent cannot know.
            return Err("it is not absolute (a drive letter must be followed by \\)".into());
        }
        (Anchor::Drive(letter), rest)
    };
    let mut components: Vec<String> = Vec::new();
    for part in rest.split(is_windows_separator) {
        let trimmed = strip_trailing(part);
        if trimmed.is_empty() {
            // Only dots and spaces: Win32 reads `.. ` and `...` as `..`, `. ` as `.`.
            if part.starts_with("..") {
                components.pop();
            } else if part.is_empty() || part.starts_with('.') {
                // empty components and `.` are dropped
            } else {
                return Err(format!("the component {part:?} is only spaces"));
            }
            continue;
        }
        check_windows_component(part)?;
        components.push(trimmed.to_owned());
    }
    Ok(NormalPath { style: Style::Windows, anchor, components })
}

/// Win32 strips a component's trailing dots and spaces: `app.. ` is `app`.
fn strip_trailing(part: &str) -> &str {
    part.trim_end_matches(['.', ' '])
}

/// Refuses what Win32 would read as something else than a file: streams, devices, wildcards.
fn check_windows_component(part: &str) -> Result<(), String> {
    if part.contains(':') {
        return Err("a ':' after the drive letter names an alternate data stream".into());
    }
    if let Some(c) = part.chars().find(|c| matches!(c, '<' | '>' | '"' | '|' | '?' | '*') || c.is_control()) {
        return Err(format!("{c:?} is not allowed in a Windows file name"));
    }
    let stem = strip_trailing(part);
    let stem = stem.split('.').next().unwrap_or(stem).trim_end_matches(' ').to_ascii_uppercase();
    let reserved = matches!(stem.as_str(), "CON" | "NUL" | "AUX" | "PRN" | "CONIN$" | "CONOUT$")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() > 3
            && matches!(&stem[3..], "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "¹" | "²" | "³"));
    if reserved {
        return Err(format!("{part} is a reserved device name on Windows"));
    }
    Ok(())
}

/// One root: as configured (for messages), normalised, and canonical on this host when it exists.
#[derive(Debug, Clone)]
struct Root {
    written: String,
    normal: NormalPath,
}

/// The directories the agent may write in, from its local configuration.
#[derive(Debug, Clone)]
pub struct AllowedRoots {
    roots: Vec<Root>,
}

impl AllowedRoots {
    /// Every root must be an absolute directory path. An empty list is accepted (the agent then
    /// refuses every task) so that a host can run the agent before it is configured.
    pub fn new<S: AsRef<str>>(roots: impl IntoIterator<Item = S>) -> Result<Self, RootsError> {
        let mut parsed = Vec::new();
        for root in roots {
            let root = root.as_ref();
            let normal = normalise(root).map_err(|reason| RootsError { root: root.to_owned(), reason })?;
            if normal.components.is_empty() && normal.anchor == Anchor::UnixRoot {
                return Err(RootsError { root: root.to_owned(), reason: "a whole file system is not a root".into() });
            }
            parsed.push(Root { written: root.to_owned(), normal });
        }
        Ok(Self { roots: parsed })
    }

    fn list(&self) -> String {
        if self.roots.is_empty() {
            return "none configured".into();
        }
        self.roots.iter().map(|r| r.written.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// The lexical check only: the normalised path, if it lies strictly inside a root.
    pub fn check_lexically(&self, requested: &str) -> Result<NormalPath, PathRefusal> {
        let normal =
            normalise(requested).map_err(|reason| PathRefusal::Invalid { requested: requested.to_owned(), reason })?;
        if let Anchor::Unc { .. } = normal.anchor
            && !self.roots.iter().any(|r| matches!(r.normal.anchor, Anchor::Unc { .. }))
        {
            return Err(PathRefusal::Invalid {
                requested: requested.to_owned(),
                reason: format!("UNC paths are accepted only on a share an allowed root is on ({})", self.list()),
            });
        }
        if self.roots.iter().any(|r| normal.is_strictly_inside(&r.normal)) {
            Ok(normal)
        } else {
            Err(PathRefusal::Outside { requested: requested.to_owned(), roots: self.list() })
        }
    }

    /// Checks `requested` lexically, then on this host's file system: the nearest existing ancestor,
    /// links resolved, must still lie inside a root (also resolved), and the target must not be a
    /// symbolic link itself.
    pub fn resolve(&self, requested: &str) -> Result<ResolvedPath, PathRefusal> {
        let normal = self.check_lexically(requested)?;
        let host = if cfg!(windows) { Style::Windows } else { Style::Unix };
        if normal.style != host {
            let name = |s| if s == Style::Windows { "Windows" } else { "Unix" };
            return Err(PathRefusal::OtherOs {
                requested: requested.to_owned(),
                style: name(normal.style),
                host: name(host),
            });
        }
        let io = |source| PathRefusal::Io { requested: requested.to_owned(), source };
        let Some((file_name, dir_components)) = normal.components.split_last() else {
            return Err(PathRefusal::Outside { requested: requested.to_owned(), roots: self.list() });
        };
        let dir = NormalPath { components: dir_components.to_vec(), ..normal.clone() }.to_path_buf();

        // The nearest existing ancestor, canonical; the rest of the directories appended as written.
        let mut existing: &Path = &dir;
        let mut missing: Vec<&std::ffi::OsStr> = Vec::new();
        let canonical_dir = loop {
            match std::fs::canonicalize(existing) {
                Ok(canonical) => {
                    let mut full = canonical;
                    full.extend(missing.iter().rev());
                    break full;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    missing.push(existing.file_name().unwrap_or_default());
                    existing = match existing.parent() {
                        Some(parent) => parent,
                        None => return Err(io(e)),
                    };
                }
                Err(e) => return Err(io(e)),
            }
        };
        let inside = self.roots.iter().any(|root| {
            std::fs::canonicalize(root.normal.to_path_buf()).is_ok_and(|canonical_root| {
                canonical_dir.starts_with(&canonical_root)
                    && canonical_dir.join(file_name).components().count() > canonical_root.components().count()
            })
        });
        if !inside {
            return Err(PathRefusal::LinkedOutside {
                requested: requested.to_owned(),
                roots: self.list(),
                canonical: canonical_dir.join(file_name).display().to_string(),
            });
        }
        let target = canonical_dir.join(file_name);
        match std::fs::symlink_metadata(&target) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(PathRefusal::Symlink { requested: requested.to_owned(), roots: self.list() });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        Ok(ResolvedPath { dir: canonical_dir, file_name: file_name.clone() })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn roots(list: &[&str]) -> AllowedRoots {
        AllowedRoots::new(list.iter().copied()).unwrap()
    }

    fn refused(roots: &AllowedRoots, path: &str) -> String {
        match roots.check_lexically(path) {
            Ok(p) => panic!("{path} was accepted as {p}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn unix_dot_dot_is_resolved_before_the_check() {
        let r = roots(&["/srv/app"]);
        assert_eq!(
            r.check_lexically("/srv/app/./config//appsettings.json").unwrap().to_string(),
            "/srv/app/config/appsettings.json"
        );
        assert_eq!(r.check_lexically("/srv/other/../app/x.env").unwrap().to_string(), "/srv/app/x.env");
        assert_eq!(
            refused(&r, "/srv/app/../../etc/passwd"),
            "/srv/app/../../etc/passwd is outside the allowed roots (/srv/app)"
        );
    }

    #[test]
    fn a_sibling_sharing_the_roots_prefix_is_outside() {
        let r = roots(&["/srv/app"]);
        assert!(refused(&r, "/srv/app-evil/appsettings.json").contains("outside the allowed roots"));
        // The root itself is not a file inside it.
        assert!(refused(&r, "/srv/app").contains("outside"));
        assert!(refused(&r, "/srv/app/sub/..").contains("outside"));
    }

    #[test]
    fn relative_paths_are_refused() {
        let r = roots(&["/srv/app"]);
        assert!(refused(&r, "srv/app/x").contains("not absolute"));
        assert!(refused(&r, "C:inetpub\\app\\x").contains("not absolute"));
    }

    #[test]
    fn windows_dot_dot_is_resolved_and_named_in_the_refusal() {
        let r = roots(&["C:\\inetpub\\app"]);
        assert_eq!(
            refused(&r, "C:\\inetpub\\..\\Windows\\win.ini"),
            "C:\\inetpub\\..\\Windows\\win.ini is outside the allowed roots (C:\\inetpub\\app)"
        );
        assert_eq!(r.check_lexically("c:/INETPUB/App/web.config").unwrap().to_string(), "C:\\INETPUB\\App\\web.config");
    }

    #[test]
    fn windows_dot_dot_with_trailing_space_or_dot_is_still_dot_dot() {
        let r = roots(&["C:\\inetpub\\app"]);
        assert!(refused(&r, "C:\\inetpub\\app\\.. \\..\\Windows\\win.ini").contains("outside"));
        assert!(refused(&r, "C:\\inetpub\\app\\..\\..\\Windows\\win.ini").contains("outside"));
        assert!(refused(&r, "C:\\inetpub\\app\\...\\secret.txt").contains("outside"));
        assert!(refused(&r, "C:\\inetpub\\app\\.\\..").contains("outside"));
    }

    #[test]
    fn windows_trailing_dots_and_spaces_are_stripped_as_win32_does() {
        let r = roots(&["C:\\inetpub\\app"]);
        assert_eq!(
            r.check_lexically("C:\\inetpub\\app.. \\web.config. ").unwrap().to_string(),
            "C:\\inetpub\\app\\web.config"
        );
        // `app.. ` being `app` also means a look-alike cannot escape: `C:\inetpub\app. \..\..` is `C:\`.
        assert!(refused(&r, "C:\\inetpub\\app. \\..\\..\\boot.ini").contains("outside"));
    }

    #[test]
    fn another_drive_is_outside() {
        let r = roots(&["C:\\inetpub\\app"]);
        assert!(refused(&r, "D:\\inetpub\\app\\web.config").contains("outside the allowed roots (C:\\inetpub\\app)"));
    }

    #[test]
    fn unc_paths_only_on_a_roots_share() {
        let local = roots(&["C:\\inetpub\\app"]);
        assert!(refused(&local, "\\\\fileserver\\configs\\app\\web.config").contains("UNC paths are accepted only"));
        let share = roots(&["\\\\FileServer\\Configs\\app"]);
        assert!(share.check_lexically("\\\\fileserver\\configs\\app\\web.config").is_ok());
        assert!(refused(&share, "\\\\fileserver\\other\\app\\web.config").contains("outside"));
        assert!(refused(&share, "\\\\evil\\configs\\app\\web.config").contains("outside"));
        // `..` stops at the share, as Win32 does.
        assert!(refused(&share, "\\\\fileserver\\configs\\..\\..\\other\\app\\x").contains("outside"));
        assert!(refused(&share, "\\\\..\\configs\\app\\x").contains("needs \\\\server\\share"));
    }

    #[test]
    fn device_paths_are_refused() {
        let r = roots(&["C:\\inetpub\\app"]);
        assert!(refused(&r, "\\\\?\\C:\\inetpub\\app\\web.config").contains("device paths"));
        assert!(refused(&r, "\\\\.\\C:\\inetpub\\app\\web.config").contains("device paths"));
        assert!(refused(&r, "\\\\?/C:/inetpub/app/web.config").contains("device paths"));
        assert!(refused(&r, "\\\\.\\PhysicalDrive0").contains("device paths"));
    }

    #[test]
    fn alternate_data_streams_are_refused() {
        let r = roots(&["C:\\inetpub\\app"]);
        assert!(refused(&r, "C:\\inetpub\\app\\appsettings.json:stream").contains("alternate data stream"));
        assert!(refused(&r, "C:\\inetpub\\app\\appsettings.json::$DATA").contains("alternate data stream"));
    }

    #[test]
    fn reserved_device_names_are_refused_with_or_without_extension() {
        let r = roots(&["C:\\inetpub\\app"]);
        for name in
            ["CON", "nul", "Aux", "PRN", "COM1", "com9", "LPT1", "lpt9", "nul.txt", "CON.json", "NUL .txt", "aux."]
        {
            let path = format!("C:\\inetpub\\app\\{name}");
            assert!(refused(&r, &path).contains("reserved device name"), "{path}");
        }
        assert!(r.check_lexically("C:\\inetpub\\app\\COM10").is_ok());
        assert!(r.check_lexically("C:\\inetpub\\app\\console.json").is_ok());
    }

    #[test]
    fn windows_and_unix_roots_do_not_mix() {
        let r = roots(&["/srv/app"]);
        assert!(refused(&r, "C:\\srv\\app\\x").contains("outside"));
    }

    #[test]
    fn a_root_must_be_absolute() {
        assert!(AllowedRoots::new(["srv/app"]).is_err());
        assert!(AllowedRoots::new(["/"]).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_inside_a_root_pointing_outside_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("linked")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("passwd"), root.path().join("file.env")).unwrap();
        let r = roots(&[root.path().to_str().unwrap()]);

        let through_dir = format!("{}/linked/passwd", root.path().display());
        let err = r.resolve(&through_dir).unwrap_err().to_string();
        assert!(err.contains("once symbolic links are followed"), "{err}");
        let into_missing = format!("{}/linked/new/deeper.env", root.path().display());
        assert!(r.resolve(&into_missing).is_err());

        let link_itself = format!("{}/file.env", root.path().display());
        let err = r.resolve(&link_itself).unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_path_inside_a_root_resolves_to_its_canonical_directory() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("conf")).unwrap();
        // The root reached through a link is still the root.
        let alias = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(root.path(), alias.path().join("root")).unwrap();
        let r = roots(&[&format!("{}/root", alias.path().display())]);
        let resolved = r.resolve(&format!("{}/root/conf/app.env", alias.path().display())).unwrap();
        assert_eq!(resolved.dir, std::fs::canonicalize(root.path().join("conf")).unwrap());
        assert_eq!(resolved.file_name, "app.env");
    }

    #[cfg(unix)]
    #[test]
    fn a_windows_path_is_refused_on_a_unix_host() {
        let r = roots(&["C:\\inetpub\\app"]);
        assert!(r.resolve("C:\\inetpub\\app\\web.config").unwrap_err().to_string().contains("is a Windows path"));
    }
}
