//! Reading the fields of a step's JSON object, and the field rules several step types share.
//!
//! Every reader notes its problem at the field's full path and returns `None`, so that a step's
//! reader can go on and report every field at once.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use url::Url;

use super::MAX_STEP_TIMEOUT;
use super::issues::{Notes, closest, shorten, wrong_type};
use crate::domain::duration::Span;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Need {
    Required,
    Optional,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Schemes {
    HttpOrHttps,
    HttpsOnly,
}

/// A field rule: `Err` holds the message, which never quotes the value.
pub(super) type Check = fn(&str) -> Result<(), String>;

/// A JSON object being read, with the path prefix of its fields (`""`, `"config."`, ...).
pub(super) struct Obj<'a> {
    pub(super) map: &'a Map<String, Value>,
    prefix: String,
}

impl<'a> Obj<'a> {
    pub(super) fn new(map: &'a Map<String, Value>, prefix: impl Into<String>) -> Self {
        Self { map, prefix: prefix.into() }
    }

    pub(super) fn path(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The value of a field; `null` counts as absent (as it would in TOML, which has no null).
    pub(super) fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    pub(super) fn value(&self, n: &mut Notes, name: &str, need: Need) -> Option<&'a Value> {
        let value = self.get(name);
        if value.is_none() && need == Need::Required {
            n.error(self.path(name), "missing");
        }
        value
    }

    pub(super) fn checked<T>(&self, n: &mut Notes, name: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| n.error(self.path(name), message)).ok()
    }

    pub(super) fn str(&self, n: &mut Notes, name: &str, need: Need) -> Option<&'a str> {
        match self.value(n, name, need)? {
            Value::String(s) => Some(s),
            other => {
                n.error(self.path(name), wrong_type("a string", other));
                None
            }
        }
    }

    /// A one-line text: not blank, no control characters, no surrounding spaces, then `check`.
    pub(super) fn text(&self, n: &mut Notes, name: &str, need: Need, check: Check) -> Option<String> {
        let s = self.str(n, name, need)?;
        let checked = check_plain_text(s).and_then(|()| check(s)).map(|()| s.to_owned());
        self.checked(n, name, checked)
    }

    pub(super) fn uint(&self, n: &mut Notes, name: &str, need: Need, max: u64) -> Option<u64> {
        let result = match self.value(n, name, need)? {
            Value::Number(num) => match num.as_u64() {
                Some(x) if x <= max => Ok(x),
                _ => Err(format!("expected a whole number from 0 to {max}, got {num}")),
            },
            other => Err(wrong_type("a whole number", other)),
        };
        self.checked(n, name, result)
    }

    pub(super) fn bool(&self, n: &mut Notes, name: &str, need: Need) -> Option<bool> {
        match self.value(n, name, need)? {
            Value::Bool(b) => Some(*b),
            other => {
                n.error(self.path(name), wrong_type("true or false", other));
                None
            }
        }
    }

    pub(super) fn span(&self, n: &mut Notes, name: &str, need: Need) -> Option<Span> {
        let result = match self.value(n, name, need)? {
            Value::String(s) => s.parse::<Span>().map_err(|e| e.to_string()),
            other => Err(wrong_type("a duration such as \"30s\" or \"2m\"", other)),
        };
        self.checked(n, name, result)
    }

    /// A step's own time limit: longer than 0s, at most [`MAX_STEP_TIMEOUT`] (a step runs in one
    /// run-step invocation).
    pub(super) fn positive_span(&self, n: &mut Notes, name: &str) -> Option<Span> {
        let span = self.span(n, name, Need::Optional)?;
        let checked = if span.as_duration().is_zero() {
            Err("must be longer than 0s".to_owned())
        } else if span > MAX_STEP_TIMEOUT {
            Err(format!("must be at most {MAX_STEP_TIMEOUT}: a step runs within one run-step invocation"))
        } else {
            Ok(span)
        };
        self.checked(n, name, checked)
    }

    pub(super) fn url(&self, n: &mut Notes, name: &str, need: Need, schemes: Schemes) -> Option<Url> {
        let s = self.str(n, name, need)?;
        self.checked(n, name, check_url(s, schemes))
    }

    /// One of a closed set of words; an unknown one gets the list (and the closest word).
    pub(super) fn one_of<T: Copy>(
        &self,
        n: &mut Notes,
        name: &str,
        need: Need,
        choices: &[(&'static str, T)],
    ) -> Option<T> {
        let s = self.str(n, name, need)?;
        let found = choices.iter().find(|(word, _)| *word == s).map(|(_, v)| *v);
        if found.is_none() {
            let words: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
            let hint = closest(s, &words).map(|w| format!("did you mean `{w}`? ")).unwrap_or_default();
            n.error(
                self.path(name),
                format!("unknown value `{}`; {hint}expected one of {}", shorten(s), words.join(", ")),
            );
        }
        found
    }

    /// The name of an environment variable holding a secret. Never quoted back when refused: a
    /// refused "name" is most likely the secret itself, pasted in the wrong place.
    pub(super) fn env_name(&self, n: &mut Notes, name: &str) -> Option<String> {
        let s = self.str(n, name, Need::Optional)?;
        self.checked(n, name, check_env_name(s).map(|()| s.to_owned()))
    }

    pub(super) fn array(&self, n: &mut Notes, name: &str) -> Option<&'a Vec<Value>> {
        match self.value(n, name, Need::Optional)? {
            Value::Array(items) => Some(items),
            other => {
                n.error(self.path(name), wrong_type("an array", other));
                None
            }
        }
    }

    /// An object of strings; each entry's problem is reported at `name.key`.
    pub(super) fn string_map(
        &self,
        n: &mut Notes,
        name: &str,
        check_key: Check,
        check_value: Check,
    ) -> Option<BTreeMap<String, String>> {
        let map = match self.value(n, name, Need::Optional)? {
            Value::Object(map) => map,
            other => {
                n.error(self.path(name), wrong_type("an object of strings", other));
                return None;
            }
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (key, value) in map {
            let checked = match value {
                Value::String(s) => check_key(key).and_then(|()| check_value(s)).map(|()| s.clone()),
                other => Err(wrong_type("a string", other)),
            };
            match checked {
                Ok(s) => {
                    out.insert(key.clone(), s);
                }
                Err(message) => {
                    n.error(format!("{}.{key}", self.path(name)), message);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}

// ---------------------------------------------------------------------------------------------------
// Field rules of more than one type
// ---------------------------------------------------------------------------------------------------

/// For text fields with no rule beyond those of [`Obj::text`].
pub(super) fn check_nothing_more(_: &str) -> Result<(), String> {
    Ok(())
}

fn check_plain_text(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else if s.chars().any(char::is_control) {
        Err("must not contain control characters (such as line breaks)".to_owned())
    } else if s.trim() != s {
        Err("must not start or end with spaces".to_owned())
    } else {
        Ok(())
    }
}

/// URLs in steps: http(s) only, a host, no credentials, no fragment. The URL itself is never
/// quoted in the message: webhook and callback URLs often carry a token.
pub(super) fn check_url(s: &str, schemes: Schemes) -> Result<Url, String> {
    let url = Url::parse(s.trim()).map_err(|e| format!("not a valid absolute URL ({e})"))?;
    match (url.scheme(), schemes) {
        ("https", _) | ("http", Schemes::HttpOrHttps) => {}
        ("http", Schemes::HttpsOnly) => return Err("must use https".to_owned()),
        (_, Schemes::HttpsOnly) => return Err("must be an https URL".to_owned()),
        (_, Schemes::HttpOrHttps) => return Err("must be an http or https URL".to_owned()),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password (user:pass@); credentials never live in a step \
                    definition"
            .to_owned());
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment".to_owned());
    }
    Ok(url)
}

pub(super) fn check_env_name(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok = (1..=128).contains(&b.len())
        && !b[0].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if ok {
        Ok(())
    } else {
        Err("must be the name of an environment variable (letters, digits and '_', not starting with a digit) \
             that holds the secret, never the secret itself"
            .to_owned())
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::steps::parse_steps;
    use crate::domain::steps::test_support::*;

    #[test]
    fn unsafe_urls_are_refused_without_quoting_them() {
        let cases = [
            ("webhook", "https://user:hunter2@hooks.example.com/x", "user name or password"),
            ("webhook", "https://hooks.example.com/x#hunter2", "#fragment"),
            ("webhook", "ftp://hooks.example.com/hunter2", "http or https"),
            ("webhook", "hooks.example.com/hunter2", "not a valid absolute URL"),
            ("webhook", "file:///etc/hunter2", "http or https"),
            ("azure_key_vault", "http://kv.vault.azure.net/hunter2", "must use https"),
            ("azure_key_vault", "https://kv.vault.azure.net/?x=hunter2", "without a query"),
        ];
        for (kind, url, expected) in cases {
            let field = if kind == "webhook" { "url" } else { "vault_url" };
            let step = simple_step(kind, 1).replace(
                &serde_json::from_str::<serde_json::Value>(&simple_step(kind, 1)).expect("json")["config"][field]
                    .as_str()
                    .expect("url")
                    .to_owned(),
                url,
            );
            let e = parse_steps(&array(&[step])).expect_err(url).to_string();
            assert!(e.contains(&format!("config.{field}: ")) && e.contains(expected), "{url}: {e}");
            assert!(!e.contains("hunter2"), "the URL was quoted: {e}");
        }
    }
}
