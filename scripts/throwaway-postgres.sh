# Source it: starts a throwaway PostgreSQL (the machine's server binaries, initdb and
# pg_ctl, as a non-root user) in a temporary folder on a high loopback port, exports
# DMP_TEST_POSTGRES_URL (its maintenance database, where each test creates its own),
# and stops and removes it when the sourcing shell exits. PG_SERVER_OPTIONS adds
# server settings (e.g. "-c shared_buffers=4GB"); PG_PARENT_DIR chooses where the
# data folder goes (default: the system's temporary folder).

pg_bin=""
for candidate in "$(pg_config --bindir 2>/dev/null || true)" /usr/lib/postgresql/*/bin; do
    if [ -n "$candidate" ] && [ -x "$candidate/initdb" ]; then
        pg_bin=$candidate
        break
    fi
done
if [ -z "$pg_bin" ]; then
    echo "PostgreSQL server binaries (initdb, pg_ctl) are needed: apt-get install postgresql" >&2
    return 1
fi
pg_dir=$(mktemp -d ${PG_PARENT_DIR:+-p "$PG_PARENT_DIR"})
pg_port=$((40000 + $$ % 20000))
# initdb refuses to run as root: run the server as the postgres system user then.
if [ "$(id -u)" = 0 ]; then
    chown postgres "$pg_dir"
    pg_as() { runuser -u postgres -- "$@"; }
else
    pg_as() { "$@"; }
fi
pg_as "$pg_bin/initdb" -D "$pg_dir/data" --auth=trust -U postgres -E UTF8 > "$pg_dir/initdb.log" 2>&1 \
    || { cat "$pg_dir/initdb.log" >&2; return 1; }
pg_as "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w \
    -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c max_connections=1000 ${PG_SERVER_OPTIONS:-}" start > /dev/null \
    || { cat "$pg_dir/server.log" >&2; return 1; }
pg_stop() {
    pg_as "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop > /dev/null 2>&1 || true
    rm -rf "$pg_dir"
}
export DMP_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
