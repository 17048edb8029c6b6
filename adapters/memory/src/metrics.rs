//! Metrics sinks for tests: one that keeps every event, one that drops them.

use std::sync::{Arc, Mutex};

use livevote_ports::{MetricEvent, Metrics};

/// Drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMetrics;

impl Metrics for NoMetrics {
    fn record(&self, _event: MetricEvent) {}
}

/// Keeps every event, for assertions.
#[derive(Debug, Clone, Default)]
pub struct RecordingMetrics {
    events: Arc<Mutex<Vec<MetricEvent>>>,
}

impl RecordingMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn events(&self) -> Vec<MetricEvent> {
        self.events.lock().expect("metrics lock").clone()
    }

    /// Sums a number out of the events `f` picks.
    pub fn sum(&self, f: impl Fn(&MetricEvent) -> Option<u64>) -> u64 {
        self.events
            .lock()
            .expect("metrics lock")
            .iter()
            .filter_map(f)
            .sum()
    }
}

impl Metrics for RecordingMetrics {
    fn record(&self, event: MetricEvent) {
        self.events.lock().expect("metrics lock").push(event);
    }
}
