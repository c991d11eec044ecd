//! Phase timing for `--debug`: each phase of create and start logs how long it took, so a
//! start-latency regression points at its phase. Costs nothing unless debug logging is on.

use std::time::Instant;

/// A stopwatch that logs one debug line per phase.
#[derive(Debug)]
pub struct Phases {
    what: &'static str,
    last: Option<Instant>,
}

impl Phases {
    /// Starts timing `what` (e.g. "create").
    pub fn start(what: &'static str) -> Self {
        let last = tracing::enabled!(tracing::Level::DEBUG).then(Instant::now);
        Phases { what, last }
    }

    /// Ends the current phase, named `phase`, and starts the next.
    pub fn mark(&mut self, phase: &str) {
        if let Some(last) = self.last {
            let now = Instant::now();
            tracing::debug!(
                "{} phase {phase}: {} us",
                self.what,
                now.duration_since(last).as_micros()
            );
            self.last = Some(now);
        }
    }
}
