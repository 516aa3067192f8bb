//! The CMDB: configuration items (regions, data centres, clusters, hosts, VMs, business services), their
//! typed relations, and the impact walk that answers "what is affected if this fails?".
//!
//! Containment is structural (`parent_id`: region ⊃ data centre ⊃ cluster ⊃ host ⊃ VM) and a VM names its
//! owning service; everything else is an explicit relation.

mod impact;
mod store;

pub(crate) use impact::impact_from;
pub use impact::{impact, impact_in, Affected, CiRef, Impact};
pub use store::*;

use crate::error::ValidationError;
use crate::text::{Description, Name};
use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        // The schema derive cannot read a rename given through the macro; every spelling is the variant in
        // kebab case, which this names for it (the API test of the OpenAPI document checks they agree).
        #[serde(rename_all = "kebab-case")]
        pub enum $name { $($(#[$vm])* #[serde(rename = $text)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }

            /// The accepted spellings, for error messages.
            pub fn expected() -> String {
                [$($text),+].join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// The kind of a configuration item.
    CiKind {
        Region => "region",
        Datacenter => "datacenter",
        Cluster => "cluster",
        Host => "host",
        Vm => "vm",
        Service => "service",
    }
);

string_enum!(
    /// How much the business suffers when the item fails; feeds change risk.
    Criticality { Low => "low", Medium => "medium", High => "high", Critical => "critical" }
);

string_enum!(
    /// The hypervisor a host runs.
    Hypervisor { Kvm => "kvm", Qemu => "qemu", Xen => "xen", Lxc => "lxc", Simulated => "simulated" }
);

/// What a host's hypervisor does. Its driver refuses the rest with a clear error before it changes anything,
/// and a change that asks for it is refused when it is requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// vCPUs plugged and unplugged while the domain runs.
    pub live_vcpus: bool,
    /// Memory grows by plugging modules and shrinks no lower than the domain booted with; without them
    /// it is a limit that moves anywhere up to its maximum while the domain runs.
    pub memory_modules: bool,
    /// Disk I/O limits (bytes and IOPS per second).
    pub disk_limits: bool,
    /// Network limits on a running domain's NICs (where the host's kernel can shape traffic).
    pub net_limits: bool,
    /// Moving a domain to another host, live or cold.
    pub migration: bool,
}

impl Capabilities {
    /// A virtual machine hypervisor (QEMU/KVM, the simulator): everything.
    pub const MACHINES: Capabilities =
        Capabilities { live_vcpus: true, memory_modules: true, disk_limits: true, net_limits: true, migration: true };
    /// Containers under libvirt's LXC driver: memory and CPU limits move live; the rest does not exist there.
    pub const CONTAINERS: Capabilities = Capabilities {
        live_vcpus: false,
        memory_modules: false,
        disk_limits: false,
        net_limits: false,
        migration: false,
    };
}

impl Hypervisor {
    /// Whether its hosts run containers (libvirt's LXC) rather than virtual machines.
    pub fn runs_containers(self) -> bool {
        self == Hypervisor::Lxc
    }

    /// What hosts of this hypervisor do.
    pub fn capabilities(self) -> Capabilities {
        if self.runs_containers() {
            Capabilities::CONTAINERS
        } else {
            Capabilities::MACHINES
        }
    }
}

string_enum!(
    /// A typed edge between two items. `runs-on` and `depends-on` point from the dependent to what it
    /// needs; `member-of` points from a member to the group it makes up.
    RelationKind { RunsOn => "runs-on", DependsOn => "depends-on", MemberOf => "member-of" }
);

impl CiKind {
    /// The kind a CI's `parent_id` must name, and whether a parent is required.
    pub fn parent_rule(self) -> Option<(CiKind, bool)> {
        match self {
            CiKind::Region | CiKind::Service => None,
            CiKind::Datacenter => Some((CiKind::Region, true)),
            CiKind::Cluster => Some((CiKind::Datacenter, true)),
            CiKind::Host => Some((CiKind::Cluster, true)),
            // A VM that is planned but not yet placed has no host.
            CiKind::Vm => Some((CiKind::Host, false)),
        }
    }

    /// The lifecycle states an item of this kind can be in; the first is the default.
    pub fn states(self) -> &'static [&'static str] {
        match self {
            CiKind::Host => &["active", "maintenance", "down", "retired"],
            CiKind::Vm => &["planned", "running", "stopped", "error", "retired"],
            _ => &["active", "retired"],
        }
    }

    fn has_sizing(self) -> bool {
        matches!(self, CiKind::Host | CiKind::Vm)
    }
}

/// CPU, memory and disk: a host's capacity or a VM's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Sizing {
    pub vcpus: i64,
    pub memory_mib: i64,
    pub disk_gib: i64,
}

/// A configuration item as submitted, before checks: what the API's body carries.
#[derive(Debug, Clone, Default)]
pub struct CiDraft {
    pub kind: String,
    pub name: String,
    pub description: Option<String>,
    pub parent_id: Option<String>,
    pub service_id: Option<String>,
    pub state: Option<String>,
    pub criticality: Option<String>,
    pub hypervisor: Option<String>,
    pub agent_id: Option<String>,
    pub vcpus: Option<i64>,
    pub memory_mib: Option<i64>,
    pub disk_gib: Option<i64>,
}

/// A configuration item that passed every check that needs no database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiSpec {
    pub kind: CiKind,
    pub name: Name,
    pub description: Description,
    pub parent_id: Option<String>,
    pub service_id: Option<String>,
    pub state: &'static str,
    pub criticality: Criticality,
    pub hypervisor: Option<Hypervisor>,
    pub agent_id: Option<Name>,
    pub sizing: Option<Sizing>,
}

fn forbid<T>(kind: CiKind, field: &str, value: &Option<T>) -> Result<(), ValidationError> {
    match value {
        Some(_) => Err(ValidationError::new(field, format!("does not apply to a {kind}"))),
        None => Ok(()),
    }
}

fn bounded(field: &str, value: Option<i64>, max: i64) -> Result<i64, ValidationError> {
    match value {
        None => Err(ValidationError::new(field, "is required")),
        Some(v) if (1..=max).contains(&v) => Ok(v),
        Some(v) => Err(ValidationError::new(field, format!("must be between 1 and {max}, got {v}"))),
    }
}

impl TryFrom<CiDraft> for CiSpec {
    type Error = ValidationError;

    fn try_from(d: CiDraft) -> Result<Self, Self::Error> {
        let kind = CiKind::parse(&d.kind)
            .ok_or_else(|| ValidationError::new("kind", format!("must be one of {}", CiKind::expected())))?;
        let name = Name::parse("name", &d.name)?;
        let description = Description::parse("description", d.description.as_deref().unwrap_or(""))?;
        match kind.parent_rule() {
            None => forbid(kind, "parent_id", &d.parent_id)?,
            Some((parent_kind, true)) if d.parent_id.is_none() => {
                return Err(ValidationError::new("parent_id", format!("a {kind} needs its {parent_kind}")));
            }
            Some(_) => {}
        }
        if kind != CiKind::Vm {
            forbid(kind, "service_id", &d.service_id)?;
        }
        let states = kind.states();
        let state = match d.state.as_deref() {
            None => states[0],
            Some(s) => states
                .iter()
                .copied()
                .find(|known| *known == s)
                .ok_or_else(|| ValidationError::new("state", format!("a {kind} can be {}", states.join(", "))))?,
        };
        let criticality = match d.criticality.as_deref() {
            None => Criticality::Medium,
            Some(c) => Criticality::parse(c).ok_or_else(|| {
                ValidationError::new("criticality", format!("must be one of {}", Criticality::expected()))
            })?,
        };
        let (hypervisor, agent_id) = if kind == CiKind::Host {
            let h = d.hypervisor.as_deref().ok_or_else(|| ValidationError::new("hypervisor", "is required"))?;
            let h = Hypervisor::parse(h).ok_or_else(|| {
                ValidationError::new("hypervisor", format!("must be one of {}", Hypervisor::expected()))
            })?;
            let agent = d.agent_id.as_deref().map(|a| Name::parse("agent_id", a)).transpose()?;
            (Some(h), agent)
        } else {
            forbid(kind, "hypervisor", &d.hypervisor)?;
            forbid(kind, "agent_id", &d.agent_id)?;
            (None, None)
        };
        let sizing = if kind.has_sizing() {
            Some(Sizing {
                vcpus: bounded("vcpus", d.vcpus, 4096)?,
                memory_mib: bounded("memory_mib", d.memory_mib, 64 * 1024 * 1024)?,
                disk_gib: bounded("disk_gib", d.disk_gib, 1024 * 1024)?,
            })
        } else {
            forbid(kind, "vcpus", &d.vcpus)?;
            forbid(kind, "memory_mib", &d.memory_mib)?;
            forbid(kind, "disk_gib", &d.disk_gib)?;
            None
        };
        Ok(CiSpec {
            kind,
            name,
            description,
            parent_id: d.parent_id,
            service_id: d.service_id,
            state,
            criticality,
            hypervisor,
            agent_id,
            sizing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> CiDraft {
        CiDraft {
            kind: "host".into(),
            name: "hv-001".into(),
            parent_id: Some("c1".into()),
            hypervisor: Some("kvm".into()),
            vcpus: Some(64),
            memory_mib: Some(262_144),
            disk_gib: Some(4000),
            ..CiDraft::default()
        }
    }

    #[test]
    fn a_complete_host_parses_with_defaults() {
        let spec = CiSpec::try_from(host()).expect("valid host");
        assert_eq!(spec.state, "active");
        assert_eq!(spec.criticality, Criticality::Medium);
        assert_eq!(spec.hypervisor, Some(Hypervisor::Kvm));
    }

    #[test]
    fn each_kind_rejects_fields_that_do_not_apply_naming_the_field() {
        let err = CiSpec::try_from(CiDraft {
            kind: "region".into(),
            name: "eu".into(),
            vcpus: Some(2),
            ..Default::default()
        })
        .expect_err("regions have no size");
        assert_eq!(err.field, "vcpus");
        let err =
            CiSpec::try_from(CiDraft { hypervisor: Some("vmware".into()), ..host() }).expect_err("bad hypervisor");
        assert_eq!(err.field, "hypervisor");
        let err = CiSpec::try_from(CiDraft { parent_id: None, ..host() }).expect_err("host needs cluster");
        assert_eq!(err.field, "parent_id");
        let err = CiSpec::try_from(CiDraft { vcpus: Some(0), ..host() }).expect_err("zero cpus");
        assert_eq!(err.field, "vcpus");
        let err = CiSpec::try_from(CiDraft { state: Some("planned".into()), ..host() }).expect_err("vm state on host");
        assert_eq!(err.field, "state");
    }
}
