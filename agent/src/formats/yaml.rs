//! `yaml`: block mappings with nested keys, edited line by line.
//!
//! The editor understands the common shape of configuration YAML: `key: value` lines nested by
//! indentation, with plain, single- or double-quoted scalars and comments. Anything else on the
//! key's path (flow mappings, anchors and aliases, block scalars, several documents) it refuses.
//! yaml-rust2 reads the result back, and it must equal the original with only the one change.

use yaml_rust2::{Yaml, YamlLoader, yaml::Hash};

use super::{Edit, FormatError, newline_of, refused};
use crate::SecretValue;

const FORMAT: &str = "yaml";

/// One line: its byte range without the line break.
#[derive(Clone, Copy)]
struct Line {
    start: usize,
    end: usize,
    /// Where the next line starts (past the line break).
    next: usize,
}

/// One `key: …` entry of a block mapping.
struct Entry {
    line: usize,
    indent: usize,
    key: String,
    /// Just past the `:`.
    colon_end: usize,
    /// The first line after this entry's block (lines indented deeper belong to it).
    block_end: usize,
}

struct Doc<'a> {
    text: &'a str,
    lines: Vec<Line>,
}

impl Doc<'_> {
    fn line(&self, i: usize) -> &str {
        &self.text[self.lines[i].start..self.lines[i].end]
    }

    fn significant(&self, i: usize) -> bool {
        let t = self.line(i).trim_start();
        !t.is_empty() && !t.starts_with('#')
    }

    fn indent(&self, i: usize) -> usize {
        let l = self.line(i);
        l.len() - l.trim_start_matches(' ').len()
    }

    /// The entries of the block mapping in lines `from..to`.
    fn entries(&self, from: usize, to: usize, path: &[&str]) -> Result<Vec<Entry>, FormatError> {
        let Some(first) = (from..to).find(|&i| self.significant(i)) else { return Ok(Vec::new()) };
        let indent = self.indent(first);
        let mut entries: Vec<Entry> = Vec::new();
        for i in first..to {
            if !self.significant(i) {
                continue;
            }
            let line = self.line(i);
            if line[..line.len() - line.trim_start().len()].contains('\t') {
                return Err(refused(FORMAT, path, format!("line {} is indented with a tab", i + 1)));
            }
            let here = self.indent(i);
            if here > indent {
                continue;
            }
            if here < indent {
                return Err(refused(FORMAT, path, format!("line {} is indented less than its mapping", i + 1)));
            }
            if let Some(prev) = entries.last_mut() {
                prev.block_end = i;
            }
            let body = &line[indent..];
            let (key, key_len) = parse_key(body).ok_or_else(|| {
                refused(FORMAT, path, format!("line {} is not a `key: value` entry of a block mapping", i + 1))
            })?;
            if key == "<<" {
                return Err(refused(FORMAT, path, format!("line {} merges another mapping (<<)", i + 1)));
            }
            let colon_end = self.lines[i].start + indent + key_len + 1;
            entries.push(Entry { line: i, indent, key, colon_end, block_end: to });
        }
        Ok(entries)
    }
}

/// The key at the start of `body` and the length up to (not including) its `:`.
fn parse_key(body: &str) -> Option<(String, usize)> {
    if body.starts_with(['-', '?', '[', '{', '&', '*', '!', '|', '>']) && !body.starts_with("-_") {
        return None;
    }
    let (key, len) = match body.as_bytes().first()? {
        b'\'' => {
            let close = body[1..].find('\'')? + 1;
            (body[1..close].to_owned(), close + 1)
        }
        b'"' => {
            let close = body[1..].find('"')? + 1;
            if body[1..close].contains('\\') {
                return None;
            }
            (body[1..close].to_owned(), close + 1)
        }
        _ => {
            let mut at = None;
            for (i, c) in body.char_indices() {
                if c == '#' && i > 0 && body[..i].ends_with(' ') {
                    return None;
                }
                if c == ':' && body[i + 1..].chars().next().is_none_or(|n| n == ' ') {
                    at = Some(i);
                    break;
                }
            }
            let at = at?;
            (body[..at].trim_end().to_owned(), at)
        }
    };
    let len = len + (body[len..].len() - body[len..].trim_start_matches(' ').len());
    body[len..].starts_with(':').then_some((key, len))
}

/// What follows a key's `:` on its line.
enum Rest {
    /// Nothing (perhaps a comment): a nested block follows, or the value is null.
    Empty,
    /// A scalar on the line, at this byte span.
    Scalar((usize, usize)),
}

fn rest_of(doc: &Doc, entry: &Entry, path: &[&str]) -> Result<Rest, FormatError> {
    let end = doc.lines[entry.line].end;
    let raw = &doc.text[entry.colon_end..end];
    let trimmed = raw.trim_start_matches(' ');
    let start = end - trimmed.len();
    let no = |what: &str| Err(refused(FORMAT, path, format!("{} {what}", entry.key)));
    let Some(first) = trimmed.chars().next() else { return Ok(Rest::Empty) };
    let span_end = match first {
        '#' => return Ok(Rest::Empty),
        '{' | '[' => return no("is a flow collection; the agent edits block mappings only"),
        '&' | '*' => return no("has an anchor or an alias"),
        '!' => return no("has a tag"),
        '|' | '>' => return no("is a block scalar (| or >)"),
        '\'' => {
            let mut i = 1;
            let b = trimmed.as_bytes();
            loop {
                match b.get(i) {
                    Some(b'\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
                    Some(b'\'') => break start + i + 1,
                    Some(_) => i += 1,
                    None => return no("is a quoted scalar over several lines"),
                }
            }
        }
        '"' => {
            let mut i = 1;
            let b = trimmed.as_bytes();
            loop {
                match b.get(i) {
                    Some(b'\\') => i += 2,
                    Some(b'"') => break start + i + 1,
                    Some(_) => i += 1,
                    None => return no("is a quoted scalar over several lines"),
                }
            }
        }
        _ => {
            let cut = trimmed.find(" #").unwrap_or(trimmed.len());
            start + trimmed[..cut].trim_end().len()
        }
    };
    let after = doc.text[span_end..end].trim_start();
    if !after.is_empty() && !after.starts_with('#') {
        return no("has more than one scalar on its line");
    }
    if (entry.line + 1..entry.block_end).any(|i| doc.significant(i)) {
        return no("continues on the following lines");
    }
    Ok(Rest::Scalar((start, span_end)))
}

/// Single quotes (which escape nothing but `'`), double quotes when the value has a line break or
/// another control character.
fn encode(value: &str) -> String {
    if !value.chars().any(char::is_control) {
        return format!("'{}'", value.replace('\'', "''"));
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn encode_key(key: &str) -> String {
    let plain = key.chars().next().is_some_and(|c| c.is_alphanumeric() || c == '_')
        && key.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if plain { key.to_owned() } else { encode(key) }
}

/// The lines for the missing `keys`, nested under each other, the first at `indent`.
fn new_lines(keys: &[&str], encoded: &str, indent: usize, unit: usize, nl: &str) -> String {
    let mut out = String::new();
    for (depth, key) in keys.iter().enumerate() {
        out.push_str(&" ".repeat(indent + depth * unit));
        out.push_str(&encode_key(key));
        out.push(':');
        if depth + 1 == keys.len() {
            out.push(' ');
            out.push_str(encoded);
        }
        out.push_str(nl);
    }
    out
}

fn load(text: &str) -> Result<Vec<Yaml>, String> {
    YamlLoader::load_from_str(text).map_err(|e| e.to_string())
}

pub(super) fn set(text: &str, key_path: &[&str], value: &SecretValue, _create: bool) -> Result<Edit, FormatError> {
    let docs = load(text).map_err(|e| FormatError::Invalid(FORMAT, e))?;
    if docs.len() > 1 {
        return Err(refused(FORMAT, key_path, "the file holds several YAML documents"));
    }
    let before = docs.into_iter().next().unwrap_or(Yaml::Null);
    let secret = value.expose();
    let encoded = encode(secret);
    let nl = newline_of(text);

    let mut lines = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
        let content_end = if text[..end].ends_with('\r') { end - 1 } else { end };
        lines.push(Line { start: pos, end: content_end, next: (end + 1).min(text.len()) });
        pos = end + 1;
    }
    let doc = Doc { text, lines };
    // A leading `---` (and directives before it) open the one document; one later is refused above.
    let mut from = 0;
    if let Some(marker) = (0..doc.lines.len()).find(|&i| doc.significant(i))
        && (doc.line(marker).starts_with('%') || doc.line(marker).trim_end() == "---")
    {
        from = (marker..doc.lines.len()).find(|&i| doc.line(i).trim_end() == "---").map_or(marker + 1, |i| i + 1);
    }
    if doc
        .lines
        .iter()
        .enumerate()
        .skip(from)
        .any(|(i, _)| doc.line(i).starts_with("---") || doc.line(i).starts_with("..."))
    {
        return Err(refused(FORMAT, key_path, "the file has a document marker (--- or ...) after its start"));
    }
    let unit =
        (0..doc.lines.len()).filter(|&i| doc.significant(i)).map(|i| doc.indent(i)).find(|&n| n > 0).unwrap_or(2);

    let mut range = (from, doc.lines.len());
    let mut parent_indent: Option<usize> = None;
    let mut out = text.to_owned();
    for (depth, key) in key_path.iter().enumerate() {
        let entries = doc.entries(range.0, range.1, key_path)?;
        let mut matching = entries.iter().filter(|e| e.key == *key);
        let (found, more) = (matching.next(), matching.next());
        if more.is_some() {
            return Err(refused(FORMAT, key_path, format!("{key} appears more than once in its mapping")));
        }
        let last = depth + 1 == key_path.len();
        let Some(entry) = found else {
            // Insert after the mapping's last significant line, at its entries' indentation.
            let indent = entries.first().map_or_else(|| parent_indent.map_or(0, |p| p + unit), |e| e.indent);
            let after = (range.0..range.1).rev().find(|&i| doc.significant(i));
            let at = after.map_or(doc.lines.get(range.0).map_or(text.len(), |l| l.start), |i| doc.lines[i].next);
            let mut insert = new_lines(&key_path[depth..], &encoded, indent, unit, nl);
            if at == text.len() && !text.is_empty() && !text.ends_with('\n') {
                insert.insert_str(0, nl);
            }
            out.insert_str(at, &insert);
            break;
        };
        match rest_of(&doc, entry, key_path)? {
            Rest::Scalar(span) if last => {
                if yaml_get(&before, key_path).and_then(Yaml::as_str) == Some(secret) {
                    return Ok(Edit::Unchanged);
                }
                out.replace_range(span.0..span.1, &encoded);
                break;
            }
            Rest::Scalar(_) => return Err(refused(FORMAT, key_path, format!("{key} holds a value, not a mapping"))),
            Rest::Empty => {
                let children = (entry.line + 1..entry.block_end).any(|i| doc.significant(i));
                if last && children {
                    return Err(refused(FORMAT, key_path, format!("{key} holds a mapping or a list, not a value")));
                }
                if last {
                    out.insert_str(entry.colon_end, &format!(" {encoded}"));
                    break;
                }
                range = (entry.line + 1, entry.block_end);
                parent_indent = Some(entry.indent);
            }
        }
    }
    check(&out, before, key_path, secret)?;
    Ok(Edit::Changed(out))
}

fn yaml_get<'y>(doc: &'y Yaml, path: &[&str]) -> Option<&'y Yaml> {
    path.iter().try_fold(doc, |at, key| at.as_hash()?.get(&Yaml::String((*key).to_owned())))
}

/// The edited text must load as one document equal to the original with only the key set.
fn check(out: &str, mut expected: Yaml, key_path: &[&str], secret: &str) -> Result<(), FormatError> {
    let fail = |why: String| FormatError::Check(FORMAT, why);
    let docs = load(out).map_err(fail)?;
    if docs.len() != 1 {
        return Err(fail("it is not one document".into()));
    }
    let mut at = &mut expected;
    for key in key_path {
        if at.is_null() {
            *at = Yaml::Hash(Hash::new());
        }
        let Yaml::Hash(map) = at else { return Err(fail("a key on the path is not a mapping".into())) };
        let k = Yaml::String((*key).to_owned());
        if !map.contains_key(&k) {
            map.insert(k.clone(), Yaml::Null);
        }
        at = map.get_mut(&k).ok_or_else(|| fail("a key vanished".into()))?;
    }
    *at = Yaml::String(secret.to_owned());
    if docs[0] != expected {
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

    const CONFIG: &str = "# service config\nlogging:\n  level: info\nentra:\n  tenant_id: \"t\"\n  client_secret: old-value   # rotated by entra-rotator\n  scopes:\n    - a\n\nother: 1\n";

    #[test]
    fn a_plain_value_is_replaced_keeping_the_comment() {
        assert_eq!(changed(CONFIG, "entra:client_secret", "it's~new"), CONFIG.replace("old-value", "'it''s~new'"));
    }

    #[test]
    fn quoted_values_are_replaced_and_control_characters_double_quoted() {
        let text = "a:\n  s: 'o''ld' # c\n  d: \"x\\\"y\"\n";
        assert_eq!(changed(text, "a:s", "v"), "a:\n  s: 'v' # c\n  d: \"x\\\"y\"\n");
        assert_eq!(changed(text, "a:d", "l1\nl2\\"), "a:\n  s: 'o''ld' # c\n  d: \"l1\\nl2\\\\\"\n");
    }

    #[test]
    fn a_missing_key_is_inserted_with_its_siblings_indentation() {
        assert_eq!(changed(CONFIG, "entra:client_id", "v"), CONFIG.replace("    - a\n", "    - a\n  client_id: 'v'\n"));
        assert_eq!(changed(CONFIG, "new:deep:key", "v"), format!("{CONFIG}new:\n  deep:\n    key: 'v'\n"));
        assert_eq!(changed("a:\n    b: 1", "a:c", "v"), "a:\n    b: 1\n    c: 'v'\n");
    }

    #[test]
    fn a_null_value_gets_the_secret_or_its_children() {
        assert_eq!(changed("a: # fill me\nb: 2\n", "a", "v"), "a: 'v' # fill me\nb: 2\n");
        assert_eq!(changed("a:\nb: 2\n", "a:c", "v"), "a:\n  c: 'v'\nb: 2\n");
    }

    #[test]
    fn a_new_file_holds_only_the_key() {
        assert_eq!(set("", &["a", "b"], &SecretValue::new("v"), true).unwrap(), Edit::Changed("a:\n  b: 'v'\n".into()));
    }

    #[test]
    fn keys_are_case_sensitive() {
        assert_eq!(changed("Entra:\n  S: x\n", "entra:S", "v"), "Entra:\n  S: x\nentra:\n  S: 'v'\n");
    }

    #[test]
    fn the_value_already_in_place_is_unchanged() {
        for text in ["a:\n  s: v~1\n", "a:\n  s: 'v~1' # c\n", "---\na:\n  s: \"v~1\"\n"] {
            assert_eq!(set(text, &["a", "s"], &SecretValue::new("v~1"), false).unwrap(), Edit::Unchanged, "{text}");
        }
    }

    #[test]
    fn shapes_the_editor_cannot_handle_safely_are_refused() {
        let v = SecretValue::new("v");
        let err = |t: &str, k: &[&str]| set(t, k, &v, false).unwrap_err().to_string();
        assert!(err("a: {s: 1}\n", &["a", "s"]).contains("flow collection"));
        assert!(err("a: &x\n  s: 1\n", &["a", "s"]).contains("anchor or an alias"));
        assert!(err("b: &x 1\na: *x\n", &["a"]).contains("anchor or an alias"));
        assert!(err("a: |\n  old\n", &["a"]).contains("block scalar"));
        assert!(err("a: 1\n---\na: 2\n", &["a"]).contains("several YAML documents"));
        assert!(err("a: 1\n", &["a", "s"]).contains("holds a value, not a mapping"));
        assert!(err("a:\n  s: 1\n", &["a"]).contains("holds a mapping"));
        assert!(err("a: plain\n  continued\n", &["a"]).contains("continues"));
        assert!(err("- a\n- b\n", &["a"]).contains("not a `key: value` entry"));
        assert!(err("a: [1\n", &["a"]).contains("not valid yaml"));
    }
}
