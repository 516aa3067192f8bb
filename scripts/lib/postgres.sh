# Throwaway PostgreSQL for scripts/test and scripts/bench: initdb in a temp folder, loopback port, no fsync.
# Source it, then: pg_start DIR  (sets PG_PORT and PG_URL), pg_stop.

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
pg_data=""

pg_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_start() {
    pg_data="$1/pg"
    mkdir -p "$pg_data"
    chown postgres: "$pg_data"
    runuser -u postgres -- "$pg_bin/initdb" -D "$pg_data" -U postgres --auth=trust -E UTF8 >/dev/null
    PG_PORT=$(pg_free_port)
    runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_data" -w -l "$pg_data/server.log" \
        -o "-p $PG_PORT -k $pg_data -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
    PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
}

pg_stop() {
    if [ -n "$pg_data" ] && [ -f "$pg_data/postmaster.pid" ]; then
        runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null 2>&1 || true
    fi
}
