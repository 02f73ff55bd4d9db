#!/usr/bin/env bash
# Service Ping ingest benchmark (issue 4): for SQLite and PostgreSQL, on a fresh store each,
#   1. reference: the same payload bytes stored by plain single-row INSERTs, 16 threads;
#   2. ingest: 16 concurrent senders POST full generated payloads (distinct uuid and
#      recorded_at) to a release build; payloads/s, p50/p99; row counts verified;
#   3. big: 64 clients upload 5 MB bodies at once to a freshly started server; peak RSS of
#      the server (VmHWM); every 201 complete, every 503 left nothing.
# Usage: scripts/bench/ingest.sh [COUNT]   (COUNT payloads per run, default 2000)
# Env: PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres), BACKENDS
#      (default "sqlite postgres"), PAYLOAD (default: the generated 18.9 fixture),
#      PROFILE=DIR (record the server with `perf record` during the main run, into
#      DIR/BACKEND.perf.data, and write DIR/BACKEND.perf.txt: `perf report` by self time;
#      software cpu-clock sampling, so it works in VMs without hardware counters),
#      MERGE_MAX_WAIT (seconds before the merge job takes fewer than metric_block_min
#      staged submissions; default 5 here). Payload values vary per payload (ingest_load.rs).
set -euo pipefail
cd "$(dirname "$0")/../.."

COUNT="${1:-2000}"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
BACKENDS="${BACKENDS:-sqlite postgres}"
# The fixture is scripts/gen_payload.py's output for one full 18.9 instance; regenerate with
#   scripts/gen_payload.py --seed 1 --count 1 --out DIR
PAYLOAD="${PAYLOAD:-tests/fixtures/payload_18.9.0_generated.json}"
WORK="$(mktemp -d)"
SERVER_PID=""
trap '[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$WORK"' EXIT

cargo build --release --quiet --bin version-app --example ingest_load
BIN=target/release/version-app
LOAD=target/release/examples/ingest_load

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_server() { # $1 database url
  PORT="$(free_port)"
  # MERGE_MAX_WAIT: the tail of staged submissions below metric_block_min is merged after
  # this many seconds (the default waits 600 s, longer than the bench).
  VERSION_APP_LISTEN="127.0.0.1:$PORT" DATABASE_URL="$1" RUST_LOG="${SERVER_LOG:-warn}" \
    VERSION_APP_METRIC_MERGE_MAX_WAIT_SECS="${MERGE_MAX_WAIT:-5}" \
    VERSION_APP_DATABASE_POOL_SIZE=8 "$BIN" serve >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$PORT/-/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server did not become ready"; cat "$WORK/server.log"; exit 1
}

stop_server() {
  local peak
  peak=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  echo "server peak RSS (VmHWM): $((peak / 1024)) MB"
}

fresh_db() { # $1 backend -> prints url
  if [ "$1" = sqlite ]; then
    echo "sqlite://$WORK/bench-$RANDOM.db"
  else
    psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS va_bench WITH (FORCE)" -c "CREATE DATABASE va_bench" >/dev/null
    echo "${PG_ADMIN_URL%/*}/va_bench"
  fi
}

staged_count() { # $1 backend, $2 url: submissions whose values are not merged into blocks yet
  local sql="SELECT COUNT(*) FROM usage_data_values WHERE block_id IS NULL"
  if [ "$1" = sqlite ]; then sqlite3 "${2#sqlite://}" "$sql"; else psql -qAt "$2" -c "$sql"; fi
}

# Stored bytes per submission after the main run, per table with its indexes (and, on
# PostgreSQL, TOAST), every table of the store (the insights rollup included), and in total.
bytes_per_submission() { # $1 backend, $2 url
  if [ "$1" = sqlite ]; then
    local file="${2#sqlite://}"
    sqlite3 "$file" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
    sqlite3 -separator ' ' "$file" "
      WITH n AS (SELECT COUNT(*) AS rows FROM usage_data),
      t AS (SELECT s.tbl_name AS part, d.pgsize FROM dbstat d JOIN sqlite_schema s ON s.name = d.name)
      SELECT 'bytes per stored submission:', part, SUM(pgsize) / (SELECT rows FROM n) AS b FROM t
      GROUP BY part HAVING b > 0
      UNION ALL SELECT 'bytes per stored submission:', 'all tables', SUM(pgsize) / (SELECT rows FROM n) FROM t
      UNION ALL SELECT 'bytes per stored submission:', 'whole file', (SELECT page_count * page_size FROM pragma_page_count, pragma_page_size) / (SELECT rows FROM n)
      ORDER BY 3 DESC;"
  else
    # Merged submissions leave their staged bodies behind as dead tuples (mostly TOAST) until
    # (auto)vacuum frees them for the next staged ones. This machine runs with autovacuum
    # off, so the total is printed as left, then everything after the VACUUM autovacuum
    # would have run.
    psql -qAt -F ' ' "$2" -c "
      SELECT 'bytes per stored submission: all tables as left, before VACUUM',
             SUM(pg_total_relation_size(oid)) / (SELECT COUNT(*) FROM usage_data)
      FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace;"
    psql -qAt "$2" -c "VACUUM" >/dev/null
    psql -qAt -F ' ' "$2" -c "
      WITH n AS (SELECT COUNT(*) AS rows FROM usage_data),
      t AS (SELECT relname, pg_total_relation_size(oid) AS b FROM pg_class
            WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace)
      SELECT 'bytes per stored submission:', relname, b / (SELECT rows FROM n) FROM t
      WHERE b / (SELECT rows FROM n) > 0
      UNION ALL SELECT 'bytes per stored submission:', 'all tables', SUM(b) / (SELECT rows FROM n) FROM t
      ORDER BY 3 DESC;"
  fi
}

echo "payload: $PAYLOAD ($(wc -c <"$PAYLOAD") bytes), $COUNT payloads per run, 16 senders, $(nproc) cores"
for backend in $BACKENDS; do
  echo "== $backend"
  url="$(fresh_db "$backend")"
  DATABASE_URL="$url" "$BIN" migrate >/dev/null
  "$LOAD" --mode reference --database-url "$url" --payload "$PAYLOAD" --senders 16 --count "$COUNT"
  start_server "$url"
  # a short warm-up fills the key dictionary and the store's caches
  "$LOAD" --mode ingest --url "http://127.0.0.1:$PORT" --database-url "$url" --payload "$PAYLOAD" \
    --senders 16 --count 64 --run warm >/dev/null
  PERF_PID=""
  if [ -n "${PROFILE:-}" ]; then
    mkdir -p "$PROFILE"
    perf record -q -e cpu-clock -F "${PROFILE_HZ:-250}" --call-graph dwarf,8192 -p "$SERVER_PID" \
      -o "$PROFILE/$backend.perf.data" 2>"$PROFILE/$backend.perf.log" &
    PERF_PID=$!
    sleep 1
  fi
  "$LOAD" --mode ingest --url "http://127.0.0.1:$PORT" --database-url "$url" --payload "$PAYLOAD" \
    --senders 16 --count "$COUNT" --run main
  if [ -n "$PERF_PID" ]; then
    kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null || true
    perf report -i "$PROFILE/$backend.perf.data" --no-children -g none --percent-limit 0.2 \
      --sort dso,sym --stdio 2>/dev/null \
      | grep -v '^$' | head -400 > "$PROFILE/$backend.perf.txt" || true  # head: SIGPIPE
    echo "profile: $PROFILE/$backend.perf.data, self time by symbol in $PROFILE/$backend.perf.txt"
  fi
  # The writer's own view (warm-up included): groups, time inside the write transaction,
  # and time busy (scoring reads + transaction + verdicts), against the wall time above.
  curl -fs "http://127.0.0.1:$PORT/metrics" | awk '
    /^version_app_ingest_group_size_(sum|count) / { g[$1] = $2 }
    /^version_app_ingest_commit_seconds_(sum|count) / { c[$1] = $2 }
    /^version_app_ingest_writer_busy_seconds_total / { busy = $2 }
    /^version_app_ingest_(json|raw_stored)_bytes_total / { b[$1] = $2 }
    END {
      n = g["version_app_ingest_group_size_count"]; if (n == 0) n = 1
      printf "writer: %d groups, mean group size %.1f payloads, mean transaction %.0f ms, busy %.1f s in all\n",
        g["version_app_ingest_group_size_count"], g["version_app_ingest_group_size_sum"] / n,
        1000 * c["version_app_ingest_commit_seconds_sum"] / n, busy
      if (b["version_app_ingest_json_bytes_total"] > 0)
        printf "raw payloads: %.0f JSON bytes stored as %.0f (zstd)\n",
          b["version_app_ingest_json_bytes_total"], b["version_app_ingest_raw_stored_bytes_total"]
    }' || true
  # The merge job moves staged values into blocks behind the load: time until none is left.
  merge_start=$(date +%s.%N)
  for _ in $(seq 1 1200); do
    staged=$(staged_count "$backend" "$url")
    [ "${staged:-1}" = 0 ] && break
    sleep 0.5
  done
  echo "merge: staged left ${staged:-?}, $(python3 -c "import time; print(f'{time.time() - $merge_start:.1f}')") s after the last answer"
  curl -fs "http://127.0.0.1:$PORT/metrics" | awk '
    /^version_app_metric_values_merged_total / { merged = $2 }
    /^version_app_job_last_duration_seconds\{job="metric_merge"\}/ { last = $2 }
    END { printf "merge: %d submissions merged, last run %.0f ms\n", merged, 1000 * last }' || true
  stop_server
  bytes_per_submission "$backend" "$url"
  start_server "$url"
  "$LOAD" --mode big --url "http://127.0.0.1:$PORT" --database-url "$url" --payload "$PAYLOAD" \
    --senders 64 --big-mb 5 --run big
  stop_server
done
