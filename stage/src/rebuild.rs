//! Replacing a lost renderer: the factory that made the first one builds another (and the
//! encoder that reads it) off the media thread, warmed up by one frame, retried every couple of
//! seconds while it fails.

use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;

use emcee_nvenc::EncoderSettings;
use emcee_protocol::EncoderChoice;
use emcee_renderer::{FrameOutput, Pose, RenderError, Renderer};

use crate::frames::Shown;
use crate::video_path::{self, VideoPath};

/// Builds a renderer for a frame output (the same device, model and size every time).
pub type RendererFactory = Arc<dyn Fn(FrameOutput) -> Result<Renderer, RenderError> + Send + Sync>;

/// What a lost renderer is rebuilt from: the same device, model and size, and the same encoder
/// choice — so a zero-copy show goes back to zero-copy, or falls back to the host path (with its
/// reason) when the GPU that held the ring will not come back.
pub struct Rebuilder {
    pub factory: RendererFactory,
    pub choice: EncoderChoice,
    pub settings: EncoderSettings,
}

/// A rebuilt video path, warmed up: its renderer has drawn one frame (`first`).
pub struct Rebuilt {
    pub path: VideoPath,
    pub first: Shown,
}

/// Building a replacement renderer and encoder off the media thread (it takes a second or more),
/// retried every couple of seconds while it fails.
#[derive(Default)]
pub struct Rebuild {
    pending: Option<Receiver<Result<Rebuilt, String>>>,
    not_before_tick: u64,
}

impl Rebuild {
    /// The new video path once it is built; starts a build when none is under way.
    pub fn poll(&mut self, from: &Rebuilder, tick: u64, fps: u32) -> Option<Rebuilt> {
        let Some(pending) = &self.pending else {
            if tick >= self.not_before_tick {
                self.start(from);
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

    /// Starts a build on a thread of its own.
    fn start(&mut self, from: &Rebuilder) {
        let (tx, rx) = mpsc::channel();
        let (factory, choice, settings) = (from.factory.clone(), from.choice, from.settings.clone());
        let started = std::thread::Builder::new().name("renderer-rebuild".into()).spawn(move || {
            let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| build(&factory, choice, settings)));
            let _ = tx.send(built.unwrap_or_else(|_| Err("the rebuild panicked".into())));
        });
        match started {
            Ok(_) => self.pending = Some(rx),
            Err(e) => tracing::error!(error = %e, "cannot start the renderer rebuild"),
        }
        tracing::info!("rebuilding the renderer");
    }
}

/// Opens a video path and draws its first frame.
fn build(factory: &RendererFactory, choice: EncoderChoice, settings: EncoderSettings) -> Result<Rebuilt, String> {
    let mut path = video_path::open(choice, settings, |output| Ok(factory(output)?)).map_err(|e| e.to_string())?;
    // Its first frame compiles shaders (a second on a software driver): here, not on the media
    // thread's clock.
    let bytes = path.renderer.render(&Pose::default()).map_err(|e| e.to_string())?.to_vec();
    let first = first_shown(path.zero_copy, &path.renderer, bytes);
    Ok(Rebuilt { path, first })
}

/// What a renderer that just drew its first frame shows: its ring slot on the zero-copy path,
/// else the bytes read back.
pub fn first_shown(zero_copy: bool, renderer: &Renderer, bytes: Vec<u8>) -> Shown {
    match (zero_copy, renderer.last_slot()) {
        (true, Some(slot)) => Shown::Slot { slot, written_at: None },
        _ => Shown::Host(bytes),
    }
}
