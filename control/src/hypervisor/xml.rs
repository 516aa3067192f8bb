//! The libvirt XML Tollgate writes: a domain with headroom for live growth, its disk overlay, and the
//! memory modules plugged later. Pure functions, so they are tested without a daemon.

use super::DomainSpec;
use std::fmt::Write;

/// The XML namespace of the metadata that marks a domain as Tollgate's.
pub const METADATA_NS: &str = "https://tollgate.dev/xmlns/vm/1";
/// The element name (and prefix) of that metadata.
pub const METADATA_KEY: &str = "tollgate";

/// Escapes text for an XML attribute or element.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The metadata element that carries the VM id (written with [`METADATA_NS`] and [`METADATA_KEY`]).
pub fn metadata(vm_id: &str) -> String {
    format!("<vm id=\"{}\"/>", escape(vm_id))
}

/// The domain definition. `virt_type` is `kvm`, or `qemu` where there is no KVM; `disk_path` is the
/// overlay volume's path on the host.
/// One virtio NIC on `bridge` when given: what network limits shape.
pub fn domain(spec: &DomainSpec, virt_type: &str, disk_path: &str, bridge: Option<&str>) -> String {
    let mut x = header(spec, virt_type);
    if spec.memory_slots > 0 {
        let _ =
            writeln!(x, "  <maxMemory slots='{}' unit='MiB'>{}</maxMemory>", spec.memory_slots, spec.max_memory_mib);
    }
    let _ = write!(
        x,
        "  <memory unit='MiB'>{mem}</memory>\n  <currentMemory unit='MiB'>{mem}</currentMemory>\n  \
         <vcpu placement='static' current='{vcpus}'>{max}</vcpu>\n  <os>\n    \
         <type arch='x86_64' machine='pc'>hvm</type>\n",
        mem = spec.memory_mib,
        vcpus = spec.vcpus,
        max = spec.max_vcpus,
    );
    match &spec.boot {
        Some(boot) => {
            let _ = write!(
                x,
                "    <kernel>{}</kernel>\n    <initrd>{}</initrd>\n    <cmdline>{}</cmdline>\n",
                escape(&boot.kernel),
                escape(&boot.initrd),
                escape(&boot.cmdline)
            );
        }
        None => x.push_str("    <boot dev='hd'/>\n"),
    }
    // A NUMA cell is what memory modules plug into; a named CPU model keeps hosts interchangeable for
    // migration. The serial console is also logged, for boot diagnostics.
    let _ = write!(
        x,
        "  </os>\n  <features><acpi/><apic/></features>\n  <cpu mode='custom' match='exact' check='none'>\n    \
         <model fallback='forbid'>qemu64</model>\n    <numa>\n      \
         <cell id='0' cpus='0-{last}' memory='{mem}' unit='MiB'/>\n    </numa>\n  </cpu>\n  \
         <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n  <on_crash>destroy</on_crash>\n  \
         <devices>\n    <disk type='file' device='disk'>\n      \
         <driver name='qemu' type='qcow2' cache='none' discard='unmap'/>\n      \
         <source file='{disk}'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n    \
         <serial type='pty'>\n      <log file='/var/log/libvirt/qemu/{name}-serial.log' append='off'/>\n    </serial>\n    \
         <console type='pty'/>\n    <memballoon model='virtio'/>\n",
        last = spec.max_vcpus - 1,
        mem = spec.memory_mib,
        disk = escape(disk_path),
        name = escape(&spec.name),
    );
    if let Some(bridge) = bridge {
        nic(&mut x, bridge);
    }
    x.push_str("  </devices>\n</domain>\n");
    x
}

/// What a container runs as its first process, from its root file system.
pub const CONTAINER_INIT: &str = "/sbin/init";

/// A container's definition (libvirt's LXC driver): its root file system is `rootfs_path`, a raw image
/// of one file system that libvirt loop-mounts; memory is a limit of `memory_mib` that can move up to
/// `max_memory_mib` while it runs. One NIC on `bridge` when given.
pub fn container(spec: &DomainSpec, rootfs_path: &str, bridge: Option<&str>) -> String {
    let mut x = header(spec, "lxc");
    let _ = write!(
        x,
        "  <memory unit='MiB'>{max}</memory>\n  <currentMemory unit='MiB'>{mem}</currentMemory>\n  \
         <vcpu placement='static'>{vcpus}</vcpu>\n  <os>\n    <type>exe</type>\n    <init>{init}</init>\n  </os>\n  \
         <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n  <on_crash>destroy</on_crash>\n  \
         <devices>\n    <filesystem type='file' accessmode='passthrough'>\n      \
         <driver type='loop' format='raw'/>\n      <source file='{root}'/>\n      <target dir='/'/>\n    \
         </filesystem>\n",
        max = spec.max_memory_mib,
        mem = spec.memory_mib,
        vcpus = spec.vcpus,
        init = CONTAINER_INIT,
        root = escape(rootfs_path),
    );
    if let Some(bridge) = bridge {
        nic(&mut x, bridge);
    }
    x.push_str("    <console type='pty'/>\n  </devices>\n</domain>\n");
    x
}

/// A definition's opening: its type, name, and the metadata with the VM id that makes it Tollgate's.
fn header(spec: &DomainSpec, domain_type: &str) -> String {
    let mut x = String::with_capacity(2048);
    let _ = write!(
        x,
        "<domain type='{domain_type}'>\n  <name>{name}</name>\n  <metadata>\n    \
         <{key}:vm xmlns:{key}='{ns}' id='{vm_id}'/>\n  </metadata>\n",
        name = escape(&spec.name),
        key = METADATA_KEY,
        ns = METADATA_NS,
        vm_id = escape(&spec.vm_id),
    );
    x
}

fn nic(x: &mut String, bridge: &str) {
    let _ = write!(
        x,
        "    <interface type='bridge'>\n      <source bridge='{}'/>\n      <model type='virtio'/>\n    </interface>\n",
        escape(bridge)
    );
}

/// The MAC addresses of a domain's NICs, from its XML: what per-NIC statistics are asked by.
pub fn nic_macs(domain_xml: &str) -> Vec<String> {
    let Ok(doc) = roxmltree::Document::parse(domain_xml) else { return Vec::new() };
    doc.descendants()
        .filter(|n| n.has_tag_name("interface") && n.parent().is_some_and(|p| p.has_tag_name("devices")))
        .filter_map(|nic| nic.children().find(|c| c.has_tag_name("mac"))?.attribute("address").map(str::to_string))
        .collect()
}

/// A memory module of `size_mib` for NUMA cell 0.
pub fn memory_module(size_mib: u64) -> String {
    format!("<memory model='dimm'><target><size unit='MiB'>{size_mib}</size><node>0</node></target></memory>")
}

/// A qcow2 volume of `capacity_bytes`, overlaying `backing` (a path) when given.
pub fn volume(name: &str, capacity_bytes: u64, backing: Option<&str>) -> String {
    volume_of(name, capacity_bytes, "qcow2", backing)
}

/// A raw volume of `capacity_bytes`, allocated as it is written: a container's copy of its image.
pub fn raw_volume(name: &str, capacity_bytes: u64) -> String {
    volume_of(name, capacity_bytes, "raw", None)
}

fn volume_of(name: &str, capacity_bytes: u64, format: &str, backing: Option<&str>) -> String {
    let mut x = format!(
        "<volume><name>{}</name><capacity unit='bytes'>{capacity_bytes}</capacity>{allocation}\
         <target><format type='{format}'/></target>",
        escape(name),
        // A raw copy is sparse only when asked; qcow2 is sparse by nature.
        allocation = if format == "raw" { "<allocation>0</allocation>" } else { "" },
    );
    if let Some(path) = backing {
        let _ = write!(x, "<backingStore><path>{}</path><format type='qcow2'/></backingStore>", escape(path));
    }
    x.push_str("</volume>");
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::DirectBoot;

    fn spec() -> DomainSpec {
        DomainSpec {
            name: "web-1".into(),
            vm_id: "vm-<1>".into(),
            vcpus: 2,
            max_vcpus: 8,
            memory_mib: 512,
            max_memory_mib: 4096,
            memory_slots: 4,
            image: "tiny.qcow2".into(),
            disk_gib: 1,
            boot: Some(DirectBoot { kernel: "/k".into(), initrd: "/i".into(), cmdline: "a=1 & b".into() }),
        }
    }

    #[test]
    fn the_domain_has_headroom_for_live_growth() {
        let x = domain(&spec(), "kvm", "/pool/web-1.qcow2", None);
        assert!(x.contains("<vcpu placement='static' current='2'>8</vcpu>"), "{x}");
        assert!(x.contains("<maxMemory slots='4' unit='MiB'>4096</maxMemory>"), "{x}");
        assert!(x.contains("<cell id='0' cpus='0-7' memory='512' unit='MiB'/>"), "{x}");
        assert!(x.contains("id='vm-&lt;1&gt;'"), "{x}");
        assert!(x.contains("<cmdline>a=1 &amp; b</cmdline>"), "{x}");
        assert!(x.contains("<source file='/pool/web-1.qcow2'/>"), "{x}");
        assert!(!x.contains("<interface"), "no NIC without a bridge: {x}");
        let x = domain(&spec(), "kvm", "/pool/web-1.qcow2", Some("br'0"));
        assert!(x.contains("<interface type='bridge'>\n      <source bridge='br&apos;0'/>"), "{x}");
        assert!(x.ends_with("</interface>\n  </devices>\n</domain>\n"), "{x}");
    }

    #[test]
    fn a_container_boots_its_init_from_its_own_root_file_system() {
        let x = container(&spec(), "/pool/web-1.img", Some("br0"));
        assert!(x.starts_with("<domain type='lxc'>"), "{x}");
        assert!(x.contains("<memory unit='MiB'>4096</memory>\n  <currentMemory unit='MiB'>512</currentMemory>"), "{x}");
        assert!(x.contains("<vcpu placement='static'>2</vcpu>"), "{x}");
        assert!(x.contains("<init>/sbin/init</init>"), "{x}");
        assert!(x.contains("<source file='/pool/web-1.img'/>\n      <target dir='/'/>"), "{x}");
        assert!(x.contains("id='vm-&lt;1&gt;'"), "{x}");
        assert!(x.contains("<source bridge='br0'/>"), "{x}");
        roxmltree::Document::parse(&x).expect("well-formed XML");
        assert!(!container(&spec(), "/r", None).contains("<interface"));
    }

    #[test]
    fn nics_are_found_by_their_mac() {
        let x = "<domain><devices><interface type='bridge'><mac address='52:54:00:aa:bb:cc'/></interface>\
                 <interface type='network'><mac address='52:54:00:00:00:01'/></interface></devices>\
                 <metadata><interface><mac address='no'/></interface></metadata></domain>";
        assert_eq!(nic_macs(x), vec!["52:54:00:aa:bb:cc", "52:54:00:00:00:01"]);
        assert!(nic_macs("<not xml").is_empty());
    }

    #[test]
    fn an_overlay_names_its_backing_image() {
        let x = volume("web-1.qcow2", 1 << 30, Some("/pool/tiny.qcow2"));
        assert!(x.contains("<capacity unit='bytes'>1073741824</capacity>"));
        assert!(x.contains("<backingStore><path>/pool/tiny.qcow2</path>"));
        assert!(!volume("a", 1, None).contains("backingStore"));
        assert!(raw_volume("c.img", 1 << 30).contains("<format type='raw'/>"));
    }
}
