//! How results are shown: tables for people, JSON for scripts.

use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

#[derive(Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
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
