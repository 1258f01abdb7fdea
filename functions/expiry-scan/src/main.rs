//! The expiry-scan Lambda function: derives lifecycle states, sends alerts once per threshold and requests the rotations that are due. Fed by its SQS queue and by a schedule.
//! Wiring only; the handler is the one `rotator serve` runs.

use std::sync::Arc;

use entra_rotator::inbound::batch::EnvelopeHandler;
use entra_rotator::inbound::handlers::ScanHandler;
use entra_rotator::messages::queues;
use entra_rotator_aws::lambda::{Deployment, init_tracing, run_queue_function};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let deployment = Deployment::from_env().await.map_err(|e| e.chain())?;
    let handler = Arc::new(EnvelopeHandler(ScanHandler(deployment.services.clone())));
    run_queue_function(deployment.queue_function(queues::SCAN, handler)).await
}
