# ingest_bench WORK_DIR SECONDS: the same load generator (api/benches/ingest.rs) against a VictoriaMetrics
# single node and against the Tollgate server (release build, embedded defaults: SQLite, rollups and alert
# evaluation on, with ALERT_RULES rules each watching 1,000 of the series), in turn. Tollgate's figure counts
# the time its rollups take to catch up with what was written, so it is a rate the server can keep up.
# Needs a release build of tollgate in $target_dir/release.

ingest_bench() {
    local work=$1 seconds=$2 port pid password=ingest-admin-password token out_vm out_tg rules=${ALERT_RULES:-10}
    local started caught_up unfolded i
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
    for i in $(seq 0 $((rules - 1))); do
        curl -fsS -o /dev/null -X POST "http://127.0.0.1:$port/api/v1/alert-rules" -H "authorization: Bearer $token" \
            -H 'content-type: application/json' \
            -d "{\"name\":\"bench $i\",\"measurement\":\"node_$i\",\"field\":\"value\",\"severity\":\"minor\",
                 \"condition\":{\"kind\":\"above\",\"threshold\":999.0,\"recovery\":900.0}}"
    done
    out_tg=$(cargo bench -q -p tollgate-api --bench ingest --locked -- \
        --url "http://127.0.0.1:$port/api/v2/write" --token "$token" --seconds "$seconds")
    started=$(date +%s.%N)
    unfolded=1
    while [ "$unfolded" != 0 ]; do
        unfolded=$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '$1 == "tollgate_metric_segments_unfolded" {print $2}')
        [ "$unfolded" = 0 ] || sleep 0.5
    done
    caught_up=$(python3 -c "import time; print(f'{time.time() - $started:.1f}')")
    rounds=$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '$1 == "tollgate_alert_evaluations_total" {print $2}')
    kill $pid; wait $pid 2>/dev/null || true
    echo "$out_tg"
    echo "  rollups caught up ${caught_up} s after the load stopped; ${rounds} series judged by ${rules} alert rules"
    python3 - "$out_vm" "$out_tg" "$caught_up" <<'PY'
import re, sys
def parse(s):
    m = re.search(r"(\d+) points in ([0-9.]+) s", s)
    return int(m.group(1)), float(m.group(2))
vm_points, vm_secs = parse(sys.argv[1])
tg_points, tg_secs = parse(sys.argv[2])
vm = vm_points / vm_secs
tg = tg_points / (tg_secs + float(sys.argv[3]))
print(f"  Tollgate, counting the rollups' catch-up: {tg:.0f} points/s")
print(f"  Tollgate / VictoriaMetrics: {tg / vm:.2f}x (goal >= 1.0x; rollups and alert evaluation on)")
PY
}
