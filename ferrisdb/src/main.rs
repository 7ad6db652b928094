//! The `ferrisdb` command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// FerrisDB: a distributed transactional key-value database.
#[derive(Parser, Debug)]
#[command(name = "ferrisdb", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manage a local multi-process cluster.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterAction {
    /// Start (or resume) a local cluster: controller, coordinator and storage servers.
    Up {
        /// Data directory holding every process's files and the cluster file.
        #[arg(long, default_value = "./ferrisdb-data")]
        dir: PathBuf,
        /// First port: controller on it, coordinator on +1, storage servers from +2.
        #[arg(long, default_value_t = 4500)]
        port_base: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Cluster {
            action: ClusterAction::Up { dir, port_base },
        } => {
            eprintln!(
                "ferrisdb cluster up (dir {}, ports from {port_base}): not yet implemented; \
                 the server roles land with the cluster milestone (see DESIGN.md)",
                dir.display()
            );
            ExitCode::from(2)
        }
    }
}
