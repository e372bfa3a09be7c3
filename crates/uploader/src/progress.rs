//! Stall detection: `timeouts.read` is *time without progress*, never a total. A request
//! that carries a body (PutObject, UploadPart) fails only when none of its bytes moved
//! for `read` — while it sends, or, once its last byte left, while it waits for the
//! answer — so a slow but moving upload is never cut, and a link that stopped moving is
//! detected within about `read`.
//!
//! How: the SDK's own read timeout (which covers the whole call) is switched off for
//! these operations; an interceptor, after signing, wraps the request body so that each
//! 64 KiB frame the HTTP client takes marks progress (the client takes the next frame
//! only when the connection can send more); and [`guard`] ends the call once the last
//! mark is older than `read`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;

use crate::{ErrorClass, UploadError};

/// Frames handed to the HTTP client at most this large: the unit of progress.
const FRAME: usize = 64 * 1024;

/// When a request last made progress.
#[derive(Debug)]
pub(crate) struct Progress {
    /// When the request began: `last_ms` counts from here (an atomic holds no Instant).
    start: Instant,
    /// Milliseconds after `start` of the last progress.
    last_ms: AtomicU64,
}

impl Progress {
    pub(crate) fn new() -> Arc<Progress> {
        Arc::new(Progress {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Time since the last progress.
    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Runs `call` until it ends, or fails it once `progress` has not moved for `read`.
pub(crate) async fn guard<T, E>(
    op: &'static str,
    progress: &Progress,
    read: Duration,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<Result<T, E>, UploadError> {
    tokio::pin!(call);
    let tick = (read / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    loop {
        tokio::select! {
            r = &mut call => return Ok(r),
            _ = tokio::time::sleep(tick) => {
                if progress.idle() >= read {
                    return Err(UploadError::new(
                        ErrorClass::Transient,
                        op,
                        format!(
                            "stalled: no progress for {} s (timeouts.read)",
                            read.as_secs_f64()
                        ),
                    ));
                }
            }
        }
    }
}

/// The interceptor that makes a request's body report its progress (after signing, so
/// the signature covers the same bytes).
#[derive(Debug)]
pub(crate) struct MarkProgress(pub(crate) Arc<Progress>);

impl Intercept for MarkProgress {
    fn name(&self) -> &'static str {
        "outpost::MarkProgress"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = context.request_mut().body_mut();
        let inner = std::mem::replace(body, SdkBody::taken());
        let progress = self.0.clone();
        *body = inner.map(move |b| {
            SdkBody::from_body_1_x(Framed {
                inner: b,
                pending: Bytes::new(),
                progress: progress.clone(),
            })
        });
        Ok(())
    }
}

/// A body handed out in frames of at most [`FRAME`] bytes, each marking progress.
struct Framed {
    /// The request body.
    inner: SdkBody,
    /// What is left of the body's last data frame, handed out in [`FRAME`]s.
    pending: Bytes,
    /// Marked as each frame goes.
    progress: Arc<Progress>,
}

impl http_body::Body for Framed {
    type Data = Bytes;
    type Error = aws_smithy_types::body::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.progress.touch();
        if self.pending.is_empty() {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => self.pending = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return other,
            }
        }
        let n = self.pending.len().min(FRAME);
        let chunk = self.pending.split_to(n);
        Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let mut hint = self.inner.size_hint();
        let extra = self.pending.len() as u64;
        hint.set_lower(hint.lower() + extra);
        if let Some(u) = hint.upper() {
            hint.set_upper(u + extra);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body;

    #[tokio::test]
    async fn a_moving_call_is_never_cut_and_a_stalled_one_is() {
        let p = Progress::new();
        let read = Duration::from_millis(200);
        // Slow but moving: 1 s in all, progress every 50 ms.
        let moving = async {
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                p.touch();
            }
            Ok::<_, ()>(7)
        };
        assert_eq!(guard("PutObject", &p, read, moving).await.ok(), Some(Ok(7)));
        // Stalled: nothing moves.
        let q = Progress::new();
        let t = Instant::now();
        let stalled = std::future::pending::<Result<(), ()>>();
        let e = guard("UploadPart", &q, read, stalled)
            .await
            .expect_err("stall");
        assert_eq!(e.class, ErrorClass::Transient);
        assert!(e.message.contains("stalled"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[tokio::test]
    async fn the_body_goes_in_small_frames_with_the_same_bytes() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let p = Progress::new();
        let mut body = Framed {
            inner: SdkBody::from(data.clone()),
            pending: Bytes::new(),
            progress: p.clone(),
        };
        assert_eq!(body.size_hint().exact(), Some(200_000));
        let mut out = Vec::new();
        let mut frames = 0;
        while let Some(f) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            let d = f.expect("frame").into_data().expect("data");
            assert!(d.len() <= FRAME);
            out.extend_from_slice(&d);
            frames += 1;
        }
        assert_eq!(out, data);
        assert_eq!(frames, 4);
    }
}
