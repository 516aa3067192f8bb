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
    let hypervisor = driver(&cli, &host);
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

/// libvirt at `--libvirt-uri`, opened by the agent on first use.
#[cfg(feature = "libvirt")]
fn driver(cli: &Cli, host: &str) -> Option<DriverConfig> {
    use std::sync::Arc;
    use tollgate_control::hypervisor::{libvirt::Libvirt, Hypervisor};

    let uri = cli.libvirt_uri.clone()?;
    let peer_uri = cli.peer_uri.clone().unwrap_or_else(|| format!("qemu+tcp://{host}/system"));
    let (target, virt_type) = (uri.clone(), cli.virt_type.clone());
    let connect =
        Arc::new(move || Ok(Box::new(Libvirt::connect_as(&target, virt_type.as_deref())?) as Box<dyn Hypervisor>));
    Some(DriverConfig { uri, peer_uri, connect, inventory_every: cli.inventory_interval })
}

/// Built without libvirt: the host alone.
#[cfg(not(feature = "libvirt"))]
fn driver(_cli: &Cli, _host: &str) -> Option<DriverConfig> {
    None
}
