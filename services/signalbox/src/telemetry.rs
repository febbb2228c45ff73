//! Logs, metrics and traces for every role.
//!
//! - **Logs**: `tracing` to stderr, text or one JSON object per line (`--log-format json`),
//!   filtered by `SIGNALBOX_LOG` (or `RUST_LOG`), default `info`.
//! - **Metrics**: the process-wide Prometheus recorder that `/metrics` renders; histograms
//!   get fixed buckets (names and labels: docs/operations.md).
//! - **Traces**: OpenTelemetry spans exported over OTLP/HTTP (protobuf), configured by the
//!   standard `OTEL_*` variables and off unless an endpoint is set. The trace context crosses
//!   the routing plane inside the envelope (`signalbox_bus::trace`).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// What [`init`] installed; [`Telemetry::shutdown`] flushes the spans still buffered.
#[derive(Debug)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still in the batch (bounded by the exporter's timeout). Call it
    /// outside the async runtime: the exporter's HTTP client blocks.
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer
            && let Err(err) = provider.shutdown_with_timeout(Duration::from_secs(5))
        {
            eprintln!("warning: flushing traces failed: {err}");
        }
    }
}

/// Installs logs, and traces when `OTEL_*` asks for them. `service` names this process in
/// traces unless `OTEL_SERVICE_NAME` does. Call it before starting the async runtime (the
/// OTLP exporter builds a blocking HTTP client).
pub fn init(format: LogFormat, service: &str) -> Telemetry {
    let filter = std::env::var("SIGNALBOX_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(std::io::stderr).boxed()
        }
    };
    let (tracer, problem) = match otlp_from_env(service) {
        Ok(tracer) => (tracer, None),
        Err(problem) => (None, Some(problem)),
    };
    // Spans are exported at `info` and above whatever the log filter says: quieting the logs
    // must not cut traces.
    let spans = tracer.as_ref().map(|provider| {
        tracing_opentelemetry::layer().with_tracer(provider.tracer("signalbox")).with_filter(LevelFilter::INFO)
    });
    let _ = tracing_subscriber::registry().with(logs.with_filter(filter)).with(spans).try_init();
    if tracer.is_some() {
        signalbox_bus::trace::enable();
        tracing::info!(service, "exporting traces over OTLP/HTTP");
    }
    if let Some(problem) = problem {
        tracing::warn!(problem = %problem, "traces are off");
    }
    Telemetry { tracer }
}

/// Why traces could not be turned on although asked for.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL={0} is not supported: use http/protobuf")]
    Protocol(String),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// A tracer provider exporting over OTLP/HTTP, if the environment asks for traces:
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) set, `OTEL_SDK_DISABLED` not
/// `true`, `OTEL_TRACES_EXPORTER` not `none`. The SDK and the exporter read the rest of the
/// standard variables themselves (`OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`,
/// `OTEL_EXPORTER_OTLP_HEADERS`, `…_TIMEOUT`, `OTEL_RESOURCE_ATTRIBUTES`, …).
fn otlp_from_env(service: &str) -> Result<Option<SdkTracerProvider>, TracesError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"));
    if endpoint.is_none()
        || var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return Ok(None);
    }
    let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
    if let Some(protocol) = protocol.filter(|p| p != "http/protobuf") {
        return Err(TracesError::Protocol(protocol));
    }
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()?;
    let mut resource = Resource::builder();
    if var("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service.to_owned());
    }
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
    Ok(Some(provider))
}

/// Bucket bounds (seconds) for every `*_seconds` histogram: 100 µs to 10 s, covering a
/// local fan-out (micro- to milliseconds) as well as a webhook call (up to its timeout).
const SECONDS_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed already (tests): ours then just renders empty.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}
