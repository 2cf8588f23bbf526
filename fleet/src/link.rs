//! The appliance's side of the fleet link: one task that dials the cloud, proves who the device
//! is, and then carries the shadow and commands until the link dies — and dials again, forever,
//! with a capped, jittered backoff. The control plane talks to it through two channels and never
//! waits on it: the show does not need the cloud.
//!
//! [`Link::run`] is the loop; one [`Session`] is one connection, with a method per phase
//! (dial, join, serve).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use url::Url;

use crate::identity::DeviceKey;
use crate::wire::{CloudMessage, Command, DeviceMessage, Versioned, FLEET_PROTOCOL};

/// A ping goes out this often, each way.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// Silence for this long ends the session (a partition, a dead load balancer): a dead link is
/// noticed within `DEAD_AFTER + HEARTBEAT`, 25 s, by both ends.
pub const DEAD_AFTER: Duration = Duration::from_secs(20);
/// Dialling, the TLS and WebSocket handshakes and the proof each get this long.
const STEP_PATIENCE: Duration = Duration::from_secs(10);
/// The longest wait between two dials.
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// How the device joins: as itself, or once with a one-time enrolment code.
#[derive(Debug, Clone)]
pub enum Joining {
    Enrolled { device: String },
    Enrol { code: String, name: String },
}

pub struct LinkSettings {
    /// `wss://…` (or `ws://` to a loopback address, for tests).
    pub url: Url,
    /// A CA to trust besides the system's (a private cloud, a test).
    pub ca_file: Option<PathBuf>,
    pub key: Arc<DeviceKey>,
    pub joining: Joining,
    pub firmware: String,
    /// The desired version the appliance has applied already: older ones are not handed on.
    pub applied_desired: u64,
}

/// What the link hands the control plane.
#[derive(Debug, Clone, PartialEq)]
pub enum FromCloud {
    /// The cloud accepted the device (its id: new after an enrolment, to be kept).
    Joined {
        device: String,
        group: String,
    },
    /// A desired document newer than any handed on before.
    Desired(Versioned),
    Command {
        id: i64,
        command: Command,
    },
    /// The cloud stored the audit records up to this `seq`.
    AuditStored {
        through: i64,
    },
    /// The link is down; the reason, and when it will dial again.
    Down {
        reason: String,
        retry_in: Duration,
    },
}

/// What the control plane hands the link.
#[derive(Debug, Clone, PartialEq)]
pub enum ToCloud {
    /// The reported document now (only the newest is ever sent).
    Report(Value),
    Done {
        id: i64,
        ok: bool,
        body: Value,
    },
    /// Records of the outbox: sent if the link is up, else dropped (the outbox sends them
    /// again until the cloud says they are stored).
    Audit(Vec<Value>),
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("{0}")]
    Failed(String),
    /// The control plane is gone: the link ends.
    #[error("the control plane is gone")]
    Closed,
}

fn failed(e: impl std::fmt::Display) -> SessionError {
    SessionError::Failed(e.to_string())
}

/// The link's memory across sessions.
pub struct Link {
    settings: LinkSettings,
    from_cloud: mpsc::Sender<FromCloud>,
    to_cloud: mpsc::Receiver<ToCloud>,
    /// The newest reported document, and whether the cloud has acknowledged storing it.
    report: Option<Value>,
    report_stored: bool,
    /// Commands carried out while the link was down: sent on the next session.
    done: Vec<DeviceMessage>,
}

impl Link {
    pub fn new(settings: LinkSettings, from_cloud: mpsc::Sender<FromCloud>, to_cloud: mpsc::Receiver<ToCloud>) -> Self {
        Self { settings, from_cloud, to_cloud, report: None, report_stored: false, done: Vec::new() }
    }

    /// Dials and serves until the control plane goes away.
    pub async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            let reason = match Session::open(&mut self).await {
                Ok(session) => session.serve(&mut self).await,
                Err(e) => e,
            };
            let SessionError::Failed(reason) = reason else { return };
            // A session that lived a while was a working link: start the backoff over.
            failures = if started.elapsed() > BACKOFF_CAP { 1 } else { failures.saturating_add(1) };
            let retry_in = backoff(failures);
            tracing::warn!(%reason, retry_in_ms = retry_in.as_millis() as u64, "fleet link down");
            if self.from_cloud.send(FromCloud::Down { reason, retry_in }).await.is_err() {
                return;
            }
            if !self.wait(retry_in).await {
                return;
            }
        }
    }

    /// Waits `pause`, still taking reports and results (kept for the next session); false once
    /// the control plane is gone.
    async fn wait(&mut self, pause: Duration) -> bool {
        let until = tokio::time::Instant::now() + pause;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                message = self.to_cloud.recv() => match message {
                    None => return false,
                    Some(message) => self.keep(message),
                },
            }
        }
    }

    fn keep(&mut self, message: ToCloud) {
        match message {
            ToCloud::Report(doc) => {
                if self.report.as_ref() != Some(&doc) {
                    self.report = Some(doc);
                    self.report_stored = false;
                }
            }
            ToCloud::Done { id, ok, body } => self.done.push(DeviceMessage::Done { id, ok, body }),
            ToCloud::Audit(_) => {}
        }
    }
}

/// `min(cap, 1 s · 2^(n−1))`, scaled by a random 50–100 % so a fleet that lost its cloud does
/// not come back all in the same second.
fn backoff(failures: u32) -> Duration {
    let full = Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(BACKOFF_CAP);
    let mut byte = [0u8; 1];
    let jitter = match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut byte) {
        Ok(()) => 0.5 + f64::from(byte[0]) / 510.0,
        Err(_) => 0.75,
    };
    full.mul_f64(jitter)
}

type Socket = WebSocketStream<Box<dyn Stream>>;

/// A byte stream the WebSocket runs over: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One connection to the cloud.
struct Session {
    socket: Socket,
    /// The reported version the cloud holds; the document of a report in flight.
    reported_version: u64,
    report_in_flight: Option<Value>,
    last_heard: Instant,
    pings: u64,
}

impl Session {
    /// Dials, and joins as the device: the whole handshake, each step bounded.
    async fn open(link: &mut Link) -> Result<Self, SessionError> {
        let socket = tokio::time::timeout(STEP_PATIENCE * 2, dial(&link.settings))
            .await
            .map_err(|_| failed("the cloud did not answer the dial in time"))??;
        let mut session =
            Session { socket, reported_version: 0, report_in_flight: None, last_heard: Instant::now(), pings: 0 };
        tokio::time::timeout(STEP_PATIENCE, session.join(link))
            .await
            .map_err(|_| failed("the cloud did not finish the handshake in time"))??;
        Ok(session)
    }

    async fn send(&mut self, message: &DeviceMessage) -> Result<(), SessionError> {
        let text = serde_json::to_string(message).map_err(failed)?;
        self.socket.send(Message::text(text)).await.map_err(failed)
    }

    async fn receive(&mut self) -> Result<CloudMessage, SessionError> {
        loop {
            let frame = self.socket.next().await.ok_or_else(|| failed("the cloud closed the link"))?.map_err(failed)?;
            self.last_heard = Instant::now();
            match frame {
                Message::Text(text) => {
                    return serde_json::from_str(&text)
                        .map_err(|e| failed(format!("a message the device cannot read: {e}")))
                }
                Message::Close(_) => return Err(failed("the cloud closed the link")),
                _ => {}
            }
        }
    }

    /// Hello (or Enrol), the proof, the welcome.
    async fn join(&mut self, link: &mut Link) -> Result<(), SessionError> {
        let settings = &link.settings;
        let firmware = settings.firmware.clone();
        let first = match &settings.joining {
            Joining::Enrolled { device } => {
                DeviceMessage::Hello { protocol: FLEET_PROTOCOL, device: device.clone(), firmware }
            }
            Joining::Enrol { code, name } => DeviceMessage::Enrol {
                protocol: FLEET_PROTOCOL,
                code: code.clone(),
                public_key: settings.key.public_key_hex(),
                name: name.clone(),
                firmware,
            },
        };
        self.send(&first).await?;
        let CloudMessage::Challenge { nonce } = self.expect().await? else {
            return Err(failed("the cloud did not challenge the device"));
        };
        let signature = link.settings.key.sign(&nonce);
        self.send(&DeviceMessage::Proof { signature }).await?;
        let CloudMessage::Welcome { device, group, desired, reported_version } = self.expect().await? else {
            return Err(failed("the cloud did not welcome the device"));
        };
        tracing::info!(%device, %group, desired = desired.version, "fleet link up");
        link.settings.joining = Joining::Enrolled { device: device.clone() };
        self.reported_version = reported_version;
        link.from_cloud.send(FromCloud::Joined { device, group }).await.map_err(|_| SessionError::Closed)?;
        self.desired(link, desired).await
    }

    /// The next message, with a refusal turned into the session's end.
    async fn expect(&mut self) -> Result<CloudMessage, SessionError> {
        match self.receive().await? {
            CloudMessage::Refused { reason } => Err(failed(format!("the cloud refused the device: {reason}"))),
            other => Ok(other),
        }
    }

    /// Hands a desired document on if it is newer than any before (over every session).
    async fn desired(&mut self, link: &mut Link, desired: Versioned) -> Result<(), SessionError> {
        if desired.version > link.settings.applied_desired {
            link.settings.applied_desired = desired.version;
            link.from_cloud.send(FromCloud::Desired(desired)).await.map_err(|_| SessionError::Closed)?;
        }
        Ok(())
    }

    /// Until the link dies: the cloud's messages, the control plane's, heartbeats.
    async fn serve(mut self, link: &mut Link) -> SessionError {
        for done in std::mem::take(&mut link.done) {
            if let Err(e) = self.send(&done).await {
                return e;
            }
        }
        let mut beat = tokio::time::interval(HEARTBEAT);
        loop {
            if let Err(e) = self.flush_report(link).await {
                return e;
            }
            let step = tokio::select! {
                message = self.expect() => match message {
                    Ok(message) => self.cloud_said(link, message).await,
                    Err(e) => Err(e),
                },
                message = link.to_cloud.recv() => match message {
                    None => Err(SessionError::Closed),
                    Some(ToCloud::Done { id, ok, body }) => self.send(&DeviceMessage::Done { id, ok, body }).await,
                    Some(ToCloud::Audit(records)) => self.send(&DeviceMessage::Audit { records }).await,
                    Some(report) => {
                        link.keep(report);
                        Ok(())
                    }
                },
                _ = beat.tick() => self.heartbeat().await,
            };
            if let Err(e) = step {
                return e;
            }
        }
    }

    async fn cloud_said(&mut self, link: &mut Link, message: CloudMessage) -> Result<(), SessionError> {
        match message {
            CloudMessage::Desired { desired } => self.desired(link, desired).await,
            CloudMessage::Command { id, command } => {
                link.from_cloud.send(FromCloud::Command { id, command }).await.map_err(|_| SessionError::Closed)
            }
            CloudMessage::AuditStored { through } => {
                link.from_cloud.send(FromCloud::AuditStored { through }).await.map_err(|_| SessionError::Closed)
            }
            CloudMessage::Reported { version } => {
                self.reported_version = version;
                // Stored: unless the document changed meanwhile (then the newer one goes next).
                if self.report_in_flight.take() == link.report {
                    link.report_stored = true;
                }
                Ok(())
            }
            CloudMessage::Conflict { version } => {
                // Someone else wrote our report (an older session of this device): ours is the
                // truth now, sent again on the version the cloud holds.
                (self.reported_version, self.report_in_flight) = (version, None);
                Ok(())
            }
            CloudMessage::Ping { seq } => self.send(&DeviceMessage::Pong { seq }).await,
            CloudMessage::Pong { .. } => Ok(()),
            other => Err(failed(format!("an unexpected message from the cloud: {other:?}"))),
        }
    }

    /// Sends the newest report, one at a time, until the cloud has stored it (a report lost
    /// with a session goes up again on the next).
    async fn flush_report(&mut self, link: &mut Link) -> Result<(), SessionError> {
        if self.report_in_flight.is_some() || link.report_stored {
            return Ok(());
        }
        let Some(doc) = link.report.clone() else { return Ok(()) };
        self.report_in_flight = Some(doc.clone());
        self.send(&DeviceMessage::Report { base: self.reported_version, doc }).await
    }

    async fn heartbeat(&mut self) -> Result<(), SessionError> {
        if self.last_heard.elapsed() > DEAD_AFTER {
            return Err(failed(format!("nothing from the cloud for {} s", DEAD_AFTER.as_secs())));
        }
        self.pings += 1;
        self.send(&DeviceMessage::Ping { seq: self.pings }).await
    }
}

/// TCP, TLS for `wss`, and the WebSocket handshake.
async fn dial(settings: &LinkSettings) -> Result<Socket, SessionError> {
    let url = &settings.url;
    let host = url.host_str().ok_or_else(|| failed("the cloud URL has no host"))?.to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port)).await.map_err(failed)?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Stream> = match url.scheme() {
        "wss" => {
            let config = emcee_protocol::tls::client_config(settings.ca_file.as_deref()).map_err(failed)?;
            let name = rustls::pki_types::ServerName::try_from(host).map_err(failed)?;
            Box::new(tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.map_err(failed)?)
        }
        "ws" => Box::new(tcp),
        other => return Err(failed(format!("the cloud URL's scheme `{other}` is not wss"))),
    };
    let (socket, _) = tokio_tungstenite::client_async(url.as_str(), stream).await.map_err(failed)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        for n in 1..20 {
            let full = Duration::from_secs(1u64 << (n - 1).min(6)).min(BACKOFF_CAP);
            let b = backoff(n);
            assert!(b >= full / 2 && b <= full, "{n}: {b:?} of {full:?}");
        }
        assert!(backoff(30) <= BACKOFF_CAP);
    }
}
