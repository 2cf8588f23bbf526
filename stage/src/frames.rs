//! Pictures for the video thread, in timeline order: one frame drawing on the GPU while the
//! media thread prepares the next tick, and the catch-up policy for when the machine falls
//! behind the clock.
//!
//! Catching up: a tick that starts more than a frame late shows the previous picture again
//! instead of rendering (the timeline, the audio and every timestamp stay exact). Viewers see a
//! repeated frame; without it they would see the player stall while the stream drifts behind
//! real time. At most [`MAX_REPEATS_IN_A_ROW`] ticks in a row repeat, so the picture keeps
//! moving at a third of the frame rate or better even when the machine cannot keep up at all.

use emcee_renderer::{Pose, Renderer};

/// Ticks in a row that may repeat the previous picture before one is rendered, late or not.
pub const MAX_REPEATS_IN_A_ROW: u32 = 2;

/// Ticks whose pictures are ready, oldest first, with their I420 bytes.
pub type Ready<A> = Vec<(Tick<A>, Vec<u8>)>;

/// A tick's place on the timeline and what travels with its picture (the tick's audio).
pub struct Tick<A> {
    pub index: u64,
    pub media_ts: u64,
    pub with: A,
}

pub struct Frames<A> {
    in_flight: Option<Tick<A>>,
    /// The newest picture read back: what a repeated tick shows.
    last: Vec<u8>,
    repeats_in_a_row: u32,
    /// Ticks that showed the previous picture (catching up, or the renderer failing).
    pub repeated: u64,
    failing: bool,
}

impl<A> Frames<A> {
    /// `first`: the picture to repeat should the very first render fail.
    pub fn new(first: Vec<u8>) -> Self {
        Self { in_flight: None, last: first, repeats_in_a_row: 0, repeated: 0, failing: false }
    }

    /// Gives `tick` its picture: rendered from `pose`, or the previous one again when the
    /// media thread is `behind`. Pushes every tick whose picture is ready, oldest first.
    pub fn tick(&mut self, renderer: &mut Renderer, tick: Tick<A>, pose: &Pose, behind: bool, ready: &mut Ready<A>) {
        if behind && self.repeats_in_a_row < MAX_REPEATS_IN_A_ROW {
            self.repeats_in_a_row += 1;
            self.repeat(renderer, tick, ready);
            return;
        }
        self.repeats_in_a_row = 0;
        match renderer.render_next(pose) {
            Ok(previous) => {
                if let Some(bytes) = previous {
                    self.last.clear();
                    self.last.extend_from_slice(bytes);
                }
                if self.failing {
                    tracing::info!("rendering again");
                    self.failing = false;
                }
                if let Some(older) = self.in_flight.replace(tick) {
                    ready.push((older, self.last.clone()));
                }
            }
            Err(e) => {
                // Never black: the last good picture holds while the renderer fails.
                if !self.failing {
                    tracing::error!(error = %e, "render failed; repeating the last frame until it renders again");
                    self.failing = true;
                }
                self.repeat(renderer, tick, ready);
            }
        }
    }

    /// Reads back the frame in flight; call once after the last tick.
    pub fn finish(&mut self, renderer: &mut Renderer, ready: &mut Ready<A>) {
        let Some(older) = self.in_flight.take() else { return };
        match renderer.flush() {
            Ok(Some(bytes)) => {
                self.last.clear();
                self.last.extend_from_slice(bytes);
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "the frame in flight was lost; repeating the one before"),
        }
        ready.push((older, self.last.clone()));
    }

    fn repeat(&mut self, renderer: &mut Renderer, tick: Tick<A>, ready: &mut Ready<A>) {
        // The frame in flight is older than this tick: it goes first, and is the one repeated.
        self.finish(renderer, ready);
        self.repeated += 1;
        ready.push((tick, self.last.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u32 = 64;
    const H: u32 = 32;

    fn tick(index: u64) -> Tick<u64> {
        Tick { index, media_ts: index * 1600, with: index }
    }

    /// What a run of ticks showed: (tick, picture) in order, how many repeated, and each
    /// tick's pose rendered on its own.
    struct Run {
        shown: Vec<(u64, Vec<u8>)>,
        repeated: u64,
        alone: Vec<Vec<u8>>,
    }

    fn run(behind: &[bool]) -> Run {
        let mut renderer = Renderer::new(W, H, [10, 20, 30]).expect("a Vulkan device (lavapipe) is installed");
        let mut alone = Renderer::new(W, H, [10, 20, 30]).unwrap();
        let first = alone.render(&Pose::default()).unwrap().to_vec();
        let mut frames = Frames::new(first);
        let mut ready = Vec::new();
        let mut rendered_alone = Vec::new();
        for (i, &late) in behind.iter().enumerate() {
            let pose = Pose { jaw_open: i as f32 / behind.len() as f32, ..Pose::default() };
            rendered_alone.push(alone.render(&pose).unwrap().to_vec());
            frames.tick(&mut renderer, tick(i as u64), &pose, late, &mut ready);
        }
        frames.finish(&mut renderer, &mut ready);
        let shown = ready.into_iter().map(|(t, bytes)| (t.with, bytes)).collect();
        Run { shown, repeated: frames.repeated, alone: rendered_alone }
    }

    #[test]
    fn every_tick_gets_its_own_frame_in_order_when_on_time() {
        let Run { shown: out, repeated, alone } = run(&[false; 5]);
        assert_eq!(out.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        assert_eq!(repeated, 0);
        for (i, (_, bytes)) in out.iter().enumerate() {
            assert!(bytes == &alone[i], "tick {i} shows its own pose");
        }
    }

    #[test]
    fn late_ticks_repeat_the_previous_picture_but_never_more_than_twice_in_a_row() {
        let behind = [false, true, true, true, true, false];
        let Run { shown: out, repeated, alone } = run(&behind);
        // Every tick is there, in order, exactly once.
        assert_eq!(out.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4, 5]);
        // 1 and 2 repeat 0; 3 renders anyway (two repeats in a row); 4 repeats 3.
        assert_eq!(repeated, 3);
        let shows = |tick: usize, pose: usize| out[tick].1 == alone[pose];
        assert!(shows(0, 0) && shows(1, 0) && shows(2, 0) && shows(3, 3) && shows(4, 3) && shows(5, 5));
    }
}
