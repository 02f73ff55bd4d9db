#!/usr/bin/env python3
"""Generate realistic GitLab Service Ping payloads for tests and benchmarks.

No public payload with production numbers exists, so this script builds them from the index of
every metric key path GitLab 18.9 defines (a TSV with the columns key_path, time_frame,
data_source, value_type, data_category, status, instrumentation_class, definition_file).
Every active or broken key path is nested into one JSON object and given a plausible value:

* numbers scale with the instance's size (active users, heavy-tailed), follow a heavy-tailed
  per-metric usage rate, and respect their time frame: ``7d`` < ``28d`` windows, ``all`` time
  counters that only grow from one weekly submission of an instance to the next (so deltas
  between submissions are meaningful, as the DevOps score expects), distinct-user metrics never
  exceed the user count;
* booleans, strings and the few object-valued metrics (``topology``, ``licensee``,
  ``git.version``, histograms, …) get realistic shapes;
* identity fields (uuid, unique_instance_id, hostname, version, edition, installation_type,
  recorded_at, active_user_count, historical_max_users, license_*) are consistent per instance;
* a configurable share of numeric metrics carry GitLab's special values: ``-1`` (failure),
  ``-2`` (HLL failure, Redis metrics), ``-1000`` (deprecated), ``-3`` (placeholder), and
  histograms become ``{"-1": -1}``.

Output is deterministic for a given ``--seed`` (no clock, no hash randomisation). Payload ``n``
belongs to instance ``n % uuid_pool`` and is that instance's ``n // uuid_pool``-th weekly
submission. Python 3.11 standard library only.

Examples::

    scripts/gen_payload.py --seed 1 --count 1 --out /tmp/payloads
    scripts/gen_payload.py --seed 7 --count 500 --uuid-pool 100 --ndjson /tmp/payloads.ndjson
    scripts/gen_payload.py --seed 2 --minimal --ndjson - | head -c 300
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import random
import sys
import uuid as uuidlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

# Where the index is looked for when --index is not given: $VERSION_APP_METRIC_INDEX, then the
# project's shared reference data (the file is ~1 MB, so it is not vendored into the repo),
# which lives in `shared/` beside the repository both on developer machines and in CI.
INDEX_ENV = "VERSION_APP_METRIC_INDEX"
INDEX_CANDIDATES = [
    Path(__file__).resolve().parent.parent.parent
    / "shared" / "payloads" / "metric_key_paths_gitlab_18.9.0-pre.tsv",
]

# Data categories an instance sends when only the required ones are enabled (--minimal).
REQUIRED_CATEGORIES = {"standard", "subscription", "operational"}

EDITIONS = [("CE", 35), ("EE Free", 25), ("EES", 5), ("EEP", 20), ("EEU", 15)]
PLANS = {"EES": "starter", "EEP": "premium", "EEU": "ultimate"}
INSTALLATION_TYPES = [
    ("omnibus-gitlab", 62),
    ("gitlab-helm-chart", 20),
    ("gitlab-development-kit", 3),
    ("source", 15),
]
# The three recorded_at forms seen in real payloads; the server must read them all.
TIME_FORMATS = ["utc_words", "iso_z", "offset"]
WORDS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell", "wonka"]


def weighted(rng: random.Random, choices):
    total = sum(weight for _, weight in choices)
    pick = rng.uniform(0, total)
    for value, weight in choices:
        pick -= weight
        if pick <= 0:
            return value
    return choices[0][0]


def make_uuid(rng: random.Random) -> str:
    return str(uuidlib.UUID(int=rng.getrandbits(128), version=4))


def format_time(at: datetime, style: str) -> str:
    if style == "utc_words":
        return at.strftime("%Y-%m-%d %H:%M:%S UTC")
    if style == "iso_z":
        return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    return at.strftime("%Y-%m-%d %H:%M:%S +0000")


def load_index(path: Path):
    """Rows of the index that a current payload can carry (status active or broken)."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        rows = [row for row in reader if row["status"] != "removed"]
    rows.sort(key=lambda row: row["key_path"])
    return rows


class Instance:
    """Everything that stays the same across one instance's weekly submissions."""

    def __init__(self, seed: int, index: int, start: datetime, version: str):
        rng = random.Random(f"{seed}/instance/{index}")
        self.seed = seed
        self.index = index
        self.uuid = make_uuid(rng)
        self.unique_instance_id = make_uuid(rng)
        word = WORDS[index % len(WORDS)]
        self.hostname = f"gitlab.{word}-{index:04d}.example.com"
        # Log-normal users: median ~120, a long tail up to tens of thousands.
        self.users = max(1, min(200_000, int(rng.lognormvariate(math.log(120), 1.7))))
        self.max_users = int(self.users * rng.uniform(1.0, 1.4))
        self.edition = weighted(rng, EDITIONS)
        ee = self.edition != "CE"
        self.version = f"{version}-ee" if ee else version
        self.installation_type = weighted(rng, INSTALLATION_TYPES)
        self.time_style = rng.choice(TIME_FORMATS)
        # Weekly slot derived from the instance, like GitLab's UUID-based schedule.
        self.first_at = start + timedelta(seconds=rng.randrange(7 * 24 * 3600))
        self.age_days = rng.uniform(30, 3000)
        self.plan = PLANS.get(self.edition)
        self.license_id = rng.randrange(1, 900_000) if self.plan else None
        self.license_user_count = (
            max(self.users, int(math.ceil(self.users * rng.uniform(1.0, 1.5) / 5) * 5))
            if self.plan
            else None
        )
        self.license_trial = bool(self.plan) and rng.random() < 0.08
        self.license_start = (self.first_at - timedelta(days=rng.randrange(1, 360))).date()
        self.license_sha256 = hashlib.sha256(f"{seed}/{index}/license".encode()).hexdigest()
        self.company = f"{word.capitalize()} {rng.choice(['Inc.', 'GmbH', 'Ltd', 'SAS', 'BV'])}"
        self.nodes = 1 if self.users < 500 else min(12, 1 + self.users // 2000)

        self._profiles: dict[str, tuple[bool, float, float]] = {}

    def profile(self, key: str) -> tuple[bool, float, float]:
        """How this instance uses one metric: (used at all, share of users, events per day).

        Seeded per metric, so a metric's profile does not depend on the rest of the index, and
        cached, so an instance's weekly submissions stay consistent and cheap to generate.
        """
        cached = self._profiles.get(key)
        if cached is None:
            rng = random.Random(f"{self.seed}/instance/{self.index}/metric/{key}")
            # About 40% of features are not used at all on a given instance: real payloads are
            # mostly zeros with a few large numbers.
            used = rng.random() >= 0.4
            share = min(1.0, rng.betavariate(0.6, 4.0))
            # Events per user per day: heavy tail (median 0.02, some features 100x more).
            rate = self.users * rng.lognormvariate(math.log(0.02), 1.6)
            cached = self._profiles[key] = (used, share, rate)
        return cached


def is_distinct_users(row) -> bool:
    """Metrics that count distinct users (or namespaces/projects): bounded by instance size."""
    key = row["key_path"]
    return (
        row["data_source"] == "redis_hll"
        or "distinct" in key
        or "unique" in key
        or ".user_" in key
        or "users" in key
        or key.startswith("usage_activity_by_stage")
    )


def number_value(instance: Instance, row, occurrence: int, noise: random.Random):
    """A plausible number for a numeric metric in submission `occurrence` of `instance`."""
    key, frame = row["key_path"], row["time_frame"]
    used, share, rate = instance.profile(key)
    if not used:
        return 0
    if is_distinct_users(row):
        window = {"7d": 0.6, "28d": 1.0, "all": 1.6, "none": 1.0}.get(frame, 1.0)
        base = instance.users * min(1.0, share * window)
        return min(instance.users, int(round(base * noise.uniform(0.85, 1.15))))
    if frame == "all":
        # An all-time counter: grows linearly with the instance's age, identical in every
        # generator run, and monotone across the instance's submissions.
        days = instance.age_days + 7 * occurrence
        return int(rate * days)
    if frame == "28d":
        return int(round(rate * 28 * noise.uniform(0.8, 1.2)))
    if frame == "7d":
        return int(round(rate * 7 * noise.uniform(0.7, 1.3)))
    return int(round(rate * 30))


def topology(instance: Instance, noise: random.Random):
    nodes = []
    for n in range(instance.nodes):
        services = [
            {
                "name": name,
                "process_count": count,
                "process_memory_pss": noise.randrange(150, 900) * 1_000_000,
                "process_memory_rss": noise.randrange(300, 1200) * 1_000_000,
                "process_memory_uss": noise.randrange(100, 800) * 1_000_000,
                **({"server": "puma"} if name == "web" else {}),
            }
            for name, count in (("web", 8 + n), ("sidekiq", 1 + n % 3), ("gitaly", 1))
        ]
        nodes.append(
            {
                "node_memory_total_bytes": 16 * 2**30 * (1 + n % 4),
                "node_memory_utilization": round(noise.uniform(0.2, 0.9), 2),
                "node_cpus": 4 * (1 + n % 4),
                "node_cpu_utilization": round(noise.uniform(0.05, 0.8), 2),
                "node_uname_info": {"machine": "x86_64", "sysname": "Linux", "release": "6.8.0-45-generic"},
                "node_services": services,
            }
        )
    return {
        "duration_s": round(noise.uniform(0.005, 0.2), 6),
        "application_requests_per_hour": int(instance.users * noise.uniform(20, 200)),
        "query_apdex_weekly_average": round(noise.uniform(0.95, 1.0), 3),
        "failures": [],
        "nodes": nodes,
    }


def object_value(instance: Instance, row, noise: random.Random, minimal: bool):
    key = row["key_path"]
    if key == "topology":
        return topology(instance, noise)
    if key == "licensee":
        if not instance.plan:
            return {}
        return {
            "Name": f"{instance.company} IT",
            "Email": f"it@{instance.hostname.split('.', 1)[1]}",
            "Company": instance.company,
        }
    if key == "license_add_ons":
        return {}
    if key == "git.version":
        return {"major": 2, "minor": 47, "patch": 2}
    if key.endswith("omniauth_providers"):
        return ["google_oauth2"] if noise.random() < 0.3 else []
    if key.endswith("user_auth_by_provider"):
        return {p: int(instance.users * noise.uniform(0, 0.5)) for p in ("standard", "two-factor", "two-factor-via-webauthn-device")}
    if key.endswith("_histogram"):
        return {"1": noise.randrange(0, 50), "5": noise.randrange(0, 10), "10": noise.randrange(0, 3)}
    if key == "settings.collected_data_categories":
        return sorted(REQUIRED_CATEGORIES) + ([] if minimal else ["optional"])
    if key == "settings.package_metadata_sync_activation_by_type_metric":
        return {kind: noise.random() < 0.5 for kind in ("npm", "maven", "pypi", "nuget", "golang")}
    if key == "instance_feature_flags":
        return []
    # index_inconsistencies, batched_background_migrations_metric, geo_node_usage: lists that
    # are empty on a healthy single-node instance.
    return []


def string_value(instance: Instance, row, recorded_at: datetime, noise: random.Random):
    key = row["key_path"]
    fixed = {
        "uuid": instance.uuid,
        "unique_instance_id": instance.unique_instance_id,
        "hostname": instance.hostname,
        "version": instance.version,
        "edition": instance.edition,
        "installation_type": instance.installation_type,
        "recorded_at": format_time(recorded_at, instance.time_style),
        "recording_ce_finished_at": format_time(recorded_at + timedelta(seconds=41), instance.time_style),
        "recording_ee_finished_at": format_time(recorded_at + timedelta(seconds=58), instance.time_style),
        "installation_creation_date_approximation": format_time(
            recorded_at - timedelta(days=instance.age_days), "utc_words"
        ),
        "database.adapter": "postgresql",
        "database.version": "16.8",
        "database.flavor": "PostgreSQL",
        "database.mode": "single-database-ci-connection",
        "gitaly.version": instance.version.removesuffix("-ee"),
        "gitlab_pages.version": instance.version.removesuffix("-ee"),
        "settings.operating_system": "ubuntu-24.04",
        "settings.duo_availability": "default_on",
        "settings.patched_files": "",
        "advanced_search.distribution": "elasticsearch",
        "advanced_search.version": "8.15.3",
        "advanced_search.lucene_version": "9.11.1",
        "advanced_search.build_type": "docker",
        "license_sha256": instance.license_sha256 if instance.plan else None,
        "license_plan": instance.plan,
        "license_subscription_id": f"8a{instance.index:030x}" if instance.plan else "",
        "license_starts_at": instance.license_start.isoformat() if instance.plan else None,
        "license_expires_at": (instance.license_start + timedelta(days=365)).isoformat() if instance.plan else None,
        "license_trial_ends_on": None,
    }
    if key in fixed:
        return fixed[key]
    if key.endswith(".provider"):
        return "AWS"
    return ""


# Index entries whose value_type disagrees with what instances actually send.
MISTYPED = {
    "container_registry_server.vendor": lambda inst, rng: "gitlab",
    "container_registry_server.version": lambda inst, rng: "4.15.2-gitlab",
    "mail.smtp_server": lambda inst, rng: "smtp.example.com",
    "gitaly.filesystems": lambda inst, rng: ["ext4"],
    "object_store.uploads.enabled": lambda inst, rng: rng.random() < 0.5,
    "counts.licenses_list_views": lambda inst, rng: rng.randrange(0, 200),
    # A 64-bit identifier: larger than 2^53, so consumers must not expect exact floats.
    "database.pg_system_id": lambda inst, rng: 7_000_000_000_000_000_000 + inst.index * 7919,
}


def special_for(row, value, rng: random.Random):
    """A special value standing in for `value` (numbers and histograms only)."""
    if isinstance(value, dict) and row["key_path"].endswith("_histogram"):
        return {"-1": -1}
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if row["data_source"] == "redis_hll":
        return -2
    return weighted(rng, [(-1, 85), (-3, 10), (-1000, 5)])


def set_path(tree: dict, key: str, value) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def build_payload(rows, instance: Instance, occurrence: int, args) -> dict:
    noise = random.Random(f"{args.seed}/instance/{instance.index}/submission/{occurrence}")
    specials = random.Random(f"{args.seed}/instance/{instance.index}/specials/{occurrence}")
    recorded_at = instance.first_at + timedelta(days=7 * occurrence)
    payload: dict = {}
    # Identity first, in the order GitLab emits it; the index order follows after.
    numbers = {
        "active_user_count": instance.users,
        "historical_max_users": instance.max_users,
        "license_id": instance.license_id,
        "license_user_count": instance.license_user_count,
        "license_billable_users": instance.users if instance.plan else None,
    }
    for row in rows:
        key, kind = row["key_path"], row["value_type"]
        if args.minimal and row["data_category"] not in REQUIRED_CATEGORIES:
            continue
        if key in MISTYPED:
            value = MISTYPED[key](instance, noise)
        elif key in numbers:
            value = numbers[key]
        elif key == "license_trial":
            value = instance.license_trial
        elif kind == "number":
            value = number_value(instance, row, occurrence, noise)
        elif kind == "boolean":
            value = noise.random() < (0.35 if key.endswith("_enabled") else 0.5)
        elif kind == "object":
            value = object_value(instance, row, noise, args.minimal)
        else:
            value = string_value(instance, row, recorded_at, noise)
        # Top-level keys are identity/license fields: keep them intact so payloads stay
        # attributable; sentinels go to the metric buckets, as in real payloads.
        # Histograms run the heaviest queries and time out far more often than counters.
        rate = min(1.0, args.special_rate * (10 if key.endswith("_histogram") else 1))
        if "." in key and specials.random() < rate:
            value = special_for(row, value, specials)
        set_path(payload, key, value)
    order = ["recorded_at", "uuid", "unique_instance_id", "hostname", "version", "installation_type",
             "active_user_count", "edition", "license_sha256", "license_id", "historical_max_users",
             "licensee", "license_user_count", "license_starts_at", "license_expires_at",
             "license_plan", "license_trial"]
    ordered = {key: payload.pop(key) for key in order if key in payload}
    ordered.update(payload)
    return ordered


def find_index(explicit: str | None) -> Path:
    if explicit:
        if not Path(explicit).is_file():
            sys.exit(f"metric index not found: {explicit}")
        return Path(explicit)
    candidates = []
    if os.environ.get(INDEX_ENV):
        candidates.append(Path(os.environ[INDEX_ENV]))
    candidates += INDEX_CANDIDATES
    for path in candidates:
        if path.is_file():
            return path
    sys.exit(f"metric index not found; pass --index PATH or set {INDEX_ENV} "
             "(the metric_key_paths_gitlab_*.tsv file)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--count", type=int, default=1, help="number of payloads (default 1)")
    parser.add_argument("--uuid-pool", type=int, default=None,
                        help="number of distinct instances (default: one per payload)")
    parser.add_argument("--minimal", action="store_true",
                        help="only required data categories (~300 keys), as instances with optional metrics off send")
    parser.add_argument("--special-rate", type=float, default=0.01,
                        help="share of numeric metrics replaced by special values (default 0.01)")
    parser.add_argument("--gitlab-version", default="18.9.0",
                        help="GitLab version to report, without the -ee suffix (default 18.9.0)")
    parser.add_argument("--start", default="2026-01-05",
                        help="UTC date of the first submission week (default 2026-01-05)")
    parser.add_argument("--index", help=f"metric key path TSV (default: ${INDEX_ENV} or a known location)")
    parser.add_argument("--pretty", action="store_true", help="indent JSON files written with --out (GitLab itself sends compact JSON)")
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", help="directory: one NNNNN-<uuid8>.json file per payload")
    out.add_argument("--ndjson", help="file with one payload per line ('-' for stdout)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    if args.uuid_pool is not None and args.uuid_pool < 1:
        parser.error("--uuid-pool must be at least 1")
    if not 0.0 <= args.special_rate <= 1.0:
        parser.error("--special-rate must be between 0 and 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    rows = load_index(find_index(args.index))
    start = datetime.strptime(args.start, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    pool = args.uuid_pool or args.count
    instances: dict[int, Instance] = {}
    dumps = (lambda p: json.dumps(p, indent=2, ensure_ascii=False)) if args.pretty else (
        lambda p: json.dumps(p, separators=(",", ":"), ensure_ascii=False))

    if args.out:
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        sink = None
    else:
        sink = sys.stdout if args.ndjson == "-" else open(args.ndjson, "w", encoding="utf-8")
    try:
        for n in range(args.count):
            index = n % pool
            instance = instances.get(index)
            if instance is None:
                instance = instances[index] = Instance(args.seed, index, start, args.gitlab_version)
            payload = build_payload(rows, instance, n // pool, args)
            if sink is None:
                (out_dir / f"{n:05d}-{instance.uuid[:8]}.json").write_text(dumps(payload) + "\n", encoding="utf-8")
            else:
                sink.write(json.dumps(payload, separators=(",", ":"), ensure_ascii=False) + "\n")
    finally:
        if sink not in (None, sys.stdout):
            sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
