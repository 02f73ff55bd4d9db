# What the cluster scripts (run.sh, replica.sh) share; sourced, not run. Sets ROOT (the
# repository, also the working folder), PG_BIN, APP_BIN (default: the debug binary, built
# when missing), and defines say, fail and as_pg.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$(pwd)
APP_BIN=${APP_BIN:-$ROOT/target/debug/version-app}

say() { printf '%s\n' "$*" >&2; }
fail() { say "FAIL: $*"; exit 1; }

# initdb, pg_basebackup and the server refuse to run as root (or would leave files the
# server cannot read): as root, run them as the postgres user.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Checks the tools every cluster script needs, PostgreSQL's server binaries named in "$@".
need_tools() {
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  local tool
  for tool in "$@"; do
    [[ -x "$PG_BIN/$tool" ]] || fail "PostgreSQL server binaries ($tool) are missing"
  done
  command -v python3 >/dev/null || fail "python3 is missing"
  command -v psql >/dev/null || fail "psql is missing"
  if [[ ! -x "$APP_BIN" ]]; then
    say "building version-app (debug)"
    cargo build --locked --quiet
  fi
  [[ -x "$APP_BIN" ]] || fail "$APP_BIN is missing"
}
