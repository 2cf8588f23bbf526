//! The stage's health report, sent to the control plane once a second: frames, late, repeated
//! and slate frames, the encoder (and why it fell back), and every output's state and bitrate.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use emcee_protocol::{redact_stream_key, EncoderFallback, Health, OutputHealth};
use emcee_stream::stats::SinkStats;

/// Counts of the show so far, as the media loop keeps them.
pub struct FrameCounts {
    pub media_ts: u64,
    pub frames: u64,
    pub late: u64,
    pub repeated: u64,
    pub slate: u64,
    pub av_drift_samples: i64,
}

/// Turns the outputs' running totals into a report with bitrates over the last interval.
pub struct HealthReporter {
    outputs: Vec<(String, Arc<SinkStats>)>,
    last_report: Instant,
    sent_at_last_report: Vec<u64>,
}

impl HealthReporter {
    pub fn new(outputs: Vec<(String, Arc<SinkStats>)>) -> Self {
        let sent_at_last_report = vec![0; outputs.len()];
        Self { outputs, last_report: Instant::now(), sent_at_last_report }
    }

    /// The report now; bitrates are measured since the previous one. Stream keys are redacted.
    pub fn report(&mut self, counts: FrameCounts, encoder: &str, fallback: Option<EncoderFallback>) -> Health {
        let seconds = self.last_report.elapsed().as_secs_f64().max(1e-3);
        self.last_report = Instant::now();
        let outputs = self
            .outputs
            .iter()
            .zip(&mut self.sent_at_last_report)
            .map(|((url, s), sent_before)| {
                let bytes_sent = s.bytes_sent.load(Relaxed);
                let bitrate_kbps = (bytes_sent.saturating_sub(*sent_before) as f64 * 8.0 / 1000.0 / seconds) as u64;
                *sent_before = bytes_sent;
                OutputHealth {
                    url: redact_stream_key(url),
                    state: s.state(),
                    bytes_sent,
                    connects: s.connects.load(Relaxed),
                    dropped_packets: s.dropped_packets.load(Relaxed),
                    bytes_acked: s.bytes_acked.load(Relaxed),
                    queue_ms: s.queued_ms(),
                    bitrate_kbps,
                    // Redacted where it is recorded (the output knows its key).
                    last_error: s.last_error(),
                }
            })
            .collect();
        Health {
            media_ts: counts.media_ts,
            frames: counts.frames,
            late_frames: counts.late,
            repeated_frames: counts.repeated,
            slate_frames: counts.slate,
            av_drift_samples: counts.av_drift_samples,
            encoder: encoder.into(),
            encoder_fallback: fallback,
            outputs,
        }
    }
}
