//! The scheduler: which sentence the show says next. A pure state machine — inputs in, outputs
//! out, no I/O, no clock of its own — so every rule is tested without a stage or a database.
//!
//! Two queues feed it:
//! - the **script**: sentences in order, from a persisted [`Offset`]; looped for 24/7 shows;
//! - the **interactions**: operator lines and answers, by priority then arrival.
//!
//! Exactly one cue is in flight at a time. An interaction that arrives while a script sentence
//! plays cuts it at the next phoneme boundary; once the interaction has been said, the script
//! resumes by saying the cut sentence again from its start (same offset, next attempt). The
//! offset advances only when a sentence finishes uncut, so a crash replays at most one sentence.

use std::collections::VecDeque;

use emcee_protocol::{Cue, CueAction, StopWhen};
use serde::{Deserialize, Serialize};

/// Where the script is: the sentence playing or next to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Offset {
    /// How many times the script has looped.
    pub pass: u64,
    /// Index of the sentence.
    pub sentence: usize,
    /// How many times this sentence has been started and cut before (for unique cue ids).
    pub attempt: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InteractionKind {
    /// A line typed by the operator: said as is.
    Operator,
    /// An answer to a viewer's question.
    Answer,
    /// A line sent from the fleet cloud: said as is, audited as the cloud's.
    Cloud,
}

impl InteractionKind {
    /// Its name in the state database and the audit log: `operator`, `answer` or `cloud`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Answer => "answer",
            Self::Cloud => "cloud",
        }
    }

    /// The kind named `name` in the state database (an unknown name: an operator line).
    pub fn from_name(name: &str) -> Self {
        match name {
            "answer" => Self::Answer,
            "cloud" => Self::Cloud,
            _ => Self::Operator,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Interaction {
    /// Durable id (the database row).
    pub id: i64,
    pub kind: InteractionKind,
    pub text: String,
    /// Higher first.
    pub priority: i32,
    /// Unix ms after which it is stale and dropped unsaid (an answer nobody waits for).
    pub expires_ms: Option<i64>,
}

/// A script sentence as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScriptSentence {
    pub ssml: String,
    /// Unix ms [start, end) of its promotion: outside it the sentence is skipped.
    pub window: Option<(i64, i64)>,
    /// Said in this voice (`None`: the default) and in this scene (`None`: as it is).
    pub voice: Option<emcee_protocol::Voice>,
    pub scene: Option<emcee_protocol::Scene>,
    /// The product cards its marks show.
    pub cards: Vec<emcee_protocol::Card>,
}

/// What the room does when the script is done and no interaction is waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenDone {
    /// End the show gracefully: the streams are closed.
    End,
    /// Start the script again (24/7 shows).
    Loop,
    /// Stay live and silent (the avatar idles), ready for interactions.
    Idle,
}

/// The live room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Room {
    /// Not started (or stopped): the stream shows the idle avatar.
    Idle,
    Live,
    /// The current sentence finishes, then nothing new starts until resumed.
    Paused,
    /// Ending gracefully: the current sentence finishes, then the show ends.
    Ending,
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomCommand {
    Start,
    Stop,
    Pause,
    Resume,
    Skip,
}

/// What the one cue in flight is.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Script(Offset),
    Interaction(Interaction),
}

#[derive(Debug, Clone, PartialEq)]
struct InFlight {
    cue: Cue,
    source: Source,
    /// A stop was requested; `skip` means the script moves on afterwards.
    stopping: Option<Stopping>,
    /// A script sentence of a script since replaced: how it ends moves no offset.
    replaced: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stopping {
    Interrupt,
    Skip,
}

/// Why a room command could not be carried out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot {command} while the room is {room:?}")]
pub struct RoomError {
    pub command: &'static str,
    pub room: Room,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Persist the offset before the cue for it is sent.
    SaveOffset(Offset),
    /// Send this cue to the stage.
    Send { cue: Cue, source: Source },
    /// Ask the stage to stop the cue in flight.
    Stop { id: String, when: StopWhen },
    /// The interaction is done (said, cut by a skip, or failed): remove it from the durable queue.
    InteractionDone { id: i64 },
    /// The interaction went stale before its turn: remove it unsaid.
    InteractionExpired(Interaction),
    /// End the show (streams closed).
    End,
}

pub struct Scheduler {
    script: Vec<ScriptSentence>,
    when_done: WhenDone,
    offset: Offset,
    interactions: VecDeque<Interaction>,
    in_flight: Option<InFlight>,
    room: Room,
    /// Where an interaction cuts a script sentence.
    interrupt: StopWhen,
}

impl Scheduler {
    /// A scheduler at `offset` (from the store), with interactions that were queued before.
    pub fn new(script: Vec<ScriptSentence>, when_done: WhenDone, offset: Offset, queued: Vec<Interaction>) -> Self {
        // An offset past the end (a shorter script, or the last sentence finished) wraps or ends
        // in `next`; one beyond any sentence of this script starts it over.
        let offset = if offset.sentence <= script.len() { offset } else { Offset::default() };
        let mut s = Self {
            script,
            when_done,
            offset,
            interactions: VecDeque::new(),
            in_flight: None,
            room: Room::Idle,
            interrupt: StopWhen::Phoneme,
        };
        for i in queued {
            s.insert(i);
        }
        s
    }

    /// Interactions cut script sentences at `when` (default: the next phoneme boundary;
    /// `SentenceEnd` lets the sentence finish first).
    pub fn with_interrupt(mut self, when: StopWhen) -> Self {
        self.interrupt = when;
        self
    }

    pub fn room(&self) -> Room {
        self.room
    }

    pub fn offset(&self) -> Offset {
        self.offset
    }

    pub fn script_len(&self) -> usize {
        self.script.len()
    }

    pub fn queued_interactions(&self) -> usize {
        self.interactions.len()
    }

    /// How many interactions of `kind` wait.
    pub fn queued_of(&self, kind: InteractionKind) -> usize {
        self.interactions.iter().filter(|i| i.kind == kind).count()
    }

    /// The cue in flight and what it is.
    pub fn in_flight(&self) -> Option<(&Cue, &Source)> {
        self.in_flight.as_ref().map(|f| (&f.cue, &f.source))
    }

    fn insert(&mut self, interaction: Interaction) {
        // Stable: equal priorities keep arrival order.
        let at =
            self.interactions.iter().position(|q| q.priority < interaction.priority).unwrap_or(self.interactions.len());
        self.interactions.insert(at, interaction);
    }

    fn script_cue(&self) -> Cue {
        let o = self.offset;
        Cue {
            id: format!("s{}.{}.{}", o.pass, o.sentence, o.attempt),
            action: {
                let s = &self.script[o.sentence];
                CueAction::Say { text: s.ssml.clone(), voice: s.voice.clone(), scene: s.scene, cards: s.cards.clone() }
            },
        }
    }

    /// Starts the next cue if the room allows and nothing is in flight. `now` is Unix ms.
    fn next(&mut self, now: i64, out: &mut Vec<Output>) {
        if self.in_flight.is_some() {
            return;
        }
        match self.room {
            Room::Live => {}
            Room::Ending => {
                self.room = Room::Ended;
                out.push(Output::End);
                return;
            }
            Room::Idle | Room::Paused | Room::Ended => return,
        }
        while let Some(stale) = self.interactions.front().filter(|i| i.expires_ms.is_some_and(|e| e <= now)) {
            out.push(Output::InteractionExpired(stale.clone()));
            self.interactions.pop_front();
        }
        if let Some(interaction) = self.interactions.pop_front() {
            let cue = Cue { id: format!("i{}", interaction.id), action: CueAction::say(interaction.text.clone()) };
            let source = Source::Interaction(interaction);
            out.push(Output::Send { cue: cue.clone(), source: source.clone() });
            self.in_flight = Some(InFlight { cue, source, stopping: None, replaced: false });
            return;
        }
        // The next sentence that may be said now: those of promotions not running are skipped.
        // Bounded: a script with nothing sayable right now goes quiet instead of spinning.
        for _ in 0..=self.script.len() + 1 {
            if self.script_done() {
                match self.when_done {
                    WhenDone::Loop if !self.script.is_empty() => {
                        self.offset = Offset { pass: self.offset.pass + 1, sentence: 0, attempt: 0 };
                    }
                    WhenDone::Idle => return,
                    WhenDone::End | WhenDone::Loop => {
                        // The queues ran dry: end gracefully.
                        self.room = Room::Ended;
                        out.push(Output::End);
                        return;
                    }
                }
            }
            let window = self.script[self.offset.sentence].window;
            if window.is_none_or(|(start, end)| start <= now && now < end) {
                break;
            }
            self.offset = Offset { sentence: self.offset.sentence + 1, attempt: 0, ..self.offset };
        }
        let sayable = self
            .script
            .get(self.offset.sentence)
            .is_some_and(|s| s.window.is_none_or(|(start, end)| start <= now && now < end));
        if !sayable {
            return;
        }
        out.push(Output::SaveOffset(self.offset));
        let cue = self.script_cue();
        let source = Source::Script(self.offset);
        out.push(Output::Send { cue: cue.clone(), source: source.clone() });
        self.in_flight = Some(InFlight { cue, source, stopping: None, replaced: false });
    }

    /// A new interaction (already stored durably).
    pub fn interaction(&mut self, interaction: Interaction, now: i64) -> Vec<Output> {
        let mut out = Vec::new();
        self.insert(interaction);
        if let Some(f) = self.in_flight.as_mut() {
            // Interactions cut script sentences; they wait for other interactions.
            if matches!(f.source, Source::Script(_)) && f.stopping.is_none() && self.room == Room::Live {
                f.stopping = Some(Stopping::Interrupt);
                out.push(Output::Stop { id: f.cue.id.clone(), when: self.interrupt });
            }
        }
        self.next(now, &mut out);
        out
    }

    /// The stage finished (or gave up on) cue `id`.
    pub fn finished(&mut self, id: &str, was_stopped: bool, now: i64) -> Vec<Output> {
        let mut out = Vec::new();
        let Some(f) = self.in_flight.take_if(|f| f.cue.id == id) else {
            return out; // not ours (a late event after a restart): nothing to do
        };
        match f.source {
            Source::Script(_) if f.replaced => {}
            Source::Script(o) => {
                let skipped = f.stopping == Some(Stopping::Skip);
                self.offset = if !was_stopped || skipped {
                    Offset { pass: o.pass, sentence: o.sentence + 1, attempt: 0 }
                } else {
                    // Cut: the same sentence is said again from its start, under a new cue id.
                    Offset { attempt: o.attempt + 1, ..o }
                };
                // Persisted now, not only when the next sentence starts: a paused or ending room
                // starts none, and a crash must not replay a finished sentence.
                out.push(Output::SaveOffset(self.offset));
            }
            Source::Interaction(i) => out.push(Output::InteractionDone { id: i.id }),
        }
        self.next(now, &mut out);
        out
    }

    /// The stage could not perform cue `id` (e.g. speech failed): skip it.
    pub fn failed(&mut self, id: &str, now: i64) -> Vec<Output> {
        if let Some(f) = self.in_flight.as_mut().filter(|f| f.cue.id == id) {
            f.stopping = Some(Stopping::Skip);
        }
        self.finished(id, true, now)
    }

    /// The stage connection was replaced: the cue in flight is sent again (and its pending
    /// stop, if one was asked for).
    pub fn resend(&self) -> Vec<Output> {
        let Some(f) = &self.in_flight else { return Vec::new() };
        let mut out = vec![Output::Send { cue: f.cue.clone(), source: f.source.clone() }];
        if f.stopping.is_some() {
            out.push(Output::Stop { id: f.cue.id.clone(), when: StopWhen::Phoneme });
        }
        out
    }

    /// The script was played to its end, nothing waits and the room ends when done: a show
    /// that has already ended (e.g. the daemon restarted just after its end).
    pub fn has_ended(&self) -> bool {
        self.when_done == WhenDone::End && self.script_done() && self.interactions.is_empty()
    }

    fn script_done(&self) -> bool {
        self.offset.sentence >= self.script.len()
    }

    /// A new show begins (a schedule window opened, or `start` after the last show ended): a
    /// script played to its end starts over (the new offset, to persist, is returned); one cut
    /// short resumes where it was.
    pub fn rewind_if_done(&mut self) -> Option<Offset> {
        if !self.script_done() {
            return None;
        }
        self.offset = Offset { pass: self.offset.pass + 1, sentence: 0, attempt: 0 };
        Some(self.offset)
    }

    /// New content, taking effect at the next sentence boundary (the sentence playing is not cut).
    ///
    /// `resume_at`: a different script, starting at its own persisted offset (over again if
    /// that one was played to its end). `None`: the same script with new materials — same
    /// sentences, new words (a new price) — so the show goes on where it is.
    ///
    /// The new script's pass is above every pass played so far, so its cue ids are new to
    /// the stage (which answers a known id with its old result instead of playing it).
    pub fn replace_script(&mut self, script: Vec<ScriptSentence>, resume_at: Option<Offset>, now: i64) -> Vec<Output> {
        let mut out = Vec::new();
        self.script = script;
        if let Some(o) = resume_at {
            if let Some(f) = self.in_flight.as_mut().filter(|f| matches!(f.source, Source::Script(_))) {
                f.replaced = true;
            }
            let done = o.sentence >= self.script.len();
            let pass = (o.pass + u64::from(done)).max(self.offset.pass + 1);
            self.offset = if done { Offset { pass, ..Offset::default() } } else { Offset { pass, ..o } };
            out.push(Output::SaveOffset(self.offset));
        }
        self.next(now, &mut out);
        out
    }

    pub fn command(&mut self, command: RoomCommand, now: i64) -> Result<Vec<Output>, RoomError> {
        let mut out = Vec::new();
        let refuse = |command: &'static str, room| Err(RoomError { command, room });
        match (command, self.room) {
            (RoomCommand::Start, Room::Idle | Room::Ended) => self.room = Room::Live,
            (RoomCommand::Start, room) => return refuse("start", room),
            (RoomCommand::Pause, Room::Live) => self.room = Room::Paused,
            (RoomCommand::Pause, room) => return refuse("pause", room),
            (RoomCommand::Resume, Room::Paused) => self.room = Room::Live,
            (RoomCommand::Resume, room) => return refuse("resume", room),
            (RoomCommand::Stop, Room::Live | Room::Paused) => self.room = Room::Ending,
            (RoomCommand::Stop, room) => return refuse("stop", room),
            (RoomCommand::Skip, Room::Live | Room::Paused) => {
                let Some(f) = self.in_flight.as_mut() else { return refuse("skip (nothing is playing)", self.room) };
                f.stopping = Some(Stopping::Skip);
                out.push(Output::Stop { id: f.cue.id.clone(), when: StopWhen::Phoneme });
            }
            (RoomCommand::Skip, room) => return refuse("skip", room),
        }
        self.next(now, &mut out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(n: usize) -> Vec<ScriptSentence> {
        (1..=n).map(|i| ScriptSentence { ssml: format!("Sentence {i}."), ..Default::default() }).collect()
    }

    fn sent(out: &[Output]) -> Vec<String> {
        out.iter().filter_map(|o| if let Output::Send { cue, .. } = o { Some(cue.id.clone()) } else { None }).collect()
    }

    fn line(id: i64, priority: i32) -> Interaction {
        Interaction { id, kind: InteractionKind::Operator, text: format!("Line {id}."), priority, expires_ms: None }
    }

    #[test]
    fn plays_the_script_in_order_saving_the_offset_first_then_ends_when_dry() {
        let mut s = Scheduler::new(script(2), WhenDone::End, Offset::default(), vec![]);
        let out = s.command(RoomCommand::Start, 0).unwrap();
        assert_eq!(out[0], Output::SaveOffset(Offset { pass: 0, sentence: 0, attempt: 0 }));
        assert_eq!(sent(&out), ["s0.0.0"]);
        let out = s.finished("s0.0.0", false, 0);
        assert_eq!(sent(&out), ["s0.1.0"]);
        let out = s.finished("s0.1.0", false, 0);
        assert_eq!(out, vec![Output::SaveOffset(Offset { pass: 0, sentence: 2, attempt: 0 }), Output::End]);
        assert_eq!(s.room(), Room::Ended);
    }

    #[test]
    fn loops_for_24_7() {
        let mut s = Scheduler::new(script(2), WhenDone::Loop, Offset::default(), vec![]);
        s.command(RoomCommand::Start, 0).unwrap();
        s.finished("s0.0.0", false, 0);
        let out = s.finished("s0.1.0", false, 0);
        assert_eq!(sent(&out), ["s1.0.0"]);
    }

    #[test]
    fn a_new_show_starts_a_finished_script_over_and_resumes_an_unfinished_one() {
        let mut s = Scheduler::new(script(2), WhenDone::End, Offset::default(), vec![]);
        let out = s.command(RoomCommand::Start, 0).unwrap();
        assert_eq!(sent(&out), ["s0.0.0"]);
        assert!(s.rewind_if_done().is_none(), "mid-script: nothing to rewind");
        s.finished("s0.0.0", false, 0);
        s.finished("s0.1.0", false, 0);
        assert_eq!(s.room(), Room::Ended);
        assert!(s.has_ended());
        assert_eq!(s.rewind_if_done(), Some(Offset { pass: 1, sentence: 0, attempt: 0 }));
        assert!(!s.has_ended());
        let out = s.command(RoomCommand::Start, 0).unwrap();
        assert_eq!(sent(&out), ["s1.0.0"]);
    }

    #[test]
    fn idle_when_done_waits_for_interactions_without_ending() {
        let mut s = Scheduler::new(script(1), WhenDone::Idle, Offset::default(), vec![]);
        s.command(RoomCommand::Start, 0).unwrap();
        let out = s.finished("s0.0.0", false, 0);
        assert!(sent(&out).is_empty() && !out.contains(&Output::End));
        assert_eq!(s.room(), Room::Live);
        assert_eq!(sent(&s.interaction(line(1, 0), 0)), ["i1"]);
        assert!(sent(&s.finished("i1", false, 0)).is_empty());
    }

    #[test]
    fn an_interaction_cuts_the_sentence_and_the_script_resumes_with_it() {
        let mut s = Scheduler::new(script(3), WhenDone::End, Offset::default(), vec![]);
        s.command(RoomCommand::Start, 0).unwrap();
        s.finished("s0.0.0", false, 0); // now saying sentence 1
        let out = s.interaction(line(7, 0), 0);
        assert_eq!(out, vec![Output::Stop { id: "s0.1.0".into(), when: StopWhen::Phoneme }]);
        // A second interaction while the first stop is pending does not stop twice.
        assert!(s.interaction(line(8, 0), 0).is_empty());
        let out = s.finished("s0.1.0", true, 0);
        // The cut is persisted with the next attempt number before anything else plays.
        assert_eq!(out[0], Output::SaveOffset(Offset { pass: 0, sentence: 1, attempt: 1 }));
        assert_eq!(sent(&out), ["i7"]);
        let out = s.finished("i7", false, 0);
        assert_eq!(out[0], Output::InteractionDone { id: 7 });
        assert_eq!(sent(&out), ["i8"]);
        // Interactions do not cut each other; afterwards the cut sentence is said again.
        let out = s.finished("i8", false, 0);
        assert_eq!(out[1], Output::SaveOffset(Offset { pass: 0, sentence: 1, attempt: 1 }));
        assert_eq!(sent(&out), ["s0.1.1"]);
        assert_eq!(sent(&s.finished("s0.1.1", false, 0)), ["s0.2.0"]);
    }

    #[test]
    fn stale_answers_are_dropped_when_their_turn_comes_on_the_clock() {
        let answer = |id, expires| Interaction {
            id,
            kind: InteractionKind::Answer,
            text: format!("Answer {id}."),
            priority: 0,
            expires_ms: Some(expires),
        };
        let mut s = Scheduler::new(script(1), WhenDone::End, Offset::default(), vec![]);
        s.command(RoomCommand::Start, 1_000).unwrap();
        s.interaction(answer(1, 60_000), 2_000); // cuts the sentence
        s.interaction(answer(2, 9_000), 2_000);
        let out = s.finished("s0.0.0", true, 3_000);
        assert_eq!(sent(&out), ["i1"]);
        // Answer 1 takes until t = 10 s: answer 2 has gone stale by then and is never said.
        let out = s.finished("i1", false, 10_000);
        assert!(matches!(&out[1], Output::InteractionExpired(i) if i.id == 2), "{out:?}");
        assert_eq!(sent(&out), ["s0.0.1"]);
        // One that is still fresh is said.
        s.interaction(answer(3, 20_000), 11_000);
        assert_eq!(sent(&s.finished("s0.0.1", true, 11_500)), ["i3"]);
    }

    #[test]
    fn a_sentence_end_policy_lets_the_sentence_finish_and_moves_on() {
        let mut s =
            Scheduler::new(script(2), WhenDone::End, Offset::default(), vec![]).with_interrupt(StopWhen::SentenceEnd);
        s.command(RoomCommand::Start, 0).unwrap();
        assert_eq!(
            s.interaction(line(1, 0), 0),
            vec![Output::Stop { id: "s0.0.0".into(), when: StopWhen::SentenceEnd }]
        );
        assert_eq!(sent(&s.finished("s0.0.0", false, 0)), ["i1"]);
        assert_eq!(sent(&s.finished("i1", false, 0)), ["s0.1.0"]);
    }

    #[test]
    fn promotion_sentences_are_said_only_inside_their_window() {
        let mut lines = script(3);
        lines[1].window = Some((1_000, 2_000));
        let mut s = Scheduler::new(lines.clone(), WhenDone::Loop, Offset::default(), vec![]);
        s.command(RoomCommand::Start, 0).unwrap();
        // Before the promotion: sentence 1 is skipped.
        assert_eq!(sent(&s.finished("s0.0.0", false, 500)), ["s0.2.0"]);
        // During it (next pass): said.
        assert_eq!(sent(&s.finished("s0.2.0", false, 900)), ["s1.0.0"]);
        assert_eq!(sent(&s.finished("s1.0.0", false, 1_500)), ["s1.1.0"]);
        // A script whose only sentences are out of their window goes quiet, without spinning.
        let only_promo =
            vec![ScriptSentence { ssml: "Deal!".into(), window: Some((1_000, 2_000)), ..Default::default() }];
        let mut s = Scheduler::new(only_promo, WhenDone::Loop, Offset::default(), vec![]);
        assert!(sent(&s.command(RoomCommand::Start, 5_000).unwrap()).is_empty());
        assert_eq!(s.room(), Room::Live);
        // With `end`, skipping to the end ends the show.
        let mut s = Scheduler::new(lines, WhenDone::End, Offset { sentence: 1, ..Offset::default() }, vec![]);
        let out = s.command(RoomCommand::Start, 3_000).unwrap();
        assert_eq!(sent(&out), ["s0.2.0"]);
    }

    #[test]
    fn higher_priority_goes_first_equal_priority_keeps_arrival_order() {
        let mut s =
            Scheduler::new(script(1), WhenDone::End, Offset::default(), vec![line(1, 0), line(2, 5), line(3, 0)]);
        let mut order = sent(&s.command(RoomCommand::Start, 0).unwrap());
        for _ in 0..3 {
            let last = order.last().unwrap().clone();
            order.extend(sent(&s.finished(&last, false, 0)));
        }
        assert_eq!(order, ["i2", "i1", "i3", "s0.0.0"]);
    }

    #[test]
    fn a_sentence_finishing_on_its_own_before_the_stop_lands_still_advances() {
        let mut s = Scheduler::new(script(2), WhenDone::End, Offset::default(), vec![]);
        s.command(RoomCommand::Start, 0).unwrap();
        s.interaction(line(1, 0), 0);
        // The stage reports a normal finish: the cut came too late, nothing to repeat.
        let out = s.finished("s0.0.0", false, 0);
        assert_eq!(sent(&out), ["i1"]);
        let out = s.finished("i1", false, 0);
        assert_eq!(sent(&out), ["s0.1.0"]);
    }

    #[test]
    fn skip_moves_past_the_sentence_and_persists_it() {
        let mut s = Scheduler::new(script(3), WhenDone::End, Offset::default(), vec![]);
        s.command(RoomCommand::Start, 0).unwrap();
        let out = s.command(RoomCommand::Skip, 0).unwrap();
        assert_eq!(out, vec![Output::Stop { id: "s0.0.0".into(), when: StopWhen::Phoneme }]);
        let out = s.finished("s0.0.0", true, 0);
        assert_eq!(out[0], Output::SaveOffset(Offset { pass: 0, sentence: 1, attempt: 0 }));
        assert_eq!(sent(&out), ["s0.1.0"]);
    }

    #[test]
    fn pause_holds_after_the_sentence_and_resume_continues() {
        let mut s = Scheduler::new(script(3), WhenDone::End, Offset::default(), vec![]);
        s.command(RoomCommand::Start, 0).unwrap();
        assert!(s.command(RoomCommand::Pause, 0).unwrap().is_empty());
        assert!(sent(&s.finished("s0.0.0", false, 0)).is_empty());
        // Interactions queue while paused; no cut, nothing plays.
        assert!(s.interaction(line(4, 0), 0).is_empty());
        assert_eq!(sent(&s.command(RoomCommand::Resume, 0).unwrap()), ["i4"]);
        assert!(s.command(RoomCommand::Resume, 0).is_err());
    }

    #[test]
    fn stop_ends_after_the_current_sentence() {
        let mut s = Scheduler::new(script(3), WhenDone::End, Offset::default(), vec![]);
        s.command(RoomCommand::Start, 0).unwrap();
        assert!(s.command(RoomCommand::Stop, 0).unwrap().is_empty());
        let advanced = Offset { pass: 0, sentence: 1, attempt: 0 };
        assert_eq!(s.finished("s0.0.0", false, 0), vec![Output::SaveOffset(advanced), Output::End]);
        assert!(s.command(RoomCommand::Pause, 0).is_err());
        // The room can be started again; the script goes on where it was.
        assert_eq!(sent(&s.command(RoomCommand::Start, 0).unwrap()), ["s0.1.0"]);
    }

    #[test]
    fn resumes_from_a_persisted_offset_with_the_same_cue_id() {
        let offset = Offset { pass: 2, sentence: 1, attempt: 3 };
        let mut s = Scheduler::new(script(3), WhenDone::Loop, offset, vec![]);
        assert_eq!(sent(&s.command(RoomCommand::Start, 0).unwrap()), ["s2.1.3"]);
        assert_eq!(sent(&s.resend()), ["s2.1.3"]);
        // An offset beyond a shorter script starts over.
        let s = Scheduler::new(script(1), WhenDone::Loop, Offset { sentence: 5, ..offset }, vec![]);
        assert_eq!(s.offset(), Offset::default());
    }

    #[test]
    fn failures_and_foreign_events_do_not_stall_the_show() {
        let mut s = Scheduler::new(script(2), WhenDone::End, Offset::default(), vec![]);
        s.command(RoomCommand::Start, 0).unwrap();
        assert!(s.finished("not-mine", false, 0).is_empty());
        assert_eq!(sent(&s.failed("s0.0.0", 0)), ["s0.1.0"]);
    }

    fn said(out: &[Output]) -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { cue, .. } => {
                    let CueAction::Say { text, .. } = &cue.action;
                    Some(text.clone())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_new_script_starts_after_the_sentence_playing_which_moves_no_offset() {
        let mut s = Scheduler::new(script(3), WhenDone::End, Offset::default(), vec![]);
        s.command(RoomCommand::Start, 0).unwrap();
        let other = vec![ScriptSentence { ssml: "Other.".into(), ..Default::default() }];
        let out = s.replace_script(other.clone(), Some(Offset::default()), 0);
        // Nothing is cut and nothing new starts while "Sentence 1." plays; the new script's
        // pass is above the old one's, so its cue ids are new.
        assert_eq!(out, vec![Output::SaveOffset(Offset { pass: 1, ..Offset::default() })]);
        let out = s.finished("s0.0.0", false, 0);
        assert_eq!((sent(&out), said(&out)), (vec!["s1.0.0".to_string()], vec!["Other.".to_string()]));
        // The old sentence moves no offset: the only one saved is the new script's, as it starts.
        assert_eq!(out[0], Output::SaveOffset(Offset { pass: 1, ..Offset::default() }));
        assert_eq!(out.iter().filter(|o| matches!(o, Output::SaveOffset(_))).count(), 1, "{out:?}");
        // A script whose saved offset is at its end starts over (a script pushed again).
        let out = s.replace_script(other, Some(Offset { pass: 4, sentence: 1, attempt: 0 }), 0);
        assert_eq!(out, vec![Output::SaveOffset(Offset { pass: 5, sentence: 0, attempt: 0 })]);
    }

    #[test]
    fn new_materials_keep_the_place_and_change_the_words() {
        let mut s = Scheduler::new(script(2), WhenDone::End, Offset::default(), vec![]);
        s.command(RoomCommand::Start, 0).unwrap();
        let reworded: Vec<ScriptSentence> =
            (1..=2).map(|i| ScriptSentence { ssml: format!("New {i}."), ..Default::default() }).collect();
        assert!(s.replace_script(reworded, None, 0).is_empty());
        let out = s.finished("s0.0.0", false, 0);
        assert_eq!((sent(&out), said(&out)), (vec!["s0.1.0".to_string()], vec!["New 2.".to_string()]));
    }

    #[test]
    fn a_script_for_an_idle_room_starts_at_once() {
        let mut s = Scheduler::new(script(1), WhenDone::Idle, Offset::default(), vec![]);
        s.command(RoomCommand::Start, 0).unwrap();
        s.finished("s0.0.0", false, 0);
        let other = vec![ScriptSentence { ssml: "Other.".into(), ..Default::default() }];
        assert_eq!(said(&s.replace_script(other, Some(Offset::default()), 0)), ["Other."]);
    }
}
