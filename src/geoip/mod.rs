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

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::Reader;
use serde::Deserialize;

pub use crate::domain::country::CountryCode;
use validate::validate;

#[cfg(test)]
mod tests;
mod validate;

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
