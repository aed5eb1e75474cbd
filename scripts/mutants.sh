#!/usr/bin/env bash
# Mutation testing: cargo-mutants (https://mutants.rs, `cargo install cargo-mutants
# --locked`) plants one small bug at a time (a flipped comparison, a dropped condition,
# a function body replaced by a default value) in the files where the rules live, and
# checks that some test fails. Not in CI: it rebuilds a crate once per mutant, about an
# hour for every group on 2 cores (docs/TESTING.md has the last measured run).
#
#   bash scripts/mutants.sh                 # every group
#   bash scripts/mutants.sh core repoctl    # some groups
#   bash scripts/mutants.sh --summary       # only print the table of the last runs
#
# Groups (the files mutated; the tests each mutant is run against):
#   core      repo-core: enums, access, api_key, validate, search, operation, document,
#             collection, chunk. Stage 1: repo-core's own tests (unit tests and tests/*.rs).
#             Stage 2, for the mutants stage 1 missed: the behaviour suite on SQLite
#             (`--test behaviour sqlite::`).
#   repoctl   repoctl: value conversion (value, timestamp, json) and verification
#             (verify). Stage 1: repoctl's unit tests; stage 2: tests/cli.rs (copy and
#             verify between SQLite and PostgreSQL; needs PostgreSQL).
#   sqlite    repo-sqlite: operations, collections, api_keys, documents. Stage 1:
#             repo-sqlite's own tests; stage 2: the behaviour suite on SQLite.
#   postgres  repo-postgres: the same four files. Stage 1: repo-postgres's unit tests,
#             tests/smoke.rs and tests/documents_chunks.rs; stage 2: the behaviour
#             suite on PostgreSQL (`postgres::`).
# Stage 2 is `cargo mutants --iterate`: it skips what stage 1 caught or found unviable,
# so the slow run is paid only for the mutants the crate's own tests miss.
#
# The scratch builds link with mold when it is installed (`apt-get install mold`) and
# without debug information: linking the test binaries is most of a mutant's build.
#
# Each group's results go to mutants.out/GROUP/ (mutants.out/GROUP-FILES/ for a run
# limited by MUTANTS_FILES; stage 1 in mutants.out.old when a stage 2 ran); at the end
# the script prints, per file, the mutants caught, missed, timed out and unviable, and
# the score: (caught + timeout) / viable mutants.
#
# Before any mutant, the unmutated tree must pass each stage's test command (run here
# with the ordinary target/, timed): a failing or flaky suite would count every mutant
# as caught. cargo-mutants then copies the tree (without target/ and .git) to a scratch
# directory and builds there into a target directory of its own, MUTANTS_TARGET_DIR
# (default target/mutants), which is kept between runs so that the dependencies are
# built once. Never point it at target/ itself: an artifact built from a mutated copy
# would look up to date to a later build of the real tree (same relative paths, newer
# mtime).
#
# PostgreSQL (repoctl and postgres groups) is found or started as scripts/test.sh does
# (TEST_DATABASE_URL, the server on 127.0.0.1:5432, a throwaway cluster).
#
# Environment:
#   MUTANTS_JOBS         parallel scratch trees (default 1; each one is a full build)
#   MUTANTS_TARGET_DIR   the target directory of the scratch builds (target/mutants)
#   MUTANTS_TIMEOUT      seconds a mutant's test run may take (default: 3 x the
#                        unmutated run, at least 20)
#   MUTANTS_NICE         niceness of everything the script runs (default 15)
#   MUTANTS_FILES        file stems to mutate instead of the group's list (one group)
#   MUTANTS_ARGS         extra arguments for every cargo-mutants call (e.g. --shard 1/4,
#                        --re 'search')
#   TEST_DATABASE_URL, PGTEST_PORT as for scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# Everything at low priority (MUTANTS_NICE, default 15): hours of builds on a shared machine.
[[ -n ${MUTANTS_RENICED:-} ]] || exec env MUTANTS_RENICED=1 nice -n "${MUTANTS_NICE:-15}" bash "$0" "$@"

log() { printf 'mutants.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- the groups --------------------------------------------------------------------
# group -> package, files, stage 1 cargo test arguments (on the package), stage 2
# package and test target (empty: no stage 2) and the filter of its tests.
declare -A package files stage1 stage2 filter2
package[core]=repo-core
files[core]="enums access api_key validate search operation document collection chunk"
stage1[core]="--tests"
stage2[core]="smtk-repo behaviour"
filter2[core]="sqlite::"
package[repoctl]=repoctl
files[repoctl]="value timestamp json verify"
stage1[repoctl]="--lib"
stage2[repoctl]="repoctl cli"
filter2[repoctl]=""
package[sqlite]=repo-sqlite
files[sqlite]="operations collections api_keys documents"
stage1[sqlite]="--tests"
stage2[sqlite]="smtk-repo behaviour"
filter2[sqlite]="sqlite::"
package[postgres]=repo-postgres
files[postgres]="operations collections api_keys documents"
stage1[postgres]="--lib --test=smoke --test=documents_chunks"
stage2[postgres]="smtk-repo behaviour"
filter2[postgres]="postgres::"
all_groups=(core repoctl sqlite postgres)

# --- the summary: final outcome of every mutant, per file ----------------------------
# The last stage that tested a mutant decides its outcome (stage 2 re-tests what stage 1
# missed or timed out on), except that a timeout in stage 1 stays one (a hang is a
# noticed bug, even when stage 2's tests do not reach the looping code).
summary() {
    local run dir outcome dirs stage2 stage
    {
        # One directory per run (a group, or a group limited by MUTANTS_FILES), oldest
        # first, so that a later run of the same mutant decides.
        for run in $(ls -dtr mutants.out/*/mutants.out 2>/dev/null); do
            # mutants.out.old holds stage 1 only when the newest run was a stage 2
            # (`--iterate` leaves previously_caught.txt). Stage 2's outcomes are marked:
            # its "missed" does not undo a stage-1 timeout.
            dirs=("$run") stage2=""
            [[ -e $run/previously_caught.txt ]] && dirs=("$run.old" "$run") stage2=$run
            for dir in "${dirs[@]}"; do
                stage=1
                [[ $dir == "$stage2" ]] && stage=2
                for outcome in caught missed timeout unviable; do
                    [[ -s $dir/$outcome.txt ]] && sed "s/^/$outcome\t$stage\t/" "$dir/$outcome.txt"
                done
            done
        done
        true
    } | awk -F'\t' '
        # A later run decides, except that a stage-2 "missed" keeps a stage-1
        # timeout: stage 2 re-tests timeouts with tests that may not reach the loop.
        { if (!($2 == 2 && $1 == "missed" && final[$3] == "timeout")) final[$3] = $1 }
        END {
            for (m in final) {
                file = m; sub(/:.*/, "", file)
                files[file] = 1; n[file, final[m]]++; n["total", final[m]]++
            }
            count = 0
            for (f in files) sorted[++count] = f
            if (!count) { print "no mutant tested yet"; exit }
            for (i = 1; i <= count; i++) for (j = i + 1; j <= count; j++)
                if (sorted[j] < sorted[i]) { t = sorted[i]; sorted[i] = sorted[j]; sorted[j] = t }
            sorted[++count] = "total"
            printf "| file | caught | missed | timeout | unviable | score |\n|---|---:|---:|---:|---:|---:|\n"
            for (i = 1; i <= count; i++) {
                f = sorted[i]; c = n[f, "caught"] + 0; m = n[f, "missed"] + 0
                t = n[f, "timeout"] + 0; u = n[f, "unviable"] + 0
                score = (c + m + t) ? sprintf("%.1f %%", 100 * (c + t) / (c + m + t)) : "-"
                printf "| %s | %d | %d | %d | %d | %s |\n", f, c, m, t, u, score
            }
        }'
}

[[ ${1:-} == --summary ]] && { summary; exit 0; }
groups=("$@")
((${#groups[@]})) || groups=("${all_groups[@]}")
for group in "${groups[@]}"; do
    [[ -n ${package[$group]:-} ]] || die "unknown group '$group' (groups: ${all_groups[*]})"
done
command -v cargo-mutants >/dev/null ||
    die "cargo-mutants is not installed: cargo install cargo-mutants --locked"

needs_postgres=0
for group in "${groups[@]}"; do
    [[ $group == repoctl || $group == postgres ]] && needs_postgres=1
done
if ((needs_postgres)); then
    # shellcheck source=scripts/lib/postgres.sh
    source scripts/lib/postgres.sh
    trap stop_cluster EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    provision_postgres
fi

# Absolute: cargo runs in the scratch copy, where a relative path would point elsewhere.
target_dir=$(realpath -m "${MUTANTS_TARGET_DIR:-$root/target/mutants}")
[[ $target_dir != "$(realpath -m "$root/target")" ]] ||
    die "MUTANTS_TARGET_DIR must not be target/ itself (see the top of this script)"
read -r -a extra <<<"${MUTANTS_ARGS:-}"
linker_flags=""
command -v mold >/dev/null && linker_flags="-C link-arg=-fuse-ld=mold"

# Runs `cargo test ARGS -- FILTER` on the unmutated tree (ordinary target/): builds,
# then fails if a test fails, and sets `timeout` to 3 x the test run (at least 20 s).
preflight() {
    local filter=$1
    shift
    log "unmutated tree: cargo test $* -- $filter"
    cargo test --no-run "$@" >"$root/mutants.out/preflight.log" 2>&1 ||
        die "the unmutated tree does not build (mutants.out/preflight.log)"
    local started=$SECONDS
    cargo test "$@" -- "$filter" >"$root/mutants.out/preflight.log" 2>&1 ||
        die "the unmutated tree fails 'cargo test $* -- $filter' (mutants.out/preflight.log): fix that first"
    local took=$((SECONDS - started))
    timeout=${MUTANTS_TIMEOUT:-$((took * 3 > 20 ? took * 3 : 20))}
    log "unmutated test run: ${took} s; timeout per mutant: ${timeout} s"
}

# One cargo-mutants call over a group's files; "$@" are its test options.
run_mutants() {
    local group=$1
    shift
    local file_args=() file
    for file in ${MUTANTS_FILES:-${files[$group]}}; do
        file_args+=(--file "crates/${package[$group]}/src/$file.rs")
    done
    CARGO_TARGET_DIR=$target_dir CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_TEST_DEBUG=0 \
        RUSTFLAGS="${RUSTFLAGS:-} $linker_flags" cargo mutants \
        --package "${package[$group]}" "${file_args[@]}" \
        --output "$out" --jobs "${MUTANTS_JOBS:-1}" \
        --baseline skip --timeout "$timeout" --colors never "${extra[@]}" "$@" ||
        true # exit status 2 = some mutants missed: the summary reports them
}

mkdir -p mutants.out
for group in "${groups[@]}"; do
    started=$SECONDS
    # A run limited by MUTANTS_FILES keeps its own directory (the group's full run stays).
    out=mutants.out/$group
    [[ -z ${MUTANTS_FILES:-} ]] || out=mutants.out/$group-${MUTANTS_FILES// /-}
    read -r -a own <<<"${stage1[$group]}"
    preflight "" -p "${package[$group]}" "${own[@]}"
    log "$group, stage 1: ${package[$group]}'s own tests (${stage1[$group]})"
    own_args=()
    for arg in "${own[@]}"; do own_args+=(--cargo-arg "$arg"); done
    run_mutants "$group" "${own_args[@]}"
    if [[ -n ${stage2[$group]} ]]; then
        read -r test_package test_target <<<"${stage2[$group]}"
        preflight "${filter2[$group]}" -p "$test_package" --test "$test_target"
        log "$group, stage 2: $test_package's tests/$test_target.rs ${filter2[$group]} on what stage 1 missed"
        filter_args=()
        [[ -z ${filter2[$group]} ]] ||
            filter_args=(--cargo-test-arg=-- --cargo-test-arg="${filter2[$group]}")
        run_mutants "$group" --iterate --test-package "$test_package" \
            --cargo-arg=--test="$test_target" "${filter_args[@]}"
    fi
    log "$group took $(((SECONDS - started) / 60)) min"
done

log "results per file (mutants.out/GROUP/; score = (caught + timeout) / viable):"
summary
