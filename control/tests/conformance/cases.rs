//! The cases every driver must pass. `suite!(make_pair)` turns them into tests for one driver.

use crate::Pair;
use tollgate_control::hypervisor::{Disk, HypervisorError, Limits, PowerState, NET_MBIT_MAX, NO_NET_LIMIT};

/// A refusal that proposes a cold resize.
fn assert_cold_resize<T: std::fmt::Debug>(result: Result<T, HypervisorError>) {
    match result {
        Err(HypervisorError::Refused { proposal, .. }) => assert!(proposal.contains("cold resize"), "{proposal}"),
        other => panic!("expected a refusal proposing a cold resize, got {other:?}"),
    }
}

/// A clear refusal of what the driver cannot do.
fn assert_unsupported<T: std::fmt::Debug>(result: Result<T, HypervisorError>, says: &str) {
    match result {
        Err(HypervisorError::Unsupported(m)) => assert!(m.contains(says), "{m}"),
        other => panic!("expected a refusal saying {says:?}, got {other:?}"),
    }
}

macro_rules! suite {
    ($pair:path) => {
        $crate::cases::suite!(@cases $pair;
            provisioning_twice_is_one_running_managed_domain,
            live_resize_up_and_down_keeps_the_same_running_domain,
            growth_past_the_headroom_is_refused_with_a_cold_resize,
            limits_apply_to_the_running_domain_and_read_back,
            live_migration_moves_the_running_domain_with_its_disk,
            a_refused_migration_leaves_the_domain_running_where_it_was,
            a_stopped_domain_moves_cold_with_its_disk_and_starts_there,
            an_unmanaged_domain_is_listed_and_adopted_without_restart,
            stop_start_and_delete,
            one_stats_call_reports_every_domain,
        );
    };
    (@cases $pair:path; $($case:ident,)*) => {
        $(
            #[test]
            fn $case() {
                let pair = $pair();
                let name = format!("{}-{}", stringify!($case).split('_').take(3).collect::<Vec<_>>().join("-"), std::process::id() % 10_000);
                pair.clean(&name);
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| $crate::cases::$case(&pair, &name)));
                pair.clean(&name);
                if let Err(panic) = outcome {
                    std::panic::resume_unwind(panic);
                }
            }
        )*
    };
}
pub(crate) use suite;

/// A number from `virsh` output: the first word after `label:` on the line of that label.
fn virsh_field(out: &str, label: &str) -> Option<u64> {
    out.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(key, _)| key.trim() == label)
        .and_then(|(_, value)| value.split_whitespace().next()?.parse().ok())
}

pub fn provisioning_twice_is_one_running_managed_domain(p: &Pair, name: &str) {
    let first = p.a.provision(&p.spec(name)).unwrap();
    assert_eq!(first.state, PowerState::Running);
    assert_eq!(first.vm_id.as_deref(), Some(format!("vm-{name}").as_str()));
    // A container has no vCPU headroom: its vCPUs do not change while it runs.
    let headroom = if p.a.capabilities().live_vcpus { 4 } else { 1 };
    assert_eq!((first.vcpus, first.max_vcpus, first.memory.current_mib()), (1, headroom, 256));
    assert_eq!(first.disks.len(), 1);
    assert_eq!(first.disks[0].capacity_bytes, 1 << 30);

    let again = p.a.provision(&p.spec(name)).unwrap();
    assert_eq!(
        (again.uuid.as_str(), again.id),
        (first.uuid.as_str(), first.id),
        "a re-delivered provision restarted it"
    );
    let mut other = p.spec(name);
    other.vm_id = "vm-someone-else".into();
    assert!(matches!(p.a.provision(&other), Err(HypervisorError::Exists { .. })));

    if let Some(info) = p.outside.virsh(false, &["dominfo", name]) {
        assert!(info.contains("running"), "{info}");
        assert_eq!(virsh_field(&info, "CPU(s)"), Some(1), "{info}");
    }
}

pub fn live_resize_up_and_down_keeps_the_same_running_domain(p: &Pair, name: &str) {
    let before = p.a.provision(&p.spec(name)).unwrap();
    // Unplugging is a request the guest OS grants, for memory it placed in movable zones: resize a VM
    // that has booted, as one in service has.
    p.outside.wait_guest_ready(name);
    let pid = p.outside.qemu_pid(false, name);
    let caps = p.a.capabilities();
    let check = |vcpus: u32, mib: u64| {
        let d = p.a.domain(name).unwrap();
        assert_eq!((d.vcpus, d.memory.current_mib()), (vcpus, mib));
        assert_eq!((d.state, d.id), (PowerState::Running, before.id), "the domain restarted");
        assert_eq!(p.outside.qemu_pid(false, name), pid, "QEMU was replaced");
        if caps.live_vcpus {
            if let Some(count) = p.outside.virsh(false, &["vcpucount", name, "--live", "--active"]) {
                assert_eq!(count.trim().parse::<u32>().ok(), Some(vcpus), "virsh vcpucount: {count}");
            }
        }
        if caps.memory_modules {
            if let Some(info) = p.outside.virsh(false, &["dominfo", name]) {
                assert_eq!(virsh_field(&info, "Max memory"), Some(mib * 1024), "virsh dominfo: {info}");
            }
        } else if let Some(tune) = p.outside.virsh(false, &["memtune", name]) {
            // What the kernel holds the container to.
            assert_eq!(virsh_field(&tune, "hard_limit"), Some(mib * 1024), "virsh memtune: {tune}");
        }
    };

    if !caps.live_vcpus {
        // Memory is a limit that moves both ways, below what it started with too; vCPUs stay.
        assert_cold_resize(p.a.set_vcpus(name, 3));
        check(1, 256);
        for mib in [512, 640, 128, 256] {
            assert_eq!(p.a.set_memory(name, mib).unwrap().memory.current_mib(), mib);
            check(1, mib);
        }
        assert_eq!(p.a.set_vcpus(name, 1).unwrap().vcpus, 1, "asking for what it has is fine");
        // Its limit moved behind Tollgate's back (as when a container restarts itself, at its maximum): what
        // the kernel holds it to is what is read, and asking for the old limit sets it again.
        p.outside.virsh(false, &["memtune", name, "--hard-limit", "1048576", "--live"]);
        assert_eq!(p.a.domain(name).unwrap().memory.current_mib(), 1024, "the live limit is read");
        assert_eq!(p.a.set_memory(name, 256).unwrap().memory.current_mib(), 256);
        check(1, 256);
        if let Some(config) = p.outside.virsh(false, &["dumpxml", name, "--inactive"]) {
            assert!(
                config.contains("<currentMemory unit='KiB'>262144</currentMemory>"),
                "kept for the next start: {config}"
            );
        }
        return;
    }
    assert_eq!(p.a.set_vcpus(name, 3).unwrap().vcpus, 3);
    check(3, 256);
    assert_eq!(p.a.set_memory(name, 512).unwrap().memory.modules_mib, vec![256]);
    check(3, 512);
    p.a.set_memory(name, 640).unwrap();
    check(3, 640);
    assert_eq!(p.a.set_memory(name, 512).unwrap().memory.modules_mib, vec![256]);
    check(3, 512);
    p.a.set_memory(name, 256).unwrap();
    check(3, 256);
    match p.outside.vcpu_unplug_gap() {
        None => {
            assert_eq!(p.a.set_vcpus(name, 1).unwrap().vcpus, 1);
            check(1, 256);
            // The definition keeps the sizes for the next boot.
            if let Some(config) = p.outside.virsh(false, &["vcpucount", name, "--config", "--current"]) {
                assert_eq!(config.trim(), "1", "{config}");
            }
        }
        Some(gap) => {
            // A known gap of this host: the shrink fails cleanly and the VM runs on, untouched.
            let refused = p.a.set_vcpus(name, 1);
            assert!(refused.is_err(), "vCPU unplug works here now ({gap}): drop the exception");
            let d = p.a.domain(name).unwrap();
            assert_eq!((d.state, d.id), (PowerState::Running, before.id), "{gap}");
            assert_eq!(p.outside.qemu_pid(false, name), pid);
        }
    }
}

pub fn growth_past_the_headroom_is_refused_with_a_cold_resize(p: &Pair, name: &str) {
    let before = p.a.provision(&p.spec(name)).unwrap();
    assert_cold_resize(p.a.set_vcpus(name, 5));
    assert_cold_resize(p.a.set_memory(name, 2048));
    if p.a.capabilities().memory_modules {
        // Below what it booted with: no module to unplug.
        assert_cold_resize(p.a.set_memory(name, 128));
    }
    let after = p.a.domain(name).unwrap();
    assert_eq!((after.id, after.vcpus, after.memory.current_mib()), (before.id, 1, 256));
}

pub fn limits_apply_to_the_running_domain_and_read_back(p: &Pair, name: &str) {
    let before = p.a.provision(&p.spec(name)).unwrap();
    let pid = p.outside.qemu_pid(false, name);
    if !p.a.capabilities().disk_limits {
        return container_limits(p, name, before.id, pid);
    }
    let set =
        p.a.set_limits(
            name,
            &Limits {
                cpu_quota_pct: Some(50),
                disk_read_bytes_per_sec: Some(10 << 20),
                disk_iops: Some(500),
                ..Limits::default()
            },
        )
        .unwrap();
    assert_eq!((set.cpu_quota_pct, set.disk_read_bytes_per_sec, set.disk_iops), (Some(50), Some(10 << 20), Some(500)));
    assert_eq!(set.disk_write_bytes_per_sec, None);
    // Limits not named stay as they were.
    let more = p.a.set_limits(name, &Limits { disk_write_bytes_per_sec: Some(5 << 20), ..Limits::default() }).unwrap();
    assert_eq!((more.cpu_quota_pct, more.disk_write_bytes_per_sec), (Some(50), Some(5 << 20)));
    assert_eq!(p.a.limits(name).unwrap(), more);
    // The NIC's bandwidth, both ways, where the host's kernel can shape traffic; else a clear refusal that
    // changes nothing.
    let net = p.a.set_limits(name, &Limits { net_mbit_per_sec: Some(100), ..Limits::default() });
    let more = if p.outside.kernel_shapes_traffic() {
        let net = net.unwrap();
        assert_eq!(net, Limits { net_mbit_per_sec: Some(100), ..more.clone() });
        if let Some(xml) = p.outside.virsh(false, &["dumpxml", name]) {
            // libvirt shapes in kilobytes per second: 100 Mbit/s is 12,500.
            assert!(xml.contains("<inbound average='12500'/>") && xml.contains("<outbound average='12500'/>"), "{xml}");
        }
        net
    } else {
        match net {
            Err(HypervisorError::Unsupported(m)) => assert!(m.contains("kernel cannot shape traffic"), "{m}"),
            other => panic!("a kernel without sch_sfq or act_police shaped traffic: {other:?}"),
        }
        assert_eq!(p.a.limits(name).unwrap(), more);
        more
    };
    for too_much in [
        Limits { cpu_quota_pct: Some(101), ..Limits::default() },
        Limits { net_mbit_per_sec: Some(NET_MBIT_MAX + 1), ..Limits::default() },
    ] {
        assert!(matches!(p.a.set_limits(name, &too_much), Err(HypervisorError::Invalid(_))), "{too_much:?}");
    }
    assert_eq!(p.a.limits(name).unwrap(), more, "a refused change changes nothing");

    // What the limits were is put back by naming every field, 0 for none.
    let cleared = p.a.set_limits(name, &Limits::default().restoring()).unwrap();
    assert_eq!(cleared, Limits::default());
    let again = p.a.set_limits(name, &more.restoring()).unwrap();
    assert_eq!(again, more);

    let after = p.a.domain(name).unwrap();
    assert_eq!((after.state, after.id), (PowerState::Running, before.id));
    assert_eq!(p.outside.qemu_pid(false, name), pid);
    if let Some(sched) = p.outside.virsh(false, &["schedinfo", name, "--live"]) {
        assert_eq!(virsh_field(&sched, "vcpu_quota"), Some(50_000), "{sched}");
        assert_eq!(virsh_field(&sched, "vcpu_period"), Some(100_000), "{sched}");
    }
    if let Some(tune) = p.outside.virsh(false, &["blkdeviotune", name, "vda", "--live"]) {
        assert_eq!(virsh_field(&tune, "read_bytes_sec"), Some(10 << 20), "{tune}");
        assert_eq!(virsh_field(&tune, "total_iops_sec"), Some(500), "{tune}");
    }
}

/// A container's limits: CPU moves live; disk and network limits are refused and change nothing.
fn container_limits(p: &Pair, name: &str, id: Option<u32>, pid: Option<u32>) {
    let cpu = Limits { cpu_quota_pct: Some(50), ..Limits::default() };
    let with_disk = Limits { disk_read_bytes_per_sec: Some(10 << 20), ..cpu.clone() };
    assert_unsupported(p.a.set_limits(name, &with_disk), "disk limits");
    let with_net = Limits { net_mbit_per_sec: Some(100), ..cpu.clone() };
    assert_unsupported(p.a.set_limits(name, &with_net), "network limits");
    assert_eq!(p.a.limits(name).unwrap(), Limits::default(), "a refused change changes nothing");

    assert_eq!(p.a.set_limits(name, &cpu).unwrap(), cpu);
    assert_eq!(p.a.limits(name).unwrap(), cpu);
    if let Some(sched) = p.outside.virsh(false, &["schedinfo", name, "--live"]) {
        // One vCPU's worth: the quota binds the whole container.
        assert_eq!(virsh_field(&sched, "vcpu_quota"), Some(50_000), "{sched}");
    }
    assert!(matches!(
        p.a.set_limits(name, &Limits { cpu_quota_pct: Some(101), ..Limits::default() }),
        Err(HypervisorError::Invalid(_))
    ));
    assert_eq!(
        p.a.set_limits(name, &Limits::default().restoring()).unwrap(),
        Limits::default(),
        "clearing all is fine"
    );
    assert_eq!(p.a.set_limits(name, &cpu.restoring()).unwrap(), cpu);
    let after = p.a.domain(name).unwrap();
    assert_eq!((after.state, after.id), (PowerState::Running, id));
    assert_eq!(p.outside.qemu_pid(false, name), pid);
}

/// A driver that cannot migrate refuses, and the domain stays where it was, as it was.
fn refuses_to_move(p: &Pair, name: &str) -> bool {
    if p.a.capabilities().migration {
        return false;
    }
    let before = p.a.domain(name).unwrap();
    assert_unsupported(p.a.migrate(name, &p.b_peer), "cannot move it");
    let after = p.a.domain(name).unwrap();
    assert_eq!((after.state, after.id, after.vm_id), (before.state, before.id, before.vm_id));
    assert!(matches!(p.b.domain(name), Err(HypervisorError::NotFound { .. })));
    true
}

pub fn live_migration_moves_the_running_domain_with_its_disk(p: &Pair, name: &str) {
    let before = p.a.provision(&p.spec(name)).unwrap();
    if refuses_to_move(p, name) {
        return;
    }
    p.a.set_vcpus(name, 2).unwrap();
    p.a.set_limits(name, &Limits { cpu_quota_pct: Some(40), ..Limits::default() }).unwrap();
    p.b.prepare_incoming(&before.disks).unwrap();
    // Preparing twice is harmless (a re-delivered task).
    p.b.prepare_incoming(&before.disks).unwrap();

    p.a.migrate(name, &p.b_peer).unwrap();

    assert!(matches!(p.a.domain(name), Err(HypervisorError::NotFound { .. })), "still defined on the source");
    let moved = p.b.domain(name).unwrap();
    assert_eq!(moved.state, PowerState::Running);
    assert_eq!((moved.uuid.as_str(), moved.vm_id.as_deref()), (before.uuid.as_str(), before.vm_id.as_deref()));
    assert_eq!((moved.vcpus, moved.memory.current_mib()), (2, 256));
    assert_eq!(p.b.limits(name).unwrap().cpu_quota_pct, Some(40));
    assert_eq!(moved.disks[0].volume, before.disks[0].volume);
    if let Some(list) = p.outside.virsh(true, &["list", "--name"]) {
        assert!(list.lines().any(|l| l.trim() == name), "virsh on B: {list}");
    }
    if let Some(list) = p.outside.virsh(false, &["list", "--all", "--name"]) {
        assert!(!list.lines().any(|l| l.trim() == name), "virsh on A: {list}");
    }
}

pub fn a_stopped_domain_moves_cold_with_its_disk_and_starts_there(p: &Pair, name: &str) {
    let before = p.a.provision(&p.spec(name)).unwrap();
    p.a.stop(name).unwrap();
    if refuses_to_move(p, name) {
        return;
    }
    p.b.prepare_incoming(&before.disks).unwrap();

    p.a.migrate(name, &p.b_peer).unwrap();
    // It may arrive paused; the destination stops it, as it was.
    let moved = p.b.stop(name).unwrap();

    assert!(matches!(p.a.domain(name), Err(HypervisorError::NotFound { .. })), "still defined on the source");
    assert_eq!(moved.state, PowerState::ShutOff);
    assert_eq!((moved.uuid.as_str(), moved.vm_id.as_deref()), (before.uuid.as_str(), before.vm_id.as_deref()));
    assert_eq!(moved.disks[0].volume, before.disks[0].volume);
    if let Some(state) = p.outside.virsh(true, &["domstate", name]) {
        assert_eq!(state.trim(), "shut off", "virsh on B");
    }
    if let Some(list) = p.outside.virsh(false, &["list", "--all", "--name"]) {
        assert!(!list.lines().any(|l| l.trim() == name), "virsh on A: {list}");
    }
    let started = p.b.start(name).unwrap();
    assert_eq!(started.state, PowerState::Running, "it starts there, from the disk that came with it");
}

pub fn a_refused_migration_leaves_the_domain_running_where_it_was(p: &Pair, name: &str) {
    let before = p.a.provision(&p.spec(name)).unwrap();
    if refuses_to_move(p, name) {
        return;
    }
    // B already has a different domain of that name, so it must refuse this one.
    let mut squatter = p.spec(name);
    squatter.vm_id = "vm-squatter".into();
    p.b.provision(&squatter).unwrap();
    p.b.prepare_incoming(&[Disk { target: "vda".into(), volume: None, capacity_bytes: 0 }]).unwrap();

    match p.a.migrate(name, &p.b_peer) {
        Err(HypervisorError::MigrationFailed { peer, .. }) => assert_eq!(peer, p.b_peer.host),
        other => panic!("expected a failed migration, got {other:?}"),
    }
    let after = p.a.domain(name).unwrap();
    assert_eq!((after.state, after.id, after.vm_id), (PowerState::Running, before.id, before.vm_id));
    assert_eq!(p.b.domain(name).unwrap().vm_id.as_deref(), Some("vm-squatter"));
}

pub fn an_unmanaged_domain_is_listed_and_adopted_without_restart(p: &Pair, name: &str) {
    p.outside.define_unmanaged(&p.spec(name));
    let found = p.a.domains().unwrap().into_iter().find(|d| d.name == name).expect("the hand-made domain is listed");
    assert_eq!((found.vm_id, found.state), (None, PowerState::Running));

    let adopted = p.a.adopt(name, "vm-adopted").unwrap();
    assert_eq!((adopted.vm_id.as_deref(), adopted.id), (Some("vm-adopted"), found.id));
    assert_eq!(p.a.adopt(name, "vm-adopted").unwrap().id, found.id, "adopting again is harmless");
    assert!(matches!(p.a.adopt(name, "vm-other"), Err(HypervisorError::Invalid(_))));
    assert_eq!(p.a.domain(name).unwrap().vm_id.as_deref(), Some("vm-adopted"));
    // Made without a NIC: a network limit is refused, and the rest of the change with it.
    let net_and_cpu = Limits { net_mbit_per_sec: Some(100), cpu_quota_pct: Some(50), ..Limits::default() };
    assert!(matches!(
        p.a.set_limits(name, &net_and_cpu),
        Err(HypervisorError::Unsupported(m)) if m == NO_NET_LIMIT
    ));
    assert_eq!(p.a.limits(name).unwrap().cpu_quota_pct, None);
    assert_eq!(p.a.set_limits(name, &Limits::default().restoring()).unwrap(), Limits::default(), "clearing is fine");
}

pub fn stop_start_and_delete(p: &Pair, name: &str) {
    let running = p.a.provision(&p.spec(name)).unwrap();
    let stopped = p.a.stop(name).unwrap();
    assert_eq!((stopped.state, stopped.id), (PowerState::ShutOff, None));
    assert_eq!(p.a.stop(name).unwrap().state, PowerState::ShutOff, "stopping twice is harmless");
    assert!(matches!(p.a.set_vcpus(name, 2), Err(HypervisorError::Invalid(_))), "a live resize of a stopped VM");
    let started = p.a.start(name).unwrap();
    assert_eq!(started.state, PowerState::Running);
    assert_eq!(started.uuid, running.uuid);

    p.a.delete(name).unwrap();
    assert!(matches!(p.a.domain(name), Err(HypervisorError::NotFound { .. })));
    assert!(!p.a.domains().unwrap().iter().any(|d| d.name == name));
    p.a.delete(name).unwrap();
    // The overlay went with it: provisioning again starts from the template.
    assert_eq!(p.a.provision(&p.spec(name)).unwrap().state, PowerState::Running);
    assert!(matches!(p.a.domain("no-such-domain"), Err(HypervisorError::NotFound { .. })));
    assert!(matches!(p.a.domain("../etc"), Err(HypervisorError::Invalid(_))));
}

pub fn one_stats_call_reports_every_domain(p: &Pair, name: &str) {
    let mut spec = p.spec(name);
    spec.vcpus = 2;
    p.a.provision(&spec).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stats = p.a.stats().unwrap();
        let s = stats.iter().find(|s| s.name == name).expect("the new domain has stats");
        assert!(s.running);
        assert_eq!(s.vcpus, 2);
        assert!(s.balloon_current_kib >= 256 * 1024, "{s:?}");
        if s.cpu_time_ns > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no CPU time in 10 s: {s:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
