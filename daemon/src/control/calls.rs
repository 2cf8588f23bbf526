//! What the show loop can be asked, and what it answers: the API (and anything else that
//! drives the show) maps its requests to these, so the show knows nothing of HTTP.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub use super::state_health::StateHealth;
use crate::config::ConfigErrors;
use crate::library::{Doc, DocName, Format, Library, Origin};
use crate::scheduler::{InteractionKind, Offset, Room, RoomCommand};

/// What the show loop is asked to do; each carries its reply channel.
pub enum ShowCall {
    Status(oneshot::Sender<Status>),
    Say {
        text: String,
        priority: i32,
        /// Who sent it: the local operator or the fleet cloud.
        kind: InteractionKind,
        reply: oneshot::Sender<Result<i64, Refusal>>,
    },
    Ask {
        question: String,
        reply: oneshot::Sender<Result<Asked, Refusal>>,
    },
    Room {
        command: RoomCommand,
        reply: oneshot::Sender<Result<Room, String>>,
    },
    /// The documents the show plays from now.
    ContentOf {
        reply: oneshot::Sender<Arc<Library>>,
    },
    /// The fleet link changed (for status and metrics).
    CloudLink(CloudLink),
    /// Replace a document (`Some`, checked first) or go back to its configured file (`None`).
    ChangeContent {
        name: DocName,
        doc: Option<Doc>,
        reply: oneshot::Sender<Result<ContentInfo, ContentRefused>>,
    },
}

/// A document the show now plays from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContentInfo {
    pub name: DocName,
    pub format: Format,
    pub origin: Origin,
    /// Sentences in the script now.
    pub script_sentences: usize,
}

/// Why a content change was not made (nothing changed).
#[derive(Debug)]
pub enum ContentRefused {
    /// The document, or the other one with it, does not check.
    Invalid(ConfigErrors),
    /// It could not be stored.
    Store(String),
}

/// What became of a viewer's question.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Asked {
    /// The queued answer's id (`i<id>` in the audit log).
    pub id: i64,
    pub answer: String,
    pub confidence: f64,
    /// False when the holding line is said instead of an answer.
    pub matched: bool,
    /// True when the same question was asked moments ago: its answer is already queued.
    pub duplicate: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Playing {
    pub cue: String,
    pub source: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub room: Room,
    pub offset: Offset,
    pub script_sentences: usize,
    pub queued_interactions: usize,
    pub playing: Option<Playing>,
    pub stage_connected: bool,
    /// The stage's last health report: frames, late frames, encoder, each output's state.
    pub stage: Option<emcee_protocol::Health>,
    /// How long ago that report came (the media clock sends one a second): the age of the
    /// newest frame the control plane knows of.
    #[serde(default)]
    pub stage_report_age_ms: Option<u64>,
    /// The state database: set aside at boot, writes failing now.
    #[serde(default)]
    pub state: StateHealth,
    /// Why the stage refused the show (asked again every 30 s), while it does.
    #[serde(default)]
    pub stage_refused: Option<String>,
    /// The fleet link, on an appliance with `[cloud]`.
    #[serde(default)]
    pub cloud: Option<CloudLink>,
}

/// The fleet link as the appliance sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudLink {
    /// `joined` or `down`.
    pub state: String,
    pub device: Option<String>,
    pub group: Option<String>,
    /// Why it is down.
    pub reason: Option<String>,
    /// When it last changed, Unix ms.
    pub since_ms: i64,
}

/// Why a line or a question was not queued.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// Too many of its kind wait already (the API answers 429): a flood cannot hold the script
    /// off for long, nor fill the disk.
    #[error("{queued} {kind} already wait to be said (at most {limit}); try again once some are said")]
    QueueFull { kind: &'static str, queued: usize, limit: usize },
    /// The state database could not store it (a full disk): nothing was queued (the API
    /// answers 507).
    #[error("the state database could not store it, so it was not queued: {0}")]
    NotStored(String),
}

/// Whether the show is on air, and if not, every reason why not: what `/readyz` answers.
pub fn not_ready_reasons(status: &Status) -> Vec<String> {
    let mut reasons = Vec::new();
    if !matches!(status.room, Room::Live | Room::Paused | Room::Ending) {
        reasons.push(format!("the room is {:?}", status.room).to_lowercase());
    }
    if !status.stage_connected {
        reasons.push("the stage is not connected".into());
    }
    if let Some(why) = &status.stage_refused {
        reasons.push(format!("the stage refused the show: {why}"));
    }
    match (&status.stage, status.stage_report_age_ms) {
        (Some(health), Some(age)) => {
            if age > READY_REPORT_AGE_MS {
                reasons.push(format!("no frame reported for {age} ms"));
            }
            if !health.outputs.iter().any(|o| o.state == "publishing") {
                reasons.push("no output is publishing".into());
            }
        }
        _ => reasons.push("no frame reported yet".into()),
    }
    reasons
}

/// A health report older than this means the media clock has stalled or the link is gone.
pub const READY_REPORT_AGE_MS: u64 = 5_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn status(room: Room, connected: bool, report: Option<(&str, u64)>) -> Status {
        let health = report.map(|(state, _)| emcee_protocol::Health {
            media_ts: 0,
            frames: 30,
            late_frames: 0,
            repeated_frames: 0,
            slate_frames: 0,
            av_drift_samples: 0,
            encoder: "openh264".into(),
            encoder_fallback: None,
            outputs: vec![emcee_protocol::OutputHealth {
                url: "rtmp://a:1935/live/…".into(),
                state: state.into(),
                bytes_sent: 0,
                connects: 1,
                dropped_packets: 0,
                bytes_acked: 0,
                queue_ms: 0,
                bitrate_kbps: 0,
                last_error: None,
            }],
        });
        Status {
            room,
            offset: Offset::default(),
            script_sentences: 1,
            queued_interactions: 0,
            playing: None,
            stage_connected: connected,
            stage: health,
            stage_report_age_ms: report.map(|(_, age)| age),
            state: StateHealth::default(),
            stage_refused: None,
            cloud: None,
        }
    }

    #[test]
    fn ready_means_on_air_and_every_reason_is_given() {
        assert!(not_ready_reasons(&status(Room::Live, true, Some(("publishing", 200)))).is_empty());
        assert!(not_ready_reasons(&status(Room::Paused, true, Some(("publishing", 200)))).is_empty());
        let idle = not_ready_reasons(&status(Room::Idle, false, None));
        assert_eq!(idle, ["the room is idle", "the stage is not connected", "no frame reported yet"]);
        let stalled = not_ready_reasons(&status(Room::Live, true, Some(("retrying in 500 ms: refused", 9_000))));
        assert_eq!(stalled, ["no frame reported for 9000 ms", "no output is publishing"]);
    }
}
