//! `properties`: Java `.properties` files (`key=value`, `key: value` or `key value` lines), as
//! `java.util.Properties.load` reads them.
//!
//! Every logical line that assigns the key is replaced (the last one wins when read, so an earlier
//! stale one would linger otherwise); comments, blank lines and other entries stay as written.

use super::{Edit, FormatError, newline_of, refused};
use crate::SecretValue;

const FORMAT: &str = "properties";

struct Entry {
    key: String,
    /// The value's byte span as written, continuation lines included.
    span: (usize, usize),
    value: String,
}

/// Reads `raw` (one logical line's key or value, continuations already joined) as `load` does.
fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                if hex.len() != 4 {
                    return Err("a malformed \\u escape".into());
                }
                let code = u32::from_str_radix(&hex, 16).map_err(|_| "a malformed \\u escape".to_owned())?;
                out.push(char::from_u32(code).ok_or_else(|| "a \\u escape that is not a character".to_owned())?);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

/// Writes `value` so `load` reads it back exactly, in ASCII (`load(InputStream)` reads ISO-8859-1).
fn escape(value: &str) -> String {
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' ' if i == 0 => out.push_str("\\ "),
            '#' | '!' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
        }
    }
    out
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{c}')
}

/// Whether the line `line` ends with an odd number of backslashes: it continues on the next.
fn continues(line: &str) -> bool {
    line.trim_end_matches('\r').chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

fn scan(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        // The logical line: physical lines joined while they end in an odd run of backslashes.
        let mut end = pos;
        loop {
            let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
            if continues(&text[end..line_end]) && line_end < text.len() {
                end = line_end + 1;
            } else {
                end = line_end;
                break;
            }
        }
        let logical = &text[pos..end];
        let body_start = pos + (logical.len() - logical.trim_start_matches(is_blank).len());
        let body = &text[body_start..end];
        if body.is_empty() || body.starts_with(['#', '!']) || body.trim_end_matches('\r').is_empty() {
            pos = end + 1;
            continue;
        }
        // The key runs to the first unescaped `=`, `:` or blank.
        let bytes = body.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'=' | b':' | b' ' | b'\t' | b'\n' | b'\r' => break,
                _ => i += 1,
            }
        }
        let i = i.min(bytes.len());
        let raw_key = &body[..i];
        if raw_key.contains('\n') {
            return Err("a key continues over several lines".into());
        }
        let mut v = i;
        while v < bytes.len() && matches!(bytes[v], b' ' | b'\t') {
            v += 1;
        }
        if v < bytes.len() && matches!(bytes[v], b'=' | b':') {
            v += 1;
            while v < bytes.len() && matches!(bytes[v], b' ' | b'\t') {
                v += 1;
            }
        }
        let raw_value = body[v..].trim_end_matches('\r');
        // Continuations: a backslash-newline and the next line's leading blanks are dropped.
        let mut joined = String::new();
        for (n, part) in raw_value.split('\n').enumerate() {
            let part = part.trim_end_matches('\r');
            let part = if n > 0 { part.trim_start_matches(is_blank) } else { part };
            joined.push_str(part.strip_suffix('\\').filter(|_| continues(part)).unwrap_or(part));
        }
        entries.push(Entry {
            key: unescape(raw_key)?,
            span: (body_start + v, body_start + v + raw_value.len()),
            value: unescape(&joined)?,
        });
        pos = end + 1;
    }
    Ok(entries)
}

pub(super) fn set(text: &str, key: &str, value: &SecretValue, _create: bool) -> Result<Edit, FormatError> {
    let secret = value.expose();
    let found: Vec<Entry> =
        scan(text).map_err(|e| refused(FORMAT, &[key], e))?.into_iter().filter(|e| e.key == key).collect();
    if !found.is_empty() && found.iter().all(|e| e.value == secret) {
        return Ok(Edit::Unchanged);
    }
    let encoded = escape(secret);
    let mut out = String::with_capacity(text.len() + encoded.len() + key.len() + 4);
    if found.is_empty() {
        let nl = newline_of(text);
        out.push_str(text);
        if !text.is_empty() && !text.ends_with('\n') {
            out.push_str(nl);
        }
        let escaped_key = escape(key).replace('=', "\\=").replace(':', "\\:").replace(' ', "\\ ");
        out.push_str(&format!("{escaped_key}={encoded}{nl}"));
    } else {
        let mut at = 0;
        for e in &found {
            out.push_str(&text[at..e.span.0]);
            out.push_str(&encoded);
            at = e.span.1;
        }
        out.push_str(&text[at..]);
    }
    let after = scan(&out).map_err(|e| FormatError::Check(FORMAT, e))?;
    let ours: Vec<_> = after.iter().filter(|e| e.key == key).collect();
    if ours.last().map(|e| e.value.as_str()) != Some(secret) || ours.len() != found.len().max(1) {
        return Err(FormatError::Check(FORMAT, format!("{key} does not read back as the new value")));
    }
    Ok(Edit::Changed(out))
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
    fn every_assignment_is_replaced_in_any_separator_style() {
        let text = "# app\n! also a comment\nentra.secret = old\nother: x\n  entra.secret:older\nentra.secret long \\\n    continued\nlast=1\n";
        assert_eq!(
            changed(text, "entra.secret", "n\\ew é"),
            "# app\n! also a comment\nentra.secret = n\\\\ew \\u00E9\nother: x\n  entra.secret:n\\\\ew \\u00E9\nentra.secret n\\\\ew \\u00E9\nlast=1\n"
        );
    }

    #[test]
    fn a_missing_key_is_appended() {
        assert_eq!(changed("a=1", "entra.secret", " v"), "a=1\nentra.secret=\\ v\n");
        assert_eq!(changed("", "a key", "v"), "a\\ key=v\n");
    }

    #[test]
    fn the_value_already_in_place_is_unchanged() {
        for text in ["s=v\\u00E9\n", "s : vé\n", "s vé"] {
            assert_eq!(set(text, "s", &SecretValue::new("vé"), false).unwrap(), Edit::Unchanged, "{text}");
        }
    }

    #[test]
    fn a_malformed_escape_is_refused() {
        assert!(set("s=\\u12\n", "s", &SecretValue::new("v"), false).is_err());
    }
}
