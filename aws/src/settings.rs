//! Where the AWS deployment keeps its state, read once at cold start from the environment the SAM
//! template sets. A missing value fails fast, naming the variable.

use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use entra_rotator::config::Env;
use entra_rotator::messages::queues;
use entra_rotator::ports::{QueueName, QueueSpec};
use entra_rotator::{Error, Result};

pub const TABLE_VAR: &str = "ROTATOR_AWS_TABLE";
pub const KMS_KEY_VAR: &str = "ROTATOR_AWS_KMS_KEY";
pub const QUEUE_PREFIX_VAR: &str = "ROTATOR_AWS_QUEUE_PREFIX";
pub const ENDPOINT_VAR: &str = "ROTATOR_AWS_ENDPOINT";

/// The table, the key and the queues of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// The DynamoDB table of the store (and of the queues' failure notes).
    pub table: String,
    /// The KMS key (id, ARN or alias) that wraps each sealed value's data key.
    pub kms_key: String,
    /// Queues are named `<prefix><queue>.fifo`, their dead-letter queues `<prefix><queue>-dlq.fifo`.
    pub queue_prefix: String,
    /// Another endpoint for every AWS service (a local emulator); `None` is AWS itself.
    pub endpoint: Option<String>,
}

impl AwsSettings {
    /// Reads `ROTATOR_AWS_TABLE`, `ROTATOR_AWS_KMS_KEY`, `ROTATOR_AWS_QUEUE_PREFIX` and, optionally,
    /// `ROTATOR_AWS_ENDPOINT`. Every missing variable is named in one error.
    pub fn from_env(env: &dyn Env) -> Result<Self> {
        let mut missing = Vec::new();
        let mut need = |name: &'static str| {
            env.var(name).unwrap_or_else(|| {
                missing.push(name);
                String::new()
            })
        };
        let table = need(TABLE_VAR);
        let kms_key = need(KMS_KEY_VAR);
        let queue_prefix = need(QUEUE_PREFIX_VAR);
        if !missing.is_empty() {
            return Err(Error::Config(format!(
                "the AWS deployment needs {} in the environment (the SAM template sets them)",
                missing.join(", ")
            )));
        }
        Ok(Self { table, kms_key, queue_prefix, endpoint: env.var(ENDPOINT_VAR) })
    }

    /// The SDK configuration: region and credentials from the usual AWS chain (the Lambda's role),
    /// the endpoint overridden when one is set.
    pub async fn sdk_config(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(endpoint) = &self.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        loader.load().await
    }
}

/// The queues as `infra/template.yaml` deploys them: FIFO, five receives before the dead-letter
/// queue, and a visibility timeout six times the consuming function's timeout (sync 900 s,
/// expiry-scan, run-step and grace-cleanup 300 s, rotate 120 s). Keep the two in step.
pub fn queue_specs() -> Vec<QueueSpec> {
    queues::ALL
        .iter()
        .map(|name| {
            let function_timeout = match *name {
                queues::SYNC => 900,
                queues::ROTATE => 120,
                _ => 300,
            };
            QueueSpec {
                name: QueueName::new(*name),
                fifo: true,
                max_receive_count: 5,
                visibility_timeout: Duration::from_secs(6 * function_timeout),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_missing_variable_is_named_at_once() {
        let e = AwsSettings::from_env(&env(&[(TABLE_VAR, "t")])).unwrap_err().to_string();
        assert!(e.contains(KMS_KEY_VAR) && e.contains(QUEUE_PREFIX_VAR) && !e.contains(TABLE_VAR), "{e}");
    }

    #[test]
    fn the_queues_are_those_the_template_deploys() {
        let template = include_str!("../../infra/template.yaml");
        for spec in queue_specs() {
            let name = format!("QueueName: !Sub \"${{AWS::StackName}}-{}.fifo\"", spec.name);
            let at = template.find(&name).unwrap_or_else(|| panic!("the template has no queue {}", spec.name));
            let rest = &template[at + name.len()..];
            let block = &rest[..rest.find("QueueName:").unwrap_or(rest.len())];
            let visibility = format!("VisibilityTimeout: {}", spec.visibility_timeout.as_secs());
            assert!(block.contains(&visibility), "{}: the template does not say {visibility}", spec.name);
            assert!(block.contains(&format!("maxReceiveCount: {}", spec.max_receive_count)), "{}", spec.name);
        }
    }

    #[test]
    fn settings_are_read_from_the_environment() {
        let s = AwsSettings::from_env(&env(&[
            (TABLE_VAR, "entra-rotator"),
            (KMS_KEY_VAR, "alias/entra-rotator"),
            (QUEUE_PREFIX_VAR, "prod-"),
        ]))
        .unwrap();
        assert_eq!(s.queue_prefix, "prod-");
        assert_eq!(s.endpoint, None);
    }
}
