//! `xml`: a `web.config`'s `<configuration><appSettings><add key="…" value="…"/>`, what ASP.NET
//! apps on IIS read through `ConfigurationManager.AppSettings`.
//!
//! quick-xml finds the elements and their byte spans; the edit replaces the `value` attribute's
//! text (or inserts one `<add>`, or one `<appSettings>`), and quick-xml reads the result back.

use quick_xml::Reader;
use quick_xml::events::Event;

use super::{Edit, FormatError, indent_of_line, newline_of, refused, starts_line};
use crate::SecretValue;

const FORMAT: &str = "xml";

/// An element of interest and where its parts are.
#[derive(Debug, Clone, Default)]
struct Elem {
    /// The start (or empty) tag, `<` to `>`.
    tag: (usize, usize),
    empty: bool,
    /// Where `</name>` begins.
    end_tag: usize,
    /// The last child that is not whitespace (an element, a comment, text).
    last_child: Option<(usize, usize)>,
}

/// An attribute inside a tag: its name and the byte span of its value, quotes excluded.
struct Attr {
    name: String,
    value: (usize, usize),
}

#[derive(Default)]
struct Found {
    configuration: Option<Elem>,
    app_settings: Option<Elem>,
    add: Option<(usize, usize)>,
}

/// The attributes of the tag at `tag`, by a small scan: quick-xml gives values but not their
/// positions, and the edit needs the positions.
fn attributes(text: &str, tag: (usize, usize)) -> Vec<Attr> {
    let s = &text.as_bytes()[..tag.1];
    let mut i = tag.0 + 1;
    while i < tag.1 && !s[i].is_ascii_whitespace() && s[i] != b'/' && s[i] != b'>' {
        i += 1;
    }
    let mut attrs = Vec::new();
    loop {
        while i < tag.1 && s[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= tag.1 || s[i] == b'/' || s[i] == b'>' {
            return attrs;
        }
        let name_start = i;
        while i < tag.1 && s[i] != b'=' && !s[i].is_ascii_whitespace() {
            i += 1;
        }
        let name = text[name_start..i].to_owned();
        while i < tag.1 && (s[i].is_ascii_whitespace() || s[i] == b'=') {
            i += 1;
        }
        let Some(&quote) = s.get(i) else { return attrs };
        let start = i + 1;
        let Some(len) = text[start..tag.1].find(quote as char) else { return attrs };
        attrs.push(Attr { name, value: (start, start + len) });
        i = start + len + 1;
    }
}

fn unescape(raw: &str) -> Result<String, String> {
    // quick-xml's error quotes the reference it could not read, which may be part of a secret.
    quick_xml::escape::unescape(raw)
        .map(|v| v.into_owned())
        .map_err(|_| "an attribute holds an unknown entity or character reference".to_owned())
}

/// Finds `configuration`, its `appSettings` and the `<add>` whose key is `key`.
fn find(text: &str, key: &str, key_path: &[&str]) -> Result<Found, FormatError> {
    let invalid = |e: String| FormatError::Invalid(FORMAT, e);
    let mut reader = Reader::from_str(text);
    let mut found = Found::default();
    // The element names open above the current position.
    let mut stack: Vec<String> = Vec::new();
    let mut elems: Vec<Option<Elem>> = Vec::new();
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader
            .read_event()
            .map_err(|e| invalid(format!("{} at byte {}", describe(&e), reader.error_position())))?;
        let after = reader.buffer_position() as usize;
        let span = (before, after);
        let is_content = match &event {
            Event::Text(t) => !t.iter().all(u8::is_ascii_whitespace),
            Event::End(_) | Event::Eof | Event::Decl(_) | Event::DocType(_) => false,
            _ => true,
        };
        if is_content && let Some(Some(parent)) = elems.last_mut() {
            parent.last_child = Some(span);
        }
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let path: Vec<&str> = stack.iter().map(String::as_str).chain([name.as_str()]).collect();
                let mut tracked = None;
                match path.as_slice() {
                    ["configuration"] => tracked = Some(Elem { tag: span, empty, ..Elem::default() }),
                    ["configuration", "appSettings"] => {
                        if found.app_settings.is_some() {
                            return Err(refused(FORMAT, key_path, "there is more than one <appSettings>"));
                        }
                        for attr in attributes(text, span) {
                            if attr.name == "configSource" || attr.name == "file" {
                                return Err(refused(
                                    FORMAT,
                                    key_path,
                                    format!("<appSettings> has {}: its values live in another file", attr.name),
                                ));
                            }
                        }
                        tracked = Some(Elem { tag: span, empty, ..Elem::default() });
                    }
                    ["configuration", "appSettings", "add"] => {
                        let attrs = attributes(text, span);
                        if let Some(k) = attrs.iter().find(|a| a.name == "key") {
                            let this = unescape(&text[k.value.0..k.value.1]).map_err(invalid)?;
                            if this.to_lowercase() == key.to_lowercase() {
                                if found.add.is_some() {
                                    return Err(refused(FORMAT, key_path, "the key has more than one <add>"));
                                }
                                found.add = Some(span);
                            }
                        }
                    }
                    _ => {}
                }
                if empty {
                    if let Some(elem) = tracked {
                        store(&mut found, path.len(), elem);
                    }
                } else {
                    stack.push(name);
                    elems.push(tracked);
                }
            }
            Event::End(_) => {
                stack.pop();
                if let Some(Some(mut elem)) = elems.pop() {
                    elem.end_tag = before;
                    store(&mut found, stack.len() + 1, elem);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(found)
}

/// quick-xml's own messages quote tag names and references from the file, which may be part of a
/// secret; these words name only the kind of problem.
fn describe(error: &quick_xml::Error) -> String {
    match error {
        quick_xml::Error::Syntax(e) => e.to_string(),
        quick_xml::Error::IllFormed(_) => "ill-formed document (a tag is mismatched or not closed)".into(),
        _ => "unreadable markup".into(),
    }
}

fn store(found: &mut Found, depth: usize, elem: Elem) {
    if depth == 1 {
        found.configuration = Some(elem);
    } else {
        found.app_settings = Some(elem);
    }
}

/// Escapes for an attribute value in either quote style; line breaks and tabs as character
/// references, since a parser turns literal ones into spaces.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            '\t' => out.push_str("&#x9;"),
            c => out.push(c),
        }
    }
    out
}

fn guess_unit(text: &str) -> String {
    text.lines()
        .map(|l| &l[..l.len() - l.trim_start_matches([' ', '\t']).len()])
        .find(|w| !w.is_empty())
        .unwrap_or("  ")
        .to_owned()
}

/// Inserts `child` (markup built for a given indentation) as the last child of `parent`, indented
/// like its other children.
fn insert_child(text: &str, parent: &Elem, child: impl Fn(&str, &str) -> String) -> String {
    let nl = newline_of(text);
    let unit = guess_unit(text);
    let outer = indent_of_line(text, parent.tag.0);
    let (indent, at) = match parent.last_child {
        Some(last) if starts_line(text, last.0) => (indent_of_line(text, last.0).to_owned(), last.1),
        Some(last) => (format!("{outer}{unit}"), last.1),
        None => (format!("{outer}{unit}"), parent.tag.1),
    };
    let markup = child(&indent, &unit);
    let mut out = text.to_owned();
    if parent.empty {
        let tag = &text[parent.tag.0..parent.tag.1];
        let open = tag.trim_end_matches('>').trim_end_matches('/').trim_end();
        let name_end = tag[1..].find(|c: char| c.is_whitespace() || c == '/' || c == '>').map_or(tag.len(), |i| i + 1);
        let name = &tag[1..name_end];
        out.replace_range(parent.tag.0..parent.tag.1, &format!("{open}>{nl}{indent}{markup}{nl}{outer}</{name}>"));
    } else if parent.last_child.is_none() && !text[parent.tag.1..parent.end_tag].contains('\n') {
        out.replace_range(parent.tag.1..parent.end_tag, &format!("{nl}{indent}{markup}{nl}{outer}"));
    } else {
        out.insert_str(at, &format!("{nl}{indent}{markup}"));
    }
    out
}

pub(super) fn set(text: &str, key: &str, value: &SecretValue, create: bool) -> Result<Edit, FormatError> {
    let key_path = [key];
    let text = if create && text.trim().is_empty() {
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<configuration>\n</configuration>\n"
    } else {
        text
    };
    let secret = value.expose();
    let found = find(text, key, &key_path)?;
    let add = format!("<add key=\"{}\" value=\"{}\" />", escape(key), escape(secret));
    let out = if let Some(span) = found.add {
        let attrs = attributes(text, span);
        let mut out = text.to_owned();
        match attrs.iter().find(|a| a.name == "value") {
            Some(v) => {
                let current = unescape(&text[v.value.0..v.value.1]).map_err(|e| FormatError::Invalid(FORMAT, e))?;
                if current == secret {
                    return Ok(Edit::Unchanged);
                }
                out.replace_range(v.value.0..v.value.1, &escape(secret));
            }
            None => {
                let k = attrs.iter().find(|a| a.name == "key").map_or(span.0 + 4, |a| a.value.1 + 1);
                out.insert_str(k, &format!(" value=\"{}\"", escape(secret)));
            }
        }
        out
    } else if let Some(settings) = &found.app_settings {
        insert_child(text, settings, |_, _| add.clone())
    } else if let Some(configuration) = &found.configuration {
        let nl = newline_of(text);
        insert_child(text, configuration, |indent, unit| {
            format!("<appSettings>{nl}{indent}{unit}{add}{nl}{indent}</appSettings>")
        })
    } else {
        return Err(refused(FORMAT, &key_path, "the document's root is not <configuration>"));
    };
    // Read it back: still well-formed, and the key's value is the secret.
    let check = |why: String| FormatError::Check(FORMAT, why);
    let again = find(&out, key, &key_path).map_err(|e| check(e.to_string()))?;
    let span = again.add.ok_or_else(|| check("the <add> is not found".into()))?;
    let attrs = attributes(&out, span);
    let v = attrs.iter().find(|a| a.name == "value").ok_or_else(|| check("the <add> has no value".into()))?;
    if unescape(&out[v.value.0..v.value.1]).map_err(check)? != secret {
        return Err(check("the value does not read back as the new one".into()));
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

    const WEB_CONFIG: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <!-- settings for the app -->
  <appSettings>
    <add key="Entra:TenantId" value="t" />
    <add key='Entra:ClientSecret' value='old' />
  </appSettings>
  <system.web><compilation debug="false" /></system.web>
</configuration>
"#;

    #[test]
    fn the_value_attribute_is_replaced_escaped_keeping_its_quotes() {
        assert_eq!(
            changed(WEB_CONFIG, "entra:clientsecret", "a&b<c>\"d'e"),
            WEB_CONFIG.replace("value='old'", "value='a&amp;b&lt;c&gt;&quot;d&apos;e'")
        );
    }

    #[test]
    fn a_missing_add_is_the_last_child_of_app_settings() {
        assert_eq!(
            changed(WEB_CONFIG, "Other", "v"),
            WEB_CONFIG.replace("value='old' />\n", "value='old' />\n    <add key=\"Other\" value=\"v\" />\n")
        );
    }

    #[test]
    fn a_missing_app_settings_is_added_to_configuration() {
        let text = "<configuration>\n  <system.web />\n</configuration>";
        assert_eq!(
            changed(text, "K", "v"),
            "<configuration>\n  <system.web />\n  <appSettings>\n    <add key=\"K\" value=\"v\" />\n  </appSettings>\n</configuration>"
        );
        assert_eq!(
            changed("<configuration>\n  <appSettings />\n</configuration>", "K", "v"),
            "<configuration>\n  <appSettings>\n    <add key=\"K\" value=\"v\" />\n  </appSettings>\n</configuration>"
        );
    }

    #[test]
    fn a_new_file_holds_only_the_key() {
        let out = set("", "K", &SecretValue::new("v"), true).unwrap();
        assert_eq!(
            out,
            Edit::Changed("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<configuration>\n  <appSettings>\n    <add key=\"K\" value=\"v\" />\n  </appSettings>\n</configuration>\n".into())
        );
    }

    #[test]
    fn the_value_already_in_place_is_unchanged() {
        let text = WEB_CONFIG.replace("'old'", "'a&amp;b'");
        assert_eq!(set(&text, "ENTRA:CLIENTSECRET", &SecretValue::new("a&b"), false).unwrap(), Edit::Unchanged);
    }

    #[test]
    fn values_that_live_elsewhere_and_broken_documents_are_refused() {
        let v = SecretValue::new("v");
        let err = |t: &str| set(t, "K", &v, false).unwrap_err().to_string();
        assert!(
            err("<configuration><appSettings configSource=\"app.config\" /></configuration>").contains("configSource")
        );
        assert!(err("<configuration><appSettings file=\"x\"></appSettings></configuration>").contains("another file"));
        assert!(err("<configuration><appSettings></configuration>").contains("not valid xml"));
        assert!(err("<other/>").contains("not <configuration>"));
        assert!(
            err("<configuration><appSettings><add key=\"K\"/><add key=\"k\"/></appSettings></configuration>")
                .contains("more than one")
        );
    }
}
