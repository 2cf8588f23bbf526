//! The speech thread: synthesizes `say` cues in arrival order, ahead of the clock, at a lower
//! priority than the frames.

use std::sync::mpsc::{Receiver, Sender};

use emcee_speech::{Speaker, Utterance};

/// The speech thread's nice value (0 normal … 19 lowest).
const SPEECH_NICE: i32 = 10;

/// A `say` cue for the speech thread: id, SSML, voice.
pub type SpeechJob = (String, String, emcee_protocol::Voice);

/// What the speech thread hands back: the cue's id and its audio, or why there is none.
pub type Spoken = (String, Result<Utterance, String>);

/// Synthesizes `say` cues in arrival order until the job channel closes.
pub fn run_speech(mut speaker: Speaker, jobs: Receiver<SpeechJob>, spoken: Sender<Spoken>) {
    // Synthesis runs ahead of the clock and can wait; a frame cannot. At nice 10 a neural
    // voice's bursts of inference take the cores only when rendering and encoding leave them.
    // (On Linux, setpriority on a thread id applies to that thread alone.)
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), SPEECH_NICE) {
        tracing::warn!(error = %e, "speech thread keeps normal priority");
    }
    for (id, text, voice) in jobs {
        let result = speaker.speak(&text, &voice).map_err(|e| e.to_string());
        if spoken.send((id, result)).is_err() {
            break;
        }
    }
}
