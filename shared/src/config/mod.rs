//! Configuration: one TOML file, parsed once at start-up, failing fast with a message that names
//! the key. Unknown keys are refused. Secrets may come from the environment (and should); none is
//! ever printed back.
//!
//! Layer rule: configuration may import `domain`, `ports` and `error`; the adapters never see it
//! (wiring hands each its own settings), the use cases neither.
//!
//! ```toml
//! data_dir = "data"
//! listen = "127.0.0.1:8080"
//!
//! [schedules]
//! sync = "1h"
//! expiry_scan = "15m"
//! grace_cleanup = "1h"
//!
//! [integrations.contoso]
//! tenant_id = "…"
//! client_id = "…"
//! auth = "client_secret"          # client_secret | client_certificate | workload_identity | managed_identity | aws_federation
//! # client secret from $ROTATOR_CONTOSO_CLIENT_SECRET, or name another variable:
//! client_secret_env = "CONTOSO_SECRET"
//! # or keep it where entra-rotator rotates it itself (a `rotator_own_secret` step): a file private
//! # to its owner on one machine, or a Secrets Manager secret on AWS; read at every token request.
//! # client_secret_file = "/etc/entra-rotator/client-secret"
//! # client_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:entra-rotator-AbCdEf"
//!
//! [policies.default]
//! auto_rotate = true
//! grace_period = "30d"
//! steps_file = "steps/default.json"   # the seed's JSON step format
//!
//! # entra-rotator's own application, with a stored secret: this policy rotates it alone.
//! [policies.self]
//! applications = ["<contoso's client_id>"]
//! steps = [{ type = "rotator_own_secret", order = 10, config = { integration = "contoso" } }]
//! ```
//!
//! One file per table: `raw` is the file as written (and its TOML errors), `integration`,
//! `policy`, `alerts` and `http` turn their tables into what is used, and `env` is where the
//! environment is read. Each collects every error it finds, so one run names them all.

mod alerts;
mod env;
mod http;
mod integration;
mod policy;
mod raw;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::domain::Span;
use crate::domain::address::AddressPolicy;
use crate::domain::ids::ClientId;
use crate::domain::secret::SecretValue;
use crate::{Error, Result};

pub use crate::domain::integration::{AuthMethod, Credentials, IntegrationConfig};
pub use crate::ports::alerts::{WebhookFormat, WebhookSink};
pub use env::{Env, ProcessEnv};
pub use http::{ApiToken, DEFAULT_LISTEN, Role};
pub use integration::{DEFAULT_AUTHORITY_HOST, DEFAULT_GRAPH_BASE_URL};
pub use policy::{MAX_GRACE_PERIOD, MAX_SECRET_LIFETIME, MIN_SECRET_LIFETIME, PolicyConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedules {
    pub sync: Span,
    pub expiry_scan: Span,
    pub grace_cleanup: Span,
}

pub struct Config {
    /// The file it came from; relative paths in it are relative to its folder.
    pub source: PathBuf,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub schedules: Schedules,
    pub integrations: Vec<IntegrationConfig>,
    pub policies: Vec<PolicyConfig>,
    pub webhooks: Vec<WebhookSink>,
    /// Bearer tokens of the HTTP API, stored hashed.
    pub api_tokens: Vec<ApiToken>,
    /// Trusted by rollout steps and alert webhooks besides the system's roots.
    pub ca_certificate: Option<PathBuf>,
    /// Where outbound requests may go (`[outbound]`): checked here on every configured URL, and
    /// again by the clients on every address a name resolves to.
    pub outbound: AddressPolicy,
    /// The values of the environment variables that steps name (`signing_secret_env`,
    /// `bearer_token_env`), read once here.
    pub step_secrets: BTreeMap<String, SecretValue>,
}

impl Config {
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("rotator.db")
    }
    pub fn key_file_path(&self) -> PathBuf {
        self.data_dir.join("keys.json")
    }

    /// The policy for an application: the one that names it, else `default`.
    pub fn policy_for(&self, client_id: &ClientId) -> Option<&PolicyConfig> {
        self.policies
            .iter()
            .find(|p| p.applications.contains(client_id))
            .or_else(|| self.policies.iter().find(|p| p.policy.id.as_str() == "default"))
    }

    /// The policies, ready to look up by application.
    pub fn policy_set(&self) -> crate::domain::policy::PolicySet {
        crate::domain::policy::PolicySet::new(
            self.policies.iter().map(|p| (p.policy.clone(), p.applications.clone())).collect(),
        )
    }

    pub fn load(path: &Path, env: &dyn Env) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text, path, env)
    }

    /// Parses `text` as if read from `path`.
    pub fn parse(text: &str, path: &Path, env: &dyn Env) -> Result<Self> {
        let raw = raw::read(text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
        let mut errors = Vec::new();

        let data_dir = env
            .var("ROTATOR_DATA_DIR")
            .map(PathBuf::from)
            .or(raw.data_dir)
            .map(|p| resolve(&p))
            .unwrap_or_else(|| base.join("data"));
        let listen = http::listen(raw.listen, env, &mut errors);

        let schedules = Schedules {
            sync: raw.schedules.sync.unwrap_or(Span::from_secs(3600)),
            expiry_scan: raw.schedules.expiry_scan.unwrap_or(Span::from_secs(900)),
            grace_cleanup: raw.schedules.grace_cleanup.unwrap_or(Span::from_secs(3600)),
        };
        for (name, s) in [
            ("sync", schedules.sync),
            ("expiry_scan", schedules.expiry_scan),
            ("grace_cleanup", schedules.grace_cleanup),
        ] {
            if s.as_duration() < std::time::Duration::from_secs(1) {
                errors.push(format!("schedules.{name}: must be at least 1s"));
            }
        }

        let outbound = AddressPolicy::new(&raw.outbound.allow, &raw.outbound.deny).unwrap_or_else(|e| {
            errors.push(format!("outbound.{e}"));
            AddressPolicy::default()
        });

        let mut integrations = Vec::new();
        for (name, ri) in raw.integrations {
            match integration::integration(&name, ri, env, &resolve, &outbound) {
                Ok(i) => integrations.push(i),
                Err(mut e) => errors.append(&mut e),
            }
        }

        let mut policies = Vec::new();
        for (name, rp) in raw.policies {
            match policy::policy(&name, rp, &resolve, &outbound) {
                Ok(p) => policies.push(p),
                Err(mut e) => errors.append(&mut e),
            }
        }
        policy::check_one_policy_per_application(&policies, &mut errors);
        policy::check_step_identities(&policies, &integrations, &mut errors);
        policy::check_own_secret_steps(&policies, &integrations, &mut errors);
        let webhooks = alerts::webhooks(raw.alerts.webhooks, env, &outbound, &mut errors);
        let step_secrets = policy::step_secrets(&policies, env, &mut errors);
        let api_tokens = http::api_tokens(raw.http.tokens, &mut errors);
        // A CA file that is not there fails every TLS client at start (or worse, at the first
        // step): refused here, so `config check` says so.
        let ca_certificate = raw.ca_certificate.map(|p| resolve(&p));
        let cas = std::iter::once(("ca_certificate".to_owned(), ca_certificate.as_ref())).chain(
            integrations.iter().map(|i| (format!("integrations.{}.ca_certificate", i.id), i.ca_certificate.as_ref())),
        );
        for (field, path) in cas {
            if let Some(path) = path
                && !path.is_file()
            {
                errors.push(format!("{field}: {} is not a readable file", path.display()));
            }
        }

        if !errors.is_empty() {
            return Err(Error::Config(format!("{}:\n  {}", path.display(), errors.join("\n  "))));
        }
        Ok(Config {
            source: path.to_path_buf(),
            data_dir,
            listen,
            schedules,
            integrations,
            policies,
            webhooks,
            api_tokens,
            ca_certificate,
            outbound,
            step_secrets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    pub(super) const MINIMAL: &str = r#"
[integrations.contoso]
tenant_id = "aaaaaaaa-0000-0000-0000-000000000001"
client_id = "bbbbbbbb-0000-0000-0000-000000000002"
auth = "client_secret"
"#;

    pub(super) fn parse(text: &str, env: &BTreeMap<String, String>) -> Result<Config> {
        Config::parse(text, Path::new("/etc/rotator/rotator.toml"), env)
    }

    pub(super) fn err(text: &str, env: &BTreeMap<String, String>) -> String {
        match parse(text, env) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rotator.toml");
        let c = Config::load(
            &path,
            &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "s3cr3t-value"), ("ROTATION_WEBHOOK_KEY", "whsec_abc")]),
        )
        .unwrap();
        assert_eq!(c.integrations.len(), 1);
        assert_eq!(c.policies.len(), 3);
        let payroll = c.policies.iter().find(|p| p.policy.id.as_str() == "payroll").unwrap();
        assert_eq!(payroll.policy.steps.len(), 4, "the runbook: Key Vault, App Service, health, webhook");
        assert!(!payroll.policy.manual_delivery && payroll.policy.delivery_problem().is_none());
        assert!(crate::wiring::steps_this_build_cannot_run(&c).is_empty(), "every example step runs");
        assert_eq!(payroll.policy.grace_period, Span::from_days(30));
        assert_eq!(c.schedules.expiry_scan, Span::from_secs(900));
    }

    #[test]
    fn a_step_signing_in_as_an_integration_that_is_not_configured_is_refused() {
        let text = format!(
            "{MINIMAL}\n[policies.default]\ndelivery = \"manual\"\n[[policies.default.steps]]\ntype = \"azure_key_vault\"\norder = 1\nconfig = {{ vault_url = \"https://kv.vault.azure.net\", secret_name = \"s\", identity = \"ops\" }}\n"
        );
        let e = err(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")]));
        assert!(e.contains("config.identity") && e.contains("no integration `ops`") && e.contains("contoso"), "{e}");
        let ok = text.replace("identity = \"ops\"", "identity = \"contoso\"");
        assert!(parse(&ok, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")])).is_ok());
    }

    #[test]
    fn defaults_fill_what_is_not_written() {
        let c = parse(MINIMAL, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")])).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/etc/rotator/data"));
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.schedules.sync, Span::from_secs(3600));
        assert_eq!(c.integrations[0].graph_base_url.as_str(), "https://graph.microsoft.com/v1.0");
        assert_eq!(c.integrations[0].resource_manager_url.as_str(), "https://management.azure.com/");
    }

    #[test]
    fn errors_never_quote_a_secret() {
        // A syntax error on the secret's own line, and a semantic error elsewhere.
        let broken =
            MINIMAL.replace("auth = \"client_secret\"", "auth = \"client_secret\"\nclient_secret = \"hunter2-secret");
        let e = err(&broken, &env(&[]));
        assert!(!e.contains("hunter2"), "{e}");
        let bad_listen = format!(
            "listen = \"nowhere\"\n{}",
            MINIMAL.replace("auth = \"client_secret\"", "auth = \"client_secret\"\nclient_secret = \"hunter2-secret\"")
        );
        let e = err(&bad_listen, &env(&[]));
        assert!(e.contains("listen") && !e.contains("hunter2"), "{e}");
        let webhook = format!("{MINIMAL}\n[[alerts.webhooks]]\nurl = \"notaurl-token-abc\"\n");
        let e = err(&webhook, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")]));
        assert!(e.contains("alerts.webhooks[0].url") && !e.contains("token-abc"), "{e}");
    }

    #[test]
    fn the_policy_for_an_application_is_the_one_naming_it_else_default() {
        let text = format!(
            "{MINIMAL}\n[policies.default]\n[policies.payroll]\napplications = [\"cccccccc-0000-0000-0000-000000000003\"]\n"
        );
        let c = parse(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")])).unwrap();
        let named = ClientId::parse("cccccccc-0000-0000-0000-000000000003").unwrap();
        let other = ClientId::parse("dddddddd-0000-0000-0000-000000000004").unwrap();
        assert_eq!(c.policy_for(&named).unwrap().policy.id.as_str(), "payroll");
        assert_eq!(c.policy_for(&other).unwrap().policy.id.as_str(), "default");
    }

    #[test]
    fn outbound_urls_at_forbidden_addresses_are_refused_naming_the_field_and_the_rule() {
        let secret = env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")]);
        let with =
            |line: &str| MINIMAL.replace("auth = \"client_secret\"", &format!("auth = \"client_secret\"\n{line}"));
        for (text, field) in [
            (with("authority_host = \"https://169.254.169.254\""), "integrations.contoso.authority_host"),
            (with("graph_base_url = \"https://[::ffff:169.254.169.254]/v1.0\""), "integrations.contoso.graph_base_url"),
            (
                with("graph_base_url = \"https://metadata.google.internal./v1.0\""),
                "integrations.contoso.graph_base_url",
            ),
            (
                format!("{MINIMAL}\n[[alerts.webhooks]]\nurl = \"http://2852039166/hook-token-abc\"\n"),
                "alerts.webhooks[0].url",
            ),
            (
                format!(
                    "{MINIMAL}\n[[policies.default.steps]]\ntype = \"webhook\"\norder = 10\nconfig = {{ url = \"https://0xA9FEA9FE/token-abc\" }}\n"
                ),
                "config.url",
            ),
        ] {
            let e = err(&text, &secret);
            assert!(e.contains(field) && e.contains("outbound address policy"), "{field}: {e}");
            assert!(!e.contains("token-abc"), "the URL was quoted: {e}");
        }
    }

    #[test]
    fn outbound_allow_admits_the_simulated_tenant_on_loopback() {
        let secret = env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")]);
        let text = MINIMAL.replace(
            "auth = \"client_secret\"",
            "auth = \"client_secret\"\nauthority_host = \"https://127.0.0.1:8443\"\ngraph_base_url = \"https://localhost:8443/v1.0\"",
        );
        let e = err(&text, &secret);
        assert!(e.contains("loopback"), "{e}");
        let allowed = format!("[outbound]\nallow = [\"127.0.0.1\", \"localhost\"]\n{text}");
        let c = parse(&allowed, &secret).unwrap();
        assert!(c.outbound.check_url(&url::Url::parse("https://127.0.0.1:1/").unwrap()).is_ok());
        assert!(c.outbound.check_url(&url::Url::parse("http://169.254.169.254/").unwrap()).is_err());
        let bad = format!("[outbound]\nallow = [\"not a host!\"]\n{MINIMAL}");
        assert!(err(&bad, &secret).contains("outbound.allow[0]"));
        let deny = format!(
            "[outbound]\ndeny = [\"10.0.0.0/8\"]\n{MINIMAL}\n[[alerts.webhooks]]\nurl = \"https://10.1.1.1/h\"\n"
        );
        assert!(err(&deny, &secret).contains("deny"));
    }
}
