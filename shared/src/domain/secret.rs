//! Secret values in memory: no `Debug`, no `Display`, no `Serialize`, wiped on drop.
//!
//! Thin newtypes over [`secrecy`]'s boxes, which do the wiping; the newtypes keep the crate's one
//! way to read a value, [`SecretValue::expose`], so every place a secret is used can be found with
//! one search, and they drop `SecretBox`'s redacting `Debug`, so a secret cannot even reach a log
//! line as `[REDACTED]` inside a derived `Debug` of something else.

use secrecy::{ExposeSecret, SecretBox, SecretSlice, SecretString};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A client secret (or any other secret text). Deliberately implements neither `Debug` nor
/// `Display` nor `Serialize`, so it cannot reach a log line, an error or a message by accident.
#[derive(Clone)]
pub struct SecretValue(SecretString);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        let mut value = value.into();
        // `SecretString::from(String)` shrinks the buffer into a `Box<str>`, which frees the spare
        // capacity unwiped when it reallocates: copy into an exact box, then wipe the original.
        let secret = SecretString::from(value.as_str());
        value.zeroize();
        Self(secret)
    }
    /// The secret text. Call only where the value must leave: sealing, a target, a token request.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
    pub fn is_empty(&self) -> bool {
        self.0.expose_secret().is_empty()
    }
}

impl Zeroize for SecretValue {
    /// Wipes the text and leaves an empty value, as `String::zeroize` did.
    fn zeroize(&mut self) {
        self.0.zeroize();
        self.0 = SecretString::default();
    }
}
// The inner `SecretBox` wipes itself on drop.
impl ZeroizeOnDrop for SecretValue {}

impl PartialEq for SecretValue {
    /// Constant-time in the contents (not the lengths), so comparisons do not leak a prefix.
    fn eq(&self, other: &Self) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(self.expose().as_bytes(), other.expose().as_bytes()).is_ok()
    }
}
impl Eq for SecretValue {}

/// Raw secret bytes, such as a data key, with the same guarantees as [`SecretValue`].
#[derive(Clone)]
pub struct SecretBytes(SecretSlice<u8>);

impl SecretBytes {
    pub fn new(mut bytes: Vec<u8>) -> Self {
        // As in `SecretValue::new`: no unwiped spare capacity left behind by a shrinking move.
        let secret = SecretBox::new(Box::<[u8]>::from(bytes.as_slice()));
        bytes.zeroize();
        Self(secret)
    }
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

impl Zeroize for SecretBytes {
    fn zeroize(&mut self) {
        self.0.zeroize();
        self.0 = SecretSlice::default();
    }
}
impl ZeroizeOnDrop for SecretBytes {}

#[cfg(test)]
mod tests {
    use super::*;

    // A secret must not be printable or serialisable by accident: these fail to compile otherwise.
    static_assertions::assert_not_impl_any!(SecretValue: std::fmt::Debug, std::fmt::Display, serde::Serialize);
    static_assertions::assert_not_impl_any!(SecretBytes: std::fmt::Debug, std::fmt::Display, serde::Serialize);
    static_assertions::assert_impl_all!(SecretValue: zeroize::ZeroizeOnDrop, Send, Sync);
    static_assertions::assert_impl_all!(SecretBytes: zeroize::ZeroizeOnDrop, Send, Sync);

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
        let mut b = SecretBytes::new(vec![1, 2, 3]);
        b.zeroize();
        assert!(b.expose().is_empty());
    }

    #[test]
    fn a_clone_exposes_the_same_value() {
        let s = SecretValue::new(String::with_capacity(64) + "kept");
        assert_eq!(s.clone().expose(), "kept");
        assert_eq!(SecretBytes::new(vec![7; 3]).clone().expose(), [7, 7, 7]);
    }
}
