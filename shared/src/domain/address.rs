//! The outbound address policy: which hosts the product may send a request to (DESIGN §4.7, "a URL
//! to a forbidden address" is refused).
//!
//! Every outbound URL the product calls — rollout steps, alert webhooks, the token endpoint and
//! Graph — is checked twice: when the configuration or a step definition is read (so `config
//! check`, `steps check` and the dry run refuse it), and again when connecting, on every address a
//! name resolved to (a name that is harmless today can resolve to the metadata service tomorrow).
//!
//! Refused, in every encoding the URL parser accepts (decimal `2852039166`, hex `0xA9FEA9FE`, octal
//! `0251.0376.0251.0376`, a trailing dot, IPv4-mapped and other IPv6 forms that embed an IPv4
//! address): loopback, unspecified (`0.0.0.0`, `[::]`), link-local, the cloud metadata services'
//! addresses and names, multicast, broadcast and reserved ranges. Private ranges (10/8, 172.16/12,
//! 192.168/16, fc00::/7) are allowed, since internal targets are normal; an operator narrows them
//! with `deny`. The rare real exception (the simulated tenant on loopback) is named in `allow`.
//!
//! Pure: this module parses and decides; resolving names is the adapters' part.

use std::fmt;
// `core::net` holds the address types only (no sockets), which is all a pure module needs.
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use url::{Host, Url};

/// Host names that reach a cloud provider's instance metadata service (or its like) from inside
/// the cloud: refused whatever they resolve to here.
const METADATA_NAMES: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.internal",
    "metadata.tencentyun.com",
    "metadata.platformequinix.com",
];

/// Addresses of cloud metadata and host services that are not link-local.
const METADATA_V4: &[Ipv4Addr] = &[
    // Alibaba Cloud's metadata service.
    Ipv4Addr::new(100, 100, 100, 200),
    // Azure's WireServer (the host's agent endpoint, serving certificates and goal state).
    Ipv4Addr::new(168, 63, 129, 16),
];
/// AWS's instance metadata service over IPv6 (Nitro).
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254);

/// Why an address or host was refused: the rule, in words that never quote the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal(&'static str);

impl Refusal {
    pub fn rule(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused by the outbound address policy: {} (name it in [outbound] allow if it is meant)", self.0)
    }
}

/// One entry of `[outbound] allow`: a host name or an address range.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    Name(String),
    Net(IpNet),
}

/// Which hosts outbound requests may go to. The default refuses what is described in the module
/// documentation and allows everything else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allow: Vec<Allowed>,
    deny: Vec<IpNet>,
}

impl AddressPolicy {
    /// The policy with `allow` (host names, addresses or CIDR ranges that pass whatever the rules
    /// say) and `deny` (address ranges refused besides the built-in rules, such as a private range).
    ///
    /// # Errors
    ///
    /// The first entry that is neither a host name nor an address or range, by field and position.
    pub fn new(allow: &[String], deny: &[String]) -> Result<Self, String> {
        let mut policy = Self::default();
        for (i, entry) in allow.iter().enumerate() {
            let entry = entry.trim();
            let parsed = if let Some(net) = parse_net(entry) {
                Allowed::Net(net)
            } else if is_host_name(entry) {
                Allowed::Name(normalise_name(entry))
            } else {
                return Err(format!("allow[{i}]: expected a host name, an IP address or a CIDR range"));
            };
            policy.allow.push(parsed);
        }
        for (i, entry) in deny.iter().enumerate() {
            match parse_net(entry.trim()) {
                Some(net) => policy.deny.push(net),
                None => return Err(format!("deny[{i}]: expected an IP address or a CIDR range such as 10.0.0.0/8")),
            }
        }
        Ok(policy)
    }

    /// The default rules with loopback allowed (`127.0.0.0/8`, `::1`, `localhost`): what tests and
    /// the demo use to reach the simulated tenant.
    pub fn allowing_loopback() -> Self {
        Self::new(&["127.0.0.0/8".to_owned(), "::1".to_owned(), "localhost".to_owned()], &[])
            .unwrap_or_else(|_| Self::default())
    }

    /// Checks the host of `url`. A URL without a host is refused (nothing outbound lacks one).
    ///
    /// # Errors
    ///
    /// The rule that refuses the host.
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        match url.host() {
            Some(Host::Domain(name)) => self.check_name(name),
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            None => Err(Refusal("the URL has no host")),
        }
    }

    /// Checks a host name before it is resolved. A name that is an address in one of the forms
    /// the URL parser would read as one is checked as that address.
    ///
    /// # Errors
    ///
    /// The rule that refuses the name.
    pub fn check_name(&self, name: &str) -> Result<(), Refusal> {
        let name = normalise_name(name);
        if let Some(ip) = name_as_ip(&name) {
            return self.check_ip(ip);
        }
        if self.allows_name(&name) {
            return Ok(());
        }
        if name == "localhost" || name.ends_with(".localhost") {
            return Err(Refusal("localhost is a loopback name"));
        }
        if METADATA_NAMES.contains(&name.as_str()) {
            return Err(Refusal("the name of a cloud metadata service"));
        }
        Ok(())
    }

    /// Whether `name` (normalised) is named in `allow`; its resolved addresses then pass too.
    pub fn allows_name(&self, name: &str) -> bool {
        let name = normalise_name(name);
        self.allow.iter().any(|a| matches!(a, Allowed::Name(n) if *n == name))
    }

    /// Checks an address: a literal in a URL, or one a name resolved to.
    ///
    /// # Errors
    ///
    /// The rule that refuses the address.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        let ip = canonical(ip);
        if self.allow.iter().any(|a| matches!(a, Allowed::Net(net) if net.contains(&ip))) {
            return Ok(());
        }
        if let Some(rule) = builtin_rule(ip) {
            return Err(Refusal(rule));
        }
        if self.deny.iter().any(|net| net.contains(&ip)) {
            return Err(Refusal("the address is in a range of [outbound] deny"));
        }
        Ok(())
    }
}

/// The IPv4 address an IPv6 address carries, for the forms that route to it: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`), IPv4-compatible (`::a.b.c.d`,
/// deprecated), NAT64 (`64:ff9b::a.b.c.d`) and 6to4 (`2002:AABB:CCDD::`). Python's `ipaddress`
/// and Go's SSRF filters unwrap the mapped form the same way; the others are unwrapped too
/// because a gateway on the path may translate them.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => Some(tail),
        // `::` and `::1` are themselves, not 0.0.0.0 and 0.0.0.1.
        [0, 0, 0, 0, 0, 0, _, _] if s[6] != 0 => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new((a >> 8) as u8, a as u8, (b >> 8) as u8, b as u8)),
        _ => None,
    }
}

/// The address as it will be reached: an IPv6 form embedding an IPv4 address is that address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn builtin_rule(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => v4_rule(ip),
        IpAddr::V6(ip) => v6_rule(ip),
    }
}

fn v4_rule(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(if ip == Ipv4Addr::new(169, 254, 169, 254) || METADATA_V4.contains(&ip) {
        "the address of a cloud metadata service"
    } else if o[0] == 0 {
        "the address is unspecified (0.0.0.0/8)"
    } else if ip.is_loopback() {
        "the address is loopback (127.0.0.0/8)"
    } else if ip.is_link_local() {
        "the address is link-local (169.254.0.0/16)"
    } else if ip.is_broadcast() {
        "the address is broadcast (255.255.255.255)"
    } else if ip.is_multicast() {
        "the address is not unicast (multicast, 224.0.0.0/4)"
    } else if o[0] >= 240 {
        "the address is reserved (240.0.0.0/4)"
    } else {
        return None;
    })
}

fn v6_rule(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(if ip == METADATA_V6 {
        "the address of a cloud metadata service"
    } else if ip.is_unspecified() {
        "the address is unspecified (::)"
    } else if ip.is_loopback() {
        "the address is loopback (::1)"
    } else if s[0] & 0xffc0 == 0xfe80 {
        "the address is link-local (fe80::/10)"
    } else if ip.is_multicast() {
        "the address is not unicast (multicast, ff00::/8)"
    } else if s[0] == 0x2001 && s[1] == 0 {
        "the address is a Teredo tunnel (2001::/32), whose IPv4 end cannot be checked"
    } else {
        return None;
    })
}

/// Lower case, without the trailing dot of a fully qualified name.
fn normalise_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A name that is an address: `[::1]`, `::1`, `127.0.0.1`, or a legacy numeric IPv4 form
/// (`2852039166`, `0xA9FEA9FE`, `0251.0376.0251.0376`), read as the URL parser reads them.
fn name_as_ip(name: &str) -> Option<IpAddr> {
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(ip);
    }
    // The WHATWG host parser is the reference for what "ends in a number" means.
    match Url::parse(&format!("http://{name}/")).ok()?.host()? {
        Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        Host::Domain(_) => None,
    }
}

fn parse_net(entry: &str) -> Option<IpNet> {
    let bare = entry.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpNet>().ok().or_else(|| bare.parse::<IpAddr>().ok().map(IpNet::from)).map(|n| n.trunc())
}

fn is_host_name(entry: &str) -> bool {
    let name = entry.trim_end_matches('.');
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// Every encoding of a forbidden address the hostile test campaign tried, and a few more.
    const FORBIDDEN: &[&str] = &[
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[::ffff:0:169.254.169.254]/",
        "http://[::169.254.169.254]/",
        "http://[64:ff9b::169.254.169.254]/",
        "http://[2002:a9fe:a9fe::1]/",
        "http://2852039166/",
        "http://0xA9FEA9FE/",
        "http://0xa9.0xfe.0xa9.0xfe/",
        "http://0251.0376.0251.0376/",
        "http://169.254.43518/",
        "http://169.254.169.254./",
        "http://0.0.0.0/",
        "http://0/",
        "http://[::]/",
        "http://[fe80::1]/",
        "http://[fe80::1%25eth0]/",
        "http://[fd00:ec2::254]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.google.internal./",
        "http://metadata/",
        "http://100.100.100.200/",
        "http://168.63.129.16/",
        "http://127.0.0.1/",
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost/",
        "http://localhost./",
        "http://api.localhost/",
        "http://169.254.1.1/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "http://240.0.0.1/",
        "http://[ff02::1]/",
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    ];

    #[test]
    fn every_encoding_of_a_forbidden_address_is_refused() {
        let policy = AddressPolicy::default();
        for s in FORBIDDEN {
            // Some forms (a zone id) the URL parser itself refuses: refused either way.
            let Ok(u) = Url::parse(s) else { continue };
            let refusal = policy.check_url(&u).expect_err(s);
            assert!(!refusal.to_string().contains("169.254.169.254/latest"), "{refusal}");
        }
    }

    #[test]
    fn the_url_parser_normalises_legacy_numeric_ipv4_forms_for_http() {
        for s in ["http://2852039166/", "http://0xA9FEA9FE/", "http://0251.0376.0251.0376/", "http://169.254.169.254./"]
        {
            assert_eq!(url(s).host(), Some(Host::Ipv4(Ipv4Addr::new(169, 254, 169, 254))), "{s}");
        }
        assert_eq!(url("http://[::ffff:169.254.169.254]/").host_str(), Some("[::ffff:a9fe:a9fe]"));
    }

    #[test]
    fn names_that_are_addresses_are_checked_as_addresses() {
        let policy = AddressPolicy::default();
        for name in ["2852039166", "0xA9FEA9FE", "0251.0376.0251.0376", "[::1]", "::ffff:127.0.0.1", "0.0.0.0."] {
            assert!(policy.check_name(name).is_err(), "{name}");
        }
    }

    #[test]
    fn public_and_private_addresses_are_allowed_by_default() {
        let policy = AddressPolicy::default();
        for s in [
            "https://login.microsoftonline.com/",
            "https://graph.microsoft.com/v1.0",
            "https://10.0.0.5:8443/actuator/refresh",
            "http://192.168.1.10/health",
            "http://172.16.0.1/",
            "http://[fd12:3456::1]/",
            "https://[2001:db8::1]/",
            "https://8.8.8.8/",
            "https://metadata.example.com/",
        ] {
            assert_eq!(policy.check_url(&url(s)), Ok(()), "{s}");
        }
    }

    #[test]
    fn the_allow_list_admits_named_hosts_and_ranges_only() {
        let policy = AddressPolicy::new(&["127.0.0.1".into(), "localhost".into(), "[fd00:ec2::254]".into()], &[])
            .expect("valid");
        assert_eq!(policy.check_url(&url("https://127.0.0.1:8443/")), Ok(()));
        assert_eq!(policy.check_url(&url("https://2130706433/")), Ok(()));
        assert_eq!(policy.check_url(&url("http://localhost./")), Ok(()));
        assert_eq!(policy.check_url(&url("http://[fd00:ec2::254]/")), Ok(()));
        assert!(policy.allows_name("LOCALHOST"));
        assert!(policy.check_url(&url("http://127.0.0.2/")).is_err());
        assert!(policy.check_url(&url("http://169.254.169.254/")).is_err());
        let loopback = AddressPolicy::allowing_loopback();
        assert_eq!(loopback.check_url(&url("http://127.0.0.2/")), Ok(()));
        assert!(loopback.check_url(&url("http://169.254.169.254/")).is_err());
    }

    #[test]
    fn deny_narrows_private_ranges() {
        let policy = AddressPolicy::new(&[], &["10.0.0.0/8".into()]).expect("valid");
        let refusal = policy.check_url(&url("http://10.1.2.3/")).expect_err("denied");
        assert!(refusal.rule().contains("deny"), "{refusal}");
        assert_eq!(policy.check_url(&url("http://192.168.0.1/")), Ok(()));
    }

    #[test]
    fn a_malformed_entry_is_refused_by_position() {
        assert_eq!(
            AddressPolicy::new(&["not a host!".into()], &[]),
            Err("allow[0]: expected a host name, an IP address or a CIDR range".into())
        );
        assert!(AddressPolicy::new(&[], &["localhost".into()]).is_err());
        assert!(AddressPolicy::new(&["10.0.0.0/33".into()], &[]).is_err());
    }
}
