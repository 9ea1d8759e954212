//! The server's accept loop: warp's routes as a hyper service, with read deadlines, a cap
//! on connections and JSON bodies on hyper's own refusals.
//!
//! `warp::serve` gives a client unlimited time to send its request, so a few thousand
//! connections that trickle a header byte now and then ("slowloris") hold the server's
//! sockets and tasks forever. Here every connection gets hyper's header read timeout,
//! which runs from the connection's start and from each answer, so it also closes idle
//! keep-alive connections; the body deadline is in [`super::filters`] (a request that
//! starts its body and stalls gets `408 request_timeout`). Graceful shutdown works as
//! warp's does: stop accepting, let every connection finish its in-flight request, close
//! idle keep-alive connections.
//!
//! Memory before authentication is bounded here and in [`super::filters`]: at most
//! `max_connections` connections are served (more are answered `503 busy` and closed),
//! each buffers at most `max_header_bytes` of request head (`431` beyond), and request
//! large request bodies draw on a budget as they arrive.

use scrip_tokens::ReasonCode;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use warp::http::StatusCode;
use warp::{Filter, Reply};

use super::errors::ApiError;
use super::metrics::Metrics;

/// Connections refused at the cap that are being answered at once; beyond this a refused
/// connection is closed without an answer (the answer is a courtesy, not a duty).
const REFUSALS_IN_FLIGHT: usize = 64;

/// File descriptors kept, beyond those open at start and the database pool, for files
/// opened later: a file store's compaction, the disk-space probe, key and payout files.
const RESERVED_DESCRIPTORS: u64 = 128;

/// How many file descriptors the process has open, from `/proc/self/fd` (Linux).
pub(super) fn open_descriptors() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    u64::try_from(entries.count()).ok()
}

/// The process's soft limit on open files, read from `/proc/self/limits` (Linux); `None`
/// where it cannot be read or is unlimited.
pub(super) fn open_files_limit() -> Option<u64> {
    parse_open_files_limit(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

/// The soft limit in the `Max open files` line of a `/proc/<pid>/limits` text.
fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The connection cap that fits under the open-files limit `limit`: `configured`,
/// lowered so that the connections, the refusals being answered, the `in_use`
/// descriptors and [`RESERVED_DESCRIPTORS`] fit. At the descriptor limit `accept` fails,
/// so the cap could never answer `503 busy`, and the store could not open a file (a
/// compaction, a space probe) while clients hold every descriptor: the cap must be
/// reached first. Never below one connection.
pub(super) fn connection_cap(configured: usize, limit: Option<u64>, in_use: u64) -> usize {
    let Some(limit) = limit else {
        return configured.max(1);
    };
    let room = limit
        .saturating_sub(in_use)
        .saturating_sub(RESERVED_DESCRIPTORS + REFUSALS_IN_FLIGHT as u64);
    configured
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

/// How the accept loop bounds what clients can hold.
#[derive(Clone, Copy, Debug)]
pub(super) struct ConnectionLimits {
    /// Time to send a request head (and, in the filters, its body).
    pub read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Largest request head (request line and headers) a connection may buffer.
    pub max_header_bytes: usize,
}

/// Serves `routes` on `listener` until `stop` completes, then drains connections.
pub(super) async fn serve<F, R>(
    listener: TcpListener,
    routes: F,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()>,
) where
    F: Filter<Extract = (R,), Error = Infallible> + Clone + Send + Sync + 'static,
    R: Reply,
{
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT));
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(slot) = Arc::clone(&connections).try_acquire_owned() else {
            metrics.connection_refused();
            if let Ok(permit) = Arc::clone(&refusals).try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(permit);
                });
            }
            continue;
        };
        let service = TowerToHyperService::new(warp::service(routes.clone()));
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.read_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192))
            // One buffer per write, so hyper's own refusals arrive whole at JsonRefusals.
            .writev(false)
            .serve_connection(TokioIo::new(JsonRefusals::new(stream)), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Timeouts, resets and malformed requests: the client's doing.
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Answers a connection over the cap with `503 busy` and closes it. The client's request
/// is read (and dropped) for a moment after the answer, so that closing does not reset the
/// connection before the client has read why.
async fn refuse(mut stream: TcpStream) {
    let answer = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ReasonCode::Busy,
        "the server has too many open connections; retry shortly",
    );
    let bytes = raw_response(&answer, &[("retry-after", "1")]);
    let exchange = async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), exchange).await;
}

/// A whole HTTP/1.1 response carrying `error`'s JSON body, closing the connection.
fn raw_response(error: &ApiError, extra_headers: &[(&str, &str)]) -> Vec<u8> {
    let body = error.json_body();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
        error.status.as_u16(),
        error.status.canonical_reason().unwrap_or(""),
        crate::api::JSON,
        body.len()
    );
    for (name, value) in extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    [head.into_bytes(), body].concat()
}

/// The refusal hyper writes by itself, below the routes (a request it cannot parse: 400
/// for a malformed request line, header or `Content-Length`, 414 for a URI too long, 431
/// for a head larger than `max_header_bytes`), is a bare status line with an empty body.
/// This transport wrapper recognises it as it is written and writes the same status with
/// the API's `{code, message}` body instead. The routes never answer a 4xx with an empty
/// body, so nothing else matches.
struct JsonRefusals<S> {
    inner: S,
    /// A replacement being written: the bytes, how many are written, and how many bytes
    /// of hyper's buffer it stands for.
    replacing: Option<(Vec<u8>, usize, usize)>,
}

impl<S> JsonRefusals<S> {
    fn new(inner: S) -> Self {
        JsonRefusals {
            inner,
            replacing: None,
        }
    }
}

/// The JSON refusal for hyper's automatic answer `head`, if it is one.
fn replacement_for(head: &[u8]) -> Option<Vec<u8>> {
    // Hyper's refusal is a head alone, written whole in one buffer (writev is off); any
    // other write (a body, a part of one) is left as it is.
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    if end + 4 != head.len() {
        return None;
    }
    let text = std::str::from_utf8(&head[..end]).ok()?.to_ascii_lowercase();
    if !text.split("\r\n").any(|line| line == "content-length: 0") {
        return None;
    }
    let status = text.strip_prefix("http/1.1 ")?.get(..3)?;
    let (status, code, message) = match status {
        "400" => (
            StatusCode::BAD_REQUEST,
            ReasonCode::MalformedRequest,
            "the request line, a header or the Content-Length could not be parsed",
        ),
        "414" => (
            StatusCode::URI_TOO_LONG,
            ReasonCode::UriTooLong,
            "the request URI is longer than the server accepts",
        ),
        "431" => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ReasonCode::HeadersTooLarge,
            "the request headers are larger than the server accepts",
        ),
        _ => return None,
    };
    Some(raw_response(&ApiError::new(status, code, message), &[]))
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonRefusals<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonRefusals<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_none() {
            if buf.starts_with(b"HTTP/1.1 4") {
                if let Some(bytes) = replacement_for(buf) {
                    this.replacing = Some((bytes, 0, buf.len()));
                }
            }
            if this.replacing.is_none() {
                return Pin::new(&mut this.inner).poll_write(cx, buf);
            }
        }
        let Some((bytes, written, stands_for)) = this.replacing.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        while *written < bytes.len() {
            match Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let consumed = *stands_for;
        this.replacing = None;
        Poll::Ready(Ok(consumed))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Running out of file descriptors makes `accept` fail until connections close: wait
/// a moment instead of spinning. Errors of one connection (reset before accept) are not
/// worth a pause.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; pausing for a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str =
        "Limit                     Soft Limit           Hard Limit           Units     \n\
Max cpu time              unlimited            unlimited            seconds   \n\
Max open files            1024                 524288               files     \n\
Max locked memory         8388608              8388608              bytes     \n";

    #[test]
    fn the_soft_open_files_limit_is_read_from_proc_limits() {
        assert_eq!(parse_open_files_limit(LIMITS), Some(1024));
        let unlimited = LIMITS.replace(
            "1024                 524288",
            "unlimited            unlimited",
        );
        assert_eq!(parse_open_files_limit(&unlimited), None);
        assert_eq!(
            parse_open_files_limit("Max processes 10 10 processes"),
            None
        );
        #[cfg(target_os = "linux")]
        assert!(open_files_limit().is_some_and(|n| n > 0));
    }

    #[test]
    fn the_connection_cap_leaves_descriptors_for_the_store_and_refusals() {
        let reserved = (RESERVED_DESCRIPTORS + REFUSALS_IN_FLIGHT as u64) as usize;
        // Debian's and systemd's default soft limit: 1024 connections would exhaust it.
        assert_eq!(connection_cap(1024, Some(1024), 0), 1024 - reserved);
        // What is open already and a database pool of 200 come off too.
        assert_eq!(
            connection_cap(1024, Some(1024), 20 + 200),
            1024 - 220 - reserved
        );
        // A raised limit leaves the configured cap alone; an unreadable one too.
        assert_eq!(connection_cap(1024, Some(65_536), 220), 1024);
        assert_eq!(connection_cap(1024, None, 220), 1024);
        // Never below one connection, whatever the limit.
        assert_eq!(connection_cap(1024, Some(10), 0), 1);
        assert_eq!(connection_cap(1024, Some(1024), u64::MAX), 1);
        assert_eq!(connection_cap(0, None, 0), 1);
        #[cfg(target_os = "linux")]
        assert!(open_descriptors().is_some_and(|n| n >= 3));
    }

    #[test]
    fn hyper_refusals_get_a_json_body_and_nothing_else_does() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Sat, 28 Nov 2026 18:00:00 GMT\r\n\r\n";
        let replaced = String::from_utf8(replacement_for(bare).unwrap()).unwrap();
        assert!(replaced.starts_with("HTTP/1.1 431 "), "{replaced}");
        assert!(replaced.contains("content-type: application/json"));
        assert!(replaced.ends_with(r#""code":"headers_too_large","message":"the request headers are larger than the server accepts"}"#), "{replaced}");
        // A route's refusal has a body; a success is left alone.
        let routed = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 52\r\n\r\n";
        assert!(replacement_for(routed).is_none());
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(replacement_for(ok).is_none());
        // Bytes of a body that happen to look like a refusal head are never touched.
        let mut with_body = bare.to_vec();
        with_body.extend_from_slice(b"more bytes");
        assert!(replacement_for(&with_body).is_none());
        let other_length = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0123\r\n\r\n";
        assert!(replacement_for(other_length).is_none());
    }
}
