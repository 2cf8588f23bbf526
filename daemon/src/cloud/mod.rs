//! The appliance in its fleet: the control plane's side of the fleet link. An [`Agent`] task
//! reports the show's state up (on change, looked at every 2 s, with counters refreshed once a
//! minute), and carries out the cloud's commands through the same show calls as the local API,
//! audited with source `cloud`. The link itself ([`emcee_fleet::link`]) dials, proves the
//! device key and reconnects forever; the show never waits on either.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use emcee_fleet::identity::{DeviceKey, IdentityError};
use emcee_fleet::link::{FromCloud, Joining, Link, LinkSettings, ToCloud};
use emcee_fleet::wire::{Command, Versioned};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

mod outbox;

use outbox::Outbox;

use crate::config::CloudConfig;
use crate::control::calls::{CloudLink, ShowCall, Status};
use crate::scheduler::{InteractionKind, RoomCommand};

/// The show's state is looked at this often; a change is reported at once.
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// Counters (frames, bytes) are refreshed in the report this often.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// How the device joins, from what the state directory holds: its id once enrolled, else the
/// configured code (a key is made for it), else nothing — the appliance runs without a fleet.
pub fn joining(config: &CloudConfig, state_dir: &Path) -> Result<Option<(Joining, DeviceKey)>, CloudError> {
    let (key_file, device_file) = (CloudConfig::key_file(state_dir), CloudConfig::device_file(state_dir));
    if let Ok(device) = std::fs::read_to_string(&device_file) {
        let device = device.trim().to_string();
        return Ok(Some((Joining::Enrolled { device }, DeviceKey::load(&key_file)?)));
    }
    let Some(code) = config.enrol_code.clone() else { return Ok(None) };
    let key = if key_file.exists() { DeviceKey::load(&key_file)? } else { DeviceKey::create(&key_file)? };
    let name = config.name.clone().unwrap_or_else(host_name);
    Ok(Some((Joining::Enrol { code, name }, key)))
}

/// Keeps the id the cloud gave at enrolment: from then on the device joins as itself.
fn keep_device_id(file: &Path, device: &str) -> std::io::Result<()> {
    std::fs::write(file, format!("{device}\n"))
}

/// The host's name (uname: the unit hides /proc/sys).
fn host_name() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

/// `emcee enrol`: joins the fleet once with `code` (a key is made if there is none) and keeps
/// the device id the cloud gives; the id, or why the cloud refused.
pub async fn enrol(config: &CloudConfig, state_dir: &Path, code: &str) -> Result<String, String> {
    let device_file = CloudConfig::device_file(state_dir);
    if let Ok(device) = std::fs::read_to_string(&device_file) {
        return Err(format!("already enrolled as {} ({})", device.trim(), device_file.display()));
    }
    let config = CloudConfig { enrol_code: Some(code.to_string()), ..config.clone() };
    std::fs::create_dir_all(state_dir).map_err(|e| format!("{}: {e}", state_dir.display()))?;
    let (joining, key) = joining(&config, state_dir).map_err(|e| e.to_string())?.ok_or("no enrolment code")?;
    let (link, mut from_rx, _to_cloud) = start_link(&config, joining, key);
    let joined = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match from_rx.recv().await {
                Some(FromCloud::Joined { device, .. }) => return Ok(device),
                Some(FromCloud::Down { reason, .. }) => return Err(reason),
                Some(_) => {}
                None => return Err("the link ended".to_string()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err("the cloud did not answer within 30 s".into()));
    link.abort();
    let device = joined?;
    keep_device_id(&device_file, &device).map_err(|e| format!("{}: {e}", device_file.display()))?;
    Ok(device)
}

/// Starts the fleet link: its task, what it hands the control plane, and what it is handed.
fn start_link(
    config: &CloudConfig,
    joining: Joining,
    key: DeviceKey,
) -> (tokio::task::JoinHandle<()>, mpsc::Receiver<FromCloud>, mpsc::Sender<ToCloud>) {
    let (from_tx, from_rx) = mpsc::channel(64);
    let (to_tx, to_rx) = mpsc::channel(64);
    let settings = LinkSettings {
        url: config.url.clone(),
        ca_file: config.ca_file.clone(),
        key: Arc::new(key),
        joining,
        firmware: env!("CARGO_PKG_VERSION").into(),
        applied_desired: 0,
    };
    (tokio::spawn(Link::new(settings, from_tx, to_rx).run()), from_rx, to_tx)
}

/// Starts the link and its agent, if the appliance is (or is to be) enrolled.
pub fn spawn(config: &CloudConfig, state_dir: &Path, calls: mpsc::Sender<ShowCall>) -> Result<(), CloudError> {
    let Some((joining, key)) = joining(config, state_dir)? else {
        tracing::warn!("[cloud] is configured but this appliance is not enrolled: run `emcee enrol CODE`");
        return Ok(());
    };
    let (_, from_rx, to_tx) = start_link(config, joining, key);
    let agent = Agent {
        calls,
        to_cloud: to_tx,
        device_file: CloudConfig::device_file(state_dir),
        desired: Versioned::default(),
        counters: Value::Null,
        counted: None,
        outbox: Outbox::open(state_dir)?,
        joined_as: (None, None),
    };
    tokio::spawn(agent.run(from_rx));
    Ok(())
}

/// Reports the show up and carries the cloud's commands out.
pub struct Agent {
    calls: mpsc::Sender<ShowCall>,
    to_cloud: mpsc::Sender<ToCloud>,
    device_file: std::path::PathBuf,
    /// The desired document applied last.
    desired: Versioned,
    /// The counters in the report, and when they were taken.
    counters: Value,
    counted: Option<Instant>,
    /// The audit log on its way up.
    outbox: Outbox,
    /// The device and group the cloud last welcomed.
    joined_as: (Option<String>, Option<String>),
}

impl Agent {
    /// Until the control plane stops.
    pub async fn run(mut self, mut from_cloud: mpsc::Receiver<FromCloud>) {
        let mut look = tokio::time::interval(LOOK_EVERY);
        loop {
            tokio::select! {
                message = from_cloud.recv() => match message {
                    Some(message) => self.cloud_said(message).await,
                    None => return,
                },
                _ = look.tick() => {
                    if !self.report().await || !self.send_outbox().await {
                        return;
                    }
                }
            }
        }
    }

    async fn cloud_said(&mut self, message: FromCloud) {
        match message {
            FromCloud::AuditStored { through } => {
                self.outbox.stored(through);
                // Drain a long backlog batch after batch, not one per look.
                self.send_outbox().await;
            }
            FromCloud::Joined { device, group } => {
                self.outbox.link_up();
                tracing::info!(%device, %group, "in the fleet");
                if !self.device_file.exists() {
                    // Enrolled just now: from here on the device joins as itself.
                    if let Err(e) = keep_device_id(&self.device_file, &device) {
                        tracing::error!(error = %e, file = %self.device_file.display(), "cannot keep the device id");
                    }
                }
                self.link_is("joined", Some(device), Some(group), None).await;
            }
            FromCloud::Desired(desired) => {
                tracing::info!(version = desired.version, "desired state from the cloud");
                self.desired = desired;
            }
            FromCloud::Command { id, command } => {
                let (ok, body) = match self.carry_out(command).await {
                    Ok(body) => (true, body),
                    Err(error) => (false, json!({ "error": error })),
                };
                let _ = self.to_cloud.send(ToCloud::Done { id, ok, body }).await;
            }
            // The link logs why it is down; the show carries on without it.
            FromCloud::Down { reason, .. } => self.link_is("down", None, None, Some(reason)).await,
        }
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> ShowCall) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.calls.send(make(tx)).await.map_err(|_| "the show is not running".to_string())?;
        rx.await.map_err(|_| "the show is not running".to_string())
    }

    /// A command, exactly as the local API carries it out.
    async fn carry_out(&self, command: Command) -> Result<Value, String> {
        let room = |command| async move {
            let room = self.call(|reply| ShowCall::Room { command, reply }).await??;
            Ok(json!({ "room": room }))
        };
        match command {
            Command::Say { text } => {
                let text = crate::api::checked_line(&text)?;
                let kind = InteractionKind::Cloud;
                let id = self.call(|reply| ShowCall::Say { text, priority: 0, kind, reply }).await?;
                let id = id.map_err(|refusal| refusal.to_string())?;
                Ok(json!({ "id": id, "cue": format!("i{id}") }))
            }
            Command::Ask { text } => {
                let question = crate::api::checked_text(&text)?;
                let asked = self.call(|reply| ShowCall::Ask { question, reply }).await?;
                let asked = asked.map_err(|refusal| refusal.to_string())?;
                Ok(serde_json::to_value(&asked).unwrap_or_default())
            }
            Command::Start => room(RoomCommand::Start).await,
            Command::Stop => room(RoomCommand::Stop).await,
            Command::Pause => room(RoomCommand::Pause).await,
            Command::Resume => room(RoomCommand::Resume).await,
            Command::Skip => room(RoomCommand::Skip).await,
        }
    }

    /// Tells the show how the link is (for `emcee status` and metrics); the device and group
    /// stay as last known while it is down.
    async fn link_is(&mut self, state: &str, device: Option<String>, group: Option<String>, reason: Option<String>) {
        if device.is_some() {
            self.joined_as = (device, group);
        }
        let (device, group) = self.joined_as.clone();
        let link = CloudLink { state: state.into(), device, group, reason, since_ms: crate::store::now_ms() };
        let _ = self.calls.send(ShowCall::CloudLink(link)).await;
    }

    /// Hands the link the outbox's next batch, if one is due; false once the link is gone.
    async fn send_outbox(&mut self) -> bool {
        match self.outbox.next_batch() {
            Some(records) => self.to_cloud.send(ToCloud::Audit(records)).await.is_ok(),
            None => true,
        }
    }

    /// Hands the link the show's state now; false once the show or the link is gone.
    async fn report(&mut self) -> bool {
        let Ok(status) = self.call(ShowCall::Status).await else { return false };
        if self.counted.is_none_or(|at| at.elapsed() >= SNAPSHOT_EVERY) {
            self.counters = counters(&status);
            self.counted = Some(Instant::now());
        }
        let mut doc = reported(&status, &self.desired, &self.counters);
        doc["outbox"] = self.outbox.state();
        self.to_cloud.send(ToCloud::Report(doc)).await.is_ok()
    }
}

/// The reported document: what changes when the show changes (counters apart).
pub fn reported(status: &Status, desired: &Versioned, counters: &Value) -> Value {
    let health = status.stage.as_ref();
    let outputs: Vec<Value> = health.map_or_else(Vec::new, |h| {
        h.outputs.iter().map(|o| json!({ "url": o.url, "state": o.state, "last_error": o.last_error })).collect()
    });
    json!({
        "firmware": env!("CARGO_PKG_VERSION"),
        "desired_version": desired.version,
        "room": status.room,
        "offset": status.offset,
        "playing": status.playing,
        "script_sentences": status.script_sentences,
        "queued_interactions": status.queued_interactions,
        "stage_connected": status.stage_connected,
        "stage_refused": status.stage_refused,
        "state": status.state,
        "encoder": health.map(|h| h.encoder.clone()),
        "encoder_fallback": health.and_then(|h| h.encoder_fallback.clone()),
        "outputs": outputs,
        "counters": counters,
    })
}

/// Counters of the show, taken once a minute.
fn counters(status: &Status) -> Value {
    let taken_at_ms = crate::store::now_ms();
    match &status.stage {
        Some(h) => json!({
            "taken_at_ms": taken_at_ms,
            "media_ms": emcee_protocol::media_ts_to_ms(h.media_ts),
            "frames": h.frames,
            "late_frames": h.late_frames,
            "repeated_frames": h.repeated_frames,
            "slate_frames": h.slate_frames,
            "av_drift_samples": h.av_drift_samples,
            "bytes_sent": h.outputs.iter().map(|o| o.bytes_sent).collect::<Vec<_>>(),
        }),
        None => json!({ "taken_at_ms": taken_at_ms }),
    }
}
