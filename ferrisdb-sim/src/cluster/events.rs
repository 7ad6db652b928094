//! The cluster simulation's trace: what happened in one seed's run, at which simulated time —
//! every write onto the simulated network (which connection, how many bytes, a hash of them),
//! every fault the nemesis made and every transaction's outcome — folded into one
//! [`Trace`] hash. Two runs of a seed that print the same hash did the same things in the
//! same order; [`Recording::all`] keeps the events themselves, to find where two runs part.
//!
//! The recorder is per thread: a seed's whole simulation runs on its runtime's one thread,
//! and other seeds may run beside it on other threads.

use std::cell::RefCell;

use tokio::time::Instant;

use crate::trace::Trace;

thread_local! {
    static RECORDER: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

struct Recorder {
    /// The simulated time the run began (events are stamped relative to it).
    began: Option<Instant>,
    trace: Trace,
    /// Every event, when asked for.
    all: Option<Vec<String>>,
}

/// A finished run's trace.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The hash of every event, in order.
    pub hash: u64,
    /// Events recorded.
    pub events: u64,
    /// The last events, one per line.
    pub tail: String,
    /// Every event (when [`start`] was asked to keep them).
    pub all: Option<Vec<String>>,
}

/// Starts recording this thread's events (dropping any earlier recording); with `keep_all`
/// each event's text is kept too.
pub fn start(keep_all: bool) {
    RECORDER.with(|r| {
        *r.borrow_mut() = Some(Recorder {
            began: None,
            trace: Trace::default(),
            all: keep_all.then(Vec::new),
        });
    });
}

/// Records one event (built only while recording), stamped with the simulated microseconds
/// since the first event.
pub fn record(event: impl FnOnce() -> String) {
    record_with_bytes(event, &[]);
}

/// [`record`], keeping (when every event is kept) a printable excerpt of `bytes` beside it,
/// outside the hash: what a network write carried, to explain a divergence.
pub fn record_with_bytes(event: impl FnOnce() -> String, bytes: &[u8]) {
    RECORDER.with(|r| {
        let mut recorder = r.borrow_mut();
        let Some(recorder) = recorder.as_mut() else {
            return;
        };
        let now = Instant::now();
        let began = *recorder.began.get_or_insert(now);
        let line = format!("{} {}", (now - began).as_micros(), event());
        if let Some(all) = &mut recorder.all {
            if bytes.is_empty() {
                all.push(line.clone());
            } else {
                all.push(format!("{line} {}", excerpt(bytes)));
            }
        }
        recorder.trace.record(line);
    });
}

/// Stops recording and returns what was recorded (`None` if nothing was being recorded).
pub fn finish() -> Option<Recording> {
    RECORDER
        .with(|r| r.borrow_mut().take())
        .map(|recorder| Recording {
            hash: recorder.trace.hash(),
            events: recorder.trace.events(),
            tail: recorder.trace.tail(),
            all: recorder.all,
        })
}

/// The first bytes of `bytes`, printable ASCII as is and the rest escaped.
fn excerpt(bytes: &[u8]) -> String {
    const SHOWN: usize = 1024;
    let mut out: String = bytes[..bytes.len().min(SHOWN)]
        .iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    if bytes.len() > SHOWN {
        out.push_str("...");
    }
    out
}

/// FNV-1a of `bytes`: a short fingerprint of a network write for the trace.
pub fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Where two recordings of one seed first differ: the index and a few events of each around
/// it; `None` if they are the same.
pub fn first_divergence(a: &[String], b: &[String]) -> Option<String> {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))?;
    let around = |events: &[String]| {
        events[at.saturating_sub(5)..(at + 5).min(events.len())]
            .iter()
            .map(|e| format!("    {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    Some(format!(
        "event {at} of {}/{}:\n  first run:\n{}\n  second run:\n{}",
        a.len(),
        b.len(),
        around(a),
        around(b)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_recorded_only_while_recording_and_divergences_are_found() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let run = |second: &'static str| {
            runtime.block_on(async {
                record(|| "before".into());
                start(true);
                record(|| "first".into());
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                record(|| second.into());
                finish().unwrap()
            })
        };
        let a = run("second");
        let b = run("other");
        let a_again = run("second");
        assert_eq!(a.events, 2);
        assert_eq!(a.hash, a_again.hash);
        assert_ne!(a.hash, b.hash);
        let (a_all, b_all) = (a.all.unwrap(), b.all.unwrap());
        assert_eq!(a_all, vec!["0 first".to_string(), "2000 second".into()]);
        let divergence = first_divergence(&a_all, &b_all).unwrap();
        assert!(divergence.starts_with("event 1 of 2/2"), "{divergence}");
        assert!(first_divergence(&a_all, &a_all).is_none());
        assert!(finish().is_none());
    }
}
