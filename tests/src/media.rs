//! Real media for the output tests: H.264 (openh264, 320×180@30, GOP 2 s) and AAC published in
//! real time into the muxer from its own thread, as the stage's video thread does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;
use emcee_nvenc::{EncoderSettings, I420Frame, OpenH264Encoder, Picture, VideoEncoder};
use emcee_stream::aac::AacEncoder;
use emcee_stream::mux::{Muxer, StreamDescription};
use emcee_stream::record::RecorderConfig;
use emcee_stream::rtmp::Output;
use emcee_stream::stats::SinkStats;

const W: u32 = 320;
const H: u32 = 180;
const FPS: u64 = 30;
const SAMPLES_PER_FRAME: u64 = 48_000 / FPS;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio")
}

const DESCRIPTION: StreamDescription =
    StreamDescription { width: W, height: H, fps: FPS as u32, video_kbps: 400, audio_kbps: 128, audio_channels: 2 };

/// Real-time media into the muxer, from its own thread (as the stage's video thread does).
pub struct Feed {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<Muxer>>,
}

impl Feed {
    pub fn start(urls: &[String], rt: &tokio::runtime::Runtime) -> Result<(Self, Vec<Arc<SinkStats>>)> {
        Self::start_outputs(&urls.iter().map(Output::new).collect::<Vec<_>>(), rt)
    }

    pub fn start_outputs(outputs: &[Output], rt: &tokio::runtime::Runtime) -> Result<(Self, Vec<Arc<SinkStats>>)> {
        Self::start_with(outputs, None, rt)
    }

    /// With the recorder as one more destination (its stats come last).
    pub fn start_with(
        outputs: &[Output],
        recorder: Option<RecorderConfig>,
        rt: &tokio::runtime::Runtime,
    ) -> Result<(Self, Vec<Arc<SinkStats>>)> {
        let aac = AacEncoder::new(128_000, 2)?;
        let mut muxer = {
            let _guard = rt.enter();
            Muxer::start(outputs, DESCRIPTION, &aac.audio_specific_config(), rt.handle())?
        };
        if let Some(recorder) = recorder {
            muxer.add_recorder(recorder, rt.handle());
        }
        let stats = muxer.stats().into_iter().map(|(_, s)| s).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || feed(muxer, aac, &stopping));
        Ok((Self { stop, thread }, stats))
    }

    /// Stops feeding and closes every stream.
    pub fn finish(self, rt: &tokio::runtime::Runtime) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let muxer = self.thread.join().map_err(|_| anyhow::anyhow!("feed thread panicked"))??;
        rt.block_on(muxer.finish(Duration::from_secs(5)));
        Ok(())
    }
}

fn feed(mut muxer: Muxer, mut aac: AacEncoder, stop: &AtomicBool) -> Result<Muxer> {
    let settings =
        EncoderSettings { width: W, height: H, fps: FPS as u32, bitrate_bps: 400_000, keyframe_interval: 60 };
    let mut encoder = OpenH264Encoder::new(settings)?;
    let mut i420 = vec![128u8; I420Frame::byte_len(W, H)];
    let start = Instant::now();
    let mut audio = Vec::new();
    for i in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let due = start + Duration::from_micros(i * 1_000_000 / FPS);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        // A bar sweeping across a gradient, over fresh noise in the lower half: every frame
        // differs, and the video takes the bitrate it is given (as a real picture does), so that
        // a link too slow for the stream is too slow for its video, not only for its audio.
        for (p, b) in i420.iter_mut().take((W * H) as usize).enumerate() {
            let (x, y, w) = (p as u64 % u64::from(W), p as u64 / u64::from(W), u64::from(W));
            *b = if (x + i * 4) % w < 16 {
                235
            } else if y >= u64::from(H) / 2 {
                let hash = (p as u64 ^ (i << 20)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56;
                16 + (hash % 200) as u8
            } else {
                (16 + x * 200 / w) as u8
            };
        }
        let encoded = encoder.encode(Picture::Host(I420Frame::new(W, H, &i420)?), i)?;
        let media_ts = i * SAMPLES_PER_FRAME;
        muxer.video(media_ts, &encoded.annex_b, encoded.keyframe)?;
        let tone: Vec<i16> =
            (0..SAMPLES_PER_FRAME * 2).map(|k| ((((media_ts + k / 2) as f32) * 0.06).sin() * 4000.0) as i16).collect();
        aac.push(&tone, &mut audio)?;
        muxer.audio(audio.drain(..));
    }
    Ok(muxer)
}
