//! The suite on real libvirt test hosts (`scripts/lib/vhosts.sh`, started by `scripts/test`):
//! `TOLLGATE_TEST_LIBVIRT_HOSTS=vh1=<uri>,vh2=<uri>` names them, `TOLLGATE_TEST_GUEST_*` the guest
//! kernel, initrd and command line in their pools. Without them these tests fail: a missing service is
//! a failure, not a skip.

use crate::{cases, Outside, Pair};
use std::path::PathBuf;
use std::process::Command;
use tollgate_control::hypervisor::libvirt::Libvirt;
use tollgate_control::hypervisor::{xml, DirectBoot, DomainSpec, Peer};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the libvirt suite needs test hosts (scripts/test starts them with scripts/lib/vhosts.sh)")
    })
}

/// (name, URI) of the first two test hosts' QEMU drivers.
pub fn hosts() -> [(String, String); 2] {
    let list = env("TOLLGATE_TEST_LIBVIRT_HOSTS");
    let hosts: Vec<(String, String)> =
        list.split(',').filter_map(|h| h.split_once('=').map(|(n, u)| (n.to_string(), u.to_string()))).collect();
    assert!(hosts.len() >= 2, "TOLLGATE_TEST_LIBVIRT_HOSTS names fewer than two hosts: {list}");
    [hosts[0].clone(), hosts[1].clone()]
}

fn pair() -> Pair {
    let [(_, a_uri), (b_name, b_uri)] = hosts();
    // TOLLGATE_TEST_VIRT_TYPE=qemu where the KVM device cannot run the test guest's kernel.
    let forced = std::env::var("TOLLGATE_TEST_VIRT_TYPE").ok().filter(|t| !t.is_empty());
    // Every test host has an empty bridge of this name for guest NICs (scripts/lib/vhosts.sh).
    let open = |uri: &str| {
        Libvirt::connect_as(uri, forced.as_deref())
            .and_then(|l| l.with_guest_bridge(Some("tgbr0".into())))
            .unwrap_or_else(|e| panic!("libvirt at {uri}: {e}"))
    };
    let a = open(&a_uri);
    let virt_type = a.virt_type().to_string();
    let b = open(&b_uri);
    Pair {
        a: Box::new(a),
        b: Box::new(b),
        b_peer: Peer { host: b_name.clone(), uri: format!("qemu+tcp://{b_name}/system") },
        image: std::env::var("TOLLGATE_TEST_IMAGE").unwrap_or_else(|_| "tiny.qcow2".into()),
        boot: Some(DirectBoot {
            kernel: env("TOLLGATE_TEST_GUEST_KERNEL"),
            initrd: env("TOLLGATE_TEST_GUEST_INITRD"),
            cmdline: env("TOLLGATE_TEST_GUEST_CMDLINE"),
        }),
        outside: Box::new(Virsh { uris: [a_uri, b_uri], virt_type }),
    }
}

/// `virsh` on the test hosts, for one of their drivers.
pub struct Virsh {
    pub uris: [String; 2],
    /// `kvm`, `qemu` or `lxc`.
    pub virt_type: String,
}

impl Virsh {
    fn uri(&self, on_b: bool) -> &str {
        &self.uris[usize::from(on_b)]
    }

    fn run(&self, on_b: bool, args: &[&str]) -> std::process::Output {
        Command::new("virsh").arg("-c").arg(self.uri(on_b)).args(args).output().expect("virsh runs")
    }
}

impl Outside for Virsh {
    fn virsh(&self, on_b: bool, args: &[&str]) -> Option<String> {
        let out = self.run(on_b, args);
        assert!(out.status.success(), "virsh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn qemu_pid(&self, on_b: bool, name: &str) -> Option<u32> {
        // The daemon's run folder holds its socket and `qemu/<domain>.pid` (`lxc/<domain>.pid`, the
        // container's controller).
        let uri = self.uri(on_b);
        let socket = uri.split("socket=").nth(1).map(PathBuf::from).expect("a unix socket URI");
        let driver = if self.virt_type == "lxc" { "lxc" } else { "qemu" };
        let file = socket.parent()?.join(driver).join(format!("{name}.pid"));
        std::fs::read_to_string(&file).ok()?.trim().parse().ok()
    }

    fn vcpu_unplug_gap(&self) -> Option<&'static str> {
        // Under emulation (no usable KVM) with libvirt 9.0 and QEMU 7.2, the guest is asked to release
        // a vCPU and libvirt never sees it go: the shrink times out and the VM keeps its vCPUs.
        (self.virt_type == "qemu").then_some("libvirt 9.0 + QEMU 7.2 under TCG never completes a vCPU unplug")
    }

    fn wait_guest_ready(&self, name: &str) {
        if self.virt_type == "lxc" {
            // A container's limits are the host kernel's: nothing in it has to cooperate.
            return;
        }
        // The guest prints its ready line on the serial console, which the daemon logs beside its run folder.
        let socket = self.uri(false).split("socket=").nth(1).map(PathBuf::from).expect("a unix socket URI");
        let host_dir = socket.ancestors().nth(3).expect("DIR/vhN/run/libvirt/libvirt-sock").to_path_buf();
        let log = host_dir.join("log").join("qemu").join(format!("{name}-serial.log"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("tollgate-guest ready") {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{name}'s guest did not come up in 120 s: {log:?}: {text}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    fn kernel_shapes_traffic(&self) -> bool {
        if self.virt_type == "lxc" {
            // Not asked of containers: their driver refuses network limits on a running one.
            return false;
        }
        // The test hosts share this machine's kernel. Its build configuration says what it has (a module
        // counts: libvirt's tc loads it); without one to read, assume a distribution kernel, which has all.
        let config = Command::new("sh")
            .args(["-c", "zcat /proc/config.gz 2>/dev/null || cat /boot/config-$(uname -r) 2>/dev/null"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if config.is_empty() {
            return true;
        }
        ["CONFIG_NET_SCH_HTB", "CONFIG_NET_SCH_SFQ", "CONFIG_NET_SCH_INGRESS", "CONFIG_NET_ACT_POLICE"]
            .iter()
            .all(|option| config.lines().any(|l| l == format!("{option}=y") || l == format!("{option}=m")))
    }

    fn define_unmanaged(&self, spec: &DomainSpec) {
        // A domain without Tollgate's metadata and without a disk, defined and started by hand. (A container
        // without a root file system of its own runs in the host's, here an idle `sleep`.)
        let cut = |x: &str, open: &str, close: &str| -> String {
            match (x.find(open), x.find(close)) {
                (Some(a), Some(b)) => format!("{}{}", &x[..a], &x[b + close.len()..]),
                _ => x.to_string(),
            }
        };
        let bare = if self.virt_type == "lxc" {
            let full = xml::container(spec, "/nonexistent", None);
            cut(&cut(&full, "<metadata>", "</metadata>"), "<filesystem ", "</filesystem>")
                .replace("<init>/sbin/init</init>", "<init>/bin/sleep</init>\n    <initarg>infinity</initarg>")
        } else {
            let full = xml::domain(spec, &self.virt_type, "/nonexistent", None);
            cut(&cut(&full, "<metadata>", "</metadata>"), "<disk ", "</disk>")
        };
        let file = std::env::temp_dir().join(format!("tollgate-unmanaged-{}.xml", spec.name));
        std::fs::write(&file, bare).unwrap();
        for args in [vec!["define", file.to_str().unwrap()], vec!["start", spec.name.as_str()]] {
            let out = self.run(false, &args);
            assert!(out.status.success(), "virsh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let _ = std::fs::remove_file(file);
    }
}

cases::suite!(pair);

/// The host agent reads the VMs' counters over libvirt's socket protocol, without the library
/// (`hypervisor::remote`): it must read what the library reads, and keep one connection for many readings.
#[test]
fn the_socket_protocol_reads_what_the_library_reads() {
    let [(_, uri), _] = hosts();
    socket_reads_as_library(pair(), &uri, 2);
}

/// Provisions a domain on A with `vcpus` and compares what the library and the socket protocol (at `uri`,
/// A's daemon) read of it.
pub fn socket_reads_as_library(p: Pair, uri: &str, vcpus: u32) {
    use tollgate_control::hypervisor::remote::RemoteStats;
    use tollgate_control::hypervisor::DomainStats;

    let name = format!("remote-stats-{}", std::process::id() % 10_000);
    p.clean(&name);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut spec = p.spec(&name);
        spec.vcpus = vcpus;
        p.a.provision(&spec).unwrap();
        let mut remote = RemoteStats::new(uri).unwrap();
        let mine = |all: Vec<DomainStats>| all.into_iter().find(|s| s.name == name).expect("the domain is read");
        let by_library = mine(p.a.stats().unwrap());
        let by_socket = mine(remote.stats().unwrap());
        let shape = |s: &DomainStats| (s.running, s.vcpus, s.balloon_current_kib);
        assert_eq!(shape(&by_socket), shape(&by_library));
        assert_eq!(shape(&by_socket), (true, vcpus, by_library.balloon_current_kib));
        assert!(by_socket.balloon_current_kib >= 256 * 1024, "{by_socket:?}");
        // Counters only grow, and the socket read after the library.
        assert!(by_socket.cpu_time_ns >= by_library.cpu_time_ns, "{by_socket:?} < {by_library:?}");
        assert!(by_socket.block_read_bytes >= by_library.block_read_bytes, "{by_socket:?} < {by_library:?}");
        for _ in 0..20 {
            assert_eq!(shape(&mine(remote.stats().unwrap())), shape(&by_library), "one connection, many readings");
        }
        p.a.stop(&name).unwrap();
        assert!(!mine(remote.stats().unwrap()).running, "a stopped domain reads as not running");
    }));
    p.clean(&name);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
