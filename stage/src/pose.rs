//! The [`Pose`] at a frame's media time, from three sources: the speech sounding then (mouth,
//! stress, pitch), idle motion (blinks, saccades, sway, breathing — [`crate::idle`]) and the
//! actions from marks ([`crate::actions`]). A pure function of its inputs, so any frame can be
//! posed again exactly.

use emcee_renderer::Pose;
use emcee_speech::viseme::MouthPose;

use crate::actions::ActionPose;
use crate::idle;

/// Head lift per semitone of pitch above the sentence's median, radians (about 1°).
const PITCH_HEAD_LIFT: f32 = 0.017;
/// Head dip at full emphasis, radians (about 3.4°).
const EMPHASIS_HEAD_DIP: f32 = 0.06;
/// The pitch range (semitones) that moves the head; beyond it the head holds.
const PITCH_RANGE: (f32, f32) = (-4.0, 6.0);
/// The mouth's spread at rest: a viseme's `wide` of 0.4 is a neutral mouth.
const NEUTRAL_WIDE: f32 = 0.4;

/// What the speech sounding at a media time gives the face and head.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpeechMotion {
    pub mouth: MouthPose,
    /// −1 … 1; 0 in silence.
    pub emphasis: f32,
    /// Semitones against the sentence's median; 0 in silence.
    pub pitch: f32,
}

/// The pose at `media_ts`. `fade_out`: 0 normal … 1 black (the end-of-show fade).
pub fn pose_at(media_ts: u64, speech: SpeechMotion, acting: ActionPose, fade_out: f32) -> Pose {
    let (head_yaw, head_pitch, head_roll) = idle::head_sway(media_ts);
    let (gaze_yaw, gaze_pitch) = idle::gaze(media_ts);
    // Speakers dip the head on stressed syllables and lift it on high pitch.
    let speaking_pitch = EMPHASIS_HEAD_DIP * speech.emphasis.max(0.0)
        - PITCH_HEAD_LIFT * speech.pitch.clamp(PITCH_RANGE.0, PITCH_RANGE.1);
    Pose {
        jaw_open: speech.mouth.open,
        mouth_spread: speech.mouth.wide - NEUTRAL_WIDE,
        blink: idle::blink(media_ts),
        smile: acting.smile,
        breath: idle::breath(media_ts),
        head_yaw: head_yaw + acting.head_yaw,
        head_pitch: head_pitch + acting.head_pitch + speaking_pitch,
        head_roll: head_roll + acting.head_roll,
        gaze_yaw,
        gaze_pitch,
        arm_raise: acting.arm_raise,
        arm_swing: acting.arm_swing,
        fade_out,
        media_ts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = emcee_protocol::MEDIA_CLOCK_HZ * 7;

    #[test]
    fn silence_and_no_action_leave_idle_motion_only() {
        let pose = pose_at(T, SpeechMotion::default(), ActionPose::default(), 0.0);
        let (yaw, pitch, roll) = idle::head_sway(T);
        assert_eq!((pose.head_yaw, pose.head_pitch, pose.head_roll), (yaw, pitch, roll));
        assert_eq!((pose.jaw_open, pose.mouth_spread), (0.0, -NEUTRAL_WIDE));
        assert_eq!((pose.blink, pose.breath), (idle::blink(T), idle::breath(T)));
        assert_eq!((pose.smile, pose.arm_raise, pose.fade_out, pose.media_ts), (0.0, 0.0, 0.0, T));
    }

    #[test]
    fn speech_moves_the_mouth_stress_dips_the_head_and_high_pitch_lifts_it() {
        let rest = pose_at(T, SpeechMotion::default(), ActionPose::default(), 0.0);
        let mouth = MouthPose { open: 0.7, wide: 0.5 };
        let stressed = pose_at(T, SpeechMotion { mouth, emphasis: 1.0, pitch: 0.0 }, ActionPose::default(), 0.0);
        assert_eq!(stressed.jaw_open, 0.7);
        assert!((stressed.mouth_spread - 0.1).abs() < 1e-6);
        assert!((stressed.head_pitch - rest.head_pitch - EMPHASIS_HEAD_DIP).abs() < 1e-6, "dips on stress");
        let unstressed = pose_at(T, SpeechMotion { emphasis: -1.0, ..Default::default() }, ActionPose::default(), 0.0);
        assert_eq!(unstressed.head_pitch, rest.head_pitch, "negative emphasis does not lift the head");
        let high = pose_at(T, SpeechMotion { pitch: 3.0, ..Default::default() }, ActionPose::default(), 0.0);
        assert!((rest.head_pitch - high.head_pitch - 3.0 * PITCH_HEAD_LIFT).abs() < 1e-6, "lifts on pitch");
        let shrill = pose_at(T, SpeechMotion { pitch: 40.0, ..Default::default() }, ActionPose::default(), 0.0);
        assert!((rest.head_pitch - shrill.head_pitch - 6.0 * PITCH_HEAD_LIFT).abs() < 1e-6, "within its range");
    }

    #[test]
    fn actions_add_to_idle_motion_and_the_fade_passes_through() {
        let acting =
            ActionPose { smile: 1.0, head_yaw: 0.2, head_pitch: 0.1, head_roll: -0.1, arm_raise: 0.5, arm_swing: 0.3 };
        let rest = pose_at(T, SpeechMotion::default(), ActionPose::default(), 0.0);
        let pose = pose_at(T, SpeechMotion::default(), acting, 0.25);
        assert!((pose.head_yaw - rest.head_yaw - 0.2).abs() < 1e-6);
        assert!((pose.head_pitch - rest.head_pitch - 0.1).abs() < 1e-6);
        assert!((pose.head_roll - rest.head_roll + 0.1).abs() < 1e-6);
        assert_eq!((pose.smile, pose.arm_raise, pose.arm_swing, pose.fade_out), (1.0, 0.5, 0.3, 0.25));
        assert_eq!((pose.gaze_yaw, pose.gaze_pitch), idle::gaze(T));
    }
}
