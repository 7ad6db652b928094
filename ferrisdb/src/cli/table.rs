//! Plain-text tables and human-readable numbers for the CLI's reports.

/// A table: a header row and data rows, printed with aligned columns (numbers are
/// right-aligned, text left-aligned).
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells print empty, extra cells are ignored).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, each line indented by `indent` spaces and ending in a newline.
    pub fn render(&self, indent: usize) -> String {
        let cols = self.header.len();
        let cell = |row: &Vec<String>, i: usize| row.get(i).cloned().unwrap_or_default();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, w) in widths.iter_mut().enumerate() {
                *w = (*w).max(cell(row, i).chars().count());
            }
        }
        let numeric: Vec<bool> = (0..cols)
            .map(|i| {
                !self.rows.is_empty()
                    && self.rows.iter().all(|r| {
                        let c = cell(r, i);
                        // Numbers with optional units; `host:port` addresses stay text.
                        (c.starts_with(|ch: char| ch.is_ascii_digit()) && !c.contains(':'))
                            || c == "-"
                    })
            })
            .collect();
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = " ".repeat(indent);
            for i in 0..cols {
                let c = cell(row, i);
                let pad = widths[i].saturating_sub(c.chars().count());
                if numeric[i] {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(&c);
                } else {
                    line.push_str(&c);
                    line.push_str(&" ".repeat(pad));
                }
                line.push_str("  ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `1.5 KiB`-style sizes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `3d 4h`, `2h 5m`, `1m 20s`, `12.3s`-style durations.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    let whole = s as u64;
    let (d, h, m) = (whole / 86_400, whole / 3600 % 24, whole / 60 % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", whole % 60)
    } else {
        format!("{s:.1}s")
    }
}

/// An optional value, or `-`.
pub fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_text_left_and_numbers_right() {
        let mut t = Table::new(&["NAME", "OPS"]);
        t.row(vec!["read".into(), "5".into()]);
        t.row(vec!["update".into(), "1234".into()]);
        assert_eq!(
            t.render(2),
            "  NAME     OPS\n  read       5\n  update  1234\n"
        );
    }

    #[test]
    fn formats_sizes_and_durations() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
        assert_eq!(duration(12.34), "12.3s");
        assert_eq!(duration(80.0), "1m 20s");
        assert_eq!(duration(7500.0), "2h 5m");
        assert_eq!(duration(90_000.0), "1d 1h");
        assert_eq!(opt::<u64>(None), "-");
    }
}
