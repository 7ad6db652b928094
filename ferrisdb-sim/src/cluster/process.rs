//! Which simulated process is running: every task of the simulation's runtime belongs to the
//! process that spawned it (a role's own tasks, and the tasks tonic, hyper and openraft
//! spawn on its behalf), and while a task is polled [`current`] names its process — the way
//! FoundationDB's simulator knows the current process of every actor. The network uses it to
//! know who connects (partitions are between processes).
//!
//! The bookkeeping rides on tokio's task hooks ([`track_processes`]): a spawned task inherits
//! the spawner's process, and each poll sets the thread's current process from its task.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::runtime::Builder;
use tokio::task::{Id, JoinHandle};

/// A simulated process: the last byte of its address, 10.0.0.N.
pub type ProcessId = u8;

thread_local! {
    static CURRENT: Cell<Option<ProcessId>> = const { Cell::new(None) };
}

/// The simulated process whose task is running on this thread (`None`: the simulator's own
/// code, outside every process).
pub fn current() -> Option<ProcessId> {
    CURRENT.with(Cell::get)
}

/// Runs `f` as `process`: tasks it spawns belong to that process.
pub fn as_process<T>(process: ProcessId, f: impl FnOnce() -> T) -> T {
    let before = CURRENT.with(|c| c.replace(Some(process)));
    let out = f();
    CURRENT.with(|c| c.set(before));
    out
}

/// Spawns `future` as a task of `process`.
pub fn spawn_in<F>(process: ProcessId, future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    as_process(process, || tokio::spawn(future))
}

/// Installs the task hooks on `builder`: spawned tasks inherit the spawner's process, and a
/// task's process is [`current`] while it is polled.
pub fn track_processes(builder: &mut Builder) -> &mut Builder {
    let owners: Arc<Mutex<HashMap<Id, ProcessId>>> = Arc::default();
    let on_spawn = owners.clone();
    let on_poll = owners.clone();
    let on_end = owners;
    builder
        .on_task_spawn(move |task| {
            if let Some(process) = current() {
                on_spawn.lock().insert(task.id(), process);
            }
        })
        .on_before_task_poll(move |task| {
            let process = on_poll.lock().get(&task.id()).copied();
            CURRENT.with(|c| c.set(process));
        })
        .on_after_task_poll(|_| CURRENT.with(|c| c.set(None)))
        .on_task_terminate(move |task| {
            on_end.lock().remove(&task.id());
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_inherit_the_process_of_their_spawner() {
        let mut builder = Builder::new_current_thread();
        track_processes(&mut builder).enable_all();
        let runtime = builder.build().unwrap();
        runtime.block_on(async {
            assert_eq!(current(), None);
            let seen = spawn_in(3, async {
                let mine = current();
                // A grandchild spawned from inside the process, polled later.
                let child = tokio::spawn(async {
                    tokio::task::yield_now().await;
                    current()
                });
                tokio::task::yield_now().await;
                (mine, current(), child.await.unwrap())
            })
            .await
            .unwrap();
            assert_eq!(seen, (Some(3), Some(3), Some(3)));
            let other = spawn_in(4, async { current() }).await.unwrap();
            assert_eq!(other, Some(4));
            assert_eq!(current(), None);
        });
    }
}
