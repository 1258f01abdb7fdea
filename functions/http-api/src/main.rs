//! The http-api Lambda function: the HTTP API (rotate, executions, history, dashboard) behind API
//! Gateway, the same router `rotator serve` serves. API Gateway's JWT authorizer verifies the
//! Entra-issued token; the app roles of its `roles` claim become the caller's permissions.

use entra_rotator_aws::lambda::{Deployment, init_tracing, run_http_api};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let deployment = Deployment::from_env().await.map_err(|e| e.chain())?;
    deployment.log_integration_checks();
    run_http_api(deployment.http_router()).await
}
