//! The media pipeline: the stage's clock and everything that runs on it.
//!
//! Threads, in data-flow order:
//! - **speech** ([`crate::speech_thread`]): synthesizes `say` cues in arrival order (Piper
//!   voices on ONNX Runtime, or espeak-ng in its child process; cached on disk);
//! - **media** ([`crate::media_loop`], the clock): for every frame tick it takes the tick's 1/fps
//!   of audio (speech or silence), evaluates the pose at the frame's media time
//!   ([`crate::pose`]), submits the frame to the GPU and reads back the one before it
//!   ([`crate::frames`]), and encodes the audio;
//! - **video** ([`crate::video_thread`]): encodes the frame (NVENC reading the GPU ring slot, or
//!   openh264 from host I420; see [`crate::video_path`]) and hands the encoded units and audio,
//!   in timestamp order, to the [`Muxer`], which fans FLV packets out to the RTMP tasks on the
//!   tokio runtime;
//! - **renderer-rebuild** and **renderer-free** ([`crate::rebuild`], [`crate::video_thread`]):
//!   a lost renderer is replaced off the clock, and freed after the encoder that imported it.
//!
//! The clock is the 48 kHz audio sample counter; frame `n` is at `n·48000/fps`. Every tick
//! leaves with a frame and exact timestamps; a tick that starts more than a frame late shows the
//! previous picture again (counted) so that the stream keeps real time.

use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use emcee_protocol::{StageConfig, StageEvent};
use emcee_renderer::model::Model;
use emcee_renderer::Renderer;
use emcee_speech::espeak::default_bridge_path;
use emcee_speech::{Speaker, SpeechSettings};
use emcee_stream::aac::AacEncoder;
use emcee_stream::mux::{Muxer, StreamDescription};
use emcee_stream::record::RecorderConfig;
use emcee_stream::rtmp::Output;

use crate::captions::Captions;
use crate::error::PipelineError;
use crate::frames::Frames;
use crate::health::HealthReporter;
use crate::liveness::Liveness;
pub use crate::media_loop::{Command, RenderFault};
use crate::media_loop::{MediaLoop, Parts, LEAD_FRAMES};
use crate::rebuild::{warm_up, Rebuild, RendererFactory, WarmedUp};
use crate::speech_thread::{run_speech, SpeechJob};
use crate::video_path;
use crate::video_thread::{run_video, Encoders, VideoJob};

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
        liveness: Arc<Liveness>,
    ) -> Result<Self, PipelineError> {
        let v = &config.video;
        let factory = renderer_factory(&config)?;
        let settings = video_path::encoder_settings(&config);
        let path = video_path::open(v.encoder, settings.clone(), |output| Ok(factory(output)?))?;
        let encoder_fallback = path.fallback_report();
        let (mut renderer, encoder) = (path.renderer, path.encoder);
        renderer.set_scene(&config.avatar.scene);
        let WarmedUp { first, slots } = warm_up(&mut renderer, path.zero_copy)?;
        // Fonts load here, before the clock starts.
        let captions = Captions::new(&config);
        // Made now, on the CPU: when it is needed the GPU may be what failed.
        let slate = {
            let a = &config.avatar;
            crate::slate::slate_i420(v.width, v.height, a.scene.background_rgb, a.slate.as_deref(), a.label.as_deref())
        };
        tracing::info!(
            device = renderer.device_name(),
            software = renderer.is_software(),
            encoder = encoder.name(),
            "renderer ready"
        );
        let aac = AacEncoder::new(config.audio.bitrate_kbps * 1000, config.audio.channels)?;
        let muxer = open_outputs(&config, &aac, &rt)?;
        let speaker = prepare_speaker(&config);

        // Every thread starts here, so a failure is reported instead of a half-running stage.
        let encoder_name = encoder.name();
        let health = HealthReporter::new(muxer.stats());
        let (speech_tx, speech_rx) = mpsc::channel::<SpeechJob>();
        let (spoken_tx, spoken_rx) = mpsc::channel();
        spawn("speech", move || run_speech(speaker, speech_rx, spoken_tx))?;
        let (video_tx, video_rx) = mpsc::sync_channel::<VideoJob>(LEAD_FRAMES as usize + 1);
        let encoders = Encoders::new(encoder, slots.clone(), settings.clone());
        let video_rt = rt.clone();
        let video = spawn("video", move || run_video(encoders, muxer, video_rx, video_rt))?;
        let (commands, command_rx) = mpsc::channel();
        let media_config = config.clone();
        let rebuild = Rebuild::new(factory, v.encoder, settings);
        let media = spawn("media", move || {
            let frames = Frames::new(first, slots, Some(slate));
            let parts = Parts {
                renderer,
                rebuild,
                frames,
                captions,
                aac,
                encoder_name,
                encoder_fallback,
                health,
                speech_tx,
                spoken_rx,
                video_tx,
                video,
                liveness,
            };
            MediaLoop::new(media_config, parts, command_rx, events).run();
        })?;
        Ok(Self { commands, config, media: Some(media) })
    }

    /// Waits for the media thread to finish after [`Command::End`].
    pub fn join(&mut self) {
        if let Some(h) = self.media.take() {
            let _ = h.join();
        }
    }
}

/// The factory for this show's renderer (the configured avatar, or the built-in one), shared
/// with the media thread, which builds a new renderer when the first one is lost. The avatar
/// file is read and checked here, once.
fn renderer_factory(config: &StageConfig) -> Result<RendererFactory, PipelineError> {
    let background = config.avatar.scene.background_rgb;
    let (width, height) = (config.video.width, config.video.height);
    let model = match &config.avatar.model {
        None => None,
        Some(path) => {
            let failed = |reason: String| PipelineError::Avatar { path: path.display().to_string(), reason };
            let bytes = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
            let model = Model::from_glb(&bytes).map_err(|e| failed(e.to_string()))?;
            tracing::info!(avatar = %path.display(), vertices = model.vertices.len(), targets = model.targets.len(), "avatar loaded");
            Some(model)
        }
    };
    Ok(Arc::new(move |output| match &model {
        None => Renderer::builtin_with_output(width, height, background, output),
        Some(model) => Renderer::with_output(width, height, background, model.clone(), output),
    }))
}

/// Starts the outputs (and the recorder) behind the muxer.
fn open_outputs(config: &StageConfig, aac: &AacEncoder, rt: &tokio::runtime::Handle) -> Result<Muxer, PipelineError> {
    let v = &config.video;
    let description = StreamDescription {
        width: v.width,
        height: v.height,
        fps: v.fps,
        video_kbps: v.bitrate_kbps,
        audio_kbps: config.audio.bitrate_kbps,
        audio_channels: config.audio.channels,
    };
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
    let mut muxer = Muxer::start(&outputs, description, &aac.audio_specific_config(), rt)?;
    if let Some(r) = &config.recorder {
        let recorder = RecorderConfig {
            dir: r.dir.clone(),
            segment: Duration::from_secs(r.segment_s),
            max_bytes: r.max_mb * 1024 * 1024,
        };
        muxer.add_recorder(recorder, rt);
    }
    Ok(muxer)
}

/// The show's voice loads before the clock starts (a neural voice takes a second or two of
/// CPU, which the first frames would otherwise lose). A voice that cannot load only fails the
/// cues that use it.
fn prepare_speaker(config: &StageConfig) -> Speaker {
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
    speaker
}

/// Starts a named thread.
fn spawn(name: &str, run: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, PipelineError> {
    std::thread::Builder::new().name(name.into()).spawn(run).map_err(PipelineError::Thread)
}
