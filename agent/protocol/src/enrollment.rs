//! One-time enrollment codes: what an operator reads out or pastes onto a host to enroll its
//! agent. The server keeps only [`code_hash`], and finds the pending enrollment by it.

use std::fmt;

use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// Crockford's base32: no I, L, O or U, so nothing reads as another symbol.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// 20 symbols of 5 bits: 100 bits of randomness, past guessing and past searching the hash.
const SYMBOLS: usize = 20;
const GROUP: usize = 5;

/// Why a typed code was not accepted. Never repeats the code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodeError {
    #[error("an enrollment code has {SYMBOLS} letters and digits, this one has {got}")]
    WrongLength { got: usize },
    #[error(
        "an enrollment code has only letters, digits, dashes and spaces (no U), the character at {position} is not one"
    )]
    BadCharacter { position: usize },
    #[error("the system's random number generator failed: {0}")]
    Random(String),
}

/// A one-time enrollment code, held normalised (20 upper-case Crockford symbols, no dashes).
/// `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrollmentCode(Zeroizing<String>);

impl EnrollmentCode {
    /// A new code from the system's random number generator.
    pub fn generate() -> Result<Self, CodeError> {
        let mut bytes = Zeroizing::new([0u8; SYMBOLS]);
        getrandom::fill(bytes.as_mut()).map_err(|e| CodeError::Random(e.to_string()))?;
        // 256 is a multiple of 32, so the low five bits of a random byte are uniform.
        let code: String = bytes.iter().map(|b| char::from(ALPHABET[usize::from(b & 31)])).collect();
        Ok(EnrollmentCode(Zeroizing::new(code)))
    }

    /// Reads a code as a person typed it: any case, dashes and spaces anywhere or nowhere, `O`
    /// for zero and `I` or `L` for one.
    pub fn parse(typed: &str) -> Result<Self, CodeError> {
        let mut code = Zeroizing::new(String::with_capacity(SYMBOLS));
        for (position, c) in typed.chars().enumerate() {
            let c = match c.to_ascii_uppercase() {
                '-' | ' ' | '\t' => continue,
                'O' => '0',
                'I' | 'L' => '1',
                c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
                _ => return Err(CodeError::BadCharacter { position }),
            };
            code.push(c);
        }
        if code.len() != SYMBOLS {
            return Err(CodeError::WrongLength { got: code.len() });
        }
        Ok(EnrollmentCode(code))
    }

    /// The code as people type it: `XXXXX-XXXXX-XXXXX-XXXXX`. Show it only to the operator.
    pub fn grouped(&self) -> Zeroizing<String> {
        let groups: Vec<&str> = (0..SYMBOLS).step_by(GROUP).map(|start| &self.0[start..start + GROUP]).collect();
        Zeroizing::new(groups.join("-"))
    }

    /// The normalised code (no dashes), what [`code_hash`] hashes.
    pub fn normalised(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EnrollmentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnrollmentCode(<redacted>)")
    }
}

/// SHA-256 (lowercase hex) of the normalised code: what the server stores and looks up by.
pub fn code_hash(code: &EnrollmentCode) -> String {
    hex::encode(Sha256::digest(code.normalised().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_code_reads_back_as_itself() {
        let code = EnrollmentCode::generate().expect("random");
        let shown = code.grouped();
        assert_eq!(shown.len(), 23);
        assert_eq!(shown.matches('-').count(), 3);
        let back = EnrollmentCode::parse(&shown).expect("parse");
        assert_eq!(back, code);
        assert_eq!(code_hash(&back), code_hash(&code));
    }

    #[test]
    fn typing_slips_are_forgiven() {
        let code = EnrollmentCode::parse("0123A-BCDEF-GHJKM-NPQRS").expect("parse");
        for typed in
            ["0123abcdefghjkmnpqrs", " o123a bcdef-ghjkm--npqrs ", "OI23A-BCDEF-GHJKM-NPQRS", "0l23a-bcdef-ghjkm-npqrs"]
        {
            assert_eq!(EnrollmentCode::parse(typed).expect("parse"), code, "{typed}");
        }
    }

    #[test]
    fn wrong_codes_are_refused_without_repeating_them() {
        assert_eq!(EnrollmentCode::parse("0123A-BCDEF-GHJKM"), Err(CodeError::WrongLength { got: 15 }));
        assert_eq!(EnrollmentCode::parse("0123U-BCDEF-GHJKM-NPQRS"), Err(CodeError::BadCharacter { position: 4 }));
        assert!(EnrollmentCode::parse("0123Ä-BCDEF-GHJKM-NPQRS").is_err());
    }

    #[test]
    fn two_generated_codes_differ() {
        let a = EnrollmentCode::generate().expect("random");
        let b = EnrollmentCode::generate().expect("random");
        assert_ne!(a, b);
        assert_ne!(code_hash(&a), code_hash(&b));
    }

    #[test]
    fn debug_does_not_show_the_code() {
        let code = EnrollmentCode::generate().expect("random");
        let shown = format!("{code:?}");
        assert!(!shown.contains(code.normalised()));
    }

    #[test]
    fn the_hash_is_sha256_hex_of_the_normalised_code() {
        let code = EnrollmentCode::parse("00000-00000-00000-00000").expect("parse");
        assert_eq!(code_hash(&code), hex::encode(Sha256::digest(b"00000000000000000000")));
    }
}
