//! Rational-ratio windowed-sinc resampling (e.g. espeak's 22 050 Hz → the 48 kHz media clock).
//!
//! Output sample `k` sits at input position `k·M/L` (ratio L/M in lowest terms); each of the L
//! phases has its own precomputed filter, so the inner loop is a short dot product.

const TAPS_PER_SIDE: usize = 16;

pub struct Resampler {
    up: u64,
    down: u64,
    /// `up` filters of `2·TAPS_PER_SIDE` taps, indexed by output phase.
    filters: Vec<[f32; 2 * TAPS_PER_SIDE]>,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Resampler {
    /// A resampler from `from_hz` to `to_hz`; `None` if either is zero.
    pub fn new(from_hz: u32, to_hz: u32) -> Option<Self> {
        if from_hz == 0 || to_hz == 0 {
            return None;
        }
        let g = gcd(u64::from(from_hz), u64::from(to_hz));
        let (up, down) = (u64::from(to_hz) / g, u64::from(from_hz) / g);
        // Cut off just below the lower of the two Nyquist frequencies, in input-sample units.
        let cutoff = 0.95 * (up as f64 / down as f64).min(1.0) * 0.5;
        let filters = (0..up)
            .map(|phase| {
                let frac = phase as f64 / up as f64;
                let mut taps = [0f32; 2 * TAPS_PER_SIDE];
                let mut sum = 0.0;
                for (i, tap) in taps.iter_mut().enumerate() {
                    // Tap i multiplies input sample (base - TAPS_PER_SIDE + 1 + i).
                    let x = (i as f64 - (TAPS_PER_SIDE as f64 - 1.0)) - frac;
                    let sinc = if x.abs() < 1e-12 {
                        2.0 * cutoff
                    } else {
                        (2.0 * std::f64::consts::PI * cutoff * x).sin() / (std::f64::consts::PI * x)
                    };
                    let w = x / TAPS_PER_SIDE as f64;
                    let window = if w.abs() >= 1.0 { 0.0 } else { 0.5 * (1.0 + (std::f64::consts::PI * w).cos()) };
                    *tap = (sinc * window) as f32;
                    sum += sinc * window;
                }
                // Unity gain at DC for every phase.
                for tap in &mut taps {
                    *tap = (*tap as f64 / sum) as f32;
                }
                taps
            })
            .collect();
        Some(Self { up, down, filters })
    }

    /// Number of output samples for `input_len` input samples.
    pub fn output_len(&self, input_len: usize) -> usize {
        (input_len as u64 * self.up / self.down) as usize
    }

    /// Maps an input sample position to the output clock (exact integer arithmetic).
    pub fn map_position(&self, input_pos: u64) -> u64 {
        input_pos * self.up / self.down
    }

    /// Resamples a whole mono buffer.
    pub fn process(&self, input: &[i16]) -> Vec<i16> {
        let n_out = self.output_len(input.len());
        let mut out = Vec::with_capacity(n_out);
        let sample = |i: i64| -> f32 {
            if i < 0 || i as usize >= input.len() {
                0.0
            } else {
                f32::from(input[i as usize])
            }
        };
        for k in 0..n_out as u64 {
            let pos = k * self.down;
            let base = (pos / self.up) as i64;
            let phase = (pos % self.up) as usize;
            let taps = &self.filters[phase];
            let first = base - TAPS_PER_SIDE as i64 + 1;
            let acc: f32 = taps.iter().enumerate().map(|(i, t)| t * sample(first + i as i64)).sum();
            out.push(acc.round().clamp(-32768.0, 32767.0) as i16);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f64, n: usize) -> Vec<i16> {
        (0..n).map(|i| ((i as f64 * hz * std::f64::consts::TAU / rate as f64).sin() * 10_000.0) as i16).collect()
    }

    #[test]
    fn espeak_rate_to_media_clock_keeps_a_tone() {
        let r = Resampler::new(22_050, 48_000).unwrap();
        let input = tone(22_050, 1000.0, 22_050);
        let out = r.process(&input);
        assert_eq!(out.len(), 48_000);
        let expected = tone(48_000, 1000.0, 48_000);
        // Away from the edges the output matches a tone generated at 48 kHz.
        let max_err = out[100..47_900].iter().zip(&expected[100..47_900]).map(|(a, b)| (a - b).abs()).max().unwrap();
        assert!(max_err < 200, "max error {max_err}");
    }

    #[test]
    fn positions_map_exactly() {
        let r = Resampler::new(22_050, 48_000).unwrap();
        assert_eq!(r.map_position(22_050), 48_000);
        assert_eq!(r.map_position(147), 320);
        assert!(Resampler::new(0, 48_000).is_none());
    }
}
