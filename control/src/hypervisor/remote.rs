//! VM statistics read straight from the local libvirt daemon over its RPC protocol, without libvirt's C
//! library: the host agent calls this once per interval, and keeps the library (and the dozen libraries
//! it loads) out of its resident process. The hypervisor tasks, which need the whole API, run in a helper
//! that links it (see the collector's `tollgate-agent-libvirt`).
//!
//! The protocol is XDR over a stream socket: each message is a 4-byte length, a header (program,
//! version, procedure, type, serial, status) and the procedure's arguments or reply. Only the calls a
//! statistics reader needs are spoken: authentication list (and polkit), open, all-domain statistics,
//! close; and, for a driver without the bulk call (LXC), the domain list and each domain's info, memory
//! limit, XML (for its NICs) and NIC counters. Procedure numbers and layouts are libvirt's `remote_protocol.x`
//! and `virnetprotocol.x`, stable
//! across releases since 1.2.8.

use super::{xml, DomainInfo, DomainStats, HvResult, HypervisorError};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

const PROGRAM: u32 = 0x2000_8086;
const PROTOCOL_VERSION: u32 = 1;
const PROC_CONNECT_OPEN: i32 = 1;
const PROC_CONNECT_CLOSE: i32 = 2;
const PROC_AUTH_LIST: i32 = 66;
const PROC_AUTH_POLKIT: i32 = 70;
const PROC_CONNECT_GET_ALL_DOMAIN_STATS: i32 = 344;
const PROC_CONNECT_LIST_ALL_DOMAINS: i32 = 273;
const PROC_DOMAIN_GET_INFO: i32 = 16;
const PROC_DOMAIN_GET_XML_DESC: i32 = 14;
const PROC_DOMAIN_INTERFACE_STATS: i32 = 65;
const PROC_DOMAIN_GET_MEMORY_PARAMETERS: i32 = 198;
/// `VIR_ERR_NO_SUPPORT`: the driver lacks the call.
const ERR_NO_SUPPORT: i32 = 3;
/// `VIR_ERR_NO_DOMAIN`: the domain went away.
const ERR_NO_DOMAIN: i32 = 42;
/// `VIR_ERR_OPERATION_INVALID`: asked of a running domain that has stopped since.
const ERR_OPERATION_INVALID: i32 = 55;
/// How many memory parameters to ask for (libvirt's own maximum).
const MEMORY_PARAMETERS_MAX: i32 = 16;
const TYPE_CALL: i32 = 0;
const TYPE_REPLY: i32 = 1;
const STATUS_OK: i32 = 0;
const STATUS_ERROR: i32 = 1;
const AUTH_NONE: i32 = 0;
const AUTH_POLKIT: i32 = 2;
/// State, CPU total, balloon, vCPU, interface and block statistics (`VIR_DOMAIN_STATS_*`), as the
/// libvirt driver asks for them.
const STATS_GROUPS: u32 = 1 | 2 | 4 | 8 | 16 | 32;
/// libvirt's largest message is 32 MiB; anything longer is not libvirt talking.
const MESSAGE_MAX: usize = 32 << 20;
/// How long one call may take before the daemon is taken as stuck.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn backend(what: impl std::fmt::Display) -> HypervisorError {
    HypervisorError::Backend(what.to_string())
}

/// Where a local libvirt URI's daemon listens, and the name to open on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUri {
    pub socket: PathBuf,
    /// The URI as the daemon opens it: transport and socket left out (`qemu:///system`).
    pub name: String,
}

impl LocalUri {
    /// `qemu:///system`, `qemu+unix:///system?socket=/path/sock`, `lxc:///system`, … A URI naming a remote
    /// host or another transport is refused: statistics are read from this host's own daemon.
    pub fn parse(uri: &str) -> HvResult<LocalUri> {
        let invalid = |why: &str| HypervisorError::Invalid(format!("libvirt URI {uri:?}: {why}"));
        let (scheme, rest) = uri.split_once("://").ok_or_else(|| invalid("no scheme"))?;
        let (driver, transport) = scheme.split_once('+').map_or((scheme, None), |(d, t)| (d, Some(t)));
        if driver.is_empty() || !driver.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid("no driver name"));
        }
        let (authority, path_query) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
        match transport {
            None | Some("unix") if authority.is_empty() => {}
            _ => {
                return Err(HypervisorError::Unsupported(format!(
                    "{uri} is not this host's local socket (qemu:///system or qemu+unix:///system?socket=…)"
                )))
            }
        }
        let socket = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("socket="))
            .map(|s| PathBuf::from(percent_decode(s)))
            .unwrap_or_else(|| default_socket(driver, Path::new("/run/libvirt")));
        Ok(LocalUri { socket, name: format!("{driver}://{path}") })
    }
}

/// The daemon's socket under `run` (`/run/libvirt`): the driver's own daemon where the host runs the
/// modular daemons (`virtqemud-sock`), else the monolithic `libvirtd`'s.
fn default_socket(driver: &str, run: &Path) -> PathBuf {
    let modular = run.join(format!("virt{driver}d-sock"));
    if modular.exists() {
        modular
    } else {
        run.join("libvirt-sock")
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// XDR encoding of a call's arguments.
#[derive(Default)]
struct Encoder(Vec<u8>);

impl Encoder {
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn string(&mut self, s: &str) -> &mut Self {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }

    /// `remote_nonnull_domain`.
    fn domain(&mut self, d: &RemoteDomain) -> &mut Self {
        self.string(&d.name);
        self.0.extend_from_slice(&d.uuid);
        self.i32(d.id)
    }
}

/// A domain as the protocol names it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RemoteDomain {
    name: String,
    uuid: [u8; 16],
    id: i32,
}

/// XDR decoding of a reply; every read checks the bounds, so a short or hostile reply is an error.
struct Decoder<'a> {
    bytes: &'a [u8],
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize) -> HvResult<&'a [u8]> {
        if n > self.bytes.len() {
            return Err(backend("libvirt's reply ended early"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u32(&mut self) -> HvResult<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self) -> HvResult<i32> {
        Ok(self.u32()? as i32)
    }

    fn u64(&mut self) -> HvResult<u64> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn opaque(&mut self, len: usize) -> HvResult<&'a [u8]> {
        let data = self.take(len)?;
        self.take(len.next_multiple_of(4) - len)?;
        Ok(data)
    }

    fn string(&mut self) -> HvResult<String> {
        let len = self.u32()? as usize;
        Ok(String::from_utf8_lossy(self.opaque(len)?).into_owned())
    }

    /// An XDR optional: a boolean, then the value when it is there.
    fn optional<T>(&mut self, read: impl FnOnce(&mut Self) -> HvResult<T>) -> HvResult<Option<T>> {
        match self.u32()? {
            0 => Ok(None),
            _ => read(self).map(Some),
        }
    }

    /// A variable-length array's count, checked against what is left (each element takes ≥ 4 bytes).
    fn count(&mut self) -> HvResult<usize> {
        let n = self.u32()? as usize;
        if n > self.bytes.len() / 4 {
            return Err(backend("libvirt's reply holds a list longer than the reply"));
        }
        Ok(n)
    }

    /// `remote_nonnull_domain`.
    fn domain(&mut self) -> HvResult<RemoteDomain> {
        let name = self.string()?;
        let mut uuid = [0; 16];
        uuid.copy_from_slice(self.take(16)?);
        Ok(RemoteDomain { name, uuid, id: self.i32()? })
    }

    /// `remote_typed_param`: its name and, for a number, its value.
    fn typed_param(&mut self) -> HvResult<(String, Option<u64>)> {
        let field = self.string()?;
        let value = match self.i32()? {
            // int, boolean
            1 | 6 => Some(self.i32()?.max(0) as u64),
            // unsigned int
            2 => Some(u64::from(self.u32()?)),
            // long long
            3 => Some((self.u64()? as i64).max(0) as u64),
            // unsigned long long
            4 => Some(self.u64()?),
            // double
            5 => Some(f64::from_bits(self.u64()?).max(0.0) as u64),
            // string
            7 => {
                self.string()?;
                None
            }
            other => return Err(backend(format!("libvirt sent a statistic of unknown type {other}"))),
        };
        Ok((field, value))
    }

    /// `remote_error`: libvirt's error code and what the daemon says went wrong.
    fn error(&mut self) -> (i32, HypervisorError) {
        let read = |d: &mut Self| -> HvResult<(i32, Option<String>)> {
            let code = d.i32()?;
            d.i32()?;
            Ok((code, d.optional(Self::string)?))
        };
        match read(self) {
            Ok((code, Some(message))) => (code, backend(message)),
            Ok((code, None)) => (code, backend(format!("libvirt error {code}"))),
            Err(e) => (0, e),
        }
    }
}

/// The statistics of every domain in one `connectGetAllDomainStats` reply.
fn decode_stats(reply: &[u8]) -> HvResult<Vec<DomainStats>> {
    let mut d = Decoder { bytes: reply };
    let records = d.count()?;
    let mut out = Vec::with_capacity(records);
    for _ in 0..records {
        let name = d.domain()?.name;
        let n = d.count()?;
        let params = (0..n).map(|_| d.typed_param()).collect::<HvResult<Vec<_>>>()?;
        out.push(DomainStats::from_params(name, &params));
    }
    Ok(out)
}

/// `domainGetInfo`'s reply.
fn decode_info(reply: &[u8]) -> HvResult<DomainInfo> {
    let mut d = Decoder { bytes: reply };
    Ok(DomainInfo { state: d.u32()?, max_kib: d.u64()?, used_kib: d.u64()?, vcpus: d.u32()?, cpu_time_ns: d.u64()? })
}

/// `domainGetMemoryParameters`' reply: the hard limit (KiB), where there is one.
fn decode_hard_limit(reply: &[u8]) -> HvResult<Option<u64>> {
    let mut d = Decoder { bytes: reply };
    let params = (0..d.count()?).map(|_| d.typed_param()).collect::<HvResult<Vec<_>>>()?;
    Ok(params.into_iter().find(|(name, _)| name == "hard_limit").and_then(|(_, v)| v))
}

/// `domainInterfaceStats`' reply: bytes received and sent.
fn decode_traffic(reply: &[u8]) -> HvResult<(u64, u64)> {
    let mut d = Decoder { bytes: reply };
    let c = (0..8).map(|_| d.u64().map(|v| (v as i64).max(0) as u64)).collect::<HvResult<Vec<_>>>()?;
    Ok((c[0], c[4]))
}

/// An open connection to the local libvirt daemon, for statistics.
pub struct StatsConnection {
    socket: UnixStream,
    serial: u32,
    /// The daemon's error code of the last failed call.
    last_error: i32,
    /// Whether the driver lacks the bulk call, so that each domain is asked on its own (LXC).
    one_by_one: bool,
}

impl StatsConnection {
    /// Connects to the daemon of `uri`, authenticates (none, or polkit as root) and opens the driver.
    pub fn open(uri: &str) -> HvResult<StatsConnection> {
        let local = LocalUri::parse(uri)?;
        let socket = UnixStream::connect(&local.socket)
            .map_err(|e| backend(format!("cannot connect to libvirt at {}: {e}", local.socket.display())))?;
        socket.set_read_timeout(Some(CALL_TIMEOUT)).map_err(backend)?;
        socket.set_write_timeout(Some(CALL_TIMEOUT)).map_err(backend)?;
        let one_by_one = local.name.starts_with("lxc:");
        let mut conn = StatsConnection { socket, serial: 0, last_error: 0, one_by_one };
        let auth = conn.call(PROC_AUTH_LIST, &[])?;
        let mut d = Decoder { bytes: &auth };
        let types = (0..d.count()?).map(|_| d.i32()).collect::<HvResult<Vec<_>>>()?;
        if !types.is_empty() && !types.contains(&AUTH_NONE) {
            if !types.contains(&AUTH_POLKIT) {
                return Err(HypervisorError::Unsupported(format!(
                    "libvirt at {} asks for SASL authentication; the agent reads statistics over a socket \
                     that needs none or polkit (as root)",
                    local.socket.display()
                )));
            }
            conn.call(PROC_AUTH_POLKIT, &[])?;
        }
        let mut open = Encoder::default();
        open.u32(1).string(&local.name).u32(0);
        conn.call(PROC_CONNECT_OPEN, &open.0)?;
        Ok(conn)
    }

    /// Counters of every domain on the host, from one call where the driver has it.
    pub fn stats(&mut self) -> HvResult<Vec<DomainStats>> {
        if !self.one_by_one {
            let mut args = Encoder::default();
            args.u32(0).u32(STATS_GROUPS).u32(0);
            match self.call(PROC_CONNECT_GET_ALL_DOMAIN_STATS, &args.0) {
                Ok(reply) => return decode_stats(&reply),
                Err(_) if self.last_error == ERR_NO_SUPPORT => self.one_by_one = true,
                Err(e) => return Err(e),
            }
        }
        self.stats_one_by_one()
    }

    /// Counters of every domain from per-domain calls: state, vCPUs and CPU time, the memory limit it runs
    /// under and what it uses, and its NICs' traffic (as the library driver reads them).
    fn stats_one_by_one(&mut self) -> HvResult<Vec<DomainStats>> {
        let mut args = Encoder::default();
        args.i32(1).u32(0);
        let reply = self.call(PROC_CONNECT_LIST_ALL_DOMAINS, &args.0)?;
        let mut d = Decoder { bytes: &reply };
        let domains = (0..d.count()?).map(|_| d.domain()).collect::<HvResult<Vec<_>>>()?;
        let mut out = Vec::with_capacity(domains.len());
        for dom in domains {
            let mut again = true;
            loop {
                match self.domain_stats(&dom) {
                    Ok(s) => out.push(s),
                    // Undefined since the listing: left out.
                    Err(_) if self.last_error == ERR_NO_DOMAIN => {}
                    // Stopped while it was read: read once more, as it is now.
                    Err(_) if self.last_error == ERR_OPERATION_INVALID && std::mem::take(&mut again) => continue,
                    Err(e) => return Err(e),
                }
                break;
            }
        }
        Ok(out)
    }

    fn domain_stats(&mut self, dom: &RemoteDomain) -> HvResult<DomainStats> {
        let mut args = Encoder::default();
        args.domain(dom);
        let info = decode_info(&self.call(PROC_DOMAIN_GET_INFO, &args.0)?)?;
        // VIR_DOMAIN_RUNNING is 1.
        if info.state != 1 {
            return Ok(DomainStats::from_info(dom.name.clone(), info, None, &[]));
        }
        let mut args = Encoder::default();
        args.domain(dom).i32(MEMORY_PARAMETERS_MAX).u32(0);
        let limit = decode_hard_limit(&self.call(PROC_DOMAIN_GET_MEMORY_PARAMETERS, &args.0)?)?;
        let mut args = Encoder::default();
        args.domain(dom).u32(0);
        let xml = Decoder { bytes: &self.call(PROC_DOMAIN_GET_XML_DESC, &args.0)? }.string()?;
        let mut nics = Vec::new();
        for mac in xml::nic_macs(&xml) {
            let mut args = Encoder::default();
            args.domain(dom).string(&mac);
            nics.push(decode_traffic(&self.call(PROC_DOMAIN_INTERFACE_STATS, &args.0)?)?);
        }
        Ok(DomainStats::from_info(dom.name.clone(), info, limit, &nics))
    }

    /// Sends one call and returns its reply's body, or the daemon's error.
    fn call(&mut self, procedure: i32, args: &[u8]) -> HvResult<Vec<u8>> {
        self.serial = self.serial.wrapping_add(1);
        let mut message = Encoder::default();
        let length = 4 + 24 + args.len();
        message.u32(length as u32).u32(PROGRAM).u32(PROTOCOL_VERSION).i32(procedure);
        message.i32(TYPE_CALL).u32(self.serial).i32(STATUS_OK);
        message.0.extend_from_slice(args);
        self.socket.write_all(&message.0).map_err(|e| backend(format!("writing to libvirt: {e}")))?;
        loop {
            let mut length = [0; 4];
            self.socket.read_exact(&mut length).map_err(|e| backend(format!("reading from libvirt: {e}")))?;
            let length = u32::from_be_bytes(length) as usize;
            if !(28..=MESSAGE_MAX).contains(&length) {
                return Err(backend(format!("libvirt sent a message of {length} bytes")));
            }
            let mut body = vec![0; length - 4];
            self.socket.read_exact(&mut body).map_err(|e| backend(format!("reading from libvirt: {e}")))?;
            let mut d = Decoder { bytes: &body };
            let (program, _version, proc_, kind, serial, status) =
                (d.u32()?, d.u32()?, d.i32()?, d.i32()?, d.u32()?, d.i32()?);
            // Anything else (an event, a keepalive) is not this call's answer.
            if program != PROGRAM || kind != TYPE_REPLY || serial != self.serial || proc_ != procedure {
                continue;
            }
            return match status {
                STATUS_OK => Ok(d.bytes.to_vec()),
                STATUS_ERROR => {
                    let (code, error) = d.error();
                    self.last_error = code;
                    Err(error)
                }
                other => Err(backend(format!("libvirt answered with status {other}"))),
            };
        }
    }
}

impl Drop for StatsConnection {
    fn drop(&mut self) {
        // Closing politely spares the daemon a log line; a failure changes nothing.
        let _ = self.call(PROC_CONNECT_CLOSE, &[]);
    }
}

/// Statistics of a local libvirt, connected on first use and again after a failure (the daemon
/// restarted).
pub struct RemoteStats {
    uri: String,
    conn: Option<StatsConnection>,
}

impl RemoteStats {
    pub fn new(uri: &str) -> HvResult<RemoteStats> {
        LocalUri::parse(uri)?;
        Ok(RemoteStats { uri: uri.to_owned(), conn: None })
    }

    pub fn stats(&mut self) -> HvResult<Vec<DomainStats>> {
        let conn = match self.conn.take() {
            Some(c) => c,
            None => StatsConnection::open(&self.uri)?,
        };
        let conn = self.conn.insert(conn);
        let result = conn.stats();
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn local_uris_name_their_socket_and_others_are_refused() {
        let u = LocalUri::parse("qemu+unix:///system?socket=/tmp/vh1/run/libvirt/libvirt-sock").unwrap();
        assert_eq!(u.socket, PathBuf::from("/tmp/vh1/run/libvirt/libvirt-sock"));
        assert_eq!(u.name, "qemu:///system");
        let u = LocalUri::parse("qemu+unix:///system?mode=legacy&socket=/a%20b/sock").unwrap();
        assert_eq!(u.socket, PathBuf::from("/a b/sock"));
        let u = LocalUri::parse("qemu:///system").unwrap();
        assert!(u.socket.ends_with("libvirt-sock") || u.socket.ends_with("virtqemud-sock"), "{u:?}");
        assert_eq!(u.name, "qemu:///system");
        for remote in ["qemu+tcp://h1/system", "qemu://h1/system", "qemu+ssh://root@h1/system"] {
            assert!(matches!(LocalUri::parse(remote), Err(HypervisorError::Unsupported(_))), "{remote}");
        }
        for bad in ["", "system", "://x", "+unix:///system"] {
            assert!(matches!(LocalUri::parse(bad), Err(HypervisorError::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn a_daemon_that_is_not_there_is_a_clear_error() {
        let mut stats = RemoteStats::new("qemu+unix:///system?socket=/nonexistent/libvirt-sock").unwrap();
        let err = stats.stats().unwrap_err().to_string();
        assert!(err.contains("cannot connect to libvirt at /nonexistent/libvirt-sock"), "{err}");
        assert!(RemoteStats::new("qemu+tcp://elsewhere/system").is_err(), "refused before any reading");
    }

    #[test]
    fn the_modular_daemon_is_preferred_where_it_runs() {
        let dir = std::env::temp_dir().join(format!("tollgate-remote-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(default_socket("qemu", &dir), dir.join("libvirt-sock"));
        std::fs::write(dir.join("virtqemud-sock"), b"").unwrap();
        assert_eq!(default_socket("qemu", &dir), dir.join("virtqemud-sock"));
        assert_eq!(default_socket("lxc", &dir), dir.join("libvirt-sock"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A reply as libvirtd encodes it: two domains, counters of every type, a string to skip.
    fn reply() -> Vec<u8> {
        let mut e = Encoder::default();
        e.u32(2);
        // web-1: running, 2 vCPUs, two disks and one NIC.
        e.string("web-1").u32(0).u32(0).u32(0).u32(0).i32(7);
        let params: &[(&str, i32, u64)] = &[
            ("state.state", 1, 1),
            ("cpu.time", 4, 5_000_000_000),
            ("vcpu.current", 2, 2),
            ("balloon.current", 4, 1_048_576),
            ("balloon.rss", 4, 524_288),
            ("block.count", 2, 2),
            ("block.0.rd.bytes", 4, 10),
            ("block.1.rd.bytes", 4, 32),
            ("block.0.wr.reqs", 3, 3),
            ("net.0.tx.bytes", 4, 7),
            ("block.0.allocation", 5, 0),
        ];
        e.u32(params.len() as u32 + 1);
        for (field, kind, value) in params {
            e.string(field).i32(*kind);
            match kind {
                1 | 2 | 6 => {
                    e.u32(*value as u32);
                }
                5 => {
                    e.0.extend_from_slice(&(*value as f64 + 0.5).to_bits().to_be_bytes());
                }
                _ => {
                    e.0.extend_from_slice(&value.to_be_bytes());
                }
            }
        }
        e.string("block.0.name").i32(7).string("vda");
        // db-1: shut off.
        e.string("db-1").u32(0).u32(0).u32(0).u32(0).i32(-1);
        e.u32(1).string("state.state").i32(1).i32(5);
        e.0
    }

    #[test]
    fn a_stats_reply_folds_into_each_domains_figures() {
        let stats = decode_stats(&reply()).unwrap();
        assert_eq!(stats.len(), 2);
        let web = &stats[0];
        assert_eq!(web.name, "web-1");
        assert!(web.running);
        assert_eq!((web.cpu_time_ns, web.vcpus), (5_000_000_000, 2));
        assert_eq!((web.balloon_current_kib, web.balloon_rss_kib), (1_048_576, 524_288));
        assert_eq!((web.block_read_bytes, web.block_write_reqs, web.net_tx_bytes), (42, 3, 7));
        assert_eq!(stats[1], DomainStats { name: "db-1".into(), ..DomainStats::default() });
    }

    #[test]
    fn a_truncated_or_inflated_reply_is_an_error_not_a_panic() {
        let full = reply();
        for cut in 0..full.len() {
            assert!(decode_stats(&full[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = full.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_stats(&huge).is_err());
        let mut unknown = Encoder::default();
        unknown.u32(1).string("x").u32(0).u32(0).u32(0).u32(0).i32(1).u32(1).string("f").i32(99);
        assert!(decode_stats(&unknown.0).is_err());
    }

    /// The calls a test daemon received: procedure and arguments.
    type Calls = std::thread::JoinHandle<Vec<(i32, Vec<u8>)>>;

    /// A daemon on a socket pair: answers each call from `answers` in turn (procedure → status, body),
    /// after an unrelated event message, and records the calls.
    fn daemon(answers: Vec<(i32, i32, Vec<u8>)>) -> (UnixStream, Calls) {
        let (client, mut server) = UnixStream::pair().unwrap();
        let handle = std::thread::spawn(move || {
            let mut calls = Vec::new();
            for (procedure, status, body) in answers {
                let mut len = [0; 4];
                if server.read_exact(&mut len).is_err() {
                    break;
                }
                let mut msg = vec![0; u32::from_be_bytes(len) as usize - 4];
                server.read_exact(&mut msg).unwrap();
                let mut d = Decoder { bytes: &msg };
                let (_, _, proc_, _, serial, _) = (
                    d.u32().unwrap(),
                    d.u32().unwrap(),
                    d.i32().unwrap(),
                    d.i32().unwrap(),
                    d.u32().unwrap(),
                    d.i32().unwrap(),
                );
                assert_eq!(proc_, procedure);
                calls.push((proc_, d.bytes.to_vec()));
                let send = |kind: i32, serial: u32, status: i32, body: &[u8], server: &mut UnixStream| {
                    let mut e = Encoder::default();
                    e.u32(28 + body.len() as u32).u32(PROGRAM).u32(1).i32(procedure).i32(kind).u32(serial).i32(status);
                    e.0.extend_from_slice(body);
                    server.write_all(&e.0).unwrap();
                };
                send(2, 0, STATUS_OK, &[], &mut server);
                send(TYPE_REPLY, serial, status, &body, &mut server);
            }
            calls
        });
        (client, handle)
    }

    #[test]
    fn a_connection_authenticates_opens_and_reads_the_stats() {
        let mut auth = Encoder::default();
        auth.u32(1).i32(AUTH_POLKIT);
        let mut polkit = Encoder::default();
        polkit.i32(1);
        let (socket, daemon) = daemon(vec![
            (PROC_AUTH_LIST, STATUS_OK, auth.0),
            (PROC_AUTH_POLKIT, STATUS_OK, polkit.0),
            (PROC_CONNECT_OPEN, STATUS_OK, vec![]),
            (PROC_CONNECT_GET_ALL_DOMAIN_STATS, STATUS_OK, reply()),
            (PROC_CONNECT_CLOSE, STATUS_OK, vec![]),
        ]);
        let mut conn = StatsConnection { socket, serial: 0, last_error: 0, one_by_one: false };
        let types = conn.call(PROC_AUTH_LIST, &[]).unwrap();
        assert_eq!(types, [0, 0, 0, 1, 0, 0, 0, 2]);
        conn.call(PROC_AUTH_POLKIT, &[]).unwrap();
        let mut open = Encoder::default();
        open.u32(1).string("qemu:///system").u32(0);
        conn.call(PROC_CONNECT_OPEN, &open.0).unwrap();
        assert_eq!(conn.stats().unwrap().len(), 2);
        drop(conn);
        let calls = daemon.join().unwrap();
        assert_eq!(calls.len(), 5);
        let mut d = Decoder { bytes: &calls[2].1 };
        assert_eq!((d.u32().unwrap(), d.string().unwrap(), d.u32().unwrap()), (1, "qemu:///system".into(), 0));
        let mut d = Decoder { bytes: &calls[3].1 };
        assert_eq!((d.u32().unwrap(), d.u32().unwrap(), d.u32().unwrap()), (0, STATS_GROUPS, 0));
    }

    #[test]
    fn a_driver_without_bulk_statistics_is_asked_one_domain_at_a_time() {
        let mut no_support = Encoder::default();
        no_support.i32(ERR_NO_SUPPORT).i32(10).u32(1).string("this function is not supported").i32(2);
        let domain = |e: &mut Encoder, name: &str, id: i32| {
            e.string(name).u32(0x0102_0304).u32(0).u32(0).u32(0x0a0b_0c0d).i32(id);
        };
        let mut list = Encoder::default();
        list.u32(2);
        domain(&mut list, "ct1", 1554);
        domain(&mut list, "ct2", -1);
        list.u32(2);
        let mut running = Encoder::default();
        running.u32(1).u32(0).u32(1 << 20).u32(0).u32(3252).u32(2).u32(0).u32(7_000_000);
        let mut memory = Encoder::default();
        memory.u32(3).string("hard_limit").i32(4).u32(0).u32(262_144);
        memory
            .string("soft_limit")
            .i32(4)
            .u32(0x1f_ffff)
            .u32(u32::MAX)
            .string("swap_hard_limit")
            .i32(4)
            .u32(0)
            .u32(1)
            .i32(3);
        let mut xml = Encoder::default();
        xml.string("<domain type='lxc'><devices><interface type='bridge'><mac address='52:54:00:22:3c:ce'/></interface></devices></domain>");
        let mut traffic = Encoder::default();
        for v in [1500_u32, 10, 0, 0, 900, 6, 0, 0] {
            traffic.u32(0).u32(v);
        }
        let mut stopped = Encoder::default();
        stopped.u32(5).u32(0).u32(1 << 20).u32(0).u32(524_288).u32(1).u32(0).u32(0);
        let per_domain = |list: &Encoder| {
            vec![
                (PROC_CONNECT_LIST_ALL_DOMAINS, STATUS_OK, list.0.clone()),
                (PROC_DOMAIN_GET_INFO, STATUS_OK, running.0.clone()),
                (PROC_DOMAIN_GET_MEMORY_PARAMETERS, STATUS_OK, memory.0.clone()),
                (PROC_DOMAIN_GET_XML_DESC, STATUS_OK, xml.0.clone()),
                (PROC_DOMAIN_INTERFACE_STATS, STATUS_OK, traffic.0.clone()),
                (PROC_DOMAIN_GET_INFO, STATUS_OK, stopped.0.clone()),
            ]
        };
        let mut answers = vec![(PROC_CONNECT_GET_ALL_DOMAIN_STATS, STATUS_ERROR, no_support.0)];
        answers.extend(per_domain(&list));
        // The second reading skips the bulk call.
        answers.extend(per_domain(&list));
        let (socket, daemon) = daemon(answers);
        let mut conn = StatsConnection { socket, serial: 0, last_error: 0, one_by_one: false };
        for _ in 0..2 {
            let stats = conn.stats().unwrap();
            assert_eq!(stats.len(), 2);
            let ct1 = &stats[0];
            assert_eq!((ct1.name.as_str(), ct1.running, ct1.vcpus, ct1.cpu_time_ns), ("ct1", true, 2, 7_000_000));
            assert_eq!((ct1.balloon_current_kib, ct1.balloon_rss_kib), (262_144, 3252), "the limit, and what it uses");
            assert_eq!((ct1.net_rx_bytes, ct1.net_tx_bytes), (1500, 900));
            let ct2 = &stats[1];
            assert_eq!((ct2.running, ct2.balloon_current_kib, ct2.balloon_rss_kib), (false, 524_288, 0));
        }
        drop(conn);
        let calls = daemon.join().unwrap();
        // The domain is sent back as the daemon named it, with the MAC for its NIC.
        let mut d = Decoder { bytes: &calls[2].1 };
        assert_eq!(
            d.domain().unwrap(),
            RemoteDomain { name: "ct1".into(), uuid: [1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 10, 11, 12, 13], id: 1554 }
        );
        let mut d = Decoder { bytes: &calls[5].1 };
        d.domain().unwrap();
        assert_eq!(d.string().unwrap(), "52:54:00:22:3c:ce");
        assert_eq!(calls.iter().filter(|c| c.0 == PROC_CONNECT_GET_ALL_DOMAIN_STATS).count(), 1);
    }

    #[test]
    fn a_domain_that_stops_while_it_is_read_is_read_again_as_stopped() {
        let mut list = Encoder::default();
        list.u32(1).string("ct1").u32(0).u32(0).u32(0).u32(0).i32(7).u32(1);
        let mut running = Encoder::default();
        running.u32(1).u32(0).u32(1 << 20).u32(0).u32(3252).u32(1).u32(0).u32(7_000_000);
        let mut not_running = Encoder::default();
        not_running.i32(ERR_OPERATION_INVALID).i32(10).u32(1).string("domain is not running").i32(2);
        let mut stopped = Encoder::default();
        stopped.u32(5).u32(0).u32(1 << 20).u32(0).u32(262_144).u32(1).u32(0).u32(7_000_000);
        let (socket, daemon) = daemon(vec![
            (PROC_CONNECT_LIST_ALL_DOMAINS, STATUS_OK, list.0),
            (PROC_DOMAIN_GET_INFO, STATUS_OK, running.0),
            (PROC_DOMAIN_GET_MEMORY_PARAMETERS, STATUS_ERROR, not_running.0),
            (PROC_DOMAIN_GET_INFO, STATUS_OK, stopped.0),
        ]);
        let mut conn = StatsConnection { socket, serial: 0, last_error: 0, one_by_one: true };
        let stats = conn.stats().unwrap();
        assert_eq!(stats.len(), 1);
        assert_eq!((stats[0].running, stats[0].balloon_current_kib), (false, 262_144));
        drop(conn);
        daemon.join().unwrap();
    }

    #[test]
    fn the_daemons_error_comes_back_in_its_words() {
        let mut error = Encoder::default();
        error.i32(38).i32(10).u32(1).string("operation failed: no connection driver available").i32(2);
        let (socket, daemon) = daemon(vec![(PROC_CONNECT_OPEN, STATUS_ERROR, error.0)]);
        let mut conn = StatsConnection { socket, serial: 0, last_error: 0, one_by_one: false };
        let err = conn.call(PROC_CONNECT_OPEN, &[]).unwrap_err();
        assert_eq!(err, HypervisorError::Backend("operation failed: no connection driver available".into()));
        daemon.join().unwrap();
        // The daemon is gone: closing fails quietly.
        drop(conn);
    }
}
