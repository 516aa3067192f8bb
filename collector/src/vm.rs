//! Per-VM metrics from one bulk statistics call to the host's hypervisor: measurement `vm`, one point per
//! domain tagged `vm=<domain name>`, with its CPU use over the interval and its counters as the driver reads them.

use crate::host::{int, Reading};
use std::collections::HashMap;
use std::time::Instant;
use tollgate_control::hypervisor::{DomainStats, HvResult, Hypervisor};
use tollgate_workflows::metrics::line::FieldValue;

/// A domain's CPU time, all vCPUs together, at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSample {
    pub cpu_time_ns: u64,
    pub at: Instant,
}

/// Percent of its `vcpus` a domain kept busy between two samples. `None` when it cannot be told: no time
/// passed, no vCPUs (not running), or the CPU time went backwards (the domain restarted in between).
pub fn cpu_pct(before: CpuSample, after: CpuSample, vcpus: u32) -> Option<f64> {
    let used_ns = after.cpu_time_ns.checked_sub(before.cpu_time_ns)?;
    let wall_ns = after.at.checked_duration_since(before.at)?.as_nanos();
    if wall_ns == 0 || vcpus == 0 {
        return None;
    }
    Some(used_ns as f64 * 100.0 / wall_ns as f64 / f64::from(vcpus))
}

/// Reads the host's VMs, keeping each one's last CPU sample to report its CPU use over the interval.
#[derive(Debug, Default)]
pub struct VmReader {
    previous: HashMap<String, CpuSample>,
}

impl VmReader {
    pub fn new() -> Self {
        VmReader::default()
    }

    /// One reading per domain on the host now, from one `stats()` call.
    pub fn collect(&mut self, driver: &dyn Hypervisor) -> HvResult<Vec<Reading>> {
        let stats = driver.stats()?;
        Ok(self.readings(stats, Instant::now()))
    }

    /// The readings of one statistics call made at `at`. Domains gone since the last call are forgotten.
    pub fn readings(&mut self, stats: Vec<DomainStats>, at: Instant) -> Vec<Reading> {
        let mut previous = std::mem::take(&mut self.previous);
        stats
            .into_iter()
            .map(|s| {
                let now = CpuSample { cpu_time_ns: s.cpu_time_ns, at };
                let mut fields = Vec::with_capacity(12);
                if let Some(pct) = previous.remove(&s.name).and_then(|before| cpu_pct(before, now, s.vcpus)) {
                    fields.push(("cpu_pct", FieldValue::Float(pct)));
                }
                fields.extend([
                    ("vcpus", int(u64::from(s.vcpus))),
                    ("balloon_current_kib", int(s.balloon_current_kib)),
                    ("balloon_rss_kib", int(s.balloon_rss_kib)),
                    ("block_read_bytes", int(s.block_read_bytes)),
                    ("block_write_bytes", int(s.block_write_bytes)),
                    ("block_read_reqs", int(s.block_read_reqs)),
                    ("block_write_reqs", int(s.block_write_reqs)),
                    ("net_rx_bytes", int(s.net_rx_bytes)),
                    ("net_tx_bytes", int(s.net_tx_bytes)),
                    ("running", FieldValue::Bool(s.running)),
                ]);
                self.previous.insert(s.name.clone(), now);
                Reading { measurement: "vm", tags: vec![("vm", s.name)], fields }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tollgate_control::hypervisor::sim::SimFleet;
    use tollgate_control::hypervisor::DomainSpec;
    use tollgate_workflows::metrics::line::{self, Precision};

    fn sample(cpu_time_ns: u64, at: Instant) -> CpuSample {
        CpuSample { cpu_time_ns, at }
    }

    fn stats(name: &str, cpu_time_ns: u64, vcpus: u32) -> DomainStats {
        DomainStats { name: name.into(), running: vcpus > 0, cpu_time_ns, vcpus, ..DomainStats::default() }
    }

    fn field<'a>(point: &line::Point<'a>, name: &str) -> Option<FieldValue<'a>> {
        point.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn cpu_of(reading: &Reading) -> Option<f64> {
        reading.fields.iter().find_map(|(k, v)| match (k, v) {
            (&"cpu_pct", FieldValue::Float(f)) => Some(*f),
            _ => None,
        })
    }

    #[test]
    fn cpu_use_is_cpu_time_over_wall_time_per_vcpu() {
        let t0 = Instant::now();
        let t2 = t0 + Duration::from_secs(2);
        // 2 s of CPU time in 2 s of wall time on 2 vCPUs: one of the two kept busy.
        assert_eq!(cpu_pct(sample(1_000_000_000, t0), sample(3_000_000_000, t2), 2), Some(50.0));
        assert_eq!(cpu_pct(sample(0, t0), sample(8_000_000_000, t2), 4), Some(100.0));
        assert_eq!(cpu_pct(sample(5, t0), sample(5, t2), 1), Some(0.0));
        assert_eq!(cpu_pct(sample(3_000_000_000, t0), sample(1_000, t2), 2), None, "restarted");
        assert_eq!(cpu_pct(sample(0, t0), sample(1_000, t0), 2), None, "no time passed");
        assert_eq!(cpu_pct(sample(0, t0), sample(1_000, t2), 0), None, "not running");
    }

    #[test]
    fn cpu_use_is_left_out_on_a_domains_first_reading_and_after_it_restarts() {
        let mut reader = VmReader::new();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let first = reader.readings(vec![stats("a", 1_000_000_000, 1)], at(0));
        assert_eq!(cpu_of(&first[0]), None, "nothing to compare with yet");
        let second = reader.readings(vec![stats("a", 1_500_000_000, 1), stats("b", 7, 1)], at(1));
        assert_eq!((cpu_of(&second[0]), cpu_of(&second[1])), (Some(50.0), None));
        let restarted = reader.readings(vec![stats("a", 200_000_000, 1)], at(2));
        assert_eq!(cpu_of(&restarted[0]), None, "CPU time went backwards");
        let after = reader.readings(vec![stats("a", 300_000_000, 1), stats("b", 9, 1)], at(3));
        assert_eq!(cpu_of(&after[0]), Some(10.0));
        assert_eq!(cpu_of(&after[1]), None, "b was gone for a reading: it starts over");
    }

    #[test]
    fn each_domain_of_the_host_becomes_a_vm_point_with_the_agents_tags() {
        let host = SimFleet::new().host("h", &["img"]);
        for (name, vcpus) in [("web-1", 2), ("db-1", 4)] {
            let spec = DomainSpec { vcpus, max_vcpus: 8, ..DomainSpec::small(name, "img") };
            host.provision(&spec).expect("provisioned");
        }
        host.stop("db-1").expect("stopped");
        let mut reader = VmReader::new();
        reader.collect(&host).expect("first reading");
        // The simulated guests use CPU time as wall time passes.
        std::thread::sleep(Duration::from_millis(50));
        let readings = reader.collect(&host).expect("second reading");

        let tags = [("host".to_owned(), "h".to_owned()), ("cluster".to_owned(), "c1".to_owned())];
        let mut body = String::new();
        for r in readings {
            r.into_point(&tags, 1_700_000_000_000_000_000).write_to(&mut body).expect("writes");
        }
        let points = line::parse(body.as_bytes(), Precision::Ns).expect("parses back");
        assert_eq!(points.len(), 2, "{body}");
        for p in &points {
            assert_eq!(p.measurement, "vm");
            let tag_keys: Vec<&str> = p.tags.iter().map(|(k, _)| k.as_ref()).collect();
            assert_eq!(tag_keys, ["vm", "host", "cluster"]);
            for counter in [
                "balloon_current_kib",
                "balloon_rss_kib",
                "block_read_bytes",
                "block_write_bytes",
                "block_read_reqs",
                "block_write_reqs",
                "net_rx_bytes",
                "net_tx_bytes",
            ] {
                assert!(matches!(field(p, counter), Some(FieldValue::Int(_))), "{counter} in {body}");
            }
        }
        let web = points.iter().find(|p| p.tags.iter().any(|(k, v)| k == "vm" && v == "web-1")).expect("web-1");
        assert_eq!(field(web, "running"), Some(FieldValue::Bool(true)));
        assert_eq!(field(web, "vcpus"), Some(FieldValue::Int(2)));
        assert_eq!(field(web, "balloon_current_kib"), Some(FieldValue::Int(1024 * 1024)));
        // A simulated guest idles at 5 % of each vCPU.
        match field(web, "cpu_pct") {
            Some(FieldValue::Float(pct)) => assert!((1.0..=10.0).contains(&pct), "{pct}"),
            other => panic!("cpu_pct is {other:?}"),
        }
        let db = points.iter().find(|p| p.tags.iter().any(|(k, v)| k == "vm" && v == "db-1")).expect("db-1");
        assert_eq!(field(db, "running"), Some(FieldValue::Bool(false)));
        assert_eq!(field(db, "cpu_pct"), None, "a stopped domain uses no vCPUs");
    }
}
