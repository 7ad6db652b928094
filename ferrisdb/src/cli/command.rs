//! The shell language shared by `ferrisdb shell` and `ferrisdb exec`: splitting text into
//! commands and parsing each one. Pure functions, no I/O.
//!
//! Commands are separated by `;` or newlines; words by whitespace. `"..."` quotes a word
//! (spaces and `;` inside are literal, `""` is the empty word); `#` at the start of a word
//! comments out the rest of the line. Keys and values use the escaped form of
//! [`ferrisdb_core::keys::escape`]: `\xNN` for any byte, `\\` for a backslash, `\n`, `\t`, and
//! `\"` for a double quote.

use ferrisdb_core::keys::unescape;

/// One parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `get K`.
    Get(Vec<u8>),
    /// `set K V`.
    Set(Vec<u8>, Vec<u8>),
    /// `clear K`.
    Clear(Vec<u8>),
    /// `getrange B E [LIMIT] [reverse]`.
    GetRange {
        /// First key.
        begin: Vec<u8>,
        /// End key, exclusive; empty: the end of the key space.
        end: Vec<u8>,
        /// Most pairs to print.
        limit: Option<usize>,
        /// Descending order.
        reverse: bool,
    },
    /// `clearrange B E`.
    ClearRange(Vec<u8>, Vec<u8>),
    /// `begin`: start a multi-command transaction.
    Begin,
    /// `commit`.
    Commit,
    /// `rollback`.
    Rollback,
    /// `status`.
    Status,
    /// `help`.
    Help,
    /// `exit` (or `quit`).
    Exit,
}

impl Command {
    /// The command's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Get(_) => "get",
            Command::Set(..) => "set",
            Command::Clear(_) => "clear",
            Command::GetRange { .. } => "getrange",
            Command::ClearRange(..) => "clearrange",
            Command::Begin => "begin",
            Command::Commit => "commit",
            Command::Rollback => "rollback",
            Command::Status => "status",
            Command::Help => "help",
            Command::Exit => "exit",
        }
    }
}

/// The help text of the shell language.
pub const HELP: &str = "\
Commands (separate several with ';'):
  get KEY                         print the value (or '(not found)')
  set KEY VALUE                   write a value
  clear KEY                       delete a key
  getrange BEGIN END [LIMIT] [reverse]
                                  print 'KEY<TAB>VALUE' for keys in [BEGIN, END);
                                  END \"\" means the end of the key space
  clearrange BEGIN END            delete every key in [BEGIN, END)
  begin / commit / rollback       group commands into one transaction
                                  (otherwise each command is its own transaction)
  status                          cluster status
  help                            this text
  exit                            leave the shell
Keys and values: \\xNN for any byte, \\\\ for a backslash, \"...\" to include spaces or ';'.";

/// Splits `text` into commands, each a list of words (escapes not yet decoded).
pub fn split(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('"') => word.push_str("\\x22"),
                Some(next) => {
                    word.push('\\');
                    word.push(next);
                }
                None => return Err("a trailing '\\' escapes nothing".into()),
            }
            in_word = true;
            continue;
        }
        if quoted {
            match c {
                '"' => quoted = false,
                '\n' => return Err("unterminated quote at the end of a line".into()),
                _ => word.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                in_word = true;
            }
            '#' if !in_word => {
                // A comment: skip to the end of the line, which still ends the command.
                while chars.peek().is_some_and(|&n| n != '\n') {
                    chars.next();
                }
            }
            ';' | '\n' => {
                end_word(&mut words, &mut word, &mut in_word);
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            c if c.is_whitespace() => end_word(&mut words, &mut word, &mut in_word),
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    end_word(&mut words, &mut word, &mut in_word);
    if !words.is_empty() {
        commands.push(words);
    }
    Ok(commands)
}

fn end_word(words: &mut Vec<String>, word: &mut String, in_word: &mut bool) {
    if *in_word {
        words.push(std::mem::take(word));
        *in_word = false;
    }
}

/// Parses one command's words (as produced by [`split`]).
pub fn parse(words: &[String]) -> Result<Command, String> {
    let Some((name, args)) = words.split_first() else {
        return Err("empty command".into());
    };
    let name = name.to_ascii_lowercase();
    let arity = |n: usize, usage: &str| {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!("usage: {usage}"))
        }
    };
    let bytes = |i: usize| -> Result<Vec<u8>, String> {
        let text = args.get(i).map(String::as_str).unwrap_or_default();
        unescape(text).map_err(|e| format!("{text:?}: {e}"))
    };
    Ok(match name.as_str() {
        "get" => {
            arity(1, "get KEY")?;
            Command::Get(bytes(0)?)
        }
        "set" => {
            arity(2, "set KEY VALUE")?;
            Command::Set(bytes(0)?, bytes(1)?)
        }
        "clear" => {
            arity(1, "clear KEY")?;
            Command::Clear(bytes(0)?)
        }
        "clearrange" => {
            arity(2, "clearrange BEGIN END")?;
            Command::ClearRange(bytes(0)?, bytes(1)?)
        }
        "getrange" => {
            const USAGE: &str = "usage: getrange BEGIN END [LIMIT] [reverse]";
            if !(2..=4).contains(&args.len()) {
                return Err(USAGE.into());
            }
            let (mut limit, mut reverse) = (None, false);
            for extra in &args[2..] {
                if extra.eq_ignore_ascii_case("reverse") && !reverse {
                    reverse = true;
                } else if let (Ok(n), None) = (extra.parse::<usize>(), limit) {
                    limit = Some(n);
                } else {
                    return Err(format!("{USAGE} (unexpected {extra:?})"));
                }
            }
            Command::GetRange {
                begin: bytes(0)?,
                end: bytes(1)?,
                limit,
                reverse,
            }
        }
        "begin" | "commit" | "rollback" | "status" | "help" | "exit" | "quit" => {
            arity(0, &name)?;
            match name.as_str() {
                "begin" => Command::Begin,
                "commit" => Command::Commit,
                "rollback" => Command::Rollback,
                "status" => Command::Status,
                "help" => Command::Help,
                _ => Command::Exit,
            }
        }
        other => return Err(format!("unknown command {other:?} (try `help`)")),
    })
}

/// Splits and parses a whole script; the first error names the failing command.
pub fn parse_script(text: &str) -> Result<Vec<Command>, String> {
    split(text)?
        .iter()
        .map(|words| parse(words).map_err(|e| format!("`{}`: {e}", words.join(" "))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<Vec<String>> {
        split(text).unwrap()
    }

    #[test]
    fn splits_on_semicolons_newlines_and_whitespace() {
        assert_eq!(
            words("set a 1; get a\n  clear   a ;;"),
            vec![vec!["set", "a", "1"], vec!["get", "a"], vec!["clear", "a"]]
        );
    }

    #[test]
    fn quotes_keep_spaces_semicolons_and_empty_words() {
        assert_eq!(
            words(r#"set "a b;c" "" ; get "x"y"#),
            vec![vec!["set", "a b;c", ""], vec!["get", "xy"]]
        );
        assert!(split("get \"open").is_err());
        assert!(split("get \"open\nget b\"").is_err());
        assert!(split("get a\\").is_err());
    }

    #[test]
    fn comments_run_to_the_end_of_the_line() {
        assert_eq!(
            words("# setup\nset a#b 1 # trailing; get z\nget a"),
            vec![vec!["set", "a#b", "1"], vec!["get", "a"]]
        );
    }

    #[test]
    fn parses_binary_escapes_and_quoted_quotes() {
        let cmds = parse_script(r#"set \x00k\xff "v \"q\" \\""#).unwrap();
        assert_eq!(
            cmds,
            vec![Command::Set(b"\x00k\xff".to_vec(), b"v \"q\" \\".to_vec())]
        );
    }

    #[test]
    fn parses_getrange_options_in_any_order() {
        let r = |t: &str| parse_script(t).unwrap().remove(0);
        assert_eq!(
            r("getrange a z 10 reverse"),
            Command::GetRange {
                begin: b"a".to_vec(),
                end: b"z".to_vec(),
                limit: Some(10),
                reverse: true
            }
        );
        assert_eq!(
            r("GETRANGE a \"\" REVERSE 3"),
            Command::GetRange {
                begin: b"a".to_vec(),
                end: vec![],
                limit: Some(3),
                reverse: true
            }
        );
        assert!(parse_script("getrange a z 1 2").is_err());
        assert!(parse_script("getrange a z reverse reverse").is_err());
        assert!(parse_script("getrange a").is_err());
    }

    #[test]
    fn reports_bad_arity_unknown_commands_and_bad_escapes() {
        let err = parse_script("set a").unwrap_err();
        assert!(err.contains("usage: set KEY VALUE"), "{err}");
        let err = parse_script("frobnicate").unwrap_err();
        assert!(err.contains("unknown command"), "{err}");
        let err = parse_script(r"get \xZZ").unwrap_err();
        assert!(err.contains("bad hex"), "{err}");
        assert!(parse_script("commit now").is_err());
        assert_eq!(
            parse_script("begin; commit; rollback; status; help; quit").unwrap(),
            vec![
                Command::Begin,
                Command::Commit,
                Command::Rollback,
                Command::Status,
                Command::Help,
                Command::Exit
            ]
        );
    }
}
