# PostgreSQL for the scripts that need a server (test.sh, bench.sh): sourced, never run.
#
# `provision_postgres` finds or starts PostgreSQL and exports TEST_DATABASE_URL, in this
# order:
#   1. TEST_DATABASE_URL, when set (used as given; it must allow CREATE DATABASE);
#   2. the server on 127.0.0.1:5432 (user postgres, database postgres), when it answers;
#   3. a throwaway cluster started with the installed initdb/pg_ctl (from PATH or
#      /usr/lib/postgresql/*/bin) in a temporary directory on a free port, as a
#      non-root user when run as root; `stop_cluster` stops and removes it;
#   4. as root with apt-get: `apt-get install -y postgresql`, then as in 3.
# If none works it exits non-zero saying why.
#
# The sourcing script defines `log` and `die` (messages carry its name), and sets
#   trap stop_cluster EXIT; trap 'exit 130' INT; trap 'exit 143' TERM
# so that a throwaway cluster never outlives it.
#
# Environment:
#   TEST_DATABASE_URL   use this server (step 1).
#   PGTEST_SKIP_LOCAL=1 skip step 2 (to exercise the throwaway cluster).
#   PGTEST_PORT         first port tried for the throwaway cluster (default 55432).

# scheme://user:password@host → scheme://user:***@host; password=… likewise.
redact() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#; s#([?&]password=)[^&]*#\1***#g' <<<"$1"; }

# --- step 3 helpers: throwaway clusters --------------------------------------------
# Every cluster this script starts lives in its own directory, recorded in CLUSTER_DIRS;
# `stop_cluster` stops and removes them all (and whatever `stop_hooks` registered).
CLUSTER_DIRS=()
CLUSTER_USER=""
PG_CTL=""
STOP_HOOKS=()

as_cluster_user() {
    if [[ $(id -u) -eq 0 ]]; then
        if command -v runuser >/dev/null; then
            runuser -u "$CLUSTER_USER" -- "$@"
        else
            su -s /bin/sh "$CLUSTER_USER" -c "$(printf '%q ' "$@")"
        fi
    else
        "$@"
    fi
}

# Stops what the script started: hooks first (PgBouncer), then standbys before
# primaries (the reverse of the start order).
stop_cluster() {
    local hook dir i
    for hook in "${STOP_HOOKS[@]}"; do "$hook" || true; done
    STOP_HOOKS=()
    for ((i = ${#CLUSTER_DIRS[@]} - 1; i >= 0; i--)); do
        dir=${CLUSTER_DIRS[i]}
        if [[ -f $dir/data/postmaster.pid ]]; then
            log "stopping the throwaway PostgreSQL cluster $(basename "$dir")"
            as_cluster_user "$PG_CTL" -D "$dir/data" -m immediate -w -t 30 stop \
                >/dev/null 2>&1 || log "warning: pg_ctl stop failed for $dir"
        fi
        rm -rf "$dir"
    done
    CLUSTER_DIRS=()
}

# Clusters (and PgBouncers) left by a run that was killed outright (SIGKILL skips the
# EXIT trap): each directory records the pid of the script that started it.
reap_stale_clusters() {
    local dir owner ctl
    for dir in "${TMPDIR:-/tmp}"/smtk-pgtest.* "${TMPDIR:-/tmp}"/smtk-pgbouncer.*; do
        [[ -d $dir ]] || continue
        owner=$(cat "$dir/owner.pid" 2>/dev/null || true)
        if [[ -n $owner ]] && kill -0 "$owner" 2>/dev/null; then
            continue # its script is still running
        fi
        if [[ -f $dir/pgbouncer.pid ]]; then
            log "stopping a PgBouncer left behind by an earlier run: $dir"
            kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null || true
        fi
        if [[ -f $dir/data/postmaster.pid ]]; then
            log "stopping a cluster left behind by an earlier run: $dir"
            ctl=$(cat "$dir/pg_ctl" 2>/dev/null || true)
            if [[ -x $ctl ]]; then
                CLUSTER_USER=$(stat -c %U "$dir/data") as_cluster_user "$ctl" -D "$dir/data" \
                    -m immediate -w -t 30 stop >/dev/null 2>&1 || true
            fi
        fi
        rm -rf "$dir"
    done
}

# The newest installed binary called $1: PATH first, then /usr/lib/postgresql/*/bin.
pg_binary() {
    local found
    found=$(command -v "$1" 2>/dev/null || true)
    if [[ -z $found ]]; then
        found=$(ls -d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1 || true)
    fi
    [[ -n $found && -x $found ]] && printf '%s\n' "$found"
}

port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The first free port at or after $1 (within 100), printed.
free_port() {
    local port=$1
    while ! port_is_free "$port"; do
        port=$((port + 1))
        ((port < $1 + 100)) || { log "no free port found from $1"; return 1; }
    done
    printf '%s\n' "$port"
}

# Picks the user that owns the clusters: ourselves, or (as root) postgres / pgtest.
choose_cluster_user() {
    [[ -z $CLUSTER_USER ]] || return 0
    if [[ $(id -u) -ne 0 ]]; then
        CLUSTER_USER=$(id -un)
    elif id postgres >/dev/null 2>&1; then
        CLUSTER_USER=postgres
    else
        id pgtest >/dev/null 2>&1 ||
            useradd --system --no-create-home --shell /usr/sbin/nologin pgtest ||
            return 1
        CLUSTER_USER=pgtest
    fi
}

# A new cluster directory owned by the cluster user, recorded for `stop_cluster`;
# printed. $1 names it in logs.
new_cluster_dir() {
    local dir
    dir=$(mktemp -d "${TMPDIR:-/tmp}/smtk-pgtest.$1.XXXXXX")
    echo $$ >"$dir/owner.pid"
    echo "$PG_CTL" >"$dir/pg_ctl"
    chmod 755 "$dir"
    [[ $(id -u) -ne 0 ]] || chown "$CLUSTER_USER" "$dir"
    printf '%s\n' "$dir"
}

# Durability is pointless for a cluster that is deleted afterwards: fsync off makes
# the per-test CREATE DATABASE cheap.
THROWAWAY_OPTIONS="-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"

# Starts the cluster in $1/data on port $2 with extra server options $3.
start_server() {
    if ! as_cluster_user "$PG_CTL" -D "$1/data" -l "$1/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $2 -k $1 $3" start >/dev/null 2>&1; then
        log "pg_ctl start failed for $1:"; cat "$1/server.log" >&2 || true; return 1
    fi
}

# Starts a throwaway primary named $1 on a free port from $2; on success sets
# STARTED_URL and STARTED_DIR and returns 0.
start_primary() {
    local initdb port dir
    initdb=$(pg_binary initdb) || { log "initdb is not installed"; return 1; }
    PG_CTL=$(pg_binary pg_ctl) || { log "pg_ctl is not installed"; return 1; }
    choose_cluster_user || { log "could not create a non-root user for PostgreSQL"; return 1; }
    port=$(free_port "$2") || return 1
    dir=$(new_cluster_dir "$1")
    CLUSTER_DIRS+=("$dir")
    log "starting a throwaway PostgreSQL cluster '$1' ($initdb, user $CLUSTER_USER, port $port)"
    if ! as_cluster_user "$initdb" -D "$dir/data" -U postgres -A trust -E UTF8 \
        --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1; then
        log "initdb failed:"; cat "$dir/initdb.log" >&2; return 1
    fi
    start_server "$dir" "$port" "$THROWAWAY_OPTIONS" || return 1
    echo "$port" >"$dir/port"
    STARTED_URL="postgres://postgres@127.0.0.1:$port/postgres"
    STARTED_DIR=$dir
}

# Starts the main throwaway cluster; on success sets TEST_DATABASE_URL and returns 0.
start_cluster() {
    start_primary main "${PGTEST_PORT:-55432}" || return 1
    TEST_DATABASE_URL=$STARTED_URL
    MAIN_CLUSTER_DIR=$STARTED_DIR
}
MAIN_CLUSTER_DIR=""

# Installs Debian package $1 with apt-get (as root only); on failure sets
# INSTALL_FAILURE to the reason and returns 1.
INSTALL_FAILURE=""
install_package() {
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        INSTALL_FAILURE="cannot install the Debian package $1 (needs root and apt-get)"
        return 1
    fi
    log "installing the Debian package $1 with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if apt-get install -y -q "$1" >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$1" >/dev/null 2>&1; }; then
        return 0
    fi
    INSTALL_FAILURE="apt-get install $1 failed"
    return 1
}

# --- choose PostgreSQL --------------------------------------------------------------
local_server_answers() {
    command -v pg_isready >/dev/null && command -v psql >/dev/null || return 1
    pg_isready -h 127.0.0.1 -p 5432 -t 3 -q || return 1
    local can_create
    can_create=$(PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -p 5432 -U postgres -d postgres \
        -w -Atqc "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user" \
        2>/dev/null) || return 1
    [[ $can_create == t ]]
}

# Finds or starts PostgreSQL (steps 1-4 above) and exports TEST_DATABASE_URL.
provision_postgres() {
    [[ ${PGTEST_PORT:-55432} =~ ^[0-9]+$ ]] || die "PGTEST_PORT must be a port number"
    local why
    reap_stale_clusters
    if [[ -n ${TEST_DATABASE_URL:-} ]]; then
        log "PostgreSQL: TEST_DATABASE_URL from the environment: $(redact "$TEST_DATABASE_URL")"
    elif [[ ${PGTEST_SKIP_LOCAL:-0} != 1 ]] && local_server_answers; then
        # Plaintext, as the factory connects to a loopback server: the local server
        # offers TLS (Debian's ssl=on), and a pool's background connect still in its
        # TLS handshake when a test binary exits races OpenSSL's exit-time cleanup and
        # crashed the binary (SIGSEGV in SSL_CTX_new_ex) about once in 20 runs of
        # tests/settings.rs.
        TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
        log "PostgreSQL: the local server at $TEST_DATABASE_URL"
    else
        [[ ${PGTEST_SKIP_LOCAL:-0} == 1 ]] && log "PGTEST_SKIP_LOCAL=1: not using 127.0.0.1:5432"
        why=""
        if ! start_cluster; then
            stop_cluster
            why="no TEST_DATABASE_URL, no usable server on 127.0.0.1:5432, and no throwaway cluster could be started (reason logged above)"
            if install_package postgresql; then
                start_cluster && why="" || stop_cluster
            else
                why="$why; $INSTALL_FAILURE"
            fi
        fi
        [[ -z $why ]] || die "$why"
        log "PostgreSQL: throwaway cluster at $TEST_DATABASE_URL"
    fi
    export TEST_DATABASE_URL
}
