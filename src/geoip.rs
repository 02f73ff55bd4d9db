//! Country lookup for client addresses, from a MaxMind DB (`.mmdb`) file.
//!
//! Only a two-letter country code ever leaves this module: version checks and
//! Service Ping submissions record where an instance is, never its address.
//!
//! Two record shapes are understood, so either free database works unchanged:
//! MaxMind GeoIP2/GeoLite2 (`country.iso_code`, else `registered_country.iso_code`;
//! City databases have the same fields) and ip-location-db (`country_code`).
//!
//! The file is checked completely when it is opened (see [`GeoIp::open`]). That is
//! deliberate: `maxminddb` trusts its input, so a damaged file can make it index
//! out of bounds (a panic) or follow a pointer loop until the stack overflows (an
//! abort, which nothing can catch). Every search-tree record and every data
//! record a lookup can reach is therefore examined once at start-up; after that,
//! lookups on the hot path only read data that is known to be sound.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use maxminddb::Reader;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

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

/// Why a GeoIP database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GeoIpError {
    /// The file could not be read (missing, unreadable, a directory, ...).
    #[error("cannot read GeoIP database {}: {source}", .path.display())]
    Read {
        /// The configured path.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file was read but is not a usable country database: damaged, not a
    /// MaxMind DB at all, or a MaxMind DB without country data (e.g. an ASN one).
    #[error("GeoIP database {} is not usable: {reason}", .path.display())]
    Invalid {
        /// The configured path.
        path: PathBuf,
        /// What is wrong with it, for the operator.
        reason: String,
    },
}

/// A loaded, validated country database.
///
/// Lookups take `&self` and the type is `Send + Sync`, so one instance (behind an
/// `Arc`) serves every worker thread.
pub struct GeoIp {
    /// The whole file in memory: no mmap, so replacing the file on disk while the
    /// app runs cannot change what this instance reads.
    reader: Reader<Vec<u8>>,
    /// An IPv4-only tree cannot answer for IPv6: walking it with 128 bits would
    /// return the record of an unrelated IPv4 network instead of "unknown".
    ipv4_only: bool,
}

impl fmt::Debug for GeoIp {
    // Hand-written: the derived form would print the whole database buffer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let meta = &self.reader.metadata;
        f.debug_struct("GeoIp")
            .field("database_type", &meta.database_type)
            .field("ip_version", &meta.ip_version)
            .field("build_epoch", &meta.build_epoch)
            .field("node_count", &meta.node_count)
            .finish_non_exhaustive()
    }
}

impl GeoIp {
    /// Loads the database at `path` into memory and checks all of it.
    ///
    /// Checking everything up front is what lets lookups on the hot path trust
    /// the bytes. It is linear in the file size: about 0.1 s for the 8 MB
    /// ip-location-db country file in a release build.
    ///
    /// # Errors
    ///
    /// [`GeoIpError::Read`] if the file cannot be read; [`GeoIpError::Invalid`]
    /// if it is damaged, is not a MaxMind DB, or holds no country codes. Both
    /// surface at start-up rather than on the first request.
    pub fn open(path: &Path) -> Result<GeoIp, GeoIpError> {
        let bytes = std::fs::read(path).map_err(|source| GeoIpError::Read {
            path: path.to_owned(),
            source,
        })?;
        GeoIp::from_bytes(bytes).map_err(|reason| GeoIpError::Invalid {
            path: path.to_owned(),
            reason,
        })
    }

    /// Like [`GeoIp::open`], but never fails: `None` when no path is configured,
    /// and `None` plus a `warn!` naming the path and the reason when the file is
    /// missing or unusable.
    ///
    /// GeoIP is an optional extra: without it checks and Service Ping are stored
    /// without a country, so a bad file must not stop the application.
    pub fn open_optional(path: Option<&Path>) -> Option<GeoIp> {
        let path = path?;
        match GeoIp::open(path) {
            Ok(geo) => {
                tracing::info!(
                    path = %path.display(),
                    database_type = geo.database_type(),
                    build_epoch = geo.build_epoch(),
                    "GeoIP country database loaded"
                );
                Some(geo)
            }
            Err(error) => {
                tracing::warn!(
                    path = %path.display(),
                    %error,
                    "GeoIP database not loaded; country lookup is disabled and \
                     checks are recorded without a country"
                );
                None
            }
        }
    }

    /// The country of `ip`, or `None` when the database has no (valid) country
    /// for it.
    ///
    /// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack socket
    /// reports for IPv4 clients) are looked up as the IPv4 address: many
    /// databases, ip-location-db's included, have nothing under `::ffff:0:0/96`.
    /// Does not allocate: the record is decoded into borrowed `&str`s.
    pub fn country(&self, ip: IpAddr) -> Option<CountryCode> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        if self.ipv4_only && ip.is_ipv6() {
            return None;
        }
        match self.reader.lookup::<CountryRecord<'_>>(ip) {
            Ok(record) => record.and_then(|r| r.country()),
            Err(error) => {
                // Not expected after validation. Debug level and no address in
                // the message: this runs per request and addresses are not logged.
                tracing::debug!(%error, "GeoIP lookup failed");
                None
            }
        }
    }

    /// The `database_type` from the file's metadata, e.g. `"GeoLite2-Country"`.
    pub fn database_type(&self) -> &str {
        &self.reader.metadata.database_type
    }

    /// When the database was built, in seconds since the Unix epoch (from the
    /// metadata), so operators can tell a stale database.
    pub fn build_epoch(&self) -> u64 {
        self.reader.metadata.build_epoch
    }

    /// Validates `bytes` completely, then keeps them. The error is the reason
    /// for [`GeoIpError::Invalid`].
    fn from_bytes(bytes: Vec<u8>) -> Result<GeoIp, String> {
        // `validate` walks the structure itself before maxminddb decodes it, so
        // maxminddb should never panic here; catch_unwind is the backstop for a
        // case the walk misses (e.g. the metadata claiming a tree larger than the
        // file, which maxminddb reads while opening). Only opening runs under
        // it: once the checks pass, lookups never reach unchecked bytes. (With
        // `panic = "abort"` a panic would abort; the crate does not use it.)
        match std::panic::catch_unwind(|| validate(&bytes)) {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(reason),
            Err(_) => return Err("the file is damaged (reading it failed)".to_owned()),
        }
        let reader = Reader::from_source(bytes).map_err(|e| e.to_string())?;
        let ipv4_only = reader.metadata.ip_version == 4;
        Ok(GeoIp { reader, ipv4_only })
    }
}

/// The fields of a data record this module reads; everything else in the record
/// (names in many languages, geoname ids, ...) is skipped without being built.
///
/// Borrowed `&str`s point into the database buffer, so decoding allocates nothing.
/// All fields are optional, which is what lets one type read both schemas.
#[derive(Deserialize)]
struct CountryRecord<'a> {
    /// MaxMind: where the network is.
    #[serde(borrow)]
    country: Option<IsoCode<'a>>,
    /// MaxMind: where the network is registered; the fallback when `country` is
    /// absent (e.g. satellite or anycast networks).
    #[serde(borrow)]
    registered_country: Option<IsoCode<'a>>,
    /// ip-location-db: the only field of its country databases.
    country_code: Option<&'a str>,
}

/// MaxMind's `country` / `registered_country` maps, reduced to the code.
#[derive(Deserialize)]
struct IsoCode<'a> {
    iso_code: Option<&'a str>,
}

impl<'a> CountryRecord<'a> {
    /// The first field holding a valid code, in order of precedence; an invalid
    /// code (such as `A1`) does not hide a valid one behind it.
    fn country(&self) -> Option<CountryCode> {
        let place = |p: &Option<IsoCode<'a>>| p.as_ref().and_then(|p| p.iso_code);
        [
            place(&self.country),
            place(&self.registered_country),
            self.country_code,
        ]
        .into_iter()
        .flatten()
        .find_map(CountryCode::parse)
    }
}

/// Marks the start of the metadata section (MaxMind DB spec).
const METADATA_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";
/// The spec caps metadata (with its marker) at 128 KiB, so only the file's tail
/// needs searching.
const METADATA_MAX: usize = 128 * 1024;
/// Zero bytes between the search tree and the data section.
const SEPARATOR_LEN: usize = 16;
/// Deepest nesting of values (pointers count as a level) accepted. maxminddb
/// decodes by recursion, so a pointer loop in a damaged file would overflow the
/// stack and abort the process, which `catch_unwind` cannot stop. Records in
/// MaxMind's GeoIP2 test databases nest at most 8 levels deep.
const MAX_NESTING: usize = 32;
/// Most values one record may expand to when decoded (see `Section::check_root`),
/// which bounds the work of a single lookup. The largest record in MaxMind's
/// GeoIP2 test databases (Precision Enterprise) has 264; ip-location-db's has 3.
const MAX_EXPANDED: u64 = 10_000;

/// Checks a whole database without trusting it. Everything this reads itself is
/// bounds-checked, and maxminddb only decodes what these checks have already
/// walked: the metadata, and each data record reachable from the search tree.
/// Returns the reason when the file is unusable.
fn validate(bytes: &[u8]) -> Result<(), String> {
    let tail_start = bytes.len().saturating_sub(METADATA_MAX);
    let data_end = bytes[tail_start..]
        .windows(METADATA_MARKER.len())
        .rposition(|w| w == METADATA_MARKER)
        .map(|pos| tail_start + pos)
        .ok_or("not a MaxMind DB file (no metadata marker)")?;
    Section::new(&bytes[data_end + METADATA_MARKER.len()..])
        .check_root(0)
        .map_err(|e| format!("metadata: {e}"))?;

    let reader = Reader::from_source(bytes).map_err(|e| e.to_string())?;
    let meta = &reader.metadata;
    if meta.binary_format_major_version != 2 {
        return Err(format!(
            "unsupported MaxMind DB format version {}",
            meta.binary_format_major_version
        ));
    }
    let bits: usize = match meta.ip_version {
        4 => 32,
        6 => 128,
        v => return Err(format!("unknown ip_version {v}")),
    };
    let record_size = meta.record_size;
    if !matches!(record_size, 24 | 28 | 32) {
        return Err(format!("unknown record_size {record_size}"));
    }
    let node_count = meta.node_count as usize;
    if node_count == 0 {
        return Err("the search tree is empty".to_owned());
    }

    // Layout: [search tree][16 zero bytes][data section][marker + metadata].
    let node_len = usize::from(record_size) / 4; // two records per node
    let tree_len = node_count
        .checked_mul(node_len)
        .ok_or("node_count is impossibly large")?;
    let data_start = tree_len + SEPARATOR_LEN;
    if data_start > data_end {
        return Err(format!(
            "file too short for its search tree ({node_count} nodes): truncated?"
        ));
    }
    // The separator must be zeros; anything else means the tree is not where the
    // metadata says it is (e.g. the file is wrapped in an archive).
    if bytes[tree_len..data_start].iter().any(|&b| b != 0) {
        return Err("no zero separator after the search tree: damaged or wrapped file".to_owned());
    }
    let tree = &bytes[..tree_len];
    let mut data = Section::new(&bytes[data_start..data_end]);

    // Walk every node reachable from the root, as lookups do, checking each
    // record. `seen` stops shared subtrees (MaxMind aliases the IPv4 tree at
    // several IPv6 prefixes) from being walked twice, and loops in a damaged tree.
    let mut seen = vec![false; node_count];
    // (node, depth, address bits so far): the address lets each data record be
    // looked up once through maxminddb below.
    let mut stack: Vec<(usize, usize, u128)> = vec![(0, 0, 0)];
    let mut first_path_to_record: Vec<(usize, u128)> = Vec::new();
    let mut records_seen: HashSet<usize> = HashSet::new();
    while let Some((node, depth, path)) = stack.pop() {
        if std::mem::replace(&mut seen[node], true) {
            continue;
        }
        for bit in 0..2u8 {
            let value = read_record(tree, node, bit, record_size)
                .ok_or("search tree record out of range")?;
            let child_depth = depth + 1;
            let child_path = (path << 1) | u128::from(bit);
            if value < node_count {
                if child_depth >= bits {
                    return Err("search tree is deeper than an address is long".to_owned());
                }
                stack.push((value, child_depth, child_path));
            } else if value > node_count {
                // Data pointers count from the end of the tree, separator included.
                let offset = (value - node_count)
                    .checked_sub(SEPARATOR_LEN)
                    .filter(|&offset| offset < data.bytes.len())
                    .ok_or("search tree points outside the data section")?;
                if records_seen.insert(offset) {
                    data.check_root(offset)
                        .map_err(|e| format!("data record at offset {offset}: {e}"))?;
                    // Left-align the path into a full address of that prefix.
                    let address = child_path << (bits - child_depth);
                    first_path_to_record.push((offset, address));
                }
            }
            // value == node_count: no data for this network.
        }
    }

    // Decode each distinct record once, through the same code path and type as
    // `GeoIp::country`, so lookups cannot meet an undecodable record later.
    let mut with_country = 0usize;
    for (offset, address) in first_path_to_record {
        let ip = if bits == 32 {
            // The path of an IPv4 tree has at most 32 bits.
            IpAddr::V4(Ipv4Addr::from(address as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(address))
        };
        let record = reader
            .lookup::<CountryRecord<'_>>(ip)
            .map_err(|e| format!("data record at offset {offset} cannot be read: {e}"))?
            .ok_or("search tree and lookup disagree")?;
        if record.country().is_some() {
            with_country += 1;
        }
    }
    if with_country == 0 {
        return Err(format!(
            "no record has a country code (database type {:?}); a country or city \
             database is needed",
            meta.database_type
        ));
    }
    Ok(())
}

/// Structural check of values in the MaxMind DB data format: every length and
/// pointer stays inside the section, every type is known, nesting is bounded.
/// Values are not interpreted; maxminddb does that once this has passed.
struct Section<'b> {
    bytes: &'b [u8],
    /// Values already checked at the start of a record or pointer target:
    /// offset -> what `value` found. Keeps the check linear when many pointers
    /// share one value.
    checked: std::collections::HashMap<usize, Checked>,
}

/// What checking one value found.
#[derive(Clone, Copy)]
struct Checked {
    /// Offset just past the value (past the pointer itself, for a pointer).
    end: usize,
    /// Nesting levels, 1 for a scalar; pointers count as a level.
    height: usize,
    /// How many values decoding it visits, following pointers each time they
    /// occur (which is what maxminddb does).
    expanded: u64,
}

impl<'b> Section<'b> {
    fn new(bytes: &'b [u8]) -> Self {
        Section {
            bytes,
            checked: std::collections::HashMap::new(),
        }
    }

    /// Checks the value starting at `offset` (a record or the metadata map).
    fn check_root(&mut self, offset: usize) -> Result<(), String> {
        let found = self.shared_value(offset, 1)?;
        // Pointers can share one value many times over, so a small file can
        // describe a record that takes billions of steps to decode: on every
        // lookup, since maxminddb follows each pointer anew.
        if found.expanded > MAX_EXPANDED {
            return Err(format!(
                "a record expands to {} values (pointer amplification)",
                found.expanded
            ));
        }
        Ok(())
    }

    /// `n` bytes at `at`, or an error if they run past the section.
    fn take(&self, at: usize, n: usize) -> Result<&'b [u8], String> {
        at.checked_add(n)
            .and_then(|end| self.bytes.get(at..end))
            .ok_or_else(|| "a value runs past the end of its section".to_owned())
    }

    /// A value that may be reached from several places (record start, pointer
    /// target): checked once, then answered from `checked`.
    fn shared_value(&mut self, offset: usize, depth: usize) -> Result<Checked, String> {
        if let Some(&found) = self.checked.get(&offset) {
            if depth + found.height > MAX_NESTING + 1 {
                return Err("values nested too deeply (or a pointer loop)".to_owned());
            }
            return Ok(found);
        }
        let found = self.value(offset, depth)?;
        self.checked.insert(offset, found);
        Ok(found)
    }

    /// Checks one value at `offset`, `depth` levels down.
    fn value(&mut self, offset: usize, depth: usize) -> Result<Checked, String> {
        if depth > MAX_NESTING {
            return Err("values nested too deeply (or a pointer loop)".to_owned());
        }
        let ctrl = self.take(offset, 1)?[0];
        let mut at = offset + 1;
        let mut kind = ctrl >> 5;
        if kind == 1 {
            // Pointer: 1-4 more bytes hold the target, relative to the section.
            // With 4 bytes the spec ignores the low 3 bits, but maxminddb reads
            // 29-31 there as a longer size; writers put zeros, so refuse those.
            if ctrl & 0x1f >= 29 {
                return Err(format!("malformed pointer control byte {ctrl:#04x}"));
            }
            let len = usize::from((ctrl >> 3) & 0x03) + 1;
            let raw = self.take(at, len)?;
            let top = if len == 4 {
                0
            } else {
                usize::from(ctrl & 0x07)
            };
            let base = [0, 0, 2048, 526_336, 0][len];
            let target = raw.iter().fold(top, |acc, &b| (acc << 8) | usize::from(b)) + base;
            let found = self.shared_value(target, depth + 1)?;
            return Ok(Checked {
                end: at + len,
                height: found.height + 1,
                expanded: found.expanded.saturating_add(1),
            });
        }
        if kind == 0 {
            // Extended type: the next byte holds the type minus 7 (types 8-15).
            let ext = self.take(at, 1)?[0];
            if !(1..=8).contains(&ext) {
                return Err(format!("unknown extended type byte {ext}"));
            }
            kind = ext + 7;
            at += 1;
        }
        let size = match ctrl & 0x1f {
            small @ 0..=28 => usize::from(small),
            29 => {
                let b = self.take(at, 1)?;
                at += 1;
                29 + usize::from(b[0])
            }
            30 => {
                let b = self.take(at, 2)?;
                at += 2;
                285 + (usize::from(b[0]) << 8 | usize::from(b[1]))
            }
            _ => {
                let b = self.take(at, 3)?;
                at += 3;
                65_821 + (usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
            }
        };
        let scalar = |end| Checked {
            end,
            height: 1,
            expanded: 1,
        };
        match kind {
            // map (key/value pairs) and array: that many values follow inline.
            7 | 11 => {
                let count = if kind == 7 {
                    size.checked_mul(2).ok_or("map too large")?
                } else {
                    size
                };
                let mut height = 0;
                let mut expanded = 1u64;
                for _ in 0..count {
                    let child = self.value(at, depth + 1)?;
                    at = child.end;
                    height = height.max(child.height);
                    expanded = expanded.saturating_add(child.expanded);
                }
                Ok(Checked {
                    end: at,
                    height: height + 1,
                    expanded,
                })
            }
            // boolean: the value is the size itself, no payload.
            14 => Ok(scalar(at)),
            // string, double, bytes, uint16/32/64/128, int32, float: payload bytes.
            2 | 3 | 4 | 5 | 6 | 8 | 9 | 10 | 15 => {
                self.take(at, size)?;
                Ok(scalar(at + size))
            }
            // 12 (data cache container) and 13 (end marker) never appear in
            // records or metadata.
            other => Err(format!("unexpected data type {other}")),
        }
    }
}

/// Record `bit` (0 = left, 1 = right) of `node`, per the MaxMind DB spec's
/// layouts; `None` if it lies outside `tree`.
fn read_record(tree: &[u8], node: usize, bit: u8, record_size: u16) -> Option<usize> {
    let node_len = usize::from(record_size) / 4;
    let start = node.checked_mul(node_len)?;
    let n = tree.get(start..start.checked_add(node_len)?)?;
    let be = |b: &[u8]| b.iter().fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
    Some(match (record_size, bit) {
        (24, 0) => be(&n[0..3]),
        (24, _) => be(&n[3..6]),
        // 28-bit records share the middle byte: its high nibble tops the left
        // record, its low nibble the right one.
        (28, 0) => (usize::from(n[3] >> 4) << 24) | be(&n[0..3]),
        (28, _) => (usize::from(n[3] & 0x0f) << 24) | be(&n[4..7]),
        (32, 0) => be(&n[0..4]),
        (32, _) => be(&n[4..8]),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
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
        let reason =
            GeoIp::from_bytes(build::ipv4_db(24, Some(V::Str("US")), None, None)).unwrap_err();
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
        let err = GeoIp::from_bytes(build::ipv4_db(24, Some(code("IT")), None, Some((0, 0))))
            .unwrap_err();
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
}
