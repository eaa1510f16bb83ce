#!/usr/bin/env bash
# Make sure the deployment tests find their programs: Debian's nginx (the
# cluster test starts a private one in front of three assay instances) and a
# Compose implementation for `config` (the `docker compose` plugin, else
# Debian's docker-compose). As root this script installs Debian's packages;
# otherwise it prints what is missing, and those tests are skipped (or fail
# when CI is set).
set -euo pipefail

missing=()
if ! command -v nginx > /dev/null && [ ! -x /usr/sbin/nginx ]; then
    missing+=(nginx)
fi
if ! docker compose version > /dev/null 2>&1 && ! command -v docker-compose > /dev/null; then
    missing+=(docker-compose)
fi
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${missing[*]}: install them (Debian or Ubuntu: sudo apt-get install ${missing[*]});" \
        "without them the deployment tests are skipped" >&2
    exit 0
fi
DEBIAN_FRONTEND=noninteractive apt-get update -qq
# Where policy-rc.d forbids starting services (as in containers), the
# package's nginx service stays off. Elsewhere Debian starts it on port 80,
# which the tests do not use.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
echo "installed ${missing[*]}"
