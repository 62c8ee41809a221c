//! Diagnostics: `tracing` to stderr (text or JSON, level from `ZENITH_LOG`) and, when built
//! with the `otlp` feature and given `--otlp-endpoint`, the same spans exported over OTLP/HTTP.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Keeps the exporter alive; `shutdown` flushes what is buffered.
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    pub fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(p) = self.provider {
            if let Err(e) = p.shutdown() {
                eprintln!("warning: flushing traces failed: {e}");
            }
        }
    }
}

/// Directives enabling the per-attempt spans for the trace exporter.
#[cfg(feature = "otlp")]
const ATTEMPT_SPANS: &str =
    "info,zenith_server::control=debug,zenith_engine::command=debug,zenith_agent::executor=debug";

/// `service` names the process in traces (`zenith-server`, `zenith-agent`).
pub fn init(daemon: bool, json: bool, otlp: Option<&str>, service: &str) -> Telemetry {
    let default = if daemon { "info" } else { "warn" };
    let directives = std::env::var("ZENITH_LOG").unwrap_or_else(|_| default.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        // Colours only for a person at a terminal, and never under NO_COLOR
        // (https://no-color.org): not into files, pipes or journald.
        let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        tracing_subscriber::fmt::layer()
            .with_ansi(colour)
            .with_writer(std::io::stderr)
            .boxed()
    };
    // Each layer filters for itself: the per-attempt spans (`dispatch`, `report`, `run`) are
    // at debug level, so the log output does not build them (formatting their fields for
    // every job was 2% of the server at 50,000 jobs/s) unless asked to, while the trace
    // exporter below takes them.
    let registry = tracing_subscriber::registry().with(fmt.with_filter(filter));
    #[cfg(feature = "otlp")]
    {
        let provider = otlp.and_then(|endpoint| match exporter(endpoint, service) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("warning: traces will not be exported to {endpoint}: {e}");
                None
            }
        });
        let layer = provider.as_ref().map(|p| {
            use opentelemetry::trace::TracerProvider as _;
            // What the log shows, plus the job lifecycle's spans.
            let traced =
                tracing_subscriber::EnvFilter::try_new(format!("{directives},{ATTEMPT_SPANS}"))
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(ATTEMPT_SPANS));
            tracing_opentelemetry::layer()
                .with_tracer(p.tracer("zenith"))
                .with_filter(traced)
        });
        let _ = registry.with(layer).try_init();
        Telemetry { provider }
    }
    #[cfg(not(feature = "otlp"))]
    {
        let _ = (otlp, service);
        let _ = registry.try_init();
        Telemetry {}
    }
}

#[cfg(feature = "otlp")]
fn exporter(
    endpoint: &str,
    service: &str,
) -> Result<opentelemetry_sdk::trace::SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::WithExportConfig;
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url)
        .build()?;
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_string())
                .build(),
        )
        .build())
}
