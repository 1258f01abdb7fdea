//! `json`, as .NET's configuration reads it (`appsettings.json`): `//` and `/* */` comments and
//! trailing commas allowed, keys matched case-insensitively.
//!
//! A small scanner finds the byte spans of objects, keys and values; the edit replaces one value's
//! span or inserts one member. The result is then read by serde_json (with comments and trailing
//! commas blanked out) and compared with the original plus the one change.

use serde_json::Value;

use super::{Edit, FormatError, indent_of_line, newline_of, refused, starts_line};
use crate::SecretValue;

const FORMAT: &str = "json";

enum Node {
    Object(Obj),
    Str { span: (usize, usize), value: String },
    Array,
    Scalar { span: (usize, usize) },
}

struct Obj {
    open: usize,
    close: usize,
    members: Vec<Member>,
}

struct Member {
    key: String,
    key_start: usize,
    value: Node,
    value_end: usize,
    comma_after: Option<usize>,
}

struct Scanner<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
    /// Comments and trailing commas: what serde_json must not see.
    blanks: Vec<(usize, usize)>,
}

impl<'a> Scanner<'a> {
    fn err(&self, what: &str) -> String {
        let line = self.text[..self.i.min(self.text.len())].matches('\n').count() + 1;
        format!("{what} on line {line}")
    }

    fn skip(&mut self) -> Result<(), String> {
        loop {
            match self.s.get(self.i) {
                Some(b' ' | b'\t' | b'\r' | b'\n') => self.i += 1,
                Some(b'/') if self.s.get(self.i + 1) == Some(&b'/') => {
                    let start = self.i;
                    while self.i < self.s.len() && self.s[self.i] != b'\n' {
                        self.i += 1;
                    }
                    self.blanks.push((start, self.i));
                }
                Some(b'/') if self.s.get(self.i + 1) == Some(&b'*') => {
                    let start = self.i;
                    let end = self.text[self.i + 2..].find("*/").ok_or_else(|| self.err("an unclosed /* comment"))?;
                    self.i += 2 + end + 2;
                    self.blanks.push((start, self.i));
                }
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, String> {
        if depth > 64 {
            return Err(self.err("nesting too deep"));
        }
        self.skip()?;
        match self.s.get(self.i) {
            Some(b'{') => self.object(depth).map(Node::Object),
            Some(b'[') => {
                self.i += 1;
                loop {
                    self.skip()?;
                    if self.s.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Ok(Node::Array);
                    }
                    self.value(depth + 1)?;
                    self.skip()?;
                    match self.s.get(self.i) {
                        Some(b',') => {
                            let comma = self.i;
                            self.i += 1;
                            self.skip()?;
                            if self.s.get(self.i) == Some(&b']') {
                                self.blanks.push((comma, comma + 1));
                            }
                        }
                        Some(b']') => {}
                        _ => return Err(self.err("expected , or ] in an array")),
                    }
                }
            }
            Some(b'"') => {
                let (span, value) = self.string()?;
                Ok(Node::Str { span, value })
            }
            Some(_) => {
                let start = self.i;
                while let Some(c) = self.s.get(self.i) {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n' | b'/') {
                        break;
                    }
                    self.i += 1;
                }
                if start == self.i {
                    return Err(self.err("expected a value"));
                }
                Ok(Node::Scalar { span: (start, self.i) })
            }
            None => Err(self.err("the document ends where a value was expected")),
        }
    }

    fn string(&mut self) -> Result<((usize, usize), String), String> {
        let start = self.i;
        self.i += 1;
        while let Some(c) = self.s.get(self.i) {
            match c {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    let raw = &self.text[start..self.i];
                    let value: String = serde_json::from_str(raw).map_err(|_| self.err("an invalid string"))?;
                    return Ok(((start, self.i), value));
                }
                _ => self.i += 1,
            }
        }
        Err(self.err("an unclosed string"))
    }

    fn object(&mut self, depth: usize) -> Result<Obj, String> {
        let open = self.i;
        self.i += 1;
        let mut members = Vec::new();
        loop {
            self.skip()?;
            match self.s.get(self.i) {
                Some(b'}') => {
                    let close = self.i;
                    self.i += 1;
                    return Ok(Obj { open, close, members });
                }
                Some(b'"') => {}
                _ => return Err(self.err("expected a key or } in an object")),
            }
            let key_start = self.i;
            let (_, key) = self.string()?;
            self.skip()?;
            if self.s.get(self.i) != Some(&b':') {
                return Err(self.err("expected : after a key"));
            }
            self.i += 1;
            let value = self.value(depth + 1)?;
            let value_end = self.i;
            self.skip()?;
            let mut comma_after = None;
            match self.s.get(self.i) {
                Some(b',') => {
                    let comma = self.i;
                    comma_after = Some(comma);
                    self.i += 1;
                    self.skip()?;
                    if self.s.get(self.i) == Some(&b'}') {
                        self.blanks.push((comma, comma + 1));
                    }
                }
                Some(b'}') => {}
                _ => return Err(self.err("expected , or } after a value")),
            }
            members.push(Member { key, key_start, value, value_end, comma_after });
        }
    }
}

/// Parses the document; returns the root and the text serde_json can read (comments and trailing
/// commas blanked with spaces, so positions stay).
fn scan(text: &str) -> Result<(Node, String), String> {
    let mut sc = Scanner { s: text.as_bytes(), text, i: 0, blanks: Vec::new() };
    let root = sc.value(0)?;
    sc.skip()?;
    if sc.i != text.len() {
        return Err(sc.err("text after the document"));
    }
    let mut plain = text.as_bytes().to_vec();
    for (a, b) in &sc.blanks {
        for byte in &mut plain[*a..*b] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
    }
    // Blanking replaced whole UTF-8 sequences inside comments and single ASCII commas only.
    let plain = String::from_utf8(plain).map_err(|_| "a comment could not be blanked".to_owned())?;
    Ok((root, plain))
}

fn same_key(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

pub(super) fn set(text: &str, key_path: &[&str], value: &SecretValue, create: bool) -> Result<Edit, FormatError> {
    let text = if create && text.trim().is_empty() { "{}\n" } else { text };
    let (root, plain) = scan(text).map_err(|e| FormatError::Invalid(FORMAT, e))?;
    let before: Value = serde_json::from_str(&plain).map_err(|e| FormatError::Invalid(FORMAT, e.to_string()))?;
    let Node::Object(mut obj) = root else {
        return Err(refused(FORMAT, key_path, "the document is not an object"));
    };
    let secret = value.expose();
    let encoded = serde_json::to_string(secret).map_err(|e| FormatError::Check(FORMAT, e.to_string()))?;
    let mut out = text.to_owned();
    let mut depth = 0;
    loop {
        let key = key_path[depth];
        let found: Vec<usize> = (0..obj.members.len()).filter(|&i| same_key(&obj.members[i].key, key)).collect();
        if found.len() > 1 {
            return Err(refused(FORMAT, key_path, format!("{key} appears more than once in its object")));
        }
        let Some(&index) = found.first() else {
            let (at, insert) = insertion(text, &obj, &key_path[depth..], &encoded);
            out.replace_range(at.0..at.1, &insert);
            break;
        };
        let member = obj.members.swap_remove(index);
        let last = depth + 1 == key_path.len();
        match (member.value, last) {
            (Node::Str { value: v, .. }, true) if v == secret => return Ok(Edit::Unchanged),
            (Node::Str { span, .. } | Node::Scalar { span }, true) => {
                out.replace_range(span.0..span.1, &encoded);
                break;
            }
            (Node::Object(_) | Node::Array, true) => {
                return Err(refused(FORMAT, key_path, format!("{key} holds an object or an array, not a value")));
            }
            (Node::Object(inner), false) => {
                obj = inner;
                depth += 1;
            }
            (_, false) => return Err(refused(FORMAT, key_path, format!("{key} is not an object"))),
        }
    }
    check(&out, &before, key_path, secret)?;
    Ok(Edit::Changed(out))
}

/// Where to insert the missing `keys` into `obj`, and what: one member, nested objects for the
/// missing intermediate keys, laid out like its siblings.
fn insertion(text: &str, obj: &Obj, keys: &[&str], encoded: &str) -> ((usize, usize), String) {
    let nl = newline_of(text);
    let outer = indent_of_line(text, obj.open);
    match obj.members.last() {
        Some(last) if starts_line(text, last.key_start) => {
            let indent = indent_of_line(text, last.key_start);
            let unit = indent.strip_prefix(outer).filter(|u| !u.is_empty()).unwrap_or("  ");
            let member = nested(keys, encoded, indent, unit, nl);
            match last.comma_after {
                // The file ends members with a trailing comma; so does the new one.
                Some(c) if text[c + 1..obj.close].trim().is_empty() => {
                    ((c + 1, c + 1), format!("{nl}{indent}{member},"))
                }
                _ => ((last.value_end, last.value_end), format!(",{nl}{indent}{member}")),
            }
        }
        Some(last) => {
            let member = nested(keys, encoded, "", "", " ");
            let at = last.comma_after.map_or(last.value_end, |c| c + 1);
            let sep = if last.comma_after.is_some() { " " } else { ", " };
            ((at, at), format!("{sep}{member}"))
        }
        None => {
            let unit = guess_unit(text);
            let inner = format!("{outer}{unit}");
            let member = nested(keys, encoded, &inner, &unit, nl);
            if text[obj.open + 1..obj.close].trim().is_empty() {
                ((obj.open + 1, obj.close), format!("{nl}{inner}{member}{nl}{outer}"))
            } else {
                ((obj.open + 1, obj.open + 1), format!("{nl}{inner}{member}"))
            }
        }
    }
}

fn nested(keys: &[&str], encoded: &str, indent: &str, unit: &str, nl: &str) -> String {
    let key = serde_json::to_string(keys[0]).unwrap_or_default();
    if keys.len() == 1 {
        return format!("{key}: {encoded}");
    }
    let inner = format!("{indent}{unit}");
    let (open_nl, close_nl) = if nl == " " { (" ", " ".to_owned()) } else { (nl, format!("{nl}{indent}")) };
    let open_indent = if nl == " " { "" } else { inner.as_str() };
    format!("{key}: {{{open_nl}{open_indent}{}{close_nl}}}", nested(&keys[1..], encoded, &inner, unit, nl))
}

/// The document's indentation step: the first indented line's whitespace, else two spaces.
fn guess_unit(text: &str) -> String {
    text.lines()
        .map(|l| &l[..l.len() - l.trim_start_matches([' ', '\t']).len()])
        .find(|w| !w.is_empty())
        .unwrap_or("  ")
        .to_owned()
}

/// The edited text must parse, hold the secret at the key, and equal the original with only that
/// change.
fn check(out: &str, before: &Value, key_path: &[&str], secret: &str) -> Result<(), FormatError> {
    let fail = |why: String| FormatError::Check(FORMAT, why);
    let (_, plain) = scan(out).map_err(fail)?;
    let after: Value = serde_json::from_str(&plain).map_err(|e| fail(e.to_string()))?;
    let mut expected = before.clone();
    let mut at = &mut expected;
    for key in key_path {
        let map = at.as_object_mut().ok_or_else(|| fail("a key on the path is not an object".into()))?;
        let name = map.keys().find(|k| same_key(k, key)).cloned().unwrap_or_else(|| (*key).to_owned());
        at = map.entry(name).or_insert_with(|| Value::Object(Default::default()));
    }
    *at = Value::String(secret.to_owned());
    if after != expected {
        return Err(fail("the document changed elsewhere than at the key".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn changed(text: &str, key: &str, value: &str) -> String {
        let path: Vec<&str> = key.split(':').collect();
        match set(text, &path, &SecretValue::new(value), false).unwrap() {
            Edit::Changed(t) => t,
            Edit::Unchanged => panic!("unchanged"),
        }
    }

    const APPSETTINGS: &str = r#"{
  // Sign-in to Entra
  "Logging": { "LogLevel": { "Default": "Information" } },
  "Entra": {
    "TenantId": "t", /* the directory */
    "ClientSecret": "old-value",
    "Scopes": ["a", "b",],
  },
}
"#;

    #[test]
    fn a_value_is_replaced_case_insensitively_keeping_comments_and_trailing_commas() {
        let out = changed(APPSETTINGS, "entra:clientsecret", "n\"ew\\~");
        assert_eq!(out, APPSETTINGS.replace("\"old-value\"", r#""n\"ew\\~""#));
    }

    #[test]
    fn a_missing_key_is_inserted_with_its_siblings_indentation() {
        let text = "{\n    \"Entra\": {\n        \"TenantId\": \"t\"\n    }\n}\n";
        assert_eq!(
            changed(text, "Entra:ClientSecret", "v"),
            "{\n    \"Entra\": {\n        \"TenantId\": \"t\",\n        \"ClientSecret\": \"v\"\n    }\n}\n"
        );
        let trailing = changed(APPSETTINGS, "Entra:ClientId", "v");
        assert_eq!(trailing, APPSETTINGS.replace("\"b\",],\n", "\"b\",],\n    \"ClientId\": \"v\",\n"));
    }

    #[test]
    fn missing_intermediate_objects_are_inserted() {
        let text = "{\n  \"Logging\": {}\n}";
        assert_eq!(
            changed(text, "Entra:Auth:ClientSecret", "v"),
            "{\n  \"Logging\": {},\n  \"Entra\": {\n    \"Auth\": {\n      \"ClientSecret\": \"v\"\n    }\n  }\n}"
        );
        assert_eq!(changed("{\"A\": {}}", "A:B", "v"), "{\"A\": {\n  \"B\": \"v\"\n}}");
        assert_eq!(changed("{\"A\": 1}", "B:C", "v"), "{\"A\": 1, \"B\": { \"C\": \"v\" }}");
    }

    #[test]
    fn a_new_file_holds_only_the_key() {
        let out = set("", &["Entra", "ClientSecret"], &SecretValue::new("v"), true).unwrap();
        assert_eq!(out, Edit::Changed("{\n  \"Entra\": {\n    \"ClientSecret\": \"v\"\n  }\n}\n".into()));
    }

    #[test]
    fn crlf_files_get_crlf_lines() {
        let text = "{\r\n  \"A\": \"1\"\r\n}\r\n";
        assert_eq!(changed(text, "B", "v"), "{\r\n  \"A\": \"1\",\r\n  \"B\": \"v\"\r\n}\r\n");
    }

    #[test]
    fn the_value_already_in_place_is_unchanged() {
        let text = APPSETTINGS.replace("old-value", "n3w");
        assert_eq!(set(&text, &["ENTRA", "ClientSecret"], &SecretValue::new("n3w"), false).unwrap(), Edit::Unchanged);
    }

    #[test]
    fn a_non_object_in_the_way_and_other_shapes_are_refused() {
        let v = SecretValue::new("v");
        let err = |t: &str, k: &[&str]| set(t, k, &v, false).unwrap_err().to_string();
        assert!(err("{\"Entra\": 5}", &["Entra", "ClientSecret"]).contains("Entra is not an object"));
        assert!(err("{\"Entra\": {\"S\": {}}}", &["Entra", "S"]).contains("holds an object or an array"));
        assert!(err("{\"a\": 1, \"A\": 2}", &["a"]).contains("more than once"));
        assert!(err("[1]", &["a"]).contains("not an object"));
        assert!(err("{\"a\": ", &["a"]).contains("not valid json"));
        assert!(err("{\"a\": 1} x", &["a"]).contains("not valid json"));
    }

    #[test]
    fn a_null_or_number_value_is_replaced_by_the_string() {
        assert_eq!(changed("{\"S\": null /* set me */}", "S", "v"), "{\"S\": \"v\" /* set me */}");
    }
}
