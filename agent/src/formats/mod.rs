//! The editors, one per file format: each changes the span of the one value (or inserts one
//! entry) and keeps every other byte, then checks its result with a real parser.
//!
//! Re-serialising the whole document would be simpler and would lose what people put in these
//! files: comments, key order, layout. What an editor cannot change safely it refuses, in words.

mod env;
mod json;
mod properties;
mod text;
mod xml;
mod yaml;

use crate::SecretValue;

/// The formats this agent writes, in the words of the refusal for any other.
pub const SUPPORTED: &str = "json, yaml, env, xml, text, properties";

/// What an edit came to.
#[derive(PartialEq, Eq)]
pub enum Edit {
    /// The value is already there: a redelivered task changes nothing.
    Unchanged,
    /// The whole new text of the file.
    Changed(String),
}

impl std::fmt::Debug for Edit {
    // The new text holds the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unchanged => f.write_str("Unchanged"),
            Self::Changed(text) => write!(f, "Changed(<{} bytes>)", text.len()),
        }
    }
}

/// Why an editor did not edit. The text names the key and the problem, never a value from the file.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("file_format {0} is not supported by this agent: {SUPPORTED}")]
    Unsupported(String),
    #[error("secret_key {0:?} is not usable for {1}: {2}")]
    BadKey(String, &'static str, String),
    #[error("the file is not valid {0}: {1}")]
    Invalid(&'static str, String),
    #[error("the agent cannot safely set {key} in this {format} file: {reason}")]
    Refused { format: &'static str, key: String, reason: String },
    #[error("the edited {0} file did not check out ({1}); the file was left as it was")]
    Check(&'static str, String),
}

pub(crate) fn refused(format: &'static str, key_path: &[&str], reason: impl Into<String>) -> FormatError {
    FormatError::Refused { format, key: key_path.join(":"), reason: reason.into() }
}

/// Sets `key_path` to `value` in `text`, a document of `format`. `create` means the file does not
/// exist yet: `text` is then ignored and a minimal document holding only the key is made.
pub fn set(
    format: &str,
    text: &str,
    key_path: &[&str],
    value: &SecretValue,
    create: bool,
) -> Result<Edit, FormatError> {
    let format = format.to_ascii_lowercase();
    let kind = match format.as_str() {
        "json" => "json",
        "yaml" | "yml" => "yaml",
        "env" => "env",
        "xml" => "xml",
        "text" => "text",
        "properties" => "properties",
        _ => return Err(FormatError::Unsupported(format)),
    };
    if kind != "text" && (key_path.is_empty() || key_path.iter().any(|k| k.is_empty())) {
        return Err(FormatError::BadKey(key_path.join(":"), kind, "it has an empty part".into()));
    }
    if kind != "text" && key_path.len() > 1 && matches!(kind, "env" | "xml" | "properties") {
        return Err(FormatError::BadKey(key_path.join(":"), kind, "it takes one key, not a nested path".into()));
    }
    let text = if create { "" } else { text };
    match kind {
        "json" => json::set(text, key_path, value, create),
        "yaml" => yaml::set(text, key_path, value, create),
        "env" => env::set(text, key_path[0], value, create),
        "xml" => xml::set(text, key_path[0], value, create),
        "properties" => properties::set(text, key_path[0], value, create),
        _ => Ok(text::set(text, value, create)),
    }
}

/// The line ending a document uses, so inserted lines match it.
pub(crate) fn newline_of(text: &str) -> &'static str {
    if text.contains("\r\n") { "\r\n" } else { "\n" }
}

/// The whitespace at the start of the line `pos` is on.
pub(crate) fn indent_of_line(text: &str, pos: usize) -> &str {
    let start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[start..];
    let end = line.find(|c: char| c != ' ' && c != '\t').unwrap_or(line.len());
    &line[..end]
}

/// Whether only whitespace precedes `pos` on its line.
pub(crate) fn starts_line(text: &str, pos: usize) -> bool {
    let start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    text[start..pos].chars().all(|c| c == ' ' || c == '\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_formats_are_refused_with_the_list() {
        let err = set("ini", "", &["A"], &SecretValue::new("v"), false).expect_err("ini is not supported");
        assert_eq!(
            err.to_string(),
            "file_format ini is not supported by this agent: json, yaml, env, xml, text, properties"
        );
    }

    #[test]
    fn nested_keys_are_refused_where_the_format_has_one_key() {
        let err = set("env", "", &["A", "B"], &SecretValue::new("v"), false).expect_err("env takes one key");
        assert!(err.to_string().contains("takes one key"), "{err}");
    }
}
