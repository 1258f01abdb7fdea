//! The OData parts of Graph the sim implements: query options (`$select`, `$top`, `$filter`,
//! `$skiptoken`, `$deltatoken`), the paging and delta tokens, the links that carry them, and the JSON
//! rendering of objects with only the selected properties.
//!
//! Parsing is strict on purpose: an option the sim does not implement is refused with a 400 rather
//! than ignored, so the product cannot come to depend on something the sim only pretends to do.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::Url;
use uuid::Uuid;

use crate::error::GraphError;
use crate::state::{Collection, DirectoryObject, KeyCredential, PasswordCredential};

/// The largest `$top` Graph accepts for applications and service principals.
pub(crate) const MAX_TOP: usize = 999;
/// The page size Graph uses when `$top` is absent.
pub(crate) const DEFAULT_TOP: usize = 100;

/// A property of an application or service principal the sim knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Prop {
    #[serde(rename = "i")]
    Id,
    #[serde(rename = "a")]
    AppId,
    #[serde(rename = "d")]
    DisplayName,
    #[serde(rename = "s")]
    SignInAudience,
    #[serde(rename = "t")]
    ServicePrincipalType,
    #[serde(rename = "p")]
    PasswordCredentials,
    #[serde(rename = "k")]
    KeyCredentials,
}

impl Prop {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::AppId => "appId",
            Self::DisplayName => "displayName",
            Self::SignInAudience => "signInAudience",
            Self::ServicePrincipalType => "servicePrincipalType",
            Self::PasswordCredentials => "passwordCredentials",
            Self::KeyCredentials => "keyCredentials",
        }
    }

    /// Every property of a collection, in the order the sim renders them.
    pub(crate) fn all(collection: Collection) -> &'static [Prop] {
        match collection {
            Collection::Applications => &[
                Self::Id,
                Self::AppId,
                Self::DisplayName,
                Self::SignInAudience,
                Self::PasswordCredentials,
                Self::KeyCredentials,
            ],
            Collection::ServicePrincipals => &[
                Self::Id,
                Self::AppId,
                Self::DisplayName,
                Self::ServicePrincipalType,
                Self::PasswordCredentials,
                Self::KeyCredentials,
            ],
        }
    }

    /// Graph matches property names case-insensitively.
    fn parse(collection: Collection, name: &str) -> Option<Prop> {
        Self::all(collection).iter().copied().find(|p| p.name().eq_ignore_ascii_case(name))
    }
}

/// The query options of one request, each at most once.
#[derive(Debug, Default)]
pub(crate) struct QueryOptions {
    pub(crate) select: Option<String>,
    pub(crate) top: Option<String>,
    pub(crate) filter: Option<String>,
    pub(crate) skiptoken: Option<String>,
    pub(crate) deltatoken: Option<String>,
}

/// Which `$` options an endpoint accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Allowed {
    /// `GET /applications`: `$select`, `$top`, `$filter`, `$skiptoken`.
    List,
    /// `GET /applications/delta`: `$select`, `$top`, `$skiptoken`, `$deltatoken`.
    Delta,
    /// `GET /applications/{id}`: `$select`.
    Item,
}

impl QueryOptions {
    /// Parse a raw query string. Values are form-decoded (`+` is a space, `%XX` a byte), as Graph
    /// decodes them. Parameters without `$` are ignored, as Graph ignores them.
    pub(crate) fn parse(raw: Option<&str>, allowed: Allowed) -> Result<Self, GraphError> {
        let mut options = Self::default();
        for (key, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            if !key.starts_with('$') {
                continue;
            }
            let lower = key.to_ascii_lowercase();
            let slot = match (lower.as_str(), allowed) {
                ("$select", _) => &mut options.select,
                ("$top", Allowed::List | Allowed::Delta) => &mut options.top,
                ("$filter", Allowed::List) => &mut options.filter,
                ("$skiptoken", Allowed::List | Allowed::Delta) => &mut options.skiptoken,
                ("$deltatoken", Allowed::Delta) => &mut options.deltatoken,
                _ => {
                    return Err(GraphError::bad_request(format!(
                        "Query option '{key}' is not supported for this request."
                    )));
                }
            };
            if slot.is_some() {
                return Err(GraphError::bad_request(format!("Query option '{key}' was specified more than once.")));
            }
            *slot = Some(value.into_owned());
        }
        Ok(options)
    }
}

/// `$select`: the listed properties, always with `id` first. Absent means every property.
pub(crate) fn parse_select(collection: Collection, raw: Option<&str>) -> Result<Vec<Prop>, GraphError> {
    let Some(raw) = raw else {
        return Ok(Prop::all(collection).to_vec());
    };
    let mut props = vec![Prop::Id];
    for name in raw.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(GraphError::bad_request("Invalid $select: empty property name."));
        }
        let prop = Prop::parse(collection, name).ok_or_else(|| {
            GraphError::bad_request(format!(
                "Could not find a property named '{name}' on type '{}'.",
                collection.type_name()
            ))
        })?;
        if !props.contains(&prop) {
            props.push(prop);
        }
    }
    Ok(props)
}

/// `$top`: 1 to 999.
pub(crate) fn parse_top(raw: Option<&str>) -> Result<Option<usize>, GraphError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match raw.trim().parse::<i64>() {
        Ok(n) if (1..=MAX_TOP as i64).contains(&n) => Ok(usize::try_from(n).ok()),
        Ok(_) => Err(GraphError::bad_request(format!(
            "Invalid page size specified: '{raw}'. Must be between 1 and {MAX_TOP} inclusive."
        ))),
        Err(_) => Err(GraphError::bad_request(format!("Invalid value '{raw}' for query option '$top'."))),
    }
}

/// The one filter the sim implements: `displayName eq '<literal>'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Filter {
    DisplayNameEq(String),
}

impl Filter {
    pub(crate) fn matches(&self, object: &DirectoryObject) -> bool {
        match self {
            // Graph compares directory strings case-insensitively.
            Self::DisplayNameEq(name) => object.display_name.to_lowercase() == name.to_lowercase(),
        }
    }
}

/// Parse `$filter`. The literal is read by OData's rules — `''` inside quotes is one `'` — and the
/// literal must be followed by nothing but spaces. Anything else is refused: text after the closing
/// quote is never read as more syntax, so a value like `x' or 1 eq 1` can only ever be a literal (when
/// escaped) or a 400 (when not), never a wider query.
pub(crate) fn parse_filter(raw: &str) -> Result<Filter, GraphError> {
    let invalid = || GraphError::bad_request(format!("Invalid filter clause: '{raw}'."));
    let rest = raw.trim_start();
    let property_len = rest.find(|c: char| !(c.is_ascii_alphanumeric())).unwrap_or(rest.len());
    let (property, rest) = rest.split_at(property_len);
    if !property.eq_ignore_ascii_case("displayName") {
        return Err(GraphError::bad_request(format!(
            "Unsupported filter: the simulated tenant filters only on displayName (got '{raw}')."
        )));
    }
    let rest = rest.trim_start();
    let Some(rest) = rest.strip_prefix("eq").filter(|r| r.starts_with(char::is_whitespace)) else {
        return Err(invalid());
    };
    let Some(literal_and_rest) = rest.trim_start().strip_prefix('\'') else {
        return Err(invalid());
    };
    let mut literal = String::new();
    let mut chars = literal_and_rest.chars();
    loop {
        match chars.next() {
            // Unterminated literal.
            None => return Err(invalid()),
            Some('\'') => {
                let mut lookahead = chars.clone();
                if lookahead.next() == Some('\'') {
                    literal.push('\'');
                    chars = lookahead;
                } else {
                    break;
                }
            }
            Some(c) => literal.push(c),
        }
    }
    if !chars.as_str().trim().is_empty() {
        return Err(invalid());
    }
    Ok(Filter::DisplayNameEq(literal))
}

/// Encode paging or delta state as an opaque token (base64url of compact JSON). Clients must treat
/// it as opaque; the sim reads it back.
pub(crate) fn encode_token<T: Serialize>(state: &T) -> String {
    // Serializing plain structs of numbers, strings and enums cannot fail.
    let bytes = serde_json::to_vec(state).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn decode_token<T: DeserializeOwned>(token: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// An absolute link: `{graph_base}/{path}?{query}` with `$`-options written the way Graph writes
/// them (the `$` unescaped, values form-encoded).
pub(crate) fn link(graph_base: &Url, path: &str, params: &[(&str, &str)]) -> String {
    let query = params
        .iter()
        .map(|(key, value)| {
            format!("{key}={}", url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>())
        })
        .collect::<Vec<_>>()
        .join("&");
    let base = graph_base.as_str().trim_end_matches('/');
    if query.is_empty() { format!("{base}/{path}") } else { format!("{base}/{path}?{query}") }
}

/// Graph's date format: RFC 3339 in UTC with a `Z`.
pub(crate) fn format_time(t: OffsetDateTime) -> Value {
    t.format(&Rfc3339).map(Value::String).unwrap_or(Value::Null)
}

pub(crate) fn password_json(p: &PasswordCredential) -> Value {
    json!({
        "customKeyIdentifier": null,
        "displayName": p.display_name,
        "endDateTime": format_time(p.end),
        "hint": p.hint,
        "keyId": p.key_id.to_string(),
        // Graph returns the secret text only in the answer to addPassword, never in a listing.
        "secretText": null,
        "startDateTime": format_time(p.start),
    })
}

fn key_json(k: &KeyCredential) -> Value {
    json!({
        "customKeyIdentifier": STANDARD.encode(k.thumbprint),
        "displayName": k.display_name,
        "endDateTime": format_time(k.end),
        // Graph never returns the key material in listings.
        "key": null,
        "keyId": k.key_id.to_string(),
        "startDateTime": format_time(k.start),
        "type": "AsymmetricX509Cert",
        "usage": k.usage.as_str(),
    })
}

/// An object as Graph shows it, with only the selected properties.
pub(crate) fn object_json(object: &DirectoryObject, select: &[Prop]) -> Value {
    let mut map = Map::new();
    for prop in select {
        let value = match prop {
            Prop::Id => json!(object.id.to_string()),
            Prop::AppId => json!(object.app_id.to_string()),
            Prop::DisplayName => json!(object.display_name),
            Prop::SignInAudience => json!(object.sign_in_audience),
            Prop::ServicePrincipalType => json!(object.service_principal_type),
            Prop::PasswordCredentials => Value::Array(object.passwords.iter().map(password_json).collect()),
            Prop::KeyCredentials => Value::Array(object.keys.iter().map(key_json).collect()),
        };
        map.insert(prop.name().to_owned(), value);
    }
    Value::Object(map)
}

/// `@odata.context` for a collection, naming the selected properties as Graph does.
pub(crate) fn context(graph_base: &Url, collection: Collection, select: Option<&[Prop]>) -> String {
    let base = graph_base.as_str().trim_end_matches('/');
    match select {
        Some(props) => {
            let names = props.iter().map(|p| p.name()).collect::<Vec<_>>().join(",");
            format!("{base}/$metadata#{}({names})", collection.segment())
        }
        None => format!("{base}/$metadata#{}", collection.segment()),
    }
}

/// A page-continuation token for plain listings: where the previous page stopped.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ListToken {
    pub(crate) after: Uuid,
}

/// Parse a skip token of a plain listing.
pub(crate) fn parse_list_token(raw: &str) -> Result<ListToken, GraphError> {
    decode_token(raw)
        .ok_or_else(|| GraphError::bad_request("The specified skip token value is invalid or has expired."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal(raw: &str) -> Result<String, u16> {
        match parse_filter(raw) {
            Ok(Filter::DisplayNameEq(s)) => Ok(s),
            Err(e) => Err(e.status().as_u16()),
        }
    }

    #[test]
    fn filter_literals_follow_odata_quoting_and_anything_after_the_literal_is_refused() {
        assert_eq!(literal("displayName eq 'Payroll'"), Ok("Payroll".to_owned()));
        assert_eq!(literal("displayName eq 'O''Brien'"), Ok("O'Brien".to_owned()));
        assert_eq!(literal("  displayName   eq   ''''  "), Ok("'".to_owned()));
        assert_eq!(literal("displayName eq 'x'' or 1 eq 1'"), Ok("x' or 1 eq 1".to_owned()));
        assert_eq!(literal("displayName eq 'x' or 1 eq 1"), Err(400));
        assert_eq!(literal("displayName eq 'x' or displayName eq 'y'"), Err(400));
        assert_eq!(literal("displayName eq 'unterminated"), Err(400));
        assert_eq!(literal("displayName eq 'O'Brien'"), Err(400));
        assert_eq!(literal("displayName eq Payroll"), Err(400));
        assert_eq!(literal("displayNameeq 'x'"), Err(400));
        assert_eq!(literal("appId eq 'x'"), Err(400));
        assert_eq!(literal(""), Err(400));
    }

    #[test]
    fn top_is_between_1_and_999() {
        assert_eq!(parse_top(Some("999")).unwrap(), Some(999));
        assert_eq!(parse_top(Some("1")).unwrap(), Some(1));
        assert!(parse_top(Some("1000")).is_err());
        assert!(parse_top(Some("0")).is_err());
        assert!(parse_top(Some("-5")).is_err());
        assert!(parse_top(Some("ten")).is_err());
        assert_eq!(parse_top(None).unwrap(), None);
    }

    #[test]
    fn select_puts_id_first_ignores_case_and_refuses_unknown_properties() {
        let props = parse_select(Collection::Applications, Some("DisplayName,appId,displayName")).unwrap();
        assert_eq!(props, vec![Prop::Id, Prop::DisplayName, Prop::AppId]);
        assert!(parse_select(Collection::Applications, Some("servicePrincipalType")).is_err());
        assert!(parse_select(Collection::ServicePrincipals, Some("servicePrincipalType")).is_ok());
        assert!(parse_select(Collection::Applications, Some("id,,appId")).is_err());
    }

    #[test]
    fn query_options_are_each_allowed_once_and_unknown_ones_are_refused() {
        let q = QueryOptions::parse(Some("$select=id&$top=5&foo=bar"), Allowed::List).unwrap();
        assert_eq!(q.select.as_deref(), Some("id"));
        assert_eq!(q.top.as_deref(), Some("5"));
        assert!(QueryOptions::parse(Some("$top=1&$top=2"), Allowed::List).is_err());
        assert!(QueryOptions::parse(Some("$orderby=displayName"), Allowed::List).is_err());
        assert!(QueryOptions::parse(Some("$deltatoken=x"), Allowed::List).is_err());
        assert!(QueryOptions::parse(Some("$filter=x"), Allowed::Delta).is_err());
        let q = QueryOptions::parse(Some("%24filter=displayName+eq+%27a+b%27"), Allowed::List).unwrap();
        assert_eq!(q.filter.as_deref(), Some("displayName eq 'a b'"));
    }

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let id = Uuid::new_v4();
        let token = encode_token(&ListToken { after: id });
        assert_eq!(parse_list_token(&token).unwrap().after, id);
        assert!(parse_list_token("not a token").is_err());
    }

    #[test]
    fn links_keep_the_dollar_and_encode_values() {
        let base = Url::parse("https://127.0.0.1:1/v1.0").unwrap();
        assert_eq!(
            link(&base, "applications", &[("$select", "id,appId"), ("$filter", "displayName eq 'a b'")]),
            "https://127.0.0.1:1/v1.0/applications?$select=id%2CappId&$filter=displayName+eq+%27a+b%27"
        );
    }
}
