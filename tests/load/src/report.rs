//! Results: a table on the terminal, and a section of `docs/benchmarks.md` per scenario.

use std::fmt::Write as _;
use std::path::Path;

/// One scenario's results.
#[derive(Debug, Clone, Default)]
pub(crate) struct Report {
    pub(crate) scenario: &'static str,
    pub(crate) title: String,
    /// (measure, value, target verdict)
    pub(crate) rows: Vec<(String, String, String)>,
    pub(crate) notes: Vec<String>,
}

impl Report {
    pub(crate) fn new(scenario: &'static str, title: impl Into<String>) -> Self {
        Self { scenario, title: title.into(), ..Self::default() }
    }

    pub(crate) fn row(&mut self, measure: impl Into<String>, value: impl Into<String>) {
        self.rows.push((measure.into(), value.into(), String::new()));
    }

    /// A row with a target: says whether it is met and by how much it is missed.
    pub(crate) fn target(
        &mut self,
        measure: impl Into<String>,
        value: f64,
        unit: &str,
        target: f64,
        lower_is_better: bool,
    ) {
        let met = if lower_is_better { value <= target } else { value >= target };
        let verdict = if met {
            format!("met (target {target} {unit})")
        } else {
            let ratio = if lower_is_better { value / target } else { target / value.max(f64::MIN_POSITIVE) };
            format!("**missed** by {:.0} % (target {target} {unit})", (ratio - 1.0) * 100.0)
        };
        self.rows.push((measure.into(), format!("{value:.2} {unit}"), verdict));
    }

    pub(crate) fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub(crate) fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "| measure | value | target |\n|---|---|---|");
        for (measure, value, verdict) in &self.rows {
            let _ = writeln!(out, "| {measure} | {value} | {verdict} |");
        }
        for note in &self.notes {
            let _ = writeln!(out, "\n{note}");
        }
        out
    }

    pub(crate) fn print(&self) {
        println!("\n== {} ({}) ==", self.title, self.scenario);
        let width = self.rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        for (measure, value, verdict) in &self.rows {
            println!("  {measure:<width$}  {value:>16}  {verdict}");
        }
        for note in &self.notes {
            println!("  note: {note}");
        }
    }
}

/// Replaces (or appends) each report's section in `docs/benchmarks.md`, between
/// `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`.
pub(crate) fn record(
    path: &Path,
    reports: &[Report],
    machine: &str,
    commit: &str,
    command: &str,
) -> std::io::Result<()> {
    let mut doc = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".into());
    for report in reports {
        let (open, close) =
            (format!("<!-- bench:{} -->", report.scenario), format!("<!-- /bench:{} -->", report.scenario));
        let body = format!(
            "{open}\n### {}\n\nMachine: {machine}. Commit: `{commit}`. Command: `{command}`.\n\n{}{close}",
            report.title,
            report.markdown()
        );
        match (doc.find(&open), doc.find(&close)) {
            (Some(start), Some(end)) if end > start => doc.replace_range(start..end + close.len(), &body),
            _ => {
                doc.push('\n');
                doc.push_str(&body);
                doc.push('\n');
            }
        }
    }
    std::fs::write(path, doc)
}
