//! An Elle-style checker for list-append histories.
//!
//! Every key holds a list; transactions append unique elements and read whole lists. Because
//! each element is unique and lists only grow, a read names exactly which appends it saw, in
//! order. The checker ([`check`]):
//!
//! 1. indexes every append: element → (transaction, is it the transaction's last append to
//!    the key);
//! 2. checks every read of a committed transaction: no element twice (duplicate), no element
//!    nobody appended, none appended by a failed transaction (G1a), its last element not an
//!    intermediate append of another transaction (G1b), and every append acknowledged before
//!    the read began present (else a *stale read*, or a *lost append* when even the longest
//!    read of the key lacks it);
//! 3. infers each key's version order: the longest read; every other read must be a prefix of
//!    it (else *incompatible order*);
//! 4. builds the dependency graph over committed and unknown-outcome transactions (`graph`):
//!    ww between consecutive appends of a key's order, wr from the writer of a read's last
//!    element to the reader, rw from a reader to the writer of the element following what it
//!    read; then reports every cycle, classified G0 / G1c / G-single / G2.
//!
//! Appends of unknown-outcome (`info`) transactions may or may not be visible; when one is
//! seen, its transaction is treated as committed. Reads are only trusted from `ok`
//! transactions.

pub mod graph;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::history::{History, HistoryError, MicroOp, Outcome, Txn};
pub use graph::{CycleKind, Graph};

/// One anomaly found in a history. Transactions are named by their invocation's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    /// Two reads of a key are not prefixes of one another: no single order of appends.
    IncompatibleOrder {
        /// The key.
        key: u64,
        /// The longest read.
        longest: Vec<u64>,
        /// A read that is not a prefix of it.
        other: Vec<u64>,
    },
    /// An element appears twice in one read.
    Duplicate {
        /// The key.
        key: u64,
        /// The element.
        element: u64,
        /// The reading transaction.
        reader: usize,
    },
    /// The same element was appended by two operations (a workload bug).
    DuplicateAppend {
        /// The key.
        key: u64,
        /// The element.
        element: u64,
    },
    /// A read saw an element nobody appended.
    Garbage {
        /// The key.
        key: u64,
        /// The element.
        element: u64,
        /// The reading transaction.
        reader: usize,
    },
    /// Aborted read: a read saw an append of a transaction that failed.
    G1a {
        /// The key.
        key: u64,
        /// The element.
        element: u64,
        /// The failed writer.
        writer: usize,
        /// The reader.
        reader: usize,
    },
    /// Intermediate read: a read ended with an append its writer followed with another one
    /// to the same key.
    G1b {
        /// The key.
        key: u64,
        /// The intermediate element.
        element: u64,
        /// The writer.
        writer: usize,
        /// The reader.
        reader: usize,
    },
    /// An acknowledged append missing from every read of its key, though a read began after
    /// it was acknowledged.
    LostAppend {
        /// The key.
        key: u64,
        /// The element.
        element: u64,
        /// The writer.
        writer: usize,
    },
    /// A read that began after an append was acknowledged did not see it (the append is
    /// seen by other reads): a real-time (strict serializability) violation.
    StaleRead {
        /// The key.
        key: u64,
        /// The element missed.
        element: u64,
        /// The writer.
        writer: usize,
        /// The reader.
        reader: usize,
    },
    /// A dependency cycle.
    Cycle {
        /// Its name.
        kind: CycleKind,
        /// The transactions on the cycle, in order (the last depends back on the first).
        txns: Vec<usize>,
    },
}

impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Anomaly::IncompatibleOrder {
                key,
                longest,
                other,
            } => write!(
                f,
                "incompatible order on key {key}: {other:?} vs {longest:?}"
            ),
            Anomaly::Duplicate {
                key,
                element,
                reader,
            } => write!(f, "txn {reader} read {element} twice in key {key}"),
            Anomaly::DuplicateAppend { key, element } => {
                write!(f, "element {element} appended twice to key {key}")
            }
            Anomaly::Garbage {
                key,
                element,
                reader,
            } => write!(
                f,
                "txn {reader} read {element} in key {key}, never appended"
            ),
            Anomaly::G1a {
                key,
                element,
                writer,
                reader,
            } => write!(
                f,
                "G1a: txn {reader} read {element} in key {key}, appended by failed txn {writer}"
            ),
            Anomaly::G1b {
                key,
                element,
                writer,
                reader,
            } => write!(
                f,
                "G1b: txn {reader} read intermediate append {element} of txn {writer} in key {key}"
            ),
            Anomaly::LostAppend {
                key,
                element,
                writer,
            } => write!(
                f,
                "lost append: {element} acknowledged by txn {writer} missing from key {key}"
            ),
            Anomaly::StaleRead {
                key,
                element,
                writer,
                reader,
            } => write!(
                f,
                "stale read: txn {reader} began after txn {writer} appended {element} to key \
                 {key} and did not see it"
            ),
            Anomaly::Cycle { kind, txns } => write!(f, "{kind} cycle through txns {txns:?}"),
        }
    }
}

/// What the checker looked at and what it found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Transactions that committed.
    pub ok: usize,
    /// Transactions that definitely failed.
    pub failed: usize,
    /// Transactions with an unknown outcome.
    pub info: usize,
    /// Reads checked (of committed transactions).
    pub reads: usize,
    /// Appends in the history.
    pub appends: usize,
    /// Edges of the dependency graph.
    pub edges: usize,
    /// Every anomaly.
    pub anomalies: Vec<Anomaly>,
}

/// Where an element came from.
#[derive(Debug, Clone, Copy)]
struct Append {
    txn: usize,
    /// Not the writer's last append to this key.
    intermediate: bool,
}

/// A read of a committed transaction.
struct Read<'a> {
    txn: usize,
    key: u64,
    list: &'a [u64],
}

/// Checks a list-append history.
pub fn check(history: &History) -> Result<Report, HistoryError> {
    let txns = history.transactions()?;
    let mut report = Report::default();
    for t in &txns {
        match t.outcome {
            Outcome::Ok => report.ok += 1,
            Outcome::Fail => report.failed += 1,
            Outcome::Info => report.info += 1,
        }
    }
    let appends = index_appends(&txns, &mut report);
    let reads: Vec<Read<'_>> = txns
        .iter()
        .enumerate()
        .filter(|(_, t)| t.outcome == Outcome::Ok)
        .flat_map(|(i, t)| {
            t.ops.iter().filter_map(move |op| match op {
                MicroOp::Read {
                    key,
                    value: Some(list),
                } => Some(Read {
                    txn: i,
                    key: *key,
                    list,
                }),
                _ => None,
            })
        })
        .collect();
    report.reads = reads.len();
    let name = |i: usize| txns[i].invoke_index;

    let orders = version_orders(&reads, &mut report);
    for r in &reads {
        check_read(r, &txns, &appends, &mut report);
    }
    check_realtime(&txns, &reads, &orders, &mut report);

    let graph = dependencies(&txns, &appends, &reads, &orders);
    report.edges = graph.edge_count();
    for component in graph.all_cyclic_components() {
        if let Some((kind, cycle)) = graph.classify(&component) {
            report.anomalies.push(Anomaly::Cycle {
                kind,
                txns: cycle.into_iter().map(name).collect(),
            });
        }
    }
    Ok(report)
}

/// Element → where it was appended; reports elements appended twice.
fn index_appends(txns: &[Txn], report: &mut Report) -> HashMap<(u64, u64), Append> {
    let mut appends = HashMap::new();
    for (i, t) in txns.iter().enumerate() {
        let mut last: HashMap<u64, u64> = HashMap::new();
        for op in &t.ops {
            if let MicroOp::Append { key, value } = op {
                last.insert(*key, *value);
            }
        }
        for op in &t.ops {
            if let MicroOp::Append { key, value } = op {
                report.appends += 1;
                let a = Append {
                    txn: i,
                    intermediate: last.get(key) != Some(value),
                };
                if appends.insert((*key, *value), a).is_some() {
                    report.anomalies.push(Anomaly::DuplicateAppend {
                        key: *key,
                        element: *value,
                    });
                }
            }
        }
    }
    appends
}

/// Each key's order of appends: its longest read; reports reads that are not a prefix of it.
fn version_orders<'a>(reads: &[Read<'a>], report: &mut Report) -> BTreeMap<u64, &'a [u64]> {
    let mut orders: BTreeMap<u64, &'a [u64]> = BTreeMap::new();
    for r in reads {
        let longest = orders.entry(r.key).or_insert(r.list);
        if r.list.len() > longest.len() {
            *longest = r.list;
        }
    }
    let mut reported = HashSet::new();
    for r in reads {
        let longest = orders[&r.key];
        if !longest.starts_with(r.list) && reported.insert((r.key, r.list.to_vec())) {
            report.anomalies.push(Anomaly::IncompatibleOrder {
                key: r.key,
                longest: longest.to_vec(),
                other: r.list.to_vec(),
            });
        }
    }
    orders
}

/// Duplicates, garbage, G1a and G1b in one read.
fn check_read(
    r: &Read<'_>,
    txns: &[Txn],
    appends: &HashMap<(u64, u64), Append>,
    report: &mut Report,
) {
    let reader = txns[r.txn].invoke_index;
    let mut seen = HashSet::new();
    for &element in r.list {
        if !seen.insert(element) {
            report.anomalies.push(Anomaly::Duplicate {
                key: r.key,
                element,
                reader,
            });
        }
        match appends.get(&(r.key, element)) {
            None => report.anomalies.push(Anomaly::Garbage {
                key: r.key,
                element,
                reader,
            }),
            Some(a) if txns[a.txn].outcome == Outcome::Fail => {
                report.anomalies.push(Anomaly::G1a {
                    key: r.key,
                    element,
                    writer: txns[a.txn].invoke_index,
                    reader,
                })
            }
            Some(_) => {}
        }
    }
    if let Some(&element) = r.list.last()
        && let Some(a) = appends.get(&(r.key, element))
        && a.intermediate
        && a.txn != r.txn
    {
        report.anomalies.push(Anomaly::G1b {
            key: r.key,
            element,
            writer: txns[a.txn].invoke_index,
            reader,
        });
    }
}

/// Every append acknowledged before a read began must be in that read.
fn check_realtime(
    txns: &[Txn],
    reads: &[Read<'_>],
    orders: &BTreeMap<u64, &[u64]>,
    report: &mut Report,
) {
    // Per key: (completion index, element, writer) of acknowledged appends.
    let mut acked: BTreeMap<u64, Vec<(usize, u64, usize)>> = BTreeMap::new();
    for (i, t) in txns.iter().enumerate() {
        if let (Outcome::Ok, Some(done)) = (t.outcome, t.complete_index) {
            for op in &t.ops {
                if let MicroOp::Append { key, value } = op {
                    acked.entry(*key).or_default().push((done, *value, i));
                }
            }
        }
    }
    let mut lost = HashSet::new();
    for list in acked.values_mut() {
        list.sort_unstable();
    }
    for r in reads {
        let Some(list) = acked.get(&r.key) else {
            continue;
        };
        let began = txns[r.txn].invoke_index;
        let seen: HashSet<u64> = r.list.iter().copied().collect();
        let final_order: HashSet<u64> = orders
            .get(&r.key)
            .map(|o| o.iter().copied().collect())
            .unwrap_or_default();
        for &(_, element, writer) in list.iter().take_while(|(done, _, _)| *done < began) {
            if seen.contains(&element) {
                continue;
            }
            let writer = txns[writer].invoke_index;
            if !final_order.contains(&element) {
                if lost.insert((r.key, element)) {
                    report.anomalies.push(Anomaly::LostAppend {
                        key: r.key,
                        element,
                        writer,
                    });
                }
            } else {
                report.anomalies.push(Anomaly::StaleRead {
                    key: r.key,
                    element,
                    writer,
                    reader: txns[r.txn].invoke_index,
                });
            }
        }
    }
}

/// The ww, wr and rw edges between committed (and seen unknown-outcome) transactions.
fn dependencies(
    txns: &[Txn],
    appends: &HashMap<(u64, u64), Append>,
    reads: &[Read<'_>],
    orders: &BTreeMap<u64, &[u64]>,
) -> Graph {
    let writer = |key: u64, element: u64| {
        appends
            .get(&(key, element))
            .map(|a| a.txn)
            .filter(|&t| txns[t].outcome != Outcome::Fail)
    };
    let mut graph = Graph::default();
    for (&key, order) in orders {
        for pair in order.windows(2) {
            if let (Some(a), Some(b)) = (writer(key, pair[0]), writer(key, pair[1])) {
                graph.add(a, b, graph::WW);
            }
        }
    }
    for r in reads {
        if let Some(w) = r.list.last().and_then(|&e| writer(r.key, e)) {
            graph.add(w, r.txn, graph::WR);
        }
        let order = orders.get(&r.key).copied().unwrap_or_default();
        if order.starts_with(r.list)
            && let Some(w) = order.get(r.list.len()).and_then(|&e| writer(r.key, e))
        {
            graph.add(r.txn, w, graph::RW);
        }
    }
    graph
}
