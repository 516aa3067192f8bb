//! Host metrics from /proc and /sys: CPU by mode, memory, load, disks, filesystems, interfaces, uptime.
//!
//! Names follow Telegraf's, so dashboards built for it read these too: `cpu` (percent of the interval by
//! mode), `mem` (bytes), `system` (load, uptime, CPUs), `diskio` (counters per whole disk), `disk` (use
//! per mounted filesystem), `net` (counters per interface but `lo`). Each parser takes the file's text, so
//! the tests feed it recorded files.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use tollgate_workflows::metrics::line::{FieldValue, Point};

/// CPU time by mode, in clock ticks since boot, as `/proc/stat` counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    fn total(&self) -> u64 {
        self.user + self.nice + self.system + self.idle + self.iowait + self.irq + self.softirq + self.steal
    }

    fn modes(&self) -> [(&'static str, u64); 8] {
        [
            ("usage_user", self.user),
            ("usage_nice", self.nice),
            ("usage_system", self.system),
            ("usage_idle", self.idle),
            ("usage_iowait", self.iowait),
            ("usage_irq", self.irq),
            ("usage_softirq", self.softirq),
            ("usage_steal", self.steal),
        ]
    }
}

/// The `cpu` line of `/proc/stat` (all CPUs together), and how many CPUs it lists.
pub fn parse_stat(text: &str) -> Option<(CpuTimes, u64)> {
    let mut total = None;
    let mut cpus = 0;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("cpu") => {
                let v: Vec<u64> = words.take(8).map(|w| w.parse().unwrap_or(0)).collect();
                let at = |i: usize| v.get(i).copied().unwrap_or(0);
                total = Some(CpuTimes {
                    user: at(0),
                    nice: at(1),
                    system: at(2),
                    idle: at(3),
                    iowait: at(4),
                    irq: at(5),
                    softirq: at(6),
                    steal: at(7),
                });
            }
            Some(w) if w.starts_with("cpu") => cpus += 1,
            _ => {}
        }
    }
    total.map(|t| (t, cpus))
}

/// Percent of the interval spent in each mode, from two samples of `/proc/stat`.
pub fn cpu_percent(before: &CpuTimes, after: &CpuTimes) -> Vec<(&'static str, f64)> {
    let elapsed = after.total().saturating_sub(before.total());
    if elapsed == 0 {
        return Vec::new();
    }
    before
        .modes()
        .iter()
        .zip(after.modes())
        .map(|((name, b), (_, a))| (*name, a.saturating_sub(*b) as f64 * 100.0 / elapsed as f64))
        .collect()
}

/// `/proc/meminfo`: (total, available, swap total, swap free) in bytes.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64, u64, u64)> {
    let get = |key: &str| -> Option<u64> {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok().map(|kib| kib * 1024)
        })
    };
    Some((get("MemTotal")?, get("MemAvailable")?, get("SwapTotal").unwrap_or(0), get("SwapFree").unwrap_or(0)))
}

/// `/proc/loadavg`: the 1, 5 and 15 minute load averages.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut w = text.split_whitespace().map(|w| w.parse::<f64>().ok());
    Some([w.next()??, w.next()??, w.next()??])
}

/// One disk's counters from `/proc/diskstats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskStats {
    pub name: String,
    pub reads: u64,
    pub read_bytes: u64,
    pub writes: u64,
    pub write_bytes: u64,
    pub io_time_ms: u64,
}

/// `/proc/diskstats`, keeping the devices `keep` accepts (whole disks).
pub fn parse_diskstats(text: &str, keep: impl Fn(&str) -> bool) -> Vec<DiskStats> {
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let n = |i: usize| w.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let name = *w.get(2)?;
            keep(name).then(|| DiskStats {
                name: name.to_owned(),
                reads: n(3),
                read_bytes: n(5) * 512,
                writes: n(7),
                write_bytes: n(9) * 512,
                io_time_ms: n(12),
            })
        })
        .collect()
}

/// One interface's counters from `/proc/net/dev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetStats {
    pub interface: String,
    /// bytes, packets, errors, drops received; then the same sent.
    pub counters: [u64; 8],
}

/// `/proc/net/dev`, every interface but the loopback.
pub fn parse_net_dev(text: &str) -> Vec<NetStats> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" || name.is_empty() {
                return None;
            }
            let v: Vec<u64> = rest.split_whitespace().map(|w| w.parse().unwrap_or(0)).collect();
            let at = |i: usize| v.get(i).copied().unwrap_or(0);
            Some(NetStats {
                interface: name.to_owned(),
                counters: [at(0), at(1), at(2), at(3), at(8), at(9), at(10), at(11)],
            })
        })
        .collect()
}

/// Filesystems on block devices or of disk-like types, from `/proc/self/mounts`: (mount point, type).
pub fn parse_mounts(text: &str) -> Vec<(String, String)> {
    const REAL: &[&str] =
        &["ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "vfat", "f2fs", "jfs", "reiserfs", "nfs", "nfs4"];
    let mut seen = std::collections::BTreeSet::new();
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let (path, fstype) = (unescape_mount(w.get(1)?), *w.get(2)?);
            (REAL.contains(&fstype) && seen.insert(path.clone())).then(|| (path, fstype.to_owned()))
        })
        .collect()
}

/// `/proc/self/mounts` writes a space as `\040`, a tab as `\011`, a backslash as `\134`.
fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// `/proc/uptime`: seconds since boot.
pub fn parse_uptime(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Reads this host's metrics, keeping the last CPU sample to report each interval's share by mode.
pub struct HostReader {
    root: PathBuf,
    previous_cpu: Option<CpuTimes>,
}

/// A point with owned names, before tags are added.
pub struct Reading {
    pub measurement: &'static str,
    pub tags: Vec<(&'static str, String)>,
    pub fields: Vec<(&'static str, FieldValue<'static>)>,
}

impl Reading {
    /// The point with the agent's own tags (host, cluster, region) after the reading's.
    pub fn into_point(self, common: &[(String, String)], at_ns: i64) -> Point<'static> {
        let mut tags: Vec<(Cow<'static, str>, Cow<'static, str>)> =
            self.tags.into_iter().map(|(k, v)| (Cow::Borrowed(k), Cow::Owned(v))).collect();
        tags.extend(common.iter().map(|(k, v)| (Cow::Owned(k.clone()), Cow::Owned(v.clone()))));
        Point {
            measurement: Cow::Borrowed(self.measurement),
            tags,
            fields: self.fields.into_iter().map(|(k, v)| (Cow::Borrowed(k), v)).collect(),
            timestamp: Some(at_ns),
        }
    }
}

/// A counter as a line-protocol integer (`i`), which InfluxDB 1 and 2 both read.
pub(crate) fn int(v: u64) -> FieldValue<'static> {
    FieldValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

impl HostReader {
    /// Reads from `root` (`/` on a real host) — `root/proc/…`, `root/sys/…`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HostReader { root: root.into(), previous_cpu: None }
    }

    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.root.join(path)).ok()
    }

    /// The host's readings now. A source that cannot be read is left out (and named in `missing`).
    pub fn collect(&mut self, missing: &mut Vec<&'static str>) -> Vec<Reading> {
        let mut out = Vec::new();
        let mut cpus = 0;
        match self.read("proc/stat").as_deref().and_then(parse_stat) {
            Some((now, n)) => {
                cpus = n;
                if let Some(before) = self.previous_cpu.replace(now) {
                    let fields: Vec<_> =
                        cpu_percent(&before, &now).into_iter().map(|(k, v)| (k, FieldValue::Float(v))).collect();
                    if !fields.is_empty() {
                        out.push(Reading { measurement: "cpu", tags: vec![("cpu", "cpu-total".to_owned())], fields });
                    }
                }
            }
            None => missing.push("/proc/stat"),
        }
        match self.read("proc/meminfo").as_deref().and_then(parse_meminfo) {
            Some((total, available, swap_total, swap_free)) => {
                let used = total.saturating_sub(available);
                let percent = if total > 0 { used as f64 * 100.0 / total as f64 } else { 0.0 };
                out.push(Reading {
                    measurement: "mem",
                    tags: vec![],
                    fields: vec![
                        ("total", int(total)),
                        ("available", int(available)),
                        ("used", int(used)),
                        ("used_percent", FieldValue::Float(percent)),
                        ("swap_total", int(swap_total)),
                        ("swap_free", int(swap_free)),
                        ("swap_used", int(swap_total.saturating_sub(swap_free))),
                    ],
                });
            }
            None => missing.push("/proc/meminfo"),
        }
        let mut system = Vec::new();
        match self.read("proc/loadavg").as_deref().and_then(parse_loadavg) {
            Some([l1, l5, l15]) => system.extend([
                ("load1", FieldValue::Float(l1)),
                ("load5", FieldValue::Float(l5)),
                ("load15", FieldValue::Float(l15)),
            ]),
            None => missing.push("/proc/loadavg"),
        }
        match self.read("proc/uptime").as_deref().and_then(parse_uptime) {
            Some(up) => system.push(("uptime", int(up as u64))),
            None => missing.push("/proc/uptime"),
        }
        if cpus > 0 {
            system.push(("n_cpus", int(cpus)));
        }
        if !system.is_empty() {
            out.push(Reading { measurement: "system", tags: vec![], fields: system });
        }
        let whole_disks: Vec<String> = std::fs::read_dir(self.root.join("sys/block"))
            .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        let is_disk = |name: &str| {
            whole_disks.iter().any(|d| d == name) && !["loop", "ram", "zram"].iter().any(|p| name.starts_with(p))
        };
        match self.read("proc/diskstats") {
            Some(text) => out.extend(parse_diskstats(&text, is_disk).into_iter().map(|d| Reading {
                measurement: "diskio",
                tags: vec![("name", d.name)],
                fields: vec![
                    ("reads", int(d.reads)),
                    ("read_bytes", int(d.read_bytes)),
                    ("writes", int(d.writes)),
                    ("write_bytes", int(d.write_bytes)),
                    ("io_time", int(d.io_time_ms)),
                ],
            })),
            None => missing.push("/proc/diskstats"),
        }
        match self.read("proc/net/dev") {
            Some(text) => out.extend(parse_net_dev(&text).into_iter().map(|n| {
                let names = [
                    "bytes_recv",
                    "packets_recv",
                    "err_in",
                    "drop_in",
                    "bytes_sent",
                    "packets_sent",
                    "err_out",
                    "drop_out",
                ];
                Reading {
                    measurement: "net",
                    tags: vec![("interface", n.interface)],
                    fields: names.into_iter().zip(n.counters).map(|(k, v)| (k, int(v))).collect(),
                }
            })),
            None => missing.push("/proc/net/dev"),
        }
        if let Some(text) = self.read("proc/self/mounts") {
            for (path, fstype) in parse_mounts(&text) {
                if let Some((total, free, available)) = fs_use(&self.root, &path) {
                    let used = total.saturating_sub(free);
                    let usable = used + available;
                    let percent = if usable > 0 { used as f64 * 100.0 / usable as f64 } else { 0.0 };
                    out.push(Reading {
                        measurement: "disk",
                        tags: vec![("path", path), ("fstype", fstype)],
                        fields: vec![
                            ("total", int(total)),
                            ("free", int(available)),
                            ("used", int(used)),
                            ("used_percent", FieldValue::Float(percent)),
                        ],
                    });
                }
            }
        }
        out
    }
}

/// (total, free, available to unprivileged users) bytes of the filesystem mounted at `path`.
fn fs_use(root: &Path, path: &str) -> Option<(u64, u64, u64)> {
    let at = root.join(path.trim_start_matches('/'));
    let s = rustix::fs::statvfs(&at).ok()?;
    let unit = s.f_frsize;
    Some((s.f_blocks * unit, s.f_bfree * unit, s.f_bavail * unit))
}

/// This host's name, from the kernel.
pub fn hostname(root: &Path) -> Option<String> {
    let name = std::fs::read_to_string(root.join("proc/sys/kernel/hostname")).ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_1: &str =
        "cpu  100 0 50 800 10 0 0 0 0 0\ncpu0 50 0 25 400 5 0 0 0 0 0\ncpu1 50 0 25 400 5 0 0 0 0 0\nintr 1\n";
    const STAT_2: &str =
        "cpu  160 0 70 900 30 0 0 0 0 0\ncpu0 80 0 35 450 15 0 0 0 0 0\ncpu1 80 0 35 450 15 0 0 0 0 0\nintr 2\n";

    #[test]
    fn cpu_modes_are_shares_of_the_interval_between_two_samples() {
        let (before, cpus) = parse_stat(STAT_1).expect("parses");
        let (after, _) = parse_stat(STAT_2).expect("parses");
        assert_eq!(cpus, 2);
        let shares: std::collections::HashMap<_, _> = cpu_percent(&before, &after).into_iter().collect();
        // 200 ticks passed: 60 user, 20 system, 100 idle, 20 iowait.
        assert_eq!(shares["usage_user"], 30.0);
        assert_eq!(shares["usage_system"], 10.0);
        assert_eq!(shares["usage_idle"], 50.0);
        assert_eq!(shares["usage_iowait"], 10.0);
        assert!((shares.values().sum::<f64>() - 100.0).abs() < 1e-9);
        assert!(cpu_percent(&after, &after).is_empty(), "no time passed, no shares");
    }

    #[test]
    fn memory_load_uptime_disks_interfaces_and_mounts_are_read() {
        let meminfo = "MemTotal:       16000000 kB\nMemFree:  1 kB\nMemAvailable:   12000000 kB\nSwapTotal: 2048 kB\nSwapFree: 1024 kB\n";
        assert_eq!(parse_meminfo(meminfo), Some((16_000_000 * 1024, 12_000_000 * 1024, 2048 * 1024, 1024 * 1024)));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None, "no MemAvailable, no reading");
        assert_eq!(parse_loadavg("0.52 0.58 0.59 2/345 12345\n"), Some([0.52, 0.58, 0.59]));
        assert_eq!(parse_uptime("12345.67 2345.6\n"), Some(12345.67));
        let diskstats = "   8       0 sda 100 0 2000 0 50 0 4000 0 0 70 0 0\n   8       1 sda1 1 0 2 0 1 0 2 0 0 1 0\n";
        let disks = parse_diskstats(diskstats, |n| n == "sda");
        assert_eq!(
            disks,
            [DiskStats {
                name: "sda".into(),
                reads: 100,
                read_bytes: 2000 * 512,
                writes: 50,
                write_bytes: 4000 * 512,
                io_time_ms: 70
            }]
        );
        let net_dev = "Inter-|   Receive  |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n  eth0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0\n";
        assert_eq!(
            parse_net_dev(net_dev),
            [NetStats { interface: "eth0".into(), counters: [1000, 10, 1, 2, 2000, 20, 3, 4] }]
        );
        let mounts = "/dev/sda1 / ext4 rw 0 0\nproc /proc proc rw 0 0\n/dev/sdb1 /srv/my\\040data xfs rw 0 0\n/dev/sda1 / ext4 rw 0 0\ntmpfs /run tmpfs rw 0 0\n";
        assert_eq!(
            parse_mounts(mounts),
            [("/".to_owned(), "ext4".to_owned()), ("/srv/my data".to_owned(), "xfs".to_owned())]
        );
    }

    #[test]
    fn this_host_reads_and_every_reading_writes_as_line_protocol() {
        let mut reader = HostReader::new("/");
        let mut missing = Vec::new();
        reader.collect(&mut missing);
        // The CPU shares need some clock ticks (10 ms each) between the two samples.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let readings = reader.collect(&mut missing);
        assert!(missing.is_empty(), "{missing:?}");
        let names: std::collections::BTreeSet<&str> = readings.iter().map(|r| r.measurement).collect();
        for expected in ["cpu", "mem", "system"] {
            assert!(names.contains(expected), "{expected} missing from {names:?}");
        }
        let tags = [("host".to_owned(), "test host".to_owned())];
        let mut body = String::new();
        for r in readings {
            r.into_point(&tags, 1).write_to(&mut body).expect("writes");
        }
        let parsed =
            tollgate_workflows::metrics::line::parse(body.as_bytes(), tollgate_workflows::metrics::line::Precision::Ns)
                .expect("parses back");
        assert!(parsed.iter().all(|p| p.tags.iter().any(|(k, v)| k == "host" && v == "test host")));
    }
}
