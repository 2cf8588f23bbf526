//! The show loop of the control plane: the one owner of the show's state. It connects to the
//! stage, feeds the [`Scheduler`] with the stage's lifecycle events and the show calls, carries
//! out what the scheduler decides (persist, send, stop, end) and writes the audit log.
//!
//! The stage may restart at any time: we reconnect, say hello again and re-send the cue in
//! flight (cue ids are idempotent on the stage side, so a stage that survived does not replay it).
//!
//! # Layout
//! - this file: the loop — wait for the room to open, play, end — with its deadlines.
//! - [`calls`]: what the show can be asked (status, say, ask, room, content) and its replies.
//! - `show`: the show's state and the effects of each decision and event.
//! - `content`: content changes, checked and stored off the loop, then swapped in.
//! - `state_health`: the state database as the show sees it (set aside, writes failing, gaps).
//! - `stage_link`: the WebSocket to the stage, up or down; `error`: what ends the loop, and its
//!   patience.

pub mod calls;
mod content;
mod error;
mod show;
mod stage_link;
mod state_health;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use emcee_protocol::{media_ts_to_ms, ControlMessage, StageEvent};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::Config;
use crate::library::{Built, Library};
use crate::scheduler::{Output, RoomCommand, Scheduler};
use crate::store::{now_ms, SetAside, Store};
use calls::ShowCall;
use content::{Changes, ContentSettings};
use emcee_protocol::notify::notify;
pub use error::ControlError;
use error::{CONNECT_PATIENCE, END_FADE_MS, END_PATIENCE, REFUSED_RETRY};
use show::Show;
use stage_link::{open, StageLink, Ws};
use state_health::StateHealth;

/// How the show ends besides the room ending itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ending {
    /// When the room ends (queues dry, or a stop command).
    RoomEnds,
    /// After this long at the latest, whatever is playing.
    After(Duration),
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
                ShowCall::Room { command: RoomCommand::Start, reply } => {
                    let _ = reply.send(Ok(crate::scheduler::Room::Live));
                    return GoLive::Now { fresh: true };
                }
                ShowCall::Room { command, reply } => {
                    let _ = reply.send(show.scheduler.command(command, now_ms()).map(|_| show.scheduler.room()).map_err(|e| e.to_string()));
                }
                // The room is idle: lines only join the queue (the scheduler sends nothing).
                ShowCall::Say { text, priority, kind, reply } => {
                    let result = show.enqueue(kind, &text, priority).map(|(i, _)| i.id);
                    let _ = reply.send(result);
                }
                ShowCall::Ask { question, reply } => {
                    let _ = reply.send(show.ask(&question).map(|(asked, _)| asked));
                }
                status @ ShowCall::Status(_) => show.answer_status(status),
                ShowCall::CloudLink(state) => show.cloud = Some(state),
                ShowCall::ContentOf { reply } => {
                    let _ = reply.send(show.library.clone());
                }
                ShowCall::ChangeContent { name, doc, reply } => {
                    show.changes.request((name, doc, reply), &show.library, &show.script_key)
                }
            },
            ready = show.changes.finished() => {
                // The room is closed: nothing is sent, the new script's place is kept.
                for output in show.content_ready(ready) {
                    if let Output::SaveOffset(o) = output {
                        show.log_store(&show.store.save_offset(&show.script_key, o));
                    }
                }
            }
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
    calls: &'a mut mpsc::Receiver<ShowCall>,
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
    (store, set_aside): (Store, Option<SetAside>),
    mut calls: mpsc::Receiver<ShowCall>,
) -> Result<(), ControlError> {
    let Built { materials, sentences, script_key: key } = built;
    let (changes, answerer) = Changes::new(ContentSettings::of(config), Store::open(&config.state_dir)?, materials)
        .map_err(ControlError::Thread)?;
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
        answer_max_age_ms: config.answer_max_age.as_millis() as i64,
        last_health: None,
        recent_questions: HashMap::new(),
        library: Arc::new(library),
        changes,
        state: StateHealth::new(set_aside),
        stage_refused: None,
        cloud: None,
    };

    let end_at = match ending {
        Ending::After(d) => Some(Instant::now() + d),
        Ending::RoomEnds => None,
    };
    let watchdog = emcee_protocol::notify::watchdog_interval().unwrap_or(Duration::from_secs(3600));
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
                        show.log_store(&show.store.save_offset(&show.script_key, o));
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

/// The connection to the stage being made, if one is: the first (with patience) or a
/// reconnection after the stage went away (without).
type Connecting<'a> =
    Option<std::pin::Pin<Box<dyn std::future::Future<Output = Result<Ws, ControlError>> + Send + 'a>>>;

async fn connected(connecting: &mut Connecting<'_>) -> Result<Ws, ControlError> {
    match connecting.as_mut() {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Opens the room on the stage and plays until the room ends or the daemon is asked to quit.
/// Whether or not the stage is there, the loop answers calls and pings the watchdog: a stage
/// outage leaves the API and the control plane's liveness untouched.
async fn play(
    show: &mut Show,
    config: &Config,
    io: &mut Io<'_, impl std::future::Future<Output = ()> + Unpin>,
) -> Result<Played, ControlError> {
    let mut link = StageLink::default();
    let mut connecting: Connecting = Some(Box::pin(open(config, Some(CONNECT_PATIENCE))));
    let Io { calls, end_at, stop, watchdog_tick } = io;
    let end_at = *end_at;
    // The room opens now (status says so at once); what it sends before the stage is there
    // goes when the link comes up.
    tracing::info!(stage = %config.stage_socket.display(), "the room opens; connecting to the stage");
    if let Ok(outputs) = show.scheduler.command(RoomCommand::Start, now_ms()) {
        show.apply(&mut link, outputs).await;
    }

    while !show.end_requested {
        tokio::select! {
            event = link.next() => match event {
                Some(Ok(StageEvent::Ended { media_ts })) => {
                    // Stopped on the stage's side (systemd stop, Ctrl-C): the show is over.
                    tracing::info!(media_ms = media_ts_to_ms(media_ts), "the stage ended the show");
                    notify("STOPPING=1");
                    return Ok(Played::Quit);
                }
                Some(Ok(event)) => show.on_event(&mut link, event).await,
                Some(Err(e)) => tracing::warn!(error = %e, "unreadable stage event ignored"),
                None => {
                    tracing::warn!("lost the stage; reconnecting, then re-sending the cue in flight");
                    show.stage_connected = false;
                    notify("STATUS=stage away; reconnecting");
                    connecting = Some(Box::pin(open(config, None)));
                }
            },
            ws = connected(&mut connecting) => {
                connecting = None;
                let ws = match ws {
                    Ok(ws) => ws,
                    // The stage said no (another configuration, a device it cannot open): a
                    // restart of ours would not change its mind. Say why everywhere, ask again
                    // later, and go on answering.
                    Err(ControlError::Refused(reason)) => {
                        tracing::error!(%reason, "the stage refused the show; asking again in {REFUSED_RETRY:?}");
                        notify("STATUS=the stage refused the show");
                        show.stage_refused = Some(reason);
                        connecting = Some(Box::pin(async {
                            tokio::time::sleep(REFUSED_RETRY).await;
                            open(config, None).await
                        }));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                link.up(ws);
                show.stage_refused = None;
                show.stage_connected = true;
                notify("STATUS=live");
                tracing::info!("stage ready");
                // The cue in flight (a stage that kept it ignores the copy).
                let outputs = show.scheduler.resend();
                show.apply(&mut link, outputs).await;
            }
            Some(call) = calls.recv() => show.on_call(&mut link, call).await,
            ready = show.changes.finished() => {
                let outputs = show.content_ready(ready);
                show.apply(&mut link, outputs).await;
            }
            _ = tokio::time::sleep_until(
                config.schedule.next_change(jiff::Timestamp::now()).map_or_else(never, instant_of)
            ) => {
                if !config.schedule.is_open(jiff::Timestamp::now()) {
                    tracing::info!("schedule window closes; ending the show after this sentence");
                    if let Ok(outputs) = show.scheduler.command(RoomCommand::Stop, now_ms()) {
                        show.apply(&mut link, outputs).await;
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
    end_on_stage(show, &mut link).await?;
    Ok(played)
}

/// Asks the stage to end the show and waits until it has closed the streams. A stage that is
/// away has nothing to close for us (systemd stops it with us; a new show says hello again).
async fn end_on_stage(show: &mut Show, link: &mut StageLink) -> Result<(), ControlError> {
    let fade_ms = if show.end_requested { END_FADE_MS } else { 0 };
    if !link.send(&ControlMessage::End { fade_ms }).await {
        tracing::warn!("the stage is away; the show ends without it");
        return Ok(());
    }
    let wait_for_end = async {
        // A link that goes down (a send failed: the stage closed first) has nothing more to say.
        while link.is_up() {
            let Some(event) = link.next().await else { return };
            match event {
                Ok(StageEvent::Ended { media_ts }) => {
                    tracing::info!(media_ms = media_ts_to_ms(media_ts), "the stage closed the stream");
                    return;
                }
                Ok(event) => show.on_event(link, event).await,
                Err(_) => {}
            }
        }
    };
    tokio::time::timeout(END_PATIENCE, wait_for_end).await.map_err(|_| ControlError::EndTimeout)
}
