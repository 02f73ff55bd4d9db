//! `usage_data_raw`: each submission's payload exactly as received, stored compressed.
//!
//! New rows are zstd-compressed with a dictionary trained on payload shapes
//! (`encoding = 'zstd-d1'`, `assets/zstd/service-ping.dict`, rebuilt reproducibly by
//! `scripts/build_zstd_dict.sh`); rows stored before compression came in keep
//! `encoding = 'identity'` and are read as they are. Every read decompresses, so
//! callers (export, tests) always get the bytes the instance sent.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{usage_data, usage_data_raw};
use crate::db::{AnyConnection, DbError};
use crate::with_conn;

/// zstd level for raw payloads, with the search settings of [`TUNED`]: a generated 18.9
/// payload (229 KB) takes ~30.4 KB, as small as level 3 (~30.1 KB; plain, without the
/// dictionary: ~36 KB), at ~15 % less CPU (docs/benchmarks-ingest.md). Level 9 saves another
/// ~7 KB but costs five times the CPU. The level is not needed to decode, so rows written at
/// another level read the same.
const ZSTD_LEVEL: i32 = 1;

/// Level 1's search, tuned for payloads of a few hundred KB with the dictionary: a window
/// of 256 KB, matches of at least 7 bytes and a 32 Ki-entry hash table. Measured in-process
/// on the generated 18.9 payload (docs/benchmarks-ingest.md): 30.4 KB at ~810 MB/s, against
/// 32.7 KB at ~740 MB/s with level 1's own choice and 30.1 KB at ~700 MB/s at level 3; the
/// 13.9 queries payload also compresses smaller. A 128 KB window was faster still (~910 MB/s)
/// but lost the dictionary's reach: 32.8 KB a varied payload in the ingest benchmark, against
/// 30.7 KB. The decoder needs no setting: the window is within its default limit.
const TUNED: [zstd::zstd_safe::CParameter; 3] = [
    zstd::zstd_safe::CParameter::WindowLog(18),
    zstd::zstd_safe::CParameter::MinMatch(7),
    zstd::zstd_safe::CParameter::HashLog(15),
];

/// Dictionary 1: trained on 200 generated 18.9 payloads. Never change these bytes: stored
/// rows need exactly this dictionary; a new one gets a new encoding name.
const DICTIONARY_1: &[u8] = include_bytes!("../../../assets/zstd/service-ping.dict");

fn decoder_dictionary() -> &'static zstd::dict::DecoderDictionary<'static> {
    static DICT: std::sync::OnceLock<zstd::dict::DecoderDictionary<'static>> =
        std::sync::OnceLock::new();
    DICT.get_or_init(|| zstd::dict::DecoderDictionary::copy(DICTIONARY_1))
}

/// How a stored payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawEncoding {
    /// The bytes as received (rows written before compression).
    Identity,
    /// zstd frame of the bytes as received.
    Zstd,
    /// zstd frame made with dictionary 1.
    ZstdDict1,
}

impl RawEncoding {
    /// The `encoding` column's text.
    pub fn as_str(self) -> &'static str {
        match self {
            RawEncoding::Identity => "identity",
            RawEncoding::Zstd => "zstd",
            RawEncoding::ZstdDict1 => "zstd-d1",
        }
    }
}

/// A payload ready to store: compressed off the writer thread (on the blocking pool, where
/// it was decoded), so the write transaction only copies bytes.
#[derive(Debug, Clone)]
pub struct RawPayload {
    /// The stored form.
    pub encoding: RawEncoding,
    /// The stored bytes.
    pub bytes: Vec<u8>,
    /// Length of the payload as received (after gzip decoding).
    pub original_len: usize,
}

impl RawPayload {
    /// Compresses `json` with dictionary 1.
    pub fn compress(json: &[u8]) -> RawPayload {
        thread_local! {
            // One compression context per thread, reused: making one per payload cost as much
            // as a tenth of the compression itself.
            static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
                const { std::cell::RefCell::new(None) };
        }
        let bytes = COMPRESSOR
            .with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.is_none() {
                    // The dictionary as bytes, not prepared: a prepared dictionary brings
                    // its own search parameters, which override the tuned ones. The context
                    // digests it once, at its first payload, and keeps it.
                    let mut compressor =
                        zstd::bulk::Compressor::with_dictionary(ZSTD_LEVEL, DICTIONARY_1)?;
                    for parameter in TUNED {
                        compressor.set_parameter(parameter)?;
                    }
                    *slot = Some(compressor);
                }
                slot.as_mut().expect("just set").compress(json)
            })
            .expect("zstd compresses in memory");
        RawPayload {
            encoding: RawEncoding::ZstdDict1,
            bytes,
            original_len: json.len(),
        }
    }

    /// Back to the bytes as received.
    pub fn decompress(&self) -> Result<Vec<u8>, DbError> {
        decode(0, self.encoding.as_str(), self.bytes.clone())
    }
}

/// Stores the payload of submission `id`.
pub fn insert_raw(conn: &mut AnyConnection, id: i64, raw: &RawPayload) -> Result<(), DbError> {
    with_conn!(conn, |c| diesel::insert_into(usage_data_raw::table)
        .values((
            usage_data_raw::usage_data_id.eq(id),
            usage_data_raw::payload.eq(&raw.bytes),
            usage_data_raw::encoding.eq(raw.encoding.as_str()),
        ))
        .execute(c))?;
    Ok(())
}

/// The payload of submission `id` as received, unless retention removed it.
pub fn find_raw_payload(conn: &mut AnyConnection, id: i64) -> Result<Option<Vec<u8>>, DbError> {
    let row: Option<(Vec<u8>, String)> = with_conn!(conn, |c| usage_data_raw::table
        .find(id)
        .select((usage_data_raw::payload, usage_data_raw::encoding))
        .first(c)
        .optional())?;
    row.map(|(bytes, encoding)| decode(id, &encoding, bytes))
        .transpose()
}

fn corrupt(id: i64, err: std::io::Error) -> DbError {
    DbError::Corrupt {
        what: format!("usage_data_raw {id} (zstd)"),
        source: Box::new(err),
    }
}

/// Decodes one stored payload. zstd frames written by [`RawPayload::compress`] carry their
/// size, which the streaming decoder does not need to be told.
fn decode(id: i64, encoding: &str, bytes: Vec<u8>) -> Result<Vec<u8>, DbError> {
    match encoding {
        "identity" => Ok(bytes),
        "zstd" => zstd::stream::decode_all(&bytes[..]).map_err(|e| corrupt(id, e)),
        "zstd-d1" => {
            use std::io::Read;
            let mut out = Vec::with_capacity(bytes.len() * 8);
            zstd::stream::Decoder::with_prepared_dictionary(&bytes[..], decoder_dictionary())
                .and_then(|mut decoder| decoder.read_to_end(&mut out))
                .map_err(|e| corrupt(id, e))?;
            Ok(out)
        }
        other => Err(DbError::Corrupt {
            what: format!("usage_data_raw {id}"),
            source: format!("unknown encoding `{other}`").into(),
        }),
    }
}

/// Deletes the verbatim payloads of submissions received before `cutoff` (the summary and
/// metric rows stay); returns how many were removed.
pub fn delete_raw_received_before(
    conn: &mut AnyConnection,
    cutoff: NaiveDateTime,
) -> Result<usize, DbError> {
    let old = usage_data::table
        .filter(usage_data::received_at.lt(cutoff))
        .select(usage_data::id);
    Ok(with_conn!(conn, |c| diesel::delete(
        usage_data_raw::table.filter(usage_data_raw::usage_data_id.eq_any(old))
    )
    .execute(c))?)
}

/// One submission as `version-app export` writes it.
#[derive(Debug, Clone, Queryable)]
pub struct ExportRow {
    /// `usage_data.id`.
    pub id: i64,
    /// Instance UUID.
    pub uuid: String,
    /// Hostname.
    pub hostname: Option<String>,
    /// Normalised version.
    pub version: Option<String>,
    /// Edition.
    pub edition: Option<String>,
    /// Installation type.
    pub installation_type: Option<String>,
    /// `recorded_at`.
    pub recorded_at: NaiveDateTime,
    /// `automatic` or `manual`.
    pub source: String,
    /// The verbatim payload (decompressed), unless retention removed it.
    pub payload: Option<Vec<u8>>,
}

/// Up to `limit` submissions recorded in `[from, to)` with an id above `after_id`, by id:
/// export pages through a range this way so memory stays bounded by one page.
pub fn list_export_page(
    conn: &mut AnyConnection,
    from: NaiveDateTime,
    to: NaiveDateTime,
    after_id: i64,
    limit: i64,
    with_payload: bool,
) -> Result<Vec<ExportRow>, DbError> {
    let columns = (
        usage_data::id,
        usage_data::uuid,
        usage_data::hostname,
        usage_data::version,
        usage_data::edition,
        usage_data::installation_type,
        usage_data::recorded_at,
        usage_data::source,
    );
    let range = usage_data::recorded_at
        .ge(from)
        .and(usage_data::recorded_at.lt(to))
        .and(usage_data::id.gt(after_id));
    type Summary = (
        i64,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        NaiveDateTime,
        String,
    );
    type Stored = Option<(Vec<u8>, String)>;
    let rows: Vec<(Summary, Stored)> = if with_payload {
        with_conn!(conn, |c| usage_data::table
            .left_join(usage_data_raw::table)
            .filter(range)
            .order(usage_data::id)
            .limit(limit)
            .select((
                columns,
                (usage_data_raw::payload, usage_data_raw::encoding).nullable(),
            ))
            .load(c))?
    } else {
        let rows: Vec<Summary> = with_conn!(conn, |c| usage_data::table
            .filter(range)
            .order(usage_data::id)
            .limit(limit)
            .select(columns)
            .load(c))?;
        rows.into_iter().map(|row| (row, None)).collect()
    };
    rows.into_iter()
        .map(
            |(
                (id, uuid, hostname, version, edition, installation_type, recorded_at, source),
                stored,
            )| {
                let payload = stored
                    .map(|(bytes, encoding)| decode(id, &encoding, bytes))
                    .transpose()?;
                Ok(ExportRow {
                    id,
                    uuid,
                    hostname,
                    version,
                    edition,
                    installation_type,
                    recorded_at,
                    source,
                    payload,
                })
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &[u8] = include_bytes!("../../../tests/fixtures/payload_18.9.0_generated.json");

    #[test]
    fn every_encoding_reads_back_the_bytes_as_received() {
        let stored = RawPayload::compress(FULL);
        assert_eq!(stored.encoding, RawEncoding::ZstdDict1);
        assert!(
            stored.bytes.len() < FULL.len() / 6,
            "{}",
            stored.bytes.len()
        );
        assert_eq!(stored.decompress().unwrap(), FULL);
        let plain = zstd::bulk::compress(FULL, ZSTD_LEVEL).unwrap();
        assert!(stored.bytes.len() < plain.len(), "the dictionary helps");
        assert_eq!(decode(1, "zstd", plain).unwrap(), FULL);
        assert_eq!(decode(1, "identity", FULL.to_vec()).unwrap(), FULL);
        assert!(decode(1, "zstd-d1", b"not zstd".to_vec()).is_err());
        assert!(decode(1, "brotli", FULL.to_vec()).is_err());
        // Rows stored before the level went from 3 to 1 read back the same.
        let level_3 = zstd::bulk::Compressor::with_dictionary(3, DICTIONARY_1)
            .unwrap()
            .compress(FULL)
            .unwrap();
        assert!(level_3.len() < stored.bytes.len(), "level 3 is smaller");
        assert_eq!(decode(1, "zstd-d1", level_3).unwrap(), FULL);
    }

    #[test]
    fn tuned_search_takes_effect_on_a_full_payload() {
        let payload = FULL;
        let tuned = RawPayload::compress(payload);
        let untuned = zstd::bulk::Compressor::with_dictionary(ZSTD_LEVEL, DICTIONARY_1)
            .unwrap()
            .compress(payload)
            .unwrap();
        // 30.4 KB against 32.7 KB when measured: smaller output shows the settings applied.
        assert!(
            tuned.bytes.len() < untuned.len(),
            "{} vs {}",
            tuned.bytes.len(),
            untuned.len()
        );
        assert_eq!(tuned.decompress().unwrap(), payload);
    }
}
