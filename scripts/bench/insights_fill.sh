#!/usr/bin/env bash
# Fills one insights bench store and keeps it, for scripts/bench/insights_ab.sh: migrates it,
# then loads N installations x WEEKS weekly submissions (plus their version checks) through
# a server's ingest path while the server's own rollup job folds them in every 15 s, then
# folds in the rest with `insights refresh`.
# Usage: BIN=path/to/version-app scripts/bench/insights_fill.sh DATABASE_URL N
# Env: WEEKS (default 12), SENDERS (default 8), OFFSET_WEEKS (default 0: the loaded weeks
# end with the last full week only when WEEKS + OFFSET_WEEKS is 12; with WEEKS=4
# OFFSET_WEEKS=8 only the last four weeks are loaded, what the 28-day window lists read).
set -euo pipefail
cd "$(dirname "$0")/../.."
URL="$1"
N="$2"
WEEKS="${WEEKS:-12}"
WORK="$(mktemp -d)"
SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
source scripts/bench/insights_server.sh

DATABASE_URL="$URL" "$BIN" migrate >/dev/null
start_server "$URL" 15
t0=$(date +%s)
python3 scripts/bench/insights_fleet.py load --url "http://127.0.0.1:$PORT" \
  --installations "$N" --weeks "$WEEKS" --senders "${SENDERS:-8}" \
  --offset-weeks "${OFFSET_WEEKS:-0}"
stop_server
DATABASE_URL="$URL" "$BIN" insights refresh
# Planner statistics as autovacuum would leave them (this machine's cluster runs without it;
# the first stats after a bulk load otherwise say the insights tables are empty).
case "$URL" in postgres*) psql -q "$URL" -c ANALYZE ;; esac
echo "filled: $N installations x $WEEKS weeks in $(( $(date +%s) - t0 )) s"
