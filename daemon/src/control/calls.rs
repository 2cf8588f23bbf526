//! What the show loop can be asked, and what it answers: the API (and anything else that
//! drives the show) maps its requests to these, so the show knows nothing of HTTP.

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::config::ConfigErrors;
use crate::library::{Doc, DocName, Format, Origin};
use crate::scheduler::{Offset, Room, RoomCommand};

/// What the show loop is asked to do; each carries its reply channel.
pub enum ShowCall {
    Status(oneshot::Sender<Status>),
    Say {
        text: String,
        priority: i32,
        reply: oneshot::Sender<Result<i64, String>>,
    },
    Ask {
        question: String,
        reply: oneshot::Sender<Result<Asked, String>>,
    },
    Room {
        command: RoomCommand,
        reply: oneshot::Sender<Result<Room, String>>,
    },
    /// The document the show plays from now.
    ContentOf {
        name: DocName,
        reply: oneshot::Sender<Doc>,
    },
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
}
