//! The media thread's loop: the clock. Each tick runs the same phases in order —
//! [`pace`](MediaLoop::pace) against the wall clock, [`commands`](MediaLoop::commands) from the
//! control plane, [`speech`](MediaLoop::speech) in and out of the speech thread,
//! [`pose`](MediaLoop::pose) at the frame's media time, [`audio`](MediaLoop::audio) (speech or
//! silence, lifecycle events, AAC), [`render`](MediaLoop::render) (and hand the frame to the
//! video thread; rebuild a lost renderer), [`health`](MediaLoop::health) once a second — and
//! [`finish`](MediaLoop::finish) ends the show with audio and video ending together.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use emcee_protocol::{media_ts_of_frame, Cue, CueAction, EncoderFallback, Scene, StageConfig, StageEvent, StopWhen};
use emcee_renderer::{Pose, Renderer};
use emcee_stream::aac::{AacEncoder, AacFrame};

use crate::actions::Actions;
use crate::captions::Captions;
use crate::frames::{Frames, Ready, Tick};
use crate::health::{FrameCounts, HealthReporter};
use crate::liveness::Liveness;
use crate::pose::{pose_at, SpeechMotion};
use crate::rebuild::{Rebuild, Rebuilt};
use crate::speech_queue::{Accepted, SpeechQueue};
use crate::speech_thread::{SpeechJob, Spoken};
use crate::video_thread::{send_frames, Encoders, VideoJob};

/// How far the media clock may run ahead of the wall clock, in frames: enough to absorb jitter,
/// small enough to keep latency low.
pub const LEAD_FRAMES: u64 = 2;

/// Set in the stage's environment, the media clock runs as fast as the machine can go instead of
/// with the wall clock: for the soak bench, which plays a day of show in hours. Only the
/// service's own environment can set it; the show and its timestamps are the same either way.
pub const UNPACED_ENV: &str = "EMCEE_BENCH_UNPACED";

/// Sentences synthesized (or being synthesized) ahead of the one playing.
const SPEECH_LOOKAHEAD: usize = 2;

/// What the media loop is told: cues, stops, the end of the show, fault drills.
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

/// What the media thread is handed when the pipeline starts: the renderer and audio encoder it
/// owns, and the channels to the other threads.
pub struct Parts {
    pub renderer: Renderer,
    /// Builds a replacement renderer and encoder when the renderer is lost.
    pub rebuild: Rebuild,
    pub frames: Frames<Vec<AacFrame>>,
    pub captions: Captions,
    pub aac: AacEncoder,
    pub encoder_name: &'static str,
    pub encoder_fallback: Option<EncoderFallback>,
    pub health: HealthReporter,
    pub speech_tx: Sender<SpeechJob>,
    pub spoken_rx: Receiver<Spoken>,
    pub video_tx: SyncSender<VideoJob>,
    /// The video thread, joined once the last job is sent.
    pub video: JoinHandle<()>,
    /// Told of every tick, for the watchdog.
    pub liveness: Arc<Liveness>,
}

/// The clock and everything it drives; one [`MediaLoop::run`] per show.
pub struct MediaLoop {
    config: StageConfig,
    parts: Parts,
    commands: Receiver<Command>,
    events: tokio::sync::mpsc::Sender<StageEvent>,
    queue: SpeechQueue,
    /// Lifecycle events of this tick, emitted once applied.
    lifecycle: Vec<StageEvent>,
    /// Scenes of accepted cues, shown when their cue starts.
    scenes: HashMap<String, Scene>,
    /// What a rebuilt renderer must show.
    current_scene: Scene,
    actions: Actions,
    acted: Vec<StageEvent>,
    late_frames: u64,
    /// `say` cues waiting to be sent to the speech thread, and how many it has in hand.
    to_speak: VecDeque<SpeechJob>,
    speaking: usize,
    ready: Ready<Vec<AacFrame>>,
    clock_start: Instant,
    /// False only in the soak bench ([`UNPACED_ENV`]).
    paced: bool,
    /// (first frame, length) of the end-of-show fade, once asked for.
    fading: Option<(u64, u64)>,
    index: u64,
}

impl MediaLoop {
    pub fn new(
        config: StageConfig,
        parts: Parts,
        commands: Receiver<Command>,
        events: tokio::sync::mpsc::Sender<StageEvent>,
    ) -> Self {
        Self {
            current_scene: config.avatar.scene,
            config,
            parts,
            commands,
            events,
            queue: SpeechQueue::default(),
            lifecycle: Vec::new(),
            scenes: HashMap::new(),
            actions: Actions::default(),
            acted: Vec::new(),
            late_frames: 0,
            to_speak: VecDeque::new(),
            speaking: 0,
            ready: Vec::new(),
            clock_start: Instant::now(),
            paced: std::env::var_os(UNPACED_ENV).is_none(),
            fading: None,
            index: 0,
        }
    }

    /// Runs the show until it ends, then closes it.
    pub fn run(mut self) {
        self.parts.liveness.clock_started();
        loop {
            let behind = self.pace();
            if self.commands() {
                break;
            }
            self.speech();
            let pose = self.pose();
            let audio = self.audio();
            if !self.render(audio, &pose, behind) {
                break;
            }
            self.health();
            self.parts.liveness.ticked();
            self.index += 1;
        }
        self.finish();
    }

    fn fps(&self) -> u32 {
        self.config.video.fps
    }

    fn tick_start(&self) -> u64 {
        media_ts_of_frame(self.index, self.fps())
    }

    /// Sleeps until the tick is due (at most [`LEAD_FRAMES`] early); true when it starts more
    /// than a frame late.
    fn pace(&mut self) -> bool {
        if !self.paced {
            return false;
        }
        let fps = u64::from(self.fps());
        let frame_len = Duration::from_nanos(1_000_000_000 / fps);
        let lead = frame_len * LEAD_FRAMES as u32;
        let due = self.clock_start + Duration::from_nanos(self.index * 1_000_000_000 / fps);
        let now = Instant::now();
        let behind = now > due + frame_len;
        if due > now + lead {
            std::thread::sleep(due - lead - now);
        } else if behind {
            self.late_frames += 1;
        }
        behind
    }

    /// Applies every command waiting; true when the show ends now.
    fn commands(&mut self) -> bool {
        let tick_start = self.tick_start();
        let ending = loop {
            match self.commands.try_recv() {
                Ok(Command::Cue(cue)) => self.cue(cue),
                Ok(Command::Stop { id, when }) => self.queue.stop(id.as_deref(), when, tick_start, &mut self.lifecycle),
                Ok(Command::Drill(fault)) => {
                    tracing::warn!(?fault, "fault drill");
                    match fault {
                        RenderFault::DeviceLost => self.parts.renderer.simulate_device_loss(),
                        RenderFault::Panic => self.parts.renderer.simulate_panic(),
                    }
                }
                Ok(Command::End { fade_frames }) if fade_frames > 0 && self.fading.is_none() => {
                    // Speech stops now; picture and sound fade out, then the streams close.
                    self.queue.stop(None, StopWhen::Now, tick_start, &mut self.lifecycle);
                    self.fading = Some((self.index, fade_frames));
                }
                Ok(Command::End { .. }) | Err(TryRecvError::Disconnected) => break true,
                Err(TryRecvError::Empty) => break false,
            }
        };
        ending || self.fading.is_some_and(|(from, len)| self.index >= from + len)
    }

    /// A new cue: acknowledged at once; a `say` waits for the speech thread.
    fn cue(&mut self, cue: Cue) {
        let accepted = self.queue.accept(&cue.id);
        let duplicate = accepted != Accepted::New;
        emit(&self.events, StageEvent::Accepted { id: cue.id.clone(), duplicate });
        match (accepted, cue.action) {
            (Accepted::New, CueAction::Say { text, voice, scene, cards }) => {
                self.parts.captions.accepted(&cue.id, &text, cards);
                if let Some(scene) = scene {
                    self.scenes.insert(cue.id.clone(), scene);
                }
                let voice = voice.unwrap_or_else(|| self.config.avatar.voice.clone());
                self.to_speak.push_back((cue.id, text, voice));
            }
            (Accepted::Duplicate { finished: Some(media_ts) }, _) => {
                emit(&self.events, StageEvent::Finished { id: cue.id, was_stopped: false, media_ts });
            }
            (Accepted::Duplicate { finished: None }, _) => {}
        }
    }

    /// Takes what the speech thread finished and hands it the next sentences.
    fn speech(&mut self) {
        while let Ok((id, result)) = self.parts.spoken_rx.try_recv() {
            self.speaking = self.speaking.saturating_sub(1);
            match result {
                Ok(u) => self.queue.synthesized(&id, u),
                Err(reason) => {
                    tracing::warn!(cue = %id, %reason, "speech failed");
                    self.queue.failed(&id);
                    self.scenes.remove(&id);
                    emit(&self.events, StageEvent::Failed { id, reason });
                }
            }
        }
        // Sentences are synthesized a few ahead of the one playing, not all at once: a neural
        // voice's CPU is then spread over the show instead of taken in one burst that the
        // frames would pay for. Cues stopped meanwhile are never synthesized.
        while self.speaking + self.queue.ready_ahead() < SPEECH_LOOKAHEAD {
            let Some(job) = self.to_speak.pop_front() else { break };
            if self.queue.is_waiting(&job.0) && self.parts.speech_tx.send(job).is_ok() {
                self.speaking += 1;
            }
        }
    }

    /// The pose at this frame's media time.
    fn pose(&self) -> Pose {
        let t = self.tick_start();
        let speech =
            SpeechMotion { mouth: self.queue.mouth(t), emphasis: self.queue.emphasis(t), pitch: self.queue.pitch(t) };
        let fade_out = self.fading.map_or(0.0, |(from, len)| (self.index - from + 1) as f32 / len as f32);
        pose_at(t, speech, self.actions.pose(t), fade_out)
    }

    /// This tick's audio (speech where there is some, silence elsewhere) encoded as AAC; the
    /// lifecycle and action events it brings are applied and emitted.
    fn audio(&mut self) -> Vec<AacFrame> {
        let (tick_start, tick_end) = (self.tick_start(), media_ts_of_frame(self.index + 1, self.fps()));
        let mut pcm: Vec<i16> = Vec::with_capacity((tick_end - tick_start) as usize);
        self.queue.fill(tick_start, (tick_end - tick_start) as usize, &mut pcm, &mut self.lifecycle);
        for event in self.lifecycle.drain(..) {
            self.parts.captions.event(&event);
            match &event {
                StageEvent::Started { id, .. } => {
                    if let Some(scene) = self.scenes.remove(id) {
                        // A cut, as a vision mixer does.
                        self.parts.renderer.set_scene(&scene);
                        self.current_scene = scene;
                    }
                }
                StageEvent::Finished { id, .. } => {
                    self.scenes.remove(id);
                }
                StageEvent::Mark { id, name, media_ts, .. } => self.actions.mark(id, name, *media_ts, &mut self.acted),
                _ => {}
            }
            emit(&self.events, event);
        }
        self.actions.advance(tick_end, &mut self.acted);
        for event in self.acted.drain(..) {
            emit(&self.events, event);
        }
        let channels = usize::from(self.config.audio.channels);
        let interleaved: Vec<i16> = pcm.iter().flat_map(|&s| std::iter::repeat_n(s, channels)).collect();
        let mut audio = Vec::new();
        if let Err(e) = self.parts.aac.push(&interleaved, &mut audio) {
            tracing::error!(error = %e, "audio encoding failed; this tick's audio is lost");
        }
        audio
    }

    /// Draws the frame (or repeats one, or shows the slate) and hands what is ready to the video
    /// thread; rebuilds a lost renderer. False once the video thread is gone.
    fn render(&mut self, audio: Vec<AacFrame>, pose: &Pose, behind: bool) -> bool {
        let tick_start = self.tick_start();
        let parts = &mut self.parts;
        parts.captions.frame(tick_start, self.actions.card(), &mut parts.renderer);
        let tick = Tick { index: self.index, media_ts: tick_start, with: audio };
        parts.frames.tick(&mut parts.renderer, tick, pose, behind, &mut self.ready);
        if !send_frames(&parts.video_tx, &mut self.ready) {
            tracing::error!("video thread is gone; ending the show");
            return false;
        }
        if parts.frames.renderer_lost() {
            let fps = self.config.video.fps;
            if let Some(rebuilt) = parts.rebuild.poll(self.index, fps) {
                return self.switch_renderer(rebuilt);
            }
        }
        true
    }

    /// Puts a rebuilt renderer in place and sends its encoders to the video thread. False once
    /// the video thread is gone.
    fn switch_renderer(&mut self, Rebuilt { path, warmed }: Rebuilt) -> bool {
        let parts = &mut self.parts;
        (parts.encoder_name, parts.encoder_fallback) = (path.encoder.name(), path.fallback_report());
        let mut fresh = path.renderer;
        fresh.set_scene(&self.current_scene);
        parts.captions.reapply(&mut fresh);
        tracing::info!(encoder = parts.encoder_name, zero_copy = path.zero_copy, "new renderer and encoder");
        let encoders = Encoders::new(path.encoder, warmed.slots.clone(), parts.rebuild.settings.clone());
        let retired = std::mem::replace(&mut parts.renderer, fresh);
        // Every frame of the lost renderer is queued already; the next ones are the new one's.
        let switch = VideoJob::Switch { encoders: Box::new(encoders), retired: Box::new(retired) };
        if parts.video_tx.send(switch).is_err() {
            tracing::error!("video thread is gone; ending the show");
            return false;
        }
        parts.frames.renderer_replaced(warmed.first, warmed.slots);
        true
    }

    /// Once a second: the health report.
    fn health(&mut self) {
        if !self.index.is_multiple_of(u64::from(self.fps())) {
            return;
        }
        let media_ts = self.tick_start();
        let tick_end = media_ts_of_frame(self.index + 1, self.fps());
        let parts = &mut self.parts;
        let counts = FrameCounts {
            media_ts,
            frames: self.index,
            late: self.late_frames,
            repeated: parts.frames.repeated,
            slate: parts.frames.slate_frames,
            // This tick's audio is in the encoder already: both clocks stand at the tick's end.
            av_drift_samples: parts.aac.samples_in() as i64 - tick_end as i64,
        };
        let health = parts.health.report(counts, parts.encoder_name, parts.encoder_fallback.clone());
        emit(&self.events, StageEvent::Health(health));
    }

    /// End of show: the frame in flight goes out; the sentence in progress is cut, audio ends
    /// exactly where the video ends; the video thread closes the outputs.
    fn finish(mut self) {
        // Closing the streams is bounded by the outputs' own timeouts, not by the watchdog.
        self.parts.liveness.clock_stopped();
        let end_ts = self.tick_start();
        let parts = &mut self.parts;
        parts.frames.finish(&mut parts.renderer, &mut self.ready);
        send_frames(&parts.video_tx, &mut self.ready);
        self.queue.end(end_ts, &mut self.lifecycle);
        self.actions.end(end_ts, &mut self.lifecycle);
        for event in self.lifecycle.drain(..) {
            emit(&self.events, event);
        }
        let mut audio = Vec::new();
        if let Err(e) = parts.aac.finish(end_ts, &mut audio) {
            tracing::warn!(error = %e, "could not flush the audio encoder");
        }
        let Parts { video_tx, video, speech_tx, frames, .. } = self.parts;
        let _ = video_tx.send(VideoJob::End { audio });
        drop(video_tx);
        let _ = video.join();
        drop(speech_tx);
        tracing::info!(
            frames = self.index,
            late_frames = self.late_frames,
            repeated_frames = frames.repeated,
            "show ended"
        );
        emit(&self.events, StageEvent::Ended { media_ts: end_ts });
    }
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
