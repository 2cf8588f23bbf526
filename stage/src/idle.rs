//! Idle life: blinks, saccades, slow head sway and breathing, as pure functions of the media time so any
//! frame can be re-rendered identically.

use emcee_protocol::MEDIA_CLOCK_HZ as SECOND;

const BLINK_LEN: u64 = SECOND * 3 / 20; // 150 ms

/// A deterministic pseudo-random value in 0..1 for blink number `n`.
fn unit_hash(n: u64) -> f32 {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    (x >> 40) as f32 / (1u64 << 24) as f32
}

/// Eyelid closure (0 open … 1 closed) at `media_ts`. Blinks come every 2.5–5.5 s.
pub fn blink(media_ts: u64) -> f32 {
    // Walk the blink schedule from a nearby anchor: each 6 s window holds one blink at a
    // pseudo-random offset, so the look-up is O(1) for any time.
    let window = 6 * SECOND;
    let n = media_ts / window;
    let start = n * window + (unit_hash(n) * 3.0 * SECOND as f32) as u64 + SECOND / 2;
    if media_ts < start || media_ts >= start + BLINK_LEN {
        return 0.0;
    }
    let phase = (media_ts - start) as f32 / BLINK_LEN as f32;
    // Fast close, slower open.
    if phase < 0.4 {
        phase / 0.4
    } else {
        1.0 - (phase - 0.4) / 0.6
    }
}

/// (yaw, pitch, roll) in radians: a slow, small sway made of incommensurate sines.
pub fn head_sway(media_ts: u64) -> (f32, f32, f32) {
    let t = media_ts as f64 / SECOND as f64;
    let yaw = 0.035 * (t * 0.23 * std::f64::consts::TAU).sin() + 0.015 * (t * 0.61 * std::f64::consts::TAU).sin();
    let pitch = 0.02 * (t * 0.17 * std::f64::consts::TAU + 1.0).sin();
    let roll = 0.015 * (t * 0.13 * std::f64::consts::TAU + 2.0).sin();
    (yaw as f32, pitch as f32, roll as f32)
}

/// Where the eyes look (yaw, pitch in radians): they rest on the camera and make small
/// saccades — a quick jump (40 ms) to a nearby point every 0.6–2.4 s, held, with a faint
/// drift — as people's eyes do while they talk.
pub fn gaze(media_ts: u64) -> (f32, f32) {
    let k = fixation_at(media_ts / FIXATION_SLOT);
    let target = |k: u64| {
        if k == 0 {
            return (0.0, 0.0); // the show opens looking at the camera
        }
        // Mostly near the camera, now and then a little further.
        let reach = if unit_hash(k ^ 0x5A5A) < 0.8 { 0.06 } else { 0.14 };
        ((unit_hash(k ^ 0x1111) - 0.5) * 2.0 * reach, (unit_hash(k ^ 0x2222) - 0.5) * reach)
    };
    let (from, to) = (target(fixation_at(k.saturating_sub(1))), target(k));
    let since = media_ts - k * FIXATION_SLOT;
    let jump = SECOND / 25; // 40 ms
    let a = (since as f32 / jump as f32).min(1.0);
    let t = media_ts as f64 / SECOND as f64;
    let drift = (0.004 * (t * 1.7).sin()) as f32;
    (from.0 + (to.0 - from.0) * a + drift, from.1 + (to.1 - from.1) * a)
}

/// Fixations start on 0.6 s slots: pseudo-randomly (about every 1.5 s), and at least every
/// fourth slot, so the current one is found in O(1) for any time.
const FIXATION_SLOT: u64 = SECOND * 3 / 5;

/// The slot where the fixation holding in `slot` began.
fn fixation_at(slot: u64) -> u64 {
    let starts = |k: u64| k.is_multiple_of(4) || unit_hash(k ^ 0xA5A5) < 0.4;
    (0..4).map(|back| slot.saturating_sub(back)).find(|&k| starts(k)).unwrap_or(0)
}

/// Breathing at 0.25 Hz, −1 … 1.
pub fn breath(media_ts: u64) -> f32 {
    let t = media_ts as f64 / SECOND as f64;
    (t * 0.25 * std::f64::consts::TAU).sin() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blinks_happen_every_few_seconds_and_are_brief() {
        let step = SECOND / 100;
        let closed: Vec<u64> = (0..60 * 100).map(|i| i * step).filter(|&t| blink(t) > 0.5).collect();
        // Count separate blinks in one minute.
        let blinks = 1 + closed.windows(2).filter(|w| w[1] - w[0] > step).count();
        assert!((8..=14).contains(&blinks), "{blinks} blinks per minute");
        assert!(closed.len() < 60 * 100 / 20, "eyes closed too often");
    }

    #[test]
    fn saccades_are_quick_jumps_between_steady_fixations() {
        let step = SECOND / 100; // 10 ms
        let gaze: Vec<(f32, f32)> = (0..60 * 100).map(|i| super::gaze(i * step)).collect();
        let moves: Vec<f32> = gaze.windows(2).map(|w| (w[1].0 - w[0].0).abs() + (w[1].1 - w[0].1).abs()).collect();
        // A saccade moves fast (more than 0.005 rad in 10 ms); count them in a minute.
        let fast: Vec<usize> = (0..moves.len()).filter(|&i| moves[i] > 0.005).collect();
        let saccades = fast.windows(2).filter(|w| w[1] - w[0] > 5).count() + usize::from(!fast.is_empty());
        assert!((15..=70).contains(&saccades), "{saccades} saccades per minute");
        assert!(gaze.iter().all(|g| g.0.abs() < 0.16 && g.1.abs() < 0.08), "small, near the camera");
    }

    #[test]
    fn sway_is_small() {
        for i in 0..1000 {
            let (y, p, r) = head_sway(i * 4800);
            assert!(y.abs() < 0.06 && p.abs() < 0.03 && r.abs() < 0.02);
        }
    }
}
