//! Pictures for the video thread, in timeline order: one frame drawing on the GPU while the
//! media thread prepares the next tick, and the catch-up policy for when the machine falls
//! behind the clock.
//!
//! Catching up: a tick that starts more than a frame late shows the previous picture again
//! instead of rendering (the timeline, the audio and every timestamp stay exact). Viewers see a
//! repeated frame; without it they would see the player stall while the stream drifts behind
//! real time. At most [`MAX_REPEATS_IN_A_ROW`] ticks in a row repeat, so the picture keeps
//! moving at a third of the frame rate or better even when the machine cannot keep up at all.
//!
//! On the zero-copy path a picture is a slot of the renderer's exported ring, not bytes: the
//! encoder reads it on the GPU. [`SlotsInUse`] keeps the renderer from drawing into a slot the
//! video thread has not encoded yet.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use emcee_renderer::{Pose, Renderer};

/// Ticks in a row that may repeat the previous picture before one is rendered, late or not.
pub const MAX_REPEATS_IN_A_ROW: u32 = 2;

/// Failed ticks that repeat the last picture before the slate goes up: a hiccup passes unseen,
/// a real fault shows the slate within a third of a second. The renderer is then rebuilt.
pub const SLATE_AFTER_FAILED_TICKS: u32 = 10;

/// How long the renderer waits for the encoder to let go of a slot before drawing anyway (a
/// torn frame is better than a frozen stream; only a stuck encoder takes this long).
const SLOT_WAIT: Duration = Duration::from_secs(2);

/// A picture for the video thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    /// I420 bytes read back from the GPU.
    Host(Vec<u8>),
    /// NV12 left in this slot of the exported ring, written once the renderer's timeline
    /// reaches `written_at` (None: written already).
    Slot { slot: usize, written_at: Option<u64> },
}

/// Ticks whose pictures are ready, oldest first.
pub type Ready<A> = Vec<(Tick<A>, Shown)>;

/// Encodes each ring slot still owes: handed over by the media thread, released by the video
/// thread once encoded.
#[derive(Debug, Default)]
pub struct SlotsInUse {
    pending: Mutex<Vec<u32>>,
    released: Condvar,
}

impl SlotsInUse {
    pub fn hand_over(&self, slot: usize) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() <= slot {
            pending.resize(slot + 1, 0);
        }
        pending[slot] += 1;
    }

    pub fn release(&self, slot: usize) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = pending.get_mut(slot) {
            *n = n.saturating_sub(1);
        }
        self.released.notify_all();
    }

    /// Waits until nobody still has to read `slot`; false if `timeout` passed first.
    pub fn wait_free(&self, slot: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        while pending.get(slot).is_some_and(|&n| n > 0) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            pending = self.released.wait_timeout(pending, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }
}

/// A tick's place on the timeline and what travels with its picture (the tick's audio).
pub struct Tick<A> {
    pub index: u64,
    pub media_ts: u64,
    pub with: A,
}

pub struct Frames<A> {
    in_flight: Option<Tick<A>>,
    /// The newest picture: what a repeated tick shows.
    last: Shown,
    /// Set on the zero-copy path.
    slots: Option<Arc<SlotsInUse>>,
    repeats_in_a_row: u32,
    /// Ticks that showed the previous picture (catching up, or the renderer failing).
    pub repeated: u64,
    /// Ticks that showed the slate.
    pub slate_frames: u64,
    /// The slate (I420, made on the CPU): on the zero-copy path too, since the GPU that holds the
    /// ring may be what failed.
    slate: Option<Vec<u8>>,
    /// Consecutive ticks the renderer failed.
    failed_ticks: u32,
    /// The renderer panicked or kept failing: it must be replaced ([`Frames::renderer_replaced`]).
    lost: bool,
}

impl<A> Frames<A> {
    /// `first`: the picture to repeat should the very first render fail; a ring slot on the
    /// zero-copy path, whose slots `slots` then tracks.
    /// `slate`: shown while the renderer is lost.
    pub fn new(first: Shown, slots: Option<Arc<SlotsInUse>>, slate: Option<Vec<u8>>) -> Self {
        Self {
            in_flight: None,
            last: first,
            slots,
            repeats_in_a_row: 0,
            repeated: 0,
            slate_frames: 0,
            slate,
            failed_ticks: 0,
            lost: false,
        }
    }

    /// The renderer panicked or kept failing; ticks show the slate until it is replaced.
    pub fn renderer_lost(&self) -> bool {
        self.lost
    }

    /// A new renderer is in place; ticks render again. `first`: its first picture (what a failed
    /// tick repeats), with `slots` tracking its ring on the zero-copy path, as in [`Frames::new`].
    pub fn renderer_replaced(&mut self, first: Shown, slots: Option<Arc<SlotsInUse>>) {
        tracing::info!(slate_frames = self.slate_frames, "renderer replaced; back on air");
        self.lost = false;
        self.failed_ticks = 0;
        self.last = first;
        self.slots = slots;
    }

    /// Gives `tick` its picture: rendered from `pose`, or the previous one again when the
    /// media thread is `behind`. Pushes every tick whose picture is ready, oldest first.
    pub fn tick(&mut self, renderer: &mut Renderer, tick: Tick<A>, pose: &Pose, behind: bool, ready: &mut Ready<A>) {
        if self.lost {
            // Nothing is asked of a lost renderer: it may have panicked half way through.
            self.fail(renderer, tick, ready);
            return;
        }
        if behind && self.repeats_in_a_row < MAX_REPEATS_IN_A_ROW {
            self.repeats_in_a_row += 1;
            self.repeat(renderer, tick, ready);
            return;
        }
        self.repeats_in_a_row = 0;
        if let (Some(slots), Some(next)) = (&self.slots, renderer.next_slot()) {
            if !slots.wait_free(next, SLOT_WAIT) {
                tracing::error!(slot = next, "the encoder still holds the slot; drawing over it");
            }
        }
        // A panic in the renderer (a driver bug, a bad asset) must not take the stream down.
        let drawing: &mut Renderer = &mut *renderer;
        let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let drawing = drawing; // moved in, so the closure is FnOnce and may return a borrow
            drawing.render_next(pose)
        }));
        let rendered = match rendered {
            Ok(rendered) => rendered,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %what, "the renderer panicked; the slate goes up until it is rebuilt");
                self.lost = true;
                self.fail(renderer, tick, ready);
                return;
            }
        };
        match rendered {
            Ok(previous) => {
                let got_one = previous.is_some();
                if let (Some(bytes), Shown::Host(last)) = (previous, &mut self.last) {
                    last.clear();
                    last.extend_from_slice(bytes);
                }
                if got_one {
                    self.take_slot(renderer);
                }
                if self.failed_ticks > 0 {
                    tracing::info!(failed_ticks = self.failed_ticks, "rendering again");
                    self.failed_ticks = 0;
                }
                if let Some(older) = self.in_flight.replace(tick) {
                    self.push(ready, older);
                }
            }
            Err(e) => {
                if self.failed_ticks == 0 {
                    tracing::error!(error = %e, "render failed; repeating the last frame, then the slate");
                }
                self.fail(renderer, tick, ready);
            }
        }
    }

    /// Never black, never frozen for long: a failed tick repeats the last picture, and once the
    /// renderer is lost the slate shows.
    fn fail(&mut self, renderer: &mut Renderer, tick: Tick<A>, ready: &mut Ready<A>) {
        self.failed_ticks = self.failed_ticks.saturating_add(1);
        if self.failed_ticks >= SLATE_AFTER_FAILED_TICKS && !self.lost {
            tracing::error!("the renderer keeps failing; the slate goes up until it is rebuilt");
            self.lost = true;
        }
        if self.lost {
            // The frame in flight is lost with the renderer: its tick shows the last picture.
            if let Some(older) = self.in_flight.take() {
                self.push(ready, older);
            }
            if let Some(slate) = &self.slate {
                self.slate_frames += 1;
                ready.push((tick, Shown::Host(slate.clone())));
                return;
            }
            self.repeated += 1;
            self.push(ready, tick);
            return;
        }
        self.repeat(renderer, tick, ready);
    }

    /// Reads back the frame in flight; call once after the last tick.
    pub fn finish(&mut self, renderer: &mut Renderer, ready: &mut Ready<A>) {
        let Some(older) = self.in_flight.take() else { return };
        match renderer.flush() {
            Ok(Some(bytes)) => {
                if let Shown::Host(last) = &mut self.last {
                    last.clear();
                    last.extend_from_slice(bytes);
                }
                self.take_slot(renderer);
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "the frame in flight was lost; repeating the one before"),
        }
        self.push(ready, older);
    }

    /// On the zero-copy path, makes the slot just waited for the newest picture.
    fn take_slot(&mut self, renderer: &Renderer) {
        if let (Shown::Slot { slot, written_at }, Some(newest)) = (&mut self.last, renderer.last_slot()) {
            (*slot, *written_at) = (newest, renderer.last_timeline_value());
        }
    }

    fn push(&self, ready: &mut Ready<A>, tick: Tick<A>) {
        if let (Some(slots), Shown::Slot { slot, .. }) = (&self.slots, &self.last) {
            slots.hand_over(*slot);
        }
        ready.push((tick, self.last.clone()));
    }

    fn repeat(&mut self, renderer: &mut Renderer, tick: Tick<A>, ready: &mut Ready<A>) {
        // The frame in flight is older than this tick: it goes first, and is the one repeated.
        self.finish(renderer, ready);
        self.repeated += 1;
        self.push(ready, tick);
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
        let mut frames = Frames::new(Shown::Host(first), None, None);
        let mut ready = Vec::new();
        let mut rendered_alone = Vec::new();
        for (i, &late) in behind.iter().enumerate() {
            let pose = Pose { jaw_open: i as f32 / behind.len() as f32, ..Pose::default() };
            rendered_alone.push(alone.render(&pose).unwrap().to_vec());
            frames.tick(&mut renderer, tick(i as u64), &pose, late, &mut ready);
        }
        frames.finish(&mut renderer, &mut ready);
        let shown = ready
            .into_iter()
            .map(|(t, shown)| match shown {
                Shown::Host(bytes) => (t.with, bytes),
                Shown::Slot { .. } => panic!("the host path shows bytes"),
            })
            .collect();
        Run { shown, repeated: frames.repeated, alone: rendered_alone }
    }

    #[test]
    fn a_slot_is_free_only_once_every_hand_over_is_released() {
        let slots = Arc::new(SlotsInUse::default());
        assert!(slots.wait_free(1, Duration::ZERO), "never handed over");
        slots.hand_over(1);
        slots.hand_over(1);
        assert!(!slots.wait_free(1, Duration::from_millis(20)), "two encodes owed");
        assert!(slots.wait_free(0, Duration::ZERO), "other slots are not held");
        let video = {
            let slots = slots.clone();
            std::thread::spawn(move || {
                for _ in 0..2 {
                    std::thread::sleep(Duration::from_millis(30));
                    slots.release(1);
                }
            })
        };
        assert!(slots.wait_free(1, Duration::from_secs(5)), "released by the video thread");
        video.join().unwrap();
    }

    #[test]
    fn on_the_zero_copy_path_ticks_show_ring_slots_and_wait_for_the_encoder() {
        use emcee_renderer::FrameOutput;
        let mut renderer = Renderer::builtin_with_output(W, H, [10, 20, 30], FrameOutput::ExportedNv12).unwrap();
        renderer.render(&Pose::default()).unwrap();
        let first = renderer.last_slot().expect("a slot holds the first frame");
        let slots = Arc::new(SlotsInUse::default());
        let mut frames = Frames::new(Shown::Slot { slot: first, written_at: None }, Some(slots.clone()), None);
        let (tx, rx) = std::sync::mpsc::channel::<usize>();
        // A slow encoder: every slot is held 15 ms after it is handed over.
        let encoder = {
            let slots = slots.clone();
            std::thread::spawn(move || {
                let mut encoded = Vec::new();
                for slot in rx {
                    std::thread::sleep(Duration::from_millis(15));
                    encoded.push(slot);
                    slots.release(slot);
                }
                encoded
            })
        };
        let behind = [false, false, true, false, false, false];
        let mut ready = Vec::new();
        let mut order = Vec::new();
        for (i, &late) in behind.iter().enumerate() {
            let drawn_into = renderer.next_slot();
            frames.tick(&mut renderer, tick(i as u64), &Pose::default(), late, &mut ready);
            if let (false, Some(slot)) = (late, drawn_into) {
                // Nothing hands the slot just drawn into over before its frame is ready, so it
                // is still free exactly when the renderer waited for the encoder to let go.
                assert!(slots.wait_free(slot, Duration::ZERO), "tick {i} drew into slot {slot} while it was encoded");
            }
            for (t, shown) in ready.drain(..) {
                let Shown::Slot { slot, .. } = shown else {
                    panic!("tick {} shows bytes on the zero-copy path", t.index)
                };
                order.push((t.index, slot));
                tx.send(slot).unwrap();
            }
        }
        frames.finish(&mut renderer, &mut ready);
        for (t, shown) in ready.drain(..) {
            let Shown::Slot { slot, .. } = shown else { panic!("bytes") };
            order.push((t.index, slot));
            tx.send(slot).unwrap();
        }
        drop(tx);
        let encoded = encoder.join().unwrap();
        assert_eq!(order.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4, 5]);
        // Tick 2 was late and repeats tick 1's slot; the others each show a freshly drawn slot.
        assert_eq!(order[2].1, order[1].1);
        assert_eq!(frames.repeated, 1);
        assert_eq!(encoded.len(), 6);
        assert!(slots.wait_free(0, Duration::ZERO) && slots.wait_free(1, Duration::ZERO), "all released");
    }

    #[test]
    fn a_lost_renderer_gives_the_slate_until_it_is_replaced_and_a_panic_does_too() {
        let mut renderer = Renderer::new(W, H, [10, 20, 30]).unwrap();
        let first = renderer.render(&Pose::default()).unwrap().to_vec();
        let slate = vec![77u8; first.len()];
        let mut frames = Frames::new(Shown::Host(first), None, Some(slate.clone()));
        let mut shown = Vec::new();
        fn run(frames: &mut Frames<u64>, renderer: &mut Renderer, from: u64, n: u64, shown: &mut Vec<(u64, Shown)>) {
            let mut ready = Vec::new();
            for i in from..from + n {
                frames.tick(renderer, tick(i), &Pose::default(), false, &mut ready);
                shown.extend(ready.drain(..).map(|(t, s)| (t.index, s)));
            }
        }
        run(&mut frames, &mut renderer, 0, 5, &mut shown);
        renderer.simulate_device_loss();
        run(&mut frames, &mut renderer, 5, 20, &mut shown);
        assert!(frames.renderer_lost());
        let is_slate = |s: &Shown| *s == Shown::Host(slate.clone());
        let first_slate = shown.iter().position(|(_, s)| is_slate(s)).expect("the slate went up");
        // Ticks 0..=3 rendered; 4 was in flight; the failed ticks repeat until the slate.
        assert_eq!(shown[first_slate].0, 5 + u64::from(SLATE_AFTER_FAILED_TICKS) - 1);
        assert!(shown[first_slate..].iter().all(|(_, s)| is_slate(s)));
        assert_eq!(frames.slate_frames, (shown.len() - first_slate) as u64);

        let mut renderer = Renderer::new(W, H, [10, 20, 30]).unwrap();
        frames.renderer_replaced(Shown::Host(renderer.render(&Pose::default()).unwrap().to_vec()), None);
        let before = shown.len();
        run(&mut frames, &mut renderer, 25, 5, &mut shown);
        assert!(shown[before + 1..].iter().all(|(_, s)| !is_slate(s)), "rendering again");

        renderer.simulate_panic();
        run(&mut frames, &mut renderer, 30, 3, &mut shown);
        assert!(frames.renderer_lost(), "a panic loses the renderer at once");
        assert!(is_slate(&shown.last().unwrap().1));
        // Every tick got exactly one picture, in order.
        assert_eq!(shown.iter().map(|(i, _)| *i).collect::<Vec<_>>(), (0..shown.len() as u64).collect::<Vec<_>>());
    }

    #[test]
    fn on_the_zero_copy_path_a_lost_renderer_gives_the_slate_from_the_host_and_its_replacement_may_differ() {
        use emcee_renderer::FrameOutput;
        let mut renderer = Renderer::builtin_with_output(W, H, [10, 20, 30], FrameOutput::ExportedNv12).unwrap();
        renderer.render(&Pose::default()).unwrap();
        let slots = Arc::new(SlotsInUse::default());
        let first = Shown::Slot { slot: renderer.last_slot().unwrap(), written_at: None };
        let slate = vec![77u8; emcee_renderer::i420_len(W, H)];
        let mut frames = Frames::new(first, Some(slots.clone()), Some(slate.clone()));
        let mut shown = Vec::new();
        /// Ticks `ticks`; every slot handed over is encoded (released) at once.
        fn run(
            frames: &mut Frames<u64>,
            renderer: &mut Renderer,
            ticks: std::ops::Range<u64>,
            slots: &SlotsInUse,
            shown: &mut Vec<(u64, Shown)>,
        ) {
            let mut ready = Vec::new();
            for i in ticks {
                frames.tick(renderer, tick(i), &Pose::default(), false, &mut ready);
                for (t, s) in ready.drain(..) {
                    if let Shown::Slot { slot, .. } = s {
                        slots.release(slot);
                    }
                    shown.push((t.index, s));
                }
            }
        }
        run(&mut frames, &mut renderer, 0..4, &slots, &mut shown);
        renderer.simulate_device_loss();
        run(&mut frames, &mut renderer, 4..20, &slots, &mut shown);
        assert!(frames.renderer_lost());
        let slate_from = shown.iter().position(|(_, s)| *s == Shown::Host(slate.clone())).expect("the slate went up");
        assert!(shown[..slate_from].iter().all(|(_, s)| matches!(s, Shown::Slot { .. })), "ring slots before it");
        assert!(shown[slate_from..].iter().all(|(_, s)| *s == Shown::Host(slate.clone())));

        // The replacement may take the host path (the GPU that held the ring is gone).
        let mut host = Renderer::new(W, H, [10, 20, 30]).unwrap();
        frames.renderer_replaced(Shown::Host(host.render(&Pose::default()).unwrap().to_vec()), None);
        run(&mut frames, &mut host, 20..24, &slots, &mut shown);
        let after: Vec<_> = shown.iter().filter(|(i, _)| *i >= 21).collect();
        assert!(
            !after.is_empty() && after.iter().all(|(_, s)| matches!(s, Shown::Host(b) if *b != slate)),
            "rendered again"
        );
        assert_eq!(shown.iter().map(|(i, _)| *i).collect::<Vec<_>>(), (0..shown.len() as u64).collect::<Vec<_>>());
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
