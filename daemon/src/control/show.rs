//! The show's state and the effects of the scheduler's decisions: cues sent, the audit log,
//! interactions stored durably, questions answered, content changed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use emcee_protocol::{media_ts_to_ms, ControlMessage, CueAction, StageEvent};
use tokio::time::Instant;

use super::calls::{Asked, CloudLink, ContentInfo, ContentRefused, Playing, Refusal, ShowCall, Status};
use super::content::{Changes, ContentReply, Prepared};
use super::stage_link::StageLink;
use super::state_health::StateHealth;
use crate::answer::Answerer;
use crate::library::Library;
use crate::scheduler::{Interaction, InteractionKind, Output, Scheduler, Source};
use crate::store::{now_ms, Store, StoreError};

pub(super) fn source_name(source: &Source) -> &'static str {
    match source {
        Source::Script(_) => "script",
        Source::Interaction(i) => i.kind.as_str(),
    }
}

/// The show's state and the effects of the scheduler's decisions.
pub(super) struct Show {
    pub(super) scheduler: Scheduler,
    pub(super) store: Store,
    pub(super) script_key: String,
    /// Source and text of every cue sent and not yet finished, for the audit log.
    pub(super) cues: HashMap<String, (&'static str, String)>,
    pub(super) end_requested: bool,
    pub(super) stage_connected: bool,
    pub(super) answerer: Answerer,
    pub(super) answer_max_age_ms: i64,
    /// The documents the show plays from.
    pub(super) library: Arc<Library>,
    /// Content changes being prepared off the loop.
    pub(super) changes: Changes,
    /// The state database's health: set aside at boot, writes failing.
    pub(super) state: StateHealth,
    /// Why the stage last refused the show, until it accepts it.
    pub(super) stage_refused: Option<String>,
    /// The fleet link, once the agent has said how it is.
    pub(super) cloud: Option<CloudLink>,
    /// The stage's last health report, and when it came.
    pub(super) last_health: Option<(emcee_protocol::Health, Instant)>,
    /// Questions answered lately (normalised text → answer, when), so a question repeated in
    /// the chat is answered once.
    pub(super) recent_questions: HashMap<String, (Asked, Instant)>,
}

/// At most this many answers wait at once (a chat flood gets 429s, not an hour of answers).
pub(super) const MAX_QUEUED_ANSWERS: usize = 100;
/// At most this many operator lines wait at once.
pub(super) const MAX_QUEUED_LINES: usize = 50;
/// An operator line not yet said after this long is dropped, like a stale answer.
pub(super) const OPERATOR_LINE_MAX_AGE_MS: i64 = 10 * 60 * 1000;

/// A repeated question within this long gets the queued answer, not a second one.
const QUESTION_DEDUP: Duration = Duration::from_secs(60);

impl Show {
    /// Notes a state database write: a failure is logged and shown (status, metrics) and the
    /// show goes on (viewers first); the first write that works again records the gap.
    pub(super) fn log_store<T>(&mut self, result: &Result<T, StoreError>) {
        if let Err(e) = result {
            tracing::error!(error = %e, "state database write failed");
        }
        if let Some(gap) = self.state.note(result) {
            tracing::warn!(%gap, "state database writes work again");
            if let Err(e) = self.store.audit("state", "system", &gap, "gap", 0) {
                tracing::error!(error = %e, "the audit log's gap could not be recorded");
            }
        }
    }

    pub(super) async fn apply(&mut self, link: &mut StageLink, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::SaveOffset(o) => self.log_store(&self.store.save_offset(&self.script_key, o)),
                Output::Send { cue, source } => {
                    let CueAction::Say { text, .. } = &cue.action;
                    self.cues.insert(cue.id.clone(), (source_name(&source), crate::ssml::plain_of(text)));
                    link.send(&ControlMessage::Cue(cue)).await;
                }
                Output::Stop { id, when } => {
                    link.send(&ControlMessage::Stop { id: Some(id), when }).await;
                }
                Output::InteractionDone { id } => self.log_store(&self.store.interaction_done(id)),
                Output::InteractionExpired(i) => {
                    let source = i.kind.as_str();
                    tracing::info!(id = i.id, source, text = %i.text, "stale line dropped unsaid");
                    let cue = format!("i{}", i.id);
                    self.log_store(&self.store.audit(&cue, source, &i.text, "expired", 0));
                    self.log_store(&self.store.interaction_done(i.id));
                }
                Output::End => self.end_requested = true,
            }
        }
    }

    /// Records `event` of `cue`; `text` is the cue's words, or for marks and actions their name.
    /// Who said cue `cue`: its source while it is known.
    fn source_of(&self, cue: &str) -> &'static str {
        // A cue that has finished is no longer known (a gesture may outlast its sentence).
        self.cues.get(cue).map_or(if cue.starts_with('s') { "script" } else { "unknown" }, |(s, _)| *s)
    }

    pub(super) fn audit(&mut self, cue: &str, text: Option<&str>, event: &str, media_ts: u64) {
        let source = self.source_of(cue);
        let text = text.or(self.cues.get(cue).map(|(_, t)| t.as_str())).unwrap_or("");
        self.log_store(&self.store.audit(cue, source, text, event, media_ts_to_ms(media_ts)));
    }

    pub(super) async fn on_event(&mut self, link: &mut StageLink, event: StageEvent) {
        match event {
            StageEvent::Started { id, media_ts } => {
                tracing::info!(cue = %id, media_ms = media_ts_to_ms(media_ts), "started");
                self.audit(&id, None, "started", media_ts);
            }
            StageEvent::Finished { id, was_stopped, media_ts } => {
                tracing::info!(cue = %id, was_stopped, media_ms = media_ts_to_ms(media_ts), "finished");
                self.audit(&id, None, if was_stopped { "cut" } else { "finished" }, media_ts);
                self.cues.remove(&id);
                let outputs = self.scheduler.finished(&id, was_stopped, now_ms());
                self.apply(link, outputs).await;
            }
            StageEvent::Failed { id, reason } => {
                tracing::warn!(cue = %id, %reason, "cue failed; skipping it");
                self.audit(&id, None, "failed", 0);
                self.cues.remove(&id);
                let outputs = self.scheduler.failed(&id, now_ms());
                self.apply(link, outputs).await;
            }
            StageEvent::Mark { id, name, index, media_ts } => {
                tracing::info!(cue = %id, mark = %name, index, media_ms = media_ts_to_ms(media_ts), "mark");
                let source = self.source_of(&id);
                let media_ms = media_ts_to_ms(media_ts);
                self.log_store(&self.store.audit_mark(&id, source, &name, index, media_ms));
            }
            StageEvent::ActionStarted { id, action, media_ts } => {
                self.audit(&id, Some(&action), "action_started", media_ts)
            }
            StageEvent::ActionFinished { id, action, was_stopped, media_ts } => {
                let event = if was_stopped { "action_stopped" } else { "action_finished" };
                self.audit(&id, Some(&action), event, media_ts);
            }
            StageEvent::Rejected { reason } => tracing::warn!(%reason, "the stage rejected a message"),
            StageEvent::Health(h) => {
                tracing::debug!(frames = h.frames, late = h.late_frames, encoder = %h.encoder, "health");
                self.last_health = Some((h, Instant::now()));
            }
            StageEvent::Accepted { .. } | StageEvent::Ready { .. } | StageEvent::Ended { .. } => {}
        }
    }

    /// Stores a line durably (before anyone is told it is accepted) and hands it to the scheduler.
    pub(super) fn enqueue(
        &mut self,
        kind: InteractionKind,
        text: &str,
        priority: i32,
    ) -> Result<(Interaction, Vec<Output>), Refusal> {
        let (limit, max_age_ms, name) = match kind {
            InteractionKind::Answer => (MAX_QUEUED_ANSWERS, self.answer_max_age_ms, "answers"),
            InteractionKind::Operator => (MAX_QUEUED_LINES, OPERATOR_LINE_MAX_AGE_MS, "operator lines"),
            InteractionKind::Cloud => (MAX_QUEUED_LINES, OPERATOR_LINE_MAX_AGE_MS, "lines from the cloud"),
        };
        let queued = self.scheduler.queued_of(kind);
        if queued >= limit {
            return Err(Refusal::QueueFull { kind: name, queued, limit });
        }
        // Both go stale: the viewer has moved on, the operator's moment has passed.
        let expires_ms = Some(now_ms() + max_age_ms);
        // Durable before it is acknowledged: a line the disk cannot hold is refused, not lost.
        let stored = self.store.enqueue(kind, text, priority, expires_ms);
        self.log_store(&stored);
        let interaction = stored.map_err(|e| Refusal::NotStored(e.to_string()))?;
        let outputs = self.scheduler.interaction(interaction.clone(), now_ms());
        Ok((interaction, outputs))
    }

    /// Answers a viewer's question from the products; a repeat within a minute is not queued again.
    pub(super) fn ask(&mut self, question: &str) -> Result<(Asked, Vec<Output>), Refusal> {
        let key = question
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        self.recent_questions.retain(|_, (_, at)| at.elapsed() < QUESTION_DEDUP);
        if let Some((asked, _)) = self.recent_questions.get(&key) {
            return Ok((Asked { duplicate: true, ..asked.clone() }, Vec::new()));
        }
        let answer = self.answerer.answer(question);
        tracing::info!(question, answer = %answer.text, confidence = answer.confidence, "question answered");
        // FAQ answers may carry SSML; anything that does not check is said as plain text.
        let ssml = crate::ssml::parse(&answer.text).map_or_else(|_| crate::ssml::from_plain(&answer.text), |s| s.ssml);
        let (interaction, outputs) = self.enqueue(InteractionKind::Answer, &ssml, 0)?;
        let asked = Asked {
            id: interaction.id,
            answer: answer.text,
            confidence: answer.confidence,
            matched: answer.matched,
            duplicate: false,
        };
        self.recent_questions.insert(key, (asked.clone(), Instant::now()));
        Ok((asked, outputs))
    }

    /// Swaps a prepared content change in (effective at the next sentence boundary), answers
    /// its caller, and starts preparing the next waiting change. A refused change changes
    /// nothing. What the change replaces is freed off the loop (a large catalog takes a while).
    pub(super) fn content_ready(
        &mut self,
        (result, reply): (Result<Prepared, ContentRefused>, ContentReply),
    ) -> Vec<Output> {
        let outputs = match result {
            Ok(prepared) => {
                let (info, outputs) = self.swap_content(prepared);
                let _ = reply.send(Ok(info));
                outputs
            }
            Err(refused) => {
                let _ = reply.send(Err(refused));
                Vec::new()
            }
        };
        self.changes.start_next(&self.library, &self.script_key);
        outputs
    }

    fn swap_content(&mut self, prepared: Prepared) -> (ContentInfo, Vec<Output>) {
        let Prepared { name, library, sentences, script_key, answerer, resume_at } = prepared;
        let doc = library.doc(name);
        tracing::info!(content = name.as_str(), origin = ?doc.origin, sentences = sentences.len(), "content changed");
        let info =
            ContentInfo { name, format: doc.format, origin: doc.origin.clone(), script_sentences: sentences.len() };
        let retired = (std::mem::replace(&mut self.answerer, answerer), std::mem::replace(&mut self.library, library));
        tokio::task::spawn_blocking(move || drop(retired));
        self.recent_questions.clear();
        self.script_key = script_key;
        let outputs = self.scheduler.replace_script(sentences, resume_at, now_ms());
        (info, outputs)
    }

    pub(super) fn answer_status(&self, call: ShowCall) {
        if let ShowCall::Status(reply) = call {
            let playing = self.scheduler.in_flight().map(|(cue, source)| {
                let CueAction::Say { text, .. } = &cue.action;
                Playing { cue: cue.id.clone(), source: source_name(source).into(), text: text.clone() }
            });
            let _ = reply.send(Status {
                room: self.scheduler.room(),
                offset: self.scheduler.offset(),
                script_sentences: self.scheduler.script_len(),
                queued_interactions: self.scheduler.queued_interactions(),
                playing,
                stage_connected: self.stage_connected,
                stage: self.last_health.as_ref().filter(|_| self.stage_connected).map(|(h, _)| h.clone()),
                stage_report_age_ms: self.last_health.as_ref().map(|(_, at)| at.elapsed().as_millis() as u64),
                state: self.state.clone(),
                stage_refused: self.stage_refused.clone(),
                cloud: self.cloud.clone(),
            });
        }
    }

    pub(super) async fn on_call(&mut self, link: &mut StageLink, call: ShowCall) {
        match call {
            status @ ShowCall::Status(_) => self.answer_status(status),
            ShowCall::CloudLink(state) => self.cloud = Some(state),
            ShowCall::ContentOf { reply } => {
                let _ = reply.send(self.library.clone());
            }
            ShowCall::ChangeContent { name, doc, reply } => {
                self.changes.request((name, doc, reply), &self.library, &self.script_key)
            }
            ShowCall::Say { text, priority, kind, reply } => match self.enqueue(kind, &text, priority) {
                Ok((interaction, outputs)) => {
                    self.apply(link, outputs).await;
                    let _ = reply.send(Ok(interaction.id));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            ShowCall::Ask { question, reply } => match self.ask(&question) {
                Ok((asked, outputs)) => {
                    self.apply(link, outputs).await;
                    let _ = reply.send(Ok(asked));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            ShowCall::Room { command, reply } => match self.scheduler.command(command, now_ms()) {
                Ok(outputs) => {
                    self.apply(link, outputs).await;
                    let _ = reply.send(Ok(self.scheduler.room()));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.to_string()));
                }
            },
        }
    }
}
