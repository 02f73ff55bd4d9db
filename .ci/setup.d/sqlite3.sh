#!/usr/bin/env bash
# The sqlite3 command-line shell: the privacy tests (tests/api/privacy.rs) dump the whole
# SQLite store with `.dump`, from Debian's package; only when missing. (pg_dump and psql come
# with the PostgreSQL server the CI runs.)
set -euo pipefail
if command -v sqlite3 >/dev/null; then
  exit 0
fi
echo "installing sqlite3 for the privacy dump tests"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends sqlite3 >/dev/null
