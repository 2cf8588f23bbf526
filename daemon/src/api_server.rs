//! The API's listener, made to survive abuse: a flood of slow or idle clients never makes the
//! box unreachable, and never starves the watchdog (which has its own socket, kept open).
//! - a client has [`HEADER_TIMEOUT`] to send a request's headers, on every request of a
//!   connection (a half-sent request is dropped, a slowloris holds nothing for long);
//! - a connection lives at most [`MAX_CONNECTION_AGE`];
//! - at most [`MAX_CONNECTIONS`] at once; one past that is closed at once (the process's
//!   descriptor limit, raised at start and `LimitNOFILE` in the unit, is well above it);
//! - HTTP/1.1 only: the API is local, and the CLI speaks it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);
pub const MAX_CONNECTIONS: usize = 4096;

/// Serves `app` on `listener` for ever.
pub async fn serve(listener: TcpListener, app: Router) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut refused: u64 = 0;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, most likely: wait for some to be freed, don't spin.
                tracing::warn!(error = %e, "API accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    refused,
                    limit = MAX_CONNECTIONS,
                    "API connection limit reached; closing new connections"
                );
            }
            continue; // dropping the stream closes it
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(MAX_CONNECTION_AGE, connection).await;
            drop(permit);
        });
    }
}
