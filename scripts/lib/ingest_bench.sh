# ingest_bench WORK_DIR SECONDS: the same load generator (api/benches/ingest.rs) against a VictoriaMetrics
# single node and against the Tollgate server (release build, embedded defaults: SQLite, rollups on), in turn.
# Needs a release build of tollgate in $target_dir/release.

ingest_bench() {
    local work=$1 seconds=$2 port pid password=ingest-admin-password token out_vm out_tg
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    victoria-metrics -httpListenAddr="127.0.0.1:$port" -storageDataPath="$work/ingest-victoria" \
        >"$work/ingest-victoria.log" 2>&1 &
    pid=$!
    until curl -fsS -o /dev/null "http://127.0.0.1:$port/health" 2>/dev/null; do sleep 0.2; done
    out_vm=$(cargo bench -q -p tollgate-api --bench ingest --locked -- \
        --url "http://127.0.0.1:$port/api/v2/write" --seconds "$seconds")
    kill $pid; wait $pid 2>/dev/null || true
    echo "$out_vm"

    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    TOLLGATE__BOOTSTRAP__ADMIN_PASSWORD=$password RUST_LOG=warn "$target_dir/release/tollgate" serve \
        --listen "127.0.0.1:$port" --data-dir "$work/ingest-tollgate" >"$work/ingest-tollgate.log" 2>&1 &
    pid=$!
    until curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; do sleep 0.2; done
    token=$(curl -fsS -X POST "http://127.0.0.1:$port/api/v1/auth/tokens" -H 'content-type: application/json' \
        -d "{\"username\":\"admin\",\"password\":\"$password\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    out_tg=$(cargo bench -q -p tollgate-api --bench ingest --locked -- \
        --url "http://127.0.0.1:$port/api/v2/write" --token "$token" --seconds "$seconds")
    kill $pid; wait $pid 2>/dev/null || true
    echo "$out_tg"
    python3 - "$out_vm" "$out_tg" <<'PY'
import re, sys
rate = lambda s: float(re.search(r"([0-9.]+) points/s", s).group(1))
vm, tg = rate(sys.argv[1]), rate(sys.argv[2])
print(f"  Tollgate / VictoriaMetrics: {tg / vm:.2f}x (goal >= 1.0x; alert evaluation is not built yet, rollups are on)")
PY
}
