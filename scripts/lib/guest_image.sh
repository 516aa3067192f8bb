#!/usr/bin/env bash
# Tiny bootable Linux guest for the libvirt tests: Debian 12's kernel plus a busybox initramfs whose /init
# onlines hot-plugged vCPUs and memory, powers off on the ACPI power button and otherwise idles. A guest
# that runs an OS is what makes live resizing testable: vCPU and DIMM hot-unplug are ACPI requests that
# only a cooperating kernel completes, and the balloon needs its driver.
#
# Source it, then:  guest_image CACHE_DIR
#   builds into CACHE_DIR/guest unless a valid build is already there, and exports
#     GUEST_KERNEL   kernel to boot (vmlinux if it could be made, else vmlinuz)
#     GUEST_INITRD   CACHE_DIR/guest/initrd.img
#     GUEST_CMDLINE  kernel command line to boot them with
#     GUEST_ACCEL    kvm or tcg: what QEMU can run this guest with here (libvirt: type='kvm' or 'qemu')
#     GUEST_ROOTFS   CACHE_DIR/guest/rootfs.img: a raw ext4 root file system for containers (libvirt LXC)
# Or run it:        scripts/lib/guest_image.sh CACHE_DIR
#   same, then prints those five as shell assignments (eval-able).
#
# Files in CACHE_DIR/guest: vmlinuz (Debian's bzImage), vmlinux (the same kernel uncompressed, booted
# through its PVH entry: skips the XZ decompressor, which takes ~2.5 s under TCG), initrd.img, rootfs.img
# (the same busybox as a container's root: its /sbin/init says 'tollgate-guest ready' and idles).
#
# The guest prints 'tollgate-guest ready cpus=N mem_mib=M' on its serial console (ttyS0) once up, and
# 'tollgate-guest state cpus=N mem_mib=M' whenever its online vCPU count or MemTotal changes.
# Needs root (apt-get), find, gzip, xz and mkfs.ext4 (e2fsprogs); the kernel and busybox are fetched with 'apt-get download' and
# unpacked with dpkg-deb, so no kernel is installed on the machine.
#
# Written to be sourced into 'set -euo pipefail' scripts and also called from an 'if' (where errexit is
# off), so every step checks its own status.

# swiotlb=noforce: with maxmem the guest may own memory above 4 GiB, so the kernel would reserve 64 MiB of
# DMA bounce buffers (a quarter of a 256 MiB guest); the virtio devices it drives do not use them.
GUEST_CMDLINE='console=ttyS0 memhp_default_state=online_movable movable_node swiotlb=noforce quiet'

# Modules loaded by /init, dependencies added automatically. Debian builds all of these as modules
# (=m): virtio_pci is the transport for every virtio device libvirt adds, virtio_balloon the memory
# balloon, button+evdev turn the ACPI power button (virsh shutdown/reboot) into an input event.
guest_modules=(virtio_pci virtio_balloon virtio_blk virtio_net virtio_console button evdev)

# This file's path, absolute, for the build stamp (the caller may cd after sourcing).
_gi_self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")

_gi_log() { echo "guest_image: $*" >&2; }

# _gi_download DIR PACKAGE...: apt-get download into DIR. Stale package lists point at files the mirror
# no longer has, so a failure is retried once after 'apt-get update'.
_gi_download() {
    local dir=$1
    shift
    # apt drops to the _apt user for downloads and warns when that user cannot reach the folder.
    if chmod 755 "$(dirname "$dir")"; then
        chown _apt "$dir" 2>/dev/null || true
    fi
    (cd "$dir" && apt-get download -q=2 "$@") && return 0
    _gi_log "apt-get download $* failed; updating package lists and retrying"
    apt-get update -q=2 >&2 || return 1
    (cd "$dir" && apt-get download -q=2 "$@")
}

# _gi_kernel_package: the concrete linux-image-X.Y.Z-N-amd64 that the linux-image-amd64 metapackage pulls in.
_gi_kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-amd64$/ { print $2; exit }'
}

# _gi_module_order MODDIR NAME...: prints the module files to insmod, dependencies first, each once.
# Reads the 'depends=' field from each .ko's modinfo section, so kmod is not needed on the machine.
_gi_module_order() {
    local moddir=$1 m
    shift
    local -A _gi_seen=()
    local -a _gi_order=()
    for m in "$@"; do
        _gi_module_visit "$m" || return 1
    done
    printf '%s\n' "${_gi_order[@]}"
}

# _gi_module_visit NAME: depth-first step of _gi_module_order (uses its moddir, _gi_seen and _gi_order).
_gi_module_visit() {
    local name=${1//-/_} ko dep deps
    [ -n "${_gi_seen[$name]:-}" ] && return 0
    _gi_seen[$name]=1
    ko=$(find "$moddir/kernel" \( -name "$name.ko" -o -name "${name//_/-}.ko" \) -print -quit)
    if [ -z "$ko" ]; then
        # Built into the kernel: nothing to load.
        grep -q -e "/$name.ko\$" -e "/${name//_/-}.ko\$" "$moddir/modules.builtin" && return 0
        _gi_log "module $name not found in $moddir"
        return 1
    fi
    deps=$(tr '\0' '\n' <"$ko" | sed -n 's/^depends=//p' | head -n 1)
    for dep in ${deps//,/ }; do
        _gi_module_visit "$dep" || return 1
    done
    _gi_order+=("$ko")
}

# _gi_vmlinux BZIMAGE CONFIG OUT: writes the uncompressed ELF kernel to OUT when the kernel has a PVH
# entry (QEMU and libvirt then boot it directly) and is XZ-compressed, as Debian's are. Optional: a
# failure only means booting the bzImage.
_gi_vmlinux() {
    local bzimage=$1 config=$2 out=$3 offset
    grep -q '^CONFIG_PVH=y' "$config" || return 1
    if ! command -v xz >/dev/null; then
        apt-get install -y -q=2 xz-utils >&2 || return 1
    fi
    offset=$(LC_ALL=C grep -obUaP '\xFD7zXZ\x00' "$bzimage" | head -n 1 | cut -d: -f1)
    [ -n "$offset" ] || return 1
    # xz stops at the end of the stream, so tail may die of SIGPIPE: only xz's status counts.
    tail -c +$((offset + 1)) "$bzimage" | xz -dc --single-stream >"$out" 2>/dev/null
    [ "${PIPESTATUS[1]}" -eq 0 ] || return 1
    [ "$(head -c 4 "$out" | od -An -c | tr -d ' ')" = '177ELF' ]
}

# _gi_init MODULE_NAME...: the guest's /init.
_gi_init() {
    cat <<EOF
#!/bin/busybox sh
# PID 1 of the Tollgate test guest (generated by scripts/lib/guest_image.sh). It must never exit.
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The initramfs has no /dev/console node, so the kernel started us without stdio.
exec </dev/console >/dev/console 2>&1

for m in $*; do
    insmod /lib/modules/\$m.ko || echo "tollgate-guest: insmod \$m failed"
done
EOF
    cat <<'EOF'

# The ACPI power button (virsh shutdown, and virsh reboot, which is a shutdown that libvirt restarts)
# arrives as a key event: the first event read means power off.
for d in /sys/class/input/event*; do
    read -r name 2>/dev/null <"$d/device/name"
    if [ "$name" = "Power Button" ]; then
        (dd if="/dev/input/${d##*/}" of=/dev/null bs=24 count=1 2>/dev/null &&
            echo "tollgate-guest power button: powering off" && poweroff -f) &
    fi
done

# Hot-added vCPUs arrive offline; memory is onlined (movable) by memhp_default_state, and this catches
# any block that is not. Movable memory is what lets a DIMM be unplugged again. The kernel handles
# unplug requests itself (offline, then ACPI eject); writes racing with a removal just fail.
# Shell builtins only, so that the once-a-second pass costs next to nothing.
online_all() {
    for f in /sys/devices/system/cpu/cpu[0-9]*/online; do
        read -r v 2>/dev/null <"$f" && [ "$v" = 0 ] && echo 1 >"$f" 2>/dev/null
    done
    for f in /sys/devices/system/memory/memory[0-9]*/state; do
        read -r v 2>/dev/null <"$f" && [ "$v" = offline ] &&
            { echo online_movable >"$f" || echo online >"$f"; } 2>/dev/null
    done
}
# Sets $state to the online vCPU count and MemTotal (which the balloon lowers) in MiB.
get_state() {
    cpus=0
    for d in /sys/devices/system/cpu/cpu[0-9]*; do
        v=1
        [ -e "$d/online" ] && read -r v 2>/dev/null <"$d/online"
        [ "$v" = 1 ] && cpus=$((cpus + 1))
    done
    while read -r k v _; do
        [ "$k" = MemTotal: ] && break
    done </proc/meminfo
    state="cpus=$cpus mem_mib=$((v / 1024))"
}

online_all
get_state
last=$state
echo "tollgate-guest ready $state"
while :; do
    sleep 1
    online_all
    get_state
    if [ "$state" != "$last" ]; then
        echo "tollgate-guest state $state"
        last=$state
    fi
done
EOF
}

# _gi_rootfs BUSYBOX OUT TMP: a raw ext4 image of a container's root file system: busybox and an init that
# idles (the container's namespaces and cgroups are the host kernel's: nothing to load or online).
_gi_rootfs() {
    local bb=$1 out=$2 dir=$3/ctroot
    mkdir -p "$dir"/{bin,sbin,etc,proc,sys,dev,tmp,run,root} || return 1
    cp "$bb" "$dir/bin/busybox" || return 1
    cat >"$dir/sbin/init" <<'EOF'
#!/bin/busybox sh
# PID 1 of the Tollgate test container (generated by scripts/lib/guest_image.sh). It must never exit.
/bin/busybox --install -s /bin
echo "tollgate-guest ready"
while :; do sleep 3600; done
EOF
    chmod 755 "$dir/sbin/init" || return 1
    rm -f "$out"
    truncate -s 32M "$out" && mkfs.ext4 -q -F -L tollgate-root -d "$dir" "$out" >/dev/null
}

# _gi_first PATH...: the first argument, if it exists (an unmatched glob does not).
_gi_first() { [ -e "$1" ] && echo "$1"; }

# _gi_build OUT TMP: builds vmlinuz, vmlinux (if possible) and initrd.img into OUT using TMP as scratch.
_gi_build() {
    local out=$1 tmp=$2 kpkg kernel config moddir bb m root=$2/root
    local -a kos=() names=()

    if [ -z "$(_gi_kernel_package)" ]; then
        # Fresh machines have no package lists at all.
        apt-get update -q=2 >&2 || return 1
    fi
    kpkg=$(_gi_kernel_package)
    if [ -z "$kpkg" ]; then
        _gi_log "cannot resolve linux-image-amd64 to a kernel package"
        return 1
    fi
    _gi_log "fetching $kpkg and busybox-static"
    mkdir -p "$tmp/debs" "$tmp/kernel" "$tmp/busybox" "$root" || return 1
    _gi_download "$tmp/debs" "$kpkg" busybox-static || return 1
    dpkg-deb -x "$tmp"/debs/linux-image-*.deb "$tmp/kernel" || return 1
    dpkg-deb -x "$tmp"/debs/busybox-static_*.deb "$tmp/busybox" || return 1

    kernel=$(_gi_first "$tmp"/kernel/boot/vmlinuz-*)
    config=$(_gi_first "$tmp"/kernel/boot/config-*)
    moddir=$(_gi_first "$tmp"/kernel/lib/modules/*)
    bb=$tmp/busybox/bin/busybox
    if [ ! -f "$kernel" ] || [ ! -f "$config" ] || [ ! -d "$moddir" ] || [ ! -x "$bb" ]; then
        _gi_log "unexpected package contents (kernel '$kernel', config '$config', modules '$moddir', busybox '$bb')"
        return 1
    fi

    m=$(_gi_module_order "$moddir" "${guest_modules[@]}") || return 1
    mapfile -t kos <<<"$m"
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,lib/modules} || return 1
    cp "$bb" "$root/bin/busybox" || return 1
    for m in "${kos[@]}"; do
        cp "$m" "$root/lib/modules/" || return 1
        m=${m##*/}
        names+=("${m%.ko}")
    done
    _gi_init "${names[@]}" >"$root/init" || return 1
    chmod 755 "$root/init" || return 1
    # cpio from the busybox just fetched, so the machine needs no cpio package.
    (cd "$root" && find . -mindepth 1 >"$tmp/files" && "$bb" cpio -o -H newc -R 0:0 <"$tmp/files" >"$tmp/initrd.cpio" 2>/dev/null) ||
        return 1
    gzip -9 <"$tmp/initrd.cpio" >"$out/initrd.img.new" || return 1
    _gi_rootfs "$bb" "$out/rootfs.img.new" "$tmp" || { _gi_log "cannot make the container root file system"; return 1; }

    rm -f "$out/vmlinux"
    if ! _gi_vmlinux "$kernel" "$config" "$out/vmlinux.new"; then
        _gi_log "no uncompressed PVH kernel; GUEST_KERNEL will be the bzImage (slower to boot under TCG)"
        rm -f "$out/vmlinux.new"
    fi
    cp "$kernel" "$out/vmlinuz.new" || return 1
    mv "$out/vmlinuz.new" "$out/vmlinuz" && mv "$out/initrd.img.new" "$out/initrd.img" &&
        mv "$out/rootfs.img.new" "$out/rootfs.img" || return 1
    if [ -f "$out/vmlinux.new" ]; then
        mv "$out/vmlinux.new" "$out/vmlinux" || return 1
    fi
    _gi_log "built from $kpkg, modules: ${names[*]}"
}

# _gi_accel: kvm when /dev/kvm is hardware KVM (kvm_intel/kvm_amd), else tcg. /dev/kvm can also be PVM
# (kvm_pvm, paravirtualised KVM for nested clouds), which runs only PVM-enabled guest kernels: Debian's
# kernel then crawls through instruction emulation (the bzImage does not finish decompressing in 10
# minutes) or stops with "KVM internal error ... emulation failure" (vmlinux).
_gi_accel() {
    if [ -w /dev/kvm ] && { [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]; }; then
        echo kvm
    else
        echo tcg
    fi
}

# guest_image CACHE_DIR: see the top of this file.
guest_image() {
    if [ $# -ne 1 ] || [ -z "$1" ]; then
        echo "usage: guest_image CACHE_DIR" >&2
        return 2
    fi
    local out=$1/guest lockfd rc=0 tmp stamp
    mkdir -p "$out" || return 1
    # The build is keyed on this file's content: editing the recipe rebuilds, nothing else does.
    stamp=$(sha256sum "$_gi_self" | cut -d' ' -f1) || return 1

    # Parallel test runs share the cache: one builds, the others wait and reuse.
    exec {lockfd}>"$out/.lock" || return 1
    flock "$lockfd" || rc=1
    if [ $rc -eq 0 ] && ! { [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ] && [ -s "$out/rootfs.img" ] &&
        [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ] && gzip -t "$out/initrd.img" 2>/dev/null; }; then
        rm -f "$out/stamp"
        tmp=$(mktemp -d /tmp/guest-image.XXXXXX) || rc=1
        if [ $rc -eq 0 ]; then
            _gi_build "$out" "$tmp" || rc=1
            rm -rf "$tmp"
        fi
        [ $rc -eq 0 ] && { echo "$stamp" >"$out/stamp" || rc=1; }
    fi
    exec {lockfd}>&-
    if [ $rc -ne 0 ]; then
        _gi_log "failed to build the guest image in $out"
        return 1
    fi

    GUEST_KERNEL=$out/vmlinuz
    [ -s "$out/vmlinux" ] && GUEST_KERNEL=$out/vmlinux
    GUEST_INITRD=$out/initrd.img
    GUEST_ROOTFS=$out/rootfs.img
    GUEST_ACCEL=$(_gi_accel)
    export GUEST_KERNEL GUEST_INITRD GUEST_CMDLINE GUEST_ACCEL GUEST_ROOTFS
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    guest_image "$@"
    printf 'GUEST_KERNEL=%q\nGUEST_INITRD=%q\nGUEST_CMDLINE=%q\nGUEST_ACCEL=%q\nGUEST_ROOTFS=%q\n' \
        "$GUEST_KERNEL" "$GUEST_INITRD" "$GUEST_CMDLINE" "$GUEST_ACCEL" "$GUEST_ROOTFS"
fi
