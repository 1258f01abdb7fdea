//! `azure_key_vault`: publishes the new secret as a new version of a Key Vault secret, in a second
//! vault too when one is given.

use std::collections::BTreeMap;

use serde::Serialize;
use url::Url;

use super::issues::Notes;
use super::read::{Need, Obj, Schemes};
use super::{Phase, StepConfig, StepKind, StepType, TypeConfig};

/// Key Vault content type when none is given.
pub const DEFAULT_CONTENT_TYPE: &str = "text/plain";
/// User tags on a Key Vault secret: Key Vault allows 15 and the rotator adds 3 of its own (key id,
/// application id, execution).
pub const MAX_KEY_VAULT_USER_TAGS: usize = 12;

pub(super) const TYPE: StepType = StepType {
    kind: StepKind::AzureKeyVault,
    name: "azure_key_vault",
    phase: Phase::Publish,
    takes_agent: false,
    config_fields: &[
        "vault_url",
        "secret_name",
        "secondary_vault_url",
        "secondary_secret_name",
        "content_type",
        "tags",
    ],
    env_field: None,
    read: |o, _agent, n| read(o, n).map(StepConfig::AzureKeyVault),
};

/// `azure_key_vault`: writes a new secret version, in a second vault too when one is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AzureKeyVaultConfig {
    /// `https://<vault>.vault.azure.net` (or a sovereign cloud's); https only, as Key Vault requires.
    #[serde(serialize_with = "super::ser_url")]
    pub vault_url: Url,
    /// 1 to 127 letters, digits and `-` (Key Vault's rule).
    pub secret_name: String,
    /// A second vault (another region, a DR copy), written after the first.
    #[serde(flatten)]
    pub secondary: Option<SecondaryVault>,
    pub content_type: String,
    /// Operator tags; the rotator adds its own (key id, application id, execution).
    pub tags: BTreeMap<String, String>,
}

/// The second vault of an `azure_key_vault` step. Its secret name defaults to the primary's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecondaryVault {
    #[serde(rename = "secondary_vault_url", serialize_with = "super::ser_url")]
    pub vault_url: Url,
    #[serde(rename = "secondary_secret_name")]
    pub secret_name: String,
}

impl TypeConfig for AzureKeyVaultConfig {
    fn describe(&self) -> String {
        let mut s = format!("Key Vault {}/{}", vault_name(&self.vault_url), self.secret_name);
        if let Some(second) = &self.secondary {
            s.push_str(&format!(" and {}/{}", vault_name(&second.vault_url), second.secret_name));
        }
        s
    }

    fn urls(&self) -> Vec<(&'static str, &Url)> {
        let mut urls = vec![("config.vault_url", &self.vault_url)];
        urls.extend(self.secondary.as_ref().map(|s| ("config.secondary_vault_url", &s.vault_url)));
        urls
    }
}

fn read(o: &Obj<'_>, n: &mut Notes) -> Option<AzureKeyVaultConfig> {
    let vault_url = o.url(n, "vault_url", Need::Required, Schemes::HttpsOnly);
    let secret_name = o.text(n, "secret_name", Need::Required, check_key_vault_secret_name);
    let secondary_url = o.url(n, "secondary_vault_url", Need::Optional, Schemes::HttpsOnly);
    let secondary_name = o.text(n, "secondary_secret_name", Need::Optional, check_key_vault_secret_name);
    for (field, url) in [("vault_url", &vault_url), ("secondary_vault_url", &secondary_url)] {
        if url.as_ref().is_some_and(|u| u.query().is_some()) {
            n.error(
                o.path(field),
                "must be the vault's address without a query, such as https://myvault.vault.azure.net",
            );
        }
    }
    if o.get("secondary_secret_name").is_some() && o.get("secondary_vault_url").is_none() {
        n.error(
            o.path("secondary_secret_name"),
            "given without secondary_vault_url: name the second vault, or remove it",
        );
    }
    let content_type = o.text(n, "content_type", Need::Optional, check_content_type);
    let tags = o.string_map(n, "tags", check_tag_name, check_tag_value);
    if tags.as_ref().is_some_and(|t| t.len() > MAX_KEY_VAULT_USER_TAGS) {
        n.error(
            o.path("tags"),
            format!("at most {MAX_KEY_VAULT_USER_TAGS} tags: Key Vault allows 15 and the rotator adds 3 of its own"),
        );
    }
    let (vault_url, secret_name) = (vault_url?, secret_name?);
    let secondary = secondary_url.map(|url| SecondaryVault {
        vault_url: url,
        secret_name: secondary_name.unwrap_or_else(|| secret_name.clone()),
    });
    if secondary.as_ref().is_some_and(|s| s.vault_url == vault_url && s.secret_name == secret_name) {
        n.error(o.path("secondary_vault_url"), "is the primary vault and secret again");
    }
    Some(AzureKeyVaultConfig {
        vault_url,
        secret_name,
        secondary,
        content_type: content_type.unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
        tags: tags.unwrap_or_default(),
    })
}

fn check_key_vault_secret_name(s: &str) -> Result<(), String> {
    let ok = (1..=127).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok { Ok(()) } else { Err("Key Vault secret names are 1 to 127 letters, digits and '-'".to_owned()) }
}

fn check_content_type(s: &str) -> Result<(), String> {
    if s.chars().count() > 255 { Err("at most 255 characters (Key Vault's limit)".to_owned()) } else { Ok(()) }
}

fn check_tag_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.chars().count() > 512 || s.chars().any(char::is_control) {
        Err("tag names are 1 to 512 characters, without control characters".to_owned())
    } else {
        Ok(())
    }
}

fn check_tag_value(s: &str) -> Result<(), String> {
    if s.chars().count() > 256 || s.chars().any(char::is_control) {
        Err("tag values are at most 256 characters, without control characters".to_owned())
    } else {
        Ok(())
    }
}

/// `myvault` of `https://myvault.vault.azure.net/`.
fn vault_name(url: &Url) -> &str {
    url.host_str().and_then(|h| h.split('.').next()).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use crate::domain::steps::test_support::*;

    #[test]
    fn key_vault_names_are_checked() {
        let e = errors(
            r#"[{"type": "azure_key_vault", "order": 2, "config": {"vault_url": "https://kv.vault.azure.net",
                "secret_name": "has_underscore", "secondary_secret_name": "x"}}]"#,
        );
        assert!(issue(&e, "config.secret_name").message.contains("1 to 127 letters, digits and '-'"));
        assert!(issue(&e, "config.secondary_secret_name").message.contains("without secondary_vault_url"));
    }
}
