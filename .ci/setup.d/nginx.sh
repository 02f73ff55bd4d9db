#!/usr/bin/env bash
# nginx, the load balancer of the cluster test (scripts/cluster/run.sh), from Debian's
# package; only when missing. The package's own service is not used: the test starts nginx
# with a configuration of its own in a temporary folder.
set -euo pipefail
if command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]]; then
  exit 0
fi
echo "installing nginx for the cluster test"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends nginx-light >/dev/null || \
  apt-get install -y -qq --no-install-recommends nginx >/dev/null
