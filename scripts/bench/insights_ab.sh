#!/usr/bin/env bash
# A/B timing of two builds on one filled insights store (docs/benchmarks-insights.md): the
# reference build and the new one each serve the same store in turn, twice (ref, new, ref,
# new, so drift on a shared machine hits both), and every insights endpoint and page is timed
# as in scripts/bench/insights.sh. Prints p50/p95 of both (the better of the two rounds of
# each) and the new/ref ratio of p50. Neither build migrates or rebuilds: both must read the
# store's schema as it is.
# Usage: scripts/bench/insights_ab.sh DATABASE_URL REF_BIN NEW_BIN
# Env: WEEKS (12, as loaded), SAMPLES (20).
set -euo pipefail
cd "$(dirname "$0")/../.."

URL="$1"
REF="$2"
NEW="$3"
WEEKS="${WEEKS:-12}"
SAMPLES="${SAMPLES:-20}"
WORK="$(mktemp -d)"
SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"' EXIT

source scripts/bench/insights_server.sh

# The account and token both builds use (an existing `bench` account is kept).
printf 'bench-password-1\n' | DATABASE_URL="$URL" "$REF" user add bench --role analyst >/dev/null 2>&1 || true
TOKEN="$(DATABASE_URL="$URL" "$REF" token create --scope insights:read --name bench-ab | tail -1)"

run() { # $1 label, $2 binary, $3 round
  BIN="$2" start_server "$URL" 86400
  python3 scripts/bench/insights_fleet.py time --url "http://127.0.0.1:$PORT" --token "$TOKEN" \
    --weeks "$WEEKS" --samples "$SAMPLES" >"$WORK/$1-$3.md"
  stop_server
}

for round in 1 2; do
  run ref "$REF" "$round"
  run new "$NEW" "$round"
done

python3 - "$WORK" <<'EOF'
import sys, pathlib
work = pathlib.Path(sys.argv[1])
def read(label):
    best = {}
    for f in sorted(work.glob(f"{label}-*.md")):
        for line in f.read_text().splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) == 3:
                path, p50, p95 = cells[0], float(cells[1]), float(cells[2])
                old = best.get(path)
                if old is None or p50 < old[0]:
                    best[path] = (p50, p95)
    return best
ref, new = read("ref"), read("new")
print("| endpoint or page | ref p50 | ref p95 | new p50 | new p95 | new/ref p50 |")
print("|---|---|---|---|---|---|")
for path, (r50, r95) in ref.items():
    n50, n95 = new.get(path, (float("nan"), float("nan")))
    print(f"| {path} | {r50:.1f} | {r95:.1f} | {n50:.1f} | {n95:.1f} | {n50 / r50:.2f} |")
EOF
