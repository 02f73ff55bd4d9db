#!/usr/bin/env bash
# The read-replica test (issue 12, docs/scaling.md "Read replica for analysts"): one
# version-app node with `database_read_url` on a REAL streaming standby of its primary, while
#   1. the standby keeps up            (analyst reads go to the replica, same answer as the primary)
#   2. replay is paused on the standby (lag grows past database_read_max_lag_secs: reads fall
#                                       back to the primary and see its new data; /metrics says so)
#   3. replay is resumed               (reads go back to the replica, which has caught up)
#   4. the standby is cut off from the primary (primary_conninfo pointed at a closed port: it
#                                       receives nothing, has replayed all it received, and
#                                       still must not be used; then reconnected)
# scripts/cluster/replica_driver.py does the phases and prints every figure; any failed check
# exits 1.
#
# PostgreSQL: two throw-away clusters of our own under the work folder: a primary (initdb,
# wal_level=replica) on PRIMARY_PORT and a standby made by `pg_basebackup -R` on STANDBY_PORT;
# the server on 5432 is never touched. A second node without a replica ("reference", on the
# primary only) gives the primary's answer to compare with.
# The app: the debug binary `cargo test` already built (APP_BIN to use another); built with
# `cargo build` when missing. Only 127.0.0.1 is used; every wait is bounded.
#
# Settings (environment): APP_BIN  PRIMARY_PORT=25440  STANDBY_PORT=25441
#   NODE_PORTS=18183,18184 (the node with the replica, the reference node)  MAX_LAG_SECS=2
#   KEEP=1 (keep the work folder: node logs, PostgreSQL logs)
set -euo pipefail
source "$(dirname "$0")/common.sh"

# Below the kernel's ephemeral range (32768-60999 here): a port in it can be taken at any
# moment by the local end of some outgoing connection, and PostgreSQL then cannot bind it
# (CI once failed so, with "pg_ctl: could not start server").
PRIMARY_PORT=${PRIMARY_PORT:-25440}
STANDBY_PORT=${STANDBY_PORT:-25441}
NODE_PORTS=${NODE_PORTS:-18183,18184}
MAX_LAG_SECS=${MAX_LAG_SECS:-2}

[[ "$PRIMARY_PORT" =~ ^[0-9]+$ && "$STANDBY_PORT" =~ ^[0-9]+$ && "$MAX_LAG_SECS" =~ ^[0-9]+$ ]] \
  || fail "PRIMARY_PORT, STANDBY_PORT and MAX_LAG_SECS must be numbers"
[[ "$NODE_PORTS" =~ ^[0-9]+,[0-9]+$ ]] || fail "NODE_PORTS must be two numbers separated by a comma"
[[ "$PRIMARY_PORT" != 5432 && "$STANDBY_PORT" != 5432 ]] \
  || fail "PRIMARY_PORT and STANDBY_PORT must not be 5432: this script makes clusters of its own"
[[ "$PRIMARY_PORT" != "$STANDBY_PORT" ]] || fail "PRIMARY_PORT and STANDBY_PORT must differ"

need_tools initdb pg_ctl pg_basebackup

WORK=$(mktemp -d /tmp/replica-XXXXXX)
chmod 755 "$WORK"
PRIMARY="$WORK/primary"
STANDBY="$WORK/standby"
stop_pg() {
  if [[ -f "$1/postmaster.pid" ]]; then
    as_pg "$PG_BIN/pg_ctl" -D "$1" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
  fi
}
cleanup() {
  # The driver stops its nodes itself; if it was killed, stop what it left (by pid file).
  for pidfile in "$WORK"/node*.pid; do
    [[ -f "$pidfile" ]] && kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
  done
  stop_pg "$STANDBY"
  stop_pg "$PRIMARY"
  if [[ "${KEEP:-}" == 1 ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PG_OPTS="-c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"

# --- the primary (folders made here: as root, the postgres user could not create them) -------------------------------------------------------------------------
mkdir -p "$PRIMARY" "$STANDBY" "$WORK/pg-run"
chmod 700 "$STANDBY"
[[ $(id -u) -eq 0 ]] && chown postgres "$PRIMARY" "$STANDBY" "$WORK/pg-run"
as_pg "$PG_BIN/initdb" -D "$PRIMARY" -U postgres -A trust --no-sync >/dev/null
# initdb's pg_hba.conf already trusts replication on 127.0.0.1; said here so it stays so.
echo "host replication postgres 127.0.0.1/32 trust" >>"$PRIMARY/pg_hba.conf"
as_pg "$PG_BIN/pg_ctl" -D "$PRIMARY" -l "$WORK/pg-run/primary.log" -w -t 60 start \
  -o "-p $PRIMARY_PORT -k $WORK/pg-run $PG_OPTS -c wal_level=replica -c max_wal_senders=4" >/dev/null \
  || { tail -n 20 "$WORK/pg-run/primary.log" >&2; fail "the primary did not start (its log above)"; }
psql -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d postgres -qc "CREATE DATABASE replica_test" >/dev/null

# --- the standby: a base backup of the primary, streaming from it ------------------------
t0=$EPOCHREALTIME
as_pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -D "$STANDBY" \
  -R -X stream -c fast --no-sync
as_pg "$PG_BIN/pg_ctl" -D "$STANDBY" -l "$WORK/pg-run/standby.log" -w -t 60 start \
  -o "-p $STANDBY_PORT -k $WORK/pg-run $PG_OPTS -c hot_standby=on" >/dev/null \
  || { tail -n 20 "$WORK/pg-run/standby.log" >&2; fail "the standby did not start (its log above)"; }
in_recovery=$(psql -h 127.0.0.1 -p "$STANDBY_PORT" -U postgres -d replica_test -Atc "SELECT pg_is_in_recovery()")
[[ "$in_recovery" == t ]] || fail "the standby is not in recovery (pg_is_in_recovery() = $in_recovery)"
streaming=""
for _ in $(seq 1 100); do
  streaming=$(psql -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d postgres -Atc \
    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
  [[ "$streaming" == 1 ]] && break
  sleep 0.1
done
[[ "$streaming" == 1 ]] || fail "the standby does not stream from the primary (pg_stat_replication: $streaming)"
say "replica test: primary 127.0.0.1:$PRIMARY_PORT, standby 127.0.0.1:$STANDBY_PORT (pg_basebackup -R," \
  "streaming, pg_is_in_recovery() = t, ready $(awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $t0 }") s" \
  "after the base backup began), $("$PG_BIN/postgres" --version), app $APP_BIN"

APP_BIN="$APP_BIN" WORK="$WORK" MAX_LAG_SECS="$MAX_LAG_SECS" NODE_PORTS="$NODE_PORTS" \
  PRIMARY_URL="postgres://postgres@127.0.0.1:$PRIMARY_PORT/replica_test?sslmode=disable" \
  STANDBY_URL="postgres://postgres@127.0.0.1:$STANDBY_PORT/replica_test?sslmode=disable" \
  FIXTURE="$ROOT/tests/fixtures/payload_18.9.0_minimal.json" \
  timeout 240 python3 "$ROOT/scripts/cluster/replica_driver.py" || {
    status=$?
    say "--- last lines of the node and PostgreSQL logs ---"
    tail -n 15 "$WORK"/node*.log "$WORK"/pg-run/*.log >&2 || true
    exit "$status"
  }
