//! `azure_key_vault`: publishes the new secret as a new version of a Key Vault secret, in a second
//! vault too when one is given.

use std::collections::BTreeMap;

use serde::Serialize;
use url::Url;

use super::issues::Notes;
use super::read::{Need, Obj, Schemes};
use super::{Phase, StepConfig, StepKind, StepType, TypeConfig};
use crate::domain::ids::IntegrationId;

/// Key Vault content type when none is given.
pub const DEFAULT_CONTENT_TYPE: &str = "text/plain";
/// The tags the rotator puts on every version it writes: that it manages the secret, the new
/// credential's key id, the application (client id) and the execution. A redelivered step finds the
/// version it already wrote by the execution's tag.
pub const KEY_VAULT_OWN_TAGS: [&str; 4] =
    ["entra-rotator-managed", "entra-rotator-key-id", "entra-rotator-application", "entra-rotator-execution"];
/// User tags on a Key Vault secret: Key Vault allows 15 and the rotator adds its own
/// ([`KEY_VAULT_OWN_TAGS`]).
pub const MAX_KEY_VAULT_USER_TAGS: usize = 15 - KEY_VAULT_OWN_TAGS.len();

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
        "identity",
        "secondary_identity",
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
    /// Operator tags; the rotator adds its own ([`KEY_VAULT_OWN_TAGS`]).
    pub tags: BTreeMap<String, String>,
    /// The integration whose Entra identity writes to the primary vault; the rotated credential's
    /// own integration when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<IntegrationId>,
}

/// The second vault of an `azure_key_vault` step. Its secret name defaults to the primary's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecondaryVault {
    #[serde(rename = "secondary_vault_url", serialize_with = "super::ser_url")]
    pub vault_url: Url,
    #[serde(rename = "secondary_secret_name")]
    pub secret_name: String,
    /// The integration whose identity writes to this vault; the primary's when absent.
    #[serde(rename = "secondary_identity", skip_serializing_if = "Option::is_none")]
    pub identity: Option<IntegrationId>,
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

    fn identities(&self) -> Vec<(&'static str, &IntegrationId)> {
        let mut named: Vec<_> = self.identity.iter().map(|i| ("config.identity", i)).collect();
        named.extend(
            self.secondary.as_ref().and_then(|s| s.identity.as_ref()).map(|i| ("config.secondary_identity", i)),
        );
        named
    }
}

impl AzureKeyVaultConfig {
    /// The vaults to write, in order: the primary, then the secondary. Each with the identity that
    /// writes it (`None`: the rotated credential's integration).
    pub fn vaults(&self) -> Vec<VaultTarget<'_>> {
        let mut out = vec![VaultTarget {
            vault_url: &self.vault_url,
            secret_name: &self.secret_name,
            identity: self.identity.as_ref(),
        }];
        out.extend(self.secondary.as_ref().map(|s| VaultTarget {
            vault_url: &s.vault_url,
            secret_name: &s.secret_name,
            identity: s.identity.as_ref().or(self.identity.as_ref()),
        }));
        out
    }
}

/// One vault an `azure_key_vault` step writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaultTarget<'a> {
    pub vault_url: &'a Url,
    pub secret_name: &'a str,
    pub identity: Option<&'a IntegrationId>,
}

impl VaultTarget<'_> {
    /// `myvault` of `https://myvault.vault.azure.net/`, or the last path segment of a vault served
    /// under a path (a private endpoint's gateway, the simulation).
    pub fn vault_name(&self) -> &str {
        vault_name(self.vault_url)
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
    let identity = o.text(n, "identity", Need::Optional, check_identity).and_then(|s| IntegrationId::parse(&s).ok());
    let secondary_identity =
        o.text(n, "secondary_identity", Need::Optional, check_identity).and_then(|s| IntegrationId::parse(&s).ok());
    if o.get("secondary_identity").is_some() && o.get("secondary_vault_url").is_none() {
        n.error(o.path("secondary_identity"), "given without secondary_vault_url: name the second vault, or remove it");
    }
    if let Some(t) = &tags {
        for own in KEY_VAULT_OWN_TAGS.iter().filter(|own| t.contains_key(**own)) {
            n.error(o.path("tags"), format!("`{own}` is a tag entra-rotator writes itself"));
        }
    }
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
        identity: secondary_identity,
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
        identity,
    })
}

/// An `identity` names a configured integration (checked against the configuration by `config check`).
pub(super) fn check_identity(s: &str) -> Result<(), String> {
    IntegrationId::parse(s).map(|_| ()).map_err(|e| format!("names an integration of the configuration: {e}"))
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

/// `myvault` of `https://myvault.vault.azure.net/`; the last path segment when the vault is served
/// under a path (`https://gateway.example/vaults/myvault`).
fn vault_name(url: &Url) -> &str {
    match url.path_segments().and_then(|mut s| s.rfind(|seg| !seg.is_empty())) {
        Some(last) => last,
        None => url.host_str().and_then(|h| h.split('.').next()).unwrap_or(""),
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::steps::StepConfig;
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

    #[test]
    fn each_vault_is_written_by_the_identity_it_names_else_the_primarys_else_the_credentials() {
        let p = plan(
            r#"[{"type": "azure_key_vault", "order": 1, "config": {"vault_url": "https://kv.vault.azure.net",
                "secret_name": "s", "secondary_vault_url": "https://kv-dr.vault.azure.net", "identity": "ops"}}]"#,
        );
        let StepConfig::AzureKeyVault(cfg) = &p.steps[0].config else { panic!() };
        let vaults = cfg.vaults();
        assert_eq!(vaults.len(), 2);
        assert_eq!(vaults[0].vault_name(), "kv");
        assert_eq!(vaults[1].vault_name(), "kv-dr");
        assert_eq!(vaults[1].secret_name, "s", "the secondary's name defaults to the primary's");
        assert_eq!(vaults[1].identity.map(|i| i.as_str()), Some("ops"), "the primary's identity");
        assert_eq!(p.steps[0].identities().len(), 1);

        let p = plan(
            r#"[{"type": "azure_key_vault", "order": 1, "config": {"vault_url": "https://gw.example.com/vaults/kv-a",
                "secret_name": "s"}}]"#,
        );
        let StepConfig::AzureKeyVault(cfg) = &p.steps[0].config else { panic!() };
        assert_eq!(cfg.vaults()[0].vault_name(), "kv-a", "a vault served under a path is named by it");
        assert!(cfg.vaults()[0].identity.is_none(), "the rotated credential's own integration");
    }

    #[test]
    fn the_rotators_own_tags_and_a_bad_identity_are_refused() {
        let e = errors(
            r#"[{"type": "azure_key_vault", "order": 1, "config": {"vault_url": "https://kv.vault.azure.net",
                "secret_name": "s", "identity": "Not An Id", "secondary_identity": "ops",
                "tags": {"entra-rotator-execution": "x"}}}]"#,
        );
        assert!(issue(&e, "config.identity").message.contains("integration"));
        assert!(issue(&e, "config.secondary_identity").message.contains("without secondary_vault_url"));
        assert!(issue(&e, "config.tags").message.contains("writes itself"));
    }
}
