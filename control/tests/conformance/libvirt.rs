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

/// (name, URI) of the first two test hosts.
fn hosts() -> [(String, String); 2] {
    let list = env("TOLLGATE_TEST_LIBVIRT_HOSTS");
    let hosts: Vec<(String, String)> =
        list.split(',').filter_map(|h| h.split_once('=').map(|(n, u)| (n.to_string(), u.to_string()))).collect();
    assert!(hosts.len() >= 2, "TOLLGATE_TEST_LIBVIRT_HOSTS names fewer than two hosts: {list}");
    [hosts[0].clone(), hosts[1].clone()]
}

fn pair() -> Pair {
    let [(_, a_uri), (b_name, b_uri)] = hosts();
    let a = Libvirt::connect(&a_uri).unwrap_or_else(|e| panic!("libvirt at {a_uri}: {e}"));
    let virt_type = a.virt_type().to_string();
    let b = Libvirt::connect(&b_uri).unwrap_or_else(|e| panic!("libvirt at {b_uri}: {e}"));
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

struct Virsh {
    uris: [String; 2],
    virt_type: String,
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
        // The daemon's run folder holds its socket and `qemu/<domain>.pid`.
        let uri = self.uri(on_b);
        let socket = uri.split("socket=").nth(1).map(PathBuf::from).expect("a unix socket URI");
        let file = socket.parent()?.join("qemu").join(format!("{name}.pid"));
        std::fs::read_to_string(&file).ok()?.trim().parse().ok()
    }

    fn define_unmanaged(&self, spec: &DomainSpec) {
        // A domain without Tollgate's metadata and without a disk, defined and started by hand.
        let full = xml::domain(spec, &self.virt_type, "/nonexistent");
        let cut = |x: &str, open: &str, close: &str| -> String {
            match (x.find(open), x.find(close)) {
                (Some(a), Some(b)) => format!("{}{}", &x[..a], &x[b + close.len()..]),
                _ => x.to_string(),
            }
        };
        let bare = cut(&cut(&full, "<metadata>", "</metadata>"), "<disk ", "</disk>");
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
