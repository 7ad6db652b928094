//! The human-readable form of a status [`Report`]: a summary, then tables of processes,
//! storage servers and shards, then any problems.

use super::Report;
use crate::cli::table::{Table, bytes, duration, opt};

/// The report as text, ready to print.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let state = if r.healthy { "HEALTHY" } else { "DEGRADED" };
    out.push_str(&format!(
        "Cluster {}  {state}  (controller {})\n",
        if r.cluster_id.is_empty() {
            "(unknown id)"
        } else {
            &r.cluster_id
        },
        r.controller
    ));
    let reachable = r
        .controllers
        .iter()
        .filter(|c| c.role != "unreachable")
        .count();
    let leader = r.controllers.iter().find(|c| c.role == "leader");
    out.push_str(&format!(
        "  Controllers:       {reachable} of {} replicas reachable, leader {}{}\n",
        r.controllers.len(),
        leader.map_or("unknown", |c| c.address.as_str()),
        leader
            .filter(|c| c.term > 0)
            .map_or(String::new(), |c| format!(" (term {})", c.term)),
    ));
    let full = r.shards.iter().filter(|s| s.fully_replicated).count();
    out.push_str(&format!(
        "  Replication:       {} replicas per shard, {full}/{} shards fully replicated, fault tolerance {}\n",
        r.replication,
        r.shards.len(),
        r.fault_tolerance
            .map_or_else(|| "none".into(), |f| format!("{f} storage server(s)"))
    ));
    let moving = r.shards.iter().filter(|s| !s.moving_to.is_empty()).count();
    if moving > 0 {
        out.push_str(&format!(
            "  Data distribution: {moving} shard(s) moving to new replicas\n"
        ));
    }
    out.push_str(&format!("  Latest version:    {}\n", opt(r.latest_version)));
    out.push_str(&format!(
        "  Generation:        {}, {}{}{}\n",
        r.generation,
        if r.recovery_state.is_empty() {
            "no recovery yet"
        } else {
            r.recovery_state.as_str()
        },
        r.last_recovery_ms
            .map_or(String::new(), |ms| format!(", last recovery took {ms} ms")),
        if r.recovery_reason.is_empty() {
            String::new()
        } else {
            format!(" (the last recovery began because: {})", r.recovery_reason)
        },
    ));
    if let Some(c) = &r.coordinator {
        out.push_str(&format!(
            "  Coordinator:       {} commits/s, {} txns/batch, log {}\n",
            c.commits_per_second
                .map_or("-".into(), |v| format!("{v:.1}")),
            c.avg_batch_size.map_or("-".into(), |v| format!("{v:.2}")),
            c.log_bytes.map_or("-".into(), bytes),
        ));
        if let Some(s) = c.commit_stage_means_us {
            out.push_str(&format!(
                "  Commit stages:     queue {:.0} µs, resolve {:.0} µs, durable {:.0} µs, reply {:.0} µs (mean per commit)\n",
                s.queue, s.resolve, s.durable, s.reply
            ));
        }
    }

    let mut procs = Table::new(&["ROLE", "ID", "ADDRESS", "HEALTH", "UPTIME", "LAST SEEN"]);
    for p in &r.processes {
        procs.row(vec![
            if p.standby {
                format!("{} (standby)", p.role)
            } else {
                p.role.clone()
            },
            if p.id.is_empty() {
                "-".into()
            } else {
                p.id.clone()
            },
            p.address.clone(),
            if p.healthy { "healthy" } else { "UNHEALTHY" }.into(),
            p.uptime_seconds.map_or("-".into(), duration),
            p.ms_since_heartbeat.map_or("-".into(), |ms| {
                format!("{} ago", duration(ms as f64 / 1000.0))
            }),
        ]);
    }
    out.push_str("\nProcesses:\n");
    out.push_str(&procs.render(2));

    let mut storage = Table::new(&[
        "ID", "ADDRESS", "APPLIED", "DURABLE", "LAG", "DATA", "SHARDS",
    ]);
    for s in &r.storage_servers {
        storage.row(vec![
            s.id.clone(),
            s.address.clone(),
            opt(s.applied_version),
            opt(s.durable_version),
            s.lag_seconds.map_or("-".into(), |l| format!("{l:.2}s")),
            s.data_bytes.map_or("-".into(), bytes),
            format!(
                "{}{}{}",
                s.shards,
                if s.incoming_shards > 0 {
                    format!(" (+{} incoming)", s.incoming_shards)
                } else {
                    String::new()
                },
                if s.excluded { " excluded" } else { "" }
            ),
        ]);
    }
    if !r.log_servers.is_empty() {
        let mut logs = Table::new(&[
            "ID",
            "ADDRESS",
            "GENERATION",
            "LOCKED AT",
            "DURABLE",
            "COMMITTED",
            "HELD",
        ]);
        for l in &r.log_servers {
            logs.row(vec![
                l.id.clone(),
                l.address.clone(),
                if l.in_generation { "current" } else { "-" }.into(),
                opt(l.locked_epoch),
                opt(l.durable_version),
                opt(l.known_committed),
                l.retained_bytes.map_or("-".into(), bytes),
            ]);
        }
        out.push_str("\nLog servers:\n");
        out.push_str(&logs.render(2));
    }
    out.push_str("\nStorage servers:\n");
    out.push_str(&storage.render(2));

    let mut shards = Table::new(&[
        "BEGIN",
        "END",
        "REPLICAS",
        "HEALTHY",
        "REPLICATION",
        "BYTES",
        "MOVING TO",
    ]);
    for s in &r.shards {
        shards.row(vec![
            format!("\"{}\"", s.begin),
            if s.end.is_empty() {
                "(end)".into()
            } else {
                format!("\"{}\"", s.end)
            },
            s.replicas.join(","),
            format!("{}/{}", s.healthy_replicas, s.replicas.len()),
            if s.fully_replicated {
                "full"
            } else {
                "DEGRADED"
            }
            .into(),
            s.bytes.map_or("-".into(), bytes),
            match (&s.move_progress, s.moving_to.is_empty()) {
                (_, true) => "-".into(),
                (None, false) => s.moving_to.join(","),
                (Some(p), false) if p.stage == "fetching" => format!(
                    "{} (fetching: {}{})",
                    s.moving_to.join(","),
                    bytes(p.fetched_bytes),
                    s.bytes
                        .map(|b| format!(" of ~{}", bytes(b)))
                        .unwrap_or_default()
                ),
                (Some(p), false) => format!(
                    "{} ({}, {} fetched)",
                    s.moving_to.join(","),
                    p.stage,
                    bytes(p.fetched_bytes)
                ),
            },
        ]);
    }
    out.push_str(&format!(
        "\nShards (map version {}):\n",
        r.shard_map_version
    ));
    out.push_str(&shards.render(2));

    if !r.messages.is_empty() {
        out.push_str("\nProblems:\n");
        for m in &r.messages {
            out.push_str(&format!("  - {m}\n"));
        }
    }
    out
}
