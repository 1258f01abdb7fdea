//! From a document to a [`StepPlan`]: each element parsed on its own (the top-level fields here,
//! `config` by its type's reader), then the checks across steps (unique orders, order warnings).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::issues::{
    Notes, Severity, StepErrors, StepIssue, StepRef, closest, kind_of, shorten, unknown_field_message, wrong_type,
};
use super::read::{Need, Obj, Schemes};
use super::{
    AgentTarget, DEFAULT_RETRIES, DEFAULT_RETRY_DELAY, MAX_RETRIES, MAX_RETRY_DELAY, OnFailure, Phase, REGISTRY,
    StepConfig, StepDefinition, StepKind,
};
use crate::domain::address::AddressPolicy;
use crate::domain::ids::AgentId;

/// The note attached to every step that targets an agent through the legacy `agent_url`.
pub const LEGACY_AGENT_URL_REVIEW: &str = "legacy direct agent_url cannot be probed automatically; confirm \
reachability and Windows/IIS permissions before rotating (or use agent_id of a connected agent)";
/// The warning given for a document without steps.
pub const EMPTY_PLAN_WARNING: &str = "no rollout steps: only the Entra secret will change";

/// The fields a step object may have, whatever its type.
const TOP_LEVEL_FIELDS: &[&str] =
    &["type", "name", "order", "on_failure", "retries", "retry_delay", "agent_id", "agent_url", "config"];

// ---------------------------------------------------------------------------------------------------
// Plans
// ---------------------------------------------------------------------------------------------------

/// A validated rollout: the steps sorted by `order`, and what the operator should know about them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StepPlan {
    pub steps: Vec<StepDefinition>,
    /// Warnings and manual-review notes (never errors), by input position.
    pub warnings: Vec<StepIssue>,
}

/// Parses a JSON document holding an array of step definitions (a `steps_file`).
///
/// # Errors
///
/// Every error of every step (and of the document), when any; warnings only come with a valid plan.
///
/// Every URL is checked against the default [`AddressPolicy`] (no loopback, no metadata service,
/// ...); [`parse_steps_with`] takes the configured one.
pub fn parse_steps(json: &str) -> Result<StepPlan, StepErrors> {
    parse_steps_with(json, &AddressPolicy::default())
}

/// As [`parse_steps`], the URLs checked against `addresses`.
///
/// # Errors
///
/// As [`parse_steps`].
pub fn parse_steps_with(json: &str, addresses: &AddressPolicy) -> Result<StepPlan, StepErrors> {
    // serde_json's syntax errors give a position and what was expected, never the text around it.
    let value: Value = serde_json::from_str(json).map_err(|e| StepErrors::document(format!("not valid JSON: {e}")))?;
    match value {
        Value::Array(items) => parse_step_values_with(&items, addresses),
        other => Err(StepErrors::document(format!(
            "expected a JSON array of step objects ([{{\"type\": …, \"order\": …, \"config\": {{…}}}}, …]), got {}",
            kind_of(&other)
        ))),
    }
}

/// Parses step definitions already read as JSON values: the elements of a steps array, or steps
/// written inline in the TOML configuration and converted to JSON values by the config loader.
///
/// # Errors
///
/// As [`parse_steps`].
pub fn parse_step_values(values: &[Value]) -> Result<StepPlan, StepErrors> {
    parse_step_values_with(values, &AddressPolicy::default())
}

/// As [`parse_step_values`], the URLs checked against `addresses`.
///
/// # Errors
///
/// As [`parse_steps`].
pub fn parse_step_values_with(values: &[Value], addresses: &AddressPolicy) -> Result<StepPlan, StepErrors> {
    let parsed: Vec<Parsed> = values.iter().enumerate().map(|(i, v)| parse_one(i, v)).collect();

    let mut errors = Vec::new();
    let mut notes = Vec::new();
    for issue in parsed.iter().flat_map(|p| p.issues.iter().cloned()) {
        if issue.severity == Severity::Error { errors.push(issue) } else { notes.push(issue) }
    }
    // The address policy, on each well-formed step's URLs: the rule is named, the URL is not.
    for p in &parsed {
        let Some(step) = &p.step else { continue };
        for (field, url) in step.named_urls() {
            if let Err(refusal) = addresses.check_url(url) {
                errors.push(StepIssue {
                    step: p.reference.clone(),
                    field: Some(field.to_owned()),
                    message: refusal.to_string(),
                    severity: Severity::Error,
                });
            }
        }
    }
    // Orders are compared across all steps, failed ones included, so that one run shows everything.
    let mut first_with_order: BTreeMap<u32, &StepRef> = BTreeMap::new();
    for p in &parsed {
        let Some(order) = p.reference.order else { continue };
        match first_with_order.get(&order) {
            Some(first) => errors.push(StepIssue {
                step: p.reference.clone(),
                field: Some("order".to_owned()),
                message: format!("{order} is also the order of {first}; give each step its own order"),
                severity: Severity::Error,
            }),
            None => {
                first_with_order.insert(order, &p.reference);
            }
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|i| i.step.index);
        return Err(StepErrors(errors));
    }

    let steps: Vec<(usize, StepDefinition)> =
        parsed.into_iter().enumerate().filter_map(|(i, p)| p.step.map(|s| (i, s))).collect();
    notes.extend(order_warnings(&steps));
    if steps.is_empty() {
        notes.push(StepIssue {
            step: StepRef::document(),
            field: None,
            message: EMPTY_PLAN_WARNING.to_owned(),
            severity: Severity::Warning,
        });
    }
    notes.sort_by_key(|i| i.step.index);
    let mut steps: Vec<StepDefinition> = steps.into_iter().map(|(_, s)| s).collect();
    steps.sort_by_key(|s| s.order);
    Ok(StepPlan { steps, warnings: notes })
}

/// Warnings about the order of valid steps: publish before reload, reload before verify and notify.
fn order_warnings(steps: &[(usize, StepDefinition)]) -> Vec<StepIssue> {
    let mut out = Vec::new();
    for (index, step) in steps {
        let later = |pred: &dyn Fn(&StepDefinition) -> bool| -> Vec<String> {
            steps
                .iter()
                .filter(|(_, other)| other.order > step.order && pred(other))
                .map(|(j, other)| StepRef::of(*j, other).to_string())
                .collect()
        };
        let mut warn = |field: &str, message: String| {
            out.push(StepIssue {
                step: StepRef::of(*index, step),
                field: Some(field.to_owned()),
                message,
                severity: Severity::Warning,
            });
        };
        let is_publish = |s: &StepDefinition| s.phase() == Phase::Publish;
        let is_reload = |s: &StepDefinition| s.phase() == Phase::Reload;
        match &step.config {
            StepConfig::IisRecycle(c) => {
                let writes_same_agent =
                    |s: &StepDefinition| matches!(&s.config, StepConfig::AgentSecretSync(w) if w.agent == c.agent);
                if !steps.iter().any(|(_, s)| writes_same_agent(s)) {
                    let field = if c.agent.is_legacy() { "agent_url" } else { "agent_id" };
                    warn(
                        field,
                        "no agent_secret_sync step writes the secret on this agent: the app pool will reload \
                         whatever secret is already on disk"
                            .to_owned(),
                    );
                } else {
                    let writers = later(&writes_same_agent);
                    if !writers.is_empty() {
                        warn(
                            "order",
                            format!(
                                "recycles before {} writes the new secret on the same agent; give this step a \
                                 higher order",
                                writers.join(", ")
                            ),
                        );
                    }
                }
            }
            StepConfig::SpringActuatorRefresh(_) | StepConfig::AzureAppServiceRestart(_) => {
                let publishers = later(&is_publish);
                if !publishers.is_empty() {
                    warn(
                        "order",
                        format!(
                            "reloads before {} publishes the new secret, so it may reload the old one; give this \
                             step a higher order",
                            publishers.join(", ")
                        ),
                    );
                }
            }
            StepConfig::Webhook(_) => {
                let reloads = later(&is_reload);
                if !reloads.is_empty() {
                    warn(
                        "order",
                        format!(
                            "notifies before {} reloads the application; webhooks usually come last",
                            reloads.join(", ")
                        ),
                    );
                }
            }
            StepConfig::HttpHealthCheck(_) => {
                let pending = later(&|s: &StepDefinition| is_publish(s) || is_reload(s));
                if !pending.is_empty() {
                    warn(
                        "order",
                        format!(
                            "checks health before {}, so it proves nothing about the new secret; give this step \
                             a higher order",
                            pending.join(", ")
                        ),
                    );
                }
            }
            StepConfig::AzureKeyVault(_)
            | StepConfig::KubernetesSecret(_)
            | StepConfig::AgentSecretSync(_)
            | StepConfig::RotatorOwnSecret(_) => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------
// Parsing one step
// ---------------------------------------------------------------------------------------------------

/// One element of the input, parsed: what is known of it, the step if it is valid, and its issues.
pub(super) struct Parsed {
    reference: StepRef,
    pub(super) step: Option<StepDefinition>,
    pub(super) issues: Vec<StepIssue>,
}

pub(super) fn parse_one(index: usize, value: &Value) -> Parsed {
    let mut reference = StepRef { index: Some(index), order: None, kind: None };
    let mut notes = Notes::default();
    let step = match value {
        Value::Object(map) => parse_object(map, &mut reference, &mut notes),
        other => {
            notes.0.push((
                None,
                format!(
                    "expected a step object such as {{\"type\": …, \"order\": …, \"config\": {{…}}}}, got {}",
                    kind_of(other)
                ),
                Severity::Error,
            ));
            None
        }
    };
    let issues = notes
        .0
        .into_iter()
        .map(|(field, message, severity)| StepIssue { step: reference.clone(), field, message, severity })
        .collect();
    Parsed { reference, step, issues }
}

fn parse_object(map: &Map<String, Value>, reference: &mut StepRef, n: &mut Notes) -> Option<StepDefinition> {
    let top = Obj::new(map, "");
    let kind = read_kind(&top, n);
    reference.kind = kind;
    reference.order = map.get("order").and_then(Value::as_u64).and_then(|o| u32::try_from(o).ok());

    for key in map.keys() {
        if !TOP_LEVEL_FIELDS.contains(&key.as_str()) {
            let belongs_in_config = kind.is_some_and(|k| k.config_fields().contains(&key.as_str()));
            let message = if belongs_in_config {
                format!("unknown field here; `{key}` belongs inside `config`")
            } else {
                unknown_field_message(key, TOP_LEVEL_FIELDS, None)
            };
            n.error(key.as_str(), message);
        } else if (key == "agent_id" || key == "agent_url")
            && let Some(kind) = kind.filter(|k| !k.takes_agent())
        {
            // Named from the registry, so the list stays right when an agent type is added.
            let takers: Vec<&str> = REGISTRY.iter().filter(|t| t.takes_agent).map(|t| t.name).collect();
            n.error(key.as_str(), format!("{kind} runs without an agent; only {} take one", takers.join(" and ")));
        }
    }

    let order = top.uint(n, "order", Need::Required, u64::from(u32::MAX)).and_then(|o| u32::try_from(o).ok());
    let on_failure = top.one_of(n, "on_failure", Need::Optional, OnFailure::CHOICES);
    let name = top.text(n, "name", Need::Optional, check_step_name);
    let retries = top.uint(n, "retries", Need::Optional, u64::from(MAX_RETRIES)).and_then(|r| u32::try_from(r).ok());
    let retry_delay = top.span(n, "retry_delay", Need::Optional);
    if retry_delay.is_some_and(|d| d > MAX_RETRY_DELAY) {
        n.error("retry_delay", format!("at most {MAX_RETRY_DELAY}: a retry is a delayed queue message"));
    }
    let agent = match kind {
        Some(k) if k.takes_agent() => read_agent(&top, n),
        _ => None,
    };
    let config = match top.value(n, "config", Need::Required) {
        None => None,
        Some(Value::Object(cfg)) => kind.and_then(|k| parse_config(k, &Obj::new(cfg, "config."), agent, n)),
        Some(other) => {
            n.error("config", wrong_type("an object", other));
            None
        }
    };
    if n.has_errors() {
        return None;
    }
    Some(StepDefinition {
        name,
        order: order?,
        on_failure: on_failure.unwrap_or_default(),
        retries: retries.unwrap_or(DEFAULT_RETRIES),
        retry_delay: retry_delay.unwrap_or(DEFAULT_RETRY_DELAY),
        config: config?,
    })
}

fn read_kind(top: &Obj<'_>, n: &mut Notes) -> Option<StepKind> {
    let known: Vec<&str> = StepKind::ALL.iter().map(|k| k.as_str()).collect();
    match top.get("type") {
        None => {
            n.error("type", format!("missing; one of {}", known.join(", ")));
            None
        }
        Some(Value::String(s)) => {
            let kind = StepKind::parse(s);
            if kind.is_none() {
                let hint = match closest(s, &known) {
                    Some(near) => format!("; did you mean `{near}`?"),
                    None => String::new(),
                };
                n.error("type", format!("unknown step type `{}`{hint} (known: {})", shorten(s), known.join(", ")));
            }
            kind
        }
        Some(other) => {
            n.error("type", wrong_type("a string", other));
            None
        }
    }
}

fn read_agent(top: &Obj<'_>, n: &mut Notes) -> Option<AgentTarget> {
    match (top.get("agent_id"), top.get("agent_url")) {
        (Some(_), Some(_)) => {
            n.error("agent_url", "give agent_id or the legacy agent_url, not both");
            None
        }
        (Some(_), None) => {
            let s = top.str(n, "agent_id", Need::Required)?;
            let id = AgentId::parse(s).map_err(|_| {
                "expected the GUID of a connected agent, such as 11111111-1111-1111-1111-111111111111".to_owned()
            });
            top.checked(n, "agent_id", id).map(AgentTarget::Agent)
        }
        (None, Some(_)) => {
            let url = top.url(n, "agent_url", Need::Required, Schemes::HttpOrHttps)?;
            n.manual_review("agent_url", LEGACY_AGENT_URL_REVIEW);
            Some(AgentTarget::LegacyUrl(url))
        }
        (None, None) => {
            n.error("agent_id", "missing; the id of the connected agent that runs this step");
            None
        }
    }
}

/// Checks the keys of `config` against those its type allows (all of them, so that every unknown one
/// is named), then hands it to the type's reader.
fn parse_config(kind: StepKind, cfg: &Obj<'_>, agent: Option<AgentTarget>, n: &mut Notes) -> Option<StepConfig> {
    let env_field = kind.env_field();
    for key in cfg.map.keys() {
        if kind.config_fields().contains(&key.as_str()) {
            continue;
        }
        let message = if TOP_LEVEL_FIELDS.contains(&key.as_str()) && key != "config" {
            format!("`{key}` belongs at the top level of the step, beside `type`, not inside `config`")
        } else {
            unknown_field_message(key, kind.config_fields(), env_field)
        };
        n.error(cfg.path(key), message);
    }
    (kind.step_type().read)(cfg, agent, n)
}

/// The operator's `name` of a step: long enough for a sentence, short enough for a list.
fn check_step_name(s: &str) -> Result<(), String> {
    if s.chars().count() > 200 { Err("at most 200 characters".to_owned()) } else { Ok(()) }
}
