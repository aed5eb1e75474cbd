//! The report: markdown for stdout, the same figures as JSON.

use crate::cli::{Mode, Plan};
use crate::machine::Machine;
use serde::Serialize;

/// A table of one section.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Table {
    /// Heading above the table.
    pub(crate) caption: String,
    /// Column names.
    pub(crate) header: Vec<String>,
    /// Cells, row by row.
    pub(crate) rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these columns.
    pub(crate) fn new(caption: impl Into<String>, header: &[&str]) -> Table {
        Table {
            caption: caption.into(),
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn markdown(&self) -> String {
        let mut out = String::new();
        if !self.caption.is_empty() {
            out.push_str(&format!("### {}\n\n", self.caption));
        }
        out.push_str(&format!("| {} |\n", self.header.join(" | ")));
        let rule: Vec<&str> = self
            .header
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { "---" } else { "---:" })
            .collect();
        out.push_str(&format!("|{}|\n", rule.join("|")));
        for row in &self.rows {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        out
    }
}

/// One target of the issue, checked against the figures of a run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TargetResult {
    /// The target as the issue states it.
    pub(crate) target: String,
    /// What it was checked on (operation, backend, workload).
    pub(crate) subject: String,
    /// The measured value, formatted.
    pub(crate) measured: String,
    /// Whether it was met.
    pub(crate) met: bool,
}

/// What a section found.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SectionReport {
    /// Stable id (also the JSON key).
    pub(crate) id: &'static str,
    /// Heading.
    pub(crate) title: String,
    /// What was measured and how, in a paragraph.
    pub(crate) method: String,
    /// Result tables.
    pub(crate) tables: Vec<Table>,
    /// Remarks (audit findings, errors seen, diagnostics).
    pub(crate) notes: Vec<String>,
    /// Targets checked by this section.
    pub(crate) targets: Vec<TargetResult>,
    /// Every figure, for the JSON report.
    pub(crate) data: serde_json::Value,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// `quick` or `full`.
    pub(crate) mode: Mode,
    /// How the run was started.
    pub(crate) command: String,
    /// When it started (UTC, RFC 3339).
    pub(crate) started_at: String,
    /// Wall time of the whole run in seconds (without the build).
    pub(crate) duration_s: f64,
    /// Sample sizes and windows.
    pub(crate) plan: Plan,
    /// Where it ran.
    pub(crate) machine: Machine,
    /// Section results in order.
    pub(crate) sections: Vec<SectionReport>,
}

impl Report {
    /// Every target of every section.
    pub(crate) fn targets(&self) -> impl Iterator<Item = &TargetResult> {
        self.sections.iter().flat_map(|s| s.targets.iter())
    }

    /// The markdown report.
    pub(crate) fn markdown(&self) -> String {
        let mut out = format!(
            "# repo-bench ({} mode)\n\n`{}`, started {}, ran {:.0} s.\n\n## Machine\n\n{}\n",
            match self.mode {
                Mode::Quick => "quick",
                Mode::Full => "full",
            },
            self.command,
            self.started_at,
            self.duration_s,
            self.machine.markdown()
        );
        for section in &self.sections {
            out.push_str(&format!("## {}\n\n{}\n\n", section.title, section.method));
            for table in &section.tables {
                out.push_str(&table.markdown());
                out.push('\n');
            }
            for note in &section.notes {
                out.push_str(&format!("- {note}\n"));
            }
            if !section.notes.is_empty() {
                out.push('\n');
            }
        }
        let mut targets = Table::new("", &["target", "subject", "measured", "result"]);
        let mut met = 0;
        let mut total = 0;
        for t in self.targets() {
            total += 1;
            met += usize::from(t.met);
            targets.row(vec![
                t.target.clone(),
                t.subject.clone(),
                t.measured.clone(),
                if t.met { "met" } else { "**missed**" }.to_owned(),
            ]);
        }
        out.push_str(&format!("## Targets: {met} of {total} met\n\n"));
        out.push_str(&targets.markdown());
        out
    }
}
