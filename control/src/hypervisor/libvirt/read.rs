//! Reading what libvirt reports: a domain's live XML, the host's capabilities and the pool's folder.

use crate::hypervisor::{xml, HvResult, HypervisorError, MemoryLayout};
use roxmltree::{Document, Node};

fn bad(what: &str) -> HypervisorError {
    HypervisorError::Backend(format!("libvirt reported XML without {what}"))
}

fn parse(text: &str) -> HvResult<Document<'_>> {
    Document::parse(text).map_err(|e| HypervisorError::Backend(format!("libvirt reported invalid XML: {e}")))
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|c| c.has_tag_name(name))
}

fn number(node: Node<'_, '_>) -> Option<u64> {
    node.text()?.trim().parse().ok()
}

/// A size element (`<memory unit='KiB'>…</memory>`) in MiB.
fn mib(node: Node<'_, '_>) -> Option<u64> {
    let value = number(node)?;
    let bytes_per = match node.attribute("unit").unwrap_or("KiB") {
        "b" | "bytes" => 1,
        "KB" => 1_000,
        "k" | "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "M" | "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        _ => return None,
    };
    Some(value.saturating_mul(bytes_per) >> 20)
}

/// A disk as the live XML describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveDisk {
    pub target: String,
    pub file: Option<String>,
    pub read_bytes_sec: Option<u64>,
    pub write_bytes_sec: Option<u64>,
    pub total_iops_sec: Option<u64>,
}

/// A NIC as the live XML describes it, with its bandwidth limits (kilobytes/s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveInterface {
    /// Its MAC address (else the host side's device, `vnet0`): what libvirt's interface calls take, for the
    /// running domain and its definition alike (the device exists only while it runs).
    pub device: String,
    pub inbound_average: Option<u64>,
    pub outbound_average: Option<u64>,
}

/// What Tollgate reads from a domain's live XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveXml {
    pub name: String,
    pub uuid: String,
    pub vm_id: Option<String>,
    /// A container (libvirt's LXC driver) rather than a virtual machine.
    pub container: bool,
    pub vcpus: u32,
    pub max_vcpus: u32,
    pub memory: MemoryLayout,
    /// The XML of each plugged memory module, in the order of `memory.modules_mib`, for unplugging.
    pub module_xml: Vec<String>,
    pub disks: Vec<LiveDisk>,
    pub interfaces: Vec<LiveInterface>,
}

impl LiveXml {
    pub fn parse(text: &str) -> HvResult<LiveXml> {
        let doc = parse(text)?;
        let root = doc.root_element();
        let text_of = |name: &str| child(root, name).and_then(|n| n.text()).map(str::to_string);
        let name = text_of("name").ok_or_else(|| bad("a name"))?;
        let uuid = text_of("uuid").unwrap_or_default();
        let vm_id = child(root, "metadata")
            .and_then(|m| m.children().find(|c| c.tag_name().namespace() == Some(xml::METADATA_NS)))
            .and_then(|vm| vm.attribute("id"))
            .map(str::to_string);
        let vcpu = child(root, "vcpu").ok_or_else(|| bad("vCPUs"))?;
        let max_vcpus = number(vcpu).ok_or_else(|| bad("a vCPU count"))? as u32;
        let vcpus = vcpu.attribute("current").and_then(|c| c.parse().ok()).unwrap_or(max_vcpus);

        let devices = child(root, "devices");
        let modules: Vec<Node> = devices
            .map(|d| {
                d.children().filter(|c| c.has_tag_name("memory") && c.attribute("model") == Some("dimm")).collect()
            })
            .unwrap_or_default();
        let mut modules_mib = Vec::with_capacity(modules.len());
        let mut module_xml = Vec::with_capacity(modules.len());
        for m in &modules {
            let size = child(*m, "target").and_then(|t| child(t, "size")).and_then(mib);
            modules_mib.push(size.ok_or_else(|| bad("a memory module's size"))?);
            module_xml.push(text[m.range()].to_string());
        }
        let total = child(root, "memory").and_then(mib).ok_or_else(|| bad("memory"))?;
        let container = root.attribute("type") == Some("lxc");
        let memory = if container {
            // A container's memory is a limit (currentMemory) under its maximum (memory); nothing plugs.
            let limit = child(root, "currentMemory").and_then(mib).unwrap_or(total);
            MemoryLayout { base_mib: limit, modules_mib: Vec::new(), max_mib: total, slots: 0 }
        } else {
            let (max_mib, slots) = match child(root, "maxMemory") {
                Some(m) => (mib(m).unwrap_or(total), m.attribute("slots").and_then(|s| s.parse().ok()).unwrap_or(0)),
                None => (total, 0),
            };
            MemoryLayout { base_mib: total.saturating_sub(modules_mib.iter().sum()), modules_mib, max_mib, slots }
        };

        let disks: Vec<LiveDisk> = devices
            .map(|d| {
                d.children()
                    .filter(|c| c.has_tag_name("disk") && c.attribute("device").unwrap_or("disk") == "disk")
                    .filter_map(|disk| {
                        let target = child(disk, "target")?.attribute("dev")?.to_string();
                        let file = child(disk, "source").and_then(|s| s.attribute("file")).map(str::to_string);
                        let tune = child(disk, "iotune");
                        let tuned = |name: &str| tune.and_then(|t| child(t, name)).and_then(number).filter(|v| *v > 0);
                        Some(LiveDisk {
                            target,
                            file,
                            read_bytes_sec: tuned("read_bytes_sec"),
                            write_bytes_sec: tuned("write_bytes_sec"),
                            total_iops_sec: tuned("total_iops_sec"),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        // A container's root file system image counts as its disk, named by where it is mounted.
        let mut disks = disks;
        if let Some(d) = devices {
            disks.extend(
                d.children()
                    .filter(|c| c.has_tag_name("filesystem") && c.attribute("type") == Some("file"))
                    .filter_map(|fs| {
                        Some(LiveDisk {
                            target: child(fs, "target")?.attribute("dir")?.to_string(),
                            file: Some(child(fs, "source")?.attribute("file")?.to_string()),
                            read_bytes_sec: None,
                            write_bytes_sec: None,
                            total_iops_sec: None,
                        })
                    }),
            );
        }
        let interfaces = devices
            .map(|d| {
                d.children()
                    .filter(|c| c.has_tag_name("interface"))
                    .filter_map(|nic| {
                        let target = child(nic, "target").and_then(|t| t.attribute("dev"));
                        let mac = child(nic, "mac").and_then(|m| m.attribute("address"));
                        let bandwidth = child(nic, "bandwidth");
                        let average = |way: &str| {
                            let node = bandwidth.and_then(|b| child(b, way))?;
                            node.attribute("average")?.parse::<u64>().ok().filter(|v| *v > 0)
                        };
                        Some(LiveInterface {
                            device: mac.or(target)?.to_string(),
                            inbound_average: average("inbound"),
                            outbound_average: average("outbound"),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(LiveXml { name, uuid, vm_id, container, vcpus, max_vcpus, memory, module_xml, disks, interfaces })
    }
}

/// `kvm` when the host offers it for x86_64 guests, else `qemu` (emulation).
pub fn best_domain_type(capabilities: &str) -> HvResult<String> {
    let doc = parse(capabilities)?;
    let types: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("domain") && n.parent().is_some_and(|p| p.has_tag_name("arch")))
        .filter_map(|n| n.attribute("type"))
        .collect();
    if types.contains(&"kvm") {
        Ok("kvm".into())
    } else if types.contains(&"qemu") {
        Ok("qemu".into())
    } else {
        Err(HypervisorError::Unsupported(format!("no QEMU or KVM guests on this host (offers {types:?})")))
    }
}

/// A volume's format (`qcow2`, `raw`) from its XML.
pub fn volume_format(volume_xml: &str) -> Option<String> {
    let doc = parse(volume_xml).ok()?;
    let target = doc.root_element().children().find(|c| c.has_tag_name("target"))?;
    child(target, "format")?.attribute("type").map(str::to_string)
}

/// The folder of a directory storage pool.
pub fn pool_path(pool_xml: &str) -> HvResult<String> {
    let doc = parse(pool_xml)?;
    doc.descendants()
        .find(|n| n.has_tag_name("path") && n.parent().is_some_and(|p| p.has_tag_name("target")))
        .and_then(|n| n.text())
        .map(|p| p.trim_end_matches('/').to_string())
        .ok_or_else(|| bad("a pool folder"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = r#"<domain type='kvm' id='3'>
  <name>web-1</name>
  <uuid>0d2c9a4e-0000-4000-8000-000000000001</uuid>
  <metadata>
    <tollgate:vm xmlns:tollgate="https://tollgate.dev/xmlns/vm/1" id="vm-7"/>
  </metadata>
  <maxMemory slots='4' unit='KiB'>2097152</maxMemory>
  <memory unit='KiB'>917504</memory>
  <vcpu placement='static' current='2'>4</vcpu>
  <devices>
    <disk type='file' device='disk'>
      <source file='/var/lib/libvirt/images/web-1.qcow2'/>
      <target dev='vda' bus='virtio'/>
      <iotune><read_bytes_sec>1048576</read_bytes_sec><total_iops_sec>0</total_iops_sec></iotune>
    </disk>
    <disk type='file' device='cdrom'><target dev='sda'/></disk>
    <memory model='dimm'><target><size unit='KiB'>262144</size><node>0</node></target><alias name='dimm0'/></memory>
    <memory model='dimm'><target><size unit='KiB'>131072</size><node>0</node></target><alias name='dimm1'/></memory>
    <interface type='bridge'>
      <mac address='52:54:00:aa:bb:cc'/><source bridge='br0'/><target dev='vnet3'/>
      <bandwidth><inbound average='12500'/><outbound average='0'/></bandwidth>
    </interface>
    <interface type='bridge'><mac address='52:54:00:aa:bb:cd'/><source bridge='br0'/></interface>
  </devices>
</domain>"#;

    #[test]
    fn the_live_xml_gives_sizes_modules_and_limits() {
        let live = LiveXml::parse(LIVE).expect("live XML parses");
        assert_eq!(live.vm_id.as_deref(), Some("vm-7"));
        assert_eq!((live.vcpus, live.max_vcpus), (2, 4));
        assert_eq!(live.memory, MemoryLayout { base_mib: 512, modules_mib: vec![256, 128], max_mib: 2048, slots: 4 });
        assert!(live.module_xml[1].contains("dimm1") && live.module_xml[1].starts_with("<memory"));
        assert_eq!(live.disks.len(), 1);
        assert_eq!(live.disks[0].read_bytes_sec, Some(1 << 20));
        assert_eq!(live.disks[0].total_iops_sec, None);
        let nics: Vec<_> =
            live.interfaces.iter().map(|i| (i.device.as_str(), i.inbound_average, i.outbound_average)).collect();
        assert_eq!(nics, [("52:54:00:aa:bb:cc", Some(12_500), None), ("52:54:00:aa:bb:cd", None, None)]);
    }

    #[test]
    fn a_container_has_a_memory_limit_and_its_root_image_as_disk() {
        let x = r#"<domain type='lxc' id='1554'><name>ct1</name><memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>262144</currentMemory><vcpu placement='static'>2</vcpu>
  <devices>
    <filesystem type='file' accessmode='passthrough'><driver type='loop' format='raw'/>
      <source file='/var/lib/libvirt/images/ct1.img'/><target dir='/'/></filesystem>
    <filesystem type='mount'><source dir='/srv'/><target dir='/srv'/></filesystem>
    <interface type='bridge'><mac address='52:54:00:22:3c:ce'/><source bridge='tgbr0'/><target dev='vnet0'/></interface>
  </devices></domain>"#;
        let live = LiveXml::parse(x).expect("parses");
        assert!(live.container);
        assert_eq!((live.vcpus, live.max_vcpus), (2, 2));
        assert_eq!(live.memory, MemoryLayout { base_mib: 256, modules_mib: vec![], max_mib: 1024, slots: 0 });
        assert_eq!(live.disks.len(), 1);
        assert_eq!(
            (live.disks[0].target.as_str(), live.disks[0].file.as_deref()),
            ("/", Some("/var/lib/libvirt/images/ct1.img"))
        );
        assert_eq!(live.interfaces[0].device, "52:54:00:22:3c:ce");
        assert!(!LiveXml::parse(LIVE).expect("parses").container);
    }

    #[test]
    fn a_volume_says_its_format() {
        let raw =
            "<volume type='file'><name>r.img</name><target><path>/p/r.img</path><format type='raw'/></target></volume>";
        assert_eq!(volume_format(raw).as_deref(), Some("raw"));
        let overlay = "<volume><target><format type='qcow2'/></target>\
                       <backingStore><format type='raw'/></backingStore></volume>";
        assert_eq!(volume_format(overlay).as_deref(), Some("qcow2"));
        assert_eq!(volume_format("<volume/>"), None);
    }

    #[test]
    fn a_domain_without_metadata_is_unmanaged() {
        let live =
            LiveXml::parse("<domain><name>x</name><memory>1048576</memory><vcpu>1</vcpu></domain>").expect("parses");
        assert_eq!(live.vm_id, None);
        assert_eq!(live.memory.max_mib, 1024);
        assert!(LiveXml::parse("<domain/>").is_err());
    }
}
