//! The figures of each binary against the baseline's: a table, or JSON.

use std::time::Duration;

use serde_json::json;

use super::measure::{ColdStart, Failure, Package, Target};
use super::proc_status::Memory;

/// Everything measured for one binary.
#[derive(Debug, Clone)]
pub struct Measured {
    pub target: Target,
    pub package: Option<Package>,
    /// One per measured start that polled.
    pub startups: Vec<Duration>,
    pub memories: Vec<Memory>,
    /// One per measured start that logged its `cold start` line.
    pub cold_starts: Vec<ColdStart>,
    /// The start that failed, if one did (a binary is not started again after a failure).
    pub failure: Option<Failure>,
}

/// The median of the samples (the mean of the two middle ones for an even count).
pub fn median(samples: &[f64]) -> Option<f64> {
    let sorted = sorted(samples);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The nearest-rank percentile `p` (0 < p ≤ 100) of the samples.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    let sorted = sorted(samples);
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn sorted(samples: &[f64]) -> Vec<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// `value / base`, when both are there and the base is not zero.
pub fn ratio(value: Option<f64>, base: Option<f64>) -> Option<f64> {
    match (value, base) {
        (Some(value), Some(base)) if base > 0.0 => Some(value / base),
        _ => None,
    }
}

/// The figures of one binary, ready to print.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub package_mib: Option<f64>,
    pub package_kind: Option<&'static str>,
    pub package_ratio: Option<f64>,
    pub startup_median_ms: Option<f64>,
    pub startup_p90_ms: Option<f64>,
    pub startup_ratio: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub peak_rss_ratio: Option<f64>,
    pub runs: usize,
    pub failed: bool,
}

const MIB: f64 = 1024.0 * 1024.0;

/// One row per binary; ratios against the first.
pub fn rows(measured: &[Measured]) -> Vec<Row> {
    let mut rows: Vec<Row> = measured
        .iter()
        .map(|m| {
            let ms: Vec<f64> = m.startups.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
            let rss: Vec<f64> = m.memories.iter().map(|mem| mem.peak_kib as f64 / 1024.0).collect();
            Row {
                name: m.target.name.clone(),
                package_mib: m.package.as_ref().map(|p| p.bytes as f64 / MIB),
                package_kind: m.package.as_ref().map(|p| p.kind),
                package_ratio: None,
                startup_median_ms: median(&ms),
                startup_p90_ms: percentile(&ms, 90.0),
                startup_ratio: None,
                peak_rss_mib: median(&rss),
                peak_rss_ratio: None,
                runs: m.startups.len(),
                failed: m.failure.is_some(),
            }
        })
        .collect();
    let Some(base) = rows.first().cloned() else { return rows };
    for row in &mut rows {
        row.package_ratio = ratio(row.package_mib, base.package_mib);
        row.startup_ratio = ratio(row.startup_median_ms, base.startup_median_ms);
        row.peak_rss_ratio = ratio(row.peak_rss_mib, base.peak_rss_mib);
    }
    rows
}

fn num(value: Option<f64>, decimals: usize, unit: &str) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}{unit}"))
}

fn times(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}x"))
}

/// The table: one line per binary, the baseline first.
pub fn table(rows: &[Row]) -> String {
    let header = ["binary", "package", "x base", "start-up median", "p90", "x base", "peak RSS", "x base", "runs"]
        .map(str::to_owned);
    let mut lines = vec![header.to_vec()];
    for row in rows {
        let package = match (row.package_mib, row.package_kind) {
            (Some(mib), Some(kind)) => format!("{mib:.2} MiB ({kind})"),
            _ => "n/a".to_owned(),
        };
        lines.push(vec![
            row.name.clone(),
            package,
            times(row.package_ratio),
            num(row.startup_median_ms, 1, " ms"),
            num(row.startup_p90_ms, 1, " ms"),
            times(row.startup_ratio),
            num(row.peak_rss_mib, 1, " MiB"),
            times(row.peak_rss_ratio),
            format!("{}{}", row.runs, if row.failed { " FAILED" } else { "" }),
        ]);
    }
    render(&lines)
}

/// Columns padded to their widest cell: the first left-aligned, the rest right-aligned.
fn render(lines: &[Vec<String>]) -> String {
    let columns = lines.first().map_or(0, Vec::len);
    let widths: Vec<usize> =
        (0..columns).map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for line in lines {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(
                |(c, cell)| {
                    if c == 0 { format!("{cell:<w$}", w = widths[c]) } else { format!("{cell:>w$}", w = widths[c]) }
                },
            )
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The start-up breakdown of every binary that logged one: a table of medians in milliseconds.
pub fn breakdown(measured: &[Measured]) -> String {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let mut lines = vec![["binary", "sdk", "config", "aws", "services", "rest"].map(str::to_owned).to_vec()];
    for m in measured.iter().filter(|m| !m.cold_starts.is_empty()) {
        let part = |f: fn(&ColdStart) -> std::time::Duration| {
            median(&m.cold_starts.iter().map(|c| ms(f(c))).collect::<Vec<_>>())
        };
        let startup = median(&m.startups.iter().map(|d| ms(*d)).collect::<Vec<_>>());
        let rest = startup.zip(part(|c| c.total)).map(|(s, t)| (s - t).max(0.0));
        lines.push(vec![
            m.target.name.clone(),
            num(part(|c| c.sdk), 2, " ms"),
            num(part(|c| c.config), 2, " ms"),
            num(part(|c| c.aws), 2, " ms"),
            num(part(|c| c.services), 2, " ms"),
            num(rest, 2, " ms"),
        ]);
    }
    if lines.len() == 1 {
        return String::new();
    }
    render(&lines)
}

/// Everything as JSON, raw samples included.
pub fn to_json(measured: &[Measured], runs: usize, warmup: usize) -> serde_json::Value {
    let rows = rows(measured);
    let binaries: Vec<serde_json::Value> = measured
        .iter()
        .zip(&rows)
        .map(|(m, row)| {
            json!({
                "name": m.target.name,
                "path": m.target.path,
                "package": m.package.as_ref().map(|p| json!({ "kind": p.kind, "path": p.path, "bytes": p.bytes, "binary_bytes": p.binary_bytes })),
                "package_ratio": row.package_ratio.map(round3),
                "startup_ms": {
                    "median": row.startup_median_ms.map(round3),
                    "p90": row.startup_p90_ms.map(round3),
                    "samples": m.startups.iter().map(|d| round3(d.as_secs_f64() * 1000.0)).collect::<Vec<_>>(),
                },
                "startup_ratio": row.startup_ratio.map(round3),
                "peak_rss_kib": {
                    "median": median(&m.memories.iter().map(|mem| mem.peak_kib as f64).collect::<Vec<_>>()),
                    "samples": m.memories.iter().map(|mem| mem.peak_kib).collect::<Vec<_>>(),
                },
                "peak_rss_ratio": row.peak_rss_ratio.map(round3),
                "failure": m.failure.as_ref().map(|f| json!({
                    "reason": f.reason,
                    "init_error": f.init_error,
                    "output_tail": f.output_tail,
                })),
            })
        })
        .collect();
    json!({
        "benchmark": "lambda-startup",
        "measure": "spawn to the first GET /2018-06-01/runtime/invocation/next; VmHWM at that moment",
        "runs": runs,
        "warmup": warmup,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "baseline": measured.first().map(|m| m.target.name.clone()),
        "binaries": binaries,
    })
}

/// Microseconds are plenty in milliseconds, thousandths in ratios.
fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn median_and_p90() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&ten, 90.0), Some(9.0));
        assert_eq!(percentile(&ten, 100.0), Some(10.0));
        assert_eq!(percentile(&[5.0], 90.0), Some(5.0));
        assert_eq!(percentile(&[], 90.0), None);
    }

    fn measured(name: &str, bytes: u64, ms: &[u64], peak_kib: u64) -> Measured {
        Measured {
            target: Target { name: name.into(), path: PathBuf::from(name) },
            package: Some(Package { kind: "zipped", path: PathBuf::from(name), bytes, binary_bytes: bytes * 3 }),
            startups: ms.iter().map(|&ms| Duration::from_millis(ms)).collect(),
            memories: ms.iter().map(|_| Memory { peak_kib, rss_kib: peak_kib }).collect(),
            cold_starts: Vec::new(),
            failure: None,
        }
    }

    #[test]
    fn ratios_are_against_the_first_binary() {
        let mut broken = measured("broken", 3 << 20, &[], 0);
        broken.failure = Some(Failure { reason: "exited".into(), init_error: None, output_tail: String::new() });
        let all = [measured("base", 2 << 20, &[2, 4, 3], 4096), measured("sync", 6 << 20, &[9, 6, 12], 10240), broken];
        let rows = rows(&all);
        assert_eq!(rows[0].package_ratio, Some(1.0));
        assert_eq!(rows[1].package_ratio, Some(3.0));
        assert_eq!(rows[1].startup_median_ms, Some(9.0));
        assert_eq!(rows[1].startup_p90_ms, Some(12.0));
        assert_eq!(rows[1].startup_ratio, Some(3.0));
        assert_eq!(rows[1].peak_rss_ratio, Some(2.5));
        assert_eq!((rows[2].startup_ratio, rows[2].failed), (None, true));

        let text = table(&rows);
        assert_eq!(text.lines().count(), 4);
        assert!(text.lines().nth(2).unwrap().starts_with("sync "), "{text}");
        assert!(text.contains("3.00x") && text.contains("FAILED") && text.contains("n/a"), "{text}");

        let json = to_json(&all, 3, 1);
        assert_eq!(json["baseline"], "base");
        assert_eq!(json["binaries"][1]["startup_ratio"], 3.0);
        assert_eq!(json["binaries"][1]["peak_rss_kib"]["samples"], json!([10240, 10240, 10240]));
        assert_eq!(json["binaries"][2]["failure"]["reason"], "exited");
    }
}
