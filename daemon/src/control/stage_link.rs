//! The control plane's end of the stage connection: a local WebSocket, hello until the stage is
//! ready, JSON messages.

use std::time::Duration;

use emcee_protocol::{ControlMessage, StageEvent, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::error::ControlError;
use crate::config::Config;

pub(super) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects, retrying every 200 ms until `patience` runs out (`None`: forever).
async fn connect(url: &str, patience: Option<Duration>) -> Result<Ws, ControlError> {
    let deadline = patience.map(|p| Instant::now() + p);
    loop {
        match tokio_tungstenite::connect_async(url).await {
            Ok((ws, _)) => return Ok(ws),
            Err(e) if deadline.is_some_and(|d| Instant::now() >= d) => {
                return Err(ControlError::StageUnreachable { addr: url.to_string(), last: e.to_string() })
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

pub(super) async fn send(ws: &mut Ws, message: &ControlMessage) -> bool {
    match serde_json::to_string(message) {
        Ok(text) => ws.send(Message::text(text)).await.is_ok(),
        Err(_) => false,
    }
}

/// Connects and says hello; returns once the stage is ready.
pub(super) async fn open(config: &Config, url: &str, patience: Option<Duration>) -> Result<Ws, ControlError> {
    loop {
        let mut ws = connect(url, patience).await?;
        let hello = ControlMessage::Hello { protocol: PROTOCOL_VERSION, config: config.stage.clone() };
        if !send(&mut ws, &hello).await {
            continue;
        }
        while let Some(message) = ws.next().await {
            let Ok(Message::Text(text)) = message else { continue };
            match serde_json::from_str::<StageEvent>(&text) {
                Ok(StageEvent::Ready { .. }) => return Ok(ws),
                Ok(StageEvent::Rejected { reason }) => return Err(ControlError::Refused(reason)),
                _ => {}
            }
        }
        // The stage went away during hello: try again.
    }
}
