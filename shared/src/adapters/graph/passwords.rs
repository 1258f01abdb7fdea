//! What the Graph adapter does to passwords: create one (`addPassword`), remove one
//! (`removePassword`), and check at the token endpoint that a new one signs in. Creating is the one
//! call that must never be sent twice blindly; the notes on `create_password` and `delete_password`
//! say what becomes of a secret when a crash or a lost answer leaves the outcome unknown.

use reqwest::{Method, StatusCode};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroize;

use super::failure::{
    GRAPH, TOKEN_ENDPOINT, names_missing_key, one_line, status_text, token_network_error, unreadable,
};
use super::op::Op;
use super::{GraphClient, auth, wire};
use crate::domain::ids::{AppObjectId, ClientId, KeyId};
use crate::domain::secret::SecretValue;
use crate::ports::directory::{NewPassword, Removal};
use crate::{Error, Result};

impl GraphClient {
    /// Creates a secret. `addPassword` is not idempotent, so it is sent again only when Graph
    /// certainly did not act on it: a 429, a concurrency refusal (409, or 400 naming concurrent
    /// requests), or a connection that never opened. A timeout, a dropped connection or a 5xx leaves
    /// the outcome unknown: the call fails with a transient error and is not repeated here. If Graph
    /// did create the secret, nobody has its value; the caller's orphan sweep finds it by the
    /// execution marker in `display_name` and removes it, and the retried rotation creates another.
    ///
    /// The answer holds the only copy of the secret text: it is never logged or quoted in an error.
    pub(super) async fn create_password(
        &self,
        app: AppObjectId,
        display_name: &str,
        end: OffsetDateTime,
    ) -> Result<NewPassword> {
        let end = end
            .to_offset(time::UtcOffset::UTC)
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .ok_or_else(|| Error::invalid("secret end date", "cannot be written as an RFC 3339 time"))?;
        let url = format!("{}/applications/{app}/addPassword", self.graph_base);
        let body = serde_json::json!({ "passwordCredential": { "displayName": display_name, "endDateTime": end } });
        let op = Op::write(format!("addPassword on application {app}"), format!("application {app}"))
            .not_replayable()
            .sensitive()
            .hand_back_refusals();
        let mut answer = self.call(&op, Method::POST, &url, Some(&body)).await?;
        let parsed: std::result::Result<wire::AddedPasswordJson, _> = serde_json::from_slice(&answer);
        answer.zeroize();
        // serde's message may quote the input, which holds the secret: say only what failed.
        let added = parsed.map_err(|_| Error::Directory {
            service: GRAPH,
            status: 200,
            code: "UnreadableResponse".into(),
            message: format!(
                "Graph's answer to addPassword on application {app} could not be read; if a secret was created \
                 its value is lost, and the orphan sweep removes it by its marker"
            ),
            transient: true,
            retry_after: None,
        })?;
        let Some(secret_text) = added.secret_text else {
            return Err(Error::Directory {
                service: GRAPH,
                status: 200,
                code: "MissingSecretText".into(),
                message: format!(
                    "Graph created password {} on application {app} but returned no secretText; the orphan sweep \
                     removes it by its marker",
                    added.key_id
                ),
                transient: true,
                retry_after: None,
            });
        };
        let read_time = |field, v: Option<String>| wire::timestamp(field, v.as_deref()).map_err(|e| unreadable(&op, e));
        Ok(NewPassword {
            key_id: added.key_id,
            secret: SecretValue::new(secret_text),
            hint: added.hint,
            display_name: added.display_name,
            start: read_time("startDateTime", added.start_date_time)?,
            end: read_time("endDateTime", added.end_date_time)?,
        })
    }

    /// Removes one password. Sending it twice is harmless (the second finds nothing), so it is
    /// retried like a read. An unknown key id, or an application that no longer exists, is
    /// [`Removal::AlreadyGone`]: either way no credential with that key id can sign in. Microsoft
    /// documents only the 204; for an unknown key id Graph answers 404 `Request_ResourceNotFound`
    /// ("No password credential found with keyId …", as the simulated tenant does), and a 400 with
    /// such a message is read the same way. A 404 can also be replication lag on an object created
    /// seconds ago; removals here target credentials past their grace period, or orphans past the
    /// sweep's safety delay, so that case does not arise.
    pub(super) async fn delete_password(&self, app: AppObjectId, key_id: KeyId) -> Result<Removal> {
        let url = format!("{}/applications/{app}/removePassword", self.graph_base);
        let body = serde_json::json!({ "keyId": key_id.to_string() });
        let op = Op::write(format!("removePassword {key_id} on application {app}"), format!("application {app}"));
        match self.call(&op, Method::POST, &url, Some(&body)).await {
            Ok(_) => Ok(Removal::Removed),
            Err(failure) if failure.status == 404 => Ok(Removal::AlreadyGone),
            Err(failure) if failure.status == 400 && names_missing_key(&failure.graph_message) => {
                Ok(Removal::AlreadyGone)
            }
            Err(failure) => Err(failure.into()),
        }
    }

    /// A client-credentials token request for Graph as `client_id` with `secret`, at the
    /// integration's authority and tenant. Sent once: the verify step has its own patience.
    pub(super) async fn try_sign_in(&self, client_id: ClientId, secret: &SecretValue) -> Result<bool> {
        let client_id = client_id.to_string();
        let form = [
            ("client_id", client_id.as_str()),
            ("client_secret", secret.expose()),
            ("grant_type", "client_credentials"),
            ("scope", self.scope.as_str()),
        ];
        let response = self
            .http
            .post(self.token_endpoint())
            .form(&form)
            .timeout(self.request_timeout)
            .send()
            .await
            .map_err(|e| token_network_error(&e))?;
        let status = response.status();
        let retry_after = self.retry_after(&response);
        let mut body = Vec::from(response.bytes().await.map_err(|e| token_network_error(&e))?);
        if status.is_success() {
            // The answer is an access token: nothing in it is needed, and it is wiped.
            body.zeroize();
            return Ok(true);
        }
        let error: wire::TokenErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        let description = one_line(&error.error_description);
        // invalid_client: wrong, expired or not yet replicated secret (AADSTS7000215, 7000222).
        // unauthorized_client with AADSTS700016: the application is not (yet) known to this tenant.
        if error.error == "invalid_client"
            || (error.error == "unauthorized_client" && error.error_codes.contains(&700016))
        {
            tracing::debug!(status = status.as_u16(), error = %error.error, codes = ?error.error_codes, "secret does not sign in (yet)");
            return Ok(false);
        }
        let transient = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
        Err(Error::Directory {
            service: TOKEN_ENDPOINT,
            status: status.as_u16(),
            code: if error.error.is_empty() { status_text(status) } else { error.error },
            message: if description.is_empty() {
                "the token request failed".into()
            } else {
                format!("the token request failed: {description}")
            },
            transient,
            retry_after,
        })
    }

    fn token_endpoint(&self) -> String {
        auth::token_endpoint(&self.authority, self.tenant)
    }
}
