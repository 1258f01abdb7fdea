//! How results are shown: tables for people, JSON for scripts.

use std::io::IsTerminal;
use std::time::Duration;

use comfy_table::{ContentArrangement, Table, presets};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

#[derive(Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Whether progress is drawn: for a person at a terminal, never into JSON or a pipe.
    pub fn shows_progress(&self) -> bool {
        !self.json && std::io::stderr().is_terminal()
    }

    pub fn print_json<T: Serialize>(&self, value: &T) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(value)?);
        Ok(())
    }
}

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING).set_content_arrangement(ContentArrangement::Dynamic).set_header(header);
    t
}

pub fn when(t: Option<time::OffsetDateTime>) -> String {
    t.map(|t| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| t.to_string()))
        .unwrap_or_else(|| "-".into())
}

/// A spinner on stderr with `template` (`indicatif`'s syntax), ticking on its own while a long
/// call runs. Only for [`Output::shows_progress`]: off a terminal the commands print what they
/// always printed, line by line.
pub fn spinner(template: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner()));
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
