//! Watching the log from a test: a tracing subscriber for the current
//! thread that hands each event to a closure.

/// One log event as the tests see it.
pub struct LogEvent {
    /// The event's message.
    pub message: String,
    /// Bytes of every field's name and value: what the event costs in a log.
    pub size: usize,
}

/// Hands every event on this thread to `on_event` until the guard is dropped.
pub fn tap_logs(
    on_event: impl Fn(LogEvent) + Send + Sync + 'static,
) -> tracing::subscriber::DefaultGuard {
    tracing::subscriber::set_default(Tap(on_event))
}

struct Tap<F>(F);

impl<F: Fn(LogEvent) + Send + Sync + 'static> tracing::Subscriber for Tap<F> {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct Fields(LogEvent);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                let text = format!("{value:?}");
                self.0.size += field.name().len() + text.len();
                if field.name() == "message" {
                    self.0.message = text;
                }
            }
        }
        let mut fields = Fields(LogEvent {
            message: String::new(),
            size: 0,
        });
        event.record(&mut fields);
        (self.0)(fields.0);
    }
}
