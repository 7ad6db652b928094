//! Worked byte examples in the docs, read back by the golden tests of each on-disk format.
//!
//! A doc page shows a format with a fenced block whose info string is `hex NAME`: hex bytes,
//! whitespace-separated in any grouping, each line optionally ending in a `# comment` that
//! annotates the field. A format's golden test builds the same example with the real encoder
//! and compares it with [`doc_hex`], so the page and the code cannot drift apart. For tests
//! only: it panics, naming the file and the block, on anything it cannot read.

use std::path::Path;

/// The bytes of the fenced block `hex NAME` in the Markdown file at `path`.
///
/// # Panics
/// If the file cannot be read, has no such block (or two), or the block holds a token that
/// is not a two-digit hex byte.
pub fn doc_hex(path: impl AsRef<Path>, name: &str) -> Vec<u8> {
    let path = path.as_ref();
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    match parse_block(&text, name) {
        Ok(bytes) => bytes,
        Err(why) => panic!("{}: block `hex {name}`: {why}", path.display()),
    }
}

/// Finds and parses the block `hex NAME` in Markdown `text`.
pub fn parse_block(text: &str, name: &str) -> Result<Vec<u8>, String> {
    let mut found = None;
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let info = line.trim().strip_prefix("```").map(str::trim);
        let Some(info) = info else { continue };
        let mut words = info.split_whitespace();
        if words.next() != Some("hex") || words.next() != Some(name) {
            continue;
        }
        if found.is_some() {
            return Err(format!("appears twice (again at line {})", n + 1));
        }
        let mut bytes = Vec::new();
        let mut closed = false;
        for (m, body) in lines.by_ref() {
            if body.trim().starts_with("```") {
                closed = true;
                break;
            }
            let data = body.split('#').next().unwrap_or_default();
            for token in data.split_whitespace() {
                let byte = (token.len() == 2 && token.bytes().all(|b| b.is_ascii_hexdigit()))
                    .then(|| u8::from_str_radix(token, 16).ok())
                    .flatten()
                    .ok_or_else(|| format!("line {}: {token:?} is not a hex byte", m + 1))?;
                bytes.push(byte);
            }
        }
        if !closed {
            return Err("is not closed".into());
        }
        found = Some(bytes);
    }
    found.ok_or_else(|| "not found".into())
}

/// Bytes as the lowercase hex a doc block holds, 16 to a line (for failure messages).
pub fn hex_lines(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|chunk| {
            chunk
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "Text\n\n```hex sample\n01 02   # a field\n0a ff\n# a comment line\n```\n\n```hex other\nzz\n```\n";

    #[test]
    fn a_block_is_found_and_its_comments_stripped() {
        assert_eq!(parse_block(PAGE, "sample").unwrap(), [1, 2, 10, 255]);
    }

    #[test]
    fn bad_tokens_missing_and_duplicate_blocks_are_errors() {
        let err = parse_block(PAGE, "other").unwrap_err();
        assert!(err.contains("\"zz\""), "{err}");
        assert_eq!(parse_block(PAGE, "nope").unwrap_err(), "not found");
        let twice = format!("{PAGE}```hex sample\n00\n```\n");
        assert!(parse_block(&twice, "sample").unwrap_err().contains("twice"));
        assert!(parse_block("```hex open\n00\n", "open").is_err());
        assert!(parse_block("```hex odd\n0\n```\n", "odd").is_err());
        assert!(parse_block("```hex sign\n+f\n```\n", "sign").is_err());
    }

    #[test]
    fn hex_lines_round_trips_through_the_parser() {
        let bytes: Vec<u8> = (0..40).collect();
        let page = format!("```hex all\n{}\n```\n", hex_lines(&bytes));
        assert_eq!(parse_block(&page, "all").unwrap(), bytes);
    }
}
