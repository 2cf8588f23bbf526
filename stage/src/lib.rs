//! `emcee-stage`: the media process. It owns the GPU and the media clock; the control plane
//! drives it with cues over a local WebSocket.
//!
//! # Layout
//! - [`serve`]: accepts one control connection at a time, turns messages into pipeline commands
//!   and forwards lifecycle events back. The pipeline keeps running between connections, so a
//!   restarted control plane finds the stream still live. A show that ends (`end`) closes the
//!   streams and the stage waits for the next `hello`; a stop signal ends the show and the stage.
//! - [`pipeline`]: opens everything a show needs and starts its threads (speech → pose → frame →
//!   packet → sink); [`error`]: what can stop it from starting.
//! - [`media_loop`]: the clock, one method per phase of a tick (pace, commands, speech, pose,
//!   audio, render, health).
//! - [`speech_thread`]: synthesis ahead of the clock; [`speech_queue`]: cue lifecycle,
//!   interrupts (stop at a phoneme boundary), audio per tick.
//! - [`pose`]: the pose at a media time from speech, [`idle`] motion (blinks, saccades, sway,
//!   breathing) and [`actions`] (expressions, gestures and cards from marks).
//! - [`captions`]: subtitles, the product card and the label over the picture.
//! - [`frames`]: one frame in flight on the GPU, repeating a picture to catch up when late, and
//!   the slate while the renderer is down.
//! - [`slate`]: the picture shown while the renderer is down, made on the CPU.
//! - [`video_path`]: zero-copy NVENC (Vulkan → CUDA → NVENC) or the host path with openh264,
//!   chosen when the pipeline opens, with the typed reason for any fallback.
//! - [`video_thread`]: encoding and muxing each frame; [`rebuild`]: replacing a lost renderer.
//! - [`health`]: the health report sent to the control plane.
#![forbid(unsafe_code)]

pub mod actions;
pub mod captions;
pub mod error;
pub mod frames;
pub mod health;
pub mod idle;
pub mod media_loop;
pub mod pipeline;
pub mod pose;
pub mod rebuild;
pub mod slate;
pub mod speech_queue;
pub mod speech_thread;
pub mod video_path;
pub mod video_thread;

use std::net::SocketAddr;

use emcee_protocol::shutdown::StopSignals;
use emcee_protocol::{ControlMessage, StageEvent, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use pipeline::{Command, Pipeline};

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

enum ConnectionEnd {
    Disconnected,
    ShowEnded,
}

/// Asks a running pipeline to end the show (streams closed cleanly); false when none runs.
fn end_show(pipeline: &Option<Pipeline>) -> bool {
    let ending = pipeline.as_ref().is_some_and(|p| p.commands.send(Command::End { fade_frames: 0 }).is_ok());
    tracing::info!(show_running = ending, "stop signal: ending the stage");
    ending
}

/// Waits for the pipeline's threads after its show ended, so the next show starts clean.
async fn retire(pipeline: &mut Option<Pipeline>) {
    if let Some(mut p) = pipeline.take() {
        tokio::task::spawn_blocking(move || p.join()).await.ok();
    }
}

/// Serves control connections, show after show, until a stop signal ends the stage.
pub async fn serve(addr: SocketAddr) -> Result<(), StageError> {
    let mut signals = StopSignals::new();
    let listener = TcpListener::bind(addr).await.map_err(|source| StageError::Listen { addr, source })?;
    tracing::info!(%addr, "stage listening for the control plane");
    let (events_tx, mut events_rx) = mpsc::channel::<StageEvent>(256);
    let mut pipeline: Option<Pipeline> = None;
    // Set by a stop signal: once its show has ended, the stage exits.
    let mut signalled = false;
    loop {
        // Between connections, events have nobody to go to; drain them so the media clock never
        // waits on a full queue.
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => { tracing::info!(%peer, "control plane connected"); stream }
                Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
            },
            event = events_rx.recv() => {
                match event {
                    Some(StageEvent::Ended { .. }) if !signalled => retire(&mut pipeline).await,
                    Some(StageEvent::Ended { .. }) | None => break,
                    Some(_) => {}
                }
                continue;
            }
            _ = signals.recv() => {
                signalled = true;
                if end_show(&pipeline) {
                    continue; // `ended` arrives once the streams are closed
                }
                break;
            }
        };
        let ws = match tokio_tungstenite::accept_async(stream).await {
            Ok(ws) => ws,
            Err(e) => {
                tracing::warn!(error = %e, "WebSocket handshake failed");
                continue;
            }
        };
        match connection(ws, &mut pipeline, &events_tx, &mut events_rx, &mut signals, &mut signalled).await {
            ConnectionEnd::ShowEnded if signalled => break,
            ConnectionEnd::ShowEnded => {
                retire(&mut pipeline).await;
                tracing::info!("show ended; waiting for the next one");
            }
            ConnectionEnd::Disconnected => tracing::warn!("control plane disconnected; the stream goes on"),
        }
    }
    retire(&mut pipeline).await;
    Ok(())
}

async fn send(ws: &mut WebSocketStream<TcpStream>, event: &StageEvent) -> bool {
    match serde_json::to_string(event) {
        Ok(text) => ws.send(Message::text(text)).await.is_ok(),
        Err(_) => true,
    }
}

async fn connection(
    mut ws: WebSocketStream<TcpStream>,
    pipeline: &mut Option<Pipeline>,
    events_tx: &mpsc::Sender<StageEvent>,
    events_rx: &mut mpsc::Receiver<StageEvent>,
    signals: &mut StopSignals,
    signalled: &mut bool,
) -> ConnectionEnd {
    loop {
        tokio::select! {
            _ = signals.recv() => {
                *signalled = true;
                if !end_show(pipeline) {
                    return ConnectionEnd::ShowEnded;
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
                    Ok(message) => handle(message, pipeline, events_tx).await,
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
            event = events_rx.recv() => {
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

async fn handle(
    message: ControlMessage,
    pipeline: &mut Option<Pipeline>,
    events_tx: &mpsc::Sender<StageEvent>,
) -> Option<StageEvent> {
    match message {
        ControlMessage::Hello { protocol, config } => {
            if protocol != PROTOCOL_VERSION {
                return Some(StageEvent::Rejected {
                    reason: format!("protocol {protocol} is not supported; this stage speaks {PROTOCOL_VERSION}"),
                });
            }
            if let Some(p) = pipeline.as_ref() {
                if p.config != config {
                    return Some(StageEvent::Rejected {
                        reason: "the stage is running another configuration; restart the stage to change it".into(),
                    });
                }
                return Some(StageEvent::Ready { media_ts: 0 });
            }
            let events = events_tx.clone();
            let rt = tokio::runtime::Handle::current();
            let started = tokio::task::spawn_blocking(move || Pipeline::start(config, events, rt)).await;
            match started {
                Ok(Ok(p)) => {
                    *pipeline = Some(p);
                    Some(StageEvent::Ready { media_ts: 0 })
                }
                Ok(Err(e)) => Some(StageEvent::Rejected { reason: format!("cannot start the pipeline: {e}") }),
                Err(e) => Some(StageEvent::Rejected { reason: format!("pipeline start panicked: {e}") }),
            }
        }
        ControlMessage::Cue(cue) => match pipeline.as_ref() {
            Some(p) => {
                let _ = p.commands.send(Command::Cue(cue));
                None
            }
            None => Some(StageEvent::Rejected { reason: format!("cue `{}` before hello", cue.id) }),
        },
        ControlMessage::Stop { id, when } => match pipeline.as_ref() {
            Some(p) => {
                let _ = p.commands.send(Command::Stop { id, when });
                None
            }
            None => Some(StageEvent::Rejected { reason: "stop before hello".into() }),
        },
        ControlMessage::End { fade_ms } => match pipeline.as_ref() {
            Some(p) => {
                let fade_frames = u64::from(fade_ms) * u64::from(p.config.video.fps) / 1000;
                let _ = p.commands.send(Command::End { fade_frames });
                None // `Ended` follows from the pipeline once the streams are closed.
            }
            None => Some(StageEvent::Ended { media_ts: 0 }),
        },
    }
}
