//! `iis_recycle`: reloads an IIS application by recycling (or restarting) its app pool, through the
//! connected agent of its Windows host.

use serde::{Deserialize, Serialize};

use super::issues::Notes;
use super::read::{Need, Obj};
use super::{AgentTarget, Phase, StepConfig, StepKind, StepType, TypeConfig};

pub(super) const TYPE: StepType = StepType {
    kind: StepKind::IisRecycle,
    name: "iis_recycle",
    phase: Phase::Reload,
    takes_agent: true,
    // `site_name` is the legacy name of `app_pool`, still accepted.
    config_fields: &["app_pool", "site_name", "mode"],
    env_field: None,
    read: |o, agent, n| read(o, agent, n).map(StepConfig::IisRecycle),
};

/// `iis_recycle`: a connected Windows agent recycles (or stops and starts) an IIS app pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IisRecycleConfig {
    /// Serialised at the top level of the step (`agent_id` / `agent_url`), as in the notes.
    #[serde(skip)]
    pub agent: AgentTarget,
    /// The app pool; legacy `site_name` is read into this field.
    pub app_pool: String,
    pub mode: RecycleMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecycleMode {
    /// Overlapped recycle: the new worker starts before the old one drains, no downtime.
    #[default]
    Recycle,
    /// Stop, then start: for apps that cannot run two workers at once.
    Restart,
}

impl RecycleMode {
    const CHOICES: &[(&str, RecycleMode)] = &[("recycle", RecycleMode::Recycle), ("restart", RecycleMode::Restart)];
}

impl TypeConfig for IisRecycleConfig {
    fn describe(&self) -> String {
        let verb = match self.mode {
            RecycleMode::Recycle => "Recycle",
            RecycleMode::Restart => "Restart",
        };
        format!("{verb} IIS app pool {} on {}", self.app_pool, self.agent.short())
    }

    fn agent(&self) -> Option<&AgentTarget> {
        Some(&self.agent)
    }
}

fn read(o: &Obj<'_>, agent: Option<AgentTarget>, n: &mut Notes) -> Option<IisRecycleConfig> {
    let app_pool = o.text(n, "app_pool", Need::Optional, check_app_pool);
    let site_name = o.text(n, "site_name", Need::Optional, check_app_pool);
    if o.get("app_pool").is_none() && o.get("site_name").is_none() {
        n.error(o.path("app_pool"), "missing; the IIS application pool to recycle");
    }
    let app_pool = match (app_pool, site_name) {
        (Some(pool), Some(site)) if pool != site => {
            n.error(
                o.path("site_name"),
                "is the legacy name of app_pool and names another pool than app_pool; give app_pool only",
            );
            None
        }
        (pool, Some(site)) => {
            n.warn(o.path("site_name"), "legacy field, normalised to app_pool; write app_pool");
            Some(pool.unwrap_or(site))
        }
        (pool, None) => pool,
    };
    let mode = o.one_of(n, "mode", Need::Optional, RecycleMode::CHOICES);
    Some(IisRecycleConfig { agent: agent?, app_pool: app_pool?, mode: mode.unwrap_or_default() })
}

/// An IIS app pool name: IIS refuses these characters, and the name is handed to the agent's IIS
/// tooling, where quotes and slashes are the start of trouble.
fn check_app_pool(s: &str) -> Result<(), String> {
    if s.chars().count() > 256 || s.chars().any(|c| matches!(c, '\\' | '/' | ':' | '*' | '?' | '"' | '<' | '>' | '|')) {
        Err(r#"an IIS app pool name is at most 256 characters, without \ / : * ? " < > |"#.to_owned())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::steps::Severity;
    use crate::domain::steps::test_support::*;

    #[test]
    fn legacy_site_name_is_normalised_to_app_pool() {
        let p = plan(&SEED_2.replace("\"app_pool\"", "\"site_name\""));
        let StepConfig::IisRecycle(c) = &p.steps[1].config else { panic!() };
        assert_eq!(c.app_pool, "DefaultAppPool");
        let w = issue(&p.warnings, "config.site_name");
        assert_eq!((w.step.index, w.severity), (Some(1), Severity::Warning));
        assert!(w.message.contains("normalised to app_pool"));
        let normalised = serde_json::to_value(&p.steps).expect("serialises");
        assert_eq!(normalised[1]["config"], serde_json::json!({"app_pool": "DefaultAppPool", "mode": "recycle"}));
        assert_eq!(plan(&normalised.to_string()).steps, p.steps);

        let same = SEED_2.replace(
            "\"app_pool\": \"DefaultAppPool\"",
            "\"app_pool\": \"DefaultAppPool\", \"site_name\": \"DefaultAppPool\"",
        );
        assert_eq!(plan(&same).steps, p.steps);
        let differ = SEED_2
            .replace("\"app_pool\": \"DefaultAppPool\"", "\"app_pool\": \"DefaultAppPool\", \"site_name\": \"Other\"");
        let e = errors(&differ);
        assert_eq!(
            (issue(&e, "config.site_name").step.index, issue(&e, "config.site_name").severity),
            (Some(1), Severity::Error)
        );
    }
}
