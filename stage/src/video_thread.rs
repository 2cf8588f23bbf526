//! The video thread: encodes each frame the media thread hands over (NVENC on a ring slot, or
//! openh264 on host I420) and gives the encoded units and the tick's audio, in timestamp order,
//! to the [`Muxer`], which packages them for every destination.

use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use emcee_nvenc::{EncodeError, EncodedFrame, EncoderSettings, I420Frame, OpenH264Encoder, Picture, VideoEncoder};
use emcee_renderer::Renderer;
use emcee_stream::aac::AacFrame;
use emcee_stream::mux::Muxer;

use crate::frames::{Ready, Shown, SlotsInUse};

/// How long the outputs get to send what is queued and close, once the show has ended.
const OUTPUTS_CLOSE_WITHIN: Duration = Duration::from_secs(5);

pub enum VideoJob {
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

/// Hands the pictures that are ready to the video thread, in order; false once it is gone.
pub fn send_frames(video_tx: &SyncSender<VideoJob>, ready: &mut Ready<Vec<AacFrame>>) -> bool {
    ready.drain(..).all(|(tick, picture)| {
        let job = VideoJob::Frame { index: tick.index, media_ts: tick.media_ts, picture, audio: tick.with };
        video_tx.send(job).is_ok()
    })
}

/// The video thread's encoders: the video path's own, and on the zero-copy path an openh264
/// encoder opened for the slate (a host picture) while the renderer is lost.
pub struct Encoders {
    main: Box<dyn VideoEncoder>,
    /// Released once a slot is encoded; present exactly on the zero-copy path, where `main`
    /// reads ring slots, not host pictures.
    slots: Option<Arc<SlotsInUse>>,
    /// Opened for the first host picture on the zero-copy path, dropped at the next slot, so each
    /// run of slate frames starts with a keyframe.
    host: Option<OpenH264Encoder>,
    settings: EncoderSettings,
}

impl Encoders {
    pub fn new(main: Box<dyn VideoEncoder>, slots: Option<Arc<SlotsInUse>>, settings: EncoderSettings) -> Self {
        Self { main, slots, host: None, settings }
    }

    fn encode(&mut self, picture: Shown, index: u64) -> Result<EncodedFrame, EncodeError> {
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

/// Encodes frames and hands the units to the muxer until the show ends, then closes the outputs.
pub fn run_video(mut encoders: Encoders, mut muxer: Muxer, jobs: Receiver<VideoJob>, rt: tokio::runtime::Handle) {
    for job in jobs {
        match job {
            VideoJob::Frame { index, media_ts, picture, audio } => {
                let sent = encoders
                    .encode(picture, index)
                    .map_err(|e| e.to_string())
                    .and_then(|e| muxer.video(media_ts, &e.annex_b, e.keyframe).map_err(|e| e.to_string()));
                if let Err(e) = sent {
                    tracing::error!(frame = index, error = %e, "video encoding failed; frame lost");
                }
                muxer.audio(audio);
            }
            VideoJob::Switch { encoders: fresh, retired } => {
                encoders = *fresh;
                free_off_thread(*retired);
            }
            VideoJob::End { audio } => {
                muxer.audio(audio);
                break;
            }
        }
    }
    rt.block_on(muxer.finish(OUTPUTS_CLOSE_WITHIN));
}

/// Frees a lost renderer on a thread of its own: freeing a device can take a while. Dropping a
/// renderer that panicked may panic again; the show goes on either way.
fn free_off_thread(retired: Renderer) {
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
