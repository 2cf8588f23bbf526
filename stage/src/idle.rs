//! Idle life: blinks, slow head sway and breathing, as pure functions of the media time so any
//! frame can be re-rendered identically.

/// 48 kHz samples.
const SECOND: u64 = 48_000;
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
    fn sway_is_small() {
        for i in 0..1000 {
            let (y, p, r) = head_sway(i * 4800);
            assert!(y.abs() < 0.06 && p.abs() < 0.03 && r.abs() < 0.02);
        }
    }
}
