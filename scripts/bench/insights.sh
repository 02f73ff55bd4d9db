#!/usr/bin/env bash
# Insights benchmark (issue 13): for each backend and fleet size, a fresh store is filled
# through the ingest path with N installations x 12 weekly Service Ping submissions (a
# trimmed GitLab 18.9 payload, about 1,900 numeric leaves each) plus a version check per
# installation; the rollups are built by the product's own code (`version-app insights
# rebuild`, timed); then warm p50/p95 of every insights page and API endpoint, and the
# rollup cost per new submission (20 more submissions folded in by `insights refresh`).
# Usage: scripts/bench/insights.sh [SIZES]   (default "500 2000 8000")
# Env: BIN (a built binary; default: a release build), BACKENDS (default "sqlite postgres"), PG_ADMIN_URL, WEEKS (default 12), SAMPLES (20),
#      REBUILD_MAX (default 2000): above this many installations the timed `insights rebuild`
#      is replaced by the server's own rollup job running during the load (every 15 s), then
#      one timed `insights refresh` for what is left; the per-submission cost at that size is
#      then the job's (logged at debug level) and the incremental figure below.
set -euo pipefail
cd "$(dirname "$0")/../.."

SIZES="${1:-500 2000 8000}"
BACKENDS="${BACKENDS:-sqlite postgres}"
WEEKS="${WEEKS:-12}"
SAMPLES="${SAMPLES:-20}"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
WORK="$(mktemp -d)"
SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"' EXIT

if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin version-app
  BIN=target/release/version-app
fi
GEN=scripts/bench/insights_fleet.py

# free_port, start_server (sets PORT and SERVER_PID; logs to $WORK/server.log), stop_server
source scripts/bench/insights_server.sh

fresh_db() { # $1 backend -> prints url
  if [ "$1" = sqlite ]; then
    echo "sqlite://$WORK/bench-$RANDOM.db"
  else
    psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS va_insights_bench WITH (FORCE)" -c "CREATE DATABASE va_insights_bench" >/dev/null
    echo "${PG_ADMIN_URL%/*}/va_insights_bench"
  fi
}

store_size() { # $1 backend, $2 url, $3 submissions: the store's bytes, per submission
  if [ "$1" = sqlite ]; then
    bytes=$(du -cb "${2#sqlite://}"* | tail -1 | cut -f1)
  else
    bytes=$(psql -tA "$2" -c "SELECT pg_database_size(current_database())")
  fi
  python3 -c "print(f'store: {$bytes/1e9:.2f} GB = {$bytes/1e3/$3:.0f} KB per submission')"
}

seconds() { python3 -c 'import time; print(time.time())'; }

for backend in $BACKENDS; do
  for n in $SIZES; do
    echo "## $backend, $n installations x $WEEKS weeks"
    url="$(fresh_db "$backend")"
    DATABASE_URL="$url" "$BIN" migrate >/dev/null
    subs=$((n * WEEKS))
    if [ "$n" -le "${REBUILD_MAX:-2000}" ]; then
      # The rollup job is kept out of the way: the rebuild below is what is timed.
      start_server "$url" 86400
      python3 "$GEN" load --url "http://127.0.0.1:$PORT" --installations "$n" --weeks "$WEEKS"
      t0=$(seconds)
      DATABASE_URL="$url" "$BIN" insights rebuild
      t1=$(seconds)
      python3 -c "print(f'rebuild: {($t1-$t0):.1f} s for $subs submissions = {($t1-$t0)*1000/$subs:.1f} ms per submission')"
    else
      start_server "$url" 15
      python3 "$GEN" load --url "http://127.0.0.1:$PORT" --installations "$n" --weeks "$WEEKS"
      stop_server
      t0=$(seconds)
      DATABASE_URL="$url" "$BIN" insights refresh
      t1=$(seconds)
      python3 -c "print(f'rollups built by the server job during the load; the rest: {($t1-$t0):.1f} s')"
      start_server "$url" 86400
    fi
    # Planner statistics as autovacuum would leave them (this machine's cluster runs without
    # it, and stale ones after a bulk load say the insights tables are empty).
    [ "$backend" = postgres ] && psql -q "$url" -c ANALYZE
    # 20 new submissions (a 13th week for installations 0..19), folded in by the job's code.
    python3 "$GEN" load --url "http://127.0.0.1:$PORT" --installations 20 --weeks 1 --offset-weeks "$WEEKS" >/dev/null
    t0=$(seconds)
    DATABASE_URL="$url" "$BIN" insights refresh
    t1=$(seconds)
    python3 -c "print(f'incremental: {($t1-$t0)*1000/20:.1f} ms per new submission (20 folded in by insights refresh, process start included)')"
    token="$(DATABASE_URL="$url" "$BIN" token create --scope insights:read --name bench | tail -1)"
    printf 'bench-password-1\n' | DATABASE_URL="$url" "$BIN" user add bench --role analyst >/dev/null
    echo "| endpoint or page | p50 ms | p95 ms |"
    echo "|---|---|---|"
    python3 "$GEN" time --url "http://127.0.0.1:$PORT" --token "$token" --weeks "$WEEKS" --samples "$SAMPLES"
    stop_server
    store_size "$backend" "$url" "$subs"
    [ "$backend" = sqlite ] && rm -f "${url#sqlite://}"*
  done
done
