//! `ferrisdb exec "cmd; cmd"`: runs a script of shell commands (from the argument, or from
//! standard input when it is not a terminal) and stops at the first failure, exiting
//! non-zero. The whole script is parsed before anything runs, so a syntax error runs nothing.
//! A transaction still open at the end is rolled back and reported as an error.

use std::io::{IsTerminal, Read};

use super::command::parse_script;
use super::connect::Target;
use super::session::{Flow, Session};

/// Runs `script`, or standard input when `script` is `None`.
pub async fn run(target: &Target, script: Option<String>) -> Result<(), String> {
    let text = match script {
        Some(text) => text,
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(
                    "no commands: pass them as an argument (`ferrisdb exec 'get k'`) \
                            or pipe them on standard input; `ferrisdb shell` is interactive"
                        .into(),
                );
            }
            let mut text = String::new();
            stdin
                .lock()
                .read_to_string(&mut text)
                .map_err(|e| format!("reading standard input: {e}"))?;
            text
        }
    };
    let commands = parse_script(&text)?;
    let mut session = Session::new(target.connect()?, false);
    for (i, command) in commands.into_iter().enumerate() {
        let name = command.name();
        match session.execute(command).await {
            Ok(Flow::Continue) => {}
            Ok(Flow::Exit) => break,
            Err(e) => {
                session.rollback();
                return Err(format!("command {} (`{name}`) failed: {e}", i + 1));
            }
        }
    }
    if session.in_transaction() {
        session.rollback();
        return Err(
            "the script ended inside a transaction: it was rolled back (add `commit`)".into(),
        );
    }
    Ok(())
}
