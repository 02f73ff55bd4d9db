//! Prometheus metrics, served at `GET /metrics` in the text exposition format.
//!
//! One registry per application rather than the process-wide
//! default, so that several instances in one process (the tests) do not share counts.
//! Counters on the check path are resolved to plain atomics once, at start-up: the hot path
//! never looks up a label set.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use strum::VariantArray;

use crate::render::BadgeKind;

/// The routes counted in `version_app_check_requests_total`; the `route` label is the
/// strum name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::VariantArray, strum::IntoStaticStr)]
pub enum CheckRoute {
    /// `GET /check.svg`
    #[strum(serialize = "check.svg")]
    Svg,
    /// `GET /check.png` and `/check@2x.png`
    #[strum(serialize = "check.png")]
    Png,
    /// `GET /check.json`
    #[strum(serialize = "check.json")]
    Json,
}

impl CheckRoute {
    /// The `route` label.
    pub fn label(self) -> &'static str {
        self.into()
    }
}

/// Every metric the application exports.
pub struct Metrics {
    registry: Registry,
    /// `[route][badge kind]`, pre-resolved children of `version_app_check_requests_total`.
    check_requests: [[IntCounter; 4]; 3],
    /// Unreadable checks by reason (`missing`, `not_base64`, …).
    pub check_rejected: IntCounterVec,
    /// Seconds each flush of recorded checks took (successful or not).
    pub check_flush_seconds: Histogram,
    /// Flushes that failed (the batch went back into the buffer).
    pub check_flush_failures: IntCounter,
    /// Checks written to the store.
    pub check_records_flushed: IntCounter,
    /// Checks dropped because the buffer was full.
    pub check_records_dropped: IntCounter,
    /// Distinct keys waiting in the buffer; set from the buffer at scrape time.
    pub check_buffer_keys: IntGauge,
    /// Checks counted into the buffer (each one is in the store once flushed); brought up
    /// to date from the buffer's shards at scrape time.
    pub check_records_buffered: IntCounter,
    /// Checks counted and not yet committed: what this process would lose if killed now;
    /// set from the buffer at scrape time.
    pub check_unflushed: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "version_app_check_requests_total",
                "Version checks answered, by route and severity (unknown = unreadable input)",
            ),
            &["route", "severity"],
        )
        .expect("valid metric");
        // One pre-resolved child per (route, kind), indexed like the enums' declarations.
        let check_requests = std::array::from_fn(|route| {
            let route = CheckRoute::VARIANTS[route].label();
            std::array::from_fn(|kind| {
                requests.with_label_values(&[route, BadgeKind::VARIANTS[kind].severity()])
            })
        });
        let check_rejected = IntCounterVec::new(
            Opts::new(
                "version_app_check_rejected_total",
                "Version checks whose gitlab_info could not be read, by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let check_flush_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "version_app_check_flush_seconds",
                "Time to write one batch of recorded checks to the store",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .expect("valid metric");
        let check_flush_failures = IntCounter::new(
            "version_app_check_flush_failures_total",
            "Flushes of recorded checks that failed and were retried later",
        )
        .expect("valid metric");
        let check_records_flushed = IntCounter::new(
            "version_app_check_records_flushed_total",
            "Version checks written to the store",
        )
        .expect("valid metric");
        let check_records_dropped = IntCounter::new(
            "version_app_check_records_dropped_total",
            "Version checks not recorded because the in-memory buffer was full",
        )
        .expect("valid metric");
        let check_buffer_keys = IntGauge::new(
            "version_app_check_buffer_keys",
            "Distinct (day, host, version, country) keys waiting to be flushed",
        )
        .expect("valid metric");
        let check_records_buffered = IntCounter::new(
            "version_app_check_records_buffered_total",
            "Version checks counted into the in-memory buffer (written to the store by the next flush)",
        )
        .expect("valid metric");
        let check_unflushed = IntGauge::new(
            "version_app_check_unflushed",
            "Version checks counted in memory and not yet committed to the store: the most this process loses if killed now",
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests) as Box<dyn prometheus::core::Collector>,
            Box::new(check_records_buffered.clone()),
            Box::new(check_unflushed.clone()),
            Box::new(check_rejected.clone()),
            Box::new(check_flush_seconds.clone()),
            Box::new(check_flush_failures.clone()),
            Box::new(check_records_flushed.clone()),
            Box::new(check_records_dropped.clone()),
            Box::new(check_buffer_keys.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Metrics {
            registry,
            check_requests,
            check_rejected,
            check_flush_seconds,
            check_flush_failures,
            check_records_flushed,
            check_records_dropped,
            check_buffer_keys,
            check_records_buffered,
            check_unflushed,
        }
    }

    /// Counts one answered check. An atomic add, nothing more.
    pub fn count_check(&self, route: CheckRoute, kind: BadgeKind) {
        self.check_requests[route as usize][kind.index()].inc();
    }

    /// The registry, for other modules to register their own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for I/O reasons; a failure would be a bug in a
        // metric's definition, which is better served as a partial page than a panic.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_counts_land_under_their_labels() {
        let metrics = Metrics::new();
        metrics.count_check(CheckRoute::Png, BadgeKind::UpdateAsap);
        metrics.count_check(CheckRoute::Png, BadgeKind::UpdateAsap);
        metrics.count_check(CheckRoute::Json, BadgeKind::Unknown);
        metrics.check_rejected.with_label_values(&["missing"]).inc();
        let text = metrics.render();
        assert!(
            text.contains(
                r#"version_app_check_requests_total{route="check.png",severity="danger"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"version_app_check_requests_total{route="check.json",severity="unknown"} 1"#
        ));
        assert!(text.contains(r#"version_app_check_rejected_total{reason="missing"} 1"#));
        assert!(text.contains("version_app_check_flush_seconds_bucket"));
        assert!(text.contains("version_app_check_records_dropped_total 0"));
        assert!(text.contains("version_app_check_buffer_keys 0"));
    }
}
