//! Where the AWS deployment keeps its state, read once at cold start from the environment the SAM
//! template sets. A missing value fails fast, naming the variable.

use aws_config::{BehaviorVersion, SdkConfig};
use entra_rotator::config::Env;
use entra_rotator::messages;
use entra_rotator::ports::QueueSpec;
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

/// The queues as `infra/template.yaml` deploys them: the chain's table
/// ([`entra_rotator::messages::CHAIN`]), each visibility six times its function's timeout.
pub fn queue_specs() -> Vec<QueueSpec> {
    messages::deployed_queue_specs()
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

    /// The resource block of `name` (a top-level resource of the template), up to the next one.
    fn resource<'t>(template: &'t str, name: &str) -> &'t str {
        let head = format!("\n  {name}:\n");
        let at = template.find(&head).unwrap_or_else(|| panic!("the template has no resource {name}"));
        let rest = &template[at + head.len()..];
        let end =
            rest.match_indices("\n  ").find(|(i, _)| !rest[i + 3..].starts_with(' ')).map_or(rest.len(), |(i, _)| i);
        &rest[..end]
    }

    #[test]
    fn each_function_of_the_chain_has_its_timeout_and_reads_its_queue() {
        let template = include_str!("../../infra/template.yaml");
        for link in messages::CHAIN {
            let function = format!("FunctionName: !Sub \"${{AWS::StackName}}-{}\"", link.handler);
            let at =
                template.find(&function).unwrap_or_else(|| panic!("the template has no function {}", link.handler));
            // The resource holding it: the nearest line above indented by exactly two spaces.
            let name = template[..at]
                .lines()
                .rev()
                .find(|l| l.starts_with("  ") && l.chars().nth(2).is_some_and(char::is_alphanumeric))
                .map(|l| l.trim().trim_end_matches(':').to_owned())
                .unwrap_or_else(|| panic!("{} is in no resource", link.handler));
            let block = resource(template, &name);
            let timeout = format!("Timeout: {}", link.timeout.as_secs());
            assert!(block.contains(&timeout), "{}: the template does not say {timeout}", link.handler);
            let queue = block
                .split("Queue: !GetAtt ")
                .nth(1)
                .and_then(|r| r.split(".Arn").next())
                .unwrap_or_else(|| panic!("{} reads no queue", link.handler));
            let queue_name = format!("QueueName: !Sub \"${{AWS::StackName}}-{}.fifo\"", link.queue);
            assert!(
                resource(template, queue).contains(&queue_name),
                "{} reads {queue}, not {}",
                link.handler,
                link.queue
            );
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
