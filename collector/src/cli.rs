//! The agent's command line.

use clap::Parser;

/// Tollgate host agent: reports this host's metrics and runs its tasks for a Tollgate server.
#[derive(Debug, Parser)]
#[command(name = "tollgate-agent", version, about)]
pub struct Cli {}
