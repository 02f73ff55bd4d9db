//! Request bodies under a deadline, a minimum rate and a memory budget (issue 8, defects 1-2).
//!
//! Every route that reads a body reads it through [`TimedBody`]: the stream fails when no
//! chunk arrives for `request_body_idle_timeout_ms`, when the whole body takes longer than
//! `request_body_timeout_secs`, or when, past the idle window, it arrives slower than
//! `request_body_min_bytes_per_sec` on average. A stalled, trickled or unterminated body
//! (an upload whose closing multipart boundary never comes) therefore ends with 408 and a
//! closed connection instead of holding memory and a slot forever.
//!
//! Service Ping bodies also take their bytes from one process-wide budget
//! (`ingest_max_body_bytes_in_flight`) chunk by chunk, *before* ingest admission: a stalled
//! body holds only the bytes it has sent, not one of the few admission slots, so a crowd of
//! slow senders cannot keep a well-behaved GitLab instance out.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::{Stream, StreamExt};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use crate::config::Settings;
use crate::error::ApiError;

/// Why a body was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    /// No chunk arrived within the idle timeout.
    IdleTimeout,
    /// The whole body took longer than the total deadline.
    Deadline,
    /// The body arrived slower than the minimum rate.
    TooSlow,
    /// The memory budget for Service Ping bodies in flight is spent.
    Busy,
}

impl BodyFailure {
    /// The `reason` label of `version_app_http_body_aborted_total`.
    pub fn label(self) -> &'static str {
        match self {
            BodyFailure::IdleTimeout => "idle_timeout",
            BodyFailure::Deadline => "deadline",
            BodyFailure::TooSlow => "too_slow",
            BodyFailure::Busy => "busy",
        }
    }

    /// What the client is told.
    pub fn message(self, limits: &BodyLimits) -> String {
        match self {
            BodyFailure::IdleTimeout => format!(
                "the request body stalled: no data for {} ms",
                limits.idle.as_millis()
            ),
            BodyFailure::Deadline => format!(
                "the request body was not complete within {} s",
                limits.total.as_secs()
            ),
            BodyFailure::TooSlow => format!(
                "the request body arrived slower than {} bytes per second",
                limits.min_bytes_per_sec
            ),
            BodyFailure::Busy => {
                "the server is receiving too many payloads at once, retry later".into()
            }
        }
    }
}

/// Waits and rates every body read is held to.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Longest gap between two chunks.
    pub idle: Duration,
    /// Longest time for the whole body.
    pub total: Duration,
    /// Smallest average rate, enforced once `idle` has passed since the first byte was awaited.
    pub min_bytes_per_sec: u64,
}

/// The per-application body policy: limits, the ingest byte budget, and counters.
pub struct BodyGuard {
    /// The waits and rates.
    pub limits: BodyLimits,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
    aborted: IntCounterVec,
    /// Service Ping requests answered 503, by cause (`admission_full`, `body_budget`,
    /// `store_unavailable`).
    pub ingest_refused: IntCounterVec,
    /// Connections accepted since start.
    pub connections_accepted: IntCounter,
    /// Connections open now.
    pub connections_open: prometheus::IntGauge,
}

impl BodyGuard {
    /// Builds the policy from the settings and registers its metrics.
    pub fn new(settings: &Settings, registry: &Registry) -> BodyGuard {
        let aborted = IntCounterVec::new(
            Opts::new(
                "version_app_http_body_aborted_total",
                "Request bodies cut off (answered 408 or 503, connection closed), by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let ingest_refused = IntCounterVec::new(
            Opts::new(
                "version_app_ingest_refused_total",
                "Service Ping requests refused with 503, by cause",
            ),
            &["cause"],
        )
        .expect("valid metric");
        let connections_accepted = IntCounter::new(
            "version_app_http_connections_accepted_total",
            "TCP connections accepted by the HTTP server",
        )
        .expect("valid metric");
        let connections_open = prometheus::IntGauge::new(
            "version_app_http_connections_open",
            "TCP connections open now (the server stops accepting at http_max_connections)",
        )
        .expect("valid metric");
        for reason in ["idle_timeout", "deadline", "too_slow", "busy"] {
            aborted.with_label_values(&[reason]);
        }
        for cause in ["admission_full", "body_budget", "store_unavailable"] {
            ingest_refused.with_label_values(&[cause]);
        }
        for collector in [
            Box::new(aborted.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(ingest_refused.clone()),
            Box::new(connections_accepted.clone()),
            Box::new(connections_open.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        let budget_bytes = settings.ingest.max_body_bytes_in_flight.max(1);
        BodyGuard {
            limits: BodyLimits {
                idle: settings
                    .http
                    .body_idle_timeout
                    .max(Duration::from_millis(1)),
                total: settings.http.body_timeout.max(Duration::from_secs(1)),
                min_bytes_per_sec: settings.http.body_min_bytes_per_sec,
            },
            budget: Arc::new(Semaphore::new(budget_bytes.min(Semaphore::MAX_PERMITS))),
            budget_bytes,
            aborted,
            ingest_refused,
            connections_accepted,
            connections_open,
        }
    }

    /// Wraps a body stream; `budgeted` bodies take their bytes from the ingest budget.
    pub fn wrap<S>(&self, inner: S, budgeted: bool) -> (TimedBody<S>, BodyTicket) {
        let ticket = BodyTicket {
            shared: Arc::new(Mutex::new(Shared::default())),
        };
        let now = Instant::now();
        let body = TimedBody {
            inner,
            limits: self.limits,
            started: now,
            deadline: Box::pin(tokio::time::sleep(self.limits.total)),
            idle: Box::pin(tokio::time::sleep(self.limits.idle)),
            received: 0,
            budget: budgeted.then(|| self.budget.clone()),
            shared: ticket.shared.clone(),
            aborted: self.aborted.clone(),
            done: false,
        };
        (body, ticket)
    }

    /// Reads a whole body of at most `limit` bytes.
    pub async fn read<S>(
        &self,
        inner: S,
        limit: usize,
        budgeted: bool,
    ) -> Result<ReadBody, BodyError>
    where
        S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
    {
        let (mut body, ticket) = self.wrap(inner, budgeted);
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => {
                    if buf.len() + chunk.len() > limit {
                        return Err(BodyError::TooLarge);
                    }
                    buf.extend_from_slice(&chunk);
                }
                Err(err) => return Err(ticket.classify(&err, &self.limits)),
            }
        }
        Ok(ReadBody {
            bytes: buf.freeze(),
            _ticket: ticket,
        })
    }

    /// Largest budget, for messages.
    pub fn budget_bytes(&self) -> usize {
        self.budget_bytes
    }
}

/// A body read whole, holding its share of the budget until dropped.
pub struct ReadBody {
    /// The bytes.
    pub bytes: Bytes,
    _ticket: BodyTicket,
}

/// Why [`BodyGuard::read`] gave up.
#[derive(Debug)]
pub enum BodyError {
    /// Over the route's cap.
    TooLarge,
    /// Cut off by the policy.
    Cut(BodyFailure, String),
    /// The client went away or sent a broken body.
    Broken(String),
}

impl From<BodyError> for ApiError {
    fn from(err: BodyError) -> Self {
        match err {
            BodyError::TooLarge => ApiError::PayloadTooLarge("the body is too large".into()),
            BodyError::Cut(BodyFailure::Busy, message) => ApiError::Busy(message),
            BodyError::Cut(_, message) => ApiError::RequestTimeout(message),
            BodyError::Broken(cause) => {
                ApiError::BadRequest(format!("the body could not be read: {cause}"))
            }
        }
    }
}

#[derive(Default)]
struct Shared {
    held: Option<OwnedSemaphorePermit>,
    failure: Option<BodyFailure>,
}

/// The caller's side of a [`TimedBody`]: holds the body's budget until dropped and tells
/// why the stream failed.
pub struct BodyTicket {
    shared: Arc<Mutex<Shared>>,
}

impl BodyTicket {
    /// Why the body was cut off, if the policy did it.
    pub fn failure(&self) -> Option<BodyFailure> {
        self.shared.lock().ok()?.failure
    }

    /// Classifies a stream error.
    pub fn classify(&self, err: &PayloadError, limits: &BodyLimits) -> BodyError {
        match self.failure() {
            Some(failure) => BodyError::Cut(failure, failure.message(limits)),
            None => BodyError::Broken(err.to_string()),
        }
    }
}

/// A body stream held to [`BodyLimits`] (see the module docs).
pub struct TimedBody<S> {
    inner: S,
    limits: BodyLimits,
    started: Instant,
    deadline: Pin<Box<Sleep>>,
    idle: Pin<Box<Sleep>>,
    received: u64,
    budget: Option<Arc<Semaphore>>,
    shared: Arc<Mutex<Shared>>,
    aborted: IntCounterVec,
    done: bool,
}

impl<S> TimedBody<S> {
    fn fail(&mut self, failure: BodyFailure) -> Poll<Option<Result<Bytes, PayloadError>>> {
        self.done = true;
        if let Ok(mut shared) = self.shared.lock() {
            shared.failure = Some(failure);
        }
        self.aborted.with_label_values(&[failure.label()]).inc();
        let kind = match failure {
            BodyFailure::Busy => std::io::ErrorKind::Other,
            _ => std::io::ErrorKind::TimedOut,
        };
        Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
            kind,
            failure.message(&self.limits),
        )))))
    }

    fn take_budget(&self, len: usize) -> bool {
        let Some(budget) = &self.budget else {
            return true;
        };
        let Ok(n) = u32::try_from(len) else {
            return false;
        };
        match budget.clone().try_acquire_many_owned(n) {
            Ok(permit) => {
                if let Ok(mut shared) = self.shared.lock() {
                    match shared.held.as_mut() {
                        Some(held) => held.merge(permit),
                        None => shared.held = Some(permit),
                    }
                }
                true
            }
            Err(_) => false,
        }
    }
}

impl<S> Stream for TimedBody<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return self.fail(BodyFailure::Deadline);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.received += chunk.len() as u64;
                let elapsed = self.started.elapsed();
                if elapsed > self.limits.idle
                    && (self.received as f64)
                        < self.limits.min_bytes_per_sec as f64 * elapsed.as_secs_f64()
                {
                    return self.fail(BodyFailure::TooSlow);
                }
                if !self.take_budget(chunk.len()) {
                    return self.fail(BodyFailure::Busy);
                }
                let next = tokio::time::Instant::now() + self.limits.idle;
                self.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(other) => {
                self.done = other.is_none();
                Poll::Ready(other)
            }
            Poll::Pending => {
                if self.idle.as_mut().poll(cx).is_ready() {
                    return self.fail(BodyFailure::IdleTimeout);
                }
                Poll::Pending
            }
        }
    }
}

/// Counts connections in `/metrics`: put into each connection's extensions at accept, and
/// dropped by the server when the connection closes.
pub struct ConnectionCount {
    open: prometheus::IntGauge,
}

impl ConnectionCount {
    /// Counts one accepted connection.
    pub fn accept(guard: &BodyGuard) -> ConnectionCount {
        guard.connections_accepted.inc();
        guard.connections_open.inc();
        ConnectionCount {
            open: guard.connections_open.clone(),
        }
    }
}

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.open.dec();
    }
}
