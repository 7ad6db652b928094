//! `ferrisdb shell`: the interactive shell. Line editing and history come from `rustyline`;
//! history is kept in `~/.ferrisdb_history` (or `.ferrisdb_history` in the current directory
//! when `$HOME` is unset). When standard input is not a terminal the shell reads lines from it
//! without a prompt, keeps going after a failed command and exits non-zero if any failed.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use super::command::{Command, parse_script};
use super::connect::Target;
use super::session::{Flow, Session};

/// Runs the shell until `exit`, end of input or Ctrl-D.
pub async fn run(target: &Target) -> Result<(), String> {
    let session = Session::new(target.connect()?, true);
    if std::io::stdin().is_terminal() {
        interactive(session).await
    } else {
        piped(session).await
    }
}

fn history_path() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".ferrisdb_history")
}

async fn interactive(mut session: Session) -> Result<(), String> {
    let mut editor = DefaultEditor::new().map_err(|e| format!("starting the line editor: {e}"))?;
    let history = history_path();
    // A missing history file is normal on first use.
    let _ = editor.load_history(&history);
    println!("FerrisDB shell. Type `help` for commands, `exit` or Ctrl-D to leave.");
    loop {
        let prompt = if session.in_transaction() {
            "ferrisdb (tx)> "
        } else {
            "ferrisdb> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(format!("reading a line: {e}")),
        };
        if line.trim().is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line.as_str());
        if run_line(&mut session, &line).await == Flow::Exit {
            break;
        }
    }
    if session.in_transaction() {
        println!("Discarding the open transaction (it was not committed).");
    }
    if let Err(e) = editor.save_history(&history) {
        eprintln!(
            "warning: could not save history to {}: {e}",
            history.display()
        );
    }
    Ok(())
}

async fn piped(mut session: Session) -> Result<(), String> {
    let mut failures = 0usize;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("reading standard input: {e}"))?;
        match run_line_counting(&mut session, &line).await {
            (Flow::Exit, failed) => {
                failures += failed;
                break;
            }
            (Flow::Continue, failed) => failures += failed,
        }
    }
    if session.in_transaction() {
        println!("Discarding the open transaction (it was not committed).");
    }
    if failures > 0 {
        Err(format!("{failures} command(s) failed"))
    } else {
        Ok(())
    }
}

async fn run_line(session: &mut Session, line: &str) -> Flow {
    run_line_counting(session, line).await.0
}

/// Runs every command of one line, printing errors; returns the flow and the failures.
async fn run_line_counting(session: &mut Session, line: &str) -> (Flow, usize) {
    let commands: Vec<Command> = match parse_script(line) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return (Flow::Continue, 1);
        }
    };
    for command in commands {
        match session.execute(command).await {
            Ok(Flow::Continue) => {}
            Ok(Flow::Exit) => return (Flow::Exit, 0),
            Err(e) => {
                eprintln!("error: {e}");
                return (Flow::Continue, 1);
            }
        }
    }
    (Flow::Continue, 0)
}
