//! The recorder: the show as FLV files on local disk, beside the network outputs and fed the
//! same packets. A file starts on a keyframe with the codec headers, so each plays on its own;
//! a new one starts at the first keyframe after `segment` of media, and the oldest files go
//! when the directory would exceed `max_bytes`.
//!
//! It runs on a blocking thread of the runtime: disk writes never stall the encoder, and a full
//! or failing disk costs only the recording (the error is reported like an output's).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::packet::{media_to_ms, MediaPacket, SinkItem, StreamHeaders};
use crate::stats::SinkStats;

const TAG_AUDIO: u8 = 8;
const TAG_VIDEO: u8 = 9;
const PREFIX: &str = "emcee-";

/// Where and how much to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderConfig {
    pub dir: PathBuf,
    /// Media per file (the file ends at the first keyframe after this).
    pub segment: Duration,
    /// The directory's recordings never exceed this (the oldest files are deleted).
    pub max_bytes: u64,
}

struct Segment {
    out: BufWriter<File>,
    path: PathBuf,
    /// Media time of the file's first keyframe: its timestamp 0.
    base: u64,
}

pub(crate) struct Recorder {
    pub(crate) config: RecorderConfig,
    pub(crate) headers: Arc<Mutex<StreamHeaders>>,
    pub(crate) stats: Arc<SinkStats>,
}

impl Recorder {
    /// Records until `End` or the channel closes.
    pub(crate) fn run(self, mut rx: mpsc::Receiver<SinkItem>) {
        let mut segment: Option<Segment> = None;
        let mut files = 0u64;
        // Segment length in media samples (48 kHz), integer like every timestamp.
        let segment_samples = self.config.segment.as_millis() as u64 * 48;
        self.stats.set_state("waiting for a keyframe");
        while let Some(SinkItem::Media(packet)) = rx.blocking_recv() {
            self.stats.dequeued(&packet);
            let ts = packet.media_ts();
            let keyframe = matches!(*packet, MediaPacket::Video { keyframe: true, .. });
            // A file starts on a keyframe: the first one, then the first after a segment's worth.
            let due = segment.as_ref().is_none_or(|s| ts.saturating_sub(s.base) >= segment_samples);
            if due && keyframe {
                if let Some(done) = segment.take() {
                    self.close(done);
                }
                match self.open(ts, files) {
                    Ok(s) => {
                        files += 1;
                        self.stats.connects.fetch_add(1, Ordering::Relaxed);
                        self.stats.set_state("recording");
                        self.enforce_cap(&s.path);
                        segment = Some(s);
                    }
                    Err(e) => self.failed(e),
                }
            }
            let Some(s) = segment.as_mut() else { continue };
            if ts < s.base {
                continue; // audio from before the file's first keyframe
            }
            let (kind, body) = match &*packet {
                MediaPacket::Video { body, .. } => (TAG_VIDEO, body),
                MediaPacket::Audio { body, .. } => (TAG_AUDIO, body),
            };
            match write_tag(&mut s.out, kind, media_to_ms(ts - s.base), body) {
                Ok(n) => {
                    self.stats.bytes_sent.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    // A failing disk: this file ends here; the next keyframe tries a new one.
                    self.failed(e);
                    segment = None;
                }
            }
        }
        if let Some(done) = segment.take() {
            self.close(done);
        }
        self.stats.set_state("closed");
    }

    fn open(&self, base: u64, files: u64) -> std::io::Result<Segment> {
        std::fs::create_dir_all(&self.config.dir)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        // Names sort by time: the cap deletes the oldest first.
        let path = self.config.dir.join(format!("{PREFIX}{now:012}-{files:06}.flv"));
        let mut out = BufWriter::new(File::create(&path)?);
        // FLV header (audio + video), then PreviousTagSize0.
        out.write_all(&[b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0])?;
        let headers = self.headers.lock().map(|h| h.clone()).unwrap_or_default();
        if let Some(video) = &headers.video {
            write_tag(&mut out, TAG_VIDEO, 0, video)?;
        }
        if let Some(audio) = &headers.audio {
            write_tag(&mut out, TAG_AUDIO, 0, audio)?;
        }
        tracing::info!(file = %path.display(), "recording");
        Ok(Segment { out, path, base })
    }

    fn close(&self, mut segment: Segment) {
        let flushed = segment.out.flush().and_then(|()| segment.out.get_ref().sync_data());
        if let Err(e) = flushed {
            self.failed(e);
        }
    }

    fn failed(&self, error: std::io::Error) {
        tracing::error!(dir = %self.config.dir.display(), error = %error, "recording failed");
        self.stats.record_error(format!("recorder: {error}"));
    }

    /// Deletes the oldest recordings until the directory fits the cap (never `current`).
    fn enforce_cap(&self, current: &Path) {
        let mut files = recordings(&self.config.dir);
        let mut total: u64 = files.iter().map(|(_, size)| size).sum();
        files.sort();
        for (path, size) in files {
            if total <= self.config.max_bytes || path == current {
                break;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    total -= size;
                    tracing::info!(file = %path.display(), "oldest recording deleted (size cap)");
                }
                Err(e) => self.failed(e),
            }
        }
    }
}

/// Our recordings in `dir`, with their sizes.
pub fn recordings(dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(".flv")))
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.len())))
        .collect()
}

/// One FLV tag and its trailing PreviousTagSize; returns the bytes written.
fn write_tag(out: &mut impl Write, kind: u8, ts_ms: u32, body: &Bytes) -> std::io::Result<u64> {
    let size = body.len() as u32;
    let [_, s1, s2, s3] = size.to_be_bytes();
    let [t_ext, t1, t2, t3] = ts_ms.to_be_bytes();
    out.write_all(&[kind, s1, s2, s3, t1, t2, t3, t_ext, 0, 0, 0])?;
    out.write_all(body)?;
    out.write_all(&(11 + size).to_be_bytes())?;
    Ok(u64::from(11 + size + 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_carries_its_size_the_extended_timestamp_byte_and_the_trailing_size() {
        let mut out = Vec::new();
        let n = write_tag(&mut out, TAG_VIDEO, 0x0102_0304, &Bytes::from_static(&[0xAA, 0xBB])).unwrap();
        assert_eq!(n, 17);
        assert_eq!(out, [9, 0, 0, 2, 0x02, 0x03, 0x04, 0x01, 0, 0, 0, 0xAA, 0xBB, 0, 0, 0, 13]);
    }
}
