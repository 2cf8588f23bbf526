//! Actions on the media clock: what marks make the avatar do, by modality policy.
//!
//! - **Expressions replace**: one at a time; a new one cross-fades from wherever the face is
//!   (no jump, even mid-fade) and the one it replaces finishes with `was_stopped`.
//! - **Gestures run in parallel**: each plays its own envelope to its end, adding to the head
//!   motion of the others and of the idle sway; a cut in the speech does not cut them.
//! - **Cards**: one up at a time (`card:show:SKU` replaces, `card:hide` takes it down).
//!
//! Pure functions of media time, like [`crate::idle`], so every frame can be rendered again
//! identically; lifecycle events (`action_started`, `action_finished`) come out in media order.

use emcee_protocol::action::{Action, Expression, Gesture};
use emcee_protocol::{StageEvent, MEDIA_CLOCK_HZ};

/// How long an expression takes to blend in (250 ms).
const EXPRESSION_FADE: u64 = MEDIA_CLOCK_HZ / 4;

fn gesture_length(g: Gesture) -> u64 {
    match g {
        Gesture::Nod => MEDIA_CLOCK_HZ * 9 / 10,
        Gesture::Shake => MEDIA_CLOCK_HZ * 11 / 10,
        Gesture::Tilt => MEDIA_CLOCK_HZ * 8 / 5,
        Gesture::Wave => MEDIA_CLOCK_HZ * 12 / 5,
    }
}

fn smoothstep(x: f32) -> f32 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

/// Head offsets (yaw, pitch, roll in radians) of gesture `g` at phase `t` in 0…1.
fn gesture_offsets(g: Gesture, t: f32) -> (f32, f32, f32) {
    use std::f32::consts::{PI, TAU};
    let swell = (PI * t).sin();
    match g {
        Gesture::Nod => (0.0, 0.11 * (TAU * 2.0 * t).sin().abs() * swell, 0.0),
        Gesture::Shake => (0.13 * (TAU * 2.0 * t).sin() * swell, 0.0, 0.0),
        // In over a quarter, hold, out over the last quarter.
        Gesture::Tilt => (0.0, 0.0, 0.12 * smoothstep(t * 4.0).min(smoothstep((1.0 - t) * 4.0))),
        // A friendly lean towards the raised hand.
        Gesture::Wave => (0.0, 0.0, -0.05 * hold(t)),
    }
}

/// Up over the first fifth, held, down over the last fifth.
fn hold(t: f32) -> f32 {
    smoothstep(t * 5.0).min(smoothstep((1.0 - t) * 5.0))
}

/// (raise, swing) of the right arm for gesture `g` at phase `t`.
fn arm_offsets(g: Gesture, t: f32) -> (f32, f32) {
    match g {
        // Three swings of the hand while it is up.
        Gesture::Wave => (hold(t), (std::f32::consts::TAU * 3.0 * t).sin()),
        _ => (0.0, 0.0),
    }
}

/// What the actions add to the pose at one media time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ActionPose {
    pub smile: f32,
    pub head_yaw: f32,
    pub head_pitch: f32,
    pub head_roll: f32,
    pub arm_raise: f32,
    pub arm_swing: f32,
}

/// An action that runs: what, which mark and cue started it, and when.
struct Current<T> {
    value: T,
    name: String,
    cue: String,
    since: u64,
}

impl Current<()> {
    fn with<T>(self, value: T) -> Current<T> {
        Current { value, name: self.name, cue: self.cue, since: self.since }
    }
}

impl<T> Current<T> {
    fn finished(self, at: u64, was_stopped: bool) -> StageEvent {
        StageEvent::ActionFinished { id: self.cue, action: self.name, was_stopped, media_ts: at }
    }
}

#[derive(Default)]
pub struct Actions {
    expression: Option<Current<Expression>>,
    /// The smile weight the current expression fades from.
    smile_from: f32,
    gestures: Vec<Current<Gesture>>,
    card: Option<Current<String>>,
}

impl Actions {
    /// Performs the action of mark `name` of cue `cue`, reached at `at`. Plain marks and
    /// unknown actions do nothing (the control plane checks scripts before they get here).
    pub fn mark(&mut self, cue: &str, name: &str, at: u64, events: &mut Vec<StageEvent>) {
        let Ok(Some(action)) = Action::from_mark(name) else { return };
        // Taking the card down is instant: it starts and finishes at once.
        let instant = action == Action::HideCard;
        let begun = Current { value: (), name: name.to_string(), cue: cue.to_string(), since: at };
        let replaced = match action {
            Action::Expression(e) => {
                self.smile_from = self.pose(at).smile;
                self.expression.replace(begun.with(e)).map(|old| old.finished(at, true))
            }
            Action::Gesture(g) => {
                self.gestures.push(begun.with(g));
                None
            }
            Action::ShowCard { sku } => self.card.replace(begun.with(sku)).map(|old| old.finished(at, true)),
            Action::HideCard => self.card.take().map(|old| old.finished(at, true)),
        };
        events.extend(replaced);
        events.push(StageEvent::ActionStarted { id: cue.to_string(), action: name.to_string(), media_ts: at });
        if instant {
            events.push(StageEvent::ActionFinished {
                id: cue.to_string(),
                action: name.to_string(),
                was_stopped: false,
                media_ts: at,
            });
        }
    }

    /// Gestures that have played out by `at` finish.
    pub fn advance(&mut self, at: u64, events: &mut Vec<StageEvent>) {
        let (done, running): (Vec<_>, Vec<_>) =
            self.gestures.drain(..).partition(|g| at >= g.since + gesture_length(g.value));
        self.gestures = running;
        events.extend(done.into_iter().map(|g| {
            let end = g.since + gesture_length(g.value);
            g.finished(end, false)
        }));
    }

    /// The end of the show: whatever still runs is stopped.
    pub fn end(&mut self, at: u64, events: &mut Vec<StageEvent>) {
        self.advance(at, events);
        let gestures = self.gestures.drain(..).map(|g| g.finished(at, true));
        let expression = self.expression.take().map(|e| e.finished(at, true));
        let card = self.card.take().map(|c| c.finished(at, true));
        events.extend(gestures.chain(expression).chain(card));
    }

    /// The SKU of the product card up now.
    pub fn card(&self) -> Option<&str> {
        self.card.as_ref().map(|c| c.value.as_str())
    }

    /// The actions' contribution to the pose at `at`.
    pub fn pose(&self, at: u64) -> ActionPose {
        let mut pose = ActionPose::default();
        if let Some(e) = &self.expression {
            let t = at.saturating_sub(e.since) as f32 / EXPRESSION_FADE as f32;
            pose.smile = self.smile_from + (e.value.smile() - self.smile_from) * smoothstep(t);
        }
        for g in &self.gestures {
            let t = at.saturating_sub(g.since) as f32 / gesture_length(g.value) as f32;
            if t < 1.0 {
                let (yaw, pitch, roll) = gesture_offsets(g.value, t);
                pose.head_yaw += yaw;
                pose.head_pitch += pitch;
                pose.head_roll += roll;
                let (raise, swing) = arm_offsets(g.value, t);
                if raise > pose.arm_raise {
                    (pose.arm_raise, pose.arm_swing) = (raise, swing);
                }
            }
        }
        // Overlapping gestures add up, but never past a natural range.
        pose.head_yaw = pose.head_yaw.clamp(-0.25, 0.25);
        pose.head_pitch = pose.head_pitch.clamp(-0.2, 0.2);
        pose.head_roll = pose.head_roll.clamp(-0.2, 0.2);
        pose
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_wave_raises_the_hand_swings_it_and_lowers_it() {
        let mut a = Actions::default();
        let mut events = Vec::new();
        a.mark("s1", "gesture:wave", 0, &mut events);
        let raise = |t: u64| a.pose(t * MEDIA_CLOCK_HZ / 1000).arm_raise;
        assert_eq!(raise(0), 0.0);
        assert!(raise(1200) > 0.99, "up in the middle");
        let swings: Vec<f32> = (600..1800).step_by(20).map(|ms| a.pose(ms * MEDIA_CLOCK_HZ / 1000).arm_swing).collect();
        assert!(swings.iter().any(|&s| s > 0.9) && swings.iter().any(|&s| s < -0.9), "it swings both ways");
        a.advance(2400 * MEDIA_CLOCK_HZ / 1000, &mut events);
        assert!(events.iter().any(|e| matches!(e, StageEvent::ActionFinished { was_stopped: false, .. })));
        assert_eq!(a.pose(2400 * MEDIA_CLOCK_HZ / 1000).arm_raise, 0.0, "down again");
    }

    use super::*;

    const MS: u64 = MEDIA_CLOCK_HZ / 1000;

    fn names(events: &[StageEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                StageEvent::ActionStarted { action, .. } => format!("started {action}"),
                StageEvent::ActionFinished { action, was_stopped, .. } => {
                    format!("{} {action}", if *was_stopped { "stopped" } else { "finished" })
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn an_expression_replaces_the_last_and_blends_without_a_jump() {
        let (mut a, mut ev) = (Actions::default(), Vec::new());
        a.mark("s1", "expression:smile", 0, &mut ev);
        assert!(a.pose(0).smile.abs() < 1e-6, "blends in from neutral");
        assert!((a.pose(300 * MS).smile - 0.6).abs() < 1e-6);
        // Mid-way through the next blend, a third expression starts from where the face is.
        a.mark("s1", "expression:sad", 1000 * MS, &mut ev);
        let mid = a.pose(1100 * MS).smile;
        a.mark("s2", "expression:happy", 1100 * MS, &mut ev);
        assert!((a.pose(1100 * MS).smile - mid).abs() < 1e-6, "no jump");
        assert!((a.pose(1400 * MS).smile - 1.0).abs() < 1e-6);
        assert_eq!(
            names(&ev),
            [
                "started expression:smile",
                "stopped expression:smile",
                "started expression:sad",
                "stopped expression:sad",
                "started expression:happy"
            ]
        );
    }

    #[test]
    fn gestures_run_in_parallel_and_finish_by_themselves() {
        let (mut a, mut ev) = (Actions::default(), Vec::new());
        a.mark("s1", "expression:smile", 0, &mut ev);
        a.mark("s1", "gesture:shake", 0, &mut ev);
        a.mark("s1", "gesture:nod", 200 * MS, &mut ev);
        let both = a.pose(400 * MS);
        assert!(both.head_yaw.abs() > 0.02 && both.head_pitch.abs() > 0.02, "{both:?}");
        assert!((a.pose(400 * MS).smile - 0.6).abs() < 1e-6, "gestures leave the expression alone");
        a.advance(1000 * MS, &mut ev);
        a.advance(1200 * MS, &mut ev);
        let finished: Vec<(String, u64)> = ev
            .iter()
            .filter_map(|e| match e {
                StageEvent::ActionFinished { action, media_ts, was_stopped: false, .. } => {
                    Some((action.clone(), *media_ts / MS))
                }
                _ => None,
            })
            .collect();
        assert_eq!(finished, [("gesture:shake".to_string(), 1100), ("gesture:nod".to_string(), 1100)]);
        let rest = a.pose(1200 * MS);
        assert_eq!((rest.head_yaw, rest.head_pitch, rest.head_roll), (0.0, 0.0, 0.0));
    }

    #[test]
    fn gestures_stay_in_a_natural_range_and_start_and_end_at_rest() {
        for g in ["gesture:nod", "gesture:shake", "gesture:tilt"] {
            let mut a = Actions::default();
            a.mark("s", g, 0, &mut Vec::new());
            a.mark("s", g, 0, &mut Vec::new());
            a.mark("s", g, 0, &mut Vec::new());
            let start = a.pose(0);
            assert_eq!((start.head_yaw, start.head_pitch, start.head_roll), (0.0, 0.0, 0.0), "{g}");
            for ms in (0..2000).step_by(10) {
                let p = a.pose(ms * MS);
                assert!(p.head_yaw.abs() <= 0.25 && p.head_pitch.abs() <= 0.2 && p.head_roll.abs() <= 0.2, "{g} {p:?}");
            }
        }
    }

    #[test]
    fn one_card_at_a_time_and_the_end_stops_what_runs() {
        let (mut a, mut ev) = (Actions::default(), Vec::new());
        a.mark("s1", "card:show:A", 0, &mut ev);
        a.mark("s2", "card:show:B", 100, &mut ev);
        assert_eq!(a.card(), Some("B"));
        a.mark("s2", "card:hide", 200, &mut ev);
        assert_eq!(a.card(), None);
        a.mark("s3", "gesture:tilt", 300, &mut ev);
        a.mark("s3", "plain-marker", 300, &mut ev);
        a.end(400, &mut ev);
        assert_eq!(
            names(&ev),
            [
                "started card:show:A",
                "stopped card:show:A",
                "started card:show:B",
                "stopped card:show:B",
                "started card:hide",
                "finished card:hide",
                "started gesture:tilt",
                "stopped gesture:tilt"
            ]
        );
    }
}
