#!/usr/bin/env bash
# The test command of the README: provisions every topology the suite runs against,
# runs `cargo test --workspace --no-fail-fast` (extra arguments are passed on to
# cargo), then prints every count: tests passed, failed and ignored over all test
# binaries, the failed tests by name, and how many behaviours ran and passed on each
# backend and topology. It fails if any test failed or any topology ran fewer
# behaviours than the suite has. Nothing is skipped: a topology that cannot be
# provisioned stops the script with the reason.
#
# Topologies (each behaviour runs once per topology: `sqlite::`, `postgres::`,
# `pgbouncer::`, `replica::`):
#   - SQLite: temporary files, no server.
#   - PostgreSQL, found or started in this order (scripts/lib/postgres.sh):
#       1. TEST_DATABASE_URL, when set (used as given; it must allow CREATE DATABASE);
#       2. the server on 127.0.0.1:5432 (user postgres, database postgres), when it answers;
#       3. a throwaway cluster started with the installed initdb/pg_ctl (from PATH or
#          /usr/lib/postgresql/*/bin) in a temporary directory on a free port, as a
#          non-root user when run as root; stopped and removed when the script exits;
#       4. as root with apt-get: `apt-get install -y postgresql`, then as in 3.
#   - PgBouncer in transaction mode in front of that server (Debian's pgbouncer,
#     installed as root with apt-get when missing), TEST_PGBOUNCER_URL.
#   - A streaming standby (pg_basebackup -R) of a primary the script controls,
#     TEST_PRIMARY_URL and TEST_STANDBY_URL (scripts/lib/topologies.sh): the replica
#     tests, and the behaviour suite on a store with that replica configured.
#   - nftables' `nft` for the network-partition tests (installed likewise).
#
# Environment:
#   TEST_DATABASE_URL      use this server (step 1).
#   PGTEST_SKIP_LOCAL=1    skip step 2 (to exercise the throwaway cluster).
#   PGTEST_PORT            first port tried for throwaway clusters (default 55432).
#   PGTEST_PGBOUNCER_PORT  first port tried for PgBouncer (default 56432).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'test.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh
# shellcheck source=scripts/lib/topologies.sh
source scripts/lib/topologies.sh
output=""
cleanup() {
    [[ -z $output ]] || rm -f "$output"
    stop_cluster
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

provision_postgres
provision_pgbouncer
provision_standby
require_nft

# --- run the tests ------------------------------------------------------------------
output=$(mktemp "${TMPDIR:-/tmp}/smtk-test-output.XXXXXX")
started=$SECONDS
set +e
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$output"
status=${PIPESTATUS[0]}
set -e
log "cargo test finished in $((SECONDS - started)) s with status $status"

# --- the summary: every count, whatever failed ----------------------------------------
tally() { grep -cE "^test .* \.\.\. $1([ ,]|\$)" "$output" || true; }
log "all test binaries: $(tally ok) passed, $(tally FAILED) failed, $(tally ignored) ignored"
failed_tests=$(grep -E '^test .* \.\.\. FAILED$' "$output" | sed -E 's/^test (.*) \.\.\. FAILED$/\1/' || true)
if [[ -n $failed_tests ]]; then
    log "failed tests:"
    printf '  %s\n' $failed_tests >&2
fi
# Binaries that did not get as far as a result line (a crash, a failed build).
grep -E '^error: |^  +`.*`$|process didn.t exit successfully' "$output" | sed 's/^ */test.sh: cargo: /' >&2 || true

# Per-topology counts, from the libtest lines of the behaviour test binary only.
# The suite's size: the `module::behaviour,` lines of the behaviour modules' own lists.
expected=$(cat crates/repo-behaviour/src/*.rs | grep -cE '^\s+[a-z_]+::[a-z0-9_]+,$' || true)
count() { # $1 = topology, $2 = result regex
    awk -v topology="$1" -v result="$2" '
        /Running tests\/behaviour\.rs/ { inside = 1; next }
        /^ *(Running|Doc-tests) / { inside = 0 }
        inside && $1 == "test" && index($2, topology "::") == 1 && $0 ~ (" \\.\\.\\. " result "$") { n++ }
        END { print n + 0 }' "$output"
}
incomplete=""
for topology in sqlite postgres pgbouncer replica; do
    ran=$(count "$topology" '(ok|FAILED|ignored)')
    passed=$(count "$topology" 'ok')
    log "behaviours on $topology: $ran ran, $passed passed, $((ran - passed)) did not pass (the suite has $expected)"
    ((ran == expected)) || incomplete="$incomplete $topology($ran of $expected)"
done
((status == 0)) || die "cargo test failed (status $status): see the failed tests above"
[[ -z $incomplete ]] || die "not every behaviour ran on:$incomplete (the per-test lines of the default libtest output are needed to count them)"
log "every test passed"
