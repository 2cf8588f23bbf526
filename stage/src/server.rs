//! Serves the control plane, show after show: one controller at a time, its messages turned
//! into pipeline commands, the pipeline's events sent back. The pipeline keeps running between
//! connections, so a restarted control plane finds the stream still live. A show that ends
//! (`end`) closes the streams and the stage waits for the next `hello`; a stop signal ends the
//! show and the stage.

use std::sync::Arc;

use emcee_protocol::notify::notify;
use emcee_protocol::shutdown::StopSignals;
use emcee_protocol::stage_host::StageHost;
use emcee_protocol::{ControlMessage, StageConfig, StageEvent, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::channel::{Channel, ChannelError, Ws};
use crate::liveness::{keep_watchdog, Liveness};
use crate::pipeline::{Command, Pipeline};

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

/// What the stage runs with, from its own command line and the installed configuration file.
#[derive(Debug, Clone)]
pub struct StageSettings {
    /// The socket and the libraries (see [`StageHost`]).
    pub host: StageHost,
    /// Users besides the stage's own that may drive it (the control plane's, on the appliance).
    pub controllers: Vec<u32>,
}

enum ConnectionEnd {
    Disconnected,
    ShowEnded,
}

/// Serves control connections until a stop signal ends the stage.
pub async fn serve(settings: StageSettings) -> Result<(), StageError> {
    let channel = Channel::bind(&settings.host.socket, &settings.controllers)?;
    tracing::info!(socket = %settings.host.socket.display(), "stage listening for the control plane");
    let (incoming_tx, incoming) = mpsc::channel(4);
    let acceptor = tokio::spawn(channel.serve(incoming_tx));
    let liveness = Arc::new(Liveness::default());
    let watchdog = tokio::spawn(keep_watchdog(liveness.clone()));
    notify("READY=1");
    let (events_tx, events_rx) = mpsc::channel::<StageEvent>(256);
    let mut server = Server {
        host: settings.host,
        liveness,
        incoming,
        events_tx,
        events_rx,
        pipeline: None,
        signals: StopSignals::new(),
        signalled: false,
    };
    server.run().await;
    notify("STOPPING=1");
    // Dropping the acceptor removes the socket file.
    acceptor.abort();
    watchdog.abort();
    let _ = acceptor.await;
    Ok(())
}

struct Server {
    host: StageHost,
    liveness: Arc<Liveness>,
    incoming: mpsc::Receiver<Ws>,
    events_tx: mpsc::Sender<StageEvent>,
    events_rx: mpsc::Receiver<StageEvent>,
    pipeline: Option<Pipeline>,
    signals: StopSignals,
    /// Set by a stop signal: once its show has ended, the stage exits.
    signalled: bool,
}

impl Server {
    async fn run(&mut self) {
        loop {
            // Between connections, events have nobody to go to; drain them so the media clock
            // never waits on a full queue.
            let ws = tokio::select! {
                ws = self.incoming.recv() => match ws {
                    Some(ws) => { tracing::info!("control plane connected"); ws }
                    None => break,
                },
                event = self.events_rx.recv() => {
                    match event {
                        Some(StageEvent::Ended { .. }) if !self.signalled => self.retire().await,
                        Some(StageEvent::Ended { .. }) | None => break,
                        Some(_) => {}
                    }
                    continue;
                }
                _ = self.signals.recv() => {
                    self.signalled = true;
                    if self.end_show() {
                        continue; // `ended` arrives once the streams are closed
                    }
                    break;
                }
            };
            match self.connection(ws).await {
                ConnectionEnd::ShowEnded if self.signalled => break,
                ConnectionEnd::ShowEnded => {
                    self.retire().await;
                    tracing::info!("show ended; waiting for the next one");
                }
                ConnectionEnd::Disconnected => tracing::warn!("control plane disconnected; the stream goes on"),
            }
        }
        self.retire().await;
    }

    /// Asks a running pipeline to end the show (streams closed cleanly); false when none runs.
    fn end_show(&self) -> bool {
        let ending = self.pipeline.as_ref().is_some_and(|p| p.commands.send(Command::End { fade_frames: 0 }).is_ok());
        tracing::info!(show_running = ending, "stop signal: ending the stage");
        ending
    }

    /// Waits for the pipeline's threads after its show ended, so the next show starts clean.
    async fn retire(&mut self) {
        if let Some(mut p) = self.pipeline.take() {
            tokio::task::spawn_blocking(move || p.join()).await.ok();
        }
    }

    async fn connection(&mut self, mut ws: Ws) -> ConnectionEnd {
        loop {
            tokio::select! {
                _ = self.signals.recv() => {
                    self.signalled = true;
                    if !self.end_show() {
                        return ConnectionEnd::ShowEnded;
                    }
                }
                newcomer = self.incoming.recv() => {
                    if let Some(newcomer) = newcomer {
                        tracing::warn!("refused a second control connection while one is live");
                        tokio::spawn(refuse(newcomer, "another control plane is connected to this stage"));
                    }
                }
                message = ws.next() => {
                    let text = match message {
                        None | Some(Err(_)) => return ConnectionEnd::Disconnected,
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(_))) => return ConnectionEnd::Disconnected,
                        Some(Ok(_)) => continue,
                    };
                    let reply = match serde_json::from_str::<ControlMessage>(&text) {
                        Err(e) => Some(StageEvent::Rejected { reason: format!("cannot read message: {e}") }),
                        Ok(message) => self.handle(message).await,
                    };
                    if let Some(event) = reply {
                        let ended = matches!(event, StageEvent::Ended { .. });
                        if !send(&mut ws, &event).await {
                            return ConnectionEnd::Disconnected;
                        }
                        if ended {
                            return ConnectionEnd::ShowEnded;
                        }
                    }
                }
                event = self.events_rx.recv() => {
                    let Some(event) = event else { return ConnectionEnd::ShowEnded };
                    let ended = matches!(event, StageEvent::Ended { .. });
                    let delivered = send(&mut ws, &event).await;
                    if ended {
                        let _ = ws.close(None).await;
                        return ConnectionEnd::ShowEnded;
                    }
                    if !delivered {
                        return ConnectionEnd::Disconnected;
                    }
                }
            }
        }
    }

    async fn handle(&mut self, message: ControlMessage) -> Option<StageEvent> {
        match message {
            ControlMessage::Hello { protocol, config } => Some(self.hello(protocol, config).await),
            ControlMessage::Cue(cue) => match self.pipeline.as_ref() {
                Some(p) => {
                    let _ = p.commands.send(Command::Cue(cue));
                    None
                }
                None => Some(StageEvent::Rejected { reason: format!("cue `{}` before hello", cue.id) }),
            },
            ControlMessage::Stop { id, when } => match self.pipeline.as_ref() {
                Some(p) => {
                    let _ = p.commands.send(Command::Stop { id, when });
                    None
                }
                None => Some(StageEvent::Rejected { reason: "stop before hello".into() }),
            },
            ControlMessage::End { fade_ms } => match self.pipeline.as_ref() {
                Some(p) => {
                    let fade_frames = u64::from(fade_ms) * u64::from(p.config.video.fps) / 1000;
                    let _ = p.commands.send(Command::End { fade_frames });
                    None // `Ended` follows from the pipeline once the streams are closed.
                }
                None => Some(StageEvent::Ended { media_ts: 0 }),
            },
        }
    }

    /// Starts the show `config` describes, or confirms the one running is that show.
    async fn hello(&mut self, protocol: u32, mut config: StageConfig) -> StageEvent {
        if protocol != PROTOCOL_VERSION {
            return StageEvent::Rejected {
                reason: format!("protocol {protocol} is not supported; this stage speaks {PROTOCOL_VERSION}"),
            };
        }
        // The libraries the stage loads are its own to choose, never the wire's.
        config.speech.onnxruntime = self.host.onnxruntime.clone();
        config.speech.espeak = self.host.espeak.clone();
        if let Some(p) = self.pipeline.as_ref() {
            if p.config != config {
                return StageEvent::Rejected {
                    reason: "the stage is running another configuration; restart the stage to change it".into(),
                };
            }
            return StageEvent::Ready { media_ts: 0 };
        }
        let events = self.events_tx.clone();
        let rt = tokio::runtime::Handle::current();
        let liveness = self.liveness.clone();
        let started = tokio::task::spawn_blocking(move || Pipeline::start(config, events, rt, liveness)).await;
        match started {
            Ok(Ok(p)) => {
                self.pipeline = Some(p);
                StageEvent::Ready { media_ts: 0 }
            }
            Ok(Err(e)) => StageEvent::Rejected { reason: format!("cannot start the pipeline: {e}") },
            Err(e) => StageEvent::Rejected { reason: format!("pipeline start panicked: {e}") },
        }
    }
}

async fn send(ws: &mut Ws, event: &StageEvent) -> bool {
    match serde_json::to_string(event) {
        Ok(text) => ws.send(Message::text(text)).await.is_ok(),
        Err(_) => true,
    }
}

/// Tells a second controller why it is refused, then closes its connection.
async fn refuse(mut ws: Ws, reason: &str) {
    let _ = send(&mut ws, &StageEvent::Rejected { reason: reason.into() }).await;
    let _ = ws.close(None).await;
}
