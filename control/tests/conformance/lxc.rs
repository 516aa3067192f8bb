//! The suite on the same test hosts' container driver (libvirt's LXC, in the same daemons): containers
//! boot a root file system image (`TOLLGATE_TEST_CONTAINER_IMAGE`, a raw image in each host's pool that
//! `scripts/test` puts there). What LXC cannot do, the cases expect refused.

use crate::libvirt::{hosts, socket_reads_as_library, Virsh};
use crate::{cases, Pair};
use tollgate_control::hypervisor::libvirt::Libvirt;
use tollgate_control::hypervisor::Peer;

/// A host's container driver: its QEMU URI with the `lxc` driver.
fn lxc_uri(qemu_uri: &str) -> String {
    qemu_uri.replacen("qemu", "lxc", 1)
}

fn pair() -> Pair {
    let [(_, a_uri), (b_name, b_uri)] = hosts();
    let (a_uri, b_uri) = (lxc_uri(&a_uri), lxc_uri(&b_uri));
    let open = |uri: &str| {
        Libvirt::connect(uri)
            .and_then(|l| l.with_guest_bridge(Some("tgbr0".into())))
            .unwrap_or_else(|e| panic!("libvirt's LXC driver at {uri}: {e}"))
    };
    let (a, b) = (open(&a_uri), open(&b_uri));
    assert_eq!(a.virt_type(), "lxc");
    Pair {
        a: Box::new(a),
        b: Box::new(b),
        b_peer: Peer { host: b_name.clone(), uri: format!("lxc+tcp://{b_name}/system") },
        image: std::env::var("TOLLGATE_TEST_CONTAINER_IMAGE").unwrap_or_else(|_| "tiny-root.img".into()),
        boot: None,
        outside: Box::new(Virsh { uris: [a_uri, b_uri], virt_type: "lxc".into() }),
    }
}

cases::suite!(pair);

/// The agent reads containers' counters over the socket too, one domain at a time (LXC has no bulk call).
#[test]
fn the_socket_protocol_reads_what_the_library_reads() {
    let [(_, uri), _] = hosts();
    socket_reads_as_library(pair(), &lxc_uri(&uri), 1);
}

/// A container image must be a raw root file system: a VM's qcow2 disk is refused before anything is made.
#[test]
fn a_vm_disk_image_is_refused_on_a_container_host() {
    use tollgate_control::hypervisor::HypervisorError;
    let p = pair();
    let name = format!("wrong-image-{}", std::process::id() % 10_000);
    let mut spec = p.spec(&name);
    spec.image = "tiny.qcow2".into();
    match p.a.provision(&spec) {
        Err(HypervisorError::Invalid(m)) => assert!(m.contains("raw image of a root file system"), "{m}"),
        other => panic!("a qcow2 image was taken for a container: {other:?}"),
    }
    assert!(p.a.domains().unwrap().iter().all(|d| d.name != name), "nothing is defined");
}
