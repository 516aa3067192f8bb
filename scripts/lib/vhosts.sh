#!/usr/bin/env bash
# Real libvirt/KVM test hosts on this one machine: each host is its own system-mode libvirtd in its own
# network, mount, UTS and cgroup namespaces (recipe: shared notes "libvirt-test-hosts.md").
#
# Source it (scripts/test), or run it:
#   vhosts.sh up N DIR | vhosts.sh down DIR | vhosts.sh exec DIR NAME CMD... | vhosts.sh sweep
# Each daemon also serves libvirt's LXC driver where libvirt-daemon-driver-lxc is installed (lxc+unix URIs).
# Needs root, libvirt-daemon-system, qemu-system-x86, qemu-utils, iproute2, util-linux and python3; cgroup v1
# or hybrid. Every wait is bounded (VHOSTS_WAIT_SECONDS, default 30, for vhosts_up; virsh calls time out).
#
#   vhosts_up N DIR     brings up hosts vh1..vhN under DIR (absent or empty; on disk, not tmpfs, and short
#                       enough for a unix socket path), waits until every daemon answers `virsh version` and
#                       its `default` pool is active, writes DIR/hosts.env, prints it on stdout and exports
#                       VHOSTS_DIR (not from inside $(...): source DIR/hosts.env then). Progress and errors go
#                       to stderr. On failure it returns non-zero and leaves what it made: call vhosts_down DIR
#                       (e.g. from an EXIT trap) in every case.
#   vhosts_down DIR     destroys and undefines every domain, stops every process of the hosts, deletes their
#                       namespaces, cgroup folders and DIR. Idempotent (an absent DIR is success); safe after a
#                       half-done vhosts_up. Returns non-zero, saying what, if anything could not be removed;
#                       refuses a DIR that vhosts_up did not make.
#   vhosts_exec NAME CMD...
#                       runs CMD inside host NAME (its net, mount, UTS and cgroup namespaces and its cgroup
#                       folder), e.g. `vhosts_exec vh1 virsh -c qemu+tcp://vh2/system list`. Needs VHOSTS_DIR
#                       (set by vhosts_up, also in hosts.env).
#
# hosts.env (one NAME=value a line, no quotes; safe to source, values contain no blanks):
#   VHOSTS_DIR=DIR
#   VH1_NAME=vh1  VH1_ADDR=10.77.0.11  VH1_URI=qemu+unix:///system?socket=DIR/vh1/run/libvirt/libvirt-sock
#   VH1_TCP_URI=qemu+tcp://vh1/system (reachable from inside a host only)  VH1_IMAGES=DIR/vh1/lib/images
#   ... one block per host, then
#   TOLLGATE_TEST_LIBVIRT_HOSTS=vh1=<VH1_URI>,vh2=<VH2_URI>,...
#
# Layout: each set of hosts has a random ID (in DIR/.vhosts), so sets of concurrent runs never meet. A fabric
# namespace `tgvh-ID-fabric` with bridge br0 at 10.77.0.1/24; per host a namespace `tgvh-ID-vhN` with eth0
# (10.77.0.11, .12, ...) on that bridge and an empty guest bridge tgbr0 (same name on every host, so guest NICs
# can migrate). Nothing is added to the root network namespace, so hosts are reachable by TCP only from inside
# a host (vhosts_exec) or the fabric; from the root namespace use the unix URIs (and migrate with --p2p).
# Per host, DIR/vhN/{etc,run,lib,cache,log} are bind-mounted over /etc/libvirt, /run, /var/lib/libvirt,
# /var/cache/libvirt and /var/log/libvirt, and DIR/hosts over /etc/hosts; its cgroup folder is vhosts/ID/vhN
# inside the caller's cgroup of every hierarchy. QEMU runs as root in the hosts: for tests only.
#
#   vhosts.sh sweep     crash recovery when DIR is lost: stops and deletes every set of test hosts on this
#                       machine (all tgvh-* namespaces, all vhosts cgroup folders). Not for normal use.

_vh_prefix=tgvh-                     # network namespace names: tgvh-ID-fabric, tgvh-ID-vh1, ...
_vh_net=10.77.0                      # fabric at .1, vhN at .(10+N)
_vh_guest_bridge=tgbr0
_vh_wait=${VHOSTS_WAIT_SECONDS:-30}  # bound on vhosts_up's waits

_vh_log() { printf 'vhosts: %s\n' "$*" >&2; }
_vh_err() { printf 'vhosts: ERROR: %s\n' "$*" >&2; }
_vh_now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
_vh_since() { awk -v a="$1" -v b="$(_vh_now)" 'BEGIN {printf "%.1f", b - a}'; }
# Every virsh call is bounded: a wedged daemon must not hang the test run.
_vh_virsh() { local uri=$1 secs=$2; shift 2; timeout -k 3 "$secs" virsh -q -c "$uri" "$@"; }
_vh_uri() { printf 'qemu+unix:///system?socket=%s/%s/run/libvirt/libvirt-sock' "$1" "$2"; }
# _vh_id DIR: the set's ID, from the marker vhosts_up writes first.
_vh_id() { local id; id=$(cat "$1/.vhosts" 2>/dev/null) && [[ $id =~ ^[0-9a-f]{8}$ ]] && echo "$id"; }

# The anchor (written to DIR/anchor.py): first process of each host, inside its namespaces. It is a child
# subreaper, so the daemonized libvirtd, virtlogd and QEMU below it are reaped as soon as they exit. Otherwise
# they are reparented to PID 1, which may reap late (about 1.5 s on this machine) or never, and libvirt takes a
# zombie QEMU for alive (kill(pid, 0)): `virsh destroy` then stalls. It runs the host's setup (argv[2:]),
# writes its exit status to argv[1], then only reaps until SIGTERM. Signals are blocked only after the setup
# is spawned, so the daemons do not inherit a blocked SIGCHLD.
_vh_anchor_py='# vhosts anchor: subreaper of one test host
import ctypes, os, signal, subprocess, sys

if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    sys.exit("vhosts anchor: prctl(PR_SET_CHILD_SUBREAPER) failed")
try:
    os.setsid()  # out of the caller session: no terminal signals
except OSError:
    pass
status = sys.argv[1]
setup = subprocess.Popen(sys.argv[2:])
stop = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
signal.pthread_sigmask(signal.SIG_BLOCK, stop | {signal.SIGCHLD})
while True:
    while True:
        try:
            pid, st = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        if pid == setup.pid:
            setup.returncode = os.waitstatus_to_exitcode(st)
            with open(status + ".tmp", "w") as f:
                f.write("%d\n" % setup.returncode)
            os.rename(status + ".tmp", status)
    if signal.sigwait(stop | {signal.SIGCHLD}) in stop:
        sys.exit(0)
'

# The host's setup (written to DIR/setup.sh), run by the anchor inside the new namespaces. A fresh sysfs shows
# this network namespace's devices; it hides the old /sys/fs/cgroup mounts (as `ip netns exec` would), so the
# hierarchies are mounted again, now inside the cgroup namespace: their root is the host's own folder, and two
# hosts' QEMUs never share a cgroup folder during a migration. Own hostname: libvirt refuses to migrate between
# hosts with the same hostname or host UUID. Explicit pid files: the defaults would collide with a root daemon.
# Args: NAME HOSTDIR HOSTSFILE then FSTYPE MOUNTPOINT OPTIONS per cgroup hierarchy.
_vh_setup_sh='# vhosts setup: mounts and daemons of one test host, inside its namespaces
set -eu
name=$1 hostdir=$2 hostsfile=$3
shift 3
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
while [ $# -ge 3 ]; do
    mkdir -p "$2"
    mount -t "$1" -o "$3" "$1" "$2"
    shift 3
done
hostname "$name"
mount --bind "$hostdir/etc" /etc/libvirt
mount --bind "$hostdir/run" /run
mount --bind "$hostdir/lib" /var/lib/libvirt
mount --bind "$hostdir/cache" /var/cache/libvirt
mount --bind "$hostdir/log" /var/log/libvirt
mount --bind "$hostsfile" /etc/hosts
virtlogd -d -p /run/virtlogd.pid
libvirtd -d -l -p /run/libvirtd.pid
echo "setup of $name done"
'

# _vh_cgroups: one line "FSTYPE MOUNTPOINT OPTIONS BASE" per cgroup hierarchy under /sys/fs/cgroup; BASE is
# "vhosts" inside the caller's own cgroup there, so the hosts stay accounted and limited like the caller.
_vh_cgroups() {
    local line f i fstype opts root mnt own ctrls path ok c
    while read -r line; do
        read -r -a f <<<"$line"
        for ((i = 6; i < ${#f[@]}; i++)); do [ "${f[i]}" = - ] && break; done
        fstype=${f[i + 1]:-} opts=${f[i + 3]:-} root=${f[3]} mnt=${f[4]}
        case $fstype in cgroup | cgroup2) ;; *) continue ;; esac
        case $mnt in /sys/fs/cgroup/*) ;; *) continue ;; esac
        own=""
        while IFS=: read -r _ ctrls path; do
            if [ "$fstype" = cgroup2 ]; then
                [ -z "$ctrls" ] && own=$path
            elif [ -n "$ctrls" ]; then
                ok=1
                for c in ${ctrls//,/ }; do
                    case ",$opts," in *",$c,"*) ;; *) ok=0 ;; esac
                done
                [ $ok = 1 ] && own=$path
            fi
        done </proc/self/cgroup
        if [ "$root" = / ]; then
            own=$mnt${own%/}
        elif [ "${own#"$root"}" != "$own" ]; then
            own=$mnt${own#"$root"}
        else
            own=$mnt
        fi
        [ -d "$own" ] || own=$mnt
        printf '%s %s %s %s\n' "$fstype" "$mnt" "$opts" "$own/vhosts"
    done </proc/self/mountinfo
}

# _vh_cg_mkdir DIR: creates a cgroup folder. A new cpuset folder has no CPUs or memory nodes until given its
# parent's, and no process can join it before.
_vh_cg_mkdir() {
    local d=$1 f
    mkdir "$d" 2>/dev/null || [ -d "$d" ] || return 1 # `vhosts` may come from a concurrent set
    for f in cpuset.cpus cpuset.mems; do
        if [ -f "$d/$f" ] && [ -z "$(cat "$d/$f")" ]; then
            cat "$d/../$f" >"$d/$f" || return 1
        fi
    done
}

# _vh_cg_join DIR NAME PID: moves PID into host NAME's cgroup folder in every hierarchy.
_vh_cg_join() {
    local base id
    id=$(_vh_id "$1") || { _vh_err "$1 holds no set of test hosts"; return 1; }
    while read -r _ _ _ base; do
        echo "$3" >"$base/$id/$2/cgroup.procs" || { _vh_err "cannot move pid $3 into $base/$id/$2"; return 1; }
    done <"$1/cgroups"
}

# _vh_alive PID: the process exists and is not a zombie.
_vh_alive() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    [ "${s%% *}" != Z ]
}

# _vh_pidfile FILE COMM: the pid in FILE if that process is alive and its name matches COMM (a glob), as a stale
# file may name a reused pid.
_vh_pidfile() {
    local p
    p=$(cat "$1" 2>/dev/null) || return 1
    # shellcheck disable=SC2053 # COMM may be a glob
    [[ $p =~ ^[0-9]+$ ]] && _vh_alive "$p" && [[ $(cat "/proc/$p/comm" 2>/dev/null) == $2 ]] && echo "$p"
}

# _vh_stop GRACE PID...: SIGTERM, SIGKILL after GRACE seconds; fails if any is still alive 5 s later.
_vh_stop() {
    local grace=$1 p end
    local -a left
    shift
    [ $# -gt 0 ] || return 0
    kill -TERM "$@" 2>/dev/null
    end=$((SECONDS + grace))
    while :; do
        left=()
        for p in "$@"; do _vh_alive "$p" && left+=("$p"); done
        [ ${#left[@]} -eq 0 ] && return 0
        [ $SECONDS -ge $end ] && break
        sleep 0.05
    done
    kill -KILL "${left[@]}" 2>/dev/null
    for _ in $(seq 100); do
        left=()
        for p in "$@"; do _vh_alive "$p" && left+=("$p"); done
        [ ${#left[@]} -eq 0 ] && return 0
        sleep 0.05
    done
    _vh_err "processes still alive after SIGKILL: ${left[*]}"
    return 1
}

# _vh_conf_set FILE KEY VALUE: replaces any active setting of KEY (Debian's files have all commented out).
_vh_conf_set() {
    sed -i "/^[[:space:]]*$2[[:space:]]*=/d" "$1" && printf '%s = %s\n' "$2" "$3" >>"$1"
}

# _vh_wait_host DIR NAME DEADLINE: waits (until $SECONDS reaches DEADLINE) for the host's setup to succeed
# and its libvirtd to answer; on failure prints what the host logged.
_vh_wait_host() {
    local dir=$1 name=$2 deadline=$3 rc uri secs
    until [ -f "$dir/$name/setup.rc" ]; do
        if [ $SECONDS -ge "$deadline" ]; then
            _vh_err "$name: setup did not finish within ${_vh_wait} s; its log:"
            sed 's/^/    /' "$dir/$name/anchor.log" >&2
            return 1
        fi
        sleep 0.05
    done
    rc=$(cat "$dir/$name/setup.rc")
    if [ "$rc" != 0 ]; then
        _vh_err "$name: setup failed (exit $rc); its log:"
        sed 's/^/    /' "$dir/$name/anchor.log" >&2
        return 1
    fi
    uri=$(_vh_uri "$dir" "$name")
    # The first call blocks while libvirtd probes QEMU: its own timeout is what remains of the bound.
    until secs=$((deadline - SECONDS)) && _vh_virsh "$uri" $((secs < 1 ? 1 : secs)) version >/dev/null 2>&1; do
        if [ $SECONDS -ge "$deadline" ]; then
            _vh_err "$name: libvirtd did not answer on $uri within ${_vh_wait} s; a last try (10 s) says:"
            _vh_virsh "$uri" 10 version 2>&1 | sed 's/^/    /' >&2
            _vh_err "last lines of $dir/$name/log/libvirtd.log:"
            tail -n 20 "$dir/$name/log/libvirtd.log" 2>/dev/null | sed 's/^/    /' >&2
            return 1
        fi
        sleep 0.1
    done
}

vhosts_up() {
    if [ $# -ne 2 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]] || [ "$1" -gt 99 ]; then
        _vh_err "usage: vhosts_up N DIR  (1 <= N <= 99)"
        return 2
    fi
    local n=$1 dir=$2 t0 id i name addr hostdir ns fabric uri c fstype mnt opts base deadline
    local -a missing=() specs=()
    t0=$(_vh_now)
    deadline=$((SECONDS + _vh_wait))

    # --- checks: fail early and clearly rather than half-way
    for c in libvirtd virtlogd virsh qemu-img ip nsenter unshare mountpoint python3 timeout hostname; do
        command -v "$c" >/dev/null || missing+=("$c")
    done
    [ ${#missing[@]} -eq 0 ] || { _vh_err "missing commands: ${missing[*]} (packages libvirt-daemon-system, qemu-utils, iproute2, util-linux, python3)"; return 1; }
    [ "$(id -u)" = 0 ] || { _vh_err "must run as root"; return 1; }
    for c in /etc/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do
        [ -d "$c" ] || { _vh_err "$c missing: is libvirt-daemon-system installed?"; return 1; }
    done
    [ -e /dev/kvm ] || _vh_log "no /dev/kvm: domains must use type='qemu' (TCG)"
    if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
        _vh_err "$dir exists and is not empty"
        return 1
    fi
    mkdir -p "$dir" && dir=$(cd "$dir" && pwd -P) || { _vh_err "cannot create $dir"; return 1; }
    id=$(tr -d - </proc/sys/kernel/random/uuid | cut -c1-8)
    echo "$id" >"$dir/.vhosts" # marks DIR as a set's: vhosts_down deletes only such a folder
    VHOSTS_DIR=$dir
    export VHOSTS_DIR
    # hosts.env and TOLLGATE_TEST_LIBVIRT_HOSTS carry DIR unquoted, with ',' and '=' as separators.
    [[ $dir =~ ^[A-Za-z0-9._/+-]+$ ]] || { _vh_err "DIR may hold only A-Z a-z 0-9 . _ / + - : $dir"; return 1; }
    # cache='none' opens images with O_DIRECT, which tmpfs refuses.
    [ "$(stat -f -c %T "$dir")" != tmpfs ] || { _vh_err "$dir is on tmpfs: pick a DIR on disk (cache='none' needs O_DIRECT)"; return 1; }
    c="$dir/vh$n/run/libvirt/libvirt-sock"
    [ ${#c} -le 107 ] || { _vh_err "DIR too long: the socket path $c exceeds sun_path's 107 bytes"; return 1; }
    printf '%s' "$_vh_anchor_py" >"$dir/anchor.py" && printf '%s' "$_vh_setup_sh" >"$dir/setup.sh" ||
        { _vh_err "cannot write to $dir"; return 1; }

    # --- cgroups: DIR/cgroups lists the hierarchies for the hosts' mounts, vhosts_exec and vhosts_down
    _vh_cgroups >"$dir/cgroups" || { _vh_err "cannot list cgroup hierarchies"; return 1; }
    [ -s "$dir/cgroups" ] ||
        { _vh_err "no cgroup hierarchy mounted under /sys/fs/cgroup/NAME (a v1 or hybrid layout is expected)"; return 1; }
    while read -r fstype mnt opts base; do
        specs+=("$fstype" "$mnt" "$opts")
        _vh_cg_mkdir "$base" && _vh_cg_mkdir "$base/$id" || { _vh_err "cannot create cgroup folder $base/$id"; return 1; }
    done <"$dir/cgroups"

    # --- fabric: a bridge in its own namespace, not in the root one. The first `ip netns add` on a machine
    # also makes /run/netns a mount point of the root namespace; remember it so vhosts_down can undo that.
    mountpoint -q /run/netns 2>/dev/null || : >"$dir/.netns-mount"
    {
        printf '127.0.0.1 localhost\n%s.1 fabric\n' "$_vh_net"
        for ((i = 1; i <= n; i++)); do printf '%s.%d vh%d\n' "$_vh_net" $((10 + i)) "$i"; done
    } >"$dir/hosts"
    fabric=$_vh_prefix$id-fabric
    ip netns add "$fabric" &&
        ip -n "$fabric" link set lo up &&
        ip -n "$fabric" link add br0 type bridge &&
        ip -n "$fabric" addr add "$_vh_net.1/24" dev br0 &&
        ip -n "$fabric" link set br0 up ||
        { _vh_err "cannot set up the fabric namespace $fabric"; return 1; }

    for ((i = 1; i <= n; i++)); do
        name=vh$i addr=$_vh_net.$((10 + i)) hostdir=$dir/vh$i ns=$_vh_prefix$id-vh$i

        # --- network: eth0 on the fabric (the veth is made straight into the two namespaces), guest bridge
        ip netns add "$ns" &&
            ip -n "$ns" link set lo up &&
            ip -n "$ns" link add eth0 type veth peer name "$name" netns "$fabric" &&
            ip -n "$ns" addr add "$addr/24" dev eth0 &&
            ip -n "$ns" link set eth0 up &&
            ip -n "$fabric" link set "$name" master br0 up &&
            ip -n "$ns" link add "$_vh_guest_bridge" type bridge &&
            ip -n "$ns" link set "$_vh_guest_bridge" up ||
            { _vh_err "cannot set up the network of $name"; return 1; }

        # --- folders and configuration. The copy of /etc/libvirt must not bring the root daemon's domains,
        # networks, pools, secrets, node devices or hooks along.
        mkdir -p "$hostdir"/{etc,run/lock,lib/images,cache,log/qemu} &&
            cp -a /etc/libvirt/. "$hostdir/etc/" &&
            rm -rf "$hostdir"/etc/{qemu/*.xml,qemu/autostart,qemu/networks/*.xml,qemu/networks/autostart/*} &&
            rm -rf "$hostdir"/etc/{storage,secrets,nodedev,hooks/*,lxc/*.xml} &&
            chmod 1777 "$hostdir/run/lock" ||
            { _vh_err "cannot prepare $hostdir"; return 1; }
        c=$hostdir/etc/libvirtd.conf
        _vh_conf_set "$c" listen_tls 0 &&
            _vh_conf_set "$c" listen_tcp 1 &&
            _vh_conf_set "$c" listen_addr "\"$addr\"" &&
            _vh_conf_set "$c" auth_tcp '"none"' &&
            _vh_conf_set "$c" auth_unix_rw '"none"' &&
            _vh_conf_set "$c" auth_unix_ro '"none"' &&
            _vh_conf_set "$c" host_uuid "\"$(cat /proc/sys/kernel/random/uuid)\"" &&
            _vh_conf_set "$c" log_outputs '"3:file:/var/log/libvirt/libvirtd.log"' ||
            { _vh_err "cannot write $c"; return 1; }
        c=$hostdir/etc/qemu.conf
        # security_driver none: AppArmor profiles and SELinux labels are machine-wide, shared by all hosts.
        _vh_conf_set "$c" user '"root"' &&
            _vh_conf_set "$c" group '"root"' &&
            _vh_conf_set "$c" security_driver '"none"' &&
            _vh_conf_set "$c" migration_address "\"$addr\"" &&
            _vh_conf_set "$c" migration_host "\"$addr\"" ||
            { _vh_err "cannot write $c"; return 1; }
        while read -r _ _ _ base; do
            _vh_cg_mkdir "$base/$id/$name" || { _vh_err "cannot create cgroup folder $base/$id/$name"; return 1; }
        done <"$dir/cgroups"

        # --- start. The subshell joins the host's cgroup folders, then becomes (exec: same pid) nsenter into
        # the network namespace, unshare of new mount, UTS and cgroup namespaces (the latter rooted at the
        # folders just joined), and the anchor. Double fork: the anchor is no job of the caller's shell.
        (
            (
                _vh_cg_join "$dir" "$name" "$BASHPID" || exit 1
                echo "$BASHPID" >"$hostdir/anchor.pid"
                # env -i: no stray LIBVIRT_*/QEMU_* settings of the caller reach the daemons.
                exec env -i PATH="$PATH" HOME="${HOME:-/root}" LANG=C.UTF-8 \
                    nsenter --net="/run/netns/$ns" -- unshare --mount --uts --cgroup --propagation private -- \
                    python3 "$dir/anchor.py" "$hostdir/setup.rc" \
                    bash "$dir/setup.sh" "$name" "$hostdir" "$dir/hosts" "${specs[@]}"
            ) </dev/null >"$hostdir/anchor.log" 2>&1 &
        )
    done

    # --- wait for every host at once: each libvirtd probes QEMU's capabilities (~1.5 s of CPU here) on its
    # first connection. (A copy of vh1's cache would not help: libvirt 9.0 drops it when the CPUID data it reads
    # differs, and leaf 0x1f holds the x2APIC ID of whichever CPU libvirtd happened to start on.)
    local -a waits=()
    for ((i = 1; i <= n; i++)); do
        _vh_wait_host "$dir" "vh$i" "$deadline" &
        waits+=($!)
    done
    c=0
    for i in "${waits[@]}"; do wait "$i" || c=1; done
    [ $c = 0 ] || return 1

    # --- storage: a `default` dir pool on each host's /var/lib/libvirt/images (DIR/vhN/lib/images)
    for ((i = 1; i <= n; i++)); do
        uri=$(_vh_uri "$dir" "vh$i")
        if ! { _vh_virsh "$uri" 20 pool-define-as default dir --target /var/lib/libvirt/images &&
            _vh_virsh "$uri" 20 pool-start default &&
            _vh_virsh "$uri" 20 pool-autostart default; } >/dev/null; then
            _vh_err "vh$i: cannot define and start the default pool"
            return 1
        fi
        [[ $(_vh_virsh "$uri" 20 pool-info default 2>/dev/null) =~ State:[[:space:]]+running ]] ||
            { _vh_err "vh$i: the default pool is not active"; return 1; }
    done

    # --- hosts.env
    local list="" env=$dir/hosts.env
    {
        echo "VHOSTS_DIR=$dir"
        for ((i = 1; i <= n; i++)); do
            uri=$(_vh_uri "$dir" "vh$i")
            echo "VH${i}_NAME=vh$i"
            echo "VH${i}_ADDR=$_vh_net.$((10 + i))"
            echo "VH${i}_URI=$uri"
            echo "VH${i}_TCP_URI=qemu+tcp://vh$i/system"
            echo "VH${i}_IMAGES=$dir/vh$i/lib/images"
            list+="${list:+,}vh$i=$uri"
        done
        echo "TOLLGATE_TEST_LIBVIRT_HOSTS=$list"
    } >"$env.tmp" && mv "$env.tmp" "$env" || { _vh_err "cannot write $env"; return 1; }
    _vh_log "$n hosts up in $(_vh_since "$t0") s (set $id, $dir)"
    cat "$env"
}

vhosts_exec() {
    if [ $# -lt 2 ]; then
        _vh_err "usage: vhosts_exec NAME CMD..."
        return 2
    fi
    local name=$1 dir=${VHOSTS_DIR:-} pid
    shift
    [ -n "$dir" ] || { _vh_err "VHOSTS_DIR is not set (vhosts_up sets it; hosts.env holds it)"; return 1; }
    pid=$(_vh_pidfile "$dir/$name/anchor.pid" "python3*") ||
        { _vh_err "host $name is not running (no live anchor in $dir/$name/anchor.pid)"; return 1; }
    (
        _vh_cg_join "$dir" "$name" "$BASHPID" || exit 1
        exec nsenter -t "$pid" --net --mount --uts --cgroup -- "$@"
    )
}

# _vh_teardown DIR ID: stops and deletes set ID (a glob: * for every set) and whatever of it DIR still knows.
_vh_teardown() {
    local dir=$1 id=$2 rc=0 pass name uri p d base
    local -a hosts=() namespaces=() daemons=() procs=() bases=() setdirs=()
    for d in "$dir"/vh[0-9]*; do [ -d "$d" ] && hosts+=("${d##*/}"); done
    while read -r d _; do
        # shellcheck disable=SC2053 # $id is a glob on purpose
        [[ $d == $_vh_prefix$id-* ]] && namespaces+=("$d")
    done < <(ip netns list 2>/dev/null)
    if [ -f "$dir/cgroups" ]; then
        while read -r _ _ _ base; do bases+=("$base"); done <"$dir/cgroups"
    fi
    while read -r _ _ _ base; do bases+=("$base"); done < <(_vh_cgroups)
    mapfile -t bases < <(printf '%s\n' "${bases[@]}" | sort -u)
    for base in "${bases[@]}"; do
        for d in "$base"/$id; do [ -d "$d" ] && setdirs+=("$d"); done
    done

    # --- domains: destroy and undefine them on every host whose daemon still runs
    for name in "${hosts[@]}"; do
        _vh_pidfile "$dir/$name/run/libvirtd.pid" libvirtd >/dev/null || continue
        uri=$(_vh_uri "$dir" "$name")
        while read -r d; do
            [ -n "$d" ] || continue
            _vh_virsh "$uri" 30 destroy "$d" >/dev/null 2>&1
            _vh_virsh "$uri" 15 undefine --nvram "$d" >/dev/null 2>&1 ||
                _vh_virsh "$uri" 15 undefine "$d" >/dev/null 2>&1
        done < <(_vh_virsh "$uri" 10 list --all --name 2>/dev/null)
    done

    # --- processes: daemons by pid file; then what is left in the namespaces and cgroup folders; anchors last
    for name in "${hosts[@]}"; do
        p=$(_vh_pidfile "$dir/$name/run/libvirtd.pid" libvirtd) && daemons+=("$p")
        p=$(_vh_pidfile "$dir/$name/run/virtlogd.pid" virtlogd) && daemons+=("$p")
    done
    _vh_stop 5 "${daemons[@]}" || rc=1
    # Pass 1 spares the anchors, so they reap the rest at once; later passes take everything, also what a
    # setup still running (vhosts_up failed half-way) started meanwhile.
    for pass in 1 2 3 4 5; do
        procs=()
        while read -r p; do
            [ -n "$p" ] && _vh_alive "$p" || continue
            [ $pass = 1 ] && [[ $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) == *"/anchor.py "* ]] && continue
            procs+=("$p")
        done < <({
            for d in "${namespaces[@]}"; do ip netns pids "$d" 2>/dev/null; done
            for d in "${setdirs[@]}"; do find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null; done
        } | sort -u)
        [ $pass -gt 1 ] && [ ${#procs[@]} -eq 0 ] && break
        _vh_stop 3 "${procs[@]}" || rc=1
    done

    # --- network namespaces (their veths and bridges go with them), fabric last
    for d in "${namespaces[@]}"; do
        [[ $d == *-fabric ]] && continue
        ip netns delete "$d" || { _vh_err "cannot delete network namespace $d"; rc=1; }
    done
    for d in "${namespaces[@]}"; do
        [[ $d == *-fabric ]] || continue
        ip netns delete "$d" || { _vh_err "cannot delete network namespace $d"; rc=1; }
    done
    if [ -e "$dir/.netns-mount" ] && [ -d /run/netns ] && [ -z "$(ls -A /run/netns)" ]; then
        umount /run/netns 2>/dev/null
        rmdir /run/netns 2>/dev/null
    fi

    # --- cgroup folders, deepest first, in every hierarchy (a folder stays busy a moment after its last exit);
    # then `vhosts` itself unless another set still uses it
    for d in "${setdirs[@]}"; do
        for _ in $(seq 50); do
            find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
            [ -d "$d" ] || break
            sleep 0.1
        done
        [ -d "$d" ] && { _vh_err "cannot remove cgroup folder $d (pids: $(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | tr '\n' ' '))"; rc=1; }
    done
    for base in "${bases[@]}"; do [ -d "$base" ] && rmdir "$base" 2>/dev/null; done
    return $rc
}

vhosts_down() {
    if [ $# -ne 1 ] || [ -z "$1" ]; then
        _vh_err "usage: vhosts_down DIR"
        return 2
    fi
    local dir=$1 t0 id rc=0
    t0=$(_vh_now)
    [ -d "$dir" ] || return 0 # nothing left: already down (or never up)
    dir=$(cd "$dir" && pwd -P)
    if ! id=$(_vh_id "$dir"); then
        _vh_err "not touching $dir: it holds no set of test hosts (no .vhosts marker from vhosts_up)"
        return 1
    fi
    _vh_teardown "$dir" "$id" || rc=1
    rm -rf "$dir" || { _vh_err "cannot remove $dir"; rc=1; }
    if [ $rc = 0 ]; then _vh_log "down in $(_vh_since "$t0") s (set $id)"; else _vh_err "down of set $id finished with errors (above)"; fi
    return $rc
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case ${1:-} in
    up)
        [ $# -eq 3 ] || { _vh_err "usage: $0 up N DIR"; exit 2; }
        # Run directly, nobody else would clean up after a failure; but never a DIR that was there before.
        fresh=0
        [ -e "$3" ] && [ -n "$(ls -A "$3" 2>/dev/null)" ] || fresh=1
        vhosts_up "$2" "$3" || { rc=$?; [ $fresh = 0 ] || vhosts_down "$3" || true; exit $rc; }
        ;;
    down)
        [ $# -eq 2 ] || { _vh_err "usage: $0 down DIR"; exit 2; }
        vhosts_down "$2"
        ;;
    exec)
        [ $# -ge 4 ] || { _vh_err "usage: $0 exec DIR NAME CMD..."; exit 2; }
        VHOSTS_DIR=$(cd "$2" 2>/dev/null && pwd -P) || { _vh_err "no such DIR: $2"; exit 1; }
        shift 2
        vhosts_exec "$@"
        ;;
    sweep)
        _vh_teardown /nonexistent '*'
        ;;
    *)
        _vh_err "usage: $0 up N DIR | down DIR | exec DIR NAME CMD... | sweep"
        exit 2
        ;;
    esac
fi
