//! Records as items: each one's JSON document beside its key, and back again.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use entra_rotator::Result;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::keys::{DOC, PK, SK};
use crate::error;

/// One item as the SDK has it.
pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn to_doc<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| error::decode("encoding record", e))
}

pub(super) fn from_item<T: DeserializeOwned>(item: &Item) -> Result<T> {
    let doc = item.get(DOC).and_then(|v| v.as_s().ok()).ok_or_else(|| error::decode("decoding record", "no doc"))?;
    serde_json::from_str(doc).map_err(|e| error::decode("decoding record", e))
}

pub(super) fn from_items<T: DeserializeOwned>(items: &[Item]) -> Result<Vec<T>> {
    items.iter().map(from_item).collect()
}

pub(super) fn text_attribute<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

/// An item with its key and document.
pub(super) fn doc_item<T: Serialize>(pk: String, sk: impl Into<String>, v: &T) -> Result<Item> {
    Ok(HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk)), (DOC.to_owned(), s(to_doc(v)?))]))
}

pub(super) fn key_of(item: &Item) -> Option<(String, String)> {
    Some((text_attribute(item, PK)?.to_owned(), text_attribute(item, SK)?.to_owned()))
}
