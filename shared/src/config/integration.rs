//! The `[integrations.<name>]` tables: one Entra tenant each, its sign-in method and the secret
//! or file that method needs (the environment winning over the file), and the https hosts of its
//! authority and Graph.

use std::path::{Path, PathBuf};

use super::Env;
use super::raw::RawIntegration;
use crate::domain::address::AddressPolicy;
use crate::domain::ids::{ClientId, IntegrationId, TenantId};
use crate::domain::integration::{AuthMethod, Credentials, IntegrationConfig, SecretArn, SecretPlace};
use crate::domain::secret::SecretValue;

pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
pub const DEFAULT_GRAPH_BASE_URL: &str = "https://graph.microsoft.com/v1.0";
pub const DEFAULT_RESOURCE_MANAGER_URL: &str = "https://management.azure.com";

/// The integration `name` as configured, or every error found in its table.
pub(super) fn integration(
    name: &str,
    r: RawIntegration,
    env: &dyn Env,
    resolve: &dyn Fn(&Path) -> PathBuf,
    addresses: &AddressPolicy,
) -> std::result::Result<IntegrationConfig, Vec<String>> {
    let at = format!("integrations.{name}");
    let mut errors = Vec::new();
    let id = IntegrationId::parse(name).map_err(|e| errors.push(format!("{at}: {e}"))).ok();
    let tenant = TenantId::parse(&r.tenant_id).map_err(|e| errors.push(format!("{at}.tenant_id: {e}"))).ok();
    let client_id = ClientId::parse(&r.client_id).map_err(|e| errors.push(format!("{at}.client_id: {e}"))).ok();
    let url_field = |field: &str, v: Option<String>, default: &str, errors: &mut Vec<String>| {
        let text = v.unwrap_or_else(|| default.to_owned());
        match url::Url::parse(&text) {
            // The integration's own client secret is posted to the authority: never to loopback or
            // the metadata service unless `[outbound] allow` says so.
            Ok(u) if u.scheme() == "https" => match addresses.check_url(&u) {
                Ok(()) => Some(u),
                Err(refusal) => {
                    errors.push(format!("{at}.{field}: {refusal}"));
                    None
                }
            },
            Ok(_) => {
                errors.push(format!("{at}.{field}: must be https (the Entra and Graph clients refuse plain http)"));
                None
            }
            Err(e) => {
                errors.push(format!("{at}.{field}: {e}"));
                None
            }
        }
    };
    let authority_host = url_field("authority_host", r.authority_host, DEFAULT_AUTHORITY_HOST, &mut errors);
    let graph_base_url = url_field("graph_base_url", r.graph_base_url, DEFAULT_GRAPH_BASE_URL, &mut errors);
    let resource_manager_url =
        url_field("resource_manager_url", r.resource_manager_url, DEFAULT_RESOURCE_MANAGER_URL, &mut errors);

    // Fields that belong to another method are a mistake worth naming.
    let given: [(&str, bool, AuthMethod); 11] = [
        ("client_secret", r.client_secret.is_some(), AuthMethod::ClientSecret),
        ("client_secret_env", r.client_secret_env.is_some(), AuthMethod::ClientSecret),
        ("client_secret_file", r.client_secret_file.is_some(), AuthMethod::ClientSecret),
        ("client_secret_arn", r.client_secret_arn.is_some(), AuthMethod::ClientSecret),
        ("certificate_path", r.certificate_path.is_some(), AuthMethod::ClientCertificate),
        ("certificate_password_env", r.certificate_password_env.is_some(), AuthMethod::ClientCertificate),
        ("federated_token_file", r.federated_token_file.is_some(), AuthMethod::WorkloadIdentity),
        ("managed_identity_client_id", r.managed_identity_client_id.is_some(), AuthMethod::ManagedIdentity),
        ("aws_federation_audience", r.aws_federation_audience.is_some(), AuthMethod::AwsFederation),
        ("aws_region", r.aws_region.is_some(), AuthMethod::AwsFederation),
        ("sts_endpoint_url", r.sts_endpoint_url.is_some(), AuthMethod::AwsFederation),
    ];
    for (field, present, method) in given {
        if present && method != r.auth {
            errors.push(format!(
                "{at}.{field}: only used with auth = \"{}\", not \"{}\"",
                method.as_str(),
                r.auth.as_str()
            ));
        }
    }

    let env_name = format!("ROTATOR_{}_CLIENT_SECRET", name.to_ascii_uppercase().replace('-', "_"));
    let credentials = match r.auth {
        AuthMethod::ClientSecret if r.client_secret_file.is_some() || r.client_secret_arn.is_some() => {
            let inline =
                [("client_secret", r.client_secret.is_some()), ("client_secret_env", r.client_secret_env.is_some())];
            let place = (r.client_secret_file.as_deref(), r.client_secret_arn.as_deref());
            stored_secret(&at, inline, place, env, &env_name, resolve, &mut errors)
        }
        AuthMethod::ClientSecret => {
            // The environment wins over the file, so a file with a placeholder can be committed.
            let from_named = r.client_secret_env.as_ref().and_then(|v| env.var(v).map(|s| (s, format!("${v}"))));
            let found = from_named
                .or_else(|| env.var(&env_name).map(|s| (s, format!("${env_name}"))))
                .or_else(|| r.client_secret.clone().map(|s| (s, "the configuration file".to_owned())));
            match found {
                Some((secret, source)) => Some(Credentials::ClientSecret { secret: SecretValue::new(secret), source }),
                None => {
                    let named = r.client_secret_env.as_deref().map(|v| format!("${v} or ")).unwrap_or_default();
                    errors.push(format!("{at}: auth = \"client_secret\" needs a secret: set {named}${env_name}"));
                    None
                }
            }
        }
        AuthMethod::ClientCertificate => match r.certificate_path {
            Some(p) => Some(Credentials::ClientCertificate {
                path: resolve(&p),
                password: r.certificate_password_env.as_ref().and_then(|v| env.var(v)).map(SecretValue::new),
            }),
            None => {
                errors.push(format!("{at}.certificate_path: missing (needed with auth = \"client_certificate\")"));
                None
            }
        },
        AuthMethod::WorkloadIdentity => {
            match r
                .federated_token_file
                .map(|p| resolve(&p))
                .or_else(|| env.var("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from))
            {
                Some(token_file) => Some(Credentials::WorkloadIdentity { token_file }),
                None => {
                    errors.push(format!(
                        "{at}.federated_token_file: missing, and $AZURE_FEDERATED_TOKEN_FILE is not set"
                    ));
                    None
                }
            }
        }
        AuthMethod::AwsFederation => {
            let endpoint = r.sts_endpoint_url.clone().filter(|u| {
                let ok = url::Url::parse(u).is_ok_and(|u| u.scheme() == "https");
                if !ok {
                    errors.push(format!("{at}.sts_endpoint_url: must be an https URL"));
                }
                ok
            });
            Some(Credentials::AwsFederation {
                audience: r
                    .aws_federation_audience
                    .clone()
                    .unwrap_or_else(|| crate::domain::integration::ENTRA_TOKEN_EXCHANGE_AUDIENCE.to_owned()),
                region: r.aws_region.clone(),
                sts_endpoint: endpoint,
            })
        }
        AuthMethod::ManagedIdentity => match r.managed_identity_client_id.as_deref().map(ClientId::parse).transpose() {
            Ok(client_id) => Some(Credentials::ManagedIdentity { client_id }),
            Err(e) => {
                errors.push(format!("{at}.managed_identity_client_id: {e}"));
                None
            }
        },
    };

    match (id, tenant, client_id, credentials, authority_host, graph_base_url, resource_manager_url) {
        (
            Some(id),
            Some(tenant),
            Some(client_id),
            Some(credentials),
            Some(authority_host),
            Some(graph_base_url),
            Some(resource_manager_url),
        ) if errors.is_empty() => Ok(IntegrationConfig {
            id,
            tenant,
            client_id,
            display_name: r.display_name,
            enabled: r.enabled,
            credentials,
            authority_host,
            graph_base_url,
            resource_manager_url,
            ca_certificate: r.ca_certificate.map(|p| resolve(&p)),
        }),
        _ => Err(errors),
    }
}

/// The stored-secret fallback: where the secret is kept (one place, and nothing else giving a
/// secret, or the rotator would rotate one and sign in with another). A file must be readable by
/// its owner only and hold a secret now; it is read again at every token request.
fn stored_secret(
    at: &str,
    inline: [(&str, bool); 2],
    place: (Option<&Path>, Option<&str>),
    env: &dyn Env,
    env_name: &str,
    resolve: &dyn Fn(&Path) -> PathBuf,
    errors: &mut Vec<String>,
) -> Option<Credentials> {
    let before = errors.len();
    for (field, present) in inline {
        if present {
            errors.push(format!(
                "{at}.{field}: the secret is kept in client_secret_file or client_secret_arn; give only one of them"
            ));
        }
    }
    if env.var(env_name).is_some() {
        errors.push(format!(
            "{at}: ${env_name} is set, but the secret is kept in client_secret_file or client_secret_arn (which \
             entra-rotator rotates); unset ${env_name}"
        ));
    }
    let place = match place {
        (Some(_), Some(_)) => {
            errors.push(format!("{at}: give client_secret_file (one machine) or client_secret_arn (AWS), not both"));
            None
        }
        (Some(file), None) => {
            let path = resolve(file);
            match check_secret_file(&path) {
                Ok(()) => Some(SecretPlace::File(path)),
                Err(why) => {
                    errors.push(format!("{at}.client_secret_file: {why}"));
                    None
                }
            }
        }
        (None, Some(arn)) => match SecretArn::parse(arn) {
            Ok(arn) => Some(SecretPlace::SecretsManager(arn)),
            Err(why) => {
                errors.push(format!("{at}.client_secret_arn: {why}"));
                None
            }
        },
        (None, None) => None,
    };
    place.filter(|_| errors.len() == before).map(|place| Credentials::StoredClientSecret { place })
}

/// Why the secret file cannot be used as it is: missing, readable by others, or empty. Never quotes it.
fn check_secret_file(path: &Path) -> std::result::Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{} has mode {mode:o}: others on this machine can read the secret; chmod 600 it",
                path.display()
            ));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.trim_end_matches(['\r', '\n']).is_empty() {
        return Err(format!("{} is empty: write the client secret into it", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{MINIMAL, env, err, parse};

    #[test]
    fn the_environment_overrides_the_file_and_no_secret_is_shown_back() {
        let text =
            MINIMAL.replace("auth = \"client_secret\"", "auth = \"client_secret\"\nclient_secret = \"from-the-file\"");
        let c = parse(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "from-the-env")])).unwrap();
        let Credentials::ClientSecret { secret, source } = &c.integrations[0].credentials else { panic!() };
        assert_eq!(secret.expose(), "from-the-env");
        assert_eq!(source, "$ROTATOR_CONTOSO_CLIENT_SECRET");
        let shown = c.integrations[0].credentials.describe();
        assert!(!shown.contains("from-the-env") && !shown.contains("from-the-file"), "{shown}");
        let named =
            MINIMAL.replace("auth = \"client_secret\"", "auth = \"client_secret\"\nclient_secret_env = \"MY_SECRET\"");
        let c = parse(&named, &env(&[("MY_SECRET", "v")])).unwrap();
        assert!(c.integrations[0].credentials.describe().contains("$MY_SECRET"));
    }

    #[test]
    fn a_missing_secret_names_the_variables_to_set() {
        let e = err(MINIMAL, &env(&[]));
        assert!(e.contains("integrations.contoso") && e.contains("$ROTATOR_CONTOSO_CLIENT_SECRET"), "{e}");
    }

    #[test]
    fn a_field_of_another_auth_method_is_named() {
        let text =
            MINIMAL.replace("auth = \"client_secret\"", "auth = \"managed_identity\"\ncertificate_path = \"c.pem\"");
        let e = err(&text, &env(&[]));
        assert!(e.contains("integrations.contoso.certificate_path") && e.contains("client_certificate"), "{e}");
    }

    #[test]
    fn plain_http_graph_is_refused() {
        let text = MINIMAL.replace(
            "auth = \"client_secret\"",
            "auth = \"client_secret\"\ngraph_base_url = \"http://localhost/v1.0\"",
        );
        let e = err(&text, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")]));
        assert!(e.contains("graph_base_url") && e.contains("https"), "{e}");
    }

    #[cfg(unix)]
    fn secret_file(mode: u32) -> (tempfile::TempDir, std::path::PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entra-secret");
        std::fs::write(&path, "s3cret-value\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    #[cfg(unix)]
    #[test]
    fn a_private_secret_file_is_where_the_secret_is_read_from() {
        let (_dir, path) = secret_file(0o600);
        let text = MINIMAL.replace(
            "auth = \"client_secret\"",
            &format!("auth = \"client_secret\"\nclient_secret_file = {:?}", path.display().to_string()),
        );
        let c = parse(&text, &env(&[])).unwrap();
        let Credentials::StoredClientSecret { place: SecretPlace::File(found) } = &c.integrations[0].credentials else {
            panic!()
        };
        assert_eq!(found, &path);
        let shown = c.integrations[0].credentials.describe();
        assert!(shown.contains("entra-secret") && !shown.contains("s3cret"), "{shown}");
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_others_can_read_or_a_second_secret_is_refused() {
        let (_dir, path) = secret_file(0o644);
        let with_file = MINIMAL.replace(
            "auth = \"client_secret\"",
            &format!("auth = \"client_secret\"\nclient_secret_file = {:?}", path.display().to_string()),
        );
        let e = err(&with_file, &env(&[]));
        assert!(e.contains("client_secret_file") && e.contains("mode 644") && !e.contains("s3cret"), "{e}");
        let (_dir, private) = secret_file(0o600);
        let both = MINIMAL.replace(
            "auth = \"client_secret\"",
            &format!("auth = \"client_secret\"\nclient_secret_file = {:?}", private.display().to_string()),
        );
        let e = err(&both, &env(&[("ROTATOR_CONTOSO_CLIENT_SECRET", "x")]));
        assert!(e.contains("unset $ROTATOR_CONTOSO_CLIENT_SECRET"), "{e}");
    }

    #[test]
    fn a_secret_arn_must_name_a_secrets_manager_secret() {
        let text = MINIMAL.replace(
            "auth = \"client_secret\"",
            "auth = \"client_secret\"\nclient_secret_arn = \"arn:aws:ssm:eu-west-1:123456789012:parameter/x\"",
        );
        let e = err(&text, &env(&[]));
        assert!(e.contains("client_secret_arn") && e.contains("secretsmanager"), "{e}");
        let good = MINIMAL.replace(
            "auth = \"client_secret\"",
            "auth = \"client_secret\"\nclient_secret_arn = \"arn:aws:secretsmanager:eu-west-1:123456789012:secret:entra-AbCdEf\"",
        );
        let c = parse(&good, &env(&[])).unwrap();
        assert!(
            matches!(c.integrations[0].secret_place(), Some(SecretPlace::SecretsManager(a)) if a.region() == "eu-west-1")
        );
    }
}
