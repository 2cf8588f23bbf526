//! Prometheus text exposition of the show's status (`/metrics`): the show, the state
//! database, the stage, and each output, one method each.

use std::fmt::Write;

use emcee_protocol::{Health, OutputHealth};

use crate::control::calls::{StateHealth, Status};
use crate::scheduler::Room;

/// The exposition of `s`.
pub fn text(s: &Status) -> String {
    let mut m = Exposition::default();
    m.show(s);
    m.state(&s.state);
    if let Some(cloud) = &s.cloud {
        let up = flag(cloud.state == "joined");
        m.one("emcee_cloud_link_up", "gauge", "1 while the appliance is joined to its fleet cloud", up);
    }
    if let Some(h) = &s.stage {
        m.stage(h);
        m.outputs(&h.outputs);
    }
    m.0
}

#[derive(Default)]
struct Exposition(String);

/// One metric per output: name, type, help, and its value for an output.
type OutputMetric = (&'static str, &'static str, &'static str, fn(&OutputHealth) -> f64);

fn flag(on: bool) -> f64 {
    f64::from(u8::from(on))
}

impl Exposition {
    fn metric(&mut self, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(self.0, "{name}{labels} {value}");
        }
    }

    /// A metric with one sample and no labels.
    fn one(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.metric(name, kind, help, &[(String::new(), value)]);
    }

    fn show(&mut self, s: &Status) {
        let rooms = [Room::Idle, Room::Live, Room::Paused, Room::Ending, Room::Ended];
        let room_samples: Vec<(String, f64)> = rooms
            .iter()
            .map(|r| {
                let name = serde_json::to_value(r).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
                (format!("{{state=\"{name}\"}}"), flag(*r == s.room))
            })
            .collect();
        self.metric("emcee_room_state", "gauge", "1 for the live room's current state", &room_samples);
        self.one(
            "emcee_script_sentence",
            "gauge",
            "Index of the script sentence playing or next",
            s.offset.sentence as f64,
        );
        self.one("emcee_script_pass", "counter", "Times the script has looped", s.offset.pass as f64);
        self.one(
            "emcee_interactions_queued",
            "gauge",
            "Operator lines and answers waiting",
            s.queued_interactions as f64,
        );
        self.one("emcee_stage_connected", "gauge", "1 while the stage is connected", flag(s.stage_connected));
    }

    fn state(&mut self, state: &StateHealth) {
        let set_aside = flag(state.set_aside.is_some());
        self.one("emcee_state_set_aside", "gauge", "1 when a damaged state database was set aside at boot", set_aside);
        self.one("emcee_state_writes_failing", "gauge", "1 while state database writes fail", flag(state.failing()));
        self.one(
            "emcee_state_failed_writes_total",
            "counter",
            "State database writes lost",
            state.failed_writes as f64,
        );
    }

    fn stage(&mut self, h: &Health) {
        self.one("emcee_frames_total", "counter", "Video frames produced by the stage", h.frames as f64);
        let late = h.late_frames as f64;
        self.one("emcee_late_frames_total", "counter", "Ticks that started more than a frame after their time", late);
        self.one(
            "emcee_repeated_frames_total",
            "counter",
            "Ticks that showed the previous picture again (catching up, or the renderer failing)",
            h.repeated_frames as f64,
        );
        let slate = h.slate_frames as f64;
        self.one(
            "emcee_slate_frames_total",
            "counter",
            "Ticks that showed the slate because the renderer was down",
            slate,
        );
        self.one(
            "emcee_av_drift_samples",
            "gauge",
            "Audio samples encoded less the video's media time (0: audio and video in step)",
            h.av_drift_samples as f64,
        );
        let fallback = h.encoder_fallback.as_ref().map_or("none", |f| f.code.as_str());
        self.metric(
            "emcee_encoder_info",
            "gauge",
            "The video encoder in use, and why it is not the zero-copy one",
            &[(format!("{{encoder=\"{}\",fallback=\"{fallback}\"}}", h.encoder), 1.0)],
        );
    }

    fn outputs(&mut self, outputs: &[OutputHealth]) {
        let per_output = |value: fn(&OutputHealth) -> f64| -> Vec<(String, f64)> {
            let label = |url: &str| format!("{{url=\"{}\"}}", url.replace('\\', "\\\\").replace('"', "\\\""));
            outputs.iter().map(|o| (label(&o.url), value(o))).collect()
        };
        let metrics: [OutputMetric; 7] = [
            ("emcee_output_up", "gauge", "1 while the output is publishing", |o| flag(o.state == "publishing")),
            ("emcee_output_bytes_sent_total", "counter", "Bytes written to the output", |o| o.bytes_sent as f64),
            ("emcee_output_connects_total", "counter", "Sessions opened to the output", |o| o.connects as f64),
            (
                "emcee_output_dropped_packets_total",
                "counter",
                "Video packets dropped while the output's queue was congested",
                |o| o.dropped_packets as f64,
            ),
            ("emcee_output_acked_bytes_total", "counter", "Bytes the server acknowledged", |o| o.bytes_acked as f64),
            ("emcee_output_queue_ms", "gauge", "Media waiting in the output's queue", |o| o.queue_ms as f64),
            ("emcee_output_bitrate_kbps", "gauge", "Bytes written over the last second, in kbit/s", |o| {
                o.bitrate_kbps as f64
            }),
        ];
        for (name, kind, help, value) in metrics {
            self.metric(name, kind, help, &per_output(value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::Offset;

    #[test]
    fn metrics_expose_the_stage_and_escape_labels() {
        let health = emcee_protocol::Health {
            media_ts: 48_000,
            frames: 300,
            late_frames: 2,
            repeated_frames: 1,
            slate_frames: 3,
            av_drift_samples: 0,
            encoder: "openh264".into(),
            encoder_fallback: Some(emcee_protocol::EncoderFallback {
                code: "no_cuda_driver".into(),
                reason: "no CUDA driver (libcuda.so.1 not found)".into(),
            }),
            outputs: vec![emcee_protocol::OutputHealth {
                url: "rtmp://a:1935/x\"y/…".into(),
                state: "publishing".into(),
                bytes_sent: 12_345,
                connects: 2,
                dropped_packets: 7,
                bytes_acked: 12_000,
                queue_ms: 120,
                bitrate_kbps: 2_600,
                last_error: Some("a.example went silent: nothing heard for 7000 ms".into()),
            }],
        };
        let status = Status {
            room: Room::Paused,
            offset: Offset { pass: 1, sentence: 4, attempt: 0 },
            script_sentences: 9,
            queued_interactions: 2,
            playing: None,
            stage_connected: true,
            stage: Some(health),
            stage_report_age_ms: Some(300),
            state: StateHealth::default(),
            stage_refused: None,
            cloud: Some(crate::control::calls::CloudLink {
                state: "down".into(),
                device: Some("dev-1".into()),
                group: None,
                reason: Some("refused".into()),
                since_ms: 0,
            }),
        };
        let text = text(&status);
        for line in [
            "emcee_room_state{state=\"paused\"} 1",
            "emcee_script_sentence 4",
            "emcee_interactions_queued 2",
            "emcee_frames_total 300",
            "emcee_late_frames_total 2",
            "emcee_repeated_frames_total 1",
            "emcee_slate_frames_total 3",
            "emcee_encoder_info{encoder=\"openh264\",fallback=\"no_cuda_driver\"} 1",
            "emcee_output_up{url=\"rtmp://a:1935/x\\\"y/…\"} 1",
            "emcee_output_bytes_sent_total{url=\"rtmp://a:1935/x\\\"y/…\"} 12345",
            "emcee_output_connects_total{url=\"rtmp://a:1935/x\\\"y/…\"} 2",
            "emcee_output_dropped_packets_total{url=\"rtmp://a:1935/x\\\"y/…\"} 7",
            "emcee_output_acked_bytes_total{url=\"rtmp://a:1935/x\\\"y/…\"} 12000",
            "emcee_output_queue_ms{url=\"rtmp://a:1935/x\\\"y/…\"} 120",
            "emcee_output_bitrate_kbps{url=\"rtmp://a:1935/x\\\"y/…\"} 2600",
            "emcee_state_set_aside 0",
            "emcee_cloud_link_up 0",
            "emcee_state_writes_failing 0",
            "emcee_state_failed_writes_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
        }
    }
}
