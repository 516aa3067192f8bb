# agent_footprint WORK_DIR SECONDS AGENT_BINARY TAG [AGENT_ARG...]: RSS and CPU time per interval of a
# tollgate-agent build reading every second and sending to a Tollgate server, against Debian's
# prometheus-node-exporter scraped every second, in one run. The agent's figures include its helper
# processes (tollgate-agent-libvirt), live or finished. Needs a release build of tollgate in
# $target_dir/release.

# cpu_ns PID: nanoseconds on CPU of the process's threads (schedstat: finer than clock ticks), plus its
# finished children's (clock ticks) and its live children's.
cpu_ns() {
    local child own
    own=$(cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%d\n", s}')
    own=$((own + $(awk -v hz="$(getconf CLK_TCK)" '{sub(/.*\) /, ""); printf "%d\n", ($14 + $15) * 1e9 / hz}' /proc/"$1"/stat)))
    for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        own=$((own + $(cat /proc/"$child"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%d\n", s}')))
    done
    echo "$own"
}
# rss_kib PID FIELD: VmRSS or VmHWM (peak) in KiB, of the process and its live children.
rss_kib() {
    local pid total=0
    for pid in "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        total=$((total + $(awk -v f="$2:" '$1 == f {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
# children PID: how many helper processes the agent has now.
children() { cat /proc/"$1"/task/*/children 2>/dev/null | wc -w; }

agent_footprint() {
    local work=$1/footprint-$4 seconds=$2 binary=$3 tag=$4 port exporter_port password=footprint-admin-password token agent exporter server
    shift 4
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
        --interval 1s --queue-dir "$work/footprint-queue" "$@" 2>"$work/footprint-agent.log" &
    agent=$!
    exporter_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    prometheus-node-exporter --web.listen-address="127.0.0.1:$exporter_port" 2>"$work/footprint-exporter.log" &
    exporter=$!
    until curl -fsS -o /dev/null "http://127.0.0.1:$exporter_port/metrics" 2>/dev/null; do sleep 0.2; done
    # Warm up: the agent's first readings and the exporter's first scrapes allocate what they keep.
    for _ in 1 2 3 4 5; do curl -fsS -o /dev/null "http://127.0.0.1:$exporter_port/metrics"; sleep 1; done
    local a0 e0 a1 e1 helper_seconds=0 agent_peak=0 now
    a0=$(cpu_ns $agent)
    e0=$(cpu_ns $exporter)
    for _ in $(seq "$seconds"); do
        curl -fsS -o /dev/null "http://127.0.0.1:$exporter_port/metrics"
        sleep 1
        [ "$(children $agent)" -eq 0 ] || helper_seconds=$((helper_seconds + 1))
        now=$(rss_kib $agent VmRSS)
        [ "$now" -le "$agent_peak" ] || agent_peak=$now
    done
    a1=$(cpu_ns $agent)
    e1=$(cpu_ns $exporter)
    local agent_rss exporter_rss exporter_peak sent written
    # What the server took from the agent: measurements written, per batch (a VM adds one).
    written=$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '
        /^tollgate_metric_values_written_total/ {v = $2} /^tollgate_metric_batches_total/ {b = $2}
        END {if (b) printf "%.1f values in each of %d batches\n", v / b, b; else print "no batches"}')
    agent_rss=$(rss_kib $agent VmRSS)
    [ "$(rss_kib $agent VmHWM)" -le "$agent_peak" ] || agent_peak=$(rss_kib $agent VmHWM)
    exporter_rss=$(rss_kib $exporter VmRSS); exporter_peak=$(rss_kib $exporter VmHWM)
    kill $agent $exporter $server 2>/dev/null
    wait $agent $exporter $server 2>/dev/null || true
    sent=$(ls "$work/footprint-queue" | wc -l)
    python3 - "$tag" "$seconds" "$a0" "$a1" "$e0" "$e1" "$agent_rss" "$agent_peak" "$exporter_rss" "$exporter_peak" "$sent" "$helper_seconds" <<'PY'
import sys
tag = sys.argv[1]
n, a0, a1, e0, e1, ar, ap, er, ep, queued, helper = (float(x) for x in sys.argv[2:])
agent_ms = (a1 - a0) / 1e6 / n
exporter_ms = (e1 - e0) / 1e6 / n
print(f"agent footprint, {tag} build, over {int(n)} one-second intervals (the agent reading and sending; node_exporter scraped):")
print(f"  tollgate-agent:           RSS {ar / 1024:.1f} MiB (peak {ap / 1024:.1f}), CPU {agent_ms:.2f} ms per interval"
      f" (helper running {int(helper)} of {int(n)} s)")
print(f"  prometheus-node-exporter: RSS {er / 1024:.1f} MiB (peak {ep / 1024:.1f}), CPU {exporter_ms:.2f} ms per scrape")
print(f"  ratio: RSS {ap / ep:.2f} (goal <= 0.33), CPU {agent_ms / exporter_ms if exporter_ms else float('inf'):.2f} (goal <= 0.50);"
      f" batches left unsent: {int(queued)}")
PY
    echo "  the server took $written"
    # An agent that could not read its VMs or start its helper says so in its log: show it with the figures.
    grep -E "cannot|failed" "$work/footprint-agent.log" | head -n 3 | sed 's/^/  agent log: /' || true
}
