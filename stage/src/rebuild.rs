//! Replacing a lost renderer: the factory that made the first one builds another (and the
//! encoder that reads it) off the media thread, warmed up by one frame, retried every couple of
//! seconds while it fails. The first renderer is warmed up the same way ([`warm_up`]).

use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;

use emcee_nvenc::EncoderSettings;
use emcee_protocol::EncoderChoice;
use emcee_renderer::{FrameOutput, Pose, RenderError, Renderer};

use crate::frames::{Shown, SlotsInUse};
use crate::video_path::{self, VideoPath};

/// Builds a renderer for a frame output (the same device, model and size every time).
pub type RendererFactory = Arc<dyn Fn(FrameOutput) -> Result<Renderer, RenderError> + Send + Sync>;

/// A renderer's first frame, drawn before the clock needs it: a software driver compiles its
/// shader variants on first use, and that second would otherwise put frames behind the clock.
pub struct WarmedUp {
    /// What it shows first: its ring slot on the zero-copy path, else the bytes read back.
    pub first: Shown,
    /// The ring slots the video thread hands back, exactly when `first` is a slot.
    pub slots: Option<Arc<SlotsInUse>>,
}

/// Draws `renderer`'s first frame (in its current scene).
pub fn warm_up(renderer: &mut Renderer, zero_copy: bool) -> Result<WarmedUp, RenderError> {
    let bytes = renderer.render(&Pose::default())?.to_vec();
    let first = match (zero_copy, renderer.last_slot()) {
        (true, Some(slot)) => Shown::Slot { slot, written_at: None },
        _ => Shown::Host(bytes),
    };
    let slots = matches!(first, Shown::Slot { .. }).then(|| Arc::new(SlotsInUse::default()));
    Ok(WarmedUp { first, slots })
}

/// A rebuilt video path, warmed up.
pub struct Rebuilt {
    pub path: VideoPath,
    pub warmed: WarmedUp,
}

/// What a lost renderer is rebuilt from — the same device, model and size, and the same encoder
/// choice, so a zero-copy show goes back to zero-copy, or falls back to the host path (with its
/// reason) when the GPU that held the ring will not come back — and the build under way.
pub struct Rebuild {
    factory: RendererFactory,
    choice: EncoderChoice,
    pub settings: EncoderSettings,
    pending: Option<Receiver<Result<Rebuilt, String>>>,
    not_before_tick: u64,
}

impl Rebuild {
    pub fn new(factory: RendererFactory, choice: EncoderChoice, settings: EncoderSettings) -> Self {
        Self { factory, choice, settings, pending: None, not_before_tick: 0 }
    }

    /// The new video path once it is built; starts a build when none is under way.
    pub fn poll(&mut self, tick: u64, fps: u32) -> Option<Rebuilt> {
        let Some(pending) = &self.pending else {
            if tick >= self.not_before_tick {
                self.start();
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
    fn start(&mut self) {
        let (tx, rx) = mpsc::channel();
        let (factory, choice, settings) = (self.factory.clone(), self.choice, self.settings.clone());
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

/// Opens a video path and warms it up — here, not on the media thread's clock.
fn build(factory: &RendererFactory, choice: EncoderChoice, settings: EncoderSettings) -> Result<Rebuilt, String> {
    let mut path = video_path::open(choice, settings, |output| Ok(factory(output)?)).map_err(|e| e.to_string())?;
    let warmed = warm_up(&mut path.renderer, path.zero_copy).map_err(|e| e.to_string())?;
    Ok(Rebuilt { path, warmed })
}
