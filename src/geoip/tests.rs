//! GeoIP tests: lookups on the fixture database, and damaged files refused at start-up.
use super::validate::*;
use super::*;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/geoip-test.mmdb"
);
const CORRUPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/geoip-corrupt.mmdb"
);

fn fixture() -> GeoIp {
    GeoIp::open(Path::new(FIXTURE)).expect("fixture opens")
}

fn country(geo: &GeoIp, ip: &str) -> Option<String> {
    geo.country(ip.parse().unwrap())
        .map(|c| c.as_str().to_owned())
}

#[test]
fn country_code_accepts_two_letters_only() {
    assert_eq!(CountryCode::parse("DE").unwrap().as_str(), "DE");
    assert_eq!(CountryCode::parse("se").unwrap().as_str(), "SE");
    assert_eq!(CountryCode::parse("gB").unwrap().to_string(), "GB");
    for bad in ["", "D", "DEU", "A1", "1A", "D ", " D", "É1", "ÉÉ", "D\0"] {
        assert_eq!(CountryCode::parse(bad), None, "{bad:?}");
    }
    assert_eq!(
        format!("{:?}", CountryCode::parse("fr").unwrap()),
        "CountryCode(\"FR\")"
    );
}

#[test]
fn country_code_serde_is_a_plain_string() {
    let code = CountryCode::parse("NL").unwrap();
    assert_eq!(serde_json::to_string(&code).unwrap(), "\"NL\"");
    let back: CountryCode = serde_json::from_str("\"nl\"").unwrap();
    assert_eq!(back, code);
    assert!(serde_json::from_str::<CountryCode>("\"N1\"").is_err());
    assert!(serde_json::from_str::<CountryCode>("12").is_err());
}

#[test]
fn fixture_networks_resolve_in_both_record_shapes() {
    let geo = fixture();
    assert_eq!(geo.database_type(), "version-app-test-Country");
    assert_eq!(geo.build_epoch(), 1_704_067_200);
    let expected = [
        // loopback, for the integration tests
        ("127.0.0.1", Some("AQ")),
        ("127.255.255.254", Some("AQ")),
        ("::1", Some("AQ")),
        // MaxMind shape; `country` wins over `registered_country`
        ("192.0.2.1", Some("DE")),
        ("192.0.2.127", Some("DE")),
        // ip-location-db shape, nested in the /24 above: longest prefix wins
        ("192.0.2.128", Some("CH")),
        ("192.0.2.255", Some("CH")),
        ("198.51.100.7", Some("FR")),
        // MaxMind shape with only `registered_country`
        ("203.0.113.10", Some("JP")),
        // pseudo-code "A1" and a record without any country: no country
        ("203.0.113.130", None),
        ("203.0.113.200", None),
        ("2001:db8::1", Some("NL")),
        // "se" in the file, normalised
        ("2001:db8:8000::1", Some("SE")),
        ("2001:db8:ffff:ffff::1", Some("SE")),
    ];
    for (ip, want) in expected {
        assert_eq!(country(&geo, ip).as_deref(), want, "{ip}");
    }
}

#[test]
fn unknown_addresses_have_no_country() {
    let geo = fixture();
    for ip in [
        "10.0.0.1",
        "8.8.8.8",
        "192.0.3.1",
        "255.255.255.255",
        "2001:db9::1",
        "fe80::1",
        "::2",
    ] {
        assert_eq!(country(&geo, ip), None, "{ip}");
    }
}

#[test]
fn ipv4_mapped_ipv6_is_looked_up_as_ipv4() {
    let geo = fixture();
    assert_eq!(country(&geo, "::ffff:198.51.100.7").as_deref(), Some("FR"));
    assert_eq!(country(&geo, "::ffff:127.0.0.1").as_deref(), Some("AQ"));
    assert_eq!(country(&geo, "::ffff:10.0.0.1"), None);
}

#[test]
fn missing_file_is_a_read_error() {
    let path = Path::new(FIXTURE).with_file_name("no-such-geoip.mmdb");
    match GeoIp::open(&path) {
        Err(GeoIpError::Read { source, path: p }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            assert_eq!(p, path);
        }
        other => panic!("expected a read error, got {other:?}"),
    }
    assert!(GeoIp::open_optional(Some(&path)).is_none());
}

#[test]
fn corrupt_fixture_is_rejected_at_open() {
    let err = GeoIp::open(Path::new(CORRUPT)).unwrap_err();
    assert!(matches!(err, GeoIpError::Invalid { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("geoip-corrupt.mmdb"), "{message}");
    assert!(message.contains("outside the data section"), "{message}");
    assert!(GeoIp::open_optional(Some(Path::new(CORRUPT))).is_none());
}

#[test]
fn open_optional_without_a_path_is_none_and_with_a_good_one_loads() {
    assert!(GeoIp::open_optional(None).is_none());
    let geo = GeoIp::open_optional(Some(Path::new(FIXTURE))).expect("fixture loads");
    assert_eq!(country(&geo, "198.51.100.1").as_deref(), Some("FR"));
    assert!(format!("{geo:?}").contains("version-app-test-Country"));
}

#[test]
fn open_optional_warns_naming_path_and_reason() {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        assert!(GeoIp::open_optional(Some(Path::new(CORRUPT))).is_none());
    });
    let logged = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("WARN"), "{logged}");
    assert!(logged.contains("geoip-corrupt.mmdb"), "{logged}");
    assert!(logged.contains("outside the data section"), "{logged}");
}

#[test]
fn damaged_bytes_are_rejected_not_panicking_later() {
    let good = std::fs::read(FIXTURE).unwrap();
    // Not a database at all, and empty.
    assert!(GeoIp::from_bytes(b"<html>502 Bad Gateway</html>".to_vec()).is_err());
    assert!(GeoIp::from_bytes(Vec::new()).is_err());
    // Wrapped in something (as if a tar header were left in front): the
    // metadata still parses but the tree is shifted.
    let mut shifted = vec![0u8; 512];
    shifted.extend_from_slice(&good);
    let reason = GeoIp::from_bytes(shifted).unwrap_err();
    assert!(
        reason.contains("separator") || reason.contains("outside"),
        "{reason}"
    );
    // A download cut short anywhere loses (part of) the metadata.
    for len in 0..good.len() {
        assert!(
            GeoIp::from_bytes(good[..len].to_vec()).is_err(),
            "truncated to {len}"
        );
    }
    // A damaged data section: every reachable record is decoded at open.
    let tree_len = {
        let r = Reader::from_source(&good[..]).unwrap();
        r.metadata.node_count as usize * usize::from(r.metadata.record_size) / 4
    };
    let mut data_damaged = good.clone();
    let data = tree_len + SEPARATOR_LEN;
    data_damaged[data..data + 64].fill(0xff);
    assert!(GeoIp::from_bytes(data_damaged).is_err());
}

/// Builds small MaxMind DB files by hand, for shapes the fixture cannot
/// cover (IPv4-only trees, 28/32-bit records, databases without countries).
mod build {
    /// A value in the MaxMind DB data format (only what the tests need).
    pub enum V {
        Str(&'static str),
        U16(u16),
        U32(u32),
        U64(u64),
        Map(Vec<(&'static str, V)>),
        Arr(Vec<V>),
        /// A pointer to this offset in the data section.
        Ptr(usize),
    }

    fn ctrl(out: &mut Vec<u8>, type_id: u8, size: usize) {
        assert!(size < 29, "tests only need short values");
        if type_id <= 7 {
            out.push((type_id << 5) | size as u8);
        } else {
            // Extended type: type 0 in the control byte, then type - 7.
            out.extend_from_slice(&[size as u8, type_id - 7]);
        }
    }

    fn uint(out: &mut Vec<u8>, type_id: u8, v: u64) {
        let bytes = v.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        ctrl(out, type_id, 8 - skip);
        out.extend_from_slice(&bytes[skip..]);
    }

    pub fn encode(out: &mut Vec<u8>, v: &V) {
        match v {
            V::Str(s) => {
                ctrl(out, 2, s.len());
                out.extend_from_slice(s.as_bytes());
            }
            V::U16(n) => uint(out, 5, u64::from(*n)),
            V::U32(n) => uint(out, 6, u64::from(*n)),
            V::U64(n) => uint(out, 9, *n),
            V::Map(entries) => {
                ctrl(out, 7, entries.len());
                for (k, v) in entries {
                    encode(out, &V::Str(k));
                    encode(out, v);
                }
            }
            V::Arr(items) => {
                ctrl(out, 11, items.len());
                for v in items {
                    encode(out, v);
                }
            }
            V::Ptr(at) => {
                // The two-byte form (11-bit offsets) is all the tests need.
                assert!(*at < 2048);
                out.extend_from_slice(&[0x20 | (at >> 8) as u8, *at as u8]);
            }
        }
    }

    /// An IPv4 database with one node: 0.0.0.0/1 -> `left`, 128.0.0.0/1 ->
    /// `right` (`None` = no data). `raw` overrides the two record values.
    pub fn ipv4_db(
        record_size: u16,
        left: Option<V>,
        right: Option<V>,
        raw: Option<(u32, u32)>,
    ) -> Vec<u8> {
        let node_count = 1u32;
        let mut data = Vec::new();
        let mut pointer = |v: Option<V>| match v {
            None => node_count,
            Some(v) => {
                let at = data.len() as u32;
                encode(&mut data, &v);
                node_count + 16 + at
            }
        };
        let (l, r) = raw.unwrap_or_else(|| (pointer(left), pointer(right)));
        assemble(record_size, l, r, &data)
    }

    /// An IPv4 database with one node whose left record points at offset
    /// `left_at` of a ready-made data section.
    pub fn ipv4_db_with_data(data: &[u8], left_at: usize) -> Vec<u8> {
        assemble(24, 1 + 16 + left_at as u32, 1, data)
    }

    /// Tree (one node), separator, data and metadata, laid out per the spec.
    fn assemble(record_size: u16, l: u32, r: u32, data: &[u8]) -> Vec<u8> {
        let node_count = 1u32;
        let mut out = Vec::new();
        match record_size {
            24 => {
                out.extend_from_slice(&l.to_be_bytes()[1..]);
                out.extend_from_slice(&r.to_be_bytes()[1..]);
            }
            28 => {
                out.extend_from_slice(&l.to_be_bytes()[1..]);
                out.push((((l >> 24) & 0x0f) << 4) as u8 | ((r >> 24) & 0x0f) as u8);
                out.extend_from_slice(&r.to_be_bytes()[1..]);
            }
            _ => {
                out.extend_from_slice(&l.to_be_bytes());
                out.extend_from_slice(&r.to_be_bytes());
            }
        }
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(data);
        out.extend_from_slice(super::METADATA_MARKER);
        let meta = V::Map(vec![
            ("binary_format_major_version", V::U16(2)),
            ("binary_format_minor_version", V::U16(0)),
            ("build_epoch", V::U64(1_700_000_000)),
            ("database_type", V::Str("hand-made")),
            ("description", V::Map(vec![])),
            ("ip_version", V::U16(4)),
            ("languages", V::Arr(vec![])),
            ("node_count", V::U32(node_count)),
            ("record_size", V::U16(record_size)),
        ]);
        encode(&mut out, &meta);
        out
    }
}

use build::V;

fn code(c: &'static str) -> V {
    V::Map(vec![("country_code", V::Str(c))])
}

#[test]
fn ipv4_only_databases_of_every_record_size() {
    for record_size in [24, 28, 32] {
        let maxmind = V::Map(vec![("country", V::Map(vec![("iso_code", V::Str("ES"))]))]);
        let db = build::ipv4_db(record_size, Some(code("IT")), Some(maxmind), None);
        let geo = GeoIp::from_bytes(db).unwrap_or_else(|e| panic!("{record_size}: {e}"));
        assert_eq!(
            country(&geo, "10.0.0.1").as_deref(),
            Some("IT"),
            "{record_size}"
        );
        assert_eq!(
            country(&geo, "200.0.0.1").as_deref(),
            Some("ES"),
            "{record_size}"
        );
        assert_eq!(
            country(&geo, "::ffff:10.0.0.1").as_deref(),
            Some("IT"),
            "{record_size}"
        );
        // An IPv4 tree knows nothing about IPv6, rather than guessing.
        assert_eq!(country(&geo, "2001:db8::1"), None, "{record_size}");
    }
}

#[test]
fn database_without_countries_is_rejected() {
    let asn = V::Map(vec![("autonomous_system_number", V::U32(64_496))]);
    let reason = GeoIp::from_bytes(build::ipv4_db(24, Some(asn), None, None)).unwrap_err();
    assert!(reason.contains("no record has a country code"), "{reason}");
    // Records that are not maps cannot be read as countries either.
    let reason = GeoIp::from_bytes(build::ipv4_db(24, Some(V::Str("US")), None, None)).unwrap_err();
    assert!(reason.contains("cannot be read"), "{reason}");
}

#[test]
fn tree_pointers_are_bounds_checked() {
    // Into the 16-byte separator, past the data, and a loop back to the root
    // beyond the address length (node 0 is the only node: value 0 is a node).
    for raw in [(1 + 5, 1), (1 + 16 + 1000, 1), (0xff_ffff, 1)] {
        assert!(
            GeoIp::from_bytes(build::ipv4_db(24, Some(code("IT")), None, Some(raw))).is_err(),
            "{raw:?}"
        );
    }
    // 28-bit records: the shared nibble counts, so a huge left value is caught.
    let huge_left = (0x0f00_0000 | 17, 1);
    assert!(
        GeoIp::from_bytes(build::ipv4_db(28, Some(code("IT")), None, Some(huge_left))).is_err()
    );
    // Node 0 pointing at itself: a loop, stopped by the seen-set (and depth).
    let err =
        GeoIp::from_bytes(build::ipv4_db(24, Some(code("IT")), None, Some((0, 0)))).unwrap_err();
    assert!(err.contains("no record has a country"), "{err}");
}

#[test]
fn pointer_loops_are_refused_before_maxminddb_recurses_into_them() {
    // A data record that is a pointer to itself: decoding it would recurse
    // until the stack overflows, which aborts the process.
    let mut db = build::ipv4_db(24, Some(code("IT")), None, None);
    let data = 6 + 16; // one 24-bit node, then the separator
    db[data..data + 2].copy_from_slice(&[0x20, 0x00]);
    let reason = GeoIp::from_bytes(db).unwrap_err();
    assert!(reason.contains("pointer loop"), "{reason}");

    // The same in the metadata, which maxminddb decodes while opening.
    let mut db = build::ipv4_db(24, Some(code("IT")), None, None);
    let marker = (0..db.len())
        .rev()
        .find(|&i| db[i..].starts_with(METADATA_MARKER))
        .unwrap();
    db.truncate(marker + METADATA_MARKER.len());
    db.extend_from_slice(&[0x20, 0x00]);
    let reason = GeoIp::from_bytes(db).unwrap_err();
    assert!(
        reason.contains("metadata") && reason.contains("pointer loop"),
        "{reason}"
    );
}

#[test]
fn nesting_is_bounded_but_real_depths_pass() {
    fn nested(levels: usize) -> V {
        (0..levels).fold(code("PT"), |inner, _| V::Arr(vec![inner]))
    }
    // Country lookups ignore the extra field; only its depth matters here.
    let record = |extra| V::Map(vec![("country_code", V::Str("PT")), ("extra", extra)]);
    let ok = build::ipv4_db(24, Some(record(nested(20))), None, None);
    assert!(GeoIp::from_bytes(ok).is_ok());
    let too_deep = build::ipv4_db(24, Some(record(nested(40))), None, None);
    assert!(GeoIp::from_bytes(too_deep)
        .unwrap_err()
        .contains("nested too deeply"));
}

#[test]
fn pointer_amplification_is_refused() {
    // Eight levels of arrays, each holding eight pointers to the level below:
    // about a hundred bytes that take 8^8 (16.7 million) steps to decode, on
    // every lookup.
    let mut data = Vec::new();
    build::encode(&mut data, &V::Str("x"));
    let mut below = 0;
    for _ in 0..8 {
        let at = data.len();
        build::encode(&mut data, &V::Arr((0..8).map(|_| V::Ptr(below)).collect()));
        below = at;
    }
    let root = data.len();
    let record = V::Map(vec![("country_code", V::Str("PT")), ("x", V::Ptr(below))]);
    build::encode(&mut data, &record);
    let reason = GeoIp::from_bytes(build::ipv4_db_with_data(&data, root)).unwrap_err();
    assert!(reason.contains("pointer amplification"), "{reason}");

    // Sharing as such is fine: the same with two levels decodes to 64 values.
    let mut data = Vec::new();
    build::encode(&mut data, &V::Str("x"));
    let level = data.len();
    build::encode(&mut data, &V::Arr((0..8).map(|_| V::Ptr(0)).collect()));
    let top = data.len();
    build::encode(&mut data, &V::Arr((0..8).map(|_| V::Ptr(level)).collect()));
    let root = data.len();
    let record = V::Map(vec![("country_code", V::Str("PT")), ("x", V::Ptr(top))]);
    build::encode(&mut data, &record);
    let geo = GeoIp::from_bytes(build::ipv4_db_with_data(&data, root)).unwrap();
    assert_eq!(country(&geo, "10.0.0.1").as_deref(), Some("PT"));
}

#[test]
fn no_single_damaged_byte_escapes_as_a_panic() {
    // Every byte of the fixture, flipped two ways: opening either fails
    // cleanly or yields a database whose lookups work. A stack overflow here
    // would abort the test binary.
    let good = std::fs::read(FIXTURE).unwrap();
    let probes: Vec<IpAddr> = [
        "127.0.0.1",
        "192.0.2.200",
        "198.51.100.7",
        "203.0.113.10",
        "2001:db8::1",
        "::1",
    ]
    .iter()
    .map(|ip| ip.parse().unwrap())
    .collect();
    for i in 0..good.len() {
        for flip in [0xff, 0x01] {
            let mut damaged = good.clone();
            damaged[i] ^= flip;
            if let Ok(geo) = GeoIp::from_bytes(damaged) {
                for &ip in &probes {
                    let _ = geo.country(ip);
                }
            }
        }
    }
}

#[test]
fn geoip_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<GeoIp>();
    assert_send_sync::<CountryCode>();
}
