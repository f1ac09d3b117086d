//! The bench's tables (text) and plots (small SVG files).

use std::fmt::Write as _;

use super::analyze::Stat;

pub fn cell(s: Option<Stat>) -> String {
    match s {
        Some(s) => format!("{:.1} / {:.1}", s.median, s.p99),
        None => "-".into(),
    }
}

/// A text table: a header row, then rows, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.len());
            }
        }
    }
    let fmt = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![fmt(header.to_vec())];
    out.push(
        w.iter()
            .map(|n| "-".repeat(*n))
            .collect::<Vec<_>>()
            .join("  "),
    );
    for r in rows {
        out.push(fmt(r.iter().map(String::as_str).collect()));
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const COLORS: [&str; 4] = ["#4477aa", "#ee6677", "#228833", "#ccbb44"];

/// Horizontal bars: one group per label, one bar per series (NaN: no bar).
pub fn bars_svg(title: &str, unit: &str, labels: &[String], series: &[(&str, Vec<f64>)]) -> String {
    let (left, bar, gap, width) = (230.0, 9.0, 8.0, 720.0);
    let group_h = bar * series.len() as f64 + gap;
    let height = 50.0 + group_h * labels.len() as f64 + 30.0;
    let max = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let scale = (width - left - 60.0) / max;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="18" font-size="13">{}</text>"#,
        esc(title)
    );
    for (k, (name, _)) in series.iter().enumerate() {
        let x = left + 140.0 * k as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="28" width="10" height="10" fill="{}"/><text x="{}" y="37">{}</text>"#,
            COLORS[k % COLORS.len()],
            x + 14.0,
            esc(name)
        );
    }
    for (i, l) in labels.iter().enumerate() {
        let y0 = 50.0 + group_h * i as f64;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y0 + group_h / 2.0,
            esc(l)
        );
        for (k, (_, vals)) in series.iter().enumerate() {
            let Some(v) = vals.get(i).copied().filter(|v| v.is_finite()) else {
                continue;
            };
            let y = y0 + bar * k as f64;
            let _ = writeln!(
                s,
                r#"<rect x="{left}" y="{y}" width="{:.1}" height="{}" fill="{}"/><text x="{:.1}" y="{}">{v:.1}</text>"#,
                (v * scale).max(0.5),
                bar - 1.0,
                COLORS[k % COLORS.len()],
                left + (v * scale).max(0.5) + 3.0,
                y + bar - 1.5
            );
        }
    }
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="{}">{}</text></svg>"#,
        height - 8.0,
        esc(unit)
    );
    s
}

/// One line plot per panel: (title, points (n, ms)), log-scaled n.
pub fn lines_svg(title: &str, panels: &[(String, Vec<(f64, f64)>)]) -> String {
    let (pw, ph, pad) = (240.0, 170.0, 40.0);
    let width = pw * panels.len().max(1) as f64;
    let height = ph + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="16" font-size="13">{}</text>"#,
        esc(title)
    );
    for (k, (name, pts)) in panels.iter().enumerate() {
        let x0 = pw * k as f64 + pad;
        let (w, h, y0) = (pw - pad - 15.0, ph - 60.0, 40.0);
        let _ = writeln!(
            s,
            r##"<text x="{x0}" y="34">{}</text><rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#999"/>"##,
            esc(name)
        );
        if pts.is_empty() {
            continue;
        }
        let lx = |n: f64| n.max(1.0).ln();
        let (nmin, nmax) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
            (a.min(lx(p.0)), b.max(lx(p.0)))
        });
        let ymax = pts.iter().map(|p| p.1).fold(0.0_f64, f64::max).max(1e-9);
        let px = |n: f64| {
            x0 + if nmax > nmin {
                (lx(n) - nmin) / (nmax - nmin) * w
            } else {
                w / 2.0
            }
        };
        let py = |v: f64| y0 + h - v / ymax * h;
        let path: Vec<String> = pts
            .iter()
            .map(|p| format!("{:.1},{:.1}", px(p.0), py(p.1)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
            path.join(" "),
            COLORS[0]
        );
        for p in pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="9">{:.2}</text><text x="{:.1}" y="{}" font-size="9" text-anchor="middle">{}</text>"#,
                px(p.0),
                py(p.1),
                COLORS[0],
                px(p.0) + 4.0,
                py(p.1) - 4.0,
                p.1,
                px(p.0),
                y0 + h + 12.0,
                p.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{x0}" y="{}" font-size="9">ms (median)</text>"#,
            y0 + h + 26.0
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns() {
        let t = table(&["a", "bb"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t[0], "a    bb");
        assert_eq!(t[1], "---  --");
        assert_eq!(t[2], "xyz  1");
    }

    #[test]
    fn svgs_are_closed_and_escaped() {
        let b = bars_svg(
            "t<1>",
            "ms",
            &["x".into(), "y".into()],
            &[("m", vec![1.0, f64::NAN])],
        );
        assert!(b.contains("t&lt;1&gt;") && b.trim_end().ends_with("</svg>"));
        assert_eq!(b.matches("<rect").count(), 2); // legend + one bar
        let l = lines_svg("s", &[("p".into(), vec![(1.0, 1.0), (16.0, 2.0)])]);
        assert!(l.contains("<polyline") && l.trim_end().ends_with("</svg>"));
        assert_eq!(cell(None), "-");
    }
}
