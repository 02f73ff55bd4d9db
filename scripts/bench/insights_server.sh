# Sourced by scripts/bench/insights.sh and insights_ab.sh: one server on a bench store.
# Needs BIN (the build to run) and WORK (a scratch directory); sets PORT and SERVER_PID.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_server() { # $1 database url, $2 rollup job interval (s)
  PORT="$(free_port)"
  VERSION_APP_LISTEN="127.0.0.1:$PORT" DATABASE_URL="$1" RUST_LOG=warn \
    VERSION_APP_INSIGHTS_REFRESH_SECS="$2" VERSION_APP_DATABASE_POOL_SIZE=8 \
    VERSION_APP_ALLOW_NEWER_SCHEMA=true \
    "$BIN" serve >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 200); do
    curl -fs "http://127.0.0.1:$PORT/-/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server did not become ready"; cat "$WORK/server.log"; exit 1
}

stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; }
