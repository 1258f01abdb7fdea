//! The `spring_actuator_refresh` runner: POSTs to a Spring Boot `/actuator/refresh` endpoint, with
//! the bearer token the step names, so the application re-reads its configuration.

use super::http::{Http, status, transport};
use crate::domain::steps::SpringActuatorRefreshConfig;
use crate::ports::step_runner::StepFailure;

pub(super) async fn run(http: &Http, cfg: &SpringActuatorRefreshConfig) -> Result<(), StepFailure> {
    let mut request = http.client_for(&cfg.url)?.post(cfg.url.as_str()).timeout(cfg.timeout.as_duration());
    if let Some(env) = &cfg.bearer_token_env {
        request = request.bearer_auth(http.env_secret(env)?.expose());
    }
    let response = request.send().await.map_err(|e| transport(&e))?;
    status(response.status(), "the actuator refresh endpoint")
}
