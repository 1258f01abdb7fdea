//! stub
use super::{Edit, FormatError};
use crate::SecretValue;
pub(super) fn set(_t: &str, _k: &[&str], _v: &SecretValue, _c: bool) -> Result<Edit, FormatError> { Err(FormatError::Unsupported("json".into())) }
