//! The RTMP publish protocol without I/O: the bytes a publisher sends, and what it makes of the
//! server's. Chunking, message framing and AMF0 are rml_rtmp's (`chunk_io`, `messages`,
//! `rml_amf0`); the state machine is ours. rml_rtmp's client session has no `releaseStream`,
//! `FCPublish` or `FCUnpublish`, and its command parser panics on a command of fewer than three
//! values — which FFmpeg's listener sends in answer to `FCPublish` (a bare `onFCPublish`).
//! Here a command is read as a plain list of AMF0 values, and anything rml_rtmp's lower layers
//! would still panic on is caught and reported as a protocol error: a server's bytes never take
//! the publisher down.
//!
//! The sequence (what OBS and FFmpeg send, what ingests expect): `connect` → (answer) window
//! acknowledgement size, chunk size, `releaseStream`, `FCPublish`, `createStream` → (answer)
//! `publish` → (`onStatus` `NetStream.Publish.Start`) `@setDataFrame onMetaData`, then media;
//! `FCUnpublish` and `deleteStream` at the end.

use std::collections::HashMap;
use std::io::Cursor;
use std::time::Instant;

use bytes::Bytes;
use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
use rml_rtmp::messages::{MessagePayload, RtmpMessage, UserControlEventType};
use rml_rtmp::rml_amf0::{self, Amf0Value};
use rml_rtmp::time::RtmpTimestamp;

/// Our outbound chunk size, announced after `connect`.
pub const CHUNK_SIZE: u32 = 4096;

const CONNECT: f64 = 1.0;
const RELEASE_STREAM: f64 = 2.0;
const FC_PUBLISH: f64 = 3.0;
const CREATE_STREAM: f64 = 4.0;
const PUBLISH: f64 = 5.0;
const FC_UNPUBLISH: f64 = 6.0;

/// Message type ids (RTMP spec §5.4, §7.1).
const SET_CHUNK_SIZE: u8 = 1;
const ACKNOWLEDGEMENT: u8 = 3;
const USER_CONTROL: u8 = 4;
const WINDOW_ACK_SIZE: u8 = 5;
const AMF0_COMMAND: u8 = 20;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(String);

fn failed(what: &str, error: impl std::fmt::Debug) -> ProtocolError {
    ProtocolError(format!("{what}: {error:?}"))
}

/// What the server said that matters to a publisher.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Connected,
    ConnectRefused {
        description: String,
    },
    /// `createStream` answered; [`Publisher::publish`] may follow.
    StreamCreated,
    CreateStreamRefused {
        description: String,
    },
    /// `onStatus` (e.g. `NetStream.Publish.Start`, `NetStream.Publish.BadName`).
    Status {
        level: String,
        code: String,
        description: String,
    },
    /// The server has received this many bytes (a 32-bit count that wraps).
    Acknowledged {
        sequence: u32,
    },
}

pub struct Publisher {
    serializer: ChunkSerializer,
    deserializer: ChunkDeserializer,
    started: Instant,
    /// The message stream `createStream` gave us.
    stream_id: Option<u32>,
    /// The server's window acknowledgement size: it wants an acknowledgement every this many
    /// bytes it sends.
    peer_window: Option<u32>,
    received: u32,
    received_unacknowledged: u32,
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new()
    }
}

impl Publisher {
    pub fn new() -> Self {
        Self {
            serializer: ChunkSerializer::new(),
            deserializer: ChunkDeserializer::new(),
            started: Instant::now(),
            stream_id: None,
            peer_window: None,
            received: 0,
            received_unacknowledged: 0,
        }
    }

    /// Milliseconds since the session started, for control messages (media carries its own).
    fn now(&self) -> RtmpTimestamp {
        RtmpTimestamp::new(self.started.elapsed().as_millis() as u32)
    }

    fn encode(&mut self, message: RtmpMessage, stream_id: u32, at: RtmpTimestamp) -> Result<Vec<u8>, ProtocolError> {
        let payload = message.into_message_payload(at, stream_id).map_err(|e| failed("encode", e))?;
        let packet = self.serializer.serialize(&payload, false, false).map_err(|e| failed("chunk", e))?;
        Ok(packet.bytes)
    }

    fn command(
        &mut self,
        name: &str,
        transaction: f64,
        object: Amf0Value,
        arguments: Vec<Amf0Value>,
        stream_id: u32,
    ) -> Result<Vec<u8>, ProtocolError> {
        let message = RtmpMessage::Amf0Command {
            command_name: name.into(),
            transaction_id: transaction,
            command_object: object,
            additional_arguments: arguments,
        };
        let at = self.now();
        self.encode(message, stream_id, at)
    }

    /// `connect` to `app`.
    pub fn connect(&mut self, app: &str, tc_url: &str, flash_version: &str) -> Result<Vec<u8>, ProtocolError> {
        let properties = HashMap::from([
            ("app".to_string(), Amf0Value::Utf8String(app.into())),
            ("type".to_string(), Amf0Value::Utf8String("nonprivate".into())),
            ("flashVer".to_string(), Amf0Value::Utf8String(flash_version.into())),
            ("tcUrl".to_string(), Amf0Value::Utf8String(tc_url.into())),
        ]);
        self.command("connect", CONNECT, Amf0Value::Object(properties), Vec::new(), 0)
    }

    /// After [`Answer::Connected`]: our acknowledgement window and chunk size, `releaseStream`,
    /// `FCPublish` and `createStream`. Answers to the two in the middle are not waited for:
    /// many servers send none, and none decides anything.
    pub fn prepare(&mut self, ack_window: u32, key: &str) -> Result<Vec<u8>, ProtocolError> {
        let at = self.now();
        let mut bytes = self.encode(RtmpMessage::WindowAcknowledgement { size: ack_window }, 0, at)?;
        let chunk_size = self.serializer.set_max_chunk_size(CHUNK_SIZE, at).map_err(|e| failed("chunk size", e))?;
        bytes.extend(chunk_size.bytes);
        let key_argument = || vec![Amf0Value::Utf8String(key.into())];
        bytes.extend(self.command("releaseStream", RELEASE_STREAM, Amf0Value::Null, key_argument(), 0)?);
        bytes.extend(self.command("FCPublish", FC_PUBLISH, Amf0Value::Null, key_argument(), 0)?);
        bytes.extend(self.command("createStream", CREATE_STREAM, Amf0Value::Null, Vec::new(), 0)?);
        Ok(bytes)
    }

    /// After [`Answer::StreamCreated`]: `publish` `key` live.
    pub fn publish(&mut self, key: &str) -> Result<Vec<u8>, ProtocolError> {
        let stream = self.stream_id.ok_or_else(|| ProtocolError("publish before createStream was answered".into()))?;
        let arguments = vec![Amf0Value::Utf8String(key.into()), Amf0Value::Utf8String("live".into())];
        self.command("publish", PUBLISH, Amf0Value::Null, arguments, stream)
    }

    /// `@setDataFrame onMetaData` with `properties` on the published stream.
    pub fn metadata(&mut self, properties: HashMap<String, Amf0Value>) -> Result<Vec<u8>, ProtocolError> {
        let values = vec![
            Amf0Value::Utf8String("@setDataFrame".into()),
            Amf0Value::Utf8String("onMetaData".into()),
            Amf0Value::Object(properties),
        ];
        let stream = self.stream_id.unwrap_or(1);
        self.encode(RtmpMessage::Amf0Data { values }, stream, RtmpTimestamp::new(0))
    }

    /// One FLV video tag body at `at`.
    pub fn video(&mut self, body: Bytes, at: RtmpTimestamp) -> Result<Vec<u8>, ProtocolError> {
        let stream = self.stream_id.unwrap_or(1);
        self.encode(RtmpMessage::VideoData { data: body }, stream, at)
    }

    /// One FLV audio tag body at `at`.
    pub fn audio(&mut self, body: Bytes, at: RtmpTimestamp) -> Result<Vec<u8>, ProtocolError> {
        let stream = self.stream_id.unwrap_or(1);
        self.encode(RtmpMessage::AudioData { data: body }, stream, at)
    }

    /// A ping request; the server's answer is heard like any other bytes.
    pub fn ping(&mut self) -> Result<Vec<u8>, ProtocolError> {
        let at = self.now();
        let message = RtmpMessage::UserControl {
            event_type: UserControlEventType::PingRequest,
            stream_id: None,
            buffer_length: None,
            timestamp: Some(at),
        };
        self.encode(message, 0, at)
    }

    /// `FCUnpublish` and `deleteStream`: the polite end of a publish.
    pub fn unpublish(&mut self, key: &str) -> Result<Vec<u8>, ProtocolError> {
        let mut bytes =
            self.command("FCUnpublish", FC_UNPUBLISH, Amf0Value::Null, vec![Amf0Value::Utf8String(key.into())], 0)?;
        if let Some(stream) = self.stream_id.take() {
            bytes.extend(self.command(
                "deleteStream",
                0.0,
                Amf0Value::Null,
                vec![Amf0Value::Number(stream.into())],
                0,
            )?);
        }
        Ok(bytes)
    }

    /// Reads what the server sent: the replies the protocol owes it (acknowledgements, ping
    /// responses), to be written back, and the answers that matter. A malformed message is an
    /// error, never a panic.
    pub fn read(&mut self, input: &[u8]) -> Result<(Vec<u8>, Vec<Answer>), ProtocolError> {
        let mut replies = Vec::new();
        let mut answers = Vec::new();
        let n = input.len() as u32;
        self.received = self.received.wrapping_add(n);
        self.received_unacknowledged = self.received_unacknowledged.saturating_add(n);
        if self.peer_window.is_some_and(|w| self.received_unacknowledged >= w) {
            self.received_unacknowledged = 0;
            let at = self.now();
            replies.extend(self.encode(RtmpMessage::Acknowledgement { sequence_number: self.received }, 0, at)?);
        }
        let mut bytes = input;
        loop {
            let deserializer = &mut self.deserializer;
            let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| deserializer.get_next_message(bytes)))
                .map_err(|_| ProtocolError("unreadable chunk stream from the server".into()))?
                .map_err(|e| failed("chunk stream", e))?;
            let Some(payload) = next else { break };
            bytes = &[];
            self.message(&payload, &mut replies, &mut answers)?;
        }
        Ok((replies, answers))
    }

    fn message(
        &mut self,
        payload: &MessagePayload,
        replies: &mut Vec<u8>,
        answers: &mut Vec<Answer>,
    ) -> Result<(), ProtocolError> {
        match payload.type_id {
            AMF0_COMMAND => {
                let values = rml_amf0::deserialize(&mut Cursor::new(&payload.data[..]))
                    .map_err(|e| failed("AMF0 command from the server", e))?;
                answers.extend(self.command_answer(&values));
            }
            SET_CHUNK_SIZE | ACKNOWLEDGEMENT | USER_CONTROL | WINDOW_ACK_SIZE => {
                let message = std::panic::catch_unwind(|| payload.to_rtmp_message())
                    .map_err(|_| ProtocolError(format!("unreadable control message (type {})", payload.type_id)))?
                    .map_err(|e| failed("control message", e))?;
                match message {
                    RtmpMessage::SetChunkSize { size } => {
                        self.deserializer.set_max_chunk_size(size as usize).map_err(|e| failed("chunk size", e))?
                    }
                    RtmpMessage::Acknowledgement { sequence_number } => {
                        answers.push(Answer::Acknowledged { sequence: sequence_number })
                    }
                    RtmpMessage::WindowAcknowledgement { size } => self.peer_window = Some(size.max(1)),
                    RtmpMessage::UserControl { event_type: UserControlEventType::PingRequest, timestamp, .. } => {
                        let response = RtmpMessage::UserControl {
                            event_type: UserControlEventType::PingResponse,
                            stream_id: None,
                            buffer_length: None,
                            timestamp,
                        };
                        let at = self.now();
                        replies.extend(self.encode(response, 0, at)?);
                    }
                    _ => {}
                }
            }
            // Peer bandwidth, aborts, data messages, media: nothing a publisher acts on.
            _ => {}
        }
        Ok(())
    }

    /// What a command from the server means to us, if anything (`onFCPublish`, `onBWDone`,
    /// answers to `releaseStream`/`FCPublish`: nothing).
    fn command_answer(&mut self, values: &[Amf0Value]) -> Option<Answer> {
        let name = match values.first() {
            Some(Amf0Value::Utf8String(name)) => name.as_str(),
            _ => return None,
        };
        let transaction = match values.get(1) {
            Some(Amf0Value::Number(t)) => *t,
            _ => -1.0,
        };
        let info = values.iter().skip(2).find_map(|v| match v {
            Amf0Value::Object(properties) => Some(properties),
            _ => None,
        });
        let text = |key: &str| match info.and_then(|i| i.get(key)) {
            Some(Amf0Value::Utf8String(s)) => s.clone(),
            _ => String::new(),
        };
        match (name, transaction) {
            ("_result", CONNECT) => Some(Answer::Connected),
            ("_error", CONNECT) => Some(Answer::ConnectRefused { description: text("description") }),
            ("_result", CREATE_STREAM) => {
                let id = values.iter().skip(3).find_map(|v| match v {
                    Amf0Value::Number(n) if *n >= 0.0 && *n <= f64::from(u32::MAX) => Some(*n as u32),
                    _ => None,
                });
                self.stream_id = Some(id.unwrap_or(1));
                Some(Answer::StreamCreated)
            }
            ("_error", CREATE_STREAM) => Some(Answer::CreateStreamRefused { description: text("description") }),
            ("onStatus", _) => {
                Some(Answer::Status { level: text("level"), code: text("code"), description: text("description") })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server's side of the wire, as rml_rtmp writes it.
    fn from_server(serializer: &mut ChunkSerializer, type_id: u8, values: &[Amf0Value]) -> Vec<u8> {
        let data = rml_amf0::serialize(&values.to_vec()).unwrap();
        let message = RtmpMessage::Unknown { type_id, data: Bytes::from(data) };
        let payload = message.into_message_payload(RtmpTimestamp::new(0), 0).unwrap();
        serializer.serialize(&payload, false, false).unwrap().bytes
    }

    fn s(text: &str) -> Amf0Value {
        Amf0Value::Utf8String(text.into())
    }

    #[test]
    fn a_bare_command_is_ignored_where_rml_rtmp_panicked() {
        let mut server = ChunkSerializer::new();
        let mut publisher = Publisher::new();
        // FFmpeg's listener answers FCPublish with this, and nothing else.
        let bytes = from_server(&mut server, AMF0_COMMAND, &[s("onFCPublish")]);
        assert_eq!(publisher.read(&bytes).unwrap().1, []);
        let bytes = from_server(&mut server, AMF0_COMMAND, &[]);
        assert_eq!(publisher.read(&bytes).unwrap().1, []);
    }

    #[test]
    fn answers_are_told_apart_by_their_transaction() {
        let mut server = ChunkSerializer::new();
        let mut publisher = Publisher::new();
        let info = |code: &str| {
            Amf0Value::Object(HashMap::from([
                ("level".to_string(), s("error")),
                ("code".to_string(), s(code)),
                ("description".to_string(), s("no")),
            ]))
        };
        let mut bytes = from_server(&mut server, AMF0_COMMAND, &[s("_result"), Amf0Value::Number(CONNECT)]);
        // The answer to releaseStream is not the answer to createStream.
        bytes.extend(from_server(&mut server, AMF0_COMMAND, &[s("_error"), Amf0Value::Number(RELEASE_STREAM)]));
        bytes.extend(from_server(
            &mut server,
            AMF0_COMMAND,
            &[s("_result"), Amf0Value::Number(CREATE_STREAM), Amf0Value::Null, Amf0Value::Number(7.0)],
        ));
        bytes.extend(from_server(
            &mut server,
            AMF0_COMMAND,
            &[s("onStatus"), Amf0Value::Number(0.0), Amf0Value::Null, info("NetStream.Publish.BadName")],
        ));
        let (_, answers) = publisher.read(&bytes).unwrap();
        assert_eq!(
            answers,
            [
                Answer::Connected,
                Answer::StreamCreated,
                Answer::Status {
                    level: "error".into(),
                    code: "NetStream.Publish.BadName".into(),
                    description: "no".into()
                }
            ]
        );
        assert_eq!(publisher.stream_id, Some(7));
    }

    #[test]
    fn garbage_from_the_server_is_an_error_or_nothing_never_a_panic() {
        // A fixed pseudo-random sequence: the same bytes on every run.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut publisher = Publisher::new();
            let len = (state % 300) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            let _ = publisher.read(&bytes);
        }
    }

    #[test]
    fn the_server_is_acknowledged_every_window_it_asked_for() {
        let mut server = ChunkSerializer::new();
        let mut publisher = Publisher::new();
        let window = RtmpMessage::WindowAcknowledgement { size: 100 }.into_message_payload(RtmpTimestamp::new(0), 0);
        let bytes = server.serialize(&window.unwrap(), false, false).unwrap().bytes;
        let (replies, _) = publisher.read(&bytes).unwrap();
        assert!(replies.is_empty(), "{} bytes received, window 100", bytes.len());
        let filler = from_server(&mut server, 18, &[s(&"x".repeat(120))]);
        let (replies, _) = publisher.read(&filler).unwrap();
        let mut reader = ChunkDeserializer::new();
        let ack = reader.get_next_message(&replies).unwrap().expect("an acknowledgement").to_rtmp_message().unwrap();
        let total = (bytes.len() + filler.len()) as u32;
        assert_eq!(ack, RtmpMessage::Acknowledgement { sequence_number: total });
    }
}
