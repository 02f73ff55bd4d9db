#!/usr/bin/env bash
# A/B timing of two builds on one filled insights store (docs/benchmarks-insights.md): the
# reference build and the new one each serve the same store in turn, twice (ref, new, ref,
# new, so drift on a shared machine hits both), and every insights endpoint and page is timed
# as in scripts/bench/insights.sh. Prints p50/p95 of both (the better of the two rounds of
# each) and the new/ref ratio of p50. Neither build rebuilds; the newer build migrates the
# store when it starts, and both run on the newer schema (allow_newer_schema).
# Then, COLD times per build and round, a change and the first ask after it: one new
# installation's submission placed in the last full week (a late upload) is posted and folded
# in with `insights refresh`, then every URL is asked once; printed as the p50 and the
# maximum of those first asks, the cost a change puts on the next reader of each view.
# Usage: scripts/bench/insights_ab.sh DATABASE_URL REF_BIN NEW_BIN
# Env: WEEKS (12, as loaded), SAMPLES (20), COLD (3).
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
# The reference build runs on the schema the newer one migrated to (roll-back mode).
export VERSION_APP_ALLOW_NEWER_SCHEMA=true

# The account and token both builds use (an existing `bench` account is kept).
printf 'bench-password-1\n' | DATABASE_URL="$URL" "$REF" user add bench --role analyst >/dev/null 2>&1 || true
TOKEN="$(DATABASE_URL="$URL" "$REF" token create --scope insights:read --name bench-ab | tail -1)"

COLD="${COLD:-3}"
NEXT_INSTALLATION=900000

run() { # $1 label, $2 binary, $3 round
  BIN="$2" start_server "$URL" 86400
  python3 scripts/bench/insights_fleet.py time --url "http://127.0.0.1:$PORT" --token "$TOKEN" \
    --weeks "$WEEKS" --samples "$SAMPLES" >"$WORK/$1-$3.md"
  for k in $(seq 1 "$COLD"); do
    NEXT_INSTALLATION=$((NEXT_INSTALLATION + 1))
    python3 scripts/bench/insights_fleet.py load --url "http://127.0.0.1:$PORT" --installations 1 \
      --first-installation "$NEXT_INSTALLATION" --weeks 1 --offset-weeks $((WEEKS - 1)) >/dev/null
    DATABASE_URL="$URL" "$2" insights refresh >/dev/null
    python3 scripts/bench/insights_fleet.py time --url "http://127.0.0.1:$PORT" --token "$TOKEN" \
      --weeks "$WEEKS" --warm 0 --samples 1 >"$WORK/cold-$1-$3-$k.md"
  done
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
    for f in sorted(work.glob(f"{label}-[0-9]*.md")):
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
def cold(label):
    seen = {}
    for f in sorted(work.glob(f"cold-{label}-*.md")):
        for line in f.read_text().splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) == 3:
                seen.setdefault(cells[0], []).append(float(cells[1]))
    return {p: (sorted(v)[(len(v) - 1) // 2], max(v)) for p, v in seen.items()}
cref, cnew = cold("ref"), cold("new")
if cref:
    print()
    print("First ask after a late submission (p50 and max of the first asks):")
    print()
    print("| endpoint or page | ref p50 | ref max | new p50 | new max | new/ref p50 |")
    print("|---|---|---|---|---|---|")
    for path, (r50, rmax) in cref.items():
        n50, nmax = cnew.get(path, (float("nan"), float("nan")))
        print(f"| {path} | {r50:.1f} | {rmax:.1f} | {n50:.1f} | {nmax:.1f} | {n50 / r50:.2f} |")
EOF
