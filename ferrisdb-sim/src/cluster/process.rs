//! Which simulated process is running: every task of the simulation's runtime belongs to the
//! process that spawned it (a role's own tasks, and the tasks tonic, hyper and openraft
//! spawn on its behalf), and while a task is polled [`current`] names its process — the way
//! FoundationDB's simulator knows the current process of every actor. The network uses it to
//! know who connects (partitions are between processes).
//!
//! The bookkeeping rides on tokio's task hooks ([`track_processes`]): a spawned task inherits
//! the spawner's process, and each poll sets the thread's current process from its task.
//!
//! **Lives.** A process that is killed ([`kill`]) and started again begins a new life; each
//! task belongs to the [`Incarnation`] (process and life) that spawned it. Tokio cannot
//! cancel another process's tasks from outside, so a dead life's tasks may still run for a
//! while — but the network refuses them ([`is_alive`]) and their disk closes their files, so
//! they can neither reach anyone nor change anything, and they end as their calls fail.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::runtime::Builder;
use tokio::task::{Id, JoinHandle};

/// A simulated process: the last byte of its address, 10.0.0.N.
pub type ProcessId = u8;

/// One life of a simulated process: from a start to the next [`kill`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Incarnation {
    /// The process.
    pub process: ProcessId,
    /// How many times it was killed before this life began.
    pub life: u32,
}

thread_local! {
    static CURRENT: Cell<Option<Incarnation>> = const { Cell::new(None) };
    /// The current life of every process that was ever killed (others are in life 0).
    static LIVES: RefCell<HashMap<ProcessId, u32>> = RefCell::new(HashMap::new());
}

/// The simulated process whose task is running on this thread (`None`: the simulator's own
/// code, outside every process).
pub fn current() -> Option<ProcessId> {
    current_incarnation().map(|i| i.process)
}

/// The life of the process whose task is running on this thread.
pub fn current_incarnation() -> Option<Incarnation> {
    CURRENT.with(Cell::get)
}

/// `process`'s current life.
pub fn incarnation(process: ProcessId) -> Incarnation {
    let life = LIVES.with(|lives| lives.borrow().get(&process).copied().unwrap_or(0));
    Incarnation { process, life }
}

/// Whether `incarnation` is its process's current life (not killed since).
pub fn is_alive(incarnation: Incarnation) -> bool {
    self::incarnation(incarnation.process) == incarnation
}

/// Ends `process`'s current life: its tasks no longer count ([`is_alive`] is false for
/// them), and tasks spawned in it from now on belong to its next life.
pub fn kill(process: ProcessId) {
    LIVES.with(|lives| *lives.borrow_mut().entry(process).or_insert(0) += 1);
}

/// Forgets every process's lives (a new simulation begins on this thread).
pub fn reset_lives() {
    LIVES.with(|lives| lives.borrow_mut().clear());
}

/// Runs `f` as `process` (in its current life): tasks it spawns belong to that process.
pub fn as_process<T>(process: ProcessId, f: impl FnOnce() -> T) -> T {
    let before = CURRENT.with(|c| c.replace(Some(incarnation(process))));
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
    let owners: Arc<Mutex<HashMap<Id, Incarnation>>> = Arc::default();
    let on_spawn = owners.clone();
    let on_poll = owners.clone();
    let on_end = owners;
    builder
        .on_task_spawn(move |task| {
            if let Some(incarnation) = current_incarnation() {
                on_spawn.lock().insert(task.id(), incarnation);
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

    #[test]
    fn a_killed_process_starts_a_new_life_and_its_old_tasks_know_they_are_dead() {
        reset_lives();
        let mut builder = Builder::new_current_thread();
        track_processes(&mut builder).enable_all();
        let runtime = builder.build().unwrap();
        runtime.block_on(async {
            let (go, wait) = tokio::sync::oneshot::channel::<()>();
            let old = spawn_in(5, async move {
                let me = current_incarnation().unwrap();
                let _ = wait.await;
                (me, is_alive(me))
            });
            tokio::task::yield_now().await;
            kill(5);
            let new = spawn_in(5, async { current_incarnation().unwrap() })
                .await
                .unwrap();
            go.send(()).unwrap();
            let (old_life, old_alive) = old.await.unwrap();
            assert_eq!(
                old_life,
                Incarnation {
                    process: 5,
                    life: 0
                }
            );
            assert!(!old_alive);
            assert_eq!(
                new,
                Incarnation {
                    process: 5,
                    life: 1
                }
            );
            assert!(is_alive(new));
            assert_eq!(incarnation(6).life, 0);
        });
        reset_lives();
    }
}
