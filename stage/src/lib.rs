//! `emcee-stage`: the media process. It owns the GPU and the media clock; the control plane
//! drives it with cues over a WebSocket on a private Unix socket.
//!
//! # Layout
//! - [`channel`]: the control socket — peers checked, one controller at a time, no TCP.
//! - [`server`]: serves one control connection at a time, turns messages into pipeline
//!   commands and forwards lifecycle events back. The pipeline keeps running between connections, so a
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
//! - [`health`]: the health report sent to the control plane; [`liveness`]: the watchdog,
//!   fed by the media clock.
#![forbid(unsafe_code)]

pub mod actions;
pub mod captions;
pub mod channel;
pub mod error;
pub mod frames;
pub mod health;
pub mod idle;
pub mod liveness;
pub mod media_loop;
pub mod pipeline;
pub mod pose;
pub mod rebuild;
pub mod server;
pub mod slate;
pub mod speech_queue;
pub mod speech_thread;
pub mod video_path;
pub mod video_thread;

pub use server::{serve, StageError, StageSettings};
