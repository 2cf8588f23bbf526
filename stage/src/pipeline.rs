//! The media pipeline: the stage's clock and everything that runs on it.
//!
//! Threads, in data-flow order:
//! - **speech**: synthesizes `say` cues in arrival order (Piper voices on ONNX Runtime, or
//!   espeak-ng in its child process; cached on disk);
//! - **media** (the clock): for every frame tick it takes the tick's 1/fps of audio (speech or
//!   silence), evaluates the pose at the frame's media time, submits the frame to the GPU and
//!   reads back the one before it ([`crate::frames`]), and encodes the audio;
//! - **video**: encodes the frame (NVENC reading the GPU ring slot, or openh264 from host I420;
//!   see [`crate::video_path`]) and hands video and audio packets, in timestamp order, to the
//!   [`Distributor`], which fans them out to the RTMP tasks on the tokio runtime.
//!
//! The clock is the 48 kHz audio sample counter; frame `n` is at `n·48000/fps`. Every tick
//! leaves with a frame and exact timestamps; a tick that starts more than a frame late shows the
//! previous picture again (counted) so that the stream keeps real time.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use emcee_encoder::{EncoderSettings, I420Frame, OpenH264Encoder, Picture, VideoEncoder};
use emcee_protocol::{
    Cue, CueAction, EncoderFallback, Health, OutputHealth, StageConfig, StageEvent, StopWhen, MEDIA_CLOCK_HZ,
};
use emcee_renderer::{Pose, Renderer};
use emcee_speech::espeak::default_bridge_path;
use emcee_speech::Utterance;
use emcee_speech::{Speaker, SpeechSettings};
use emcee_stream::aac::{AacEncoder, AacFrame};
use emcee_stream::flv;
use emcee_stream::rtmp::{Distributor, MediaPacket, Output, StreamHeaders};

use crate::actions::Actions;
use crate::frames::{Frames, Ready, Shown, SlotsInUse, Tick};
use crate::idle;
use crate::speech_queue::{Accepted, SpeechQueue};

/// How far the media clock may run ahead of the wall clock, in frames: enough to absorb jitter,
/// small enough to keep latency low.
const LEAD_FRAMES: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("renderer: {0}")]
    Render(#[from] emcee_renderer::RenderError),
    #[error("avatar {path}: {reason}")]
    Avatar { path: String, reason: String },
    #[error("video encoder: {0}")]
    Video(#[from] emcee_encoder::EncodeError),
    #[error("audio encoder: {0}")]
    Audio(#[from] emcee_stream::aac::AacError),
    #[error("outputs: {0}")]
    Output(#[from] emcee_stream::rtmp::RtmpError),
    #[error("cannot start thread: {0}")]
    Thread(std::io::Error),
}

pub enum Command {
    Cue(Cue),
    Stop {
        id: Option<String>,
        when: StopWhen,
    },
    /// End the show after fading out for this many frames (0: at once).
    End {
        fade_frames: u64,
    },
    /// A fault drill: proves on a live appliance (and in tests) that a renderer fault gives the
    /// slate, not black, and that the show comes back on its own.
    Drill(RenderFault),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderFault {
    /// Every render fails from now on, as after a lost GPU.
    DeviceLost,
    /// The next render panics.
    Panic,
}

/// A running pipeline; dropping the handle does not stop it, [`Command::End`] does.
pub struct Pipeline {
    pub commands: Sender<Command>,
    pub config: StageConfig,
    media: Option<JoinHandle<()>>,
}

impl Pipeline {
    /// Opens every device and encoder (so failures surface here), then starts the clock.
    pub fn start(
        config: StageConfig,
        events: tokio::sync::mpsc::Sender<StageEvent>,
        rt: tokio::runtime::Handle,
    ) -> Result<Self, PipelineError> {
        let v = &config.video;
        let background = config.avatar.scene.background_rgb;
        let model = match &config.avatar.model {
            None => None,
            Some(path) => {
                let failed = |reason: String| PipelineError::Avatar { path: path.display().to_string(), reason };
                let bytes = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
                let model = emcee_renderer::model::Model::from_glb(&bytes).map_err(|e| failed(e.to_string()))?;
                tracing::info!(avatar = %path.display(), vertices = model.vertices.len(), targets = model.targets.len(), "avatar loaded");
                Some(model)
            }
        };
        let (width, height) = (v.width, v.height);
        // Shared with the media thread, which builds a new renderer when the first one is lost.
        let factory: RendererFactory = std::sync::Arc::new(move |output| match &model {
            None => Renderer::builtin_with_output(width, height, background, output),
            Some(model) => Renderer::with_output(width, height, background, model.clone(), output),
        });
        let make_renderer = |output| Ok(factory(output)?);
        let settings = crate::video_path::encoder_settings(&config);
        let path = crate::video_path::open(v.encoder, settings.clone(), make_renderer)?;
        let encoder_fallback = path.fallback_report();
        let (mut renderer, encoder, zero_copy) = (path.renderer, path.encoder, path.zero_copy);
        renderer.set_scene(&config.avatar.scene);
        // One frame before the clock starts: a software driver compiles its shader variants on
        // first use, and that second would otherwise put the first frames behind the clock.
        let first_bytes = renderer.render(&emcee_renderer::Pose::default())?.to_vec();
        let (first_frame, slots) = match (zero_copy, renderer.last_slot()) {
            (true, Some(slot)) => {
                (Shown::Slot { slot, written_at: None }, Some(std::sync::Arc::new(SlotsInUse::default())))
            }
            _ => (Shown::Host(first_bytes), None),
        };
        // Fonts load here, before the clock starts.
        let captions = crate::captions::Captions::new(&config);
        // Made now, on the CPU: when it is needed the GPU may be what failed.
        let slate = {
            let a = &config.avatar;
            crate::slate::slate_i420(width, height, a.scene.background_rgb, a.slate.as_deref(), a.label.as_deref())
        };
        let encoder_settings = settings.clone();
        let rebuild = Rebuilder { factory, choice: v.encoder, settings };
        tracing::info!(
            device = renderer.device_name(),
            software = renderer.is_software(),
            encoder = encoder.name(),
            "renderer ready"
        );
        let aac = AacEncoder::new(config.audio.bitrate_kbps * 1000, config.audio.channels)?;
        let headers = StreamHeaders {
            width: v.width,
            height: v.height,
            fps: v.fps,
            video_kbps: v.bitrate_kbps,
            audio_kbps: config.audio.bitrate_kbps,
            audio_channels: config.audio.channels,
            video: None,
            audio: Some(flv::audio_sequence_header(&aac.audio_specific_config())),
        };
        let distributor = {
            let _guard = rt.enter();
            let outputs: Vec<Output> = config
                .outputs
                .iter()
                .map(|o| Output {
                    rotate_after: Duration::from_secs(o.rotate_after_s),
                    ca_file: o.ca_file.clone(),
                    ..Output::new(&o.url)
                })
                .collect();
            let mut distributor = Distributor::start(&outputs, headers, &rt)?;
            if let Some(r) = &config.recorder {
                let recorder = emcee_stream::record::RecorderConfig {
                    dir: r.dir.clone(),
                    segment: Duration::from_secs(r.segment_s),
                    max_bytes: r.max_mb * 1024 * 1024,
                };
                distributor.add_recorder(recorder, &rt);
            }
            distributor
        };

        // The show's voice loads before the clock starts (a neural voice takes a second or two
        // of CPU, which the first frames would otherwise lose). A voice that cannot load only
        // fails the cues that use it.
        let s = &config.speech;
        let mut speaker = Speaker::new(SpeechSettings {
            espeak_bridge: default_bridge_path(),
            espeak_dir: s.espeak.clone(),
            onnxruntime: s.onnxruntime.clone(),
            voices_dir: s.voices.clone(),
            cache_dir: s.cache.clone(),
        });
        if let Err(e) = speaker.prepare(&config.avatar.voice) {
            tracing::error!(voice = %config.avatar.voice.name, error = %e, "the show's voice cannot be loaded");
        }

        // Every thread starts here, so a failure is reported instead of a half-running stage.
        let encoder_name = encoder.name();
        let sink_stats = distributor.stats();
        let (speech_tx, speech_rx) = mpsc::channel::<SpeechJob>();
        let (spoken_tx, spoken_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("speech".into())
            .spawn(move || run_speech(speaker, speech_rx, spoken_tx))
            .map_err(PipelineError::Thread)?;
        let (video_tx, video_rx) = mpsc::sync_channel::<VideoJob>(LEAD_FRAMES as usize + 1);
        let video_rt = rt.clone();
        let video = std::thread::Builder::new()
            .name("video".into())
            .spawn({
                let slots = slots.clone();
                let encoders = Encoders::new(encoder, slots, encoder_settings);
                move || run_video(encoders, distributor, video_rx, video_rt)
            })
            .map_err(PipelineError::Thread)?;

        let (commands, command_rx) = mpsc::channel();
        let media_config = config.clone();
        let media = std::thread::Builder::new()
            .name("media".into())
            .spawn(move || {
                let frames = Frames::new(first_frame, slots, Some(slate));
                let parts = Parts {
                    renderer,
                    rebuild,
                    frames,
                    captions,
                    aac,
                    encoder_name,
                    encoder_fallback,
                    sink_stats,
                    speech_tx,
                    spoken_rx,
                    video_tx,
                    video,
                };
                run_media(media_config, parts, command_rx, events);
            })
            .map_err(PipelineError::Thread)?;
        Ok(Self { commands, config, media: Some(media) })
    }

    /// Waits for the media thread to finish after [`Command::End`].
    pub fn join(&mut self) {
        if let Some(h) = self.media.take() {
            let _ = h.join();
        }
    }
}

/// What the media thread drives: the renderer and audio encoder it owns, and the channels to
/// the speech and video threads.
struct Parts {
    renderer: Renderer,
    /// Builds a replacement renderer and encoder when the renderer is lost.
    rebuild: Rebuilder,
    frames: Frames<Vec<AacFrame>>,
    captions: crate::captions::Captions,
    aac: AacEncoder,
    encoder_name: &'static str,
    encoder_fallback: Option<EncoderFallback>,
    sink_stats: Vec<(String, std::sync::Arc<emcee_stream::rtmp::SinkStats>)>,
    speech_tx: Sender<SpeechJob>,
    spoken_rx: Receiver<(String, Result<Utterance, String>)>,
    video_tx: mpsc::SyncSender<VideoJob>,
    /// The video thread, joined once the last job is sent.
    video: JoinHandle<()>,
}

/// Builds a renderer for a frame output (the same device, model and size every time).
type RendererFactory =
    std::sync::Arc<dyn Fn(emcee_renderer::FrameOutput) -> Result<Renderer, emcee_renderer::RenderError> + Send + Sync>;

/// What a lost renderer is rebuilt from: the same device, model and size, and the same encoder
/// choice — so a zero-copy show goes back to zero-copy, or falls back to the host path (with its
/// reason) when the GPU that held the ring will not come back.
struct Rebuilder {
    factory: RendererFactory,
    choice: emcee_protocol::EncoderChoice,
    settings: emcee_encoder::EncoderSettings,
}

/// A rebuilt video path, warmed up: its renderer has drawn one frame (`first`).
struct Rebuilt {
    path: crate::video_path::VideoPath,
    first: Shown,
}

/// Building a replacement renderer and encoder off the media thread (it takes a second or more),
/// retried every couple of seconds while it fails.
#[derive(Default)]
struct Rebuild {
    pending: Option<Receiver<Result<Rebuilt, String>>>,
    not_before_tick: u64,
}

impl Rebuild {
    /// The new video path once it is built; starts a build when none is under way.
    fn poll(&mut self, from: &Rebuilder, tick: u64, fps: u32) -> Option<Rebuilt> {
        let Some(pending) = &self.pending else {
            if tick >= self.not_before_tick {
                let (tx, rx) = mpsc::channel();
                let (factory, choice, settings) = (from.factory.clone(), from.choice, from.settings.clone());
                let started = std::thread::Builder::new().name("renderer-rebuild".into()).spawn(move || {
                    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let mut path = crate::video_path::open(choice, settings, |output| Ok(factory(output)?))
                            .map_err(|e| e.to_string())?;
                        // Its first frame compiles shaders (a second on a software driver): here,
                        // not on the media thread's clock.
                        let bytes =
                            path.renderer.render(&emcee_renderer::Pose::default()).map_err(|e| e.to_string())?.to_vec();
                        let first = match (path.zero_copy, path.renderer.last_slot()) {
                            (true, Some(slot)) => Shown::Slot { slot, written_at: None },
                            _ => Shown::Host(bytes),
                        };
                        Ok(Rebuilt { path, first })
                    }));
                    let _ = tx.send(built.unwrap_or_else(|_| Err("the rebuild panicked".into())));
                });
                match started {
                    Ok(_) => self.pending = Some(rx),
                    Err(e) => tracing::error!(error = %e, "cannot start the renderer rebuild"),
                }
                tracing::info!("rebuilding the renderer");
            }
            return None;
        };
        match pending.try_recv() {
            Ok(Ok(rebuilt)) => {
                self.pending = None;
                Some(rebuilt)
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the renderer could not be rebuilt; trying again");
                self.pending = None;
                self.not_before_tick = tick + 2 * u64::from(fps);
                None
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.pending = None;
                None
            }
        }
    }
}

/// Head lift per semitone of pitch above the sentence's median, radians (about 1°).
const PITCH_HEAD_LIFT: f32 = 0.017;

/// Sentences synthesized (or being synthesized) ahead of the one playing.
const SPEECH_LOOKAHEAD: usize = 2;

/// The speech thread's nice value (0 normal … 19 lowest).
const SPEECH_NICE: i32 = 10;

/// A `say` cue for the speech thread: id, SSML, voice.
type SpeechJob = (String, String, emcee_protocol::Voice);

/// Synthesizes `say` cues in arrival order, ahead of the clock.
fn run_speech(mut speaker: Speaker, jobs: Receiver<SpeechJob>, spoken: Sender<(String, Result<Utterance, String>)>) {
    // Synthesis runs ahead of the clock and can wait; a frame cannot. At nice 10 a neural
    // voice's bursts of inference take the cores only when rendering and encoding leave them.
    // (On Linux, setpriority on a thread id applies to that thread alone.)
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), SPEECH_NICE) {
        tracing::warn!(error = %e, "speech thread keeps normal priority");
    }
    for (id, text, voice) in jobs {
        let result = speaker.speak(&text, &voice).map_err(|e| e.to_string());
        if spoken.send((id, result)).is_err() {
            break;
        }
    }
}

enum VideoJob {
    Frame {
        index: u64,
        media_ts: u64,
        picture: Shown,
        audio: Vec<AacFrame>,
    },
    /// A rebuilt video path's encoders: they encode every frame after this job. `retired`: the
    /// lost renderer, freed only after the encoder that imported its ring (CUDA must let go of
    /// Vulkan memory before Vulkan frees it).
    Switch {
        encoders: Box<Encoders>,
        retired: Box<Renderer>,
    },
    End {
        audio: Vec<AacFrame>,
    },
}

fn frame_ts(index: u64, fps: u32) -> u64 {
    index * MEDIA_CLOCK_HZ / u64::from(fps)
}

fn emit(events: &tokio::sync::mpsc::Sender<StageEvent>, event: StageEvent) {
    // The forwarder always drains this queue; a full queue means the control plane is gone and
    // health reports may be dropped, but lifecycle events wait for room.
    match event {
        StageEvent::Health(_) => {
            let _ = events.try_send(event);
        }
        _ => {
            let _ = events.blocking_send(event);
        }
    }
}

fn run_media(
    config: StageConfig,
    parts: Parts,
    commands: Receiver<Command>,
    events: tokio::sync::mpsc::Sender<StageEvent>,
) {
    let Parts {
        mut renderer,
        rebuild,
        mut frames,
        mut captions,
        mut aac,
        mut encoder_name,
        mut encoder_fallback,
        sink_stats,
        speech_tx,
        spoken_rx,
        video_tx,
        video,
    } = parts;
    let fps = config.video.fps;
    let channels = usize::from(config.audio.channels);

    let mut queue = SpeechQueue::default();
    let mut lifecycle = Vec::new();
    // Scenes of accepted cues, shown when their cue starts.
    let mut scenes: HashMap<String, emcee_protocol::Scene> = HashMap::new();
    // What a rebuilt renderer must show.
    let mut current_scene = config.avatar.scene;
    let mut rebuilding = Rebuild::default();
    let mut actions = Actions::default();
    let mut acted = Vec::new();
    let mut late_frames = 0u64;
    // `say` cues waiting to be sent to the speech thread, and how many it has in hand.
    let mut to_speak: VecDeque<SpeechJob> = VecDeque::new();
    let mut speaking = 0usize;
    let mut ready = Vec::new();
    let frame_len = Duration::from_nanos(1_000_000_000 / u64::from(fps));
    let lead = frame_len * LEAD_FRAMES as u32;
    let clock_start = Instant::now();
    let mut last_report = clock_start;
    let mut sent_at_last_report = vec![0u64; sink_stats.len()];

    // (first frame, length) of the end-of-show fade, once asked for.
    let mut fading: Option<(u64, u64)> = None;
    let mut index = 0u64;
    loop {
        let tick_start = frame_ts(index, fps);
        let tick_end = frame_ts(index + 1, fps);

        // Pace against the wall clock.
        let due = clock_start + Duration::from_nanos(index * 1_000_000_000 / u64::from(fps));
        let now = Instant::now();
        let behind = now > due + frame_len;
        if due > now + lead {
            std::thread::sleep(due - lead - now);
        } else if behind {
            late_frames += 1;
        }

        // Commands from the control plane.
        let ending = loop {
            match commands.try_recv() {
                Ok(Command::Cue(cue)) => {
                    let accepted = queue.accept(&cue.id);
                    let duplicate = accepted != Accepted::New;
                    emit(&events, StageEvent::Accepted { id: cue.id.clone(), duplicate });
                    match (accepted, cue.action) {
                        (Accepted::New, CueAction::Say { text, voice, scene, cards }) => {
                            captions.accepted(&cue.id, &text, cards);
                            if let Some(scene) = scene {
                                scenes.insert(cue.id.clone(), scene);
                            }
                            let voice = voice.unwrap_or_else(|| config.avatar.voice.clone());
                            to_speak.push_back((cue.id, text, voice));
                        }
                        (Accepted::Duplicate { finished: Some(media_ts) }, _) => {
                            emit(&events, StageEvent::Finished { id: cue.id, was_stopped: false, media_ts });
                        }
                        (Accepted::Duplicate { finished: None }, _) => {}
                    }
                }
                Ok(Command::Stop { id, when }) => queue.stop(id.as_deref(), when, tick_start, &mut lifecycle),
                Ok(Command::Drill(fault)) => {
                    tracing::warn!(?fault, "fault drill");
                    match fault {
                        RenderFault::DeviceLost => renderer.simulate_device_loss(),
                        RenderFault::Panic => renderer.simulate_panic(),
                    }
                }
                Ok(Command::End { fade_frames }) if fade_frames > 0 && fading.is_none() => {
                    // Speech stops now; picture and sound fade out, then the streams close.
                    queue.stop(None, StopWhen::Now, tick_start, &mut lifecycle);
                    fading = Some((index, fade_frames));
                }
                Ok(Command::End { .. }) | Err(TryRecvError::Disconnected) => break true,
                Err(TryRecvError::Empty) => break false,
            }
        };
        if ending || fading.is_some_and(|(from, len)| index >= from + len) {
            break;
        }
        while let Ok((id, result)) = spoken_rx.try_recv() {
            speaking = speaking.saturating_sub(1);
            match result {
                Ok(u) => queue.synthesized(&id, u),
                Err(reason) => {
                    tracing::warn!(cue = %id, %reason, "speech failed");
                    queue.failed(&id);
                    scenes.remove(&id);
                    emit(&events, StageEvent::Failed { id, reason });
                }
            }
        }

        // Sentences are synthesized a few ahead of the one playing, not all at once: a neural
        // voice's CPU is then spread over the show instead of taken in one burst that the
        // frames would pay for. Cues stopped meanwhile are never synthesized.
        while speaking + queue.ready_ahead() < SPEECH_LOOKAHEAD {
            let Some(job) = to_speak.pop_front() else { break };
            if queue.is_waiting(&job.0) && speech_tx.send(job).is_ok() {
                speaking += 1;
            }
        }

        // The pose at this frame's media time.
        let mouth = queue.mouth(tick_start);
        let (head_yaw, head_pitch, head_roll) = idle::head_sway(tick_start);
        let acting = actions.pose(tick_start);
        let gaze = idle::gaze(tick_start);
        let pose = Pose {
            jaw_open: mouth.open,
            mouth_spread: mouth.wide - 0.4,
            blink: idle::blink(tick_start),
            smile: acting.smile,
            breath: idle::breath(tick_start),
            head_yaw: head_yaw + acting.head_yaw,
            // Speakers dip the head on stressed syllables and lift it on high pitch
            // (about 1° per semitone above the sentence's median).
            head_pitch: head_pitch + acting.head_pitch + 0.06 * queue.emphasis(tick_start).max(0.0)
                - PITCH_HEAD_LIFT * queue.pitch(tick_start).clamp(-4.0, 6.0),
            head_roll: head_roll + acting.head_roll,
            gaze_yaw: gaze.0,
            gaze_pitch: gaze.1,
            arm_raise: acting.arm_raise,
            arm_swing: acting.arm_swing,
            fade_out: fading.map_or(0.0, |(from, len)| (index - from + 1) as f32 / len as f32),
            media_ts: tick_start,
        };

        // This tick's audio: speech where there is some, silence elsewhere.
        let mut pcm: Vec<i16> = Vec::with_capacity((tick_end - tick_start) as usize);
        queue.fill(tick_start, (tick_end - tick_start) as usize, &mut pcm, &mut lifecycle);
        for event in lifecycle.drain(..) {
            captions.event(&event);
            match &event {
                StageEvent::Started { id, .. } => {
                    if let Some(scene) = scenes.remove(id) {
                        // A cut, as a vision mixer does.
                        renderer.set_scene(&scene);
                        current_scene = scene;
                    }
                }
                StageEvent::Finished { id, .. } => {
                    scenes.remove(id);
                }
                StageEvent::Mark { id, name, media_ts } => actions.mark(id, name, *media_ts, &mut acted),
                _ => {}
            }
            emit(&events, event);
        }
        actions.advance(tick_end, &mut acted);
        for event in acted.drain(..) {
            emit(&events, event);
        }
        let interleaved: Vec<i16> = pcm.iter().flat_map(|&s| std::iter::repeat_n(s, channels)).collect();
        let mut audio = Vec::new();
        if let Err(e) = aac.push(&interleaved, &mut audio) {
            tracing::error!(error = %e, "audio encoding failed; this tick's audio is lost");
        }

        captions.frame(tick_start, actions.card(), &mut renderer);
        let tick = Tick { index, media_ts: tick_start, with: audio };
        frames.tick(&mut renderer, tick, &pose, behind, &mut ready);
        if !send_frames(&video_tx, &mut ready) {
            tracing::error!("video thread is gone; ending the show");
            break;
        }
        if frames.renderer_lost() {
            if let Some(Rebuilt { path, first }) = rebuilding.poll(&rebuild, index, fps) {
                (encoder_name, encoder_fallback) = (path.encoder.name(), path.fallback_report());
                let mut fresh = path.renderer;
                fresh.set_scene(&current_scene);
                captions.reapply(&mut fresh);
                let slots = path.zero_copy.then(|| std::sync::Arc::new(SlotsInUse::default()));
                tracing::info!(encoder = encoder_name, zero_copy = path.zero_copy, "new renderer and encoder");
                let encoders = Encoders::new(path.encoder, slots.clone(), rebuild.settings.clone());
                let retired = std::mem::replace(&mut renderer, fresh);
                // Every frame of the lost renderer is queued already; the next ones are the new one's.
                let switch = VideoJob::Switch { encoders: Box::new(encoders), retired: Box::new(retired) };
                if video_tx.send(switch).is_err() {
                    tracing::error!("video thread is gone; ending the show");
                    break;
                }
                frames.renderer_replaced(first, slots);
            }
        }

        if index.is_multiple_of(u64::from(fps)) {
            use std::sync::atomic::Ordering::Relaxed;
            let seconds = last_report.elapsed().as_secs_f64().max(1e-3);
            last_report = Instant::now();
            let outputs = sink_stats
                .iter()
                .zip(&mut sent_at_last_report)
                .map(|((url, s), sent_before)| {
                    let bytes_sent = s.bytes_sent.load(Relaxed);
                    let bitrate_kbps = (bytes_sent.saturating_sub(*sent_before) as f64 * 8.0 / 1000.0 / seconds) as u64;
                    *sent_before = bytes_sent;
                    OutputHealth {
                        url: emcee_protocol::redact_stream_key(url),
                        state: s.state(),
                        bytes_sent,
                        connects: s.connects.load(Relaxed),
                        dropped_packets: s.dropped_packets.load(Relaxed),
                        bytes_acked: s.bytes_acked.load(Relaxed),
                        queue_ms: s.queued_ms(),
                        bitrate_kbps,
                        last_error: s.last_error().map(|e| emcee_protocol::redact_stream_key(&e)),
                    }
                })
                .collect();
            let health = Health {
                media_ts: tick_start,
                frames: index,
                late_frames,
                repeated_frames: frames.repeated,
                slate_frames: frames.slate_frames,
                encoder: encoder_name.into(),
                encoder_fallback: encoder_fallback.clone(),
                outputs,
            };
            emit(&events, StageEvent::Health(health));
        }
        index += 1;
    }

    // End of show: the frame in flight goes out; the sentence in progress is cut, audio ends
    // exactly where the video ends.
    frames.finish(&mut renderer, &mut ready);
    send_frames(&video_tx, &mut ready);
    let end_ts = frame_ts(index, fps);
    queue.end(end_ts, &mut lifecycle);
    actions.end(end_ts, &mut lifecycle);
    for event in lifecycle.drain(..) {
        emit(&events, event);
    }
    let mut audio = Vec::new();
    if let Err(e) = aac.finish(end_ts, &mut audio) {
        tracing::warn!(error = %e, "could not flush the audio encoder");
    }
    let _ = video_tx.send(VideoJob::End { audio });
    drop(video_tx);
    let _ = video.join();
    drop(speech_tx);
    tracing::info!(frames = index, late_frames, repeated_frames = frames.repeated, "show ended");
    emit(&events, StageEvent::Ended { media_ts: end_ts });
}

/// Hands the pictures that are ready to the video thread, in order; false once it is gone.
fn send_frames(video_tx: &mpsc::SyncSender<VideoJob>, ready: &mut Ready<Vec<AacFrame>>) -> bool {
    ready.drain(..).all(|(tick, picture)| {
        let job = VideoJob::Frame { index: tick.index, media_ts: tick.media_ts, picture, audio: tick.with };
        video_tx.send(job).is_ok()
    })
}

/// The video thread's encoders: the video path's own, and on the zero-copy path an openh264
/// encoder opened for the slate (a host picture) while the renderer is lost.
struct Encoders {
    main: Box<dyn VideoEncoder>,
    /// Released once a slot is encoded; present exactly on the zero-copy path, where `main`
    /// reads ring slots, not host pictures.
    slots: Option<std::sync::Arc<SlotsInUse>>,
    /// Opened for the first host picture on the zero-copy path, dropped at the next slot, so each
    /// run of slate frames starts with a keyframe.
    host: Option<OpenH264Encoder>,
    settings: EncoderSettings,
}

impl Encoders {
    fn new(main: Box<dyn VideoEncoder>, slots: Option<std::sync::Arc<SlotsInUse>>, settings: EncoderSettings) -> Self {
        Self { main, slots, host: None, settings }
    }

    fn encode(
        &mut self,
        picture: Shown,
        index: u64,
    ) -> Result<emcee_encoder::EncodedFrame, emcee_encoder::EncodeError> {
        let (width, height) = (self.settings.width, self.settings.height);
        match picture {
            Shown::Host(i420) => {
                let frame = Picture::Host(I420Frame::new(width, height, &i420)?);
                if self.slots.is_none() {
                    return self.main.encode(frame, index);
                }
                let host = match &mut self.host {
                    Some(host) => host,
                    None => self.host.insert(OpenH264Encoder::new(self.settings.clone())?),
                };
                host.encode(frame, index)
            }
            Shown::Slot { slot, written_at } => {
                self.host = None;
                let encoded = self.main.encode(Picture::Ring { slot, written_at }, index);
                if let Some(slots) = &self.slots {
                    slots.release(slot);
                }
                encoded
            }
        }
    }
}

/// Encodes frames and hands packets to the distributor in timestamp order.
fn run_video(
    mut encoders: Encoders,
    mut distributor: Distributor,
    jobs: Receiver<VideoJob>,
    rt: tokio::runtime::Handle,
) {
    let send_audio = |d: &mut Distributor, audio: Vec<AacFrame>| {
        for a in audio {
            d.send(MediaPacket::Audio { media_ts: a.media_ts, body: flv::audio_frame(&a.data) });
        }
    };
    let mut headers_sent: Option<(Vec<u8>, Vec<u8>)> = None;
    for job in jobs {
        match job {
            VideoJob::Frame { index, media_ts, picture, audio } => {
                match encoders
                    .encode(picture, index)
                    .map_err(|e| e.to_string())
                    .and_then(|e| flv::annex_b_to_avcc(&e.annex_b, e.keyframe).map_err(|e| e.to_string()))
                {
                    Ok(au) => {
                        if let (Some(sps), Some(pps)) = (&au.sps, &au.pps) {
                            // Resend the decoder configuration only when it changes.
                            if headers_sent.as_ref() != Some(&(sps.clone(), pps.clone())) {
                                match flv::avc_decoder_configuration_record(sps, pps) {
                                    Ok(record) => {
                                        distributor.set_codec_headers(Some(flv::video_sequence_header(&record)), None);
                                        headers_sent = Some((sps.clone(), pps.clone()));
                                    }
                                    Err(e) => tracing::error!(error = %e, "bad parameter sets"),
                                }
                            }
                        }
                        distributor.send(MediaPacket::Video {
                            media_ts,
                            keyframe: au.keyframe,
                            body: flv::video_frame(&au),
                        });
                    }
                    Err(e) => tracing::error!(frame = index, error = %e, "video encoding failed; frame lost"),
                }
                send_audio(&mut distributor, audio);
            }
            VideoJob::Switch { encoders: fresh, retired } => {
                encoders = *fresh;
                // Off this thread: freeing a device can take a while. Dropping a renderer that
                // panicked may panic again; the show goes on either way.
                let freed = std::thread::Builder::new().name("renderer-free".into()).spawn(move || {
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(retired))).is_err() {
                        tracing::warn!("the lost renderer panicked while being freed");
                    }
                });
                if let Err(e) = freed {
                    // The closure, and the renderer with it, was dropped here instead.
                    tracing::warn!(error = %e, "cannot start a thread to free the lost renderer; freed on the video thread");
                }
            }
            VideoJob::End { audio } => {
                send_audio(&mut distributor, audio);
                break;
            }
        }
    }
    rt.block_on(distributor.finish(Duration::from_secs(5)));
}
