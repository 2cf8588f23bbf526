//! Pitch (F0) of synthesized speech, for head motion: speakers lift the head on high pitch.
//!
//! Per 10 ms bin of the 48 kHz PCM: the signal averaged down to 12 kHz, then the lag with the
//! highest normalised autocorrelation in 70…400 Hz. A bin is voiced when that correlation is
//! high and the bin is not near-silent. The result is in semitones against the utterance's median
//! voiced pitch, so a low and a high voice move the head alike. Runs in the speech thread (about
//! 5 ms per second of speech), not on the frame path.

use crate::MEDIA_RATE;

/// Samples per bin at 48 kHz (10 ms), the same bins as the mouth track's loudness.
pub const BIN: usize = 480;
const DECIMATE: usize = 4;
const RATE: f32 = (MEDIA_RATE as usize / DECIMATE) as f32;
const MIN_HZ: f32 = 70.0;
const MAX_HZ: f32 = 400.0;
const VOICED_CORRELATION: f32 = 0.6;
const SILENCE_RMS: f32 = 300.0;

/// F0 in Hz of each 10 ms bin of `pcm` (48 kHz), `None` where unvoiced.
pub fn f0_track(pcm: &[i16]) -> Vec<Option<f32>> {
    let low: Vec<f32> =
        pcm.chunks(DECIMATE).map(|c| c.iter().map(|&s| f32::from(s)).sum::<f32>() / c.len() as f32).collect();
    let (min_lag, max_lag) = ((RATE / MAX_HZ) as usize, (RATE / MIN_HZ) as usize);
    let window = 2 * max_lag;
    (0..pcm.len().div_ceil(BIN))
        .map(|bin| {
            let centre = (bin * BIN + BIN / 2) / DECIMATE;
            let start = centre.checked_sub(window / 2)?;
            let frame = low.get(start..start + window + max_lag)?;
            let x = &frame[..window];
            let energy: f32 = x.iter().map(|v| v * v).sum();
            if (energy / window as f32).sqrt() < SILENCE_RMS {
                return None;
            }
            let r: Vec<f32> = (min_lag..=max_lag)
                .map(|lag| {
                    let y = &frame[lag..lag + window];
                    let dot: f32 = x.iter().zip(y).map(|(a, b)| a * b).sum();
                    let ey: f32 = y.iter().map(|v| v * v).sum();
                    dot / (energy * ey).sqrt().max(1e-6)
                })
                .collect();
            let best = r.iter().copied().fold(f32::MIN, f32::max);
            // A periodic signal correlates as well at two periods as at one: the first peak
            // near the best is the period (no octave-low errors), refined between lags by a
            // parabola through it and its neighbours.
            let mut i = r.iter().position(|&v| v >= 0.95 * best)?;
            while i + 1 < r.len() && r[i + 1] > r[i] {
                i += 1;
            }
            let (a, b, c) = (r[i.saturating_sub(1)], r[i], r.get(i + 1).copied().unwrap_or(r[i]));
            let denominator = a - 2.0 * b + c;
            let shift = if denominator.abs() > 1e-6 { (0.5 * (a - c) / denominator).clamp(-0.5, 0.5) } else { 0.0 };
            let lag = (min_lag + i) as f32 + shift;
            (best >= VOICED_CORRELATION).then(|| RATE / lag)
        })
        .collect()
}

/// Pitch per 10 ms bin in semitones against the median voiced pitch; unvoiced bins count as 0
/// (the head rests there), and the whole is smoothed over ±150 ms so the head never snaps.
pub fn relative_pitch(pcm: &[i16]) -> Vec<f32> {
    let f0 = f0_track(pcm);
    let mut voiced: Vec<f32> = f0.iter().flatten().copied().collect();
    if voiced.is_empty() {
        return vec![0.0; f0.len()];
    }
    voiced.sort_by(f32::total_cmp);
    let median = voiced[voiced.len() / 2];
    let semitones: Vec<f32> = f0.iter().map(|f| f.map_or(0.0, |hz| 12.0 * (hz / median).log2())).collect();
    (0..semitones.len())
        .map(|i| {
            let near = &semitones[i.saturating_sub(15)..(i + 16).min(semitones.len())];
            near.iter().sum::<f32>() / near.len() as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: impl Fn(f32) -> f32, secs: f32) -> Vec<i16> {
        let mut phase = 0.0f32;
        (0..(secs * MEDIA_RATE as f32) as usize)
            .map(|i| {
                phase += 2.0 * std::f32::consts::PI * hz(i as f32 / MEDIA_RATE as f32) / MEDIA_RATE as f32;
                // A few harmonics, like a voice.
                (6000.0 * (phase.sin() + 0.5 * (2.0 * phase).sin() + 0.25 * (3.0 * phase).sin())) as i16
            })
            .collect()
    }

    #[test]
    fn a_steady_voice_is_found_at_its_pitch_and_silence_is_unvoiced() {
        let mut pcm = tone(|_| 150.0, 0.5);
        pcm.extend(vec![0i16; 24_000]);
        let f0 = f0_track(&pcm);
        let voiced: Vec<f32> = f0[5..40].iter().map(|f| f.expect("voiced")).collect();
        for hz in voiced {
            assert!((hz - 150.0).abs() < 150.0 * 0.03, "{hz} Hz");
        }
        assert!(f0[60..95].iter().all(Option::is_none), "silence is unvoiced");
    }

    #[test]
    fn a_rising_voice_goes_from_below_to_above_its_median() {
        // 100 → 200 Hz over a second: the median is near 141 Hz, ±6 semitones at the ends.
        let pcm = tone(|t| 100.0 * 2f32.powf(t), 1.0);
        let st = relative_pitch(&pcm);
        assert!(st[10] < -3.0, "start {}", st[10]);
        assert!(st[88] > 3.0, "end {}", st[88]);
        assert!(relative_pitch(&[]).is_empty());
        assert!(relative_pitch(&vec![0i16; 4800]).iter().all(|&s| s == 0.0));
    }
}
