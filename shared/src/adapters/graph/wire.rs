//! The JSON shapes Microsoft Graph and the token endpoint answer with, and their translation into the
//! Directory port's types. Only what entra-rotator reads is declared; unknown fields are ignored, as
//! Graph adds properties over time.

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::ids::{ClientId, KeyId};
use crate::ports::directory::{DirectoryObject, KeyCredentialInfo, Page, PasswordCredentialInfo};

/// One page of a collection: `value` plus the paging annotations.
#[derive(Deserialize)]
pub(super) struct CollectionPage<Id> {
    #[serde(default = "Vec::new")]
    pub value: Vec<ObjectJson<Id>>,
    #[serde(rename = "@odata.nextLink")]
    pub next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    pub delta_link: Option<String>,
}

/// An application or service principal as Graph lists it. Every property is optional because a
/// delta page lists only what changed (and `@removed` objects carry nothing but their id).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ObjectJson<Id> {
    pub id: Id,
    pub app_id: Option<ClientId>,
    pub display_name: Option<String>,
    pub sign_in_audience: Option<String>,
    pub password_credentials: Option<Vec<PasswordJson>>,
    pub key_credentials: Option<Vec<KeyJson>>,
    #[serde(rename = "@removed")]
    pub removed: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PasswordJson {
    pub key_id: KeyId,
    pub display_name: Option<String>,
    pub hint: Option<String>,
    pub start_date_time: Option<String>,
    pub end_date_time: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct KeyJson {
    pub key_id: KeyId,
    pub display_name: Option<String>,
    pub custom_key_identifier: Option<String>,
    pub usage: Option<String>,
    pub start_date_time: Option<String>,
    pub end_date_time: Option<String>,
}

/// The answer to `addPassword`. It holds the only copy of the secret text Graph will ever give, so
/// it has no `Debug` and its text moves straight into a `SecretValue`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AddedPasswordJson {
    pub key_id: KeyId,
    pub secret_text: Option<String>,
    pub hint: Option<String>,
    pub display_name: Option<String>,
    pub start_date_time: Option<String>,
    pub end_date_time: Option<String>,
}

/// Graph's error body: `{"error":{"code":"…","message":"…"}}`.
#[derive(Deserialize, Default)]
pub(super) struct GraphErrorBody {
    #[serde(default)]
    pub error: GraphErrorDetail,
}

#[derive(Deserialize, Default)]
pub(super) struct GraphErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// The token endpoint's OAuth error body: `{"error":"invalid_client","error_description":"AADSTS…",
/// "error_codes":[7000215]}`.
#[derive(Deserialize, Default)]
pub(super) struct TokenErrorBody {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub error_description: String,
    #[serde(default)]
    pub error_codes: Vec<u64>,
}

/// A Graph timestamp (`2025-01-31T10:00:00Z`, with or without a fraction).
pub(super) fn timestamp(field: &'static str, value: Option<&str>) -> Result<Option<OffsetDateTime>, String> {
    value
        .map(|v| OffsetDateTime::parse(v, &Rfc3339).map_err(|e| format!("{field} {v:?} is not an RFC 3339 time: {e}")))
        .transpose()
}

impl PasswordJson {
    fn into_info(self) -> Result<PasswordCredentialInfo, String> {
        Ok(PasswordCredentialInfo {
            key_id: self.key_id,
            start: timestamp("startDateTime", self.start_date_time.as_deref())?,
            end: timestamp("endDateTime", self.end_date_time.as_deref())?,
            display_name: self.display_name,
            hint: self.hint,
        })
    }
}

impl KeyJson {
    fn into_info(self) -> Result<KeyCredentialInfo, String> {
        Ok(KeyCredentialInfo {
            key_id: self.key_id,
            start: timestamp("startDateTime", self.start_date_time.as_deref())?,
            end: timestamp("endDateTime", self.end_date_time.as_deref())?,
            display_name: self.display_name,
            thumbprint: self.custom_key_identifier,
            usage: self.usage,
        })
    }
}

impl<Id> ObjectJson<Id> {
    /// `delta` says whether the object came from a delta page, where a missing credential collection
    /// means "unchanged" (`None`); in a plain listing with `$select` Graph always includes it, so a
    /// missing one is taken as empty.
    pub(super) fn into_object(self, delta: bool) -> Result<DirectoryObject<Id>, String> {
        fn missing<T>(delta: bool) -> Option<Vec<T>> {
            if delta { None } else { Some(Vec::new()) }
        }
        let password_credentials = match self.password_credentials {
            Some(list) => Some(list.into_iter().map(PasswordJson::into_info).collect::<Result<Vec<_>, _>>()?),
            None => missing(delta),
        };
        let key_credentials = match self.key_credentials {
            Some(list) => Some(list.into_iter().map(KeyJson::into_info).collect::<Result<Vec<_>, _>>()?),
            None => missing(delta),
        };
        Ok(DirectoryObject {
            id: self.id,
            client_id: self.app_id,
            display_name: self.display_name,
            sign_in_audience: self.sign_in_audience,
            password_credentials,
            key_credentials,
            removed: self.removed.is_some(),
        })
    }
}

impl<Id> CollectionPage<Id> {
    pub(super) fn into_page(self, delta: bool) -> Result<Page<DirectoryObject<Id>>, String> {
        Ok(Page {
            items: self.value.into_iter().map(|o| o.into_object(delta)).collect::<Result<Vec<_>, _>>()?,
            next_link: self.next_link,
            delta_link: self.delta_link,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::AppObjectId;

    const DELTA_PAGE: &str = r#"{
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#applications",
        "@odata.deltaLink": "https://graph.microsoft.com/v1.0/applications/delta?$deltatoken=abc",
        "value": [
            { "id": "11111111-1111-1111-1111-111111111111", "displayName": "renamed only" },
            { "id": "22222222-2222-2222-2222-222222222222", "@removed": { "reason": "deleted" } },
            { "id": "33333333-3333-3333-3333-333333333333", "appId": "44444444-4444-4444-4444-444444444444",
              "passwordCredentials": [ { "keyId": "55555555-5555-5555-5555-555555555555", "hint": "abC",
                  "displayName": "rotator:1", "startDateTime": "2025-01-01T00:00:00Z",
                  "endDateTime": "2026-01-01T00:00:00.1234567Z", "secretText": null, "customKeyIdentifier": null } ],
              "keyCredentials": [] }
        ]
    }"#;

    #[test]
    fn in_a_delta_page_a_missing_collection_means_unchanged_and_removed_objects_are_flagged() {
        let page: CollectionPage<AppObjectId> = serde_json::from_str(DELTA_PAGE).unwrap();
        let page = page.into_page(true).unwrap();
        assert_eq!(
            page.delta_link.as_deref(),
            Some("https://graph.microsoft.com/v1.0/applications/delta?$deltatoken=abc")
        );
        assert_eq!(page.next_link, None);
        let [renamed, removed, changed] = page.items.as_slice() else { panic!("three items") };
        assert_eq!(renamed.display_name.as_deref(), Some("renamed only"));
        assert_eq!(renamed.password_credentials, None);
        assert_eq!(renamed.key_credentials, None);
        assert!(!renamed.removed);
        assert!(removed.removed);
        let passwords = changed.password_credentials.as_ref().unwrap();
        assert_eq!(passwords[0].hint.as_deref(), Some("abC"));
        assert_eq!(passwords[0].end.unwrap().year(), 2026);
        assert_eq!(changed.key_credentials, Some(Vec::new()));
    }

    #[test]
    fn in_a_plain_listing_a_missing_collection_is_empty() {
        let page: CollectionPage<AppObjectId> = serde_json::from_str(DELTA_PAGE).unwrap();
        let page = page.into_page(false).unwrap();
        assert_eq!(page.items[0].password_credentials, Some(Vec::new()));
    }

    #[test]
    fn an_unreadable_date_is_reported_with_its_field() {
        let text = DELTA_PAGE.replace("2025-01-01T00:00:00Z", "yesterday");
        let page: CollectionPage<AppObjectId> = serde_json::from_str(&text).unwrap();
        let error = page.into_page(true).unwrap_err();
        assert!(error.contains("startDateTime"), "{error}");
    }
}
