//! The show loop of the control plane: the one owner of the show's state. It connects to the
//! stage, feeds the [`Scheduler`] with the stage's lifecycle events and the API's calls, carries
//! out what the scheduler decides (persist, send, stop, end) and writes the audit log.
//!
//! The stage may restart at any time: we reconnect, say hello again and re-send the cue in
//! flight (cue ids are idempotent on the stage side, so a stage that survived does not replay it).

use std::collections::HashMap;
use std::time::Duration;

use emcee_protocol::{media_ts_to_ms, ControlMessage, CueAction, StageEvent, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::answer::Answerer;
use crate::api::{ApiCall, Asked, ContentInfo, ContentRefused, Playing, Status};
use crate::config::Config;
use crate::library::{image_base, Built, Doc, DocName, Library, Origin};
use crate::notify::notify;
use crate::scheduler::{Interaction, InteractionKind, Output, RoomCommand, Scheduler, Source};
use crate::store::{now_ms, Store, StoreError};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const CONNECT_PATIENCE: Duration = Duration::from_secs(60);
const END_PATIENCE: Duration = Duration::from_secs(20);
/// How long the picture fades to black when the room ends gracefully.
const END_FADE_MS: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the stage at {addr} did not accept a connection within {CONNECT_PATIENCE:?}: {last}")]
    StageUnreachable { addr: String, last: String },
    #[error("the stage refused the show: {0}")]
    Refused(String),
    #[error("the stage did not confirm the end of the show within {END_PATIENCE:?}")]
    EndTimeout,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How the show ends besides the room ending itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ending {
    /// When the room ends (queues dry, or a stop command).
    RoomEnds,
    /// After this long at the latest, whatever is playing.
    After(Duration),
}

/// Connects, retrying every 200 ms until `patience` runs out (`None`: forever).
async fn connect(url: &str, patience: Option<Duration>) -> Result<Ws, ControlError> {
    let deadline = patience.map(|p| Instant::now() + p);
    loop {
        match tokio_tungstenite::connect_async(url).await {
            Ok((ws, _)) => return Ok(ws),
            Err(e) if deadline.is_some_and(|d| Instant::now() >= d) => {
                return Err(ControlError::StageUnreachable { addr: url.to_string(), last: e.to_string() })
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn send(ws: &mut Ws, message: &ControlMessage) -> bool {
    match serde_json::to_string(message) {
        Ok(text) => ws.send(Message::text(text)).await.is_ok(),
        Err(_) => false,
    }
}

/// Connects and says hello; returns once the stage is ready.
async fn open(config: &Config, url: &str, patience: Option<Duration>) -> Result<Ws, ControlError> {
    loop {
        let mut ws = connect(url, patience).await?;
        let hello = ControlMessage::Hello { protocol: PROTOCOL_VERSION, config: config.stage.clone() };
        if !send(&mut ws, &hello).await {
            continue;
        }
        while let Some(message) = ws.next().await {
            let Ok(Message::Text(text)) = message else { continue };
            match serde_json::from_str::<StageEvent>(&text) {
                Ok(StageEvent::Ready { .. }) => return Ok(ws),
                Ok(StageEvent::Rejected { reason }) => return Err(ControlError::Refused(reason)),
                _ => {}
            }
        }
        // The stage went away during hello: try again.
    }
}

fn source_name(source: &Source) -> &'static str {
    match source {
        Source::Script(_) => "script",
        Source::Interaction(i) => match i.kind {
            InteractionKind::Operator => "operator",
            InteractionKind::Answer => "answer",
        },
    }
}

/// The show's state and the effects of the scheduler's decisions.
struct Show {
    scheduler: Scheduler,
    store: Store,
    script_key: String,
    /// Source and text of every cue sent and not yet finished, for the audit log.
    cues: HashMap<String, (&'static str, String)>,
    end_requested: bool,
    stage_connected: bool,
    answerer: Answerer,
    answer_max_age_ms: i64,
    /// The documents the show plays from.
    library: Library,
    last_health: Option<emcee_protocol::Health>,
    /// Questions answered lately (normalised text → answer, when), so a question repeated in
    /// the chat is answered once.
    recent_questions: HashMap<String, (Asked, Instant)>,
}

/// A repeated question within this long gets the queued answer, not a second one.
const QUESTION_DEDUP: Duration = Duration::from_secs(60);

impl Show {
    fn log_store<T>(result: Result<T, StoreError>) {
        if let Err(e) = result {
            // The show goes on (viewers first); the operator sees this in the journal.
            tracing::error!(error = %e, "state database write failed");
        }
    }

    async fn apply(&mut self, ws: &mut Ws, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::SaveOffset(o) => Self::log_store(self.store.save_offset(&self.script_key, o)),
                Output::Send { cue, source } => {
                    let CueAction::Say { text, .. } = &cue.action;
                    self.cues.insert(cue.id.clone(), (source_name(&source), crate::ssml::plain_of(text)));
                    send(ws, &ControlMessage::Cue(cue)).await;
                }
                Output::Stop { id, when } => {
                    send(ws, &ControlMessage::Stop { id: Some(id), when }).await;
                }
                Output::InteractionDone { id } => Self::log_store(self.store.interaction_done(id)),
                Output::InteractionExpired(i) => {
                    tracing::info!(id = i.id, text = %i.text, "stale answer dropped unsaid");
                    let cue = format!("i{}", i.id);
                    Self::log_store(self.store.audit(&cue, "answer", &i.text, "expired", 0));
                    Self::log_store(self.store.interaction_done(i.id));
                }
                Output::End => self.end_requested = true,
            }
        }
    }

    /// Records `event` of `cue`; `text` is the cue's words, or for marks and actions their name.
    fn audit(&self, cue: &str, text: Option<&str>, event: &str, media_ts: u64) {
        let known = self.cues.get(cue);
        // A cue that has finished is no longer known (a gesture may outlast its sentence).
        let source = known.map_or(if cue.starts_with('s') { "script" } else { "unknown" }, |(s, _)| *s);
        let text = text.or(known.map(|(_, t)| t.as_str())).unwrap_or("");
        Self::log_store(self.store.audit(cue, source, text, event, media_ts_to_ms(media_ts)));
    }

    async fn on_event(&mut self, ws: &mut Ws, event: StageEvent) {
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
                self.apply(ws, outputs).await;
            }
            StageEvent::Failed { id, reason } => {
                tracing::warn!(cue = %id, %reason, "cue failed; skipping it");
                self.audit(&id, None, "failed", 0);
                self.cues.remove(&id);
                let outputs = self.scheduler.failed(&id, now_ms());
                self.apply(ws, outputs).await;
            }
            StageEvent::Mark { id, name, media_ts } => {
                tracing::info!(cue = %id, mark = %name, media_ms = media_ts_to_ms(media_ts), "mark");
                self.audit(&id, Some(&name), "mark", media_ts);
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
                self.last_health = Some(h);
            }
            StageEvent::Accepted { .. } | StageEvent::Ready { .. } | StageEvent::Ended { .. } => {}
        }
    }

    /// Stores a line durably (before anyone is told it is accepted) and hands it to the scheduler.
    fn enqueue(
        &mut self,
        kind: InteractionKind,
        text: &str,
        priority: i32,
    ) -> Result<(Interaction, Vec<Output>), StoreError> {
        // Answers go stale (the viewer has moved on); operator lines do not.
        let expires_ms = (kind == InteractionKind::Answer).then(|| now_ms() + self.answer_max_age_ms);
        let interaction = self.store.enqueue(kind, text, priority, expires_ms)?;
        let outputs = self.scheduler.interaction(interaction.clone(), now_ms());
        Ok((interaction, outputs))
    }

    /// Answers a viewer's question from the products; a repeat within a minute is not queued again.
    fn ask(&mut self, question: &str) -> Result<(Asked, Vec<Output>), StoreError> {
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

    /// Checks new content with the rest of the library, stores it, and hands it to the
    /// scheduler (effective at the next sentence boundary). `doc: None` goes back to the
    /// configured file. A refused change changes nothing.
    fn change_content(
        &mut self,
        config: &Config,
        name: DocName,
        doc: Option<Doc>,
    ) -> Result<(ContentInfo, Vec<Output>), ContentRefused> {
        let file = match name {
            DocName::Materials => config.products.as_deref(),
            DocName::Script => Some(config.script.as_path()),
        };
        let candidate = match doc {
            Some(doc) => doc,
            None => Doc::from_file(name, file).map_err(ContentRefused::Invalid)?,
        };
        let library = self.library.with(candidate);
        let Built { materials, sentences, script_key } =
            library.build(config.stage.avatar.scene, &image_base(config)).map_err(ContentRefused::Invalid)?;
        let stored = |e: StoreError| ContentRefused::Store(e.to_string());
        // Durable before it is acknowledged or played.
        let mut library = library;
        if matches!(library.doc(name).origin, Origin::Request) {
            let updated_ms = now_ms();
            self.store.save_content(library.doc(name), updated_ms).map_err(stored)?;
            let doc = Doc { origin: Origin::Stored { updated_ms }, ..library.doc(name).clone() };
            library = library.with(doc);
        } else {
            self.store.delete_content(name).map_err(stored)?;
        }
        let resume_at =
            if script_key == self.script_key { None } else { Some(self.store.offset(&script_key).map_err(stored)?) };
        tracing::info!(content = name.as_str(), origin = ?library.doc(name).origin, sentences = sentences.len(), "content changed");
        self.answerer = Answerer::new(&materials.products, config.min_confidence, &config.holding_line);
        self.recent_questions.clear();
        self.script_key = script_key;
        let script_sentences = sentences.len();
        let outputs = self.scheduler.replace_script(sentences, resume_at, now_ms());
        let doc = library.doc(name);
        let info = ContentInfo { name, format: doc.format, origin: doc.origin.clone(), script_sentences };
        self.library = library;
        Ok((info, outputs))
    }

    fn answer_status(&self, call: ApiCall) {
        if let ApiCall::Status(reply) = call {
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
                stage: self.last_health.clone().filter(|_| self.stage_connected),
            });
        }
    }

    async fn on_call(&mut self, ws: &mut Ws, config: &Config, call: ApiCall) {
        match call {
            status @ ApiCall::Status(_) => self.answer_status(status),
            ApiCall::ContentOf { name, reply } => {
                let _ = reply.send(self.library.doc(name).clone());
            }
            ApiCall::ChangeContent { name, doc, reply } => match self.change_content(config, name, doc) {
                Ok((info, outputs)) => {
                    self.apply(ws, outputs).await;
                    let _ = reply.send(Ok(info));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            ApiCall::Say { text, priority, reply } => match self.enqueue(InteractionKind::Operator, &text, priority) {
                Ok((interaction, outputs)) => {
                    self.apply(ws, outputs).await;
                    let _ = reply.send(Ok(interaction.id));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.to_string()));
                }
            },
            ApiCall::Ask { question, reply } => match self.ask(&question) {
                Ok((asked, outputs)) => {
                    self.apply(ws, outputs).await;
                    let _ = reply.send(Ok(asked));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.to_string()));
                }
            },
            ApiCall::Room { command, reply } => match self.scheduler.command(command, now_ms()) {
                Ok(outputs) => {
                    self.apply(ws, outputs).await;
                    let _ = reply.send(Ok(self.scheduler.room()));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.to_string()));
                }
            },
        }
    }
}

/// Why the wait before going live ended.
enum GoLive {
    /// Open the room. `fresh`: a new show (a schedule window opened, or `start` was called),
    /// which starts the script over if the last show played it to the end; otherwise the show
    /// resumes where the state database says it was.
    Now {
        fresh: bool,
    },
    Quit,
}

fn instant_of(t: jiff::Timestamp) -> Instant {
    let now = jiff::Timestamp::now();
    let ahead = now.duration_until(t).unsigned_abs();
    if t > now {
        Instant::now() + ahead
    } else {
        Instant::now()
    }
}

/// A deadline that never comes, for `select!` arms that are off.
fn never() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// Before the stage is asked to stream: answers the API (lines are queued durably) and waits
/// for the room to open — at once with `autostart` or inside a schedule window (when `at_boot`),
/// when a schedule window opens, or on `start`.
async fn wait_to_go_live(
    show: &mut Show,
    config: &Config,
    io: &mut Io<'_, impl std::future::Future<Output = ()> + Unpin>,
    at_boot: bool,
) -> GoLive {
    let schedule = &config.schedule;
    let Io { calls, end_at, stop, watchdog_tick } = io;
    if at_boot && ((schedule.is_empty() && config.autostart) || schedule.is_open(jiff::Timestamp::now())) {
        return GoLive::Now { fresh: false };
    }
    tracing::info!("the room is closed; waiting for its schedule or a start command");
    loop {
        let next_change = schedule.next_change(jiff::Timestamp::now()).map_or_else(never, instant_of);
        tokio::select! {
            Some(call) = calls.recv() => match call {
                ApiCall::Room { command: RoomCommand::Start, reply } => {
                    let _ = reply.send(Ok(crate::scheduler::Room::Live));
                    return GoLive::Now { fresh: true };
                }
                ApiCall::Room { command, reply } => {
                    let _ = reply.send(show.scheduler.command(command, now_ms()).map(|_| show.scheduler.room()).map_err(|e| e.to_string()));
                }
                // The room is idle: lines only join the queue (the scheduler sends nothing).
                ApiCall::Say { text, priority, reply } => {
                    let result = show.enqueue(InteractionKind::Operator, &text, priority).map(|(i, _)| i.id);
                    let _ = reply.send(result.map_err(|e| e.to_string()));
                }
                ApiCall::Ask { question, reply } => {
                    let _ = reply.send(show.ask(&question).map(|(asked, _)| asked).map_err(|e| e.to_string()));
                }
                status @ ApiCall::Status(_) => show.answer_status(status),
                ApiCall::ContentOf { name, reply } => {
                    let _ = reply.send(show.library.doc(name).clone());
                }
                ApiCall::ChangeContent { name, doc, reply } => {
                    let result = show.change_content(config, name, doc).map(|(info, outputs)| {
                        // The room is closed: nothing is sent, the new script's place is kept.
                        for output in outputs {
                            if let Output::SaveOffset(o) = output {
                                Show::log_store(show.store.save_offset(&show.script_key, o));
                            }
                        }
                        info
                    });
                    let _ = reply.send(result);
                }
            },
            _ = tokio::time::sleep_until(next_change) => {
                if schedule.is_open(jiff::Timestamp::now()) {
                    tracing::info!("schedule window opens");
                    return GoLive::Now { fresh: true };
                }
            }
            _ = tokio::time::sleep_until(end_at.unwrap_or_else(never)) => return GoLive::Quit,
            _ = &mut **stop => return GoLive::Quit,
            _ = watchdog_tick.tick() => notify("WATCHDOG=1"),
        }
    }
}

/// What the show loop waits on besides the stage: the API's calls, the run-time deadline, the
/// stop signal and the watchdog.
struct Io<'a, S> {
    calls: &'a mut mpsc::Receiver<ApiCall>,
    end_at: Option<Instant>,
    stop: &'a mut S,
    watchdog_tick: &'a mut tokio::time::Interval,
}

/// How one show ended.
enum Played {
    /// The room ended (queues dry, `stop`, or its schedule window closed): the stream faded out.
    RoomEnded,
    /// The run time is up, a stop signal came, or the stage ended the show: the daemon ends.
    Quit,
}

/// Runs shows until a stop signal or the run time ends it. `calls` carries the API's requests.
///
/// A room that ends gracefully waits for its next schedule window or a `start` — except a
/// one-off show (`autostart` without a schedule), which ends the daemon with it.
pub async fn run_show(
    config: &Config,
    (library, built): (Library, Built),
    ending: Ending,
    stop: impl std::future::Future<Output = ()>,
    store: Store,
    mut calls: mpsc::Receiver<ApiCall>,
) -> Result<(), ControlError> {
    let Built { materials, sentences, script_key: key } = built;
    let answerer = Answerer::new(&materials.products, config.min_confidence, &config.holding_line);
    let offset = store.offset(&key)?;
    let queued = store.queued()?;
    if !queued.is_empty() || offset.sentence > 0 || offset.pass > 0 {
        tracing::info!(sentence = offset.sentence, pass = offset.pass, queued = queued.len(), "resuming");
    }
    let scheduler = Scheduler::new(sentences, config.when_done, offset, queued).with_interrupt(config.interrupt);
    let mut show = Show {
        scheduler,
        store,
        script_key: key,
        cues: HashMap::new(),
        end_requested: false,
        stage_connected: false,
        answerer,
        answer_max_age_ms: (config.answer_max_age_s * 1000) as i64,
        last_health: None,
        recent_questions: HashMap::new(),
        library,
    };

    let end_at = match ending {
        Ending::After(d) => Some(Instant::now() + d),
        Ending::RoomEnds => None,
    };
    let watchdog = crate::notify::watchdog_interval().unwrap_or(Duration::from_secs(3600));
    let mut watchdog_tick = tokio::time::interval(watchdog);
    tokio::pin!(stop);
    let mut io = Io { calls: &mut calls, end_at, stop: &mut stop, watchdog_tick: &mut watchdog_tick };
    let one_off = config.autostart && config.schedule.is_empty();
    // Up: the API answers from here on, whether or not the room is open.
    notify("READY=1");
    // A show that had already ended before a restart is not opened again just to end it.
    let mut at_boot = !show.scheduler.has_ended();
    if !at_boot && one_off {
        tracing::warn!("this show already played its script to the end (state database); nothing to do");
        return Ok(());
    }
    loop {
        match wait_to_go_live(&mut show, config, &mut io, at_boot).await {
            GoLive::Quit => return Ok(()),
            GoLive::Now { fresh } => {
                if fresh {
                    if let Some(o) = show.scheduler.rewind_if_done() {
                        Show::log_store(show.store.save_offset(&show.script_key, o));
                    }
                }
            }
        }
        at_boot = false;
        match play(&mut show, config, &mut io).await? {
            Played::Quit => return Ok(()),
            Played::RoomEnded if one_off => return Ok(()),
            Played::RoomEnded => {
                tracing::info!("the room has ended; waiting for the next window or a start command");
                show.end_requested = false;
                show.stage_connected = false;
                notify("STATUS=room closed");
            }
        }
    }
}

/// Opens the room on the stage and plays until the room ends or the daemon is asked to quit.
async fn play(
    show: &mut Show,
    config: &Config,
    io: &mut Io<'_, impl std::future::Future<Output = ()> + Unpin>,
) -> Result<Played, ControlError> {
    let url = format!("ws://{}", config.stage_listen);
    let mut ws = open(config, &url, Some(CONNECT_PATIENCE)).await?;
    show.stage_connected = true;
    tracing::info!(stage = %config.stage_listen, "stage ready; the room opens");
    notify("STATUS=live");
    if let Ok(outputs) = show.scheduler.command(RoomCommand::Start, now_ms()) {
        show.apply(&mut ws, outputs).await;
    }
    let Io { calls, end_at, stop, watchdog_tick } = io;
    let end_at = *end_at;

    while !show.end_requested {
        tokio::select! {
            message = ws.next() => {
                match message {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<StageEvent>(&text) {
                        Ok(StageEvent::Ended { media_ts }) => {
                            // Stopped on the stage's side (systemd stop, Ctrl-C): the show is over.
                            tracing::info!(media_ms = media_ts_to_ms(media_ts), "the stage ended the show");
                            notify("STOPPING=1");
                            return Ok(Played::Quit);
                        }
                        Ok(event) => show.on_event(&mut ws, event).await,
                        Err(e) => tracing::warn!(error = %e, "unreadable stage event ignored"),
                    },
                    Some(Ok(_)) => {}
                    None | Some(Err(_)) => {
                        tracing::warn!("lost the stage; reconnecting and re-sending the cue in flight");
                        show.stage_connected = false;
                        let reopened = tokio::select! {
                            reopened = open(config, &url, None) => Some(reopened?),
                            _ = tokio::time::sleep_until(end_at.unwrap_or_else(never)) => None,
                            _ = &mut **stop => None,
                        };
                        let Some(reopened) = reopened else {
                            tracing::warn!("the show ended while the stage was away");
                            return Ok(Played::Quit);
                        };
                        ws = reopened;
                        show.stage_connected = true;
                        let outputs = show.scheduler.resend();
                        show.apply(&mut ws, outputs).await;
                    }
                }
            }
            Some(call) = calls.recv() => show.on_call(&mut ws, config, call).await,
            _ = tokio::time::sleep_until(
                config.schedule.next_change(jiff::Timestamp::now()).map_or_else(never, instant_of)
            ) => {
                if !config.schedule.is_open(jiff::Timestamp::now()) {
                    tracing::info!("schedule window closes; ending the show after this sentence");
                    if let Ok(outputs) = show.scheduler.command(RoomCommand::Stop, now_ms()) {
                        show.apply(&mut ws, outputs).await;
                    }
                }
            }
            _ = tokio::time::sleep_until(end_at.unwrap_or_else(never)) => {
                tracing::info!("run time is up; ending the show");
                break;
            }
            _ = &mut **stop => {
                tracing::info!("stop requested; ending the show");
                break;
            }
            _ = watchdog_tick.tick() => notify("WATCHDOG=1"),
        }
    }

    // The room ending by itself (or by `stop`) fades out; a deadline or a signal ends at once.
    let played = if show.end_requested { Played::RoomEnded } else { Played::Quit };
    if matches!(played, Played::Quit) {
        notify("STOPPING=1");
    }
    let fade_ms = if show.end_requested { END_FADE_MS } else { 0 };
    send(&mut ws, &ControlMessage::End { fade_ms }).await;
    let wait_for_end = async {
        while let Some(message) = ws.next().await {
            let Ok(Message::Text(text)) = message else { continue };
            match serde_json::from_str::<StageEvent>(&text) {
                Ok(StageEvent::Ended { media_ts }) => {
                    tracing::info!(media_ms = media_ts_to_ms(media_ts), "the stage closed the stream");
                    return;
                }
                Ok(event) => show.on_event(&mut ws, event).await,
                Err(_) => {}
            }
        }
    };
    tokio::time::timeout(END_PATIENCE, wait_for_end).await.map_err(|_| ControlError::EndTimeout)?;
    Ok(played)
}
