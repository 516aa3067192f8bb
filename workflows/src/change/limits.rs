//! Limits on a running VM: what a `set_quota` operation asks for, what a driver applies and reads back.

use serde::{Deserialize, Serialize};

/// The largest network limit: libvirt takes NIC rates as 32-bit kilobytes per second (125 a megabit).
pub const NET_MBIT_MAX: u64 = u32::MAX as u64 / 125;

/// Limits on a running VM. Read back, `None` is "no limit"; in a change, `None` leaves a limit as it is and
/// `Some(0)` removes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmLimits {
    /// Each vCPU may use at most this percentage of one host CPU.
    pub cpu_quota_pct: Option<u32>,
    pub disk_read_bytes_per_sec: Option<u64>,
    pub disk_write_bytes_per_sec: Option<u64>,
    pub disk_iops: Option<u64>,
    pub net_mbit_per_sec: Option<u64>,
}

impl VmLimits {
    /// Applies `change` over `self`: fields it names replace (0 clears), the rest stay.
    pub fn merged(&self, change: &VmLimits) -> VmLimits {
        fn pick<T: Copy + PartialEq + Default>(now: Option<T>, change: Option<T>) -> Option<T> {
            match change {
                Some(v) if v == T::default() => None,
                Some(v) => Some(v),
                None => now,
            }
        }
        VmLimits {
            cpu_quota_pct: pick(self.cpu_quota_pct, change.cpu_quota_pct),
            disk_read_bytes_per_sec: pick(self.disk_read_bytes_per_sec, change.disk_read_bytes_per_sec),
            disk_write_bytes_per_sec: pick(self.disk_write_bytes_per_sec, change.disk_write_bytes_per_sec),
            disk_iops: pick(self.disk_iops, change.disk_iops),
            net_mbit_per_sec: pick(self.net_mbit_per_sec, change.net_mbit_per_sec),
        }
    }

    /// The change that puts `self` back in place over any other limits: every field named, 0 for none.
    pub fn restoring(&self) -> VmLimits {
        VmLimits {
            cpu_quota_pct: Some(self.cpu_quota_pct.unwrap_or(0)),
            disk_read_bytes_per_sec: Some(self.disk_read_bytes_per_sec.unwrap_or(0)),
            disk_write_bytes_per_sec: Some(self.disk_write_bytes_per_sec.unwrap_or(0)),
            disk_iops: Some(self.disk_iops.unwrap_or(0)),
            net_mbit_per_sec: Some(self.net_mbit_per_sec.unwrap_or(0)),
        }
    }

    /// Checks the values as every driver takes them: the field at fault and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        match (self.cpu_quota_pct, self.net_mbit_per_sec) {
            (Some(p), _) if p > 100 => Err((
                "cpu_quota_pct",
                format!("a CPU quota is 1 to 100 % of a host CPU per vCPU (0 removes it), not {p}"),
            )),
            (_, Some(m)) if m > NET_MBIT_MAX => Err((
                "net_mbit_per_sec",
                format!("a network limit is at most {NET_MBIT_MAX} Mbit/s (0 removes it), not {m}"),
            )),
            _ => Ok(()),
        }
    }

    /// Whether the change asks for a network limit (clearing one that is not there asks nothing).
    pub fn wants_net(&self) -> bool {
        self.net_mbit_per_sec.is_some_and(|v| v > 0)
    }

    /// Whether the change asks for a disk limit (bytes or IOPS).
    pub fn wants_disk(&self) -> bool {
        [self.disk_read_bytes_per_sec, self.disk_write_bytes_per_sec, self.disk_iops]
            .iter()
            .any(|v| v.is_some_and(|v| v > 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_names_what_it_replaces_and_zero_clears() {
        let now = VmLimits { cpu_quota_pct: Some(50), disk_iops: Some(500), ..VmLimits::default() };
        let change = VmLimits { cpu_quota_pct: Some(0), net_mbit_per_sec: Some(100), ..VmLimits::default() };
        assert_eq!(
            now.merged(&change),
            VmLimits { disk_iops: Some(500), net_mbit_per_sec: Some(100), ..VmLimits::default() }
        );
        assert_eq!(VmLimits::default().merged(&now.restoring()), now);
        assert!(change.wants_net() && !change.wants_disk() && now.wants_disk());
    }

    #[test]
    fn values_past_what_drivers_take_name_their_field() {
        let over = |l: VmLimits| l.check().err().map(|(field, _)| field);
        assert_eq!(over(VmLimits { cpu_quota_pct: Some(101), ..VmLimits::default() }), Some("cpu_quota_pct"));
        assert_eq!(
            over(VmLimits { net_mbit_per_sec: Some(NET_MBIT_MAX + 1), ..VmLimits::default() }),
            Some("net_mbit_per_sec")
        );
        assert_eq!(
            over(VmLimits { cpu_quota_pct: Some(100), net_mbit_per_sec: Some(NET_MBIT_MAX), ..VmLimits::default() }),
            None
        );
    }
}
