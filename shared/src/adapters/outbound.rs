//! The outbound address policy at connection time: a DNS resolver that drops every address the
//! policy refuses, and the client settings every outbound client of the product shares (no
//! redirects followed, that resolver).
//!
//! The configuration and step definitions are checked when read (`domain::address`); this is the
//! second check, on what a name resolves to when the request is made, so that a name pointing at
//! the metadata service (or rebinding to it after the first check) is never reached. reqwest does
//! not resolve a literal address, so a URL's own host is checked by the caller with
//! [`AddressPolicy::check_url`] before sending; with redirects refused, no other host is reached.

use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::address::{AddressPolicy, Refusal};

/// A resolution refused by the policy: every address the name resolved to is forbidden.
#[derive(Debug)]
pub struct Refused(pub Refusal);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for Refused {}

/// Resolves names with the system resolver, then keeps only the addresses the policy allows.
pub struct PolicyResolver {
    policy: Arc<AddressPolicy>,
}

impl PolicyResolver {
    pub fn new(policy: Arc<AddressPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // The name itself first: `localhost`, the metadata names, numeric forms.
            policy.check_name(&host).map_err(|r| Box::new(Refused(r)) as Box<dyn StdError + Send + Sync>)?;
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = filter(&policy, &host, resolved)?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The addresses of `resolved` the policy allows; when it allows none, the first refusal. A name
/// in `[outbound] allow` keeps all its addresses.
fn filter(
    policy: &AddressPolicy,
    host: &str,
    resolved: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, Box<dyn StdError + Send + Sync>> {
    if policy.allows_name(host) {
        return Ok(resolved);
    }
    let mut first_refusal = None;
    let mut allowed = Vec::new();
    for addr in resolved {
        match policy.check_ip(addr.ip()) {
            Ok(()) => allowed.push(addr),
            Err(r) => {
                first_refusal.get_or_insert(r);
            }
        }
    }
    match (allowed.is_empty(), first_refusal) {
        (true, Some(r)) => Err(Box::new(Refused(r))),
        _ => Ok(allowed),
    }
}

/// `builder` with what every outbound client needs: redirects never followed (a 3xx is the
/// answer, so a step's URL cannot send the request, and its signature or token, elsewhere) and
/// resolved addresses filtered by `policy`.
pub fn harden(builder: reqwest::ClientBuilder, policy: Arc<AddressPolicy>) -> reqwest::ClientBuilder {
    builder.redirect(reqwest::redirect::Policy::none()).dns_resolver(PolicyResolver::new(policy))
}

/// The policy's refusal behind a reqwest error, if that is why the request failed.
pub fn refusal_of(error: &reqwest::Error) -> Option<Refusal> {
    let mut source: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(e) = source {
        if let Some(Refused(r)) = e.downcast_ref::<Refused>() {
            return Some(*r);
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().expect("socket address")).collect()
    }

    #[test]
    fn resolved_addresses_the_policy_refuses_are_dropped() {
        let policy = AddressPolicy::default();
        let kept = filter(&policy, "mixed.example", addrs(&["169.254.169.254:0", "10.0.0.7:0"])).expect("one left");
        assert_eq!(kept, addrs(&["10.0.0.7:0"]));
        let refused = filter(&policy, "rebound.example", addrs(&["169.254.169.254:0", "[::ffff:127.0.0.1]:0"]))
            .expect_err("none left");
        assert!(refused.to_string().contains("metadata"), "{refused}");
    }

    #[test]
    fn a_name_on_the_allow_list_keeps_its_addresses() {
        let policy = AddressPolicy::new(&["sim.test".into()], &[]).expect("valid");
        assert_eq!(filter(&policy, "sim.test.", addrs(&["127.0.0.1:0"])).expect("allowed"), addrs(&["127.0.0.1:0"]));
    }

    #[tokio::test]
    async fn localhost_is_refused_before_it_is_resolved() {
        let resolver = PolicyResolver::new(Arc::new(AddressPolicy::default()));
        let name: Name = "localhost".parse().expect("a name");
        let e = resolver.resolve(name).await.err().expect("refused");
        assert!(e.to_string().contains("loopback"), "{e}");
    }
}
