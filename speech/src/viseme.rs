//! Phoneme spans → visemes → a mouth track sampled at each video frame's media time.
//!
//! Each phoneme contributes one key (its viseme's mouth shape) at 40 % of its span, moved
//! [`ANTICIPATION`] earlier because the mouth leads the sound (ITU-R BT.1359: sound-late is far
//! less noticeable than sound-early). Shapes are interpolated linearly between keys, so every key
//! is reached exactly — closures on p/b/m and f/v always close. The jaw is then scaled by the
//! local loudness so loud syllables open wider (the JALI idea, simplified).

/// How far the mouth leads the audio, in 48 kHz samples (40 ms).
pub const ANTICIPATION: u64 = 1_920;
const LOUDNESS_BIN: usize = 480; // 10 ms

/// Viseme classes (the Oculus/OpenXR 15-viseme set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viseme {
    Sil,
    PP,
    FF,
    TH,
    DD,
    KK,
    CH,
    SS,
    NN,
    RR,
    AA,
    E,
    IH,
    OH,
    OU,
}

/// Classifies an IPA phoneme (as espeak-ng names them, e.g. `oʊ`, `tʃ`) by its first letter.
pub fn viseme_for_ipa(ipa: &str) -> Viseme {
    let mut chars = ipa.chars().filter(|c| !matches!(c, 'ˈ' | 'ˌ' | 'ː' | 'ˑ' | '̃' | '̩'));
    let Some(first) = chars.next() else { return Viseme::Sil };
    let second = chars.next();
    match (first, second) {
        ('t', Some('ʃ')) | ('d', Some('ʒ')) | ('t', Some('ɕ')) | ('d', Some('ʑ')) | ('t', Some('ʂ')) => Viseme::CH,
        ('t', Some('s')) | ('d', Some('z')) => Viseme::SS,
        _ => match first {
            'p' | 'b' | 'm' => Viseme::PP,
            'f' | 'v' | 'ɱ' => Viseme::FF,
            'θ' | 'ð' => Viseme::TH,
            't' | 'd' | 'ɾ' | 'ʈ' | 'ɖ' => Viseme::DD,
            'k' | 'g' | 'ɡ' | 'ŋ' | 'x' | 'χ' | 'ɣ' | 'q' | 'h' | 'ɦ' => Viseme::KK,
            'ʃ' | 'ʒ' | 'ɕ' | 'ʑ' | 'ʂ' | 'ʐ' | 'c' | 'ɟ' => Viseme::CH,
            's' | 'z' => Viseme::SS,
            'n' | 'l' | 'ɲ' | 'ɳ' | 'ɫ' | 'ʎ' => Viseme::NN,
            'ɹ' | 'r' | 'ɻ' | 'ʁ' | 'ɚ' | 'ɝ' => Viseme::RR,
            'a' | 'ɑ' | 'ɐ' | 'æ' | 'ʌ' => Viseme::AA,
            'e' | 'ɛ' | 'ə' | 'ɜ' | 'ɤ' => Viseme::E,
            'i' | 'ɪ' | 'ɨ' | 'j' => Viseme::IH,
            'o' | 'ɔ' | 'ɒ' => Viseme::OH,
            'u' | 'ʊ' | 'ɯ' | 'y' | 'ʉ' | 'w' | 'ɥ' => Viseme::OU,
            _ => Viseme::Sil,
        },
    }
}

/// Mouth shape: `open` drives the jaw (0 closed … 1 wide open), `wide` spreads the lips
/// (0 rounded … 1 spread).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MouthPose {
    pub open: f32,
    pub wide: f32,
}

impl Viseme {
    pub fn pose(self) -> MouthPose {
        let (open, wide) = match self {
            Viseme::Sil | Viseme::PP => (0.0, 0.3),
            Viseme::FF => (0.08, 0.35),
            Viseme::TH => (0.22, 0.4),
            Viseme::DD => (0.3, 0.45),
            Viseme::KK => (0.35, 0.4),
            Viseme::CH => (0.28, 0.1),
            Viseme::SS => (0.15, 0.65),
            Viseme::NN => (0.25, 0.45),
            Viseme::RR => (0.3, 0.15),
            Viseme::AA => (1.0, 0.5),
            Viseme::E => (0.6, 0.7),
            Viseme::IH => (0.4, 0.85),
            Viseme::OH => (0.75, 0.05),
            Viseme::OU => (0.35, 0.0),
        };
        MouthPose { open, wide }
    }
}

/// A phoneme with its span in 48 kHz samples from the utterance start.
#[derive(Debug, Clone, PartialEq)]
pub struct PhonemeSpan {
    pub ipa: String,
    pub start: u64,
    pub end: u64,
}

/// The mouth animation of one utterance.
#[derive(Debug, Clone)]
pub struct MouthTrack {
    /// (time in samples, pose), sorted by time.
    keys: Vec<(i64, MouthPose)>,
    /// Normalised loudness (0…1) per 10 ms bin.
    loudness: Vec<f32>,
    /// Semitones against the median pitch per 10 ms bin (see [`crate::prosody`]).
    pitch: Vec<f32>,
}

impl MouthTrack {
    pub fn new(phonemes: &[PhonemeSpan], pcm: &[i16]) -> Self {
        let rest = Viseme::Sil.pose();
        let mut keys = vec![(0i64, rest)];
        for p in phonemes {
            let viseme = viseme_for_ipa(&p.ipa);
            let span = p.end.saturating_sub(p.start);
            let at = (p.start + span * 2 / 5) as i64 - ANTICIPATION as i64;
            let at = at.max(keys.last().map_or(0, |k| k.0));
            keys.push((at, viseme.pose()));
        }
        let end = phonemes.last().map_or(0, |p| p.end) as i64 - ANTICIPATION as i64;
        keys.push((end.max(keys.last().map_or(0, |k| k.0)), rest));

        let rms: Vec<f32> = pcm
            .chunks(LOUDNESS_BIN)
            .map(|c| (c.iter().map(|&s| f32::from(s).powi(2)).sum::<f32>() / c.len() as f32).sqrt())
            .collect();
        let peak = rms.iter().copied().fold(1.0f32, f32::max);
        let loudness = rms.iter().map(|r| (r / peak).sqrt()).collect();
        Self { keys, loudness, pitch: Vec::new() }
    }

    /// The same track, with the utterance's pitch per 10 ms bin.
    pub fn with_pitch(mut self, pitch: Vec<f32>) -> Self {
        self.pitch = pitch;
        self
    }

    /// Pitch at `t` samples after the start: semitones against the sentence's median, 0 where
    /// unvoiced. Speakers lift the head on high pitch and lower it as a phrase falls.
    pub fn pitch_at(&self, t: u64) -> f32 {
        self.pitch.get(t as usize / LOUDNESS_BIN).copied().unwrap_or(0.0)
    }

    /// The mouth at `t` samples after the utterance start.
    pub fn pose_at(&self, t: u64) -> MouthPose {
        let t = t as i64;
        let idx = self.keys.partition_point(|k| k.0 <= t);
        let pose = match (idx.checked_sub(1).map(|i| self.keys[i]), self.keys.get(idx)) {
            (Some((t0, a)), Some(&(t1, b))) if t1 > t0 => {
                let f = (t - t0) as f32 / (t1 - t0) as f32;
                MouthPose { open: a.open + (b.open - a.open) * f, wide: a.wide + (b.wide - a.wide) * f }
            }
            (Some((_, a)), _) => a,
            (None, _) => Viseme::Sil.pose(),
        };
        // The jaw follows loudness slightly ahead, like the keys.
        let bin = ((t + ANTICIPATION as i64).max(0) as usize) / LOUDNESS_BIN;
        let loud = self.loudness.get(bin).copied().unwrap_or(0.0);
        MouthPose { open: pose.open * (0.55 + 0.45 * loud), wide: pose.wide }
    }

    /// Emphasis at `t` samples after the start: how much louder the speech is right now
    /// (±80 ms) than over the phrase around it (±600 ms), −1 … 1. Stressed syllables stand out;
    /// speakers nod on them, so the head follows this (prosody-driven head motion).
    pub fn emphasis_at(&self, t: u64) -> f32 {
        let bin = (t as usize) / LOUDNESS_BIN;
        let mean = |half: usize| {
            let (a, b) = (bin.saturating_sub(half), (bin + half + 1).min(self.loudness.len()));
            if a >= b {
                return 0.0;
            }
            self.loudness[a..b].iter().sum::<f32>() / (b - a) as f32
        };
        (mean(8) - mean(60)).clamp(-1.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emphasis_stands_out_where_the_speech_is_louder_than_around_it() {
        // 1.2 s: quiet speech with a loud 150 ms syllable in the middle.
        let pcm: Vec<i16> = (0..57_600)
            .map(|i| {
                let level = if (26_000..33_200).contains(&i) { 12_000.0 } else { 2_000.0 };
                (level * (i as f32 * 0.05).sin()) as i16
            })
            .collect();
        let track = MouthTrack::new(&[], &pcm);
        let (stressed, quiet) = (track.emphasis_at(29_600), track.emphasis_at(8_000));
        assert!(stressed > 0.2 && stressed > quiet + 0.2, "stressed {stressed}, quiet {quiet}");
        assert_eq!(MouthTrack::new(&[], &[]).emphasis_at(1000), 0.0, "silence has none");
    }

    #[test]
    fn classifies_espeak_ipa_names() {
        assert_eq!(viseme_for_ipa("p"), Viseme::PP);
        assert_eq!(viseme_for_ipa("m"), Viseme::PP);
        assert_eq!(viseme_for_ipa("oʊ"), Viseme::OH);
        assert_eq!(viseme_for_ipa("aɪ"), Viseme::AA);
        assert_eq!(viseme_for_ipa("tʃ"), Viseme::CH);
        assert_eq!(viseme_for_ipa("ˈæ"), Viseme::AA);
        assert_eq!(viseme_for_ipa(""), Viseme::Sil);
        assert_eq!(viseme_for_ipa("?"), Viseme::Sil);
    }

    fn span(ipa: &str, start_ms: u64, end_ms: u64) -> PhonemeSpan {
        PhonemeSpan { ipa: ipa.into(), start: start_ms * 48, end: end_ms * 48 }
    }

    #[test]
    fn bilabials_close_the_mouth_and_vowels_open_it_ahead_of_the_sound() {
        let phonemes = [span("m", 100, 200), span("ɑ", 200, 400), span("p", 400, 480), span("ɑ", 480, 700)];
        let pcm = vec![8000i16; 48 * 700];
        let track = MouthTrack::new(&phonemes, &pcm);
        // The /m/ key sits at 140 ms − 40 ms anticipation = 100 ms: fully closed.
        assert_eq!(track.pose_at(100 * 48).open, 0.0);
        // The /p/ key at 432 − 40 = 392 ms: closed again between the two vowels.
        assert_eq!(track.pose_at(392 * 48).open, 0.0);
        // The first /ɑ/ key at 280 − 40 = 240 ms is wide open (full loudness).
        assert!(track.pose_at(240 * 48).open > 0.95);
        // Before speech and well after it: rest.
        assert_eq!(track.pose_at(0).open, 0.0);
        assert_eq!(track.pose_at(2000 * 48).open, 0.0);
    }

    #[test]
    fn quiet_syllables_open_less() {
        let phonemes = [span("ɑ", 0, 200), span("ɑ", 200, 400)];
        let mut pcm = vec![10_000i16; 48 * 200];
        pcm.extend(vec![1_000i16; 48 * 200]);
        let track = MouthTrack::new(&phonemes, &pcm);
        let loud = track.pose_at(80 * 48 - ANTICIPATION).open;
        let quiet = track.pose_at(280 * 48 - ANTICIPATION).open;
        assert!(loud > quiet + 0.2, "loud {loud} quiet {quiet}");
    }
}
