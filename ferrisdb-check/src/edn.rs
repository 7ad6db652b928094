//! Export of a [`History`] in Jepsen's EDN format, one map per line, as Elle reads it:
//! `{:type :invoke, :f :txn, :value [[:append 3 1] [:r 4 nil]], :process 0, :time 123,
//! :index 0}`. Times are nanoseconds since the history began.

use std::fmt::Write;

use crate::history::{History, MicroOp, Op, OpType};

/// The whole history as EDN text, one operation per line.
pub fn to_edn(history: &History) -> String {
    let mut out = String::new();
    for op in history.ops() {
        write_op(&mut out, op);
        out.push('\n');
    }
    out
}

fn write_op(out: &mut String, op: &Op) {
    let kind = match op.kind {
        OpType::Invoke => "invoke",
        OpType::Ok => "ok",
        OpType::Fail => "fail",
        OpType::Info => "info",
    };
    let _ = write!(out, "{{:type :{kind}, :f :txn, :value [");
    for (i, micro) in op.value.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        match micro {
            MicroOp::Append { key, value } => {
                let _ = write!(out, "[:append {key} {value}]");
            }
            MicroOp::Read { key, value: None } => {
                let _ = write!(out, "[:r {key} nil]");
            }
            MicroOp::Read {
                key,
                value: Some(list),
            } => {
                let _ = write!(out, "[:r {key} [");
                for (j, e) in list.iter().enumerate() {
                    if j > 0 {
                        out.push(' ');
                    }
                    let _ = write!(out, "{e}");
                }
                out.push_str("]]");
            }
        }
    }
    let _ = write!(
        out,
        "], :process {}, :time {}, :index {}}}",
        op.process, op.time, op.index
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_exact_jepsen_text() {
        let mut h = History::new();
        let invoke = vec![
            MicroOp::Append { key: 3, value: 1 },
            MicroOp::Read {
                key: 4,
                value: None,
            },
        ];
        h.push(0, 123, OpType::Invoke, invoke.clone());
        h.push(
            0,
            456,
            OpType::Ok,
            vec![
                MicroOp::Append { key: 3, value: 1 },
                MicroOp::Read {
                    key: 4,
                    value: Some(vec![7, 8]),
                },
            ],
        );
        h.push(
            1,
            500,
            OpType::Invoke,
            vec![MicroOp::Read {
                key: 4,
                value: None,
            }],
        );
        h.push(
            1,
            600,
            OpType::Ok,
            vec![MicroOp::Read {
                key: 4,
                value: Some(vec![]),
            }],
        );
        h.push(2, 700, OpType::Invoke, invoke.clone());
        h.push(2, 800, OpType::Info, invoke.clone());
        h.push(3, 900, OpType::Invoke, invoke.clone());
        h.push(3, 901, OpType::Fail, invoke);
        assert_eq!(
            to_edn(&h),
            "{:type :invoke, :f :txn, :value [[:append 3 1] [:r 4 nil]], :process 0, :time 123, :index 0}\n\
             {:type :ok, :f :txn, :value [[:append 3 1] [:r 4 [7 8]]], :process 0, :time 456, :index 1}\n\
             {:type :invoke, :f :txn, :value [[:r 4 nil]], :process 1, :time 500, :index 2}\n\
             {:type :ok, :f :txn, :value [[:r 4 []]], :process 1, :time 600, :index 3}\n\
             {:type :invoke, :f :txn, :value [[:append 3 1] [:r 4 nil]], :process 2, :time 700, :index 4}\n\
             {:type :info, :f :txn, :value [[:append 3 1] [:r 4 nil]], :process 2, :time 800, :index 5}\n\
             {:type :invoke, :f :txn, :value [[:append 3 1] [:r 4 nil]], :process 3, :time 900, :index 6}\n\
             {:type :fail, :f :txn, :value [[:append 3 1] [:r 4 nil]], :process 3, :time 901, :index 7}\n"
        );
    }

    #[test]
    fn an_empty_history_is_empty_text() {
        assert_eq!(to_edn(&History::new()), "");
    }
}
