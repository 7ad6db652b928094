//! The bank invariant: every read of all accounts in one snapshot sees every account, the
//! same total, and no negative balance. Transfers move money between two accounts inside one
//! transaction, so any other total means a transaction was seen half-applied (or a write was
//! lost or applied twice).

/// One read of every account in one transaction: `balances[i]` is account `i` (`None`: the
/// account key was absent).
pub type BankRead = Vec<Option<i64>>;

/// A broken bank invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BankAnomaly {
    /// The accounts of a read did not add up to the expected total.
    WrongTotal {
        /// Index of the read among those checked.
        read: usize,
        /// The total it saw.
        total: i64,
        /// The total every read must see.
        expected: i64,
    },
    /// A balance below zero.
    Negative {
        /// Index of the read.
        read: usize,
        /// The account.
        account: usize,
        /// Its balance.
        balance: i64,
    },
    /// An account was absent (or the read saw the wrong number of accounts).
    Missing {
        /// Index of the read.
        read: usize,
        /// The account.
        account: usize,
    },
}

impl std::fmt::Display for BankAnomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BankAnomaly::WrongTotal {
                read,
                total,
                expected,
            } => write!(f, "bank read {read}: total {total}, expected {expected}"),
            BankAnomaly::Negative {
                read,
                account,
                balance,
            } => write!(
                f,
                "bank read {read}: account {account} is negative ({balance})"
            ),
            BankAnomaly::Missing { read, account } => {
                write!(f, "bank read {read}: account {account} is missing")
            }
        }
    }
}

/// Checks reads of `accounts` accounts that must each sum to `expected`.
pub fn check_bank(accounts: usize, expected: i64, reads: &[BankRead]) -> Vec<BankAnomaly> {
    let mut anomalies = Vec::new();
    for (read, balances) in reads.iter().enumerate() {
        let mut total: i64 = 0;
        for account in 0..accounts.max(balances.len()) {
            match balances.get(account).copied().flatten() {
                Some(balance) if account < accounts => {
                    if balance < 0 {
                        anomalies.push(BankAnomaly::Negative {
                            read,
                            account,
                            balance,
                        });
                    }
                    total = total.saturating_add(balance);
                }
                _ => anomalies.push(BankAnomaly::Missing { read, account }),
            }
        }
        if total != expected {
            anomalies.push(BankAnomaly::WrongTotal {
                read,
                total,
                expected,
            });
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistent_reads_pass() {
        let reads = vec![
            vec![Some(10), Some(10), Some(10)],
            vec![Some(0), Some(25), Some(5)],
        ];
        assert_eq!(check_bank(3, 30, &reads), vec![]);
    }

    #[test]
    fn finds_a_wrong_total_a_negative_balance_and_a_missing_account() {
        let reads = vec![
            vec![Some(10), Some(10), Some(11)],
            vec![Some(-5), Some(25), Some(10)],
            vec![Some(10), None, Some(20)],
        ];
        assert_eq!(
            check_bank(3, 30, &reads),
            vec![
                BankAnomaly::WrongTotal {
                    read: 0,
                    total: 31,
                    expected: 30
                },
                BankAnomaly::Negative {
                    read: 1,
                    account: 0,
                    balance: -5
                },
                BankAnomaly::Missing {
                    read: 2,
                    account: 1
                },
            ]
        );
    }

    #[test]
    fn a_read_of_too_few_or_too_many_accounts_is_reported() {
        let short = vec![vec![Some(30), Some(0)]];
        assert_eq!(
            check_bank(3, 30, &short),
            vec![BankAnomaly::Missing {
                read: 0,
                account: 2
            }]
        );
        let long = vec![vec![Some(30), Some(0), Some(0), Some(0)]];
        assert_eq!(
            check_bank(3, 30, &long),
            vec![BankAnomaly::Missing {
                read: 0,
                account: 3
            }]
        );
    }
}
