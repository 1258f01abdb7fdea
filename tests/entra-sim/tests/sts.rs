//! The simulated STS `GetWebIdentityToken`: it verifies the request's SigV4 signature as STS does,
//! signed here with the official signer (`aws-sigv4`), and refuses in STS's XML error shape.

mod common;

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use common::*;
use entra_sim::{Sim, SimOptions};
use reqwest::StatusCode;

const ROLE: &str = "arn:aws:sts::123456789012:assumed-role/entra-rotator-sync/sync";
const KEY_ID: &str = "ASIASTSSIMTEST";
const SECRET: &str = "sts/sim/secret";
const SESSION: &str = "the-session-token";
const BODY: &str = "Action=GetWebIdentityToken&Version=2011-06-15\
    &Audience.member.1=api%3A%2F%2FAzureADTokenExchange&SigningAlgorithm=RS256&DurationSeconds=300";

/// How a test request is signed; [`Signing::good`] is what an SDK in eu-west-1 sends.
struct Signing {
    key_id: &'static str,
    secret: &'static str,
    session: Option<&'static str>,
    service: &'static str,
    at: SystemTime,
    /// The body sent, which may differ from the one signed ([`BODY`]).
    sent_body: &'static str,
}

impl Signing {
    fn good() -> Self {
        Self {
            key_id: KEY_ID,
            secret: SECRET,
            session: Some(SESSION),
            service: "sts",
            at: SystemTime::now(),
            sent_body: BODY,
        }
    }
}

async fn sim() -> Sim {
    let sim = start(SimOptions { apps: 1, ..Default::default() }).await;
    sim.federation().add_aws_role(KEY_ID, SECRET, Some(SESSION), ROLE);
    sim
}

/// Sends `GetWebIdentityToken` signed as `signing` says; returns the status and the XML body.
async fn get_web_identity_token(sim: &Sim, signing: Signing) -> (StatusCode, String) {
    let endpoint = sim.federation().sts_endpoint();
    let host = url::Url::parse(&endpoint).expect("a URL");
    let host = format!("{}:{}", host.host_str().expect("a host"), host.port().expect("a port"));
    let identity: Identity =
        Credentials::new(signing.key_id, signing.secret, signing.session.map(str::to_owned), None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("eu-west-1")
        .name(signing.service)
        .time(signing.at)
        .settings(SigningSettings::default())
        .build()
        .expect("signing parameters")
        .into();
    let headers = [("host", host.as_str()), ("content-type", "application/x-www-form-urlencoded")];
    let request = SignableRequest::new("POST", &endpoint, headers.into_iter(), SignableBody::Bytes(BODY.as_bytes()))
        .expect("signable");
    let (instructions, _) = sign(request, &params).expect("signed").into_parts();
    let mut request =
        http(sim).post(&endpoint).header("content-type", "application/x-www-form-urlencoded").body(signing.sent_body);
    for (name, value) in instructions.headers() {
        request = request.header(name, value);
    }
    let response = request.send().await.expect("STS answers");
    let status = response.status();
    (status, response.text().await.expect("a body"))
}

fn code_of(xml: &str) -> &str {
    xml.split("<Code>").nth(1).and_then(|rest| rest.split("</Code>").next()).unwrap_or_default()
}

#[tokio::test]
async fn a_correctly_signed_request_gets_a_web_identity_token_for_its_role() {
    let sim = sim().await;

    let (status, body) = get_web_identity_token(&sim, Signing::good()).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("<WebIdentityToken>"), "{body}");
    assert_eq!(sim.federation().tokens_issued(), 1);
}

#[tokio::test]
async fn an_unknown_access_key_or_a_wrong_session_token_is_refused_as_invalid_client_token_id() {
    let sim = sim().await;

    for signing in [
        Signing { key_id: "ASIANOBODYKNOWS", ..Signing::good() },
        Signing { session: Some("another-session"), ..Signing::good() },
        Signing { session: None, ..Signing::good() },
    ] {
        let (status, body) = get_web_identity_token(&sim, signing).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(code_of(&body), "InvalidClientTokenId", "{body}");
        assert!(body.starts_with("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"), "{body}");
        assert!(body.contains("The security token included in the request is invalid."), "{body}");
    }
    assert_eq!(sim.federation().tokens_issued(), 0);
}

#[tokio::test]
async fn a_wrong_secret_or_a_body_changed_after_signing_is_refused_as_signature_does_not_match() {
    let sim = sim().await;
    let changed = "Action=GetWebIdentityToken&Version=2011-06-15\
        &Audience.member.1=api%3A%2F%2FSomethingElse&SigningAlgorithm=RS256&DurationSeconds=300";

    for signing in
        [Signing { secret: "not/the/secret", ..Signing::good() }, Signing { sent_body: changed, ..Signing::good() }]
    {
        let (status, body) = get_web_identity_token(&sim, signing).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(code_of(&body), "SignatureDoesNotMatch", "{body}");
        assert!(body.contains("The request signature we calculated does not match"), "{body}");
    }
    assert_eq!(sim.federation().tokens_issued(), 0);
}

#[tokio::test]
async fn a_request_signed_more_than_five_minutes_off_is_refused_as_expired_or_not_yet_current() {
    let sim = sim().await;

    let late = Signing { at: SystemTime::now() - Duration::from_secs(6 * 60), ..Signing::good() };
    let (status, body) = get_web_identity_token(&sim, late).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code_of(&body), "SignatureDoesNotMatch", "{body}");
    assert!(body.contains("Signature expired: "), "{body}");

    let early = Signing { at: SystemTime::now() + Duration::from_secs(6 * 60), ..Signing::good() };
    let (status, body) = get_web_identity_token(&sim, early).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code_of(&body), "SignatureDoesNotMatch", "{body}");
    assert!(body.contains("Signature not yet current: "), "{body}");

    // Four minutes is within the skew STS allows.
    let skewed = Signing { at: SystemTime::now() - Duration::from_secs(4 * 60), ..Signing::good() };
    assert_eq!(get_web_identity_token(&sim, skewed).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_credential_scoped_to_another_service_is_refused() {
    let sim = sim().await;

    let (status, body) = get_web_identity_token(&sim, Signing { service: "iam", ..Signing::good() }).await;

    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code_of(&body), "SignatureDoesNotMatch", "{body}");
    assert!(body.contains("scoped to correct service: 'sts'"), "{body}");
}

#[tokio::test]
async fn an_unsigned_request_is_refused_as_missing_authentication_token() {
    let sim = sim().await;

    let response = http(&sim).post(sim.federation().sts_endpoint()).body(BODY).send().await.expect("STS answers");

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(code_of(&response.text().await.expect("a body")), "MissingAuthenticationToken");
}
