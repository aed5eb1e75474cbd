#!/usr/bin/env bash
# The benchmark command: provisions PostgreSQL, then builds and runs `repo-bench` in
# release mode with the given arguments (default --quick; see --help). The markdown
# report goes to stdout, progress to stderr. Full mode also builds `repoctl`, which
# the copy section runs (next to repo-bench in target/release), with sqlite3 and psql.
#
#   bash scripts/bench.sh --quick                 # CI-sized, under 2 minutes
#   bash scripts/bench.sh --full --json bench.json
#
# PostgreSQL (repo-bench creates a fresh database on it and drops it afterwards):
#   1. BENCH_DATABASE_URL, when set (used as given; it must allow CREATE DATABASE);
#   2. otherwise found or started exactly as scripts/test.sh does (TEST_DATABASE_URL,
#      the server on 127.0.0.1:5432, a throwaway cluster, apt-get), see
#      scripts/lib/postgres.sh. A throwaway cluster runs with fsync=off, which the
#      report states: figures from it do not show durable commits.
# PgBouncer: BENCH_PGBOUNCER_URL when set, else one started in transaction mode in
# front of that server (scripts/lib/topologies.sh), for the pooler section.
# Replicas: BENCH_PRIMARY_URL and BENCH_STANDBY_URL when set, else a throwaway primary
# with a streaming replica, for the replica section.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'bench.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh
# shellcheck source=scripts/lib/topologies.sh
source scripts/lib/topologies.sh
trap stop_cluster EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -n ${BENCH_DATABASE_URL:-} ]]; then
    log "PostgreSQL: BENCH_DATABASE_URL from the environment: $(redact "$BENCH_DATABASE_URL")"
else
    provision_postgres
    BENCH_DATABASE_URL=$TEST_DATABASE_URL
fi
export BENCH_DATABASE_URL

# PgBouncer (transaction mode) in front of the same server, for the pooler section.
if [[ -z ${BENCH_PGBOUNCER_URL:-} ]]; then
    TEST_DATABASE_URL=$BENCH_DATABASE_URL provision_pgbouncer
    BENCH_PGBOUNCER_URL=$TEST_PGBOUNCER_URL
fi
export BENCH_PGBOUNCER_URL

# A primary of its own with a streaming replica, for the replica section.
if [[ -z ${BENCH_PRIMARY_URL:-} || -z ${BENCH_STANDBY_URL:-} ]]; then
    provision_standby
    BENCH_PRIMARY_URL=$TEST_PRIMARY_URL
    BENCH_STANDBY_URL=$TEST_STANDBY_URL
fi
export BENCH_PRIMARY_URL BENCH_STANDBY_URL

# The report quotes the command that produced it.
REPO_BENCH_COMMAND="bash scripts/bench.sh${*:+ $*}"
export REPO_BENCH_COMMAND

for arg in "$@"; do
    if [[ $arg == --full ]]; then
        cargo build --release -p repoctl
    fi
done
cargo run --release -p repo-bench -- "$@"
