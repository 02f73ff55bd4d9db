#!/usr/bin/env bash
# Rebuilds assets/zstd/service-ping.dict, the zstd dictionary raw Service Ping payloads are
# compressed with (src/db/models/usage_data_raw.rs): 200 full 18.9 payloads from the repo's
# generator (seed 7), trained with zstd's default (fastcover) trainer, 110 KiB. Both steps
# are deterministic; the shipped file was built with zstd 1.5.4.
# A changed dictionary needs a new encoding name (rows name the dictionary they need).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export VERSION_APP_METRIC_INDEX="${VERSION_APP_METRIC_INDEX:-/work/shared/payloads/metric_key_paths_gitlab_18.9.0-pre.tsv}"
python3 scripts/gen_payload.py --seed 7 --count 200 --out "$WORK/train" >/dev/null
zstd -q -f --train "$WORK"/train/*.json -o assets/zstd/service-ping.dict --maxdict=112640
sha1sum assets/zstd/service-ping.dict
