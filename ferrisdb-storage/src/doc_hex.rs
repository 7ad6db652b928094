//! The storage engine's side of the golden tests: reads the worked byte examples of
//! `docs/wal.md`, `docs/sstable.md` and `docs/engine.md` and compares them with what the real
//! encoders write, so the pages and the code cannot drift apart.
//!
//! A page shows a real instance of a format in a fenced block whose info string is
//! `hex NAME`: two-digit hex bytes separated by whitespace, grouped on lines as the page likes,
//! where `#` starts a comment running to the end of the line. Finding and parsing the block is
//! [`ferrisdb_core::doc_hex`]'s job (one parser for every crate's golden tests); this module
//! only locates `docs/` and turns a mismatch into a failure message that names the first
//! differing offset and shows both sides as offset-labelled hex dumps. Test-only: every
//! problem (unreadable page, missing or duplicate block, bad token) panics naming the file and
//! the block.

use std::path::PathBuf;

use ferrisdb_core::doc_hex::hex_lines;

/// Bytes per line of `ferrisdb_core::doc_hex::hex_lines`.
const DUMP_BYTES_PER_LINE: usize = 16;

/// The bytes of the block `hex BLOCK_NAME` in `docs/DOC_RELATIVE_PATH` of the workspace.
///
/// # Panics
/// If the page cannot be read or the block is missing, duplicated, unclosed or holds a token
/// that is not a two-digit hex byte; the message names the file and the block.
#[track_caller]
pub(crate) fn doc_hex(doc_relative_path: &str, block_name: &str) -> Vec<u8> {
    ferrisdb_core::doc_hex::doc_hex(docs_dir().join(doc_relative_path), block_name)
}

/// Asserts that `actual` (built by the real encoder) equals the block `hex BLOCK_NAME` of
/// `docs/DOC_RELATIVE_PATH`; a mismatch names the first differing offset and shows both as
/// hex dumps (left: the encoder, right: the doc).
#[track_caller]
pub(crate) fn assert_doc_bytes(actual: &[u8], doc_relative_path: &str, block_name: &str) {
    let expected = doc_hex(doc_relative_path, block_name);
    let first_difference = actual
        .iter()
        .zip(&expected)
        .position(|(a, e)| a != e)
        .unwrap_or(actual.len().min(expected.len()));
    assert_eq!(
        HexDump(actual),
        HexDump(&expected),
        "the encoder's bytes (left) differ from block `hex {block_name}` of \
         docs/{doc_relative_path} (right): first difference at offset {first_difference} \
         ({} bytes encoded, {} in the doc)",
        actual.len(),
        expected.len(),
    );
}

/// `docs/` at the workspace root.
fn docs_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs"))
}

/// Bytes compared by value and shown by `Debug` as a hex dump with offsets, so a failed
/// `assert_eq!` prints both sides as hex.
#[derive(PartialEq, Eq)]
struct HexDump<'a>(&'a [u8]);

impl std::fmt::Debug for HexDump<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes", self.0.len())?;
        for (line, hex) in hex_lines(self.0).lines().enumerate() {
            write!(f, "\n  {:04x}: {hex}", line * DUMP_BYTES_PER_LINE)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrisdb_core::doc_hex::parse_block;

    #[test]
    fn parses_bytes_and_strips_comments_as_the_storage_docs_write_them() {
        let page = "\
```text
not hex # at all
```

```hex sample
# a whole-line comment between parts
46 44 42 4D                 # a field, upper-case digits
                            # a comment continuing the one above
0a ff
```
";
        assert_eq!(
            parse_block(page, "sample").unwrap(),
            [0x46, 0x44, 0x42, 0x4d, 0x0a, 0xff]
        );
    }

    #[test]
    #[should_panic(expected = "wal.md: block `hex no-such-block`: not found")]
    fn a_missing_block_panics_naming_file_and_block() {
        doc_hex("wal.md", "no-such-block");
    }

    #[test]
    #[should_panic(expected = "no-such-page.md")]
    fn a_missing_page_panics_naming_it() {
        doc_hex("no-such-page.md", "wal-segment-example");
    }

    #[test]
    #[should_panic(expected = "first difference at offset 17")]
    fn a_mismatch_names_the_first_differing_offset() {
        let mut bytes = doc_hex("wal.md", "wal-segment-example");
        bytes[17] ^= 1;
        assert_doc_bytes(&bytes, "wal.md", "wal-segment-example");
    }

    #[test]
    fn dumps_sixteen_bytes_per_line_with_offsets() {
        let bytes: Vec<u8> = (0..18).collect();
        assert_eq!(
            format!("{:?}", HexDump(&bytes)),
            "18 bytes\n  0000: 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f\n  0010: 10 11"
        );
    }
}
