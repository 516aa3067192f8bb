# agent_footprint WORK_DIR SECONDS AGENT_BINARY TAG: RSS and CPU time per interval of a tollgate-agent build
# reading every second and sending to a Tollgate server, against Debian's prometheus-node-exporter scraped
# every second, in one run. Needs a release build of tollgate in $target_dir/release.

# cpu_ns PID: nanoseconds on CPU of the process's threads (schedstat: finer than clock ticks).
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%d\n", s}'; }
# rss_kib PID FIELD: VmRSS or VmHWM (peak) in KiB.
rss_kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

agent_footprint() {
    local work=$1/footprint-$4 seconds=$2 binary=$3 tag=$4 port exporter_port password=footprint-admin-password token agent exporter server
    mkdir -p "$work"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    TOLLGATE__BOOTSTRAP__ADMIN_PASSWORD=$password TOLLGATE__METRICS__SELF_INTERVAL_SECS=0 RUST_LOG=warn \
        "$target_dir/release/tollgate" serve --listen "127.0.0.1:$port" --data-dir "$work/footprint-server" \
        >"$work/footprint-server.log" 2>&1 &
    server=$!
    until curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; do sleep 0.2; done
    token=$(curl -fsS -X POST "http://127.0.0.1:$port/api/v1/auth/tokens" -H 'content-type: application/json' \
        -d "{\"username\":\"admin\",\"password\":\"$password\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    curl -fsS -o /dev/null -X POST "http://127.0.0.1:$port/api/v1/users" -H "authorization: Bearer $token" \
        -H 'content-type: application/json' \
        -d '{"username":"footprint-agent","password":"footprint-agent-password","roles":["agent"]}'
    token=$(curl -fsS -X POST "http://127.0.0.1:$port/api/v1/auth/tokens" -H 'content-type: application/json' \
        -d '{"username":"footprint-agent","password":"footprint-agent-password"}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

    TOLLGATE_AGENT_TOKEN=$token "$binary" --server "http://127.0.0.1:$port" \
        --interval 1s --queue-dir "$work/footprint-queue" 2>"$work/footprint-agent.log" &
    agent=$!
    exporter_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    prometheus-node-exporter --web.listen-address="127.0.0.1:$exporter_port" 2>"$work/footprint-exporter.log" &
    exporter=$!
    until curl -fsS -o /dev/null "http://127.0.0.1:$exporter_port/metrics" 2>/dev/null; do sleep 0.2; done
    # Warm up: the agent's first readings and the exporter's first scrapes allocate what they keep.
    for _ in 1 2 3 4 5; do curl -fsS -o /dev/null "http://127.0.0.1:$exporter_port/metrics"; sleep 1; done
    local a0 e0 a1 e1
    a0=$(cpu_ns $agent)
    e0=$(cpu_ns $exporter)
    for _ in $(seq "$seconds"); do
        curl -fsS -o /dev/null "http://127.0.0.1:$exporter_port/metrics"
        sleep 1
    done
    a1=$(cpu_ns $agent)
    e1=$(cpu_ns $exporter)
    local agent_rss agent_peak exporter_rss exporter_peak sent
    agent_rss=$(rss_kib $agent VmRSS); agent_peak=$(rss_kib $agent VmHWM)
    exporter_rss=$(rss_kib $exporter VmRSS); exporter_peak=$(rss_kib $exporter VmHWM)
    kill $agent $exporter $server 2>/dev/null
    wait $agent $exporter $server 2>/dev/null || true
    sent=$(ls "$work/footprint-queue" | wc -l)
    python3 - "$tag" "$seconds" "$a0" "$a1" "$e0" "$e1" "$agent_rss" "$agent_peak" "$exporter_rss" "$exporter_peak" "$sent" <<'PY'
import sys
tag = sys.argv[1]
n, a0, a1, e0, e1, ar, ap, er, ep, queued = (float(x) for x in sys.argv[2:])
agent_ms = (a1 - a0) / 1e6 / n
exporter_ms = (e1 - e0) / 1e6 / n
print(f"agent footprint, {tag} build, over {int(n)} one-second intervals (the agent reading and sending; node_exporter scraped):")
print(f"  tollgate-agent:           RSS {ar / 1024:.1f} MiB (peak {ap / 1024:.1f}), CPU {agent_ms:.2f} ms per interval")
print(f"  prometheus-node-exporter: RSS {er / 1024:.1f} MiB (peak {ep / 1024:.1f}), CPU {exporter_ms:.2f} ms per scrape")
print(f"  ratio: RSS {ap / ep:.2f} (goal <= 0.33), CPU {agent_ms / exporter_ms if exporter_ms else float('inf'):.2f} (goal <= 0.50);"
      f" batches left unsent: {int(queued)}")
PY
}
