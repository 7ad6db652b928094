//! An event log ordered by commit: concurrent writers append events under keys that hold
//! their transaction's versionstamp, so the log reads back in exactly the order the events
//! committed, with no counter to contend on and no coordination between writers.
//!
//! `cargo run -p ferrisdb-client --example event_log -- --controller 127.0.0.1:4500`
//!
//! Each append packs `("event_log", <incomplete versionstamp>)` with
//! `tuple::pack_with_versionstamp` and writes it with `set_versionstamped_key`; the commit
//! fills the stamp in. Appends use `AutomaticIdempotency`, so an append retried after an
//! unknown commit result is written once. The logic lives in [`append_and_read`] so the
//! end-to-end tests run it against a real cluster.

#[path = "common/mod.rs"]
mod common;

use bytes::Bytes;
use ferrisdb_client::tuple::{self, Element, Subspace, Versionstamp};
use ferrisdb_client::{Database, Error, RangeOptions, Result, TransactionOption};

/// Concurrent writers.
pub const WRITERS: u32 = 4;
/// Events each writer appends.
pub const PER_WRITER: u32 = 10;

/// What [`append_and_read`] saw.
#[derive(Debug)]
pub struct EventLog {
    /// The events read back in key (= commit) order, as `(versionstamp, event)`.
    pub read_back: Vec<(Versionstamp, String)>,
    /// Each append's versionstamp as its commit reported it, with the event.
    pub appended: Vec<(Versionstamp, String)>,
}

/// Appends `WRITERS × PER_WRITER` events concurrently to a fresh log named `name`, then reads
/// the log back. Fails unless it holds every event exactly once, in commit order, each under
/// the stamp its commit reported.
pub async fn append_and_read(db: &Database, name: &str) -> Result<EventLog> {
    let log = Subspace::new(&["event_log".into(), name.into()])?;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (db, log) = (db.clone(), log.clone());
        writers.push(tokio::spawn(async move {
            let mut appended = Vec::new();
            for i in 0..PER_WRITER {
                let event = format!("writer {w} event {i}");
                let outcome = db
                    .run_with_outcome(|tx| {
                        let (log, event) = (log.clone(), event.clone());
                        async move {
                            tx.set_option(TransactionOption::AutomaticIdempotency);
                            let key = tuple::pack_with_versionstamp(
                                log.bytes(),
                                &[Element::Versionstamp(Versionstamp::incomplete(0))],
                            )?;
                            tx.set_versionstamped_key(key, event.as_bytes())
                        }
                    })
                    .await?;
                let stamp = outcome.versionstamp.ok_or_else(|| {
                    Error::Internal("an append committed without a versionstamp".into())
                })?;
                appended.push((Versionstamp::incomplete(0).complete(stamp), event));
            }
            Ok::<_, Error>(appended)
        }));
    }
    let mut appended = Vec::new();
    for w in writers {
        appended.extend(w.await.map_err(|e| Error::Internal(e.to_string()))??);
    }
    let (begin, end) = log.range();
    let read_back = db
        .run(|tx| {
            let (begin, end, log) = (begin.clone(), end.clone(), log.clone());
            async move {
                let pairs = tx
                    .get_range(begin, end, RangeOptions::default())
                    .collect_vec()
                    .await?;
                pairs
                    .into_iter()
                    .map(|kv| match log.unpack(&kv.key)?.as_slice() {
                        [Element::Versionstamp(v)] => Ok((*v, utf8(kv.value)?)),
                        other => Err(Error::Internal(format!("unexpected log key {other:?}"))),
                    })
                    .collect::<Result<Vec<_>>>()
            }
        })
        .await?;
    let mut expected = appended.clone();
    expected.sort();
    if read_back != expected {
        return Err(Error::Internal(format!(
            "the log holds {} events, {} were appended, or their order or stamps differ",
            read_back.len(),
            appended.len()
        )));
    }
    Ok(EventLog {
        read_back,
        appended,
    })
}

fn utf8(b: Bytes) -> Result<String> {
    String::from_utf8(b.to_vec()).map_err(|e| Error::Internal(e.to_string()))
}

#[tokio::main]
async fn main() {
    let name = format!("run-{}", std::process::id());
    match async { append_and_read(&common::database()?, &name).await }.await {
        Ok(log) => {
            for (stamp, event) in &log.read_back {
                println!("{} {event}", hex(&stamp.transaction));
            }
            println!("{} events, in commit order", log.read_back.len());
        }
        Err(e) => {
            eprintln!("event_log: {e}");
            std::process::exit(1);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
