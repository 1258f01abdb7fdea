//! The grace-cleanup Lambda function: removes old secrets whose grace period ended after a healthy rollout and sweeps orphans. Fed by its SQS queue and by a schedule.
//! Wiring only; the handler is the one `rotator serve` runs.

use entra_rotator::messages::queues;
use entra_rotator_aws::lambda::{Deployment, init_tracing, run_queue_function};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let deployment = Deployment::from_env().await.map_err(|e| e.chain())?;
    deployment.log_integration_checks();
    run_queue_function(deployment.chain_function(queues::CLEANUP).map_err(|e| e.chain())?).await
}
