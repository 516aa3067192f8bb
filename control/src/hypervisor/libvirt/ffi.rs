//! The two libvirt calls the safe bindings lack: bulk domain statistics (the bindings return raw
//! records they never free) and block I/O tuning. Each unsafe block says what it relies on.
#![allow(unsafe_code)]

use super::backend;
use crate::hypervisor::{DomainStats, HvResult, HypervisorError};
use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;

fn last_error() -> HypervisorError {
    backend(virt::error::Error::last_error())
}

/// Counters of every domain on the host from one `virConnectGetAllDomainStats` call.
pub fn all_domain_stats(conn: &Connect) -> HvResult<Vec<DomainStats>> {
    let kinds = sys::VIR_DOMAIN_STATS_STATE
        | sys::VIR_DOMAIN_STATS_CPU_TOTAL
        | sys::VIR_DOMAIN_STATS_BALLOON
        | sys::VIR_DOMAIN_STATS_VCPU
        | sys::VIR_DOMAIN_STATS_INTERFACE
        | sys::VIR_DOMAIN_STATS_BLOCK;
    let mut records: *mut sys::virDomainStatsRecordPtr = std::ptr::null_mut();
    // SAFETY: the connection pointer is valid while `conn` lives; libvirt allocates a NULL-terminated
    // array of records into `records`, which is freed below with the function made for it.
    let n = unsafe { sys::virConnectGetAllDomainStats(conn.as_ptr(), kinds, &mut records, 0) };
    if n < 0 {
        return Err(last_error());
    }
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        // SAFETY: `records` holds `n` valid record pointers; each record holds `nparams` typed
        // parameters and its domain, all alive until the list is freed.
        let (name, params) = unsafe {
            let record = &**records.add(i);
            let name = CStr::from_ptr(sys::virDomainGetName(record.dom)).to_string_lossy().into_owned();
            let params = std::slice::from_raw_parts(record.params, record.nparams.max(0) as usize);
            (name, params.iter().map(|p| (field_name(p), number(p))).collect::<Vec<_>>())
        };
        out.push(fold(name, &params));
    }
    // SAFETY: frees the list and its records exactly once; nothing read from them outlives this call.
    unsafe { sys::virDomainStatsRecordListFree(records) };
    Ok(out)
}

fn field_name(p: &sys::virTypedParameter) -> String {
    let bytes: Vec<u8> = p.field.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn number(p: &sys::virTypedParameter) -> Option<u64> {
    // SAFETY: `type_` says which member of the union libvirt wrote.
    unsafe {
        match p.type_ as u32 {
            sys::VIR_TYPED_PARAM_INT => Some(p.value.i.max(0) as u64),
            sys::VIR_TYPED_PARAM_UINT => Some(u64::from(p.value.ui)),
            sys::VIR_TYPED_PARAM_LLONG => Some(p.value.l.max(0) as u64),
            sys::VIR_TYPED_PARAM_ULLONG => Some(p.value.ul),
            sys::VIR_TYPED_PARAM_BOOLEAN => Some(u64::from(p.value.b != 0)),
            sys::VIR_TYPED_PARAM_DOUBLE => Some(p.value.d.max(0.0) as u64),
            _ => None,
        }
    }
}

/// Sums per-device counters (`block.0.rd.bytes`, `net.1.tx.bytes`) into one domain's figures.
fn fold(name: String, params: &[(String, Option<u64>)]) -> DomainStats {
    let mut s = DomainStats { name, ..DomainStats::default() };
    for (field, value) in params {
        let Some(v) = *value else { continue };
        let mut parts = field.split('.');
        let (group, rest) = (parts.next().unwrap_or(""), parts.collect::<Vec<_>>());
        match (group, rest.as_slice()) {
            // VIR_DOMAIN_RUNNING is 1.
            ("state", ["state"]) => s.running = v == 1,
            ("cpu", ["time"]) => s.cpu_time_ns = v,
            ("vcpu", ["current"]) => s.vcpus = v as u32,
            ("balloon", ["current"]) => s.balloon_current_kib = v,
            ("balloon", ["rss"]) => s.balloon_rss_kib = v,
            ("block", [n, "rd", "bytes"]) if n.parse::<u32>().is_ok() => s.block_read_bytes += v,
            ("block", [n, "wr", "bytes"]) if n.parse::<u32>().is_ok() => s.block_write_bytes += v,
            ("block", [n, "rd", "reqs"]) if n.parse::<u32>().is_ok() => s.block_read_reqs += v,
            ("block", [n, "wr", "reqs"]) if n.parse::<u32>().is_ok() => s.block_write_reqs += v,
            ("net", [n, "rx", "bytes"]) if n.parse::<u32>().is_ok() => s.net_rx_bytes += v,
            ("net", [n, "tx", "bytes"]) if n.parse::<u32>().is_ok() => s.net_tx_bytes += v,
            _ => {}
        }
    }
    s
}

/// Sets the named block I/O limits (bytes/s, IOPS) of one disk; `None` leaves a limit as it is.
pub fn set_block_iotune(dom: &Domain, disk: &str, limits: &[(&str, Option<u64>)], flags: u32) -> HvResult<()> {
    let mut params: Vec<sys::virTypedParameter> = Vec::new();
    for (field, value) in limits {
        let Some(value) = value else { continue };
        // SAFETY: an all-zero typed parameter is a valid (empty) one: a C struct of integers and a union.
        let mut p: sys::virTypedParameter = unsafe { std::mem::zeroed() };
        let name = field.as_bytes();
        if name.len() >= p.field.len() {
            return Err(HypervisorError::Invalid(format!("I/O limit name {field} is too long")));
        }
        for (dst, src) in p.field.iter_mut().zip(name) {
            *dst = *src as c_char;
        }
        p.type_ = sys::VIR_TYPED_PARAM_ULLONG as i32;
        p.value.ul = *value;
        params.push(p);
    }
    if params.is_empty() {
        return Ok(());
    }
    let disk = CString::new(disk).map_err(|_| HypervisorError::Invalid("a disk name with a NUL".into()))?;
    // SAFETY: the domain pointer is valid while `dom` lives; `params` and `disk` outlive the call, which
    // only reads them.
    let rc = unsafe {
        sys::virDomainSetBlockIoTune(dom.as_ptr(), disk.as_ptr(), params.as_mut_ptr(), params.len() as i32, flags)
    };
    if rc < 0 {
        return Err(last_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_device_counters_add_up() {
        let p = |f: &str, v: u64| (f.to_string(), Some(v));
        let s = fold(
            "vm".into(),
            &[
                p("state.state", 1),
                p("cpu.time", 5_000),
                p("block.count", 2),
                p("block.0.rd.bytes", 10),
                p("block.1.rd.bytes", 32),
                p("block.0.wr.reqs", 3),
                p("net.0.tx.bytes", 7),
                p("balloon.rss", 1024),
            ],
        );
        assert!(s.running);
        assert_eq!((s.cpu_time_ns, s.block_read_bytes, s.block_write_reqs), (5_000, 42, 3));
        assert_eq!((s.net_tx_bytes, s.balloon_rss_kib), (7, 1024));
    }
}
