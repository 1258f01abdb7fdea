//! The sync Lambda function: reads one integration from Microsoft Graph, full or delta, then asks for an expiry scan. Fed by its SQS queue and by an hourly schedule.
//! Wiring only; the handler is the one `rotator serve` runs.

use entra_rotator::messages::queues;
use entra_rotator_aws::lambda::{Deployment, init_tracing, run_queue_function};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let deployment = Deployment::from_env().await.map_err(|e| e.chain())?;
    deployment.log_integration_checks();
    run_queue_function(deployment.chain_function(queues::SYNC).map_err(|e| e.chain())?).await
}
