//! `env`: dotenv files, `KEY=value` lines, as a Linux service's `EnvironmentFile` or a `.env`.
//!
//! Every line that assigns the key is replaced (dotenv readers let the last one win, so an earlier
//! stale one would linger otherwise); comments, blank lines, `export ` and all other lines stay.

use super::{Edit, FormatError, newline_of, refused};
use crate::SecretValue;

const FORMAT: &str = "env";

/// One `KEY=value` assignment found in the text.
struct Assignment {
    key: String,
    /// The byte span of the value as written, quotes included.
    span: (usize, usize),
    value: String,
}

pub(super) fn set(text: &str, key: &str, value: &SecretValue, _create: bool) -> Result<Edit, FormatError> {
    let valid_key = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !valid_key {
        return Err(FormatError::BadKey(key.to_owned(), FORMAT, "a dotenv key is letters, digits, '_' and '.'".into()));
    }
    let secret = value.expose();
    let found: Vec<Assignment> =
        scan(text).map_err(|e| refused(FORMAT, &[key], e))?.into_iter().filter(|a| a.key == key).collect();
    if !found.is_empty() && found.iter().all(|a| a.value == secret) {
        return Ok(Edit::Unchanged);
    }
    let encoded = encode(secret);
    let mut out = String::with_capacity(text.len() + encoded.len() + key.len() + 4);
    if found.is_empty() {
        out.push_str(text);
        let nl = newline_of(text);
        if !text.is_empty() && !text.ends_with('\n') {
            out.push_str(nl);
        }
        out.push_str(&format!("{key}={encoded}{nl}"));
    } else {
        let mut at = 0;
        for a in &found {
            out.push_str(&text[at..a.span.0]);
            out.push_str(&encoded);
            at = a.span.1;
        }
        out.push_str(&text[at..]);
    }
    // Read back with the same reader: the key's last assignment is the secret, and nothing else moved.
    let after = scan(&out).map_err(|e| FormatError::Check(FORMAT, e))?;
    let ours: Vec<_> = after.iter().filter(|a| a.key == key).collect();
    if ours.last().map(|a| a.value.as_str()) != Some(secret) || ours.len() != found.len().max(1) {
        return Err(FormatError::Check(FORMAT, format!("{key} does not read back as the new value")));
    }
    Ok(Edit::Changed(out))
}

/// Quotes as dotenv readers unquote: single quotes keep everything literal (no `$` expansion); a
/// value with `'` or a newline needs double quotes and escapes.
fn encode(value: &str) -> String {
    if !value.contains(['\'', '\n', '\r']) {
        return format!("'{value}'");
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Finds the assignments, following quoted values over several lines. Lines that are not
/// assignments are skipped, as dotenv readers skip them.
fn scan(text: &str) -> Result<Vec<Assignment>, String> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut pos = 0;
    let line_end = |from: usize| text[from..].find('\n').map_or(text.len(), |i| from + i);
    while pos < text.len() {
        let end = line_end(pos);
        let line = &text[pos..end];
        let trimmed = line.trim_start_matches([' ', '\t']);
        let mut start = pos + (line.len() - trimmed.len());
        let rest = trimmed.strip_prefix("export ").map(|r| r.trim_start_matches([' ', '\t'])).unwrap_or(trimmed);
        start += trimmed.len() - rest.len();
        let key_len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(rest.len());
        let after_key = rest[key_len..].trim_start_matches([' ', '\t']);
        if key_len == 0 || rest.starts_with('#') || !after_key.starts_with('=') {
            pos = end + 1;
            continue;
        }
        let key = rest[..key_len].to_owned();
        let eq = start + key_len + (rest[key_len..].len() - after_key.len());
        let mut v = eq + 1;
        while v < end && matches!(bytes[v], b' ' | b'\t') {
            v += 1;
        }
        let (value, span_end) = match bytes.get(v) {
            Some(b'\'') => {
                let close =
                    text[v + 1..].find('\'').ok_or_else(|| format!("the single quote after {key}= is never closed"))?;
                (text[v + 1..v + 1 + close].to_owned(), v + 2 + close)
            }
            Some(b'"') => {
                let mut value = String::new();
                let mut chars = text[v + 1..].char_indices();
                let mut close = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '"' => {
                            close = Some(v + 1 + i + 1);
                            break;
                        }
                        '\\' => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, 'r')) => value.push('\r'),
                            Some((_, e @ ('\\' | '"' | '$'))) => value.push(e),
                            Some((_, other)) => {
                                value.push('\\');
                                value.push(other);
                            }
                            None => {}
                        },
                        c => value.push(c),
                    }
                }
                let close = close.ok_or_else(|| format!("the double quote after {key}= is never closed"))?;
                (value, close)
            }
            _ => {
                // Unquoted: up to an inline ` #` comment or the end of the line, trailing blanks off.
                let raw = &text[v..end];
                let cut = raw.find(" #").or_else(|| raw.find("\t#")).unwrap_or(raw.len());
                let value = raw[..cut].trim_end_matches([' ', '\t', '\r']);
                (value.to_owned(), v + value.len())
            }
        };
        found.push(Assignment { key, span: (v, span_end), value });
        pos = line_end(span_end) + 1;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn changed(text: &str, key: &str, value: &str) -> String {
        match set(text, key, &SecretValue::new(value), false).unwrap() {
            Edit::Changed(t) => t,
            Edit::Unchanged => panic!("unchanged"),
        }
    }

    #[test]
    fn every_assignment_is_replaced_and_the_rest_kept() {
        let text =
            "# service settings\nexport SECRET=old # rotated\n\nOTHER=\"x y\"\n  SECRET = 'older'\nnot an assignment\n";
        assert_eq!(
            changed(text, "SECRET", "n3w~val"),
            "# service settings\nexport SECRET='n3w~val' # rotated\n\nOTHER=\"x y\"\n  SECRET = 'n3w~val'\nnot an assignment\n"
        );
    }

    #[test]
    fn a_missing_key_is_appended_after_a_newline() {
        assert_eq!(changed("A=1", "SECRET", "v"), "A=1\nSECRET='v'\n");
        assert_eq!(changed("A=1\r\n", "SECRET", "v"), "A=1\r\nSECRET='v'\r\n");
        assert_eq!(changed("", "SECRET", "v"), "SECRET='v'\n");
    }

    #[test]
    fn values_are_quoted_as_dotenv_reads_them() {
        assert_eq!(changed("S=x\n", "S", "a$b\"c"), "S='a$b\"c'\n");
        assert_eq!(changed("S=x\n", "S", "it's $5\\\"\nz"), "S=\"it's \\$5\\\\\\\"\\nz\"\n");
    }

    #[test]
    fn a_multiline_double_quoted_value_is_replaced_whole() {
        assert_eq!(changed("S=\"line1\nline2\"\nB=2\n", "S", "v"), "S='v'\nB=2\n");
    }

    #[test]
    fn the_same_value_in_any_spelling_is_unchanged() {
        for text in ["S=v~1\n", "S='v~1'\n", "S=\"v~1\"\n", "export S=v~1 # c\n"] {
            assert_eq!(set(text, "S", &SecretValue::new("v~1"), false).unwrap(), Edit::Unchanged, "{text}");
        }
        assert_ne!(set("S=v~1\nS=old\n", "S", &SecretValue::new("v~1"), false).unwrap(), Edit::Unchanged);
    }

    #[test]
    fn an_unclosed_quote_and_a_bad_key_are_refused() {
        assert!(set("S='open\n", "S", &SecretValue::new("v"), false).unwrap_err().to_string().contains("never closed"));
        assert!(set("", "A-B", &SecretValue::new("v"), false).is_err());
    }
}
