//! `agent_secret_sync`: publishes the new secret into a configuration file on a host, through the
//! connected agent of that host.

use serde::{Deserialize, Serialize};

use super::issues::{Notes, shorten_to};
use super::read::{Need, Obj, check_env_name, check_nothing_more};
use super::{AgentTarget, Phase, StepConfig, StepKind, StepType, TypeConfig};

pub(super) const TYPE: StepType = StepType {
    kind: StepKind::AgentSecretSync,
    name: "agent_secret_sync",
    phase: Phase::Publish,
    takes_agent: true,
    config_fields: &["target_path", "secret_key", "file_format", "create_if_missing", "backup"],
    env_field: None,
    read: |o, agent, n| read(o, agent, n).map(StepConfig::AgentSecretSync),
};

/// `agent_secret_sync`: a connected agent writes the secret into a configuration file, atomically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentSecretSyncConfig {
    /// Serialised at the top level of the step (`agent_id` / `agent_url`), as in the notes.
    #[serde(skip)]
    pub agent: AgentTarget,
    /// An absolute path on the agent's host: `C:\...`, `\\server\share\...` or `/...`, without `.` or
    /// `..` segments. A string, not a `PathBuf`: it names a file on another machine, often Windows.
    pub target_path: String,
    /// Where the secret goes in the file; see [`AgentSecretSyncConfig::key_path`].
    pub secret_key: String,
    pub file_format: FileFormat,
    /// Create the file (and the keys) when it does not exist, instead of failing.
    pub create_if_missing: bool,
    /// Keep a copy of the previous file beside it.
    pub backup: bool,
}

impl AgentSecretSyncConfig {
    /// The keys leading to the secret inside the file.
    ///
    /// - `json`, `yaml`: nested keys separated by `:`, the .NET configuration convention
    ///   (`Entra:ClientSecret` is `{"Entra": {"ClientSecret": …}}`).
    /// - `ini`: `Section:Key`, or just `Key` outside any section.
    /// - `env`, `properties`: one key, taken as written (`Entra__ClientSecret`,
    ///   `azure.client-secret`).
    /// - `text`: none, the whole file is the secret (`secret_key` only names it in history).
    pub fn key_path(&self) -> Vec<&str> {
        match self.file_format {
            FileFormat::Json | FileFormat::Yaml | FileFormat::Ini => self.secret_key.split(':').collect(),
            FileFormat::Env | FileFormat::Properties => vec![self.secret_key.as_str()],
            FileFormat::Text => Vec::new(),
        }
    }
}

/// The renderer an agent uses for the target file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    Json,
    Yaml,
    /// `NAME=value` lines.
    Env,
    /// Java `.properties`.
    Properties,
    Ini,
    /// The whole file is the secret.
    Text,
}

impl FileFormat {
    const CHOICES: &[(&str, FileFormat)] = &[
        ("json", FileFormat::Json),
        ("yaml", FileFormat::Yaml),
        ("env", FileFormat::Env),
        ("properties", FileFormat::Properties),
        ("ini", FileFormat::Ini),
        ("text", FileFormat::Text),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Yaml => "yaml",
            Self::Env => "env",
            Self::Properties => "properties",
            Self::Ini => "ini",
            Self::Text => "text",
        }
    }
}

impl TypeConfig for AgentSecretSyncConfig {
    fn describe(&self) -> String {
        let what = match self.file_format {
            FileFormat::Text => "text file".to_owned(),
            _ => self.secret_key.clone(),
        };
        format!("Write secret to {} {} ({what})", self.agent.short(), self.target_path)
    }

    fn agent(&self) -> Option<&AgentTarget> {
        Some(&self.agent)
    }
}

fn read(o: &Obj<'_>, agent: Option<AgentTarget>, n: &mut Notes) -> Option<AgentSecretSyncConfig> {
    let target_path = o.text(n, "target_path", Need::Required, check_target_path);
    let secret_key = o.text(n, "secret_key", Need::Required, check_nothing_more);
    let file_format = o.one_of(n, "file_format", Need::Required, FileFormat::CHOICES);
    if let (Some(key), Some(format)) = (&secret_key, file_format) {
        let checked = check_secret_key(key, format);
        o.checked(n, "secret_key", checked);
    }
    let create_if_missing = o.bool(n, "create_if_missing", Need::Optional);
    let backup = o.bool(n, "backup", Need::Optional);
    Some(AgentSecretSyncConfig {
        agent: agent?,
        target_path: target_path?,
        secret_key: secret_key?,
        file_format: file_format?,
        create_if_missing: create_if_missing.unwrap_or(false),
        backup: backup.unwrap_or(true),
    })
}

/// An absolute path on the agent's host, in one of three forms, and without `.`/`..` segments, so
/// that the agent's allowed-roots check compares like with like and nothing climbs out of a root.
fn check_target_path(p: &str) -> Result<(), String> {
    let b = p.as_bytes();
    let (rest, windows) = if p.starts_with(r"\\?\") || p.starts_with(r"\\.\") {
        return Err(
            r"device and verbatim paths (\\?\, \\.\) are not accepted; write C:\... or \\server\share\...".to_owned()
        );
    } else if let Some(unc) = p.strip_prefix(r"\\") {
        let mut parts = unc.split(['\\', '/']);
        let (server, share) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if server.is_empty() || share.is_empty() {
            return Err(r"a UNC path needs a server and a share: \\server\share\dir\file".to_owned());
        }
        (&p[2..], true)
    } else if b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && matches!(b[2], b'\\' | b'/') {
        (&p[3..], true)
    } else if let Some(posix) = p.strip_prefix('/') {
        (posix, false)
    } else {
        return Err(r"must be an absolute path: C:\..., \\server\share\... or /...".to_owned());
    };
    let segments: Vec<&str> = rest.split(['\\', '/']).collect();
    if segments.iter().any(|s| *s == ".." || *s == ".") {
        return Err("must not contain `.` or `..` segments".to_owned());
    }
    if windows && rest.chars().any(|c| matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|')) {
        return Err(
            r#"a Windows path must not contain : * ? " < > | after the drive (no alternate data streams)"#.to_owned()
        );
    }
    if segments.last().is_none_or(|s| s.is_empty()) {
        return Err("must name a file, not a directory".to_owned());
    }
    Ok(())
}

/// The key the secret is written under, by file format (see [`AgentSecretSyncConfig::key_path`]).
fn check_secret_key(key: &str, format: FileFormat) -> Result<(), String> {
    match format {
        FileFormat::Json | FileFormat::Yaml => {
            if key.split(':').any(str::is_empty) {
                return Err("nested keys are separated by single ':' with a name on each side, such as \
                            Entra:ClientSecret"
                    .to_owned());
            }
        }
        FileFormat::Ini => {
            let parts: Vec<&str> = key.split(':').collect();
            if parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
                return Err("an ini key is Key or Section:Key".to_owned());
            }
        }
        FileFormat::Env => {
            if key.contains(':') {
                return Err(format!(
                    "an environment variable name cannot contain ':'; .NET reads '__' as ':', so write {}",
                    shorten_to(&key.replace(':', "__"), 40)
                ));
            }
            if check_env_name(key).is_err() {
                return Err("an env key is letters, digits and '_', not starting with a digit".to_owned());
            }
        }
        FileFormat::Properties => {
            if key.chars().any(|c| c.is_whitespace() || matches!(c, '=' | ':')) || key.starts_with(['#', '!']) {
                return Err("a properties key has no spaces, '=' or ':' and does not start with '#' or '!'".to_owned());
            }
        }
        FileFormat::Text => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::steps::parse_steps;
    use crate::domain::steps::test_support::*;

    #[test]
    fn relative_target_path_is_refused() {
        let with_path = |p: &str| SEED_1.replace(r"C:\\inetpub\\app\\appsettings.json", p);
        for bad in
            [r"inetpub\\app\\appsettings.json", "app/appsettings.json", r"C:appsettings.json", r"\\inetpub\\app.json"]
        {
            let e = errors(&with_path(bad));
            let i = issue(&e, "config.target_path");
            assert!(i.message.starts_with("must be an absolute path"), "{bad}: {i}");
            assert_eq!(i.step.index, Some(0));
        }
        for bad in [r"C:\\inetpub\\..\\Windows\\win.ini", "/etc/app/../shadow", r"C:\\inetpub\\.\\app.json"] {
            let e = errors(&with_path(bad));
            assert!(issue(&e, "config.target_path").message.contains("`..` segments"), "{bad}");
        }
        for bad in [r"\\\\?\\C:\\x.json", r"C:\\inetpub\\app.json:stream", r"C:\\inetpub\\", r"\\\\server"] {
            assert!(parse_steps(&with_path(bad)).is_err(), "{bad} accepted");
        }
        for good in [
            r"C:\\inetpub\\app\\appsettings.json",
            "D:/sites/app/web.config",
            r"\\\\fs01\\apps\\app\\appsettings.json",
            "/etc/app/app.yaml",
        ] {
            plan(&with_path(good));
        }
    }

    #[test]
    fn unknown_file_format_lists_the_allowed_ones() {
        let e = errors(&SEED_1.replace("\"json\"", "\"xml\""));
        let i = issue(&e, "config.file_format");
        assert_eq!(i.message, "unknown value `xml`; expected one of json, yaml, env, properties, ini, text");
        let e = errors(&SEED_1.replace("\"json\"", "\"JSON\""));
        assert!(issue(&e, "config.file_format").message.contains("did you mean `json`?"), "{e:?}");
    }

    #[test]
    fn secret_keys_are_checked_by_file_format() {
        let with = |key: &str, format: &str| {
            SEED_1
                .replace("Entra:ClientSecret", key)
                .replace("\"file_format\": \"json\"", &format!("\"file_format\": \"{format}\""))
        };
        let e = errors(&with("Entra:ClientSecret", "env"));
        assert!(issue(&e, "config.secret_key").message.contains("write Entra__ClientSecret"), "{e:?}");
        let p = plan(&with("Entra__ClientSecret", "env"));
        let StepConfig::AgentSecretSync(c) = &p.steps[0].config else { panic!() };
        assert_eq!(c.key_path(), ["Entra__ClientSecret"]);
        assert!(parse_steps(&with("Entra::ClientSecret", "yaml")).is_err());
        assert!(parse_steps(&with("a:b:c", "ini")).is_err());
        assert!(parse_steps(&with("azure client secret", "properties")).is_err());
        let p = plan(&with("AzureAd:Section", "ini"));
        let StepConfig::AgentSecretSync(c) = &p.steps[0].config else { panic!() };
        assert_eq!(c.key_path(), ["AzureAd", "Section"]);
        let p = plan(&with("client-secret", "text"));
        let StepConfig::AgentSecretSync(c) = &p.steps[0].config else { panic!() };
        assert!(c.key_path().is_empty());
        let e = errors(&with("", "json"));
        assert_eq!(issue(&e, "config.secret_key").message, "must not be empty");
    }
}
