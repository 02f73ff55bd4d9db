//! The MMDB validator: the whole file is walked once at start-up without trusting it.
//!
//! Hand-written on purpose: `maxminddb` trusts its input, so a damaged file can make it index
//! out of bounds or follow a pointer loop until the stack overflows (an abort nothing can
//! catch). No crate validates a MaxMind DB; this walks exactly what a lookup can reach, with
//! every read bounds-checked, before `maxminddb` ever decodes it.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use maxminddb::Reader;

use super::CountryRecord;

/// Marks the start of the metadata section (MaxMind DB spec).
pub(super) const METADATA_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";
/// The spec caps metadata (with its marker) at 128 KiB, so only the file's tail
/// needs searching.
pub(super) const METADATA_MAX: usize = 128 * 1024;
/// Zero bytes between the search tree and the data section.
pub(super) const SEPARATOR_LEN: usize = 16;
/// Deepest nesting of values (pointers count as a level) accepted. maxminddb
/// decodes by recursion, so a pointer loop in a damaged file would overflow the
/// stack and abort the process, which `catch_unwind` cannot stop. Records in
/// MaxMind's GeoIP2 test databases nest at most 8 levels deep.
pub(super) const MAX_NESTING: usize = 32;
/// Most values one record may expand to when decoded (see `Section::check_root`),
/// which bounds the work of a single lookup. The largest record in MaxMind's
/// GeoIP2 test databases (Precision Enterprise) has 264; ip-location-db's has 3.
pub(super) const MAX_EXPANDED: u64 = 10_000;

/// Checks a whole database without trusting it. Everything this reads itself is
/// bounds-checked, and maxminddb only decodes what these checks have already
/// walked: the metadata, and each data record reachable from the search tree.
/// Returns the reason when the file is unusable.
pub(super) fn validate(bytes: &[u8]) -> Result<(), String> {
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
pub(super) fn read_record(tree: &[u8], node: usize, bit: u8, record_size: u16) -> Option<usize> {
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
