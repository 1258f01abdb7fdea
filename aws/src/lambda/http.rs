//! The http-api function's glue (feature `lambda-http`): the shared router behind API Gateway, with
//! callers known from the JWT authorizer's claims.

use std::collections::HashMap;

use axum::Router;
use entra_rotator::config::Role;
use entra_rotator::inbound::api::{ApiAuth, ApiState, VerifiedCaller};

use super::Deployment;

impl Deployment {
    /// The HTTP API's router, trusting the callers API Gateway's JWT authorizer verified.
    pub fn http_router(&self) -> Router {
        entra_rotator::inbound::api::router(ApiState {
            services: self.services.clone(),
            auth: ApiAuth::Verified,
            workers: None,
        })
    }
}

/// The caller API Gateway's JWT authorizer verified, with the app roles of its token. HTTP APIs
/// pass an array claim as text, either as JSON or as `[a b c]`; both are read. Roles this product
/// does not know are ignored.
pub fn verified_caller(claims: &HashMap<String, String>) -> Option<VerifiedCaller> {
    let name = ["preferred_username", "upn", "azp", "appid", "sub"]
        .iter()
        .find_map(|k| claims.get(*k).filter(|v| !v.is_empty()))?
        .clone();
    let roles_text = claims.get("roles").map(String::as_str).unwrap_or("");
    let names: Vec<String> = serde_json::from_str::<Vec<String>>(roles_text).unwrap_or_else(|_| {
        roles_text.trim_start_matches('[').trim_end_matches(']').split([' ', ',']).map(str::to_owned).collect()
    });
    let roles = names
        .iter()
        .filter_map(|r| match r.trim() {
            "entra:read" => Some(Role::Read),
            "entra:write" => Some(Role::Write),
            "entra:rotate" => Some(Role::Rotate),
            _ => None,
        })
        .collect();
    Some(VerifiedCaller { name: format!("jwt:{name}"), roles })
}

/// Puts the [`VerifiedCaller`] of the request's API Gateway context into its extensions.
async fn caller_from_context(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use lambda_http::RequestExt;
    request.extensions_mut().remove::<VerifiedCaller>();
    let caller = match request.extensions().request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => {
            ctx.authorizer.as_ref().and_then(|a| a.jwt.as_ref()).and_then(|jwt| verified_caller(&jwt.claims))
        }
        _ => None,
    };
    if let Some(caller) = caller {
        request.extensions_mut().insert(caller);
    }
    next.run(request).await
}

/// The router as the http-api function serves it: callers known from the authorizer's claims.
pub fn lambda_router(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(caller_from_context))
}

/// Serves the HTTP API until the Lambda environment stops it.
pub async fn run_http_api(router: Router) -> std::result::Result<(), lambda_runtime::Error> {
    lambda_http::run(lambda_router(router)).await
}
