//! One device's connection: the handshake (who it says it is, a fresh challenge, the proof), then
//! until it goes: its reports (versioned, a stale one refused), the results of its commands,
//! heartbeats both ways, and what the hub nudges it about (desired changes, new commands, a
//! revocation).

use std::sync::Arc;
use std::time::{Duration, Instant};

use emcee_fleet::identity::{digest_hex, random_hex, verify};
use emcee_fleet::link::{DEAD_AFTER, HEARTBEAT};
use emcee_fleet::wire::{CloudMessage, DeviceMessage, FLEET_PROTOCOL};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::hub::{Hub, Nudge};
use crate::store::{Db, StoreError};

/// The handshake must be over within this long.
const HANDSHAKE_PATIENCE: Duration = Duration::from_secs(10);
/// `last_seen` is written at most this often per device (a fleet's heartbeats are not worth a
/// write each).
const SEEN_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
enum Ended {
    /// Told to the device before closing.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Lost(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn lost(e: impl std::fmt::Display) -> Ended {
    Ended::Lost(e.to_string())
}

/// Accepts devices on `listener` until the process ends.
pub async fn serve(listener: TcpListener, db: Arc<Db>, hub: Arc<Hub>) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let (db, hub) = (db.clone(), hub.clone());
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    if let Err(e) = Connection::handle(tcp, db, hub).await {
                        tracing::info!(%peer, reason = %e, "device connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

struct Connection {
    socket: WebSocketStream<TcpStream>,
    db: Arc<Db>,
    device: String,
    desired_sent: u64,
    last_heard: Instant,
    last_written_seen: Instant,
    pings: u64,
}

impl Connection {
    async fn handle(tcp: TcpStream, db: Arc<Db>, hub: Arc<Hub>) -> Result<(), Ended> {
        let socket = tokio::time::timeout(HANDSHAKE_PATIENCE, tokio_tungstenite::accept_async(tcp))
            .await
            .map_err(|_| lost("no WebSocket handshake"))?
            .map_err(lost)?;
        let mut connection = Connection {
            socket,
            db,
            device: String::new(),
            desired_sent: 0,
            last_heard: Instant::now(),
            last_written_seen: Instant::now(),
            pings: 0,
        };
        let joined = tokio::time::timeout(HANDSHAKE_PATIENCE, connection.join())
            .await
            .unwrap_or_else(|_| Err(Ended::Refused("the handshake took too long".into())));
        let (group, firmware) = match joined {
            Ok(joined) => joined,
            Err(Ended::Refused(reason)) => {
                tracing::info!(device = %connection.device, %reason, "device refused");
                let _ = connection.send(&CloudMessage::Refused { reason: reason.clone() }).await;
                let _ = connection.socket.close(None).await;
                return Err(Ended::Refused(reason));
            }
            Err(e) => return Err(e),
        };
        let (nudge_tx, nudge_rx) = mpsc::channel(8);
        let number = hub.join(&connection.device, &group, nudge_tx);
        // A device may come back through another instance before this one sees it gone.
        let generation = random_hex(8).map_err(lost)?;
        connection.db.joined(&connection.device, &generation, &firmware).await?;
        tracing::info!(device = %connection.device, %group, %firmware, "device joined");
        let ended = connection.serve(nudge_rx).await;
        hub.leave(&connection.device, number);
        if let Ended::Refused(reason) = &ended {
            let _ = connection.send(&CloudMessage::Refused { reason: reason.clone() }).await;
        }
        let _ = connection.db.left(&connection.device, &generation).await;
        Err(ended)
    }

    async fn send(&mut self, message: &CloudMessage) -> Result<(), Ended> {
        let text = serde_json::to_string(message).map_err(lost)?;
        self.socket.send(Message::text(text)).await.map_err(lost)
    }

    async fn receive(&mut self) -> Result<DeviceMessage, Ended> {
        loop {
            let frame = self.socket.next().await.ok_or_else(|| lost("the device closed the link"))?.map_err(lost)?;
            self.last_heard = Instant::now();
            match frame {
                Message::Text(text) => {
                    return serde_json::from_str(&text)
                        .map_err(|e| Ended::Refused(format!("a message the cloud cannot read: {e}")))
                }
                Message::Close(_) => return Err(lost("the device closed the link")),
                _ => {}
            }
        }
    }

    /// Hello or Enrol, the challenge, the proof, the welcome: the device's group and firmware.
    async fn join(&mut self) -> Result<(String, String), Ended> {
        let first = self.receive().await?;
        let nonce = random_hex(32).map_err(lost)?;
        self.send(&CloudMessage::Challenge { nonce: nonce.clone() }).await?;
        let DeviceMessage::Proof { signature } = self.receive().await? else {
            return Err(Ended::Refused("expected the proof of the device key".into()));
        };
        let (group, firmware) = match first {
            DeviceMessage::Hello { protocol, device, firmware } => {
                check_protocol(protocol)?;
                self.device = device;
                let key = self.db.device_key(&self.device).await?;
                let key = key.ok_or_else(|| Ended::Refused(format!("no device `{}` is enrolled", self.device)))?;
                if !verify(&key.public_key, &nonce, &signature) {
                    return Err(Ended::Refused(format!("the proof is not `{}`'s key", self.device)));
                }
                if key.revoked {
                    return Err(Ended::Refused(format!("device `{}` is revoked", self.device)));
                }
                (key.group, firmware)
            }
            DeviceMessage::Enrol { protocol, code, public_key, name, firmware } => {
                check_protocol(protocol)?;
                if !verify(&public_key, &nonce, &signature) {
                    return Err(Ended::Refused("the proof is not the enrolling key's".into()));
                }
                self.device = format!("dev-{}", random_hex(6).map_err(lost)?);
                let group = self.db.enrol(&digest_hex(&code), &self.device, &name, &public_key).await;
                let group = group.map_err(|e| Ended::Refused(format!("enrolment failed: {e}")))?;
                let group =
                    group.ok_or_else(|| Ended::Refused("the enrolment code is unknown, used or expired".into()))?;
                tracing::info!(device = %self.device, %group, %name, "device enrolled");
                (group, firmware)
            }
            _ => return Err(Ended::Refused("expected hello or enrol".into())),
        };
        let desired = self.db.desired(&self.device).await?;
        let reported_version = self.db.reported_version(&self.device).await?;
        self.desired_sent = desired.version;
        let welcome =
            CloudMessage::Welcome { device: self.device.clone(), group: group.clone(), desired, reported_version };
        self.send(&welcome).await?;
        Ok((group, firmware))
    }

    /// Until the device goes, is replaced or revoked.
    async fn serve(&mut self, mut nudges: mpsc::Receiver<Nudge>) -> Ended {
        let mut beat = tokio::time::interval(HEARTBEAT);
        if let Err(e) = self.deliver_commands().await {
            return e;
        }
        loop {
            let step = tokio::select! {
                message = self.receive() => match message {
                    Ok(message) => self.device_said(message).await,
                    Err(e) => Err(e),
                },
                Some(nudge) = nudges.recv() => self.nudged(nudge).await,
                _ = beat.tick() => self.heartbeat().await,
            };
            if let Err(e) = step {
                return e;
            }
        }
    }

    async fn device_said(&mut self, message: DeviceMessage) -> Result<(), Ended> {
        match message {
            DeviceMessage::Report { base, doc } => {
                let answer = match self.db.report(&self.device, base, &doc).await? {
                    Ok(version) => CloudMessage::Reported { version },
                    Err(version) => CloudMessage::Conflict { version },
                };
                self.send(&answer).await
            }
            DeviceMessage::Done { id, ok, body } => Ok(self.db.command_done(&self.device, id, ok, &body).await?),
            DeviceMessage::Audit { records } => self.audit(records).await,
            DeviceMessage::Ping { seq } => {
                if self.last_written_seen.elapsed() >= SEEN_EVERY {
                    self.last_written_seen = Instant::now();
                    self.db.seen(&self.device).await?;
                }
                self.send(&CloudMessage::Pong { seq }).await
            }
            DeviceMessage::Pong { .. } => Ok(()),
            other => Err(Ended::Refused(format!("unexpected after the handshake: {other:?}"))),
        }
    }

    /// Keeps a batch of the device's outbox (each record once) and says how far it got.
    async fn audit(&mut self, records: Vec<serde_json::Value>) -> Result<(), Ended> {
        let numbered: Option<Vec<(i64, serde_json::Value)>> =
            records.into_iter().map(|r| Some((r.get("seq")?.as_i64()?, r))).collect();
        let numbered = numbered.ok_or_else(|| Ended::Refused("an audit record without its seq".into()))?;
        let Some(through) = numbered.iter().map(|r| r.0).max() else { return Ok(()) };
        self.db.store_audit(&self.device, &numbered).await?;
        self.send(&CloudMessage::AuditStored { through }).await
    }

    async fn nudged(&mut self, nudge: Nudge) -> Result<(), Ended> {
        match nudge {
            Nudge::Desired => self.send_desired().await,
            Nudge::Commands => self.deliver_commands().await,
            Nudge::Resync => {
                self.send_desired().await?;
                self.deliver_commands().await
            }
            Nudge::Revoked => match self.db.device_key(&self.device).await? {
                Some(key) if !key.revoked => Ok(()),
                _ => Err(Ended::Refused(format!("device `{}` is revoked", self.device))),
            },
            Nudge::Replaced => Err(Ended::Refused("a newer connection of this device took over".into())),
        }
    }

    async fn send_desired(&mut self) -> Result<(), Ended> {
        let desired = self.db.desired(&self.device).await?;
        if desired.version > self.desired_sent {
            self.desired_sent = desired.version;
            self.send(&CloudMessage::Desired { desired }).await?;
        }
        Ok(())
    }

    async fn deliver_commands(&mut self) -> Result<(), Ended> {
        for (id, command) in self.db.take_commands(&self.device).await? {
            self.send(&CloudMessage::Command { id, command }).await?;
        }
        Ok(())
    }

    async fn heartbeat(&mut self) -> Result<(), Ended> {
        if self.last_heard.elapsed() > DEAD_AFTER {
            return Err(lost(format!("nothing from the device for {} s", DEAD_AFTER.as_secs())));
        }
        self.pings += 1;
        self.send(&CloudMessage::Ping { seq: self.pings }).await
    }
}

fn check_protocol(protocol: u32) -> Result<(), Ended> {
    if protocol == FLEET_PROTOCOL {
        Ok(())
    } else {
        Err(Ended::Refused(format!("fleet protocol {protocol} is not {FLEET_PROTOCOL}")))
    }
}
