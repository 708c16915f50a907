//! A minimal `tracing` subscriber that hands events to the `log` crate, installed process-wide
//! when the embedded broker starts.
//!
//! Why: rumqttd logs through `tracing`, and with no subscriber `tracing` falls back to `log` for
//! spans too — rumqttd opens ERROR-level spans for every packet, which would fill the journal
//! with ERROR lines. This bridge drops spans, forwards events with their target and fields, and
//! makes rumqttd's own events one level quieter (it reports an ordinary client disconnect as an
//! error). Other crates' events (warp, h2) keep their level.
//!
//! Owns nothing else. Must never: panic, replace a subscriber someone else installed (it only
//! installs itself if none is set), or format events the `log` filter would discard.

use std::fmt::Write as _;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

/// Install the bridge as the global `tracing` subscriber unless one is set already. Idempotent.
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if tracing::subscriber::set_global_default(Bridge).is_err() {
            log::debug!("a tracing subscriber is already installed; rumqttd logs through it");
        }
    });
}

/// The `log` level for an event at `level` from `target`.
fn log_level(level: &Level, target: &str) -> log::Level {
    let quieter = target.starts_with("rumqttd");
    match (*level, quieter) {
        (Level::ERROR, false) => log::Level::Error,
        (Level::ERROR, true) | (Level::WARN, false) => log::Level::Warn,
        (Level::WARN, true) | (Level::INFO, false) => log::Level::Info,
        (Level::INFO, true) | (Level::DEBUG, false) => log::Level::Debug,
        _ => log::Level::Trace,
    }
}

struct Bridge;

impl Subscriber for Bridge {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        // Spans never; events depending on the (possibly changing) `log` filter.
        if meta.is_span() {
            Interest::never()
        } else {
            Interest::sometimes()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        meta.is_event()
            && log::logger().enabled(
                &log::Metadata::builder().level(log_level(meta.level(), meta.target())).target(meta.target()).build(),
            )
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut text = Text::default();
        event.record(&mut text);
        log::logger().log(
            &log::Record::builder()
                .level(log_level(meta.level(), meta.target()))
                .target(meta.target())
                .module_path(meta.module_path())
                .file(meta.file())
                .line(meta.line())
                .args(format_args!("{}{}", text.message, text.fields))
                .build(),
        );
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// An event's `message` and its other fields as ` name=value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rumqttd_is_one_level_quieter() {
        assert_eq!(log_level(&Level::ERROR, "rumqttd::server::broker"), log::Level::Warn);
        assert_eq!(log_level(&Level::INFO, "rumqttd::router"), log::Level::Debug);
        assert_eq!(log_level(&Level::ERROR, "h2::proto"), log::Level::Error);
        assert_eq!(log_level(&Level::TRACE, "rumqttd"), log::Level::Trace);
    }
}
