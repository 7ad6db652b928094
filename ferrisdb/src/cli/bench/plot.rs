//! `--plot PATH.svg`: a hand-written SVG with two line charts sharing the time axis:
//! throughput (operations per second) and p99 latency (milliseconds), one point per second.

use std::fmt::Write;

use super::report::SecondReport;

const WIDTH: f64 = 800.0;
const PANEL: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 60.0;

/// The SVG document for a run's timeline.
pub fn svg(title: &str, timeline: &[SecondReport]) -> String {
    let height = TOP + 2.0 * PANEL + GAP + 40.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="15">{}</text>"#,
        WIDTH / 2.0,
        xml_escape(title)
    );
    let ops: Vec<f64> = timeline.iter().map(|s| s.ops as f64).collect();
    let p99: Vec<f64> = timeline.iter().map(|s| s.p99_us as f64 / 1000.0).collect();
    panel(&mut out, TOP, "throughput (ops/s)", &ops, "#1f77b4");
    panel(
        &mut out,
        TOP + PANEL + GAP,
        "p99 latency (ms)",
        &p99,
        "#d62728",
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds</text>"#,
        LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        height - 8.0
    );
    out.push_str("</svg>\n");
    out
}

/// One chart: axes, a few gridlines with labels, and the polyline.
fn panel(out: &mut String, top: f64, label: &str, values: &[f64], color: &str) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let bottom = top + PANEL;
    let max = nice_max(values.iter().cloned().fold(0.0, f64::max));
    let n = values.len().max(2) - 1;
    let x = |i: usize| LEFT + plot_w * i as f64 / n as f64;
    let y = |v: f64| bottom - PANEL * v / max;
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-weight="bold">{label}</text>"#,
        top - 8.0
    );
    for k in 0..=4 {
        let v = max * f64::from(k) / 4.0;
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#ddd"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{4}</text>"##,
            y(v),
            LEFT + plot_w,
            LEFT - 6.0,
            y(v) + 4.0,
            short(v)
        );
    }
    let ticks = values.len().clamp(1, 10);
    for k in 0..=ticks {
        let i = (n * k) / ticks;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{i}</text>"#,
            x(i),
            bottom + 16.0
        );
    }
    let _ = writeln!(
        out,
        r#"<path d="M{LEFT} {top} V{bottom} H{:.1}" fill="none" stroke="black"/>"#,
        LEFT + plot_w
    );
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| format!("{:.1},{:.1}", x(i), y(v)))
        .collect();
    let _ = writeln!(
        out,
        r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
        points.join(" ")
    );
}

/// A round number at or above `v` (1, 2 or 5 times a power of ten), at least 1.
fn nice_max(v: f64) -> f64 {
    if v <= 1.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * p)
}

/// A compact label: `1.5k`, `250`, `0.75`.
fn short(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1000.0 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_both_series_with_one_point_per_second() {
        let timeline: Vec<SecondReport> = (0..5)
            .map(|i| SecondReport {
                second: i,
                ops: 100 * (i + 1),
                p99_us: 2000,
            })
            .collect();
        let doc = svg("Workload A <test>", &timeline);
        assert!(doc.starts_with("<svg") && doc.trim_end().ends_with("</svg>"));
        assert_eq!(doc.matches("<polyline").count(), 2);
        let first = doc.split("points=\"").nth(1).unwrap();
        assert_eq!(first.split('"').next().unwrap().split(' ').count(), 5);
        assert!(doc.contains("&lt;test&gt;"));
        // 500 ops/s peak: the axis tops out at 500, 2 ms p99 at 2.
        assert!(doc.contains(">500<") && doc.contains(">2.00<"), "{doc}");
        assert!(svg("empty", &[]).contains("<polyline"));
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.2), 5.0);
        assert_eq!(nice_max(1234.0), 2000.0);
        assert_eq!(nice_max(5000.0), 5000.0);
    }
}
