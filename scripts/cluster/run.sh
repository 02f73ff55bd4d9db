#!/usr/bin/env bash
# The cluster test (issue 12, docs/scaling.md): two version-app nodes on one fresh PostgreSQL
# database behind nginx, under check and Service Ping load, while
#   1. node1 gets SIGTERM mid-run and is restarted   (store = what the nodes answered)
#   2. node2 gets SIGKILL mid-run                     (loss <= node2's unflushed, from /metrics)
#   3. one payload goes to both nodes at once         (stored once)
#   4. the once-across-processes jobs run on both     (once per interval, not twice)
#   5. PostgreSQL is stopped and started under load   (nodes reconnect, checks never fail,
#                                                      ingest 503 + Retry-After, nothing half-stored)
# scripts/cluster/driver.py does the phases and prints every figure; any failed check exits 1.
#
# PostgreSQL: a throw-away cluster of our own (initdb under the work folder, port PG_PORT), so
# that phase 5 can stop it; the server on 5432 is never touched. nginx: Debian's package.
# The app: the debug binary `cargo test` already built (APP_BIN to use another, e.g. a release
# build); built with `cargo build` when missing. Only 127.0.0.1 is used; every wait is bounded.
#
# Settings (environment): APP_BIN  PG_PORT=25432  NGINX_PORT=18190  NODE_PORTS=18181,18182
#   CHECK_THREADS=4  INGEST_THREADS=2  KEEP=1 (keep the work folder: logs, nginx access log)
set -euo pipefail
source "$(dirname "$0")/common.sh"

# Below the kernel's ephemeral range (32768-60999 here): a port in it can be taken at any
# moment by the local end of some outgoing connection, and PostgreSQL then cannot bind it.
PG_PORT=${PG_PORT:-25432}
NGINX_PORT=${NGINX_PORT:-18190}
NODE_PORTS=${NODE_PORTS:-18181,18182}

[[ "$PG_PORT" =~ ^[0-9]+$ && "$NGINX_PORT" =~ ^[0-9]+$ && "$NODE_PORTS" =~ ^[0-9]+,[0-9]+$ ]] \
  || fail "PG_PORT, NGINX_PORT must be numbers and NODE_PORTS two numbers separated by a comma"
[[ "$PG_PORT" != 5432 ]] || fail "PG_PORT must not be 5432: phase 5 stops this cluster's PostgreSQL"

NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x "$NGINX" ]] || fail "nginx is missing (.ci/setup.d/nginx.sh installs Debian's package)"
need_tools initdb pg_ctl

WORK=$(mktemp -d /tmp/va-cluster.XXXXXX)
chmod 755 "$WORK"
PGDATA="$WORK/pg"
cleanup() {
  if [[ -f "$WORK/nginx.pid" ]]; then kill -QUIT "$(cat "$WORK/nginx.pid")" 2>/dev/null || true; fi
  if [[ -f "$PGDATA/postmaster.pid" ]]; then
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
  fi
  if [[ "${KEEP:-}" == 1 ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- PostgreSQL of our own -----------------------------------------------------------------
mkdir -p "$PGDATA"
[[ $(id -u) -eq 0 ]] && chown postgres "$PGDATA"
as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres -A trust --no-sync >/dev/null
PG_OPTS="-p $PG_PORT -c listen_addresses=127.0.0.1 -k $PGDATA -c fsync=off -c max_connections=100"
PG_START="$(declare -f as_pg); as_pg '$PG_BIN/pg_ctl' -D '$PGDATA' -o '$PG_OPTS' -l '$PGDATA/server.log' -w -t 60 start"
PG_STOP="$(declare -f as_pg); as_pg '$PG_BIN/pg_ctl' -D '$PGDATA' -m fast -w -t 60 stop"
bash -c "$PG_START" >/dev/null
PSQL="psql -h 127.0.0.1 -p $PG_PORT -U postgres -d cluster -v ON_ERROR_STOP=1"
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc "CREATE DATABASE cluster" >/dev/null

# --- nginx in front of both nodes ----------------------------------------------------------
IFS=, read -r PORT1 PORT2 <<<"$NODE_PORTS"
mkdir -p "$WORK/nginx-tmp"
chmod 777 "$WORK/nginx-tmp"
cat >"$WORK/nginx.conf" <<EOF
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 1024; }
http {
  log_format upstream '\$remote_addr [\$time_local] "\$request" \$status '
                      'upstream=\$upstream_addr upstream_status=\$upstream_status '
                      'rt=\$request_time';
  access_log $WORK/nginx-access.log upstream;
  client_body_temp_path $WORK/nginx-tmp/body;
  proxy_temp_path $WORK/nginx-tmp/proxy;
  fastcgi_temp_path $WORK/nginx-tmp/fastcgi;
  uwsgi_temp_path $WORK/nginx-tmp/uwsgi;
  scgi_temp_path $WORK/nginx-tmp/scgi;
  client_max_body_size 8m;
  client_body_buffer_size 1m;

  upstream version_app {
    # Passive health checks: one failed connection takes a node out for 2 s.
    server 127.0.0.1:$PORT1 max_fails=1 fail_timeout=2s;
    server 127.0.0.1:$PORT2 max_fails=1 fail_timeout=2s;
    keepalive 32;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$host;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto \$scheme;
    proxy_connect_timeout 1s;
    proxy_read_timeout 60s;
    # Retry on the other node when a node refuses the connection, resets it or times out.
    # Never on an answer (a 503 means "busy or store down", and the client retries later).
    proxy_next_upstream error timeout;
    # Which node answered (the driver counts per node; a retried request lists both).
    add_header X-Upstream \$upstream_addr always;
    location / {
      proxy_pass http://version_app;
    }
    # nginx does not retry a POST once it was sent; Service Ping is idempotent here (a
    # duplicate is answered with the stored id, byte for byte), so retrying is safe.
    location = /usage_data {
      proxy_next_upstream error timeout non_idempotent;
      proxy_pass http://version_app;
    }
  }
}
EOF
"$NGINX" -t -q -c "$WORK/nginx.conf" -p "$WORK" 2>&1 | grep -v "could not open error log" >&2 || true
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK"

say "cluster: PostgreSQL 127.0.0.1:$PG_PORT (own cluster), nginx 127.0.0.1:$NGINX_PORT -> nodes $NODE_PORTS, app $APP_BIN"
APP_BIN="$APP_BIN" WORK="$WORK" CLUSTER_DB_URL="postgres://postgres@127.0.0.1:$PG_PORT/cluster?sslmode=disable" \
  PSQL="$PSQL" PG_STOP="$PG_STOP" PG_START="$PG_START" NGINX_PORT="$NGINX_PORT" NODE_PORTS="$NODE_PORTS" \
  FIXTURE="$ROOT/tests/fixtures/payload_18.9.0_minimal.json" \
  timeout 300 python3 "$ROOT/scripts/cluster/driver.py" || {
    status=$?
    say "--- last lines of the node logs ---"
    tail -n 15 "$WORK"/node*.log >&2 || true
    exit "$status"
  }
