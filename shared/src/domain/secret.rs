//! Secret values in memory: no `Debug`, no `Display`, no `Serialize`, wiped on drop.
//!
//! The only way to read a value is [`SecretValue::expose`], so every place a secret is used can be
//! found with one search.

use zeroize::{Zeroize, ZeroizeOnDrop};

/// A client secret (or any other secret text). Deliberately implements neither `Debug` nor
/// `Display` nor `Serialize`, so it cannot reach a log line, an error or a message by accident.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret text. Call only where the value must leave: sealing, a target, a token request.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartialEq for SecretValue {
    /// Constant-time in the length of the shorter value, so comparisons do not leak a prefix.
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}
impl Eq for SecretValue {}

/// Raw secret bytes, such as a data key, with the same guarantees as [`SecretValue`].
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A secret must not be printable or serialisable by accident: these fail to compile otherwise.
    static_assertions::assert_not_impl_any!(SecretValue: std::fmt::Debug, std::fmt::Display, serde::Serialize);
    static_assertions::assert_not_impl_any!(SecretBytes: std::fmt::Debug, std::fmt::Display, serde::Serialize);
    static_assertions::assert_impl_all!(SecretValue: zeroize::ZeroizeOnDrop, Send, Sync);

    #[test]
    fn equal_values_compare_equal_and_different_lengths_do_not() {
        assert!(SecretValue::new("abc") == SecretValue::new("abc"));
        assert!(SecretValue::new("abc") != SecretValue::new("abd"));
        assert!(SecretValue::new("abc") != SecretValue::new("abcd"));
    }

    #[test]
    fn zeroize_clears_the_value() {
        let mut s = SecretValue::new("wipe me");
        s.zeroize();
        assert!(s.is_empty());
    }
}
