//! Reading a version check: the `gitlab_info` parameter and the Referer's hostname.
//!
//! Pure functions over the raw query string and header bytes. Every way a check can be
//! unreadable is a distinct [`CheckInputError`] whose message names the problem: `check.json`
//! answers it as a 400, the image routes answer the grey `unknown` badge instead.
//!
//! The decoder runs on every check, so it works in fixed stack buffers: a well-formed
//! `gitlab_info` is read without touching the heap (the JSON's `version` is borrowed unless
//! it contains escapes).

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::Deserialize;
use std::borrow::Cow;

use super::version::{Version, VersionError};

/// Longest `gitlab_info` accepted, in characters after percent-decoding. A real one is about
/// 30 (`{"version":"16.10.0-ee"}` in base64); a few hundred leave room for future fields.
pub const MAX_GITLAB_INFO_LEN: usize = 512;

/// Longest hostname kept from a Referer: the DNS limit.
pub const MAX_HOST_LEN: usize = 253;
/// Longest DNS label.
pub const MAX_LABEL_LEN: usize = 63;

/// Longest Referer authority (`user:pass@host:port`) we try to parse at all; anything longer
/// cannot hold a valid hostname and is not worth the parser's time.
const MAX_AUTHORITY_LEN: usize = 512;

/// Decoded JSON never exceeds 3/4 of the encoded length.
const MAX_DECODED_LEN: usize = MAX_GITLAB_INFO_LEN / 4 * 3 + 3;

/// Both base64 alphabets are folded into the standard one before decoding; padding may be
/// present, absent or partial, and stray low bits in the last symbol are tolerated (some
/// hand-rolled clients produce them).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Why a check request could not be read. Messages name the problem for the API client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckInputError {
    /// The whole query string is longer than the configured cap.
    #[error("the query string is {len} bytes long; at most {max} are accepted")]
    QueryTooLong {
        /// Length received.
        len: usize,
        /// The cap (`check_max_query_bytes`).
        max: usize,
    },
    /// No `gitlab_info` parameter.
    #[error(
        "`gitlab_info` is missing: send ?gitlab_info=<base64 of {{\"version\":\"MAJOR.MINOR.PATCH\"}}>"
    )]
    Missing,
    /// `gitlab_info=` with nothing after it.
    #[error(
        "`gitlab_info` is empty: it must be the base64 of {{\"version\":\"MAJOR.MINOR.PATCH\"}}"
    )]
    Empty,
    /// Longer than [`MAX_GITLAB_INFO_LEN`].
    #[error("`gitlab_info` is longer than {MAX_GITLAB_INFO_LEN} characters")]
    TooLong,
    /// Not base64 in either alphabet.
    #[error("`gitlab_info` is not base64: {0}")]
    NotBase64(String),
    /// Base64, but the bytes are not JSON.
    #[error("`gitlab_info` does not decode to JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("`gitlab_info` decodes to a JSON {0}, not an object with a `version`")]
    NotAnObject(&'static str),
    /// A JSON object without `version`.
    #[error("`gitlab_info` has no `version` field")]
    MissingVersion,
    /// `version` is there but is not a string.
    #[error("`version` in `gitlab_info` must be a string, got a JSON {0}")]
    VersionNotString(&'static str),
    /// `version` is a string that is not a version.
    #[error("`version` in `gitlab_info` is unreadable: {0}")]
    BadVersion(#[from] VersionError),
}

impl CheckInputError {
    /// A short, stable name for metrics labels and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            CheckInputError::QueryTooLong { .. } => "query_too_long",
            CheckInputError::Missing => "missing",
            CheckInputError::Empty => "empty",
            CheckInputError::TooLong => "too_long",
            CheckInputError::NotBase64(_) => "not_base64",
            CheckInputError::NotJson(_) => "not_json",
            CheckInputError::NotAnObject(_) => "not_an_object",
            CheckInputError::MissingVersion => "missing_version",
            CheckInputError::VersionNotString(_) => "version_not_string",
            CheckInputError::BadVersion(_) => "bad_version",
        }
    }
}

/// Reads the running version out of a check's raw (undecoded) query string.
///
/// `max_query_bytes` caps the whole query string before anything else is looked at.
pub fn version_from_query(query: &str, max_query_bytes: usize) -> Result<Version, CheckInputError> {
    if query.len() > max_query_bytes {
        return Err(CheckInputError::QueryTooLong {
            len: query.len(),
            max: max_query_bytes,
        });
    }
    let raw = gitlab_info_param(query).ok_or(CheckInputError::Missing)?;
    decode_gitlab_info(raw)
}

/// The raw value of the first `gitlab_info` parameter.
///
/// Parsed by hand rather than with a form decoder: GitLab interpolates base64 unescaped, and a
/// form decoder would turn the standard alphabet's `+` into a space.
pub fn gitlab_info_param(query: &str) -> Option<&str> {
    query
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some(("gitlab_info", value)) => Some(value),
            None if pair == "gitlab_info" => Some(""),
            _ => None,
        })
}

/// Decodes a raw `gitlab_info` value into the normalised running version.
///
/// Accepts Ruby's `Base64.urlsafe_encode64` output as GitLab sends it (`-`, `_`, `=` padding),
/// without padding, percent-encoded, and in the standard alphabet (`+`, `/`; a `+` turned
/// into a space by some proxy is read back as `+`).
pub fn decode_gitlab_info(raw: &str) -> Result<Version, CheckInputError> {
    if raw.is_empty() {
        return Err(CheckInputError::Empty);
    }
    // A percent-encoded value is at most three times longer than the decoded one.
    if raw.len() > 3 * MAX_GITLAB_INFO_LEN {
        return Err(CheckInputError::TooLong);
    }
    let mut text = [0u8; MAX_GITLAB_INFO_LEN];
    let mut len = 0;
    for byte in percent_encoding::percent_decode(raw.as_bytes()) {
        if len == MAX_GITLAB_INFO_LEN {
            return Err(CheckInputError::TooLong);
        }
        text[len] = match byte {
            b'-' => b'+',
            b'_' => b'/',
            b' ' => b'+',
            other => other,
        };
        len += 1;
    }
    // Padding is optional (and is all a value might consist of once `%3D` is decoded).
    let symbols = trim_padding(&text[..len]);
    if symbols.is_empty() {
        return Err(CheckInputError::Empty);
    }
    let mut json = [0u8; MAX_DECODED_LEN];
    let decoded = LENIENT_BASE64
        .decode_slice(symbols, &mut json)
        .map_err(|e| CheckInputError::NotBase64(describe_base64_error(e)))?;
    version_from_json(&json[..decoded])
}

fn trim_padding(symbols: &[u8]) -> &[u8] {
    let end = symbols
        .iter()
        .rposition(|&b| b != b'=')
        .map_or(0, |i| i + 1);
    &symbols[..end]
}

fn describe_base64_error(err: base64::DecodeSliceError) -> String {
    match err {
        base64::DecodeSliceError::DecodeError(base64::DecodeError::InvalidByte(at, byte)) => {
            if byte.is_ascii_graphic() {
                format!("character `{}` at position {at}", byte as char)
            } else {
                format!("byte 0x{byte:02x} at position {at}")
            }
        }
        base64::DecodeSliceError::DecodeError(base64::DecodeError::InvalidLength(_)) => {
            "its length is impossible for base64 (one character too many or too few)".into()
        }
        base64::DecodeSliceError::DecodeError(other) => other.to_string(),
        // The output buffer is sized for the longest accepted input, so this cannot happen;
        // reporting it beats a panic.
        base64::DecodeSliceError::OutputSliceTooSmall => "it decodes to too many bytes".into(),
    }
}

/// The one field we read; everything else in `gitlab_info` is ignored.
#[derive(Deserialize)]
struct GitlabInfo<'a> {
    // `deserialize_with` so that `"version": null` is a type error (reported as "not a
    // string") rather than quietly read as an absent field.
    #[serde(borrow, default, deserialize_with = "present")]
    version: Option<VersionText<'a>>,
}

/// The `version` string, borrowed from the decoded bytes unless it contains escapes.
struct VersionText<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for VersionText<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> serde::de::Visitor<'de> for Text {
            type Value = VersionText<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a version string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(VersionText(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(VersionText(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<VersionText<'de>>, D::Error> {
    VersionText::deserialize(deserializer).map(Some)
}

fn version_from_json(json: &[u8]) -> Result<Version, CheckInputError> {
    // serde would also read a struct from a JSON array (`["16.0.0"]`); only objects count.
    if json.trim_ascii_start().first() != Some(&b'{') {
        return Err(classify_json_shape(json, None));
    }
    match serde_json::from_slice::<GitlabInfo<'_>>(json) {
        Ok(GitlabInfo {
            version: Some(VersionText(version)),
        }) => Ok(Version::parse(&version)?),
        Ok(GitlabInfo { version: None }) => Err(CheckInputError::MissingVersion),
        Err(err) if err.is_data() => Err(classify_json_shape(json, Some(&err))),
        Err(err) => Err(CheckInputError::NotJson(err.to_string())),
    }
}

/// The rare path: valid JSON of the wrong shape. Parse it generically to say which shape.
fn classify_json_shape(json: &[u8], err: Option<&serde_json::Error>) -> CheckInputError {
    let reason = |fallback: &str| err.map_or_else(|| fallback.to_owned(), |e| e.to_string());
    let value = match serde_json::from_slice::<serde_json::Value>(json) {
        Ok(value) => value,
        Err(e) => return CheckInputError::NotJson(reason(&e.to_string())),
    };
    match &value {
        serde_json::Value::Object(map) => match map.get("version") {
            None => CheckInputError::MissingVersion,
            Some(serde_json::Value::String(_)) => {
                CheckInputError::NotJson(reason("unexpected shape"))
            }
            Some(other) => CheckInputError::VersionNotString(json_kind(other)),
        },
        other => CheckInputError::NotAnObject(json_kind(other)),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// The instance's hostname from a `Referer` header value, or `None`.
///
/// Lower-cased, without userinfo, port or path; an internationalised name comes back in its
/// ASCII (punycode) form, so one instance is one name however the browser spelled it. Only
/// `http` and `https` Referers count (a browser sends nothing else for an `<img>`).
///
/// IP-literal hosts (`http://10.0.0.5/`, `http://[2001:db8::1]/`) give `None` on purpose:
/// they are usually private addresses that many unrelated instances share, so they would
/// merge strangers into one "host"; and a public one may be somebody's personal address,
/// which the "no IP at rest" rule covers. The check itself is still counted, without a host.
pub fn referer_host(referer: &[u8]) -> Option<String> {
    let authority = http_authority(referer)?;
    // Nearly every Referer is a plain ASCII name; those skip the full URL parser (and its
    // allocations), which is kept for everything else: IDN, punycode, IP literals, escapes.
    let host = match plain_host(authority) {
        Some(host) => host.to_ascii_lowercase(),
        None => parsed_host(authority)?,
    };
    well_formed(host)
}

/// The authority (`user@host:port`) of an `http(s)://` Referer.
fn http_authority(referer: &[u8]) -> Option<&str> {
    let referer = std::str::from_utf8(referer).ok()?.trim();
    let (scheme, rest) = referer.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    // Only the authority matters: parsing a long path or query would be wasted work.
    // (WHATWG URL parsing treats `\` like `/` for http(s).)
    let authority = &rest[..rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len())];
    // More than one `@` is no valid authority (userinfo cannot hold a bare `@`): parsers
    // disagree on which part is the host, so none is taken (issue 8, #13).
    let valid = !authority.is_empty()
        && authority.len() <= MAX_AUTHORITY_LEN
        && authority.matches('@').count() <= 1;
    valid.then_some(authority)
}

/// `host` or `host:port` made of ASCII letters, digits, `-` and `.` only, which the URL
/// parser would return unchanged apart from case. `None` whenever that is not certain:
/// userinfo, escapes, empty or punycode labels, and a numeric last label (which the URL
/// standard reads as an IPv4 address, e.g. `127.1` or `0x7f.1`).
fn plain_host(authority: &str) -> Option<&str> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port),
        None => (authority, ""),
    };
    let port_ok = port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().map_or(port.is_empty(), |p| p <= 65_535);
    let name = host.strip_suffix('.').unwrap_or(host);
    let plain = port_ok
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label
                    .get(..4)
                    .is_some_and(|p| p.eq_ignore_ascii_case("xn--"))
        });
    let last = name.rsplit('.').next()?;
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || last.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("0x"));
    (plain && !numeric).then_some(host)
}

/// The host as the WHATWG URL parser reads it: lower case, IDN to punycode. IP literals
/// give `None` (see [`referer_host`]).
fn parsed_host(authority: &str) -> Option<String> {
    let url = url::Url::parse(&format!("http://{authority}/")).ok()?;
    match url.host()? {
        url::Host::Domain(domain) => Some(domain.to_owned()),
        url::Host::Ipv4(_) | url::Host::Ipv6(_) => None,
    }
}

/// Drops the trailing dot (`example.com.` is `example.com`) and refuses anything that is not
/// a DNS-shaped name of at most [`MAX_HOST_LEN`] characters.
fn well_formed(mut host: String) -> Option<String> {
    if host.ends_with('.') {
        host.pop();
    }
    // Issue 8, #13: only syntactically valid DNS names (after IDNA) are hosts: labels of 1 to
    // 63 characters, none starting or ending with `-` (`a..b` or a 64-character label is not).
    let ok = !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && host.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_')
        })
        && host.split('.').all(|label| {
            (1..=MAX_LABEL_LEN).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    ok.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

    fn decode(raw: &str) -> Result<String, CheckInputError> {
        decode_gitlab_info(raw).map(|v| v.to_string())
    }

    #[test]
    fn protocol_example_decodes() {
        assert_eq!(decode("eyJ2ZXJzaW9uIjoiMTEuMC4wIn0=").unwrap(), "11.0.0");
    }

    #[test]
    fn every_encoding_clients_send_decodes() {
        // Bytes chosen so that both alphabets differ: `?>` and `~` produce `+`/`/` or `-`/`_`.
        let json = br#"{"version":"16.9.0-rc42-ee","x":"??>>~~"}"#;
        for engine in [&URL_SAFE, &URL_SAFE_NO_PAD, &STANDARD, &STANDARD_NO_PAD] {
            let encoded = engine.encode(json);
            assert_eq!(decode(&encoded).unwrap(), "16.9.0-rc42", "{encoded}");
            let escaped: String =
                percent_encoding::utf8_percent_encode(&encoded, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            assert_eq!(decode(&escaped).unwrap(), "16.9.0-rc42", "{escaped}");
        }
        let standard = STANDARD.encode(json);
        assert!(standard.contains('+'));
        assert_eq!(decode(&standard.replace('+', " ")).unwrap(), "16.9.0-rc42");
    }

    #[test]
    fn padding_may_be_partial_or_escaped() {
        let padded = URL_SAFE.encode(br#"{"version":"1.2.3"}"#);
        assert!(padded.ends_with("=="));
        assert_eq!(decode(&padded[..padded.len() - 1]).unwrap(), "1.2.3");
        assert_eq!(
            decode(&padded.replace('=', "%3D")).unwrap(),
            "1.2.3",
            "{padded}"
        );
        assert_eq!(decode(&format!("{padded}=")).unwrap(), "1.2.3");
    }

    #[test]
    fn the_parameter_is_found_raw() {
        assert_eq!(gitlab_info_param("gitlab_info=ab+/=="), Some("ab+/=="));
        assert_eq!(gitlab_info_param("a=1&gitlab_info=x=&b"), Some("x="));
        assert_eq!(gitlab_info_param("gitlab_info"), Some(""));
        assert_eq!(gitlab_info_param("gitlab_infox=1&scale=2"), None);
        assert_eq!(gitlab_info_param(""), None);
        assert_eq!(
            gitlab_info_param("gitlab_info=first&gitlab_info=second"),
            Some("first")
        );
    }

    #[test]
    fn query_cap_comes_first() {
        let long = format!("gitlab_info={}", "A".repeat(5000));
        assert_eq!(
            version_from_query(&long, 4096),
            Err(CheckInputError::QueryTooLong {
                len: long.len(),
                max: 4096
            })
        );
        assert_eq!(
            version_from_query("x=1", 4096),
            Err(CheckInputError::Missing)
        );
    }

    fn b64(json: &str) -> String {
        URL_SAFE.encode(json)
    }

    #[test]
    fn each_bad_input_has_its_own_error() {
        use CheckInputError::*;
        assert_eq!(decode(""), Err(Empty));
        assert_eq!(decode("%3D%3D"), Err(Empty));
        assert_eq!(decode(&"A".repeat(MAX_GITLAB_INFO_LEN + 1)), Err(TooLong));
        assert_eq!(decode(&"%41".repeat(MAX_GITLAB_INFO_LEN + 1)), Err(TooLong));
        assert!(matches!(decode("not*base64"), Err(NotBase64(m)) if m.contains('*')));
        assert!(matches!(decode("A"), Err(NotBase64(_))));
        assert!(matches!(decode("%FF%FE"), Err(NotBase64(m)) if m.contains("0xff")));
        assert!(matches!(decode(&b64("version=1")), Err(NotJson(_))));
        assert!(matches!(
            decode(&URL_SAFE.encode([0xff, 0xfe, 0x00])),
            Err(NotJson(_))
        ));
        assert_eq!(decode(&b64("[1,2]")), Err(NotAnObject("array")));
        assert_eq!(decode(&b64(r#"["16.0.0"]"#)), Err(NotAnObject("array")));
        assert_eq!(decode(&b64(" 16")), Err(NotAnObject("number")));
        assert!(matches!(decode(&b64("[1,")), Err(NotJson(_))));
        assert_eq!(decode(&b64("\"16.0.0\"")), Err(NotAnObject("string")));
        assert_eq!(decode(&b64("{}")), Err(MissingVersion));
        assert_eq!(decode(&b64(r#"{"Version":"1.0.0"}"#)), Err(MissingVersion));
        assert_eq!(
            decode(&b64(r#"{"version":16}"#)),
            Err(VersionNotString("number"))
        );
        assert_eq!(
            decode(&b64(r#"{"version":null}"#)),
            Err(VersionNotString("null"))
        );
        assert_eq!(
            decode(&b64(r#"{"version":["16.0.0"]}"#)),
            Err(VersionNotString("array"))
        );
        assert_eq!(
            decode(&b64(r#"{"version":""}"#)),
            Err(BadVersion(VersionError::Empty))
        );
        assert!(matches!(
            decode(&b64(r#"{"version":"<script>"}"#)),
            Err(BadVersion(VersionError::Malformed(_)))
        ));
    }

    #[test]
    fn extra_fields_and_escapes_are_fine() {
        assert_eq!(
            decode(&b64(r#"{"edition":"EE","version":"16\u002e7.2-ee"}"#)).unwrap(),
            "16.7.2"
        );
    }

    #[test]
    fn messages_name_the_problem() {
        for (error, needle) in [
            (CheckInputError::Missing, "missing"),
            (CheckInputError::Empty, "empty"),
            (CheckInputError::TooLong, "longer than"),
            (CheckInputError::NotBase64("x".into()), "base64"),
            (CheckInputError::NotJson("x".into()), "JSON"),
            (CheckInputError::NotAnObject("array"), "array"),
            (CheckInputError::MissingVersion, "no `version`"),
            (
                CheckInputError::VersionNotString("number"),
                "must be a string",
            ),
        ] {
            assert!(error.to_string().contains(needle), "{error}");
        }
    }

    fn host(referer: &str) -> Option<String> {
        referer_host(referer.as_bytes())
    }

    #[test]
    fn hostnames_are_normalised() {
        assert_eq!(
            host("https://gitlab.example.com/help").as_deref(),
            Some("gitlab.example.com")
        );
        assert_eq!(
            host("https://gitlab.example.com/").as_deref(),
            Some("gitlab.example.com")
        );
        assert_eq!(
            host("https://gitlab.example.com").as_deref(),
            Some("gitlab.example.com")
        );
        assert_eq!(
            host("HTTPS://GitLab.Example.COM:8443/admin?x#y").as_deref(),
            Some("gitlab.example.com")
        );
        assert_eq!(
            host("http://user:secret@gitlab.example.com:80/").as_deref(),
            Some("gitlab.example.com")
        );
        assert_eq!(
            host("https://gitlab.example.com./").as_deref(),
            Some("gitlab.example.com")
        );
        assert_eq!(
            host("https://localhost:3000/help").as_deref(),
            Some("localhost")
        );
        assert_eq!(
            host("https://git.example.com?x=/").as_deref(),
            Some("git.example.com")
        );
        assert_eq!(
            host("https://git.example.com\\evil.com/").as_deref(),
            Some("git.example.com")
        );
    }

    #[test]
    fn the_fast_path_agrees_with_the_url_parser() {
        let mut authorities: Vec<String> = [
            "gitlab.example.com",
            "GitLab.Example.COM:8443",
            "gitlab.example.com.",
            "gitlab.example.com:",
            "gitlab.example.com:65535",
            "gitlab.example.com:65536",
            "gitlab.example.com:8x",
            "localhost",
            "a-b.c-d.example",
            "-lead.example",
            "trail-.example",
            "a..b",
            ".example",
            "example..",
            "127.1",
            "1.2.3.4",
            "host.123",
            "host.0x1f",
            "0x7f.1",
            "0xzz",
            "host.0xzz",
            "123abc.example",
            "xn--bcher-kva.example",
            "XN--BCHER-KVA.example",
            "xn--.example",
            "ab--cd.example",
            "a.b.c.d.e.f",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every short combination of the characters that matter.
        let alphabet = ['a', 'Z', '0', '9', '-', '.', 'x', ':'];
        let mut frontier = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for prefix in &frontier {
                for c in alphabet {
                    next.push(format!("{prefix}{c}"));
                }
            }
            authorities.extend(next.iter().cloned());
            frontier = next;
        }
        for authority in &authorities {
            let slow = parsed_host(authority).and_then(well_formed);
            if let Some(fast) = plain_host(authority) {
                assert_eq!(
                    well_formed(fast.to_ascii_lowercase()),
                    slow,
                    "{authority:?}"
                );
            }
        }
        // The fast path does take the usual names.
        assert!(plain_host("GitLab.Example.COM:8443").is_some());
        assert!(plain_host("localhost").is_some());
    }

    #[test]
    fn international_names_become_punycode() {
        assert_eq!(
            host("https://bücher.example/help").as_deref(),
            Some("xn--bcher-kva.example")
        );
        assert_eq!(
            host("https://BÜCHER.example/").as_deref(),
            Some("xn--bcher-kva.example")
        );
        assert_eq!(
            host("https://xn--bcher-kva.example/").as_deref(),
            Some("xn--bcher-kva.example")
        );
    }

    #[test]
    fn hostile_or_useless_referers_give_no_host() {
        for referer in [
            "",
            "javascript:alert(1)",
            "data:text/html,<b>x</b>",
            "ftp://files.example.com/",
            "file:///etc/passwd",
            "gitlab.example.com",
            "//gitlab.example.com/",
            "https://",
            "https:///path",
            "https://[2001:db8::1]:8443/help",
            "https://10.0.0.5/help",
            "https://127.1/",
            "https://0x7f000001/",
            "https://exa mple.com/",
            "https://exa<mple.com/",
            "https://%00.example.com/",
            "not a url at all",
        ] {
            assert_eq!(host(referer), None, "{referer:?}");
        }
        let long_label = format!("https://{}.example.com/", "a".repeat(8 * 1024));
        assert_eq!(host(&long_label), None);
        let long_name = format!("https://{}example.com/", "a.".repeat(130));
        assert_eq!(host(&long_name), None, "longer than 253");
        let long_path = format!("https://gitlab.example.com/{}", "p".repeat(8 * 1024));
        assert_eq!(host(&long_path).as_deref(), Some("gitlab.example.com"));
        assert_eq!(referer_host(b"https://gitlab.\xff.com/"), None);
    }
}
