//! How the Graph adapter writes its URLs in Graph's OData dialect: string literals escaped so a
//! value can never change the query, the `$select`/`$filter`/`$top` of each read, and the paging
//! links Graph hands back, which are followed only to the configured Graph host.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::domain::ids::AppObjectId;
use crate::ports::directory::Cursor;
use crate::{Error, Result};

pub(super) const APPLICATION_FIELDS: &str = "id,appId,displayName,signInAudience,passwordCredentials,keyCredentials";
// `servicePrincipalType` tells managed identities (whose credentials Azure itself rotates) from the
// rest; it is asked for so that a later sync can skip them, though the port does not carry it yet.
pub(super) const SERVICE_PRINCIPAL_FIELDS: &str =
    "id,appId,displayName,servicePrincipalType,passwordCredentials,keyCredentials";
/// The largest page Graph serves for applications and service principals.
const PAGE_SIZE: u32 = 999;

/// Characters left as they are in a query value: RFC 3986 "unreserved". Everything else, quotes,
/// `&`, `=`, `#`, `+`, `%`, spaces and non-ASCII included, is percent-encoded, so a value can never
/// end the parameter, start another, or change meaning when the server decodes it.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `value` as an OData string literal, ready to be placed in a query string: quoted with `'`, every
/// `'` inside doubled (OData's only escape in string literals), then percent-encoded. Whatever the
/// input, the server decodes it to exactly one literal whose content is `value`.
///
/// `O'Brien` becomes `%27O%27%27Brien%27`, which Graph reads as `'O''Brien'`.
pub fn odata_string_literal(value: &str) -> String {
    let literal = format!("'{}'", value.replace('\'', "''"));
    utf8_percent_encode(&literal, QUERY_VALUE).to_string()
}

/// The URL of a listing page of `collection` at `cursor`, and whether it is a delta page. A stored
/// link is checked against `graph` first (see [`check_link`]).
pub(super) fn listing_url(
    base: &str,
    graph: &url::Url,
    collection: &str,
    fields: &str,
    cursor: Cursor,
) -> Result<(String, bool)> {
    Ok(match cursor {
        Cursor::Full => (format!("{base}/{collection}?$select={fields}&$top={PAGE_SIZE}"), false),
        Cursor::DeltaStart => (format!("{base}/{collection}/delta?$select={fields}"), true),
        // Graph documents "sync from now" (`$deltatoken=latest`) for its directory resources,
        // applications and service principals among them. `$select` goes along so the delta
        // link it returns keeps asking for the credential collections.
        Cursor::DeltaLatest => (format!("{base}/{collection}/delta?$select={fields}&$deltatoken=latest"), true),
        Cursor::Link(link) => {
            check_link(&link, graph)?;
            let delta = is_delta_link(&link);
            (link, delta)
        }
    })
}

/// The URL of one application, with the fields a sync reads.
pub(super) fn application_url(base: &str, id: AppObjectId) -> String {
    format!("{base}/applications/{id}?$select={APPLICATION_FIELDS}")
}

/// The URL of the first page of applications whose display name is `name` (as Graph compares it:
/// without regard to case).
pub(super) fn applications_named_url(base: &str, name: &str) -> String {
    format!(
        "{base}/applications?$filter=displayName%20eq%20{}&$select={APPLICATION_FIELDS}&$top={PAGE_SIZE}",
        odata_string_literal(name)
    )
}

/// A link from an earlier page is followed as Graph wrote it, but only to the configured Graph
/// host: the access token must not travel anywhere else, whatever a stored link says.
pub(super) fn check_link(link: &str, graph: &url::Url) -> Result<()> {
    let parsed = url::Url::parse(link).map_err(|e| Error::invalid("Graph link", format!("not a URL: {e}")))?;
    if parsed.origin() != graph.origin() {
        return Err(Error::invalid(
            "Graph link",
            format!(
                "it points to {}, not to the configured Graph host {}; the access token is only sent to Graph",
                parsed.origin().ascii_serialization(),
                graph.origin().ascii_serialization()
            ),
        ));
    }
    Ok(())
}

fn is_delta_link(link: &str) -> bool {
    url::Url::parse(link)
        .ok()
        .and_then(|u| u.path_segments().and_then(|mut s| s.next_back().map(str::to_owned)))
        .is_some_and(|last| last.starts_with("delta") || last.contains(".delta"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odata_literals_double_quotes_and_encode_everything_that_could_escape() {
        assert_eq!(odata_string_literal("O'Brien"), "%27O%27%27Brien%27");
        assert_eq!(odata_string_literal(""), "%27%27");
        assert_eq!(odata_string_literal("a&$top=1"), "%27a%26%24top%3D1%27");
        assert_eq!(odata_string_literal("%27"), "%27%2527%27");
        assert_eq!(odata_string_literal("a b+c"), "%27a%20b%2Bc%27");
        assert_eq!(odata_string_literal("é"), "%27%C3%A9%27");
    }

    #[test]
    fn delta_links_are_told_from_plain_next_links() {
        assert!(is_delta_link("https://graph.microsoft.com/v1.0/applications/delta?$skiptoken=abc"));
        assert!(is_delta_link("https://graph.microsoft.com/v1.0/applications/delta()?$deltatoken=abc"));
        assert!(is_delta_link("https://graph.microsoft.com/v1.0/applications/microsoft.graph.delta()?$skiptoken=x"));
        assert!(!is_delta_link("https://graph.microsoft.com/v1.0/applications?$top=999&$skiptoken=abc"));
    }
}
