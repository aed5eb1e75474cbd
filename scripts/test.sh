#!/usr/bin/env bash
# The test command of the README: provisions PostgreSQL, runs `cargo test --workspace`
# (extra arguments are passed on to cargo), then prints how many behaviour tests ran
# and passed on each backend, and fails if either backend ran none.
#
# PostgreSQL is found or started, in this order:
#   1. TEST_DATABASE_URL, when set (used as given; it must allow CREATE DATABASE);
#   2. the server on 127.0.0.1:5432 (user postgres, database postgres), when it answers;
#   3. a throwaway cluster started with the installed initdb/pg_ctl (from PATH or
#      /usr/lib/postgresql/*/bin) in a temporary directory on a free port, as a
#      non-root user when run as root; stopped and removed when the script exits;
#   4. as root with apt-get: `apt-get install -y postgresql`, then as in 3.
# If none works the script exits non-zero saying why. PostgreSQL is never skipped.
#
# Environment:
#   TEST_DATABASE_URL   use this server (step 1).
#   PGTEST_SKIP_LOCAL=1 skip step 2 (to exercise the throwaway cluster).
#   PGTEST_PORT         first port tried for the throwaway cluster (default 55432).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'test.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# PostgreSQL provisioning (steps 1-4 above) lives in scripts/lib/postgres.sh.
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh
trap stop_cluster EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

provision_postgres

# --- run the tests ------------------------------------------------------------------
output=$(mktemp "${TMPDIR:-/tmp}/smtk-test-output.XXXXXX")
trap 'rm -f "$output"; stop_cluster' EXIT
started=$SECONDS
set +e
cargo test --workspace "$@" 2>&1 | tee "$output"
status=${PIPESTATUS[0]}
set -e
log "cargo test finished in $((SECONDS - started)) s with status $status"

# Per-backend counts, from the libtest lines of the behaviour test binary only.
expected=$(grep -cE '^\s+[a-z_]+::[a-z0-9_]+,$' crates/repo-behaviour/src/lib.rs || true)
count() { # $1 = backend, $2 = result regex
    awk -v backend="$1" -v result="$2" '
        /Running tests\/behaviour\.rs/ { inside = 1; next }
        /^ *(Running|Doc-tests) / { inside = 0 }
        inside && $1 == "test" && index($2, backend "::") == 1 && $0 ~ (" \\.\\.\\. " result "$") { n++ }
        END { print n + 0 }' "$output"
}
failed_backend=""
for backend in sqlite postgres; do
    ran=$(count "$backend" '(ok|FAILED|ignored)')
    passed=$(count "$backend" 'ok')
    log "behaviours on $backend: $ran ran, $passed passed (the suite has $expected)"
    ((passed > 0)) || failed_backend="$failed_backend $backend"
done
((status == 0)) || exit "$status"
[[ -z $failed_backend ]] || die "no behaviour test passed on:$failed_backend (the per-test lines of the default libtest output are needed to count them)"
