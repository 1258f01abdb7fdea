//! `rotator_own_secret`: the stored-secret fallback rotating itself. When an integration still signs
//! in with a client secret kept in a file (one machine) or a Secrets Manager secret (AWS), its own
//! app registration is rotated like any other, and this step writes the new secret where that
//! integration reads it (`client_secret_file` / `client_secret_arn`), then signs in with the value
//! read back from there before it succeeds. The old secret is removed by grace cleanup, as always.

use serde::Serialize;

use super::issues::Notes;
use super::read::{Need, Obj};
use super::{Phase, StepConfig, StepKind, StepType, TypeConfig};
use crate::domain::ids::IntegrationId;

pub(super) const TYPE: StepType = StepType {
    kind: StepKind::RotatorOwnSecret,
    name: "rotator_own_secret",
    phase: Phase::Publish,
    takes_agent: false,
    config_fields: &["integration"],
    env_field: None,
    read: |o, _agent, n| read(o, n).map(StepConfig::RotatorOwnSecret),
};

/// `rotator_own_secret`: writes the rotated secret where `integration` reads its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotatorOwnSecretConfig {
    /// The integration whose stored client secret this is: the rotated application must be the
    /// one it signs in as.
    pub integration: IntegrationId,
}

impl TypeConfig for RotatorOwnSecretConfig {
    fn describe(&self) -> String {
        format!("Store the new secret where integration {} reads its own", self.integration)
    }

    fn identities(&self) -> Vec<(&'static str, &IntegrationId)> {
        vec![("config.integration", &self.integration)]
    }
}

fn read(o: &Obj<'_>, n: &mut Notes) -> Option<RotatorOwnSecretConfig> {
    let integration = o
        .text(n, "integration", Need::Required, super::key_vault::check_identity)
        .and_then(|s| IntegrationId::parse(&s).ok());
    Some(RotatorOwnSecretConfig { integration: integration? })
}

#[cfg(test)]
mod tests {
    use crate::domain::address::AddressPolicy;
    use crate::domain::steps::{Phase, StepConfig, parse_steps_with};

    #[test]
    fn the_step_names_its_integration_and_publishes() {
        let plan = parse_steps_with(
            r#"[{"type": "rotator_own_secret", "order": 1, "config": {"integration": "own"}}]"#,
            &AddressPolicy::default(),
        )
        .unwrap();
        let step = &plan.steps[0];
        assert_eq!(step.phase(), Phase::Publish);
        assert!(matches!(&step.config, StepConfig::RotatorOwnSecret(c) if c.integration.as_str() == "own"));
        assert_eq!(step.identities().len(), 1);
    }

    #[test]
    fn a_step_without_its_integration_or_with_another_field_is_refused() {
        let e = parse_steps_with(
            r#"[{"type": "rotator_own_secret", "order": 1, "config": {}}]"#,
            &AddressPolicy::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("integration"), "{e}");
        let e = parse_steps_with(
            r#"[{"type": "rotator_own_secret", "order": 1, "config": {"integration": "own", "path": "/x"}}]"#,
            &AddressPolicy::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("path"), "{e}");
    }
}
