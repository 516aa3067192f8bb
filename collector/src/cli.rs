//! The agent's command line.

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

/// Tollgate host agent: reports this host's metrics to a Tollgate server (or InfluxDB 2 / VictoriaMetrics),
/// keeping them on disk while it is unreachable. With --libvirt-uri it also reports each VM and runs the
/// server's tasks for this host (create, resize, limit, migrate, delete VMs).
#[derive(Debug, Parser)]
#[command(name = "tollgate-agent", version)]
pub struct Cli {
    /// The server's base URL, e.g. http://tollgate.example:8080.
    #[arg(long, env = "TOLLGATE_AGENT_SERVER")]
    pub server: String,
    /// A token of the agent's account (role `agent`). Prefer the environment or --token-file: a flag shows
    /// in the process list.
    #[arg(long, env = "TOLLGATE_AGENT_TOKEN", hide_env_values = true, conflicts_with = "token_file")]
    pub token: Option<String>,
    /// A file holding the token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// How often to read the host: 10s, 500ms, 1m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Where batches wait while the server is unreachable.
    #[arg(long, default_value = "/var/lib/tollgate-agent/queue")]
    pub queue_dir: PathBuf,
    /// The most the queue keeps on disk (bytes, or with KiB, MiB, GiB); past it the oldest batches go.
    #[arg(long, default_value = "256MiB", value_parser = parse_bytes)]
    pub queue_max: u64,
    /// The `host` tag [default: this host's name].
    #[arg(long)]
    pub host: Option<String>,
    /// The `cluster` tag.
    #[arg(long)]
    pub cluster: Option<String>,
    /// The `region` tag.
    #[arg(long)]
    pub region: Option<String>,
    /// This host's libvirt, e.g. qemu:///system (VMs) or lxc:///system (containers): report every VM
    /// (measurement `vm`) and run the server's tasks for this host. While it cannot be opened the agent
    /// reports the host alone and tries again.
    #[cfg(feature = "libvirt")]
    #[arg(long, env = "TOLLGATE_AGENT_LIBVIRT_URI", value_name = "URI")]
    pub libvirt_uri: Option<String>,
    /// The helper that runs host tasks through libvirt [default: tollgate-agent-libvirt beside this program].
    #[cfg(feature = "libvirt")]
    #[arg(long, env = "TOLLGATE_AGENT_LIBVIRT_HELPER", value_name = "PATH")]
    pub libvirt_helper: Option<PathBuf>,
    /// The host bridge new VMs get a virtio NIC on (the same name on every host, so they can migrate);
    /// network limits shape it. Without one, VMs have no NIC.
    #[cfg(feature = "libvirt")]
    #[arg(long, env = "TOLLGATE_AGENT_GUEST_BRIDGE", value_name = "BRIDGE")]
    pub guest_bridge: Option<String>,
    /// How other hosts' libvirt reaches this one to migrate VMs here [default: qemu+tcp://<host>/system].
    #[cfg(feature = "libvirt")]
    #[arg(long, env = "TOLLGATE_AGENT_PEER_URI", value_name = "URI")]
    pub peer_uri: Option<String>,
    /// The domain type of VMs this agent creates: kvm or qemu (emulation) [default: kvm where the host
    /// offers it]. Some hosts have a KVM device that runs only guest kernels built for it.
    #[cfg(feature = "libvirt")]
    #[arg(long, env = "TOLLGATE_AGENT_VIRT_TYPE", value_parser = ["kvm", "qemu"])]
    pub virt_type: Option<String>,
    /// How often, at the least, the host's domains are sent to the server, which compares them with its
    /// inventory. They are also sent as soon as the VMs' readings show a domain appear, go, start, stop or
    /// change its vCPUs or memory.
    #[cfg(feature = "libvirt")]
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub inventory_interval: Duration,
    /// Where /proc and /sys are found.
    #[arg(long, default_value = "/", hide = true)]
    pub root: PathBuf,
    /// Print a line for every batch collected and sent, and every poll for host tasks.
    #[arg(short, long)]
    pub verbose: bool,
    /// Read once, send everything queued, and exit (0 when nothing is left queued); runs no host tasks.
    #[arg(long)]
    pub once: bool,
}

/// `500ms`, `10s`, `1m`, `1h`, or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, ""), |i| s.split_at(i));
    let n: u64 = number.parse().map_err(|_| format!("{s:?} is not a duration such as 10s or 500ms"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{s:?}: the unit must be ms, s, m or h")),
    };
    if d < Duration::from_millis(100) {
        return Err(format!("{s:?} is shorter than 100ms"));
    }
    Ok(d)
}

/// `1048576`, `512KiB`, `256MiB`, `1GiB`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (number, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, ""), |i| s.split_at(i));
    let n: u64 = number.parse().map_err(|_| format!("{s:?} is not a size such as 256MiB"))?;
    let scale = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        _ => return Err(format!("{s:?}: the unit must be KiB, MiB or GiB")),
    };
    n.checked_mul(scale).filter(|&b| b >= 4096).ok_or_else(|| format!("{s:?} must be between 4KiB and 16EiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_as_people_write_them() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("5ms").is_err(), "too short");
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert!(parse_bytes("12 bananas").is_err());
        assert!(parse_bytes("1").is_err(), "too small to hold a batch");
    }
}
