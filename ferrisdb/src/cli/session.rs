//! Runs shell commands against a cluster, shared by `shell` and `exec`.
//!
//! Outside `begin`, each command is its own transaction run through `Database::run` (retried
//! on conflicts and other retryable errors). Between `begin` and `commit` the commands share
//! one transaction, which is not retried: a failed commit reports the error and ends the
//! transaction, as does a retryable error during a read. Output: values escaped with
//! [`ferrisdb_core::keys::escape`]; `get` prints the value alone on its line, or
//! `(not found)`; `getrange` prints `KEY<TAB>VALUE` lines.

use ferrisdb_client::{Database, RangeOptions, Transaction};
use ferrisdb_core::keys::escape;

use super::command::{Command, HELP};
use super::connect::Connection;
use super::status;

/// What the caller should do after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next command.
    Continue,
    /// Stop (`exit`).
    Exit,
}

/// A connection plus the open multi-command transaction, if any.
pub struct Session {
    conn: Connection,
    tx: Option<Transaction>,
    /// Confirm writes and transaction boundaries (the interactive shell).
    chatty: bool,
}

impl Session {
    /// A session on `conn`; `chatty` prints confirmations of writes and commits.
    pub fn new(conn: Connection, chatty: bool) -> Self {
        Session {
            conn,
            tx: None,
            chatty,
        }
    }

    /// True between `begin` and `commit`/`rollback`.
    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    /// Discards the open transaction, if any.
    pub fn rollback(&mut self) {
        self.tx = None;
    }

    /// Runs one command, printing its output to stdout. Errors are messages for the user.
    pub async fn execute(&mut self, command: Command) -> Result<Flow, String> {
        match command {
            Command::Help => println!("{HELP}"),
            Command::Exit => return Ok(Flow::Exit),
            Command::Status => {
                let report = status::fetch(&self.conn.controllers).await?;
                print!("{}", status::render(&report));
            }
            Command::Begin => {
                if self.tx.is_some() {
                    return Err("already in a transaction: `commit` or `rollback` first".into());
                }
                self.tx = Some(self.conn.db.create_transaction());
                self.say("Transaction started");
            }
            Command::Commit => {
                let tx = self
                    .tx
                    .take()
                    .ok_or("no transaction to commit (start one with `begin`)")?;
                tx.commit()
                    .await
                    .map_err(|e| format!("commit failed, transaction discarded: {e}"))?;
                self.committed(&tx);
            }
            Command::Rollback => {
                self.tx
                    .take()
                    .ok_or("no transaction to roll back (start one with `begin`)")?;
                self.say("Transaction rolled back");
            }
            Command::Get(key) => {
                let value = match &self.tx {
                    Some(tx) => self.in_tx(tx.get(&key).await)?,
                    None => {
                        run(&self.conn.db, move |tx| {
                            let key = key.clone();
                            async move { tx.get(&key).await }
                        })
                        .await?
                        .0
                    }
                };
                match value {
                    Some(v) => println!("{}", escape(&v)),
                    None => println!("(not found)"),
                }
            }
            Command::GetRange {
                begin,
                end,
                limit,
                reverse,
            } => {
                let options = RangeOptions {
                    limit,
                    reverse,
                    ..RangeOptions::default()
                };
                let pairs =
                    match &self.tx {
                        Some(tx) => {
                            let read = tx.get_range(&begin, &end, options).collect_vec().await;
                            self.in_tx(read)?
                        }
                        None => run(&self.conn.db, move |tx| {
                            let (begin, end) = (begin.clone(), end.clone());
                            async move { tx.get_range(&begin, &end, options).collect_vec().await }
                        })
                        .await?
                        .0,
                    };
                for kv in &pairs {
                    println!("{}\t{}", escape(&kv.key), escape(&kv.value));
                }
                if self.chatty && pairs.is_empty() {
                    println!("(no keys in range)");
                }
            }
            Command::Set(key, value) => {
                self.write(move |tx| tx.set(&key, &value)).await?;
            }
            Command::Clear(key) => {
                self.write(move |tx| tx.clear(&key)).await?;
            }
            Command::ClearRange(begin, end) => {
                self.write(move |tx| tx.clear_range(&begin, &end)).await?;
            }
        }
        Ok(Flow::Continue)
    }

    /// A buffered write: into the open transaction, or as its own committed transaction.
    async fn write<F>(&mut self, op: F) -> Result<(), String>
    where
        F: Fn(&Transaction) -> ferrisdb_core::Result<()>,
    {
        match &self.tx {
            Some(tx) => op(tx).map_err(|e| e.to_string()),
            None => {
                let ((), tx) = run(&self.conn.db, |tx| {
                    let r = op(&tx);
                    async move { r }
                })
                .await?;
                self.committed(&tx);
                Ok(())
            }
        }
    }

    /// Maps a result inside `begin`: a retryable error ends the transaction.
    fn in_tx<T>(&mut self, result: ferrisdb_core::Result<T>) -> Result<T, String> {
        result.map_err(|e| {
            if e.is_retryable() {
                self.tx = None;
                format!("{e}; transaction discarded, run `begin` again")
            } else {
                e.to_string()
            }
        })
    }

    fn committed(&self, tx: &Transaction) {
        match tx.committed_version() {
            Some(v) => self.say(&format!("Committed (version {})", v.get())),
            None => self.say("Committed (read-only)"),
        }
    }

    fn say(&self, text: &str) {
        if self.chatty {
            println!("{text}");
        }
    }
}

/// `db.run(f)`, also returning the transaction handle (for its commit version).
async fn run<T, F, Fut>(db: &Database, mut f: F) -> Result<(T, Transaction), String>
where
    F: FnMut(Transaction) -> Fut,
    Fut: std::future::Future<Output = ferrisdb_core::Result<T>>,
{
    let last = std::sync::Mutex::new(None);
    let value = db
        .run(|tx| {
            if let Ok(mut slot) = last.lock() {
                *slot = Some(tx.clone());
            }
            f(tx)
        })
        .await
        .map_err(|e| e.to_string())?;
    let tx = last
        .into_inner()
        .ok()
        .flatten()
        .ok_or("the transaction never ran")?;
    Ok((value, tx))
}
