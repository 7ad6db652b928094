//! The `ferrisdb` command-line tool: `cluster up`, `shell`, `exec`, `status`, `bench`
//! (see `docs/cli.md`). Errors go to stderr with a non-zero exit code.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

mod cli;

use cli::args::{
    BenchTarget, Cli, ClusterAction, Command, ControllersAction, EngineArgs, StatusArgs,
};
use cli::bench::store::{StoreConfig, StoreKind};
use cli::connect::Target;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(dispatch(cli));
    // Do not wait for idle connection tasks when leaving.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), String> {
    if !(cli.timeout.is_finite() && cli.timeout > 0.0) {
        return Err(format!(
            "--timeout must be a positive number of seconds, not {}",
            cli.timeout
        ));
    }
    let target = Target {
        cluster_file: cli.cluster_file,
        controller: cli.controller,
        timeout: Duration::from_secs_f64(cli.timeout),
    };
    match cli.command {
        Command::Cluster {
            action:
                ClusterAction::Up {
                    dir,
                    port_base,
                    controllers,
                    host,
                    storage_servers,
                    replication,
                    log_servers,
                    log_replication,
                    coordinators,
                    bin_dir,
                },
        } => {
            cli::cluster_up::run(cli::cluster_up::ClusterUp {
                dir,
                port_base,
                host,
                storage_servers,
                controllers,
                replication,
                log_servers,
                log_replication,
                coordinators,
                bin_dir,
            })
            .await
        }
        Command::Cluster {
            action: ClusterAction::Controllers { action },
        } => {
            let action = match action {
                ControllersAction::List => cli::controllers::Action::List,
                ControllersAction::Add { address } => cli::controllers::Action::Add(address),
                ControllersAction::Remove { address } => cli::controllers::Action::Remove(address),
            };
            cli::controllers::run(&target, action).await
        }
        Command::Cluster {
            action: ClusterAction::Exclude { addresses, wait },
        } => cli::exclude::run(&target, addresses, false, wait).await,
        Command::Cluster {
            action: ClusterAction::Include { addresses },
        } => cli::exclude::run(&target, addresses, true, false).await,
        Command::Cluster {
            action: ClusterAction::Status(args),
        }
        | Command::Status(args) => status(&target, args).await,
        Command::Exec { commands } => cli::exec::run(&target, commands).await,
        Command::Shell => cli::shell::run(&target).await,
        Command::Bench(args) => match args.target {
            Some(BenchTarget::Engine(engine)) => bench_engine(engine).await,
            None => {
                let w = args.workload;
                let store = match w.store {
                    StoreKind::FerrisDb if w.etcd_serializable => {
                        return Err("--etcd-serializable needs --store etcd".into());
                    }
                    StoreKind::FerrisDb => StoreConfig::FerrisDb,
                    StoreKind::Etcd => StoreConfig::Etcd {
                        endpoint: w.etcd_endpoint,
                        serializable: w.etcd_serializable,
                    },
                };
                cli::bench::run(
                    &target,
                    cli::bench::ClusterBench {
                        workload: w.workload,
                        duration: Duration::from_secs(w.duration),
                        clients: w.clients,
                        records: w.records,
                        no_load: w.no_load,
                        check: w.check,
                        key_size: w.key_size,
                        value_size: w.value_size,
                        uniform: w.uniform,
                        json: w.json,
                        plot: w.plot,
                        store,
                    },
                )
                .await
            }
        },
    }
}

async fn status(target: &Target, args: StatusArgs) -> Result<(), String> {
    let report = cli::status::fetch(&target.connect()?.controllers).await?;
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| format!("encoding the status: {e}"))?;
        println!("{text}");
    } else {
        print!("{}", cli::status::render(&report));
    }
    Ok(())
}

async fn bench_engine(a: EngineArgs) -> Result<(), String> {
    let codec = |name: &str| {
        ferrisdb_storage::sstable::Compression::from_name(name)
            .ok_or_else(|| format!("unknown compression {name:?}: lz4, zstd or none"))
    };
    let cfg = cli::bench_engine::EngineBench {
        workloads: a.workloads,
        num: a.num,
        key_size: a.key_size,
        value_size: a.value_size,
        sync: a.sync,
        batch_size: a.batch_size,
        threads: a.threads,
        dir: a.dir,
        cache_mib: a.cache_mib,
        memtable_mib: a.memtable_mib,
        gc_window: a.gc_window,
        compression: codec(&a.compression)?,
        bottommost_compression: a.bottommost_compression.as_deref().map(codec).transpose()?,
        reads: a.reads,
    };
    tokio::task::spawn_blocking(move || cli::bench_engine::run(cfg).map(|_| ()))
        .await
        .map_err(|e| format!("benchmark thread failed: {e}"))?
}
