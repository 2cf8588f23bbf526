//! The control plane's end of the stage connection: a WebSocket on the stage's Unix socket,
//! hello until the stage is ready, JSON messages. The link may be down (the stage restarting):
//! the show loop goes on answering its callers, and what it sends meanwhile is dropped — the
//! scheduler re-sends the cue in flight when the link is back.

use std::path::Path;
use std::time::Duration;

use emcee_protocol::{ControlMessage, StageEvent, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::error::ControlError;
use crate::config::Config;

pub(super) type Ws = WebSocketStream<UnixStream>;

/// The link to the stage, up or down.
#[derive(Default)]
pub(super) struct StageLink {
    ws: Option<Ws>,
}

impl StageLink {
    pub(super) fn is_up(&self) -> bool {
        self.ws.is_some()
    }

    pub(super) fn up(&mut self, ws: Ws) {
        self.ws = Some(ws);
    }

    /// Sends `message`; false when the link is down or went down.
    pub(super) async fn send(&mut self, message: &ControlMessage) -> bool {
        let Some(ws) = self.ws.as_mut() else { return false };
        let sent = send(ws, message).await;
        if !sent {
            self.ws = None;
        }
        sent
    }

    /// The next event from the stage: `Some(Ok)`, `Some(Err(text))` for one that cannot be
    /// read, `None` when the link has just gone down. Never resolves while it is down.
    pub(super) async fn next(&mut self) -> Option<Result<StageEvent, String>> {
        let Some(ws) = self.ws.as_mut() else { return std::future::pending().await };
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    return Some(serde_json::from_str::<StageEvent>(&text).map_err(|e| e.to_string()))
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => {
                    self.ws = None;
                    return None;
                }
            }
        }
    }
}

/// Connects, retrying every 200 ms until `patience` runs out (`None`: forever).
async fn connect(socket: &Path, patience: Option<Duration>) -> Result<Ws, ControlError> {
    let deadline = patience.map(|p| Instant::now() + p);
    loop {
        let attempt = async {
            let stream = UnixStream::connect(socket).await.map_err(|e| e.to_string())?;
            tokio_tungstenite::client_async("ws://stage/control", stream).await.map_err(|e| e.to_string())
        };
        match attempt.await {
            Ok((ws, _)) => return Ok(ws),
            Err(last) if deadline.is_some_and(|d| Instant::now() >= d) => {
                return Err(ControlError::StageUnreachable { socket: socket.display().to_string(), last })
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn send(ws: &mut Ws, message: &ControlMessage) -> bool {
    match serde_json::to_string(message) {
        Ok(text) => ws.send(Message::text(text)).await.is_ok(),
        Err(_) => false,
    }
}

/// Connects and says hello; returns once the stage is ready.
pub(super) async fn open(config: &Config, patience: Option<Duration>) -> Result<Ws, ControlError> {
    loop {
        let mut ws = connect(&config.stage_socket, patience).await?;
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
