//! Trace context that travels with a message across the routing plane.
//!
//! A publisher (the api's REST publish, an edge's client publish) writes the W3C
//! `traceparent` / `tracestate` of its current span into the envelope; the edge that fans the
//! message out makes its delivery span a child of that context. The trace therefore continues
//! through NATS — and through JetStream for groups with history, which stores and republishes
//! the envelope's bytes unchanged — without any header support from the bus.
//!
//! Spans cost something on the hot path, so nothing here creates one: callers ask
//! [`enabled`] first, which is false unless the process installed an exporter.

use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Set once by the binary when it installs a trace exporter. A plain flag: read on every
/// publish and every fan-out, written once at start.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Marks traces as exported by this process (the binary calls it after installing the
/// OpenTelemetry layer).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether spans are exported: when false, callers skip creating spans.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The W3C trace context of a span, as the envelope carries it: `traceparent` and
/// `tracestate`, both empty when the span has no valid context (tracing off, or no
/// OpenTelemetry layer).
pub fn context_of(span: &tracing::Span) -> (String, String) {
    if !enabled() {
        return (String::new(), String::new());
    }
    let cx = span.context();
    let span_ref = cx.span();
    let sc = span_ref.span_context();
    if !sc.is_valid() {
        return (String::new(), String::new());
    }
    (traceparent(sc), sc.trace_state().header())
}

/// Formats a `traceparent` header value (version 00).
fn traceparent(sc: &SpanContext) -> String {
    format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8())
}

/// Parses a `traceparent` (and `tracestate`) into a remote span context; `None` for anything
/// malformed — a bad header from a tenant or an old packet must never fail a delivery.
pub fn parse(traceparent: &str, tracestate: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace_id, span_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    // Version 00 has exactly four fields; later versions may append more (W3C: parse the first four).
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if trace_id.len() != 32 || span_id.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let state = TraceState::from_str(tracestate).unwrap_or_default();
    let sc = SpanContext::new(trace_id, span_id, TraceFlags::new(flags) & TraceFlags::SAMPLED, true, state);
    sc.is_valid().then_some(sc)
}

/// Makes `span` a child of the remote context `traceparent` names, if it is valid.
pub fn set_parent(span: &tracing::Span, traceparent: &str, tracestate: &str) {
    if let Some(sc) = parse(traceparent, tracestate) {
        // Fails only when the span is disabled or has started already: then it simply keeps
        // its own parent.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(sc));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips() {
        let header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let sc = parse(header, "congo=t61rcWkgMzE").expect("valid");
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(traceparent(&sc), header);
        assert_eq!(sc.trace_state().header(), "congo=t61rcWkgMzE");
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
        ] {
            assert!(parse(bad, "").is_none(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn nothing_is_carried_while_tracing_is_off() {
        // No exporter installed in this test process.
        assert_eq!(context_of(&tracing::Span::current()), (String::new(), String::new()));
    }
}
