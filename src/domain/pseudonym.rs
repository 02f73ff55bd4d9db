//! Keyed pseudonyms (HMAC-SHA256) and the in-place rewrite of identifying JSON values.
//!
//! Pure code: no store, no settings. Used by `export --pseudonymise` (key `pseudonymise_key`)
//! and by erasure entries (key `erasure_key`); see `docs/privacy.md`.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// A secret key from the settings. Its `Debug` never shows the value, so settings can be
/// logged; it is never written to the store.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SecretKey(String);

impl<'de> Deserialize<'de> for SecretKey {
    /// Environment variables are read as TOML values, so an all-digit key arrives as a
    /// number: it is taken as the text it was written as.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SecretKey, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            S(String),
            I(i128),
            U(u128),
        }
        Ok(SecretKey(match Text::deserialize(d)? {
            Text::S(s) => s,
            Text::I(n) => n.to_string(),
            Text::U(n) => n.to_string(),
        }))
    }
}

impl SecretKey {
    /// Shortest key accepted, in bytes: shorter keys can be guessed from the pseudonyms.
    pub const MIN_LEN: usize = 16;

    /// Wraps a key (tests and the settings loader).
    pub fn new(key: impl Into<String>) -> SecretKey {
        SecretKey(key.into())
    }

    /// Length of the key in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an empty key.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Hex HMAC-SHA256 of `value` under this key: stable for one key, so analysts can join
    /// on it, and not reversible without the key.
    pub fn pseudonym(&self, value: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.0.as_bytes()).expect("HMAC takes keys of any size");
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

/// The payload values `export --pseudonymise` replaces, as key paths from the top object.
pub const IDENTIFYING_PATHS: &[&[&str]] = &[
    &["uuid"],
    &["hostname"],
    &["unique_instance_id"],
    &["license_md5"],
    &["license_sha256"],
    &["licensee", "Name"],
    &["licensee", "Email"],
];

/// Rewrites the string values found at `paths` with `replace(decoded value)`, leaving every
/// other byte of `json` exactly as it was (whitespace, key order, number spelling, escapes).
/// Non-string values at those paths (`null`, numbers) are left alone.
pub fn rewrite_strings(
    json: &[u8],
    paths: &[&[&str]],
    replace: impl Fn(&str) -> String,
) -> Result<Vec<u8>, String> {
    let mut scanner = Scanner {
        b: json,
        i: 0,
        path: Vec::new(),
        paths,
        hits: Vec::new(),
    };
    scanner.value(0)?;
    scanner.ws();
    if scanner.i != json.len() {
        return Err(format!(
            "unexpected bytes after the JSON value at {}",
            scanner.i
        ));
    }
    let mut out = Vec::with_capacity(json.len());
    let mut copied = 0;
    for (start, end) in scanner.hits {
        out.extend_from_slice(&json[copied..start]);
        let decoded: String = serde_json::from_slice(&json[start..end])
            .map_err(|e| format!("unreadable string at {start}: {e}"))?;
        let replaced = serde_json::to_string(&replace(&decoded)).expect("a string serialises");
        out.extend_from_slice(replaced.as_bytes());
        copied = end;
    }
    out.extend_from_slice(&json[copied..]);
    Ok(out)
}

/// Deepest nesting the scanner follows (ingest accepts at most 512).
const MAX_DEPTH: usize = 600;

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    path: Vec<String>,
    paths: &'a [&'a [&'a str]],
    hits: Vec<(usize, usize)>,
}

impl Scanner<'_> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        self.ws();
        if self.b.get(self.i) == Some(&byte) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected `{}` at {}", byte as char, self.i))
        }
    }

    /// A string token's byte range, quotes included.
    fn string(&mut self) -> Result<(usize, usize), String> {
        self.expect(b'"')?;
        let start = self.i - 1;
        loop {
            match self.b.get(self.i) {
                Some(b'\\') => self.i += 2,
                Some(b'"') => {
                    self.i += 1;
                    return Ok((start, self.i));
                }
                Some(_) => self.i += 1,
                None => return Err(format!("unterminated string from {start}")),
            }
        }
    }

    fn at_target(&self) -> bool {
        self.paths
            .iter()
            .any(|p| p.len() == self.path.len() && p.iter().zip(&self.path).all(|(a, b)| a == b))
    }

    fn value(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("JSON nested too deeply".into());
        }
        self.ws();
        match self.b.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    let (s, e) = self.string()?;
                    let key: String = serde_json::from_slice(&self.b[s..e])
                        .map_err(|err| format!("unreadable key at {s}: {err}"))?;
                    self.expect(b':')?;
                    self.path.push(key);
                    self.value(depth + 1)?;
                    self.path.pop();
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => {
                            self.i += 1;
                            self.ws();
                        }
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(format!("expected `,` or `}}` at {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(());
                }
                // Array elements are never targets: a marker no key path can equal.
                self.path.push("\u{0}[]".into());
                loop {
                    self.value(depth + 1)?;
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            self.path.pop();
                            return Ok(());
                        }
                        _ => return Err(format!("expected `,` or `]` at {}", self.i)),
                    }
                }
            }
            Some(b'"') => {
                let range = self.string()?;
                if self.at_target() {
                    self.hits.push(range);
                }
                Ok(())
            }
            Some(_) => {
                let start = self.i;
                while !matches!(
                    self.b.get(self.i),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
                ) {
                    self.i += 1;
                }
                if self.i == start {
                    Err(format!("expected a value at {start}"))
                } else {
                    Ok(())
                }
            }
            None => Err("unexpected end of JSON".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_keyed_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let key = SecretKey::new("Jefe");
        assert_eq!(
            key.pseudonym("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(
            SecretKey::new("another key").pseudonym("x"),
            SecretKey::new("Jefe").pseudonym("x")
        );
        assert_eq!(format!("{key:?}"), "SecretKey([redacted])");
    }

    #[test]
    fn only_the_targeted_strings_change() {
        let json = br#"{ "uuid" : "u-1", "x": {"uuid": "keep"}, "licensee": {"Name":"A \"B\"", "Company":"C"},
  "n": 1.50, "hostname": null, "list": ["hostname", {"hostname": "keep"}], "hostname2": "keep" }"#;
        let out = rewrite_strings(json, IDENTIFYING_PATHS, |v| format!("<{v}>")).unwrap();
        let expected = br#"{ "uuid" : "<u-1>", "x": {"uuid": "keep"}, "licensee": {"Name":"<A \"B\">", "Company":"C"},
  "n": 1.50, "hostname": null, "list": ["hostname", {"hostname": "keep"}], "hostname2": "keep" }"#;
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(expected.to_vec()).unwrap()
        );
    }

    #[test]
    fn broken_json_is_refused() {
        for bad in [
            &b"{\"uuid\": \"x\""[..],
            b"[1,",
            b"{\"a\" 1}",
            b"\"open",
            b"{} x",
        ] {
            assert!(rewrite_strings(bad, IDENTIFYING_PATHS, |v| v.into()).is_err());
        }
    }
}
