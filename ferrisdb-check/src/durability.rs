//! Durability of tagged multi-key writes: each write puts its unique tag under several keys
//! in one transaction. At the end, an acknowledged write must be found under all its keys; a
//! write whose commit outcome is unknown under all or none; a write that definitely failed
//! under none. "Found" means the key holds exactly this write's value (the caller compares).

use crate::history::Outcome;

/// One tagged write and what the final reads found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedWrite {
    /// The unique tag.
    pub tag: u64,
    /// How the client saw the commit end.
    pub outcome: Outcome,
    /// For each key the write set: whether the final read found this write's value there.
    pub found: Vec<bool>,
}

/// A durability violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurabilityAnomaly {
    /// An acknowledged write is missing under some keys (listed by position).
    Lost {
        /// The write's tag.
        tag: u64,
        /// Positions of the keys without it.
        missing: Vec<usize>,
    },
    /// A commit-unknown write is present under some keys and absent under others.
    Partial {
        /// The write's tag.
        tag: u64,
        /// Positions of the keys without it.
        missing: Vec<usize>,
    },
    /// A write that definitely failed is visible.
    FailedVisible {
        /// The write's tag.
        tag: u64,
    },
}

impl std::fmt::Display for DurabilityAnomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DurabilityAnomaly::Lost { tag, missing } => {
                write!(f, "acknowledged write {tag} lost under keys {missing:?}")
            }
            DurabilityAnomaly::Partial { tag, missing } => write!(
                f,
                "commit-unknown write {tag} partly applied (missing under keys {missing:?})"
            ),
            DurabilityAnomaly::FailedVisible { tag } => {
                write!(f, "failed write {tag} is visible")
            }
        }
    }
}

/// Summary of a durability check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurabilityReport {
    /// Acknowledged writes checked.
    pub acknowledged: usize,
    /// Commit-unknown writes found wholly present.
    pub unknown_present: usize,
    /// Commit-unknown writes found wholly absent.
    pub unknown_absent: usize,
    /// Definitely failed writes checked.
    pub failed: usize,
    /// Every violation.
    pub anomalies: Vec<DurabilityAnomaly>,
}

impl DurabilityReport {
    /// Acknowledged writes lost (wholly or partly).
    pub fn lost(&self) -> usize {
        self.anomalies
            .iter()
            .filter(|a| matches!(a, DurabilityAnomaly::Lost { .. }))
            .count()
    }
}

/// Checks every tagged write.
pub fn check_durability(writes: &[TaggedWrite]) -> DurabilityReport {
    let mut report = DurabilityReport::default();
    for w in writes {
        let missing: Vec<usize> = (0..w.found.len()).filter(|&i| !w.found[i]).collect();
        match w.outcome {
            Outcome::Ok => {
                report.acknowledged += 1;
                if !missing.is_empty() {
                    report.anomalies.push(DurabilityAnomaly::Lost {
                        tag: w.tag,
                        missing,
                    });
                }
            }
            Outcome::Info if missing.is_empty() => report.unknown_present += 1,
            Outcome::Info if missing.len() == w.found.len() => report.unknown_absent += 1,
            Outcome::Info => report.anomalies.push(DurabilityAnomaly::Partial {
                tag: w.tag,
                missing,
            }),
            Outcome::Fail => {
                report.failed += 1;
                if missing.len() != w.found.len() {
                    report
                        .anomalies
                        .push(DurabilityAnomaly::FailedVisible { tag: w.tag });
                }
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(tag: u64, outcome: Outcome, found: &[bool]) -> TaggedWrite {
        TaggedWrite {
            tag,
            outcome,
            found: found.to_vec(),
        }
    }

    #[test]
    fn whole_writes_pass() {
        let r = check_durability(&[
            w(1, Outcome::Ok, &[true, true, true]),
            w(2, Outcome::Info, &[true, true, true]),
            w(3, Outcome::Info, &[false, false, false]),
            w(4, Outcome::Fail, &[false, false, false]),
        ]);
        assert_eq!(r.anomalies, vec![]);
        assert_eq!(
            (
                r.acknowledged,
                r.unknown_present,
                r.unknown_absent,
                r.failed
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(r.lost(), 0);
    }

    #[test]
    fn finds_lost_partial_and_visible_failed_writes() {
        let r = check_durability(&[
            w(1, Outcome::Ok, &[true, false, true]),
            w(2, Outcome::Ok, &[false, false, false]),
            w(3, Outcome::Info, &[true, false, false]),
            w(4, Outcome::Fail, &[false, true, false]),
        ]);
        assert_eq!(
            r.anomalies,
            vec![
                DurabilityAnomaly::Lost {
                    tag: 1,
                    missing: vec![1]
                },
                DurabilityAnomaly::Lost {
                    tag: 2,
                    missing: vec![0, 1, 2]
                },
                DurabilityAnomaly::Partial {
                    tag: 3,
                    missing: vec![1, 2]
                },
                DurabilityAnomaly::FailedVisible { tag: 4 },
            ]
        );
        assert_eq!(r.lost(), 2);
    }
}
