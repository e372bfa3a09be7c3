//! The HTTP endpoint: `/metrics`, `/healthz`, `/readyz`. A tiny HTTP/1.1 responder:
//! each connection has its own task and a deadline, so a slow client delays no one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// What the endpoint serves.
pub struct HttpState {
    /// Rendered on `/metrics`.
    pub metrics: Metrics,
    /// Live totals copied into the gauges at each scrape.
    pub stats: outpost_scheduler::Stats,
    /// Set once the configuration is loaded and the start-up scan is done.
    pub ready: AtomicBool,
}

/// Serves until `stop` fires.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((sock, _)) => {
                    let state = state.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(Duration::from_secs(10), handle(sock, &state)).await;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

async fn handle(mut sock: TcpStream, state: &HttpState) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 16 * 1024 {
            return respond(
                &mut sock,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"too large\n",
                false,
            )
            .await;
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    let known = matches!(path, "/metrics" | "/healthz" | "/readyz");
    if !known {
        return respond(
            &mut sock,
            "404 Not Found",
            "text/plain",
            b"not found\n",
            head_only,
        )
        .await;
    }
    if method != "GET" && method != "HEAD" {
        return respond(
            &mut sock,
            "405 Method Not Allowed",
            "text/plain",
            b"method not allowed\n",
            false,
        )
        .await;
    }
    match path {
        "/metrics" => {
            state.metrics.refresh(&state.stats);
            let body = state.metrics.render();
            respond(
                &mut sock,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
                head_only,
            )
            .await
        }
        "/healthz" => respond(&mut sock, "200 OK", "text/plain", b"ok\n", head_only).await,
        _ => {
            if state.ready.load(Ordering::SeqCst) {
                respond(&mut sock, "200 OK", "text/plain", b"ready\n", head_only).await
            } else {
                respond(
                    &mut sock,
                    "503 Service Unavailable",
                    "text/plain",
                    b"starting\n",
                    head_only,
                )
                .await
            }
        }
    }
}

async fn respond(
    sock: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n",
        body.len(),
        if status.starts_with("405") { "Allow: GET, HEAD\r\n" } else { "" }
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    sock.write_all(&out).await?;
    sock.shutdown().await
}
