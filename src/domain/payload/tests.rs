//! Unit tests of payload parsing, flattening and summary.

use super::*;
use chrono::TimeZone;
use serde_json::Value;

/// The complete 13.9.0-pre "metrics queries" payload (database metrics are SQL text).
const PAYLOAD_13_9: &[u8] = include_bytes!("../../../tests/fixtures/payload_13.9.0-pre.json");
/// A full-size 18.9 payload from `scripts/gen_payload.py --seed 21 --special-rate 0.02`.
const PAYLOAD_18_9: &[u8] = include_bytes!("../../../tests/fixtures/payload_18.9.0_generated.json");
/// A "required categories only" 18.9 payload from `gen_payload.py --seed 2 --minimal`.
const PAYLOAD_18_9_MINIMAL: &[u8] =
    include_bytes!("../../../tests/fixtures/payload_18.9.0_minimal.json");

fn parse(bytes: &[u8]) -> Result<ParsedPayload, PayloadError> {
    parse_payload(bytes, &PayloadLimits::default())
}

fn parse_str(text: &str) -> Result<ParsedPayload, PayloadError> {
    parse(text.as_bytes())
}

fn error_of(text: &str) -> String {
    parse_str(text).unwrap_err().to_string()
}

const ID: &str = r#""uuid":"abc","recorded_at":"2024-01-05 10:00:00 UTC""#;

fn with_id(rest: &str) -> String {
    if rest.is_empty() {
        format!("{{{ID}}}")
    } else {
        format!("{{{ID},{rest}}}")
    }
}

#[test]
fn fixture_13_9_summary() {
    let parsed = parse(PAYLOAD_13_9).unwrap();
    let s = &parsed.summary;
    assert_eq!(parsed.top_level_keys, 58);
    assert_eq!(s.uuid, "b4002b0e-666a-43ba-9422-6cc2cab3baff");
    assert_eq!(s.unique_instance_id, None);
    assert_eq!(s.hostname.as_deref(), Some("127.0.0.1"));
    let version = s.version.as_ref().unwrap();
    assert_eq!(version.raw, "13.9.0-pre");
    assert_eq!(version.normalized, "13.9.0-pre");
    assert_eq!(
        (version.major, version.minor, version.patch),
        (Some(13), Some(9), Some(0))
    );
    assert_eq!(s.edition.as_deref(), Some("EEU"));
    assert_eq!(
        s.installation_type.as_deref(),
        Some("gitlab-development-kit")
    );
    // The sample holds SQL text here: unusable, so None rather than an error.
    assert_eq!(s.active_user_count, None);
    assert_eq!(s.historical_max_users, Some(66));
    assert_eq!(
        s.license_md5.as_deref(),
        Some("106a4b25eca48a02bc6f30031a7cde05")
    );
    assert_eq!(s.license_sha256, None);
    assert_eq!(s.license_id, Some(32));
    assert_eq!(s.license_plan.as_deref(), Some("ultimate"));
    assert_eq!(s.license_trial, Some(false));
    assert_eq!(s.license_expires_at, None);
    assert_eq!(s.license_user_count, Some(30));
    assert!(s.licensee_name.is_some());
    assert_eq!(
        s.recorded_at,
        Utc.with_ymd_and_hms(2021, 2, 9, 13, 25, 42).unwrap()
    );
}

#[test]
fn fixture_13_9_flattening() {
    let parsed = parse(PAYLOAD_13_9).unwrap();
    let metrics = &parsed.metrics;
    // 1,296 leaves in all: 717 strings (mostly SQL), 4 arrays of strings or empty, and 3
    // nulls are skipped; 525 integers, 1 float and 46 booleans remain.
    assert_eq!(metrics.len(), 572);
    assert_eq!(metrics.iter().filter(|m| m.is_bool).count(), 46);
    assert_eq!(metrics.skipped_long_keys(), 0);
    assert_eq!(metrics.get("license_id"), Some(32.0));
    assert_eq!(metrics.get("historical_max_users"), Some(66.0));
    let ldap = metrics.metric("ldap_enabled").unwrap();
    assert!(ldap.is_bool);
    assert_eq!(ldap.value, 0.0);
    assert_eq!(metrics.get("gitlab_shared_runners_enabled"), Some(1.0));
    // SQL text is not a metric.
    assert_eq!(metrics.get("counts.issues"), None);
    // Sorted, so binary search works and the order is stable across serde_json features.
    let keys: Vec<&str> = metrics.iter().map(|m| m.key).collect();
    assert!(keys.windows(2).all(|pair| pair[0] <= pair[1]));
    // Nested paths use dots.
    assert!(keys
        .iter()
        .any(|k| k.starts_with("usage_activity_by_stage_monthly.")));
    assert!(keys.iter().any(|k| k.starts_with("redis_hll_counters.")));
}

#[test]
fn generated_18_9_payload() {
    let parsed = parse(PAYLOAD_18_9).unwrap();
    let s = &parsed.summary;
    assert!(s.unique_instance_id.is_some());
    let version = s.version.as_ref().unwrap();
    assert!(version.raw.starts_with("18.9.0"));
    assert_eq!(version.normalized, "18.9.0");
    assert_eq!(version.major, Some(18));
    assert!(s.active_user_count.is_some());
    // ~4,200 key paths; string-valued ones are skipped, topology adds a few per node.
    let n = parsed.metrics.len();
    assert!((3_900..=4_600).contains(&n), "{n} metrics");
    assert!(parsed.metrics.get("counts.issues").is_some());
    assert!(parsed
        .metrics
        .iter()
        .any(|m| m.key.contains("topology.nodes[0].")));
    // The generator sprinkles sentinels; they are kept, flagged, and exactly valued.
    let specials: Vec<_> = parsed.metrics.iter().filter(|m| !m.is_valid()).collect();
    assert!(!specials.is_empty());
    assert!(specials
        .iter()
        .all(|m| is_special_value(m.value) || m.special == Some(SpecialValue::HistogramFailure)));
}

#[test]
fn generated_minimal_payload() {
    let parsed = parse(PAYLOAD_18_9_MINIMAL).unwrap();
    let n = parsed.metrics.len();
    assert!((200..=400).contains(&n), "{n} metrics");
    // Optional-category identity fields are absent in minimal payloads.
    assert_eq!(parsed.summary.unique_instance_id, None);
    assert_eq!(parsed.summary.installation_type, None);
    assert!(parsed.summary.hostname.is_some());
}

#[test]
fn rejects_non_json_with_position() {
    assert_eq!(
        error_of("{\"a\": ?}"),
        "payload is not valid JSON at line 1 column 7: expected value"
    );
    let err = parse_str("{\n  \"uuid\": \"x\",\n}").unwrap_err();
    assert!(
        matches!(err, PayloadError::InvalidJson { line: 3, .. }),
        "{err}"
    );
    assert!(matches!(
        parse(b"{\"uuid\": \"\xff\"}").unwrap_err(),
        PayloadError::InvalidJson { .. }
    ));
    assert!(error_of("{\"uuid\":").starts_with("payload is not valid JSON at line 1"));
}

#[test]
fn rejects_empty_and_non_objects() {
    assert_eq!(error_of(""), "payload is empty");
    assert_eq!(error_of("  \n "), "payload is empty");
    assert_eq!(
        error_of("[1,2]"),
        "payload must be a JSON object, not an array"
    );
    assert_eq!(
        error_of("\"x\""),
        "payload must be a JSON object, not a string"
    );
    assert_eq!(error_of("null"), "payload must be a JSON object, not null");
    assert_eq!(
        error_of("42"),
        "payload must be a JSON object, not a number"
    );
}

#[test]
fn accepts_bom_and_whitespace() {
    let body = format!("\u{feff}\n  {}\n", with_id(""));
    assert_eq!(parse_str(&body).unwrap().summary.uuid, "abc");
}

#[test]
fn uuid_is_required_non_empty_string() {
    let at = r#""recorded_at":"2024-01-05 10:00:00 UTC""#;
    assert_eq!(
        error_of(&format!("{{{at}}}")),
        "missing required field `uuid`"
    );
    assert_eq!(
        error_of(&format!("{{{at},\"uuid\":null}}")),
        "missing required field `uuid`"
    );
    assert_eq!(
        error_of(&format!("{{{at},\"uuid\":\"  \"}}")),
        "field `uuid` must not be empty"
    );
    assert_eq!(
        error_of(&format!("{{{at},\"uuid\":123}}")),
        "field `uuid` must be a string"
    );
    let long = "a".repeat(MAX_ID_LEN + 1);
    assert_eq!(
        error_of(&format!("{{{at},\"uuid\":\"{long}\"}}")),
        format!("field `uuid` is longer than {MAX_ID_LEN} characters")
    );
    let parsed = parse_str(&format!("{{{at},\"uuid\":\" u-1 \"}}")).unwrap();
    assert_eq!(parsed.summary.uuid, "u-1");
}

#[test]
fn recorded_at_is_required_and_parsed() {
    assert_eq!(
        error_of(r#"{"uuid":"a"}"#),
        "missing required field `recorded_at`"
    );
    assert_eq!(
        error_of(r#"{"uuid":"a","recorded_at":1704448800}"#),
        "field `recorded_at` must be a string timestamp"
    );
    assert_eq!(
        error_of(r#"{"uuid":"a","recorded_at":""}"#),
        "field `recorded_at` must not be empty"
    );
    assert_eq!(
        error_of(r#"{"uuid":"a","recorded_at":"last tuesday"}"#),
        "field `recorded_at` is not a recognised timestamp: \"last tuesday\""
    );
}

#[test]
fn timestamp_forms() {
    let utc = |y, mo, d, h, mi, s| Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap();
    let ms = chrono::Duration::milliseconds(123);
    let cases = [
        ("2021-02-09 11:32:05 UTC", utc(2021, 2, 9, 11, 32, 5)),
        ("2021-02-09 11:32:05UTC", utc(2021, 2, 9, 11, 32, 5)),
        ("2024-01-05T10:00:00.123Z", utc(2024, 1, 5, 10, 0, 0) + ms),
        ("2024-01-05 10:00:00 +0000", utc(2024, 1, 5, 10, 0, 0)),
        ("2024-01-05 10:00:00 -0500", utc(2024, 1, 5, 15, 0, 0)),
        ("2024-01-05 10:00:00 +01:00", utc(2024, 1, 5, 9, 0, 0)),
        (
            "2020-04-17T07:43:54.162+00:00",
            utc(2020, 4, 17, 7, 43, 54) + chrono::Duration::milliseconds(162),
        ),
        ("2024-01-05T10:00:00+02:00", utc(2024, 1, 5, 8, 0, 0)),
        ("2024-01-05 10:00:00Z", utc(2024, 1, 5, 10, 0, 0)),
        ("2024-01-05T10:00:00", utc(2024, 1, 5, 10, 0, 0)),
        (
            "2024-01-05 10:00:00.5",
            utc(2024, 1, 5, 10, 0, 0) + chrono::Duration::milliseconds(500),
        ),
        (" 2024-01-05 10:00:00 UTC\n", utc(2024, 1, 5, 10, 0, 0)),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_timestamp(text), Some(expected), "{text}");
    }
    for bad in [
        "",
        "2024-01-05",
        "2024-13-05 10:00:00 UTC",
        "10:00",
        "2024-01-05 25:00:00",
    ] {
        assert_eq!(parse_timestamp(bad), None, "{bad}");
    }
}

#[test]
fn identity_fields_must_be_strings() {
    for field in ["unique_instance_id", "hostname", "version"] {
        assert_eq!(
            error_of(&with_id(&format!("\"{field}\":42"))),
            format!("field `{field}` must be a string")
        );
        assert_eq!(
            error_of(&with_id(&format!("\"{field}\":{{}}"))),
            format!("field `{field}` must be a string")
        );
        // null and blank mean "not sent".
        assert!(parse_str(&with_id(&format!("\"{field}\":null"))).is_ok());
        assert!(parse_str(&with_id(&format!("\"{field}\":\" \""))).is_ok());
    }
}

#[test]
fn optional_fields_are_lenient() {
    let parsed = parse_str(&with_id(
        r#""active_user_count":"123","historical_max_users":150.0,"license_id":"SELECT 1",
               "license_trial":"true","license_user_count":true,"edition":7,
               "license_expires_at":"2025-12-31","licensee":{"Name":"ACME","Email":"x@y"},
               "license_starts_at":"2025-01-01T10:00:00.000Z","license_plan":"" "#,
    ))
    .unwrap();
    let s = parsed.summary;
    assert_eq!(s.active_user_count, Some(123));
    assert_eq!(s.historical_max_users, Some(150));
    assert_eq!(s.license_id, None);
    assert_eq!(s.license_trial, Some(true));
    assert_eq!(s.license_user_count, None);
    assert_eq!(s.edition, None);
    assert_eq!(s.license_expires_at, NaiveDate::from_ymd_opt(2025, 12, 31));
    assert_eq!(s.license_starts_at, NaiveDate::from_ymd_opt(2025, 1, 1));
    assert_eq!(s.licensee_name.as_deref(), Some("ACME"));
    assert_eq!(s.license_plan, None);
    assert_eq!(s.hostname, None);
    assert_eq!(s.version, None);
}

#[test]
fn special_counts_are_kept_in_the_summary() {
    let s = parse_str(&with_id(r#""active_user_count":-1"#))
        .unwrap()
        .summary;
    assert_eq!(s.active_user_count, Some(-1));
}

#[test]
fn version_normalisation() {
    let cases = [
        ("18.9.0-ee", "18.9.0", Some((18, 9, 0))),
        ("10.0.4+ee", "10.0.4", Some((10, 0, 4))),
        ("13.9.0-pre", "13.9.0-pre", Some((13, 9, 0))),
        ("16.9.0-rc42", "16.9.0-rc42", Some((16, 9, 0))),
        ("16.9.0-rc42-ee", "16.9.0-rc42", Some((16, 9, 0))),
        ("v15.2.2", "15.2.2", Some((15, 2, 2))),
        ("15.2", "15.2", None),
        ("8.4-ee", "8.4-ee", None), // unreadable versions are kept as sent
        ("garbage", "garbage", None),
    ];
    for (raw, normalized, parts) in cases {
        let v = normalize_version(raw);
        assert_eq!(v.raw, raw);
        assert_eq!(v.normalized, normalized, "{raw}");
        let got = v
            .major
            .map(|major| (major, v.minor.unwrap(), v.patch.unwrap()));
        assert_eq!(got, parts, "{raw}");
    }
}

#[test]
fn flattening_rules() {
    let parsed = parse_str(&with_id(
        r#""counts":{"issues":5,"ratio":0.5,"failed":-1,"hll":-2,"placeholder":-3,
                         "old":-1000,"odd":-7,"sql":"SELECT 1","none":null},
               "settings":{"ldap_enabled":true,"nested":{"deep":{"x":1}}},
               "histogram":{"-1":-1},
               "real_histogram":{"-1":3,"5":2},
               "topology":{"nodes":[{"node_cpus":8,"node_services":[{"process_count":2}]}],
                           "failures":[]},
               "gitaly":{"filesystems":["ext4"]},
               "flags":[true,1]"#,
    ))
    .unwrap();
    let m = &parsed.metrics;
    let pairs = m.to_pairs();
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "counts.failed",
            "counts.hll",
            "counts.issues",
            "counts.odd",
            "counts.old",
            "counts.placeholder",
            "counts.ratio",
            "flags[0]",
            "flags[1]",
            "histogram.-1",
            "real_histogram.-1",
            "real_histogram.5",
            "settings.ldap_enabled",
            "settings.nested.deep.x",
            "topology.nodes[0].node_cpus",
            "topology.nodes[0].node_services[0].process_count",
        ]
    );
    assert_eq!(m.get("counts.issues"), Some(5.0));
    assert_eq!(m.get("counts.ratio"), Some(0.5));
    // Sentinels are data: exact values kept, flagged, excluded by get_valid.
    for (key, value, kind) in [
        ("counts.failed", -1.0, SpecialValue::Failure),
        ("counts.hll", -2.0, SpecialValue::HllFailure),
        ("counts.placeholder", -3.0, SpecialValue::Placeholder),
        ("counts.old", -1000.0, SpecialValue::Deprecated),
        ("histogram.-1", -1.0, SpecialValue::HistogramFailure),
    ] {
        let metric = m.metric(key).unwrap();
        assert_eq!(metric.value, value, "{key}");
        assert_eq!(metric.special, Some(kind), "{key}");
        assert_eq!(m.get_valid(key), None, "{key}");
    }
    // Not a sentinel: -7 is odd but not one of GitLab's codes; a histogram with a
    // real "-1" bucket is not a failure.
    assert_eq!(m.metric("counts.odd").unwrap().special, None);
    assert_eq!(m.metric("real_histogram.-1").unwrap().special, None);
    assert_eq!(m.histogram_failures().collect::<Vec<_>>(), ["histogram"]);
    assert!(m.metric("flags[0]").unwrap().is_bool);
    assert!(!m.metric("flags[1]").unwrap().is_bool);
    assert_eq!(m.get("settings.ldap_enabled"), Some(1.0));
    assert_eq!(m.get("counts"), None);
    assert_eq!(m.get("counts.sql"), None);
    assert_eq!(m.get("counts.none"), None);
}

#[test]
fn special_value_helpers() {
    for v in [-1.0, -2.0, -3.0, -1000.0] {
        assert!(is_special_value(v));
    }
    for v in [0.0, 1.0, -4.0, -1.5, -999.0, f64::NAN] {
        assert!(!is_special_value(v));
    }
    assert!(is_histogram_failure(&serde_json::json!({"-1": -1})));
    assert!(is_histogram_failure(&serde_json::json!({"-1": -1.0})));
    assert!(!is_histogram_failure(
        &serde_json::json!({"-1": -1, "0": 4})
    ));
    assert!(!is_histogram_failure(&serde_json::json!({"-1": 2})));
    assert!(!is_histogram_failure(&serde_json::json!(-1)));
}

#[test]
fn depth_limit_is_exact_and_ignores_brackets_in_strings() {
    // The payload object is depth 1, so 63 nested arrays inside it reach exactly 64.
    let nested = |n: usize| with_id(&format!("\"x\":{}1{}", "[".repeat(n), "]".repeat(n)));
    assert!(parse_str(&nested(63)).is_ok());
    assert_eq!(
        parse_str(&nested(64)).unwrap_err(),
        PayloadError::TooDeep { max_depth: 64 }
    );
    // Brackets in strings (even after an escaped quote) are text, not nesting.
    let tricky = with_id(&format!(r#""k\"[[[":"{}","v":[1]"#, "[".repeat(100)));
    let limits = PayloadLimits {
        max_depth: 2,
        ..PayloadLimits::default()
    };
    assert!(parse_payload(tricky.as_bytes(), &limits).is_ok());
    // A failed histogram is an object too.
    let histogram = with_id(r#""h":{"-1":-1}"#);
    assert!(parse_payload(histogram.as_bytes(), &limits).is_ok());
    let limits = PayloadLimits {
        max_depth: 1,
        ..PayloadLimits::default()
    };
    assert!(parse_payload(histogram.as_bytes(), &limits).is_err());
    assert!(parse_payload(with_id(r#""n":1"#).as_bytes(), &limits).is_ok());
}

#[test]
fn deep_nesting_is_rejected_without_blowing_the_stack() {
    // 100,000 nested arrays inside a payload, unterminated, as an attacker would send them.
    let body = format!("{{{ID},\"x\":{}", "[".repeat(100_000));
    assert_eq!(
        parse_str(&body).unwrap_err().to_string(),
        "JSON nesting deeper than 64 levels"
    );
    // Terminated, and a full megabyte of it.
    let body = with_id(&format!(
        "\"x\":{}1{}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    ));
    assert_eq!(
        parse_str(&body).unwrap_err(),
        PayloadError::TooDeep { max_depth: 64 }
    );
    let mut body = b"{\"x\":".to_vec();
    body.resize(1 << 20, b'[');
    assert_eq!(
        parse(&body).unwrap_err(),
        PayloadError::TooDeep { max_depth: 64 }
    );
    // Deep objects.
    assert_eq!(
        parse_str(&"{\"a\":".repeat(100_000)).unwrap_err(),
        PayloadError::TooDeep { max_depth: 64 }
    );
    // A bare array is refused for what it is before its depth matters.
    assert_eq!(
        parse_str(&"[".repeat(100_000)).unwrap_err().to_string(),
        "payload must be a JSON object, not an array"
    );
    // Objects count too; the configured limit applies.
    let limits = PayloadLimits {
        max_depth: 3,
        ..PayloadLimits::default()
    };
    let body = with_id(r#""a":{"b":{"c":{"d":1}}}"#);
    assert!(matches!(
        parse_payload(body.as_bytes(), &limits),
        Err(PayloadError::TooDeep { max_depth: 3 })
    ));
    let body = with_id(r#""a":{"b":{"c":1}}"#);
    assert!(parse_payload(body.as_bytes(), &limits).is_ok());
}

#[test]
fn trailing_garbage_is_invalid_json() {
    let body = format!("{} x", with_id(""));
    assert!(matches!(
        parse_str(&body).unwrap_err(),
        PayloadError::InvalidJson { ref reason, .. } if reason == "trailing characters"
    ));
}

#[test]
fn parser_depth_constant_matches_serde_json() {
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert!(serde_json::from_str::<Value>(&nested(PARSER_MAX_DEPTH)).is_ok());
    assert!(serde_json::from_str::<Value>(&nested(PARSER_MAX_DEPTH + 1)).is_err());
    // A limit above the parser's is reported as the parser's.
    let limits = PayloadLimits {
        max_depth: 1_000,
        ..PayloadLimits::default()
    };
    let body = with_id(&format!("\"x\":{}", nested(200)));
    assert_eq!(
        parse_payload(body.as_bytes(), &limits).unwrap_err(),
        PayloadError::TooDeep {
            max_depth: PARSER_MAX_DEPTH
        }
    );
}

#[test]
fn metric_count_and_key_length_limits() {
    let limits = PayloadLimits {
        max_metrics: 3,
        max_key_len: 10,
        ..PayloadLimits::default()
    };
    let ok = with_id(r#""a":1,"b":2,"c":{"d":true},"a_very_long_key":4"#);
    let parsed = parse_payload(ok.as_bytes(), &limits).unwrap();
    assert_eq!(parsed.metrics.len(), 3);
    assert_eq!(parsed.metrics.skipped_long_keys(), 1);
    let too_many = with_id(r#""a":1,"b":2,"c":3,"d":4"#);
    assert_eq!(
        parse_payload(too_many.as_bytes(), &limits)
            .unwrap_err()
            .to_string(),
        "payload has more than 3 numeric or boolean metrics"
    );
}

#[test]
fn duplicate_flattened_paths_keep_the_last_value() {
    let parsed = parse_str(&with_id(r#""a":{"b":1},"a.b":2"#)).unwrap();
    assert_eq!(parsed.metrics.len(), 1);
    assert_eq!(parsed.metrics.get("a.b"), Some(2.0));
    let parsed = parse_str(&with_id(r#""c":{"a":1,"a":2,"z":1,"a":3}"#)).unwrap();
    assert_eq!(parsed.metrics.get("c.a"), Some(3.0));
    assert_eq!(parsed.metrics.len(), 2);
}

#[test]
fn integers_are_kept_exactly_beside_the_double() {
    let body = with_id(
        r#""database":{"pg_system_id":6842684531675334351},"f":{"ratio":0.5,"whole":3.0},
        "flag":true,"off":false,"huge":18446744073709551615,"neg":-3"#,
    );
    let m = parse_str(&body).unwrap().metrics;
    let id = m.metric("database.pg_system_id").unwrap();
    assert_eq!(id.exact, Some(6_842_684_531_675_334_351));
    assert_eq!(id.value, 6_842_684_531_675_334_351_i64 as f64);
    assert_eq!(m.metric("f.ratio").unwrap().exact, None);
    // Written as a float, kept as a float.
    assert_eq!(m.metric("f.whole").unwrap().exact, None);
    assert_eq!(m.metric("flag").unwrap().exact, Some(1));
    assert_eq!(m.metric("off").unwrap().exact, Some(0));
    assert_eq!(m.metric("huge").unwrap().exact, None);
    assert_eq!(m.metric("neg").unwrap().exact, Some(-3));
}

#[test]
fn a_non_utf8_body_is_refused_with_its_position() {
    // Valid UTF-8 goes through the parser that trusts it; anything else through the checking
    // one, which must still say where the bad byte is.
    let err = parse(b"{\n\"uuid\": \"ok\",\n\"x\": \"\xff\"}").unwrap_err();
    assert!(
        matches!(err, PayloadError::InvalidJson { line: 3, .. }),
        "{err}"
    );
}

#[test]
fn keys_longer_than_the_body_grow_past_the_reservation() {
    // The key buffer is reserved from the body's length; nested short keys repeat their
    // prefix per leaf, so the paths can be longer than the body itself.
    let prefix = "p".repeat(300);
    let leaves: Vec<String> = (0..200).map(|n| format!("\"k{n}\":{n}")).collect();
    let text = with_id(&format!("\"{prefix}\":{{{}}}", leaves.join(",")));
    let parsed = parse_str(&text).unwrap();
    assert_eq!(parsed.metrics.len(), 200);
    assert_eq!(parsed.metrics.get(&format!("{prefix}.k199")), Some(199.0));
    assert_eq!(parsed.metrics.key_with_nul(), None);
}

#[test]
fn a_key_with_nul_is_found_once_sorted() {
    let parsed = parse_str(&with_id(r#""b":{"x\u0000y":1},"a":2,"c\u0000":3"#)).unwrap();
    assert_eq!(parsed.metrics.key_with_nul(), Some("b.x\0y"));
}
