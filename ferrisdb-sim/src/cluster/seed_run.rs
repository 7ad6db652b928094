//! One seed of the cluster simulation: two workloads at once, the list-append workload
//! ([`super::list_append`]) and the bank: accounts that transfers move
//! money between (each transfer one transaction reading and writing two accounts, and adding
//! one to its client's transfer counter), a reader that reads every account in one
//! transaction, and a nemesis that partitions pairs of processes (both ways or one way),
//! slows links, pauses a process (its traffic held both ways), steps the coordinator's
//! clock, fails servers' disks (every fsync, or a full disk) and kills server processes
//! (kill -9, or a power cut that loses what was not fsynced) and starts them again, or
//! rebuilds one with an empty disk — all drawn from the seed.
//!
//! Checked (`ferrisdb_check::bank`): every read sees every account, the same total and no
//! negative balance (a transfer seen half-applied, or lost, or applied twice, breaks it).
//! Durability: each client's counter, read at the end, is at least the transfers it saw
//! acknowledged (an acknowledged commit was not lost) and at most those plus the ones whose
//! outcome it never learned (none was applied twice: each transfer carries an idempotency
//! id, so a retried commit is not applied again). The list-append history is checked for
//! serializability anomalies, lost appends and aborted or intermediate reads. Also: no
//! living role stops (but one whose disk failed it, which exits to be restarted); once the
//! faults end, a write commits and a read of every account and every list succeeds; in a
//! replicated cluster the storage replicas, and the log replicas, agree; and every storage
//! server holds, version by version, what the log's batches say ([`super::replicas`]).

use std::time::Duration;

use bytes::Bytes;
use ferrisdb_check::bank::{BankRead, check_bank};
use ferrisdb_client::Database;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::boot::{
    CONTROLLER, CONTROLLER_B, CONTROLLER_C, COORDINATOR, COORDINATOR_B, Death, LOG, LOG_B, STORAGE,
    STORAGE_B, SimCluster,
};
use super::events;
use super::list_append::{ListAppend, Outcomes};
use super::network::{NetStats, SimNetwork};
use super::process::{ProcessId, spawn_in};
use super::replicas;
use super::run_clock;
use crate::disk::Faults;

/// Accounts in the bank.
const ACCOUNTS: usize = 8;
/// Each account's opening balance.
const OPENING: i64 = 100;
/// Transfer clients (processes 10, 11, ...).
const TRANSFER_CLIENTS: u8 = 3;
/// The reader's process.
const READER: ProcessId = 20;
/// The process that opens the accounts and reads them at the end.
const SETUP: ProcessId = 9;
/// List-append clients (processes 30, 31, ...).
const LIST_CLIENTS: u8 = 2;
/// The history process of the final list reads (beyond every client's).
const FINAL_LIST_READER: u64 = 1_000_000;
/// Simulated time the workload runs, after the cluster has started.
const WORKLOAD: Duration = Duration::from_secs(8);
/// Longest one transaction may take (retries included) before the client gives up on it.
const TRANSACTION_LIMIT: Duration = Duration::from_secs(10);
/// Longest the cluster may take to serve a read once every partition has healed.
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);

/// How one seed of the cluster workload went.
#[derive(Debug, Clone)]
pub struct ClusterRun {
    /// The seed.
    pub seed: u64,
    /// Whether the cluster ran two log servers and two storage servers (odd seeds).
    pub replicated: bool,
    /// Simulated time the run took.
    pub simulated: Duration,
    /// Transfers committed.
    pub transfers: u64,
    /// Transactions that failed or timed out (allowed: the nemesis causes them).
    pub failed: u64,
    /// Reads of every account checked.
    pub reads: usize,
    /// List-append transactions by outcome.
    pub lists: Outcomes,
    /// Partitions the nemesis made (both ways or one way).
    pub partitions: u64,
    /// Server processes the nemesis killed (and started again).
    pub kills: u64,
    /// Of those, the kills that were power cuts.
    pub power_cuts: u64,
    /// Processes paused (their traffic held both ways, then delivered).
    pub pauses: u64,
    /// Steps of the coordinator's machine clock.
    pub clock_jumps: u64,
    /// Disk faults: a server's disk failing every fsync (then the machine is power-cycled,
    /// if an fsync did fail) or full, for a while.
    pub disk_faults: u64,
    /// Server machines rebuilt with an empty disk (replicated seeds, at most one per seed).
    pub wipes: u64,
    /// Disk calls the faults failed: fsyncs (EIO) and writes refused by a full disk.
    pub failed_disk_calls: u64,
    /// Roles that exited after their disk failed them and were started again by the
    /// supervisor.
    pub supervised_restarts: u64,
    /// Committed batches found the same on both log servers at the end (replicated seeds).
    pub log_batches_compared: u64,
    /// Committed batches of the log's tail each storage server was found to hold exactly,
    /// version by version, at the end (summed over the storage servers).
    pub storage_batches_checked: u64,
    /// What the nemesis did, at which simulated time (printed when the run fails).
    pub faults: Vec<String>,
    /// What the network did.
    pub network: NetStats,
    /// Why the run failed; `None` if it passed.
    pub failure: Option<String>,
    /// The hash of the run's trace ([`events`]): two runs of a seed with the same hash did
    /// the same things in the same order.
    pub trace: u64,
    /// Events in the trace.
    pub events: u64,
    /// Times a BUGGIFY point in the roles or the client fired.
    pub buggify_fired: u64,
}

fn account(i: usize) -> String {
    format!("acct/{i:03}")
}

fn counter(client: u8) -> String {
    format!("count/{client:03}")
}

fn counter_value(value: Option<Bytes>) -> Result<u64, String> {
    match value {
        None => Ok(0),
        Some(v) => <[u8; 8]>::try_from(v.as_ref())
            .map(u64::from_le_bytes)
            .map_err(|_| format!("a transfer counter holds {} bytes, not 8", v.len())),
    }
}

fn balance(value: Option<Bytes>) -> Option<i64> {
    value.and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
}

async fn read_all(db: &Database) -> ferrisdb_client::Result<BankRead> {
    db.run(|tx| async move {
        let mut balances = Vec::with_capacity(ACCOUNTS);
        for i in 0..ACCOUNTS {
            balances.push(balance(tx.get(account(i)).await?));
        }
        Ok(balances)
    })
    .await
}

/// Moves random amounts between random accounts until `until`, counting each transfer in
/// `client`'s counter; returns (committed, failed).
async fn transfer(db: Database, client: u8, seed: u64, until: Instant) -> (u64, u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut committed, mut failed) = (0, 0);
    let mut attempt = 0u64;
    while Instant::now() < until {
        let from = rng.random_range(0..ACCOUNTS);
        let to = (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
        let amount: i64 = rng.random_range(1..=30);
        attempt += 1;
        let id = format!("transfer-{client}-{attempt}");
        let moved = db.run(move |tx| {
            let id = id.clone();
            async move {
                tx.set_idempotency_id(id)?;
                let (a, b) = (account(from), account(to));
                let (Some(x), Some(y)) = (balance(tx.get(&a).await?), balance(tx.get(&b).await?))
                else {
                    return Ok(false);
                };
                // Every attempt writes (moving nothing if the account is short): an attempt
                // that returned without writing would not learn that an earlier attempt,
                // whose outcome was unknown, did commit.
                let amount = amount.min(x);
                tx.set(&a, (x - amount).to_string())?;
                tx.set(&b, (y + amount).to_string())?;
                tx.add(counter(client), 1u64.to_le_bytes())?;
                Ok(true)
            }
        });
        let outcome = tokio::time::timeout(TRANSACTION_LIMIT, moved).await;
        events::record(|| match &outcome {
            Ok(Ok(moved)) => format!("transfer {client}/{attempt} committed (moved: {moved})"),
            Ok(Err(e)) => format!("transfer {client}/{attempt} failed: {e}"),
            Err(_) => format!("transfer {client}/{attempt} timed out"),
        });
        match outcome {
            Ok(Ok(true)) => committed += 1,
            Ok(Ok(false)) => {}
            Ok(Err(_)) | Err(_) => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // A client thinks between transfers: the run is about faults, not load.
        tokio::time::sleep(Duration::from_millis(rng.random_range(1..40))).await;
    }
    (committed, failed)
}

/// Reads every account every 200 ms until `until`; returns the reads and the failures.
async fn read_repeatedly(db: Database, until: Instant) -> (Vec<BankRead>, u64) {
    let (mut reads, mut failed) = (Vec::new(), 0);
    while Instant::now() < until {
        let outcome = tokio::time::timeout(TRANSACTION_LIMIT, read_all(&db)).await;
        events::record(|| format!("bank read {outcome:?}"));
        match outcome {
            Ok(Ok(read)) => reads.push(read),
            Ok(Err(_)) | Err(_) => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (reads, failed)
}

/// Runs `attempt` (each try bounded by [`TRANSACTION_LIMIT`]) every 500 ms until it succeeds;
/// past `deadline`, its last failure is the error, prefixed with `what`.
async fn retry_until<T, F>(
    deadline: Instant,
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> Result<T, String>
where
    F: std::future::Future<Output = ferrisdb_client::Result<T>>,
{
    loop {
        match tokio::time::timeout(TRANSACTION_LIMIT, attempt()).await {
            Ok(Ok(done)) => return Ok(done),
            Ok(Err(e)) if Instant::now() >= deadline => return Err(format!("{what}: {e}")),
            Err(_) if Instant::now() >= deadline => return Err(format!("{what}: timed out")),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// A client of the cluster whose controllers are at `controllers` (a comma-separated list).
fn connect(controllers: &str) -> Database {
    match Database::connect_all(controllers.split(',')) {
        Ok(db) => db,
        Err(e) => panic!("a client of the simulated cluster: {e}"),
    }
}

/// Runs one seed, filling in `run`; `Err` is the run's failure.
async fn workloads(
    seed: u64,
    network: SimNetwork,
    mut run: ClusterRun,
) -> (ClusterRun, Result<(), String>) {
    let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
    let mut result = workloads_checked(seed, &network, &mut run, ended_tx, &mut ended).await;
    // A role that ended while alive is part of why a seed failed, wherever it failed.
    if let Err(reason) = &mut result {
        while let Ok(role) = ended.try_recv() {
            reason.push_str(&format!("; {role}"));
        }
    }
    (run, result)
}

async fn workloads_checked(
    seed: u64,
    network: &SimNetwork,
    run: &mut ClusterRun,
    ended_tx: tokio::sync::mpsc::UnboundedSender<String>,
    ended: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let begin = Instant::now();
    // Odd seeds run the replicated cluster (the nemesis then also picks from its extra
    // processes), even seeds one replica of each role.
    let cluster = SimCluster::start(network.clone(), rng.random(), seed % 2 == 1, ended_tx);
    run.replicated = seed % 2 == 1;
    let servers = cluster.servers();
    let controllers = cluster.controllers_target();

    // Open the accounts (the cluster is starting: retry until it serves).
    let target = controllers.clone();
    let opened = spawn_in(SETUP, async move {
        let db = connect(&target);
        db.run(|tx| async move {
            for i in 0..ACCOUNTS {
                tx.set(account(i), OPENING.to_string())?;
            }
            Ok(())
        })
        .await
    });
    match tokio::time::timeout(RECOVERY_LIMIT, opened).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(format!("opening the accounts: {e}")),
        Ok(Err(e)) => return Err(format!("opening the accounts: {e}")),
        Err(_) => return Err("the cluster did not start within 60 simulated seconds".into()),
    }

    let until = Instant::now() + WORKLOAD;
    let transfers: Vec<_> = (0..TRANSFER_CLIENTS)
        .map(|i| {
            let (client_seed, target) = (rng.random(), controllers.clone());
            spawn_in(10 + i, async move {
                transfer(connect(&target), 10 + i, client_seed, until).await
            })
        })
        .collect();
    let target = controllers.clone();
    let reader = spawn_in(READER, async move {
        read_repeatedly(connect(&target), until).await
    });
    let lists = ListAppend::new();
    let list_clients: Vec<_> = (0..LIST_CLIENTS)
        .map(|i| {
            let (lists, client_seed) = (lists.clone(), rng.random());
            let target = controllers.clone();
            spawn_in(30 + i, async move {
                let clients = u64::from(LIST_CLIENTS);
                lists
                    .client(connect(&target), u64::from(i), clients, client_seed, until)
                    .await
            })
        })
        .collect();

    // The nemesis: partitions (both ways or one way) and slow links between random pairs of
    // processes, each healed after a while, and server processes killed and started again.
    let mut clients: Vec<ProcessId> = (0..TRANSFER_CLIENTS).map(|i| 10 + i).collect();
    clients.push(READER);
    clients.extend((0..LIST_CLIENTS).map(|i| 30 + i));
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        let a = servers[rng.random_range(0..servers.len())];
        if rng.random_bool(0.1) {
            // A coordinator's machine clock (its commit versions follow it) is stepped:
            // forwards up to 20 s, or backwards up to 5 s.
            let micros: i64 = if rng.random_bool(0.6) {
                rng.random_range(100_000..20_000_000)
            } else {
                -rng.random_range(100_000..5_000_000)
            };
            // Either coordinator of a replicated cluster (the standby's, for when it serves).
            let coordinator = if run.replicated && rng.random_bool(0.5) {
                COORDINATOR_B
            } else {
                COORDINATOR
            };
            cluster.jump_clock(coordinator, micros);
            run.clock_jumps += 1;
            run.faults.push(format!(
                "{:.3}s coordinator {coordinator} clock jumps {:+.3}s",
                begin.elapsed().as_secs_f64(),
                micros as f64 / 1e6
            ));
            continue;
        }
        if run.replicated && run.wipes == 0 && rng.random_bool(0.05) {
            // One machine rebuilt with an empty disk: a controller replica (two others hold
            // the group's state; it comes back with a new node id and replaces its old self
            // in the group), a coordinator (it keeps only its id: it comes back as a new
            // one), a log server or a storage server (each has a replica elsewhere; one loss
            // at a time, as with replication 2).
            let targets = [
                LOG,
                LOG_B,
                STORAGE,
                STORAGE_B,
                CONTROLLER,
                CONTROLLER_B,
                CONTROLLER_C,
                COORDINATOR,
                COORDINATOR_B,
            ];
            let target = targets[rng.random_range(0..targets.len())];
            cluster.kill_and_wipe(target);
            run.wipes += 1;
            let down = Duration::from_millis(rng.random_range(100..2000));
            run.faults.push(format!(
                "{:.3}s {target} lost its disk, down {down:?}",
                begin.elapsed().as_secs_f64()
            ));
            tokio::time::sleep(down).await;
            cluster.restart(target);
            continue;
        }
        if rng.random_bool(0.12) {
            // Not the coordinator's disk: in a cluster it keeps nothing but its id there.
            let keeping: Vec<_> = servers
                .iter()
                .copied()
                .filter(|p| *p != COORDINATOR && *p != COORDINATOR_B)
                .collect();
            let target = keeping[rng.random_range(0..keeping.len())];
            disk_fault(&cluster, target, &mut rng, run, begin).await;
            continue;
        }
        if rng.random_bool(0.4) {
            let death = if rng.random_bool(0.5) {
                run.power_cuts += 1;
                Death::PowerCut
            } else {
                Death::Process
            };
            cluster.kill(a, death);
            run.kills += 1;
            let down = Duration::from_millis(rng.random_range(100..2000));
            run.faults.push(format!(
                "{:.3}s kill {a} ({death:?}), down {down:?}",
                begin.elapsed().as_secs_f64()
            ));
            tokio::time::sleep(down).await;
            cluster.restart(a);
            continue;
        }
        if rng.random_bool(0.2) {
            // A process pauses (stopped, in a long GC pause, its VM frozen): a server mostly,
            // sometimes a client. What it sent just before lands when it resumes.
            let target = if rng.random_bool(0.7) {
                a
            } else {
                clients[rng.random_range(0..clients.len())]
            };
            let lasting = Duration::from_millis(rng.random_range(200..4000));
            network.pause(target);
            run.pauses += 1;
            run.faults.push(format!(
                "{:.3}s pause {target} for {lasting:?}",
                begin.elapsed().as_secs_f64()
            ));
            tokio::time::sleep(lasting).await;
            network.heal();
            continue;
        }
        let b = if rng.random_bool(0.7) {
            let others: Vec<_> = servers.iter().copied().filter(|p| *p != a).collect();
            others[rng.random_range(0..others.len())]
        } else {
            clients[rng.random_range(0..clients.len())]
        };
        let (a, b) = if rng.random_bool(0.5) { (a, b) } else { (b, a) };
        let lasting = Duration::from_millis(rng.random_range(200..2500));
        let fault = match rng.random_range(0..20) {
            0..=9 => {
                network.partition(a, b);
                run.partitions += 1;
                format!("partition {a}|{b}")
            }
            10..=15 => {
                network.clog(a, b);
                run.partitions += 1;
                format!("one-way partition {a}->{b}")
            }
            _ => {
                let extra = Duration::from_millis(rng.random_range(20..400));
                network.slow(a, b, extra);
                format!("slow link {a}|{b} (+{extra:?})")
            }
        };
        run.faults.push(format!(
            "{:.3}s {fault} for {lasting:?}",
            begin.elapsed().as_secs_f64()
        ));
        tokio::time::sleep(lasting).await;
        network.heal();
    }
    network.heal();
    run.supervised_restarts = cluster.supervised_restarts();
    run.failed_disk_calls = servers
        .iter()
        .map(|&p| {
            let stats = cluster.disk(p).stats();
            stats.failed_fsyncs + stats.full_disk_writes
        })
        .sum();

    let mut outcomes = Vec::new();
    for client in transfers {
        let (committed, failed) = client
            .await
            .map_err(|e| format!("a transfer client panicked: {e}"))?;
        run.transfers += committed;
        run.failed += failed;
        outcomes.push((committed, failed));
    }
    let (mut reads, failed) = reader
        .await
        .map_err(|e| format!("the reader panicked: {e}"))?;
    run.failed += failed;
    for client in list_clients {
        let outcomes = client
            .await
            .map_err(|e| format!("a list-append client panicked: {e}"))?;
        run.lists.ok += outcomes.ok;
        run.lists.failed += outcomes.failed;
        run.lists.unknown += outcomes.unknown;
    }

    // The faults ended: the cluster must commit a write and serve a read of every account
    // (and counter) again. (Progress while the faults go on is not required: a seed may
    // keep the transaction system down for most of its run.)
    let target = controllers.clone();
    let last = spawn_in(SETUP, async move {
        let db = connect(&target);
        let deadline = Instant::now() + RECOVERY_LIMIT;
        retry_until(deadline, "no write committed", || {
            db.run(|tx| async move {
                tx.set("after-the-faults", "committed")?;
                Ok(())
            })
        })
        .await?;
        retry_until(deadline, "no read succeeded", || async {
            let accounts = read_all(&db).await?;
            let counters = db
                .run(|tx| async move {
                    let mut counters = Vec::new();
                    for i in 0..TRANSFER_CLIENTS {
                        counters.push(tx.get(counter(10 + i)).await?);
                    }
                    Ok(counters)
                })
                .await?;
            Ok((accounts, counters))
        })
        .await
    });
    let (last, counters) = match last.await {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => return Err(format!("after the faults ended: {e}")),
        Err(e) => return Err(format!("the final reader panicked: {e}")),
    };
    reads.push(last);
    run.reads = reads.len();
    let (final_lists, target) = (lists.clone(), controllers.clone());
    spawn_in(SETUP, async move {
        final_lists
            .final_reads(&connect(&target), FINAL_LIST_READER)
            .await
    })
    .await
    .map_err(|e| format!("the final list reader panicked: {e}"))??;
    if cluster.servers().contains(&STORAGE_B) {
        spawn_in(
            SETUP,
            replicas::agree(connect(&controllers), [STORAGE, STORAGE_B]),
        )
        .await
        .map_err(|e| format!("the replica check panicked: {e}"))??;
    }
    let (tail, storage) = if cluster.servers().contains(&LOG_B) {
        let tail = spawn_in(SETUP, replicas::logs_agree([LOG, LOG_B]))
            .await
            .map_err(|e| format!("the log replica check panicked: {e}"))??;
        run.log_batches_compared = tail.batches.len() as u64;
        (tail, vec![STORAGE, STORAGE_B])
    } else {
        let tail = spawn_in(SETUP, replicas::log_tail(LOG))
            .await
            .map_err(|e| format!("reading the log's tail panicked: {e}"))??;
        (tail, vec![STORAGE])
    };
    run.storage_batches_checked = spawn_in(SETUP, async move {
        replicas::storage_follows_log(&tail, &storage).await
    })
    .await
    .map_err(|e| format!("the storage-against-log check panicked: {e}"))??;
    run.simulated = begin.elapsed();
    lists.check()?;

    if let Ok(role) = ended.try_recv() {
        return Err(format!("a role stopped during the run: {role}"));
    }
    let anomalies = check_bank(ACCOUNTS, ACCOUNTS as i64 * OPENING, &reads);
    if let Some(first) = anomalies.first() {
        return Err(format!(
            "{} bank anomalies, first: {first}",
            anomalies.len()
        ));
    }
    for (i, (value, (acknowledged, unknown))) in counters.into_iter().zip(outcomes).enumerate() {
        let counted = counter_value(value)?;
        if counted < acknowledged {
            return Err(format!(
                "client {}: {acknowledged} transfers were acknowledged but its counter holds \
                 {counted}: an acknowledged commit was lost",
                10 + i
            ));
        }
        if counted > acknowledged + unknown {
            return Err(format!(
                "client {}: its counter holds {counted}, more than the {acknowledged} \
                 acknowledged transfers plus the {unknown} whose outcome is unknown: a commit \
                 was applied twice",
                10 + i
            ));
        }
    }
    Ok(())
}

/// One disk fault on `process`'s machine, for 0.2-2 s: every fsync fails (EIO), or the disk
/// is full (writes fail past what it holds now plus up to 8 KiB). A role that fails on it
/// reports itself unhealthy and waits for its disk to accept writes again, then exits and
/// is started again by the supervisor. After failed fsyncs the machine is power-cycled: a
/// failed fsync may have dropped pages that reads still show (as on Linux), and FerrisDB,
/// as most databases, does not defend against reading them back after a restart on the
/// same kernel (the "fsyncgate" problem, `docs/simulation.md`).
async fn disk_fault(
    cluster: &SimCluster,
    process: ProcessId,
    rng: &mut StdRng,
    run: &mut ClusterRun,
    begin: Instant,
) {
    let full = rng.random_bool(0.5);
    let lasting = Duration::from_millis(rng.random_range(200..2000));
    let disk = cluster.disk(process);
    let faults = if full {
        Faults {
            fsync_failure: 0.0,
            capacity_bytes: Some(disk.stored_bytes() + rng.random_range(0..8 << 10)),
        }
    } else {
        Faults {
            fsync_failure: 1.0,
            capacity_bytes: None,
        }
    };
    let before = disk.stats();
    let at = begin.elapsed();
    cluster.set_disk_faults(process, faults);
    run.disk_faults += 1;
    tokio::time::sleep(lasting).await;
    cluster.set_disk_faults(process, Faults::default());
    let after = disk.stats();
    let failed_fsyncs = after.failed_fsyncs - before.failed_fsyncs;
    let mut fault = if full {
        format!(
            "{:.3}s full disk on {process} for {lasting:?}, {} writes refused",
            at.as_secs_f64(),
            after.full_disk_writes - before.full_disk_writes
        )
    } else {
        format!(
            "{:.3}s failing fsyncs on {process} for {lasting:?}",
            at.as_secs_f64()
        )
    };
    if failed_fsyncs > 0 {
        // In the same step as the fault ends: no fsync succeeds on this kernel before it.
        cluster.kill(process, Death::PowerCut);
        run.kills += 1;
        run.power_cuts += 1;
        let down = Duration::from_millis(rng.random_range(100..1000));
        fault.push_str(&format!(
            ", {failed_fsyncs} failed; power-cycled, down {down:?}"
        ));
        tokio::time::sleep(down).await;
        cluster.restart(process);
    }
    run.faults.push(fault);
}

/// Runs one seed of the bank workload on a fresh simulated cluster.
pub fn run_cluster_seed(seed: u64) -> ClusterRun {
    run_cluster_seed_recorded(seed, false).0
}

/// [`run_cluster_seed`], also returning every event of its trace with `keep_events` (to
/// find where two runs of a seed part: [`events::first_divergence`]).
pub fn run_cluster_seed_recorded(
    seed: u64,
    keep_events: bool,
) -> (ClusterRun, Option<Vec<String>>) {
    events::start(keep_events);
    let mut run = run_seed_on_fresh_cluster(seed);
    run.buggify_fired = ferrisdb_core::buggify::fired_on_this_thread();
    let recording = events::finish();
    let kept = recording.and_then(|recording| {
        run.trace = recording.hash;
        run.events = recording.events;
        recording.all
    });
    (run, kept)
}

fn run_seed_on_fresh_cluster(seed: u64) -> ClusterRun {
    let run = ClusterRun {
        seed,
        replicated: false,
        simulated: Duration::ZERO,
        transfers: 0,
        failed: 0,
        reads: 0,
        lists: Outcomes::default(),
        partitions: 0,
        kills: 0,
        power_cuts: 0,
        pauses: 0,
        clock_jumps: 0,
        disk_faults: 0,
        wipes: 0,
        failed_disk_calls: 0,
        supervised_restarts: 0,
        log_batches_compared: 0,
        storage_batches_checked: 0,
        faults: Vec::new(),
        network: NetStats::default(),
        failure: None,
        trace: 0,
        events: 0,
        buggify_fired: 0,
    };
    let failed = |mut run: ClusterRun, reason: String| {
        run.failure = Some(reason);
        run
    };
    let network = SimNetwork::new(seed);
    let _entered = network.enter();
    let runtime = match super::runtime(seed) {
        Ok(runtime) => runtime,
        Err(e) => return failed(run, format!("the simulation's runtime: {e}")),
    };
    let workload = workloads(seed, network.clone(), run.clone());
    let (mut run, result) =
        match runtime.block_on(async { run_clock(tokio::spawn(workload)).await }) {
            Ok(done) => done,
            Err(e) => return failed(run, format!("the workload panicked: {e}")),
        };
    // Dropping the runtime drops every simulated process's tasks.
    drop(runtime);
    run.network = network.stats();
    run.failure = result.err();
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `done` every 100 ms of simulated time for up to `limit`; whether it held.
    async fn eventually(limit: Duration, done: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while !done() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    }

    /// Commits one write through a fresh client of the cluster whose controllers are at
    /// `controllers`, retrying for up to 60 simulated seconds.
    async fn commit(controllers: String, key: &'static str) -> Result<(), String> {
        let committed = spawn_in(SETUP, async move {
            connect(&controllers)
                .run(|tx| async move {
                    tx.set(key, "v")?;
                    Ok(())
                })
                .await
        });
        match tokio::time::timeout(RECOVERY_LIMIT, committed).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(format!("committing {key}: {e}")),
            Ok(Err(e)) => Err(format!("committing {key}: {e}")),
            Err(_) => Err(format!("committing {key}: timed out")),
        }
    }

    #[test]
    fn a_controller_whose_journal_fills_up_exits_and_is_restarted_once_there_is_room() {
        let seed = 11;
        let network = SimNetwork::new(seed);
        let _entered = network.enter();
        let runtime = super::super::runtime(seed).unwrap();
        let scenario = async move {
            let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
            let cluster = SimCluster::start(network.clone(), seed, false, ended_tx);
            commit(cluster.controllers_target(), "before").await?;
            // The controller's disk is full; a recovery (the log server restarted) makes it
            // write to its Raft journal.
            let disk = cluster.disk(CONTROLLER).clone();
            cluster.set_disk_faults(
                CONTROLLER,
                Faults {
                    fsync_failure: 0.0,
                    capacity_bytes: Some(disk.stored_bytes()),
                },
            );
            cluster.kill(LOG, Death::Process);
            tokio::time::sleep(Duration::from_millis(300)).await;
            cluster.restart(LOG);
            if !eventually(Duration::from_secs(30), || {
                disk.stats().full_disk_writes > 0
            })
            .await
            {
                return Err("the controller never wrote to its full disk".to_string());
            }
            // It stays up, unhealthy, while the disk is full.
            tokio::time::sleep(Duration::from_secs(3)).await;
            if cluster.supervised_restarts() != 0 {
                return Err("the controller exited while its disk was still full".into());
            }
            cluster.set_disk_faults(CONTROLLER, Faults::default());
            if !eventually(Duration::from_secs(10), || {
                cluster.supervised_restarts() == 1
            })
            .await
            {
                return Err("the controller did not exit once its disk had room".into());
            }
            commit(cluster.controllers_target(), "after").await?;
            match ended.try_recv() {
                Ok(role) => Err(format!("a role ended: {role}")),
                Err(_) => Ok(()),
            }
        };
        let outcome = runtime.block_on(async { run_clock(tokio::spawn(scenario)).await });
        outcome.unwrap().unwrap();
    }
}
