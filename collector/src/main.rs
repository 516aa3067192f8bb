//! `tollgate-agent`: parses its command line; collection and task execution arrive with the monitoring
//! and control-plane work.

use clap::Parser;

fn main() {
    let _cli = tollgate_collector::cli::Cli::parse();
    eprintln!("tollgate-agent {}: no server configured; see --help", env!("CARGO_PKG_VERSION"));
    std::process::exit(2);
}
