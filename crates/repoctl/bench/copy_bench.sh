#!/usr/bin/env bash
# Benchmark of `repoctl copy` against psql's `\copy`, in one run (docs/PERFORMANCE.md,
# section "repoctl copy").
#
#   crates/repoctl/bench/copy_bench.sh [ADMIN_URL]
#
# ADMIN_URL: any database on the PostgreSQL server (default: $TEST_DATABASE_URL, else
# postgres://postgres@127.0.0.1:5432/postgres). Environment: BENCH_DIR (default
# /tmp/repoctl-bench; the generated SQLite file is kept there and reused),
# BENCH_SCALE (100) and BENCH_CHUNKS_PER_DOCUMENT (500): 100 × 20 documents × 500
# chunks = 1,000,000 chunk rows. Needs sqlite3, psql and /usr/bin/time.
#
# 1. Generates the SQLite source with `repoctl demo-data` (not timed).
# 2. Baseline: a fresh database with the schema and every table but chunks loaded (not
#    timed); the chunks exported to CSV with sqlite3 (not timed); then, timed:
#    psql -c "\copy chunks (…) FROM 'chunks.csv' CSV".
# 3. repoctl: a fresh database with the schema (not timed); then, timed under
#    /usr/bin/time -v: repoctl copy --from SQLITE --to PG (all seven tables, the
#    verification included).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
ADMIN=${1:-${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}}
WORK=${BENCH_DIR:-/tmp/repoctl-bench}
SCALE=${BENCH_SCALE:-100}
CPD=${BENCH_CHUNKS_PER_DOCUMENT:-500}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/repoctl
SRC=$WORK/source-$SCALE-$CPD.sqlite3
mkdir -p "$WORK"

(cd "$ROOT" && cargo build --release -p repoctl)

if [ ! -f "$SRC" ]; then
    "$BIN" demo-data --database-url "$SRC" --scale "$SCALE" --chunks-per-document "$CPD"
fi
ROWS=$(sqlite3 "$SRC" "SELECT count(*) FROM chunks")
echo "source: $SRC ($(du -h "$SRC" | cut -f1)), $ROWS chunk rows"

db_url() { # admin URL with another database name
    python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$ADMIN" "$1"
}
recreate() {
    psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null
}

COLS="id, collection_id, document_id, chunk_index, content, start_offset, end_offset, token_count, embedding_vector_id, meta, created_at"

# Baseline: \copy of the same rows from CSV into the same schema.
recreate bench_psql
BASE=$(db_url bench_psql)
"$BIN" migrate up --database-url "$BASE" >/dev/null
"$BIN" copy --from "$SRC" --to "$BASE" --tables documents --no-progress --no-verify >/dev/null
sqlite3 -csv "$SRC" "SELECT $COLS FROM chunks ORDER BY id" > "$WORK/chunks.csv"
psql -q "$BASE" -c "CHECKPOINT" >/dev/null
start=$(date +%s.%N)
psql -q "$BASE" -c "\\copy chunks ($COLS) FROM '$WORK/chunks.csv' CSV"
end=$(date +%s.%N)
PSQL_S=$(echo "$end - $start" | bc)
echo "psql \\copy of $ROWS chunk rows: ${PSQL_S} s"

# repoctl: every table, verification included.
recreate bench_repoctl
TARGET=$(db_url bench_repoctl)
"$BIN" migrate up --database-url "$TARGET" >/dev/null
psql -q "$TARGET" -c "CHECKPOINT" >/dev/null
/usr/bin/time -v -o "$WORK/time.txt" "$BIN" copy --from "$SRC" --to "$TARGET" --no-progress --report "$WORK/report.json" | tee "$WORK/copy.txt"
REPOCTL_S=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["seconds"], 2))' "$WORK/report.json")
RSS_KB=$(grep "Maximum resident set size" "$WORK/time.txt" | awk '{print $NF}')
echo
echo "psql \\copy (chunks only):            ${PSQL_S} s"
echo "repoctl copy (all tables + verify):  ${REPOCTL_S} s   ratio $(echo "scale=2; $REPOCTL_S / $PSQL_S" | bc)"
echo "repoctl peak RSS:                    $((RSS_KB / 1024)) MiB"
psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS bench_psql WITH (FORCE)" -c "DROP DATABASE IF EXISTS bench_repoctl WITH (FORCE)" >/dev/null
