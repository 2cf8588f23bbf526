//! What the stage is saying and will say: cues in acceptance order, their synthesized speech,
//! the utterance playing, and how a stop cuts it. Pure logic on the media clock (no threads), so
//! the media loop stays short and every rule here is unit-tested.
//!
//! Lifecycle per cue id: accepted → (synthesized) → started → finished{was_stopped}. Ids are
//! idempotent: a known id is never played twice, and a re-sent finished id is answered with its
//! original `finished` event.

use std::collections::{HashMap, HashSet, VecDeque};

use emcee_protocol::{StageEvent, StopWhen, MEDIA_CLOCK_HZ};
use emcee_speech::viseme::{MouthPose, MouthTrack};
use emcee_speech::Utterance;

/// Silence between two sentences (300 ms), like a speaker taking a breath.
pub const SENTENCE_GAP: u64 = MEDIA_CLOCK_HZ * 3 / 10;
/// The shorter pause after an interrupted sentence (150 ms): the interruption is answered
/// promptly, as a person would.
pub const CUT_GAP: u64 = MEDIA_CLOCK_HZ * 3 / 20;
/// Fade applied where speech is cut, so the cut does not click (4 ms).
const CUT_FADE: usize = 192;
/// A phoneme-boundary stop waits at most this long (100 ms); past it (a long vowel, a pause
/// at a comma) it cuts at once, so an interruption is never slow.
const MAX_BOUNDARY_WAIT: usize = 4_800;

struct Playing {
    id: String,
    utterance: Utterance,
    track: MouthTrack,
    position: usize,
    started_at: u64,
    /// Where the speech stops early (a sample index into the utterance), after a stop.
    cut_at: Option<usize>,
}

/// What `accept` found.
#[derive(Debug, PartialEq)]
pub enum Accepted {
    New,
    /// Known already; `finished` holds its end time if it has finished.
    Duplicate {
        finished: Option<u64>,
    },
}

#[derive(Default)]
pub struct SpeechQueue {
    known: HashSet<String>,
    finished: HashMap<String, u64>,
    /// Accepted, not started, in order; `None` until synthesized.
    waiting: VecDeque<(String, Option<Utterance>)>,
    playing: Option<Playing>,
    /// No sentence starts before this media time: the pause after the previous one.
    gap_until: u64,
}

impl SpeechQueue {
    pub fn accept(&mut self, id: &str) -> Accepted {
        if !self.known.insert(id.to_string()) {
            return Accepted::Duplicate { finished: self.finished.get(id).copied() };
        }
        self.waiting.push_back((id.to_string(), None));
        Accepted::New
    }

    /// Speech for `id` is ready. Dropped if the cue was stopped meanwhile.
    pub fn synthesized(&mut self, id: &str, utterance: Utterance) {
        if let Some(slot) = self.waiting.iter_mut().find(|w| w.0 == id) {
            slot.1 = Some(utterance);
        }
    }

    /// Whether `id` is accepted and has not started (nor been stopped).
    pub fn is_waiting(&self, id: &str) -> bool {
        self.waiting.iter().any(|w| w.0 == id)
    }

    /// How many waiting cues have their speech ready.
    pub fn ready_ahead(&self) -> usize {
        self.waiting.iter().filter(|w| w.1.is_some()).count()
    }

    /// Synthesis failed: the cue is dropped (the caller reports `failed`).
    pub fn failed(&mut self, id: &str) {
        self.waiting.retain(|w| w.0 != id);
        self.finished.insert(id.to_string(), 0);
    }

    fn finish(&mut self, id: String, was_stopped: bool, media_ts: u64, events: &mut Vec<StageEvent>) {
        self.finished.insert(id.clone(), media_ts);
        events.push(StageEvent::Finished { id, was_stopped, media_ts });
    }

    /// Stops `id` (or everything unfinished) at media time `now`.
    pub fn stop(&mut self, id: Option<&str>, when: StopWhen, now: u64, events: &mut Vec<StageEvent>) {
        let matches = |candidate: &str| id.is_none_or(|i| i == candidate);
        // Waiting cues never start.
        let (dropped, kept): (Vec<_>, Vec<_>) = self.waiting.drain(..).partition(|w| matches(&w.0));
        self.waiting = kept.into();
        for (dropped_id, _) in dropped {
            self.finish(dropped_id, true, now, events);
        }
        let Some(p) = self.playing.as_mut().filter(|p| matches(&p.id)) else { return };
        let position = p.position;
        let cut = match when {
            StopWhen::SentenceEnd => return,
            StopWhen::Now => position,
            StopWhen::Phoneme => {
                // The first phoneme boundary at or after the current position, in the
                // utterance's own sample offsets; the end of the speech if none is left.
                let boundary = p
                    .utterance
                    .phonemes
                    .iter()
                    .map(|ph| ph.start as usize)
                    .find(|&start| start >= position)
                    .unwrap_or(p.utterance.pcm.len());
                if boundary - position > MAX_BOUNDARY_WAIT {
                    position
                } else {
                    boundary
                }
            }
        };
        let cut = cut.min(p.utterance.pcm.len());
        let fade_end = (cut + CUT_FADE).min(p.utterance.pcm.len());
        // Fade over the few samples after the cut point, then end there.
        for (k, s) in p.utterance.pcm[cut..fade_end].iter_mut().enumerate() {
            *s = (f32::from(*s) * (1.0 - k as f32 / CUT_FADE as f32)) as i16;
        }
        p.cut_at = Some(fade_end);
    }

    /// The mouth at frame time `t`.
    pub fn mouth(&self, t: u64) -> MouthPose {
        self.sounding(t).map(|(track, at)| track.pose_at(at)).unwrap_or_default()
    }

    /// The mouth track of the speech sounding at media time `t`, and the time into it.
    fn sounding(&self, t: u64) -> Option<(&MouthTrack, u64)> {
        self.playing
            .as_ref()
            .filter(|p| p.started_at <= t)
            .filter(|p| p.cut_at.is_none_or(|cut| t - p.started_at < cut as u64))
            .map(|p| (&p.track, t - p.started_at))
    }

    /// Emphasis of the speech at media time `t` (−1 … 1; 0 in silence): see
    /// [`emcee_speech::viseme::MouthTrack::emphasis_at`].
    pub fn emphasis(&self, t: u64) -> f32 {
        self.sounding(t).map_or(0.0, |(track, at)| track.emphasis_at(at))
    }

    /// The pitch of the speech sounding at `t`, semitones against its sentence's median; 0 in
    /// silence. See [`emcee_speech::viseme::MouthTrack::pitch_at`].
    pub fn pitch(&self, t: u64) -> f32 {
        self.sounding(t).map_or(0.0, |(track, at)| track.pitch_at(at))
    }

    /// Appends `need` samples starting at media time `start`: speech where there is some,
    /// silence elsewhere. Lifecycle events go to `events`.
    pub fn fill(&mut self, start: u64, need: usize, pcm: &mut Vec<i16>, events: &mut Vec<StageEvent>) {
        let target = pcm.len() + need;
        let base = pcm.len();
        while pcm.len() < target {
            let now = start + (pcm.len() - base) as u64;
            if self.playing.is_none() && now >= self.gap_until {
                let ready = self.waiting.front().is_some_and(|w| w.1.is_some());
                if ready {
                    if let Some((id, Some(mut utterance))) = self.waiting.pop_front() {
                        events.push(StageEvent::Started { id: id.clone(), media_ts: now });
                        let track = MouthTrack::new(&utterance.phonemes, &utterance.pcm)
                            .with_pitch(std::mem::take(&mut utterance.pitch));
                        self.playing =
                            Some(Playing { id, utterance, track, position: 0, started_at: now, cut_at: None });
                    }
                }
            }
            let Some(p) = self.playing.as_mut() else {
                pcm.resize(target, 0);
                break;
            };
            let end = p.cut_at.unwrap_or(p.utterance.pcm.len());
            let take = (target - pcm.len()).min(end.saturating_sub(p.position));
            let tick_offset = start + (pcm.len() - base) as u64;
            let (from, to) = (p.position as u64, (p.position + take) as u64);
            let finishing = p.position + take >= end;
            for (index, (name, at)) in p.utterance.marks.iter().enumerate() {
                // Marks in this stretch; one at the very end goes out with the last stretch,
                // unless the speech was cut before it.
                let at_end = finishing && *at == to && p.cut_at.is_none();
                if (*at >= from && *at < to) || at_end {
                    events.push(StageEvent::Mark {
                        id: p.id.clone(),
                        name: name.clone(),
                        index: index as u32,
                        media_ts: tick_offset + at - from,
                    });
                }
            }
            pcm.extend_from_slice(&p.utterance.pcm[p.position..p.position + take]);
            p.position += take;
            if p.position >= end {
                let was_stopped = p.cut_at.is_some_and(|c| c < p.utterance.pcm.len());
                let end_ts = start + (pcm.len() - base) as u64;
                let id = p.id.clone();
                self.playing = None;
                self.gap_until = end_ts + if was_stopped { CUT_GAP } else { SENTENCE_GAP };
                self.finish(id, was_stopped, end_ts, events);
            }
        }
    }

    /// Ends the show at `now`: whatever plays is cut, everything waiting is dropped.
    pub fn end(&mut self, now: u64, events: &mut Vec<StageEvent>) {
        for (id, _) in std::mem::take(&mut self.waiting) {
            self.finish(id, true, now, events);
        }
        if let Some(p) = self.playing.take() {
            self.finish(p.id, true, now, events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emcee_speech::viseme::PhonemeSpan;

    /// 0.5 s of a constant "vowel" with phoneme boundaries every 100 ms.
    fn utterance() -> Utterance {
        let phonemes = (0..5).map(|i| PhonemeSpan { ipa: "a".into(), start: i * 4800, end: (i + 1) * 4800 }).collect();
        Utterance { pcm: vec![1000; 24_000], phonemes, marks: vec![], pitch: vec![] }
    }

    fn run(q: &mut SpeechQueue, from: u64, ticks: u64) -> (Vec<i16>, Vec<StageEvent>) {
        let (mut pcm, mut events) = (Vec::new(), Vec::new());
        for t in 0..ticks {
            q.fill(from + t * 1600, 1600, &mut pcm, &mut events);
        }
        (pcm, events)
    }

    #[test]
    fn plays_in_order_with_a_gap_and_exact_timestamps() {
        let mut q = SpeechQueue::default();
        assert_eq!(q.accept("a"), Accepted::New);
        assert_eq!(q.accept("b"), Accepted::New);
        q.synthesized("b", utterance()); // out of order: "a" still blocks "b"
        let (_, events) = run(&mut q, 0, 3);
        assert!(events.is_empty(), "nothing ready in order yet: {events:?}");
        q.synthesized("a", utterance());
        let (pcm, events) = run(&mut q, 4800, 40);
        assert_eq!(
            events,
            vec![
                StageEvent::Started { id: "a".into(), media_ts: 4800 },
                StageEvent::Finished { id: "a".into(), was_stopped: false, media_ts: 28_800 },
                StageEvent::Started { id: "b".into(), media_ts: 28_800 + SENTENCE_GAP },
                StageEvent::Finished { id: "b".into(), was_stopped: false, media_ts: 28_800 + SENTENCE_GAP + 24_000 },
            ]
        );
        // The gap is silence.
        assert!(pcm[24_000 + 100..24_000 + 14_000].iter().all(|&s| s == 0));
    }

    #[test]
    fn marks_fire_where_they_are_in_the_audio_and_not_after_a_cut() {
        let mut q = SpeechQueue::default();
        q.accept("a");
        let mut u = utterance();
        u.marks = vec![("card:show:A".into(), 0), ("gesture:wave".into(), 5_000), ("late".into(), 20_000)];
        q.synthesized("a", u);
        let (_, events) = run(&mut q, 1600, 4);
        let marks: Vec<_> = events.iter().filter(|e| matches!(e, StageEvent::Mark { .. })).cloned().collect();
        assert_eq!(
            marks,
            vec![
                StageEvent::Mark { id: "a".into(), name: "card:show:A".into(), index: 0, media_ts: 1600 },
                StageEvent::Mark { id: "a".into(), name: "gesture:wave".into(), index: 1, media_ts: 6600 },
            ]
        );
        let mut events = Vec::new();
        q.stop(None, StopWhen::Now, 8000, &mut events);
        let (_, events) = run(&mut q, 8000, 20);
        assert!(!events.iter().any(|e| matches!(e, StageEvent::Mark { .. })), "{events:?}");
    }

    #[test]
    fn duplicates_are_not_played_twice() {
        let mut q = SpeechQueue::default();
        q.accept("a");
        q.synthesized("a", utterance());
        run(&mut q, 0, 20);
        assert_eq!(q.accept("a"), Accepted::Duplicate { finished: Some(24_000) });
        let (_, events) = run(&mut q, 32_000, 20);
        assert!(events.is_empty());
    }

    #[test]
    fn a_stop_cuts_at_the_next_phoneme_boundary_and_drops_the_queue() {
        let mut q = SpeechQueue::default();
        q.accept("a");
        q.accept("b");
        q.synthesized("a", utterance());
        q.synthesized("b", utterance());
        let (_, events) = run(&mut q, 0, 4); // 6400 samples into "a"
        assert_eq!(events.len(), 1);
        let mut events = Vec::new();
        q.stop(None, StopWhen::Phoneme, 6400, &mut events);
        assert_eq!(events, vec![StageEvent::Finished { id: "b".into(), was_stopped: true, media_ts: 6400 }]);
        let (pcm, events) = run(&mut q, 6400, 10);
        // Next boundary after 6400 is 9600; the fade adds 192 samples.
        let cut_ts = 9600 + CUT_FADE as u64;
        assert_eq!(events, vec![StageEvent::Finished { id: "a".into(), was_stopped: true, media_ts: cut_ts }]);
        let cut_in_pcm = (cut_ts - 6400) as usize;
        assert!(pcm[cut_in_pcm..].iter().all(|&s| s == 0), "silence after the cut");
        assert!(pcm[cut_in_pcm - 10] < 1000, "faded");
        // The mouth is closed once the cut has happened.
        assert_eq!(q.mouth(cut_ts + 1600).open, 0.0);
        // A late synthesis result for the stopped cue is ignored.
        q.synthesized("b", utterance());
        let (_, events) = run(&mut q, 22_400, 30);
        assert!(events.is_empty());
    }

    #[test]
    fn a_phoneme_stop_never_waits_more_than_100_ms() {
        let mut q = SpeechQueue::default();
        q.accept("a");
        // One long 400 ms phoneme.
        let u = Utterance {
            pcm: vec![1000; 19_200],
            phonemes: vec![PhonemeSpan { ipa: "a".into(), start: 0, end: 19_200 }],
            marks: vec![],
            pitch: vec![],
        };
        q.synthesized("a", u);
        run(&mut q, 0, 2);
        let mut events = Vec::new();
        q.stop(None, StopWhen::Phoneme, 3200, &mut events);
        let (_, events) = run(&mut q, 3200, 4);
        let cut = 3200 + CUT_FADE as u64;
        assert_eq!(events, vec![StageEvent::Finished { id: "a".into(), was_stopped: true, media_ts: cut }]);
    }

    #[test]
    fn stop_at_sentence_end_lets_the_sentence_finish() {
        let mut q = SpeechQueue::default();
        q.accept("a");
        q.synthesized("a", utterance());
        run(&mut q, 0, 2);
        let mut events = Vec::new();
        q.stop(Some("a"), StopWhen::SentenceEnd, 3200, &mut events);
        assert!(events.is_empty());
        let (_, events) = run(&mut q, 3200, 20);
        assert_eq!(events, vec![StageEvent::Finished { id: "a".into(), was_stopped: false, media_ts: 24_000 }]);
    }

    #[test]
    fn stopping_one_waiting_cue_leaves_the_others() {
        let mut q = SpeechQueue::default();
        for id in ["a", "b", "c"] {
            q.accept(id);
            q.synthesized(id, utterance());
        }
        let mut events = Vec::new();
        q.stop(Some("b"), StopWhen::Now, 0, &mut events);
        assert_eq!(events, vec![StageEvent::Finished { id: "b".into(), was_stopped: true, media_ts: 0 }]);
        let (_, events) = run(&mut q, 0, 60);
        let started: Vec<_> = events
            .iter()
            .filter_map(|e| if let StageEvent::Started { id, .. } = e { Some(id.as_str()) } else { None })
            .collect();
        assert_eq!(started, ["a", "c"]);
    }

    #[test]
    fn ready_and_waiting_cues_are_counted_for_the_look_ahead() {
        let mut q = SpeechQueue::default();
        q.accept("a");
        q.accept("b");
        assert!(q.is_waiting("a") && q.is_waiting("b") && !q.is_waiting("c"));
        assert_eq!(q.ready_ahead(), 0);
        q.synthesized("b", utterance());
        assert_eq!(q.ready_ahead(), 1);
        let mut events = Vec::new();
        q.stop(Some("b"), StopWhen::Now, 0, &mut events);
        assert!(!q.is_waiting("b"), "a stopped cue is not synthesized any more");
        assert_eq!(q.ready_ahead(), 0);
    }
}
