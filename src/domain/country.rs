//! The country of a client address, as it is recorded: a two-letter code and nothing more.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// An ISO 3166-1 alpha-2 style country code: exactly two ASCII letters, upper case.
///
/// Stored inline (two bytes, `Copy`) so recording a country never allocates.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Accepts exactly two ASCII letters in either case and upper-cases them;
    /// anything else (`"A1"`, `"USA"`, `""`, non-ASCII) is `None`.
    ///
    /// Databases carry pseudo-codes such as GeoIP's legacy `A1` ("anonymous
    /// proxy"); refusing them here keeps such values out of the statistics.
    pub fn parse(code: &str) -> Option<CountryCode> {
        match *code.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => Some(CountryCode([
                a.to_ascii_uppercase(),
                b.to_ascii_uppercase(),
            ])),
            _ => None,
        }
    }

    /// The code as text, e.g. `"DE"`.
    pub fn as_str(&self) -> &str {
        // `parse` admits only ASCII letters, so the bytes are always valid UTF-8
        // and the fallback is unreachable; it only avoids a panic path.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountryCode({:?})", self.as_str())
    }
}

impl AsRef<str> for CountryCode {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// Serialised as the plain two-letter string.
impl Serialize for CountryCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Read from a string with the same rules as [`CountryCode::parse`].
impl<'de> Deserialize<'de> for CountryCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CodeVisitor;

        impl Visitor<'_> for CodeVisitor {
            type Value = CountryCode;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a two-letter country code")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<CountryCode, E> {
                CountryCode::parse(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }

        deserializer.deserialize_str(CodeVisitor)
    }
}
