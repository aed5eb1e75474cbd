# The production topologies the tests run against besides the plain server: sourced
# after scripts/lib/postgres.sh (which provides the cluster helpers), never run.
#
# `provision_pgbouncer` starts PgBouncer in transaction mode in front of the server of
# TEST_DATABASE_URL and exports TEST_PGBOUNCER_URL (database `postgres`; any database
# name is forwarded under the same name, so a test creates its database directly and
# reaches it through PgBouncer).
#
# `provision_standby` starts a throwaway primary of its own and a streaming standby of
# it (pg_basebackup -R), and exports TEST_PRIMARY_URL, TEST_STANDBY_URL, and, so
# that tests can stop and start the standby, TEST_STANDBY_CONTROL (a script taking
# `stop` or `start`); for tests that start clusters of their own, TEST_PG_BINDIR (the
# PostgreSQL server binaries) and TEST_CLUSTER_USER (the user to run them as when
# the tests run as root; PostgreSQL refuses root).
#
# `require_nft` makes sure nftables' `nft` exists (the network-partition tests drop a
# port's packets with it).
#
# Each installs what is missing (as root, with apt-get) and otherwise dies saying why:
# no topology is ever skipped.
#
# Environment:
#   PGTEST_PGBOUNCER_PORT  first port tried for PgBouncer (default 56432).

# host, port, user, password of a postgres:// URL (the simple single-host form the
# provisioning produces or accepts), as URL_HOST URL_PORT URL_USER URL_PASSWORD.
split_url() {
    local re='^postgres(ql)?://([^:@/]*)(:([^@/]*))?@([^:/?]+)(:([0-9]+))?(/[^?]*)?'
    [[ $1 =~ $re ]] || die "cannot read host and port from $(redact "$1") (expected postgres://user[:password]@host[:port]/db)"
    URL_USER=${BASH_REMATCH[2]}
    URL_PASSWORD=${BASH_REMATCH[4]}
    URL_HOST=${BASH_REMATCH[5]}
    URL_PORT=${BASH_REMATCH[7]:-5432}
}

# Waits up to 30 s until something accepts connections on 127.0.0.1:$1.
wait_for_port() {
    local i
    for ((i = 0; i < 300; i++)); do
        port_is_free "$1" || return 0
        sleep 0.1
    done
    return 1
}

# --- PgBouncer ----------------------------------------------------------------------
PGBOUNCER_DIR=""

stop_pgbouncer() {
    [[ -n $PGBOUNCER_DIR ]] || return 0
    if [[ -f $PGBOUNCER_DIR/pgbouncer.pid ]]; then
        log "stopping PgBouncer"
        kill "$(cat "$PGBOUNCER_DIR/pgbouncer.pid")" 2>/dev/null || true
    fi
    rm -rf "$PGBOUNCER_DIR"
    PGBOUNCER_DIR=""
}

provision_pgbouncer() {
    local bin port user_line
    bin=$(command -v pgbouncer || ls /usr/sbin/pgbouncer 2>/dev/null || true)
    if [[ -z $bin ]]; then
        install_package pgbouncer || die "PgBouncer is not installed and $INSTALL_FAILURE; the pgbouncer:: topology cannot run"
        bin=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
        # Debian's package may start its own service on 6432; ours runs apart from it.
    fi
    [[ -x $bin ]] || die "pgbouncer not found after installing it"
    choose_cluster_user || die "could not create a non-root user for PgBouncer (it refuses to run as root)"
    split_url "$TEST_DATABASE_URL"
    port=$(free_port "${PGTEST_PGBOUNCER_PORT:-56432}") || die "no free port for PgBouncer"
    PGBOUNCER_DIR=$(mktemp -d "${TMPDIR:-/tmp}/smtk-pgbouncer.XXXXXX")
    echo $$ >"$PGBOUNCER_DIR/owner.pid"
    STOP_HOOKS+=(stop_pgbouncer)
    # The password (if any) lets PgBouncer log in to the server; trust towards clients.
    printf '"%s" "%s"\n' "$URL_USER" "$URL_PASSWORD" >"$PGBOUNCER_DIR/users.txt"
    chmod 600 "$PGBOUNCER_DIR/users.txt"
    cat >"$PGBOUNCER_DIR/pgbouncer.ini" <<EOF
[databases]
* = host=$URL_HOST port=$URL_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $PGBOUNCER_DIR/users.txt
pool_mode = transaction
max_client_conn = 2000
default_pool_size = 20
reserve_pool_size = 5
server_idle_timeout = 10
autodb_idle_timeout = 10
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = $PGBOUNCER_DIR/pgbouncer.log
pidfile = $PGBOUNCER_DIR/pgbouncer.pid
EOF
    [[ $(id -u) -ne 0 ]] || chown -R "$CLUSTER_USER" "$PGBOUNCER_DIR"
    log "starting PgBouncer ($bin, transaction mode, port $port) in front of $URL_HOST:$URL_PORT"
    as_cluster_user "$bin" -d "$PGBOUNCER_DIR/pgbouncer.ini" >"$PGBOUNCER_DIR/start.log" 2>&1 ||
        { cat "$PGBOUNCER_DIR/start.log" "$PGBOUNCER_DIR/pgbouncer.log" >&2 2>/dev/null; die "PgBouncer did not start"; }
    wait_for_port "$port" || { cat "$PGBOUNCER_DIR/pgbouncer.log" >&2; die "PgBouncer does not answer on port $port"; }
    user_line=$URL_USER${URL_PASSWORD:+:$URL_PASSWORD}
    TEST_PGBOUNCER_URL="postgres://$user_line@127.0.0.1:$port/postgres"
    export TEST_PGBOUNCER_URL
    log "PgBouncer: $(redact "$TEST_PGBOUNCER_URL")"
}

# --- a streaming standby ------------------------------------------------------------
provision_standby() {
    local primary_dir primary_port basebackup port dir
    # A primary of its own, even when the main server is a throwaway cluster: the
    # standby then replays only the replica tests' writes, not every other test's.
    if ! start_primary primary "$((${PGTEST_PORT:-55432} + 10))"; then
        install_package postgresql && start_primary primary "$((${PGTEST_PORT:-55432} + 10))" ||
            die "no primary for the standby could be started (reason logged above${INSTALL_FAILURE:+; $INSTALL_FAILURE})"
    fi
    primary_dir=$STARTED_DIR
    TEST_PRIMARY_URL=$STARTED_URL
    primary_port=$(cat "$primary_dir/port")
    basebackup=$(pg_binary pg_basebackup) || die "pg_basebackup is not installed"
    port=$(free_port "$((primary_port + 1))") || die "no free port for the standby"
    dir=$(new_cluster_dir standby)
    CLUSTER_DIRS+=("$dir")
    log "starting a streaming standby of port $primary_port on port $port"
    # A physical replication slot (-C -S): the primary keeps the WAL the standby has not
    # received yet, so a standby that a test stopped for a while (or that fell behind
    # on a loaded machine) catches up instead of asking for removed WAL forever.
    if ! as_cluster_user "$basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres \
        -D "$dir/data" -R -X stream -C -S smtk_standby --no-sync >"$dir/basebackup.log" 2>&1; then
        cat "$dir/basebackup.log" >&2
        die "pg_basebackup failed"
    fi
    start_server "$dir" "$port" "$THROWAWAY_OPTIONS -c hot_standby=on" ||
        die "the standby did not start"
    echo "$port" >"$dir/port"
    # `control.sh stop|start`: lets a test take the standby down and bring it back.
    {
        printf '#!/usr/bin/env bash\nset -euo pipefail\n'
        printf 'ctl=(%q -D %q -w -t 60)\n' "$PG_CTL" "$dir/data"
        printf 'opts=%q\n' "-c listen_addresses=127.0.0.1 -p $port -k $dir $THROWAWAY_OPTIONS -c hot_standby=on"
        printf 'log=%q\nuser=%q\n' "$dir/server.log" "$CLUSTER_USER"
        cat <<'SCRIPT'
run() { if [[ $(id -u) -eq 0 ]]; then runuser -u "$user" -- "$@"; else "$@"; fi; }
case ${1:-} in
    stop) run "${ctl[@]}" -m fast stop >/dev/null ;;
    start) run "${ctl[@]}" -l "$log" -o "$opts" start >/dev/null ;;
    *) echo "usage: $0 stop|start" >&2; exit 2 ;;
esac
SCRIPT
    } >"$dir/control.sh"
    chmod 755 "$dir/control.sh"
    TEST_STANDBY_URL="postgres://postgres@127.0.0.1:$port/postgres"
    TEST_STANDBY_CONTROL=$dir/control.sh
    # For tests that start clusters of their own (point-in-time recovery).
    TEST_PG_BINDIR=$(dirname "$(readlink -f "$PG_CTL")")
    TEST_CLUSTER_USER=$CLUSTER_USER
    export TEST_PRIMARY_URL TEST_STANDBY_URL TEST_STANDBY_CONTROL TEST_PG_BINDIR TEST_CLUSTER_USER
    log "standby: $TEST_STANDBY_URL (primary $(redact "$TEST_PRIMARY_URL"))"
}

# --- network partitions -------------------------------------------------------------
require_nft() {
    command -v nft >/dev/null && return 0
    install_package nftables || die "nft (nftables) is needed by the network-partition tests and $INSTALL_FAILURE"
    command -v nft >/dev/null || die "nft not found after installing nftables"
}
