//! The show loop of the control plane: connect to the stage, say hello, feed it the script's
//! sentences as `say` cues, follow their lifecycle, and end the show.
//!
//! The stage may restart at any time: we reconnect, say hello again and re-send every cue that
//! has not finished (cue ids are idempotent on the stage side).

use std::collections::VecDeque;
use std::time::Duration;

use emcee_protocol::{media_ts_to_ms, ControlMessage, Cue, CueAction, StageEvent, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::config::Config;
use crate::notify::notify;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Cues sent ahead of the one playing, so speech is synthesized before it is needed.
const LOOKAHEAD: usize = 2;
const CONNECT_PATIENCE: Duration = Duration::from_secs(60);
const END_PATIENCE: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the stage at {addr} did not accept a connection within {CONNECT_PATIENCE:?}: {last}")]
    StageUnreachable { addr: String, last: String },
    #[error("the stage refused the show: {0}")]
    Refused(String),
    #[error("the stage did not confirm the end of the show within {END_PATIENCE:?}")]
    EndTimeout,
}

/// How the show ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ending {
    /// After the script (unless looped).
    ScriptDone,
    /// After this long, whatever is playing.
    After(Duration),
}

struct Script {
    sentences: Vec<String>,
    looped: bool,
    next: usize,
    pass: u64,
}

impl Script {
    fn next_cue(&mut self) -> Option<Cue> {
        if self.next >= self.sentences.len() {
            if !self.looped {
                return None;
            }
            self.next = 0;
            self.pass += 1;
        }
        let i = self.next;
        self.next += 1;
        Some(Cue {
            id: format!("script-{}-{}", self.pass, i + 1),
            action: CueAction::Say { text: self.sentences[i].clone() },
        })
    }
}

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

async fn send(ws: &mut Ws, message: &ControlMessage) -> bool {
    match serde_json::to_string(message) {
        Ok(text) => ws.send(Message::text(text)).await.is_ok(),
        Err(_) => false,
    }
}

/// Connects and says hello; returns once the stage is ready.
async fn open(config: &Config, url: &str, patience: Option<Duration>) -> Result<Ws, ControlError> {
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

/// Runs the show to its end. `stop` resolves when the operator (or a signal) ends it early.
pub async fn run_show(
    config: &Config,
    sentences: Vec<String>,
    ending: Ending,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ControlError> {
    let url = format!("ws://{}", config.stage_listen);
    let mut ws = open(config, &url, Some(CONNECT_PATIENCE)).await?;
    notify("READY=1");
    tracing::info!(stage = %config.stage_listen, "stage ready; the show starts");

    let mut script = Script { sentences, looped: config.looped, next: 0, pass: 0 };
    let mut outstanding: VecDeque<Cue> = VecDeque::new();
    let end_at = match ending {
        Ending::After(d) => Some(Instant::now() + d),
        Ending::ScriptDone => None,
    };
    let far_future = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let watchdog = crate::notify::watchdog_interval().unwrap_or(Duration::from_secs(3600));
    let mut watchdog_tick = tokio::time::interval(watchdog);
    tokio::pin!(stop);

    loop {
        while outstanding.len() < LOOKAHEAD {
            let Some(cue) = script.next_cue() else { break };
            let sent = send(&mut ws, &ControlMessage::Cue(cue.clone())).await;
            // Kept even when the send failed: it is re-sent after the reconnect below.
            outstanding.push_back(cue);
            if !sent {
                break;
            }
        }
        if outstanding.is_empty() && end_at.is_none() {
            tracing::info!("script finished; ending the show");
            break;
        }

        tokio::select! {
            message = ws.next() => {
                match message {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<StageEvent>(&text) {
                        Ok(StageEvent::Ended { media_ts }) => {
                            // Stopped on the stage's side (systemd stop, Ctrl-C): the show is over.
                            tracing::info!(media_ms = media_ts_to_ms(media_ts), "the stage ended the show");
                            notify("STOPPING=1");
                            return Ok(());
                        }
                        Ok(event) => on_event(event, &mut outstanding),
                        Err(e) => tracing::warn!(error = %e, "unreadable stage event ignored"),
                    },
                    Some(Ok(_)) => {}
                    None | Some(Err(_)) => {
                        tracing::warn!("lost the stage; reconnecting and re-sending unfinished cues");
                        let reopened = tokio::select! {
                            reopened = open(config, &url, None) => Some(reopened?),
                            _ = tokio::time::sleep_until(end_at.unwrap_or(far_future)) => None,
                            _ = &mut stop => None,
                        };
                        let Some(reopened) = reopened else {
                            tracing::warn!("the show ended while the stage was away");
                            return Ok(());
                        };
                        ws = reopened;
                        for cue in &outstanding {
                            send(&mut ws, &ControlMessage::Cue(cue.clone())).await;
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(end_at.unwrap_or(far_future)) => {
                tracing::info!("run time is up; ending the show");
                break;
            }
            _ = &mut stop => {
                tracing::info!("stop requested; ending the show");
                break;
            }
            _ = watchdog_tick.tick() => notify("WATCHDOG=1"),
        }
    }

    notify("STOPPING=1");
    send(&mut ws, &ControlMessage::End).await;
    let wait_for_end = async {
        while let Some(message) = ws.next().await {
            if let Ok(Message::Text(text)) = message {
                if let Ok(event) = serde_json::from_str::<StageEvent>(&text) {
                    if let StageEvent::Ended { media_ts } = event {
                        tracing::info!(media_ms = media_ts_to_ms(media_ts), "the stage closed the stream");
                        return;
                    }
                    on_event(event, &mut outstanding);
                }
            }
        }
    };
    tokio::time::timeout(END_PATIENCE, wait_for_end).await.map_err(|_| ControlError::EndTimeout)
}

fn on_event(event: StageEvent, outstanding: &mut VecDeque<Cue>) {
    match event {
        StageEvent::Started { id, media_ts } => {
            tracing::info!(cue = %id, media_ms = media_ts_to_ms(media_ts), "started")
        }
        StageEvent::Finished { id, was_stopped, media_ts } => {
            tracing::info!(cue = %id, was_stopped, media_ms = media_ts_to_ms(media_ts), "finished");
            outstanding.retain(|c| c.id != id);
        }
        StageEvent::Failed { id, reason } => {
            tracing::warn!(cue = %id, %reason, "cue failed; skipping it");
            outstanding.retain(|c| c.id != id);
        }
        StageEvent::Rejected { reason } => tracing::warn!(%reason, "the stage rejected a message"),
        StageEvent::Health(h) => {
            tracing::debug!(frames = h.frames, late = h.late_frames, encoder = %h.encoder, "health")
        }
        StageEvent::Accepted { .. } | StageEvent::Ready { .. } | StageEvent::Ended { .. } => {}
    }
}
