//! Live memory: a domain boots with its base memory and grows by plugging memory modules into free
//! slots; it shrinks by unplugging modules it gained. What lies beyond is a cold resize.

use super::{HvResult, HypervisorError};
use serde::{Deserialize, Serialize};

/// Memory sizes are whole multiples of this, so modules line up with the guest's memory blocks.
pub const MEMORY_UNIT_MIB: u64 = 128;

/// A domain's memory: what it booted with, the modules plugged since, and its headroom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryLayout {
    pub base_mib: u64,
    /// Sizes of the plugged modules, oldest first.
    pub modules_mib: Vec<u64>,
    pub max_mib: u64,
    pub slots: u32,
}

impl MemoryLayout {
    pub fn current_mib(&self) -> u64 {
        self.base_mib + self.modules_mib.iter().sum::<u64>()
    }

    pub fn free_slots(&self) -> u32 {
        self.slots.saturating_sub(self.modules_mib.len() as u32)
    }
}

/// What to do to reach a memory size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryStep {
    Nothing,
    /// Plug one module of this size.
    Plug(u64),
    /// Unplug the modules at these positions of `modules_mib`, newest first.
    Unplug(Vec<usize>),
}

/// The refusal of a size only a cold resize reaches.
fn cold_resize(target_mib: u64, reason: String) -> HypervisorError {
    HypervisorError::Refused {
        reason,
        proposal: format!("request a cold resize to {target_mib} MiB (a change that restarts the VM)"),
    }
}

fn check_unit(target_mib: u64) -> HvResult<()> {
    if target_mib == 0 || target_mib % MEMORY_UNIT_MIB != 0 {
        return Err(HypervisorError::Invalid(format!(
            "memory must be a positive multiple of {MEMORY_UNIT_MIB} MiB, not {target_mib}"
        )));
    }
    Ok(())
}

/// Plans the live step from `layout` to `target_mib`, or refuses with the cold resize that would do it.
pub fn plan_memory(layout: &MemoryLayout, target_mib: u64) -> HvResult<MemoryStep> {
    let current = layout.current_mib();
    let cold = |reason: String| cold_resize(target_mib, reason);
    check_unit(target_mib)?;
    if target_mib == current {
        return Ok(MemoryStep::Nothing);
    }
    if target_mib > current {
        if target_mib > layout.max_mib {
            return Err(cold(format!("{target_mib} MiB is past the live headroom of {} MiB", layout.max_mib)));
        }
        if layout.free_slots() == 0 {
            return Err(cold(format!("all {} memory slots are in use", layout.slots)));
        }
        return Ok(MemoryStep::Plug(target_mib - current));
    }
    if target_mib < layout.base_mib {
        return Err(cold(format!("{target_mib} MiB is below the {} MiB the VM booted with", layout.base_mib)));
    }
    match unplug_set(&layout.modules_mib, current - target_mib) {
        Some(chosen) => Ok(MemoryStep::Unplug(chosen)),
        None => Err(cold(format!(
            "no set of plugged modules ({:?} MiB) adds up to the {} MiB to remove",
            layout.modules_mib,
            current - target_mib
        ))),
    }
}

/// Checks a container's memory limit can move to `target_mib` while it runs: anywhere from one unit up
/// to its maximum (no modules, no slots). Whether anything changes is for the caller to see.
pub fn check_memory_limit(layout: &MemoryLayout, target_mib: u64) -> HvResult<()> {
    check_unit(target_mib)?;
    if target_mib > layout.max_mib {
        return Err(cold_resize(
            target_mib,
            format!("{target_mib} MiB is past the live headroom of {} MiB", layout.max_mib),
        ));
    }
    Ok(())
}

/// Positions of modules whose sizes add up to exactly `need_mib`, preferring the newest (the guest placed
/// the least in them): a 0/1 knapsack over memory units, each sum kept as first reached.
fn unplug_set(modules_mib: &[u64], need_mib: u64) -> Option<Vec<usize>> {
    let units = |mib: u64| (mib / MEMORY_UNIT_MIB) as usize;
    let need = units(need_mib);
    // reached[u] = the module that first made a sum of u units; usize::MAX for the empty sum.
    let mut reached: Vec<Option<usize>> = vec![None; need + 1];
    reached[0] = Some(usize::MAX);
    for (i, &size) in modules_mib.iter().enumerate().rev() {
        let size = units(size);
        if size == 0 || size > need {
            continue;
        }
        for u in (size..=need).rev() {
            if reached[u].is_none() && reached[u - size].is_some() {
                reached[u] = Some(i);
            }
        }
    }
    reached[need]?;
    let mut chosen = Vec::new();
    let mut u = need;
    while u > 0 {
        let i = reached[u]?;
        chosen.push(i);
        u -= units(modules_mib[i]);
    }
    chosen.sort_unstable_by(|a, b| b.cmp(a));
    Some(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(modules: &[u64]) -> MemoryLayout {
        MemoryLayout { base_mib: 512, modules_mib: modules.to_vec(), max_mib: 2048, slots: 3 }
    }

    #[test]
    fn growing_plugs_one_module_of_the_difference() {
        assert_eq!(plan_memory(&layout(&[]), 768), Ok(MemoryStep::Plug(256)));
        assert_eq!(plan_memory(&layout(&[256]), 768), Ok(MemoryStep::Nothing));
    }

    #[test]
    fn shrinking_unplugs_the_newest_modules_that_add_up() {
        // 512 booted + 256 + 128 plugged = 896 MiB.
        assert_eq!(plan_memory(&layout(&[256, 128]), 640), Ok(MemoryStep::Unplug(vec![0])));
        assert_eq!(plan_memory(&layout(&[256, 128]), 768), Ok(MemoryStep::Unplug(vec![1])));
        assert_eq!(plan_memory(&layout(&[256, 128]), 512), Ok(MemoryStep::Unplug(vec![1, 0])));
        assert_eq!(plan_memory(&layout(&[128, 128]), 640), Ok(MemoryStep::Unplug(vec![1])));
    }

    #[test]
    fn beyond_the_headroom_is_refused_with_a_cold_resize() {
        let refused = |r: HvResult<MemoryStep>| match r {
            Err(HypervisorError::Refused { proposal, .. }) => proposal.contains("cold resize"),
            _ => false,
        };
        assert!(refused(plan_memory(&layout(&[]), 4096)));
        assert!(refused(plan_memory(&layout(&[]), 256)));
        assert!(refused(plan_memory(&layout(&[128, 128, 128]), 1024)));
        assert!(refused(plan_memory(&layout(&[256]), 640)));
        assert!(matches!(plan_memory(&layout(&[]), 700), Err(HypervisorError::Invalid(_))));
    }

    #[test]
    fn a_containers_limit_moves_freely_up_to_its_maximum() {
        let limit = MemoryLayout { base_mib: 512, modules_mib: Vec::new(), max_mib: 2048, slots: 0 };
        for fine in [128, 512, 2048] {
            assert_eq!(check_memory_limit(&limit, fine), Ok(()), "{fine}");
        }
        assert!(matches!(check_memory_limit(&limit, 4096), Err(HypervisorError::Refused { .. })));
        assert!(matches!(check_memory_limit(&limit, 0), Err(HypervisorError::Invalid(_))));
        assert!(matches!(check_memory_limit(&limit, 700), Err(HypervisorError::Invalid(_))));
    }
}
