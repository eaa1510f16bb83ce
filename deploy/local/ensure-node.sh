#!/usr/bin/env bash
# Make sure Node.js and npm are available to build the web app. As root, install
# Debian's packages, and otherwise print what to install.
set -euo pipefail
if command -v npm > /dev/null && command -v node > /dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "missing node and npm: install Node.js 18 or newer (Debian or Ubuntu: sudo apt-get install nodejs npm)" >&2
    exit 1
fi
DEBIAN_FRONTEND=noninteractive apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm > /dev/null
