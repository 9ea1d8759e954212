//! The server's accept loop: warp's routes as a hyper service, with read deadlines.
//!
//! `warp::serve` gives a client unlimited time to send its request, so a few thousand
//! connections that trickle a header byte now and then ("slowloris") hold the server's
//! sockets and tasks forever. Here every connection gets hyper's header read timeout,
//! which runs from the connection's start and from each answer, so it also closes idle
//! keep-alive connections; the body deadline is in [`super::filters`] (a request that starts its body and stalls
//! gets `408 request_timeout`). Graceful shutdown works as warp's does: stop accepting,
//! let every connection finish its in-flight request, close idle keep-alive connections.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use warp::{Filter, Reply};

/// Serves `routes` on `listener` until `stop` completes, then drains connections.
pub(super) async fn serve<F, R>(
    listener: TcpListener,
    routes: F,
    read_timeout: Duration,
    stop: impl Future<Output = ()>,
) where
    F: Filter<Extract = (R,), Error = Infallible> + Clone + Send + Sync + 'static,
    R: Reply,
{
    let graceful = GracefulShutdown::new();
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
        let service = TowerToHyperService::new(warp::service(routes.clone()));
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                // Timeouts, resets and malformed requests: the client's doing.
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
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
