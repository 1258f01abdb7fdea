//! Issues found in step definitions, and the wording of their messages.
//!
//! Messages never quote a value an operator may have pasted a secret into: they name JSON kinds
//! (`wrong_type`), cut short what they do quote (`shorten`), and name unknown fields, not their
//! values.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{StepDefinition, StepKind};

/// How bad an issue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The document is refused.
    Error,
    /// Accepted, but probably not what was meant (order, legacy field).
    Warning,
    /// Accepted, but a person must confirm what cannot be checked automatically.
    ManualReview,
}

/// Which step an issue is about: as much as is known of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct StepRef {
    /// Position in the input array, from 0; `None` for the document as a whole. Shown from 1
    /// (`step #1`), as people count.
    pub index: Option<usize>,
    pub order: Option<u32>,
    #[serde(rename = "type")]
    pub kind: Option<StepKind>,
}

impl StepRef {
    /// The document as a whole (not an array, no steps).
    pub fn document() -> Self {
        Self { index: None, order: None, kind: None }
    }

    pub(super) fn of(index: usize, step: &StepDefinition) -> Self {
        Self { index: Some(index), order: Some(step.order), kind: Some(step.kind()) }
    }
}

impl fmt::Display for StepRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(index) = self.index else { return f.write_str("steps") };
        write!(f, "step #{}", index + 1)?;
        match (self.order, self.kind) {
            (Some(order), Some(kind)) => write!(f, " (order {order}, {kind})"),
            (Some(order), None) => write!(f, " (order {order})"),
            (None, Some(kind)) => write!(f, " ({kind})"),
            (None, None) => Ok(()),
        }
    }
}

/// One problem or note about a step definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepIssue {
    pub step: StepRef,
    /// Where in the step, as a path like `config.target_path` or `config.restart[0].kind`.
    pub field: Option<String>,
    pub message: String,
    pub severity: Severity,
}

impl fmt::Display for StepIssue {
    /// `step #1 (order 10, agent_secret_sync): config.targt_path: unknown field; did you mean
    /// `target_path`?` (the severity is left to the caller, which usually groups by it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: {field}: {}", self.step, self.message),
            None => write!(f, "{}: {}", self.step, self.message),
        }
    }
}

/// Every error found in a step document (all of them, across all steps), one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.0))]
pub struct StepErrors(pub Vec<StepIssue>);

fn lines(issues: &[StepIssue]) -> String {
    issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

impl StepErrors {
    pub(super) fn document(message: impl Into<String>) -> Self {
        Self(vec![StepIssue {
            step: StepRef::document(),
            field: None,
            message: message.into(),
            severity: Severity::Error,
        }])
    }
}

/// Issues of one step, before the step reference is known in full.
#[derive(Default)]
pub(super) struct Notes(pub(super) Vec<(Option<String>, String, Severity)>);

impl Notes {
    pub(super) fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push((Some(field.into()), message.into(), Severity::Error));
    }
    pub(super) fn warn(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push((Some(field.into()), message.into(), Severity::Warning));
    }
    pub(super) fn manual_review(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push((Some(field.into()), message.into(), Severity::ManualReview));
    }
    pub(super) fn has_errors(&self) -> bool {
        self.0.iter().any(|(_, _, s)| *s == Severity::Error)
    }
}

pub(super) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// "expected a string, got a number": the JSON kinds only, never the value (it may be a secret).
pub(super) fn wrong_type(expected: &str, got: &Value) -> String {
    format!("expected {expected}, got {}", kind_of(got))
}

/// An operator's word quoted back where a closed-set word was expected (a type, `on_failure`), cut
/// short: a secret pasted there by mistake shows at most its first 16 characters.
pub(super) fn shorten(s: &str) -> String {
    shorten_to(s, 16)
}

/// `s` cut to `max` characters, with `…` when it was longer.
pub(super) fn shorten_to(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_owned() } else { format!("{}…", s.chars().take(max).collect::<String>()) }
}

pub(super) fn unknown_field_message(name: &str, allowed: &[&str], env_field: Option<&str>) -> String {
    let mut message = String::from("unknown field");
    let near = closest(name, allowed);
    if let Some(near) = near {
        message.push_str(&format!("; did you mean `{near}`?"));
    }
    let lower = name.to_ascii_lowercase();
    if ["secret", "token", "password", "passwd", "credential", "apikey", "api_key"].iter().any(|w| lower.contains(w)) {
        message.push_str("; step definitions never hold secret values");
        if let Some(env_field) = env_field {
            message.push_str(&format!(": name the environment variable that holds it in `{env_field}`"));
        }
    } else if near.is_none() {
        message.push_str(&format!("; expected one of {}", allowed.join(", ")));
    }
    message
}

/// The allowed word closest to `word` (case-insensitively), when it is at most 2 edits away, and
/// at most 1 for words under 6 characters (else `xml` would suggest `yaml`).
pub(super) fn closest<'w>(word: &str, allowed: &[&'w str]) -> Option<&'w str> {
    // No allowed word is this long, and the edit distance costs length × length: a megabyte
    // pasted into `type` must not take seconds to refuse.
    const LONGEST_TYPO: usize = 64;
    if word.len() > LONGEST_TYPO {
        return None;
    }
    let word = word.to_lowercase();
    let limit = if word.chars().count() < 6 { 1 } else { 2 };
    allowed
        .iter()
        .map(|candidate| (edit_distance(&word, &candidate.to_lowercase()), *candidate))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, candidate)| candidate)
}

/// Edit distance by characters, counting a swap of two neighbours as one edit (`ordre`, `ulr`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between the first i characters of a and the first j of b.
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use crate::domain::steps::parse_steps;
    use crate::domain::steps::test_support::*;

    #[test]
    fn secret_like_fields_are_unknown_and_their_values_never_echoed() {
        let json = simple_step("webhook", 1)
            .replace("\"signing_secret_env\"", "\"signing_secret\"")
            .replace("HOOK_KEY", "hunter2-value");
        let e = parse_steps(&array(&[json])).expect_err("unknown field");
        let i = issue(&e.0, "config.signing_secret");
        assert!(
            i.message.contains(
                "never hold secret values: name the environment variable that holds it in `signing_secret_env`"
            ),
            "{i}"
        );
        let spring =
            simple_step("spring_actuator_refresh", 1).replace("\"url\"", "\"password\": \"hunter2-value\", \"url\"");
        let e2 = parse_steps(&array(&[spring])).expect_err("unknown field");
        assert!(issue(&e2.0, "config.password").message.contains("never hold secret values"));
        for text in [e.to_string(), e2.to_string()] {
            assert!(!text.contains("hunter2"), "{text}");
        }
    }
}
