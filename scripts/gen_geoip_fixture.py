#!/usr/bin/env python3
"""Generate the GeoIP test fixtures used by src/geoip.rs and the integration tests.

Writes two files (by default into tests/fixtures/ next to this script's parent):

* geoip-test.mmdb    - a tiny MaxMind DB (IPv6 tree with the IPv4 space at ::/96)
                       that maps documentation ranges and loopback to countries.
                       It deliberately mixes the two record shapes the app must read:
                       MaxMind GeoIP2/GeoLite2-Country records and ip-location-db
                       ``{"country_code": ...}`` records.
* geoip-corrupt.mmdb - the same file with its search tree overwritten, so the
                       metadata still parses (a naive reader accepts it) but every
                       lookup leads outside the file. Start-up validation must reject it.

The output is byte-for-byte reproducible: mmdb-writer stamps ``build_epoch`` with the
current time and has no option for it, so this script pins it (see ReproducibleWriter).

Usage (from the repository root):
    python3 -m venv /tmp/geoip-venv
    /tmp/geoip-venv/bin/pip install -r scripts/requirements-geoip.txt
    /tmp/geoip-venv/bin/python scripts/gen_geoip_fixture.py
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import maxminddb
import mmdb_writer
from mmdb_writer import MMDBWriter, MmdbU32
from netaddr import IPSet

# The version whose private `_build_meta` hook ReproducibleWriter overrides; the
# read-back check below still catches a different version that stamps the time.
TESTED_WRITER_VERSION = "0.2.7"

# 2024-01-01T00:00:00Z. Fixed so the file does not change on every run.
FIXED_BUILD_EPOCH = 1_704_067_200

DATABASE_TYPE = "version-app-test-Country"
DESCRIPTION = (
    "version-app test fixture: documentation ranges and loopback only; "
    "not real GeoIP data"
)


def maxmind_place(iso_code: str, geoname_id: int, name_en: str) -> dict:
    """A GeoIP2-style `country` / `registered_country` map.

    The extra keys (geoname_id as uint32, names map, booleans) are there so the
    Rust reader proves it skips fields it does not ask for.
    """
    return {
        "geoname_id": MmdbU32(geoname_id),
        "iso_code": iso_code,
        "names": {"en": name_en},
    }


EUROPE = {"code": "EU", "geoname_id": MmdbU32(6255148), "names": {"en": "Europe"}}
ASIA = {"code": "AS", "geoname_id": MmdbU32(6255147), "names": {"en": "Asia"}}

# (network, record shape, record, country the app must report or None, sample IP).
# Supernets come before their subnets: mmdb-writer splits an existing leaf when a
# more specific network is inserted later, which is what gives longest-prefix match.
NETWORKS: list[tuple[str, str, dict, str | None, str]] = [
    (
        "127.0.0.0/8",
        "maxmind",
        {"country": maxmind_place("AQ", 6697173, "Antarctica")},
        # Loopback gets a country so integration tests (clients on 127.0.0.1)
        # can assert that one was recorded.
        "AQ",
        "127.0.0.1",
    ),
    (
        "192.0.2.0/24",
        "maxmind",
        {
            "continent": EUROPE,
            "country": {
                **maxmind_place("DE", 2921044, "Germany"),
                "is_in_european_union": True,
                "names": {"en": "Germany", "de": "Deutschland", "ja": "ドイツ"},
            },
            # Differs from `country` on purpose: `country` must win.
            "registered_country": maxmind_place("US", 6252001, "United States"),
        },
        "DE",
        "192.0.2.1",
    ),
    (
        "192.0.2.128/25",
        "ip-location-db",
        {"country_code": "CH"},
        "CH",
        "192.0.2.200",
    ),
    (
        "198.51.100.0/24",
        "ip-location-db",
        {"country_code": "FR"},
        "FR",
        "198.51.100.7",
    ),
    (
        "203.0.113.0/25",
        "maxmind",
        # GeoIP2 leaves `country` out for some networks (e.g. satellite providers)
        # and only has where the block is registered: the fallback.
        {"continent": ASIA, "registered_country": maxmind_place("JP", 1861060, "Japan")},
        "JP",
        "203.0.113.10",
    ),
    (
        "203.0.113.128/26",
        "maxmind",
        # "A1" is the legacy GeoIP "anonymous proxy" pseudo-code: not a country.
        {"country": {"iso_code": "A1"}},
        None,
        "203.0.113.130",
    ),
    (
        "203.0.113.192/26",
        "maxmind",
        # A record with no country information at all.
        {"continent": EUROPE},
        None,
        "203.0.113.200",
    ),
    (
        "2001:db8::/33",
        "maxmind",
        {"continent": EUROPE, "country": maxmind_place("NL", 2750405, "Netherlands")},
        "NL",
        "2001:db8::1",
    ),
    (
        "2001:db8:8000::/33",
        "ip-location-db",
        # Lower case on purpose: the reader normalises to upper case.
        {"country_code": "se"},
        "SE",
        "2001:db8:8000::1",
    ),
    (
        # IPv6 loopback, for clients that connect to [::1]. Note that in an IPv6
        # tree holding IPv4 at ::/96, ::1 is the same node as IPv4 0.0.0.1.
        "::1/128",
        "ip-location-db",
        {"country_code": "AQ"},
        "AQ",
        "::1",
    ),
]

# Addresses that must not resolve to a country.
UNKNOWN_PROBES = ["10.0.0.1", "100.64.0.1", "2001:db9::1", "fe80::1"]

# IPv4-mapped IPv6 addresses resolve as IPv4 in the Rust reader (this tree, like
# many real ones, has nothing at ::ffff:0:0/96); listed for the printed table.
MAPPED_PROBES = [("::ffff:198.51.100.7", "FR"), ("::ffff:127.0.0.1", "AQ")]


class ReproducibleWriter(MMDBWriter):
    """MMDBWriter that writes a fixed build_epoch instead of the current time."""

    def _build_meta(self) -> dict:
        meta = super()._build_meta()
        meta["build_epoch"] = FIXED_BUILD_EPOCH
        return meta


def country_of(record: dict | None) -> str | None:
    """The same rule as src/geoip.rs: first valid code of country.iso_code,
    registered_country.iso_code, country_code; valid means two ASCII letters."""
    if not record:
        return None
    candidates = [
        (record.get("country") or {}).get("iso_code"),
        (record.get("registered_country") or {}).get("iso_code"),
        record.get("country_code"),
    ]
    for code in candidates:
        if isinstance(code, str) and len(code) == 2 and code.isascii() and code.isalpha():
            return code.upper()
    return None


def write_fixture(path: Path) -> None:
    writer = ReproducibleWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type=DATABASE_TYPE,
        languages=["en"],
        description={"en": DESCRIPTION},
    )
    for network, _shape, record, _expected, _sample in NETWORKS:
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))


def write_corrupt(good: Path, path: Path) -> None:
    """Copy `good` with every search-tree record set to 0xFF...: each record then
    points far past the data section, while the metadata stays intact."""
    with maxminddb.open_database(str(good), maxminddb.MODE_MEMORY) as reader:
        meta = reader.metadata()
        tree_size = meta.node_count * meta.record_size * 2 // 8
    data = bytearray(good.read_bytes())
    data[:tree_size] = b"\xff" * tree_size
    path.write_bytes(bytes(data))


def verify(good: Path, corrupt: Path) -> list[tuple[str, str, str, str]]:
    """Read the files back; fail loudly if anything differs from NETWORKS."""
    rows = []
    with maxminddb.open_database(str(good), maxminddb.MODE_MEMORY) as reader:
        meta = reader.metadata()
        if meta.build_epoch != FIXED_BUILD_EPOCH:
            sys.exit(f"build_epoch is {meta.build_epoch}, not pinned: is mmdb-writer the pinned version?")
        if meta.database_type != DATABASE_TYPE or meta.ip_version != 6:
            sys.exit(f"unexpected metadata: {meta}")
        for network, shape, _record, expected, sample in NETWORKS:
            record, prefix = reader.get_with_prefix_len(sample)
            got = country_of(record)
            if got != expected:
                sys.exit(f"{sample}: expected {expected}, read {got} from {record}")
            rows.append((network, shape, sample, expected or "none"))
        for sample in UNKNOWN_PROBES:
            got = country_of(reader.get(sample))
            if got is not None:
                sys.exit(f"{sample}: expected no country, read {got}")
            rows.append(("(not in database)", "-", sample, "none"))
    for sample, expected in MAPPED_PROBES:
        rows.append(("(IPv4-mapped, looked up as IPv4)", "-", sample, expected))

    with maxminddb.open_database(str(corrupt), maxminddb.MODE_MEMORY) as reader:
        try:
            reader.get("192.0.2.1")
        except maxminddb.InvalidDatabaseError:
            pass
        else:
            sys.exit("the corrupt fixture answered a lookup; it is not corrupt enough")
    return rows


def main() -> None:
    default_out = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=default_out)
    args = parser.parse_args()

    if mmdb_writer.__version__ != TESTED_WRITER_VERSION:
        print(
            f"warning: mmdb-writer {mmdb_writer.__version__} is not the pinned "
            f"{TESTED_WRITER_VERSION}; output may differ from the committed fixture",
            file=sys.stderr,
        )

    args.out_dir.mkdir(parents=True, exist_ok=True)
    good = args.out_dir / "geoip-test.mmdb"
    corrupt = args.out_dir / "geoip-corrupt.mmdb"
    write_fixture(good)
    write_corrupt(good, corrupt)
    rows = verify(good, corrupt)

    for path in (good, corrupt):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        print(f"wrote {path} ({path.stat().st_size} bytes, sha256 {digest})")
    print(f"database_type={DATABASE_TYPE!r} ip_version=6 build_epoch={FIXED_BUILD_EPOCH}")
    print()
    print("| network | record shape | sample IP | country |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
