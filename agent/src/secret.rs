//! The secret as a type: nothing prints it, and its memory is wiped when it is dropped.

use std::fmt;

use zeroize::Zeroizing;

/// A client secret on its way into a file. `Debug` prints `SecretValue(..)`; there is no
/// `Display`, so the value cannot slip into an error message or a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The value itself, for the editors that write it. Named so each use stands out in review.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_does_not_show_the_value() {
        let secret = SecretValue::new("hunter2-Zq8~");
        assert_eq!(format!("{secret:?}"), "SecretValue(..)");
        assert_eq!(secret.expose(), "hunter2-Zq8~");
    }
}
