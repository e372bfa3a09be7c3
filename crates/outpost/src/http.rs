//! The HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, served by `hyper` (HTTP/1.1).
//! At most [`MAX_CONNECTIONS`] connections are open at once — beyond that, new ones wait
//! in the kernel's backlog (they hold no descriptor of ours) — and each connection has
//! a deadline, so neither a slow client nor a flood of idle ones can take the
//! descriptors the uploads need.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;

/// A connection's whole life: reading the request, rendering, writing the answer.
const DEADLINE: Duration = Duration::from_secs(10);

/// Time a client gets to send its request head (a scraper sends it at once): idle or
/// slow-loris connections give their slot back quickly.
const HEADER_DEADLINE: Duration = Duration::from_secs(2);

/// What the endpoint serves.
pub struct HttpState {
    /// Rendered on `/metrics`.
    pub metrics: Metrics,
    /// Live totals copied into the gauges at each scrape.
    pub stats: outpost_scheduler::Stats,
    /// The delivery ledger, whose error counts are copied at each scrape.
    pub ledger: Option<std::sync::Arc<outpost_ledger::Ledger>>,
    /// Set once the configuration is loaded and the start-up scan is done.
    pub ready: AtomicBool,
}

/// Serves until `stop` fires.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // A free slot first: while every slot is taken, connections queue in the
        // kernel's backlog instead of costing us a descriptor each.
        let permit = tokio::select! {
            _ = stop.cancelled() => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let sock = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((sock, _)) => sock,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning on accept.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_DEADLINE)
                .keep_alive(false)
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(sock), service);
            let _ = tokio::time::timeout(DEADLINE, conn).await;
            drop(permit);
        });
    }
}

fn route(state: &HttpState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let head_only = req.method() == Method::HEAD;
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return answer(
            StatusCode::NOT_FOUND,
            "text/plain",
            b"not found\n".to_vec(),
            head_only,
        );
    }
    if req.method() != Method::GET && !head_only {
        let mut r = answer(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            b"method not allowed\n".to_vec(),
            false,
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" => {
            state.metrics.refresh(&state.stats);
            if let Some(l) = &state.ledger {
                state.metrics.refresh_ledger(l);
            }
            answer(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                state.metrics.render(),
                head_only,
            )
        }
        "/healthz" => answer(StatusCode::OK, "text/plain", b"ok\n".to_vec(), head_only),
        _ if state.ready.load(Ordering::SeqCst) => {
            answer(StatusCode::OK, "text/plain", b"ready\n".to_vec(), head_only)
        }
        _ => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            b"starting\n".to_vec(),
            head_only,
        ),
    }
}

fn answer(
    status: StatusCode,
    ctype: &'static str,
    body: Vec<u8>,
    head_only: bool,
) -> Response<Full<Bytes>> {
    let len = body.len();
    let mut r = Response::new(Full::new(if head_only {
        Bytes::new()
    } else {
        Bytes::from(body)
    }));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    h.insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    r
}
