//! Hand-built histories: each anomaly must be found, clean histories must pass.

use super::*;
use crate::history::OpType;

fn a(key: u64, value: u64) -> MicroOp {
    MicroOp::Append { key, value }
}

fn r(key: u64, list: &[u64]) -> MicroOp {
    MicroOp::Read {
        key,
        value: Some(list.to_vec()),
    }
}

/// The invocation form of micro-ops: reads unknown.
fn invoked(ops: &[MicroOp]) -> Vec<MicroOp> {
    ops.iter()
        .map(|op| match op {
            MicroOp::Read { key, .. } => MicroOp::Read {
                key: *key,
                value: None,
            },
            other => other.clone(),
        })
        .collect()
}

/// Builds histories: transactions in a group overlap in time (all invoked, then all
/// completed); groups follow one another.
#[derive(Default)]
struct Builder {
    h: History,
    next_process: u64,
}

impl Builder {
    fn group(&mut self, txns: &[(OpType, Vec<MicroOp>)]) -> &mut Self {
        let first = self.next_process;
        for (i, (_, ops)) in txns.iter().enumerate() {
            self.h
                .push(first + i as u64, 0, OpType::Invoke, invoked(ops));
        }
        for (i, (kind, ops)) in txns.iter().enumerate() {
            let value = if *kind == OpType::Ok {
                ops.clone()
            } else {
                invoked(ops)
            };
            self.h.push(first + i as u64, 0, *kind, value);
        }
        self.next_process += txns.len() as u64;
        self
    }

    fn ok(&mut self, ops: Vec<MicroOp>) -> &mut Self {
        self.group(&[(OpType::Ok, ops)])
    }

    fn anomalies(&self) -> Vec<Anomaly> {
        check(&self.h).expect("well-formed history").anomalies
    }
}

fn cycle_kinds(anomalies: &[Anomaly]) -> Vec<CycleKind> {
    anomalies
        .iter()
        .filter_map(|a| match a {
            Anomaly::Cycle { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect()
}

#[test]
fn a_serial_history_is_clean() {
    let mut b = Builder::default();
    b.ok(vec![a(1, 1), r(2, &[])])
        .ok(vec![r(1, &[1]), a(2, 1), a(1, 2)])
        .ok(vec![r(1, &[1, 2]), r(2, &[1])]);
    let report = check(&b.h).unwrap();
    assert_eq!(report.anomalies, vec![]);
    assert_eq!((report.ok, report.reads, report.appends), (3, 4, 3));
    assert!(report.edges > 0);
}

#[test]
fn concurrent_serializable_transactions_and_failures_are_clean() {
    let mut b = Builder::default();
    b.group(&[
        (OpType::Ok, vec![r(1, &[]), a(2, 1)]),
        (OpType::Ok, vec![r(2, &[1]), a(1, 1)]),
        (OpType::Fail, vec![a(3, 9)]),
        // An unknown outcome that did commit, and one that did not.
        (OpType::Info, vec![a(3, 1)]),
        (OpType::Info, vec![a(4, 1)]),
    ])
    .ok(vec![r(1, &[1]), r(2, &[1]), r(3, &[1]), r(4, &[])]);
    assert_eq!(b.anomalies(), vec![]);
}

#[test]
fn finds_g0_write_cycles() {
    let mut b = Builder::default();
    b.group(&[
        (OpType::Ok, vec![a(1, 1), a(2, 1)]),
        (OpType::Ok, vec![a(1, 2), a(2, 2)]),
    ])
    .ok(vec![r(1, &[1, 2]), r(2, &[2, 1])]);
    assert_eq!(cycle_kinds(&b.anomalies()), vec![CycleKind::G0]);
}

#[test]
fn an_unknown_outcome_transaction_that_was_seen_joins_cycles() {
    let mut b = Builder::default();
    b.group(&[
        (OpType::Info, vec![a(1, 1), a(2, 1)]),
        (OpType::Ok, vec![a(1, 2), a(2, 2)]),
    ])
    .ok(vec![r(1, &[1, 2]), r(2, &[2, 1])]);
    assert_eq!(cycle_kinds(&b.anomalies()), vec![CycleKind::G0]);
}

#[test]
fn finds_g1c_circular_information_flow() {
    let mut b = Builder::default();
    b.group(&[
        (OpType::Ok, vec![a(1, 1), r(2, &[2])]),
        (OpType::Ok, vec![a(2, 2), r(1, &[1])]),
    ]);
    let anomalies = b.anomalies();
    assert_eq!(cycle_kinds(&anomalies), vec![CycleKind::G1c]);
    assert!(
        matches!(&anomalies[0], Anomaly::Cycle { txns, .. } if txns.len() == 2),
        "{anomalies:?}"
    );
}

#[test]
fn finds_g_single_read_skew() {
    let mut b = Builder::default();
    b.group(&[
        (OpType::Ok, vec![r(1, &[]), r(2, &[2])]),
        (OpType::Ok, vec![a(1, 1), a(2, 2)]),
    ])
    .ok(vec![r(1, &[1]), r(2, &[2])]);
    assert_eq!(cycle_kinds(&b.anomalies()), vec![CycleKind::GSingle]);
}

#[test]
fn finds_g2_write_skew() {
    let mut b = Builder::default();
    b.group(&[
        (OpType::Ok, vec![r(1, &[]), a(2, 1)]),
        (OpType::Ok, vec![r(2, &[]), a(1, 2)]),
    ])
    .ok(vec![r(1, &[2]), r(2, &[1])]);
    assert_eq!(cycle_kinds(&b.anomalies()), vec![CycleKind::G2]);
}

#[test]
fn finds_g1a_aborted_reads() {
    let mut b = Builder::default();
    b.group(&[
        (OpType::Fail, vec![a(1, 1)]),
        (OpType::Ok, vec![r(1, &[1])]),
    ]);
    assert_eq!(
        b.anomalies(),
        vec![Anomaly::G1a {
            key: 1,
            element: 1,
            writer: 0,
            reader: 1
        }]
    );
}

#[test]
fn finds_g1b_intermediate_reads() {
    let mut b = Builder::default();
    b.group(&[
        (OpType::Ok, vec![a(1, 1), a(1, 2)]),
        (OpType::Ok, vec![r(1, &[1])]),
    ]);
    assert_eq!(
        b.anomalies(),
        vec![Anomaly::G1b {
            key: 1,
            element: 1,
            writer: 0,
            reader: 1
        }]
    );
    // Reading the writer's final append is fine, and so is its own intermediate state.
    let mut b = Builder::default();
    b.group(&[
        (OpType::Ok, vec![a(1, 1), a(1, 2)]),
        (OpType::Ok, vec![r(1, &[1, 2])]),
    ]);
    assert_eq!(b.anomalies(), vec![]);
}

#[test]
fn finds_lost_appends_and_stale_reads() {
    let mut b = Builder::default();
    b.ok(vec![a(1, 1)]).ok(vec![r(1, &[])]);
    assert_eq!(
        b.anomalies(),
        vec![Anomaly::LostAppend {
            key: 1,
            element: 1,
            writer: 0
        }]
    );
    let mut b = Builder::default();
    b.ok(vec![a(1, 1)]).ok(vec![r(1, &[])]).ok(vec![r(1, &[1])]);
    assert_eq!(
        b.anomalies(),
        vec![Anomaly::StaleRead {
            key: 1,
            element: 1,
            writer: 0,
            reader: 2
        }]
    );
    // A concurrent read may miss an append that was not yet acknowledged.
    let mut b = Builder::default();
    b.group(&[(OpType::Ok, vec![a(1, 1)]), (OpType::Ok, vec![r(1, &[])])]);
    assert_eq!(b.anomalies(), vec![]);
}

#[test]
fn finds_incompatible_orders_duplicates_and_garbage() {
    let mut b = Builder::default();
    b.group(&[
        (OpType::Ok, vec![a(1, 1)]),
        (OpType::Ok, vec![a(1, 2)]),
        (OpType::Ok, vec![r(1, &[1, 2])]),
        (OpType::Ok, vec![r(1, &[2])]),
    ]);
    assert!(
        b.anomalies().contains(&Anomaly::IncompatibleOrder {
            key: 1,
            longest: vec![1, 2],
            other: vec![2]
        }),
        "{:?}",
        b.anomalies()
    );
    let mut b = Builder::default();
    b.group(&[
        (OpType::Ok, vec![a(1, 1)]),
        (OpType::Ok, vec![r(1, &[1, 1, 9])]),
    ]);
    assert_eq!(
        b.anomalies(),
        vec![
            Anomaly::Duplicate {
                key: 1,
                element: 1,
                reader: 1
            },
            Anomaly::Garbage {
                key: 1,
                element: 9,
                reader: 1
            },
        ]
    );
    let mut b = Builder::default();
    b.group(&[(OpType::Ok, vec![a(1, 1)]), (OpType::Info, vec![a(1, 1)])]);
    assert_eq!(
        b.anomalies(),
        vec![Anomaly::DuplicateAppend { key: 1, element: 1 }]
    );
}
