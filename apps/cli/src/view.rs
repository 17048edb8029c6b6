//! Terminal output: live bars per candidate, and the final tables.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::Value;

/// One bar per candidate, its length the candidate's share (0.1 % steps).
#[derive(Debug)]
pub struct LiveBars {
    bars: Vec<(String, ProgressBar)>,
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>14.bold} {bar:50.green/white} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("█▉ ")
}

impl LiveBars {
    /// Bars for the candidates of a results document, added to `multi`.
    pub fn new(multi: &MultiProgress, doc: &Value) -> Self {
        let bars = doc["totals"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|t| {
                let bar = multi.add(ProgressBar::new(1000).with_style(style()));
                bar.set_prefix(t["name"].as_str().unwrap_or("?").to_owned());
                (t["candidateId"].as_str().unwrap_or("").to_owned(), bar)
            })
            .collect();
        let view = Self { bars };
        view.update(doc);
        view
    }

    /// Shows the counts of a results (or compact live) document.
    pub fn update(&self, doc: &Value) {
        let total = doc["totalVotes"].as_u64().unwrap_or(0);
        for (id, bar) in &self.bars {
            let votes = doc["totals"]
                .as_array()
                .and_then(|ts| ts.iter().find(|t| t["candidateId"] == id.as_str()))
                .and_then(|t| t["votes"].as_u64())
                .or_else(|| doc["counts"][id.as_str()].as_u64())
                .unwrap_or(0);
            let share = if total == 0 {
                0.0
            } else {
                votes as f64 * 100.0 / total as f64
            };
            bar.set_position((share * 10.0).round() as u64);
            bar.set_message(format!("{share:5.1}%  {votes} votes"));
        }
    }

    /// Stops drawing, leaving each bar at its share (`finish` would fill them all).
    pub fn finish(&self) {
        for (_, bar) in &self.bars {
            bar.abandon();
        }
    }
}

/// The results document as a table.
pub fn print_results(doc: &Value) {
    let state = if doc["embargoed"] == true {
        "EMBARGOED"
    } else if doc["final"] == true {
        "FINAL"
    } else {
        doc["status"].as_str().unwrap_or("?")
    };
    println!(
        "{} [{}] {} votes (counts from {}, as of {})",
        doc["electionTitle"].as_str().unwrap_or("?"),
        state,
        doc["totalVotes"],
        doc["source"].as_str().unwrap_or("?"),
        doc["asOf"].as_str().unwrap_or("?")
    );
    for t in doc["totals"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let pct = t["percentage"].as_f64().unwrap_or(0.0);
        let width = (pct / 2.0).round() as usize;
        println!(
            "  {:<20} {:>8} {:>6.1}%  {}",
            t["name"].as_str().unwrap_or("?"),
            t["votes"],
            pct,
            "█".repeat(width)
        );
    }
}

/// The reconciliation as lines.
pub fn print_reconciliation(r: &Value) {
    println!(
        "reconciliation of {} ({}): {}",
        r["electionTitle"].as_str().unwrap_or("?"),
        r["status"].as_str().unwrap_or("?"),
        r["verdictText"].as_str().unwrap_or("?")
    );
    println!(
        "  accepted A {}  persisted P {}  conflicts D {}  dead-lettered L {}  in flight Q {}  (redeliveries ignored {})",
        r["accepted"],
        r["persisted"],
        r["conflicts"],
        r["deadLettered"],
        r["inFlight"],
        r["duplicatesDropped"]
    );
    for c in r["perCandidate"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        println!(
            "  {:<20} accepted {:>8}  persisted {:>8}  difference {}",
            c["name"].as_str().unwrap_or("?"),
            c["accepted"],
            c["persisted"],
            c["difference"]
        );
    }
}
