//! The libvirt calls the safe bindings lack: bulk domain statistics (the bindings return raw records they
//! never free), block I/O tuning and NIC bandwidth; and statistics one domain at a time where the driver
//! has no bulk call. Each unsafe block says what it relies on.
#![allow(unsafe_code)]

use super::backend;
use crate::hypervisor::{xml, DomainInfo, DomainStats, HvResult, HypervisorError};
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
        out.push(DomainStats::from_params(name, &params));
    }
    // SAFETY: frees the list and its records exactly once; nothing read from them outlives this call.
    unsafe { sys::virDomainStatsRecordListFree(records) };
    Ok(out)
}

/// Counters of every domain from per-domain calls, for a driver without bulk statistics (LXC): its
/// state, vCPUs and CPU time, the memory limit it runs under and what it uses, and its NICs' traffic.
pub fn stats_one_by_one(conn: &Connect) -> HvResult<Vec<DomainStats>> {
    let mut out = Vec::new();
    for dom in conn.list_all_domains(0).map_err(backend)? {
        // A domain undefined since the listing is left out.
        let (Ok(name), Ok(info)) = (dom.name(), dom.info()) else { continue };
        let running = info.state.is(virt::domain::DomainState::Running);
        let (hard_limit, nics) = if running {
            let limit = dom.memory_parameters(0).ok().and_then(|m| m.hard_limit);
            let macs = dom.xml_desc(0).map(|x| xml::nic_macs(&x)).unwrap_or_default();
            let traffic = |mac: &String| dom.interface_stats(mac).ok();
            let nics: Vec<_> =
                macs.iter().filter_map(traffic).map(|t| (t.rx_bytes.max(0) as u64, t.tx_bytes.max(0) as u64)).collect();
            (limit, nics)
        } else {
            (None, Vec::new())
        };
        let info = DomainInfo {
            state: u32::from(running),
            max_kib: info.max_mem,
            used_kib: info.memory,
            vcpus: info.nr_virt_cpu,
            cpu_time_ns: info.cpu_time,
        };
        out.push(DomainStats::from_info(name, info, hard_limit, &nics));
    }
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

/// A typed parameter's value as a setter sends it.
#[derive(Clone, Copy)]
pub enum Typed {
    Uint(u32),
    Ullong(u64),
}

/// Typed parameters named `field` for the values given; a `None` is left out.
fn typed_params(values: &[(&str, Option<Typed>)]) -> HvResult<Vec<sys::virTypedParameter>> {
    let mut params = Vec::new();
    for (field, value) in values {
        let Some(value) = value else { continue };
        // SAFETY: an all-zero typed parameter is a valid (empty) one: a C struct of integers and a union.
        let mut p: sys::virTypedParameter = unsafe { std::mem::zeroed() };
        let name = field.as_bytes();
        if name.len() >= p.field.len() {
            return Err(HypervisorError::Invalid(format!("parameter name {field} is too long")));
        }
        for (dst, src) in p.field.iter_mut().zip(name) {
            *dst = *src as c_char;
        }
        match *value {
            Typed::Uint(v) => {
                p.type_ = sys::VIR_TYPED_PARAM_UINT as i32;
                p.value.ui = v;
            }
            Typed::Ullong(v) => {
                p.type_ = sys::VIR_TYPED_PARAM_ULLONG as i32;
                p.value.ul = v;
            }
        }
        params.push(p);
    }
    Ok(params)
}

/// Which of a domain's devices a setter tunes.
#[derive(Clone, Copy)]
pub enum Tune {
    /// A disk's I/O limits (bytes/s, IOPS): `virDomainSetBlockIoTune`.
    Block,
    /// A NIC's bandwidth (`inbound.average`, `outbound.average`, kilobytes/s):
    /// `virDomainSetInterfaceParameters`.
    Interface,
}

/// Sets the named limits of one device (`vda`, `vnet0`); `None` leaves a limit as it is.
pub fn set_tune(dom: &Domain, tune: Tune, device: &str, values: &[(&str, Option<Typed>)], flags: u32) -> HvResult<()> {
    let mut params = typed_params(values)?;
    if params.is_empty() {
        return Ok(());
    }
    let device = CString::new(device).map_err(|_| HypervisorError::Invalid("a device name with a NUL".into()))?;
    let n = params.len() as i32;
    // SAFETY: the domain pointer is valid while `dom` lives; `params` and `device` outlive the call, which
    // only reads them.
    let rc = unsafe {
        match tune {
            Tune::Block => sys::virDomainSetBlockIoTune(dom.as_ptr(), device.as_ptr(), params.as_mut_ptr(), n, flags),
            Tune::Interface => {
                sys::virDomainSetInterfaceParameters(dom.as_ptr(), device.as_ptr(), params.as_mut_ptr(), n, flags)
            }
        }
    };
    if rc < 0 {
        return Err(last_error());
    }
    Ok(())
}
