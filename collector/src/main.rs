//! `tollgate-agent`: reads its command line and runs the agent's loop.

use clap::Parser;
use std::process::ExitCode;
use tollgate_collector::agent::{self, Config};
use tollgate_collector::cli::Cli;
use tollgate_collector::driver::DriverConfig;
use tollgate_collector::host;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let token = match (&cli.token, &cli.token_file) {
        (Some(t), _) => t.trim().to_owned(),
        (None, Some(file)) => match std::fs::read_to_string(file) {
            Ok(t) => t.trim().to_owned(),
            Err(e) => {
                eprintln!("tollgate-agent: cannot read the token file {}: {e}", file.display());
                return ExitCode::from(2);
            }
        },
        (None, None) => {
            eprintln!("tollgate-agent: no token: set TOLLGATE_AGENT_TOKEN or pass --token-file");
            return ExitCode::from(2);
        }
    };
    let host = cli.host.clone().or_else(|| host::hostname(&cli.root)).unwrap_or_else(|| "unknown".to_owned());
    let hypervisor = match driver(&cli, &host) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("tollgate-agent: {e}");
            return ExitCode::from(2);
        }
    };
    let mut tags = vec![("host".to_owned(), host)];
    tags.extend(cli.cluster.clone().map(|c| ("cluster".to_owned(), c)));
    tags.extend(cli.region.clone().map(|r| ("region".to_owned(), r)));
    let config = Config {
        server: cli.server,
        token,
        interval: cli.interval,
        queue_dir: cli.queue_dir,
        queue_max_bytes: cli.queue_max,
        tags,
        root: cli.root,
        verbose: cli.verbose,
        once: cli.once,
        hypervisor,
    };
    match agent::run(&config) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("tollgate-agent: batches are still queued in {}", config.queue_dir.display());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("tollgate-agent: {e}");
            ExitCode::from(1)
        }
    }
}

/// libvirt at `--libvirt-uri`: the VMs' counters read over its socket by the agent itself, host tasks run
/// by the helper `tollgate-agent-libvirt` (beside this program unless `--libvirt-helper` says where).
#[cfg(feature = "libvirt")]
fn driver(cli: &Cli, host: &str) -> Result<Option<DriverConfig>, String> {
    use std::sync::Arc;
    use tollgate_collector::driver::{HostDriver, StatsSource};
    use tollgate_collector::helper::{self, Helper};
    use tollgate_control::hypervisor::remote::RemoteStats;

    let Some(uri) = cli.libvirt_uri.clone() else { return Ok(None) };
    RemoteStats::new(&uri).map_err(|e| e.to_string())?;
    let program = match &cli.libvirt_helper {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot tell where tollgate-agent is, to find its helper: {e}"))?
            .with_file_name("tollgate-agent-libvirt"),
    };
    let mut args = vec!["--libvirt-uri".to_owned(), uri.clone()];
    args.extend(cli.virt_type.iter().flat_map(|t| ["--virt-type".to_owned(), t.clone()]));
    args.extend(cli.guest_bridge.iter().flat_map(|b| ["--guest-bridge".to_owned(), b.clone()]));
    let peer_uri = cli.peer_uri.clone().unwrap_or_else(|| format!("qemu+tcp://{host}/system"));
    let stats_uri = uri.clone();
    Ok(Some(DriverConfig {
        uri,
        peer_uri,
        tasks: Arc::new(move || Ok(Box::new(Helper::new(&program, args.clone(), helper::IDLE)) as Box<dyn HostDriver>)),
        stats: Arc::new(move || Ok(Box::new(RemoteStats::new(&stats_uri)?) as Box<dyn StatsSource>)),
        inventory_every: cli.inventory_interval,
        shape: Arc::default(),
    }))
}

/// Built without libvirt: the host alone.
#[cfg(not(feature = "libvirt"))]
fn driver(_cli: &Cli, _host: &str) -> Result<Option<DriverConfig>, String> {
    Ok(None)
}
