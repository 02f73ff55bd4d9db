#!/usr/bin/env bash
# promtool (from Debian's prometheus package) for the test that lints /metrics
# (tests/api/usage_metrics.rs); only when missing.
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
echo "installing prometheus for promtool"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
