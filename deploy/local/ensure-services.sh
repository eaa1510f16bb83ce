#!/usr/bin/env bash
# Make sure the tests can reach Redis and PostgreSQL.
#
# Where a server already answers on 127.0.0.1:6379 or :5432 the tests use it.
# Otherwise the test suite starts private servers itself (pytest-redis and
# pytest-postgresql), which needs the server programs installed: as root this
# script installs Debian's packages. PostgreSQL's initdb refuses to run as
# root, so as root it instead creates and starts a trust-auth cluster of the
# Debian package on port 5432.
set -euo pipefail

answers() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

install_packages() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing $*: install them (Debian or Ubuntu: sudo apt-get install $*)" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" > /dev/null
}

if answers 6379; then
    echo "Redis answers on 127.0.0.1:6379"
elif command -v redis-server > /dev/null; then
    echo "Redis is installed; the tests start a private one"
else
    install_packages redis-server
fi

pg_ctl_path() {
    ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1
}

if answers 5432; then
    echo "PostgreSQL answers on 127.0.0.1:5432"
    exit 0
fi
if [ -z "$(pg_ctl_path)" ] && ! command -v pg_ctl > /dev/null; then
    install_packages postgresql
fi
if [ "$(id -u)" -eq 0 ]; then
    version=$(basename "$(dirname "$(dirname "$(pg_ctl_path)")")")
    if ! pg_lsclusters -h 2>/dev/null | awk '{print $2}' | grep -qx assay-test; then
        pg_createcluster "$version" assay-test --port 5432 -- --auth=trust > /dev/null
    fi
    pg_ctlcluster "$version" assay-test start
    echo "started PostgreSQL $version (cluster assay-test) on 127.0.0.1:5432"
else
    echo "PostgreSQL is installed; the tests start a private one"
fi
