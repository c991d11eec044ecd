//! runc-compatible logging: text or JSON lines (`{"level","msg","time"}`) to `--log` or stderr.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `time="..." level=error msg="..."`.
    Text,
    /// One JSON object per line.
    Json,
}

/// A tracing subscriber writing runc-style lines. berth logs events only (no spans), so it
/// subscribes directly: tracing-subscriber's registry would be code and memory for nothing on
/// the lean binary's hot path.
pub struct LogLayer {
    out: Mutex<Box<dyn Write + Send>>,
    format: Format,
    max: Level,
}

impl LogLayer {
    /// Writes to `out`, keeping events at or above `max` verbosity.
    pub fn new(out: Box<dyn Write + Send>, format: Format, max: Level) -> Self {
        LogLayer {
            out: Mutex::new(out),
            format,
            max,
        }
    }
}

struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

impl Subscriber for LogLayer {
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        *meta.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::from_level(self.max))
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let level = *event.metadata().level();
        if level > self.max {
            return;
        }
        let mut msg = Message(String::new());
        event.record(&mut msg);
        let time = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
        let line = match self.format {
            Format::Json => {
                serde_json::json!({"level": level_name(level), "msg": msg.0, "time": time})
                    .to_string()
            }
            Format::Text => format!(
                "time=\"{time}\" level={} msg={:?}",
                level_name(level),
                msg.0
            ),
        };
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}
