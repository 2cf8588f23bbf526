//! `emcee-espeak`: text → 16-bit PCM + phoneme events, using libespeak-ng.
//!
//! # Layout
//! One request per line on stdin (JSON [`Request`]); for each, one JSON [`Response`] line on
//! stdout followed by exactly `samples × 2` bytes of little-endian mono PCM at `sample_rate`.
//! Text is SSML (espeak-ng's SSML mode); `<mark name="…"/>` positions come back in `marks`.
//! A request with `"phonemize": true` takes plain text instead and answers with its IPA, clause
//! by clause (what neural voices such as Piper are fed), and no PCM.
//! This binary is the only emcee program that links espeak-ng (GPL-3.0-or-later); the stage
//! talks to it over pipes, which keeps GPL code out of the stage's process.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_short, c_uint, c_void, CString};
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Request {
    text: String,
    voice: String,
    words_per_minute: u32,
    /// 0 … 99; 50 is the voice's own.
    #[serde(default = "voice_pitch")]
    pitch: u32,
    /// Answer with IPA `clauses` instead of speech; `text` is plain text, not SSML.
    #[serde(default)]
    phonemize: bool,
}

fn voice_pitch() -> u32 {
    50
}

#[derive(Serialize, Default)]
struct Response {
    sample_rate: u32,
    samples: usize,
    /// (IPA name, start in ms); an empty name is a pause.
    phonemes: Vec<(String, u32)>,
    /// (mark name, position in ms).
    marks: Vec<(String, u32)>,
    /// For `phonemize`: (IPA with stress marks, the punctuation that ended the clause or "").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    clauses: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

// --- libespeak-ng FFI (speak_lib.h, API revision 12) ---------------------------------------

const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
const INITIALIZE_PHONEME_EVENTS: c_int = 0x0001;
const INITIALIZE_PHONEME_IPA: c_int = 0x0002;
const INITIALIZE_DONT_EXIT: c_int = 0x8000;
const CHARS_UTF8: c_uint = 1;
const SSML: c_uint = 0x10;
const POS_CHARACTER: c_int = 1;
const PARAM_RATE: c_int = 1;
const PARAM_PITCH: c_int = 3;
const EVENT_LIST_TERMINATED: c_int = 0;
const EVENT_WORD: c_int = 1;
const EVENT_PHONEME: c_int = 7;

#[repr(C)]
struct EspeakEvent {
    kind: c_int,
    unique_identifier: c_uint,
    text_position: c_int,
    length: c_int,
    audio_position: c_int,
    sample: c_int,
    user_data: *mut c_void,
    id: [u8; 8],
}

type SynthCallback = extern "C" fn(*mut c_short, c_int, *mut EspeakEvent) -> c_int;

#[link(name = "espeak-ng")]
extern "C" {
    fn espeak_Initialize(output: c_int, buflength: c_int, path: *const c_char, options: c_int) -> c_int;
    fn espeak_SetSynthCallback(cb: SynthCallback);
    fn espeak_SetVoiceByName(name: *const c_char) -> c_int;
    fn espeak_SetParameter(parameter: c_int, value: c_int, relative: c_int) -> c_int;
    #[allow(clippy::too_many_arguments)]
    fn espeak_Synth(
        text: *const c_void,
        size: usize,
        position: c_uint,
        position_type: c_int,
        end_position: c_uint,
        flags: c_uint,
        unique_identifier: *mut c_uint,
        user_data: *mut c_void,
    ) -> c_int;
    fn espeak_Synchronize() -> c_int;
    fn espeak_TextToPhonemes(textptr: *mut *const c_void, textmode: c_int, phonememode: c_int) -> *const c_char;
}

/// `espeak_TextToPhonemes` phoneme mode: IPA names, no separator between phonemes.
const PHONEMES_IPA: c_int = 0x02;

#[derive(Default)]
struct Collected {
    pcm: Vec<i16>,
    phonemes: Vec<(String, u32)>,
    /// (1-based character position in the text, ms) of every word.
    words: Vec<(usize, u32)>,
}

thread_local! {
    // Synchronous mode calls the callback on the calling thread, inside espeak_Synth.
    static COLLECTED: RefCell<Collected> = RefCell::new(Collected::default());
}

extern "C" fn on_synth(wav: *mut c_short, count: c_int, events: *mut EspeakEvent) -> c_int {
    COLLECTED.with(|c| {
        let mut c = c.borrow_mut();
        if !wav.is_null() && count > 0 {
            // SAFETY: espeak passes `count` valid samples at `wav` for the duration of the call.
            let samples = unsafe { std::slice::from_raw_parts(wav, count as usize) };
            c.pcm.extend_from_slice(samples);
        }
        let mut ev = events;
        while !ev.is_null() {
            // SAFETY: `events` is an array terminated by an EVENT_LIST_TERMINATED entry, valid
            // for the duration of the callback; we stop at the terminator.
            let event = unsafe { &*ev };
            if event.kind == EVENT_LIST_TERMINATED {
                break;
            }
            let at = event.audio_position.max(0) as u32;
            if event.kind == EVENT_PHONEME {
                let len = event.id.iter().position(|&b| b == 0).unwrap_or(8);
                let name = String::from_utf8_lossy(&event.id[..len]).into_owned();
                c.phonemes.push((name, at));
            } else if event.kind == EVENT_WORD {
                c.words.push((event.text_position.max(0) as usize, at));
            }
            // SAFETY: still inside the terminated array (the terminator has not been reached).
            ev = unsafe { ev.add(1) };
        }
    });
    0
}

/// Removes `<mark name="…"/>` tags (in the normalised form emcee sends) and returns the text
/// without them plus each mark's name and 1-based character position in that text.
///
/// espeak-ng's own mark events are unreliable (a mark right after a sentence end is dropped),
/// so marks are timed here: at the first word that starts at or after the mark.
fn take_marks(text: &str) -> (String, Vec<(String, usize)>) {
    const OPEN: &str = "<mark name=\"";
    let mut out = String::with_capacity(text.len());
    let mut marks = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(OPEN) {
        let after = &rest[i + OPEN.len()..];
        let Some(end) = after.find("\"/>") else { break };
        out.push_str(&rest[..i]);
        marks.push((after[..end].to_string(), out.chars().count() + 1));
        rest = &after[end + 3..];
    }
    out.push_str(rest);
    (out, marks)
}

/// Synthesizes one request: the response header and its PCM.
fn synthesize(sample_rate: u32, req: &Request) -> (Response, Vec<i16>) {
    let fail = |e: String| (Response { sample_rate, error: Some(e), ..Response::default() }, Vec::new());
    let Ok(voice) = CString::new(req.voice.as_str()) else { return fail("voice name contains NUL".into()) };
    let (text, mark_positions) = take_marks(&req.text);
    let Ok(text) = CString::new(text) else { return fail("text contains NUL".into()) };
    // SAFETY: `voice` is a valid NUL-terminated string for the duration of the call.
    if unsafe { espeak_SetVoiceByName(voice.as_ptr()) } != 0 {
        return fail(format!("espeak-ng has no voice `{}`", req.voice));
    }
    let rate = req.words_per_minute.clamp(80, 450) as c_int;
    // SAFETY: plain integer parameter call on an initialised library.
    unsafe { espeak_SetParameter(PARAM_RATE, rate, 0) };
    // SAFETY: as above.
    unsafe { espeak_SetParameter(PARAM_PITCH, req.pitch.min(99) as c_int, 0) };
    COLLECTED.with(|c| *c.borrow_mut() = Collected::default());
    let bytes = text.as_bytes_with_nul();
    // SAFETY: `text` outlives the synchronous call; size includes the terminator as documented.
    let rc = unsafe {
        espeak_Synth(
            bytes.as_ptr().cast(),
            bytes.len(),
            0,
            POS_CHARACTER,
            0,
            CHARS_UTF8 | SSML,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    // SAFETY: no arguments; waits for the (already synchronous) synthesis to complete.
    unsafe { espeak_Synchronize() };
    if rc != 0 {
        return fail(format!("espeak_Synth failed with code {rc}"));
    }
    let collected = COLLECTED.with(|c| std::mem::take(&mut *c.borrow_mut()));
    let end_ms = (collected.pcm.len() as u64 * 1000 / u64::from(sample_rate.max(1))) as u32;
    let marks = mark_positions
        .into_iter()
        .map(|(name, pos)| {
            let at = collected.words.iter().find(|(p, _)| *p >= pos).map_or(end_ms, |w| w.1);
            (name, at)
        })
        .collect();
    let response = Response {
        sample_rate,
        samples: collected.pcm.len(),
        phonemes: collected.phonemes,
        marks,
        ..Response::default()
    };
    (response, collected.pcm)
}

/// The IPA of plain `text`, one entry per clause with the punctuation that ended it.
///
/// espeak-ng reads one clause per call and moves the text pointer past it (and one character
/// into the next); the clause's end punctuation is not in the IPA, so it is read back from the
/// text that was consumed.
fn phonemize(text: &str) -> Result<Vec<(String, String)>, String> {
    let text = CString::new(text).map_err(|_| "text contains NUL".to_string())?;
    let bytes = text.as_bytes();
    let base = text.as_ptr();
    let mut cursor: *const c_void = base.cast();
    let mut clauses = Vec::new();
    let mut consumed = 0usize;
    while !cursor.is_null() && consumed < bytes.len() {
        // SAFETY: `cursor` points into `text`'s NUL-terminated buffer (or is the start of it);
        // espeak-ng reads up to the NUL and advances it, or sets it to null at the end.
        let ipa = unsafe { espeak_TextToPhonemes(&mut cursor, CHARS_UTF8 as c_int, PHONEMES_IPA) };
        let next = if cursor.is_null() {
            bytes.len()
        } else {
            // Both pointers are into the same buffer; the difference is a byte offset.
            (cursor as usize).saturating_sub(base as usize).min(bytes.len())
        };
        let ipa = if ipa.is_null() {
            String::new()
        } else {
            // SAFETY: espeak-ng returns a NUL-terminated string valid until its next call.
            unsafe { std::ffi::CStr::from_ptr(ipa) }.to_string_lossy().trim().to_string()
        };
        let piece = String::from_utf8_lossy(&bytes[consumed..next.max(consumed)]);
        // espeak-ng has already read the next clause's first character; drop it.
        let piece = match piece.char_indices().last() {
            Some((last, _)) if !cursor.is_null() => &piece[..last],
            _ => piece.as_ref(),
        };
        let terminator = piece
            .trim_end()
            .chars()
            .last()
            .and_then(|c| match c {
                '.' | '。' => Some("."),
                ',' | '，' | '、' => Some(","),
                '?' | '？' => Some("?"),
                '!' | '！' => Some("!"),
                ';' | '；' => Some(";"),
                ':' | '：' => Some(":"),
                _ => None,
            })
            .unwrap_or("");
        if !ipa.is_empty() || !terminator.is_empty() {
            clauses.push((ipa, terminator.to_string()));
        }
        if next <= consumed {
            break; // no progress: never loop forever on odd input
        }
        consumed = next;
    }
    Ok(clauses)
}

fn phonemize_request(sample_rate: u32, req: &Request) -> Response {
    let fail = |e: String| Response { sample_rate, error: Some(e), ..Response::default() };
    let Ok(voice) = CString::new(req.voice.as_str()) else { return fail("voice name contains NUL".into()) };
    // SAFETY: `voice` is a valid NUL-terminated string for the duration of the call.
    if unsafe { espeak_SetVoiceByName(voice.as_ptr()) } != 0 {
        return fail(format!("espeak-ng has no voice `{}`", req.voice));
    }
    match phonemize(&req.text) {
        Ok(clauses) => Response { sample_rate, clauses, ..Response::default() },
        Err(e) => fail(e),
    }
}

fn main() {
    let options = INITIALIZE_PHONEME_EVENTS | INITIALIZE_PHONEME_IPA | INITIALIZE_DONT_EXIT;
    // SAFETY: null path means the default data directory; called once before any other call.
    let rate = unsafe { espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 200, std::ptr::null(), options) };
    if rate <= 0 {
        eprintln!("emcee-espeak: espeak_Initialize failed ({rate}); is espeak-ng-data installed?");
        std::process::exit(69);
    }
    // SAFETY: `on_synth` matches the callback signature and lives for the whole program.
    unsafe { espeak_SetSynthCallback(on_synth) };

    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let (response, pcm) = match serde_json::from_str::<Request>(&line) {
            Ok(req) if req.phonemize => (phonemize_request(rate as u32, &req), Vec::new()),
            Ok(req) => synthesize(rate as u32, &req),
            Err(e) => (
                Response { sample_rate: rate as u32, error: Some(format!("bad request: {e}")), ..Default::default() },
                Vec::new(),
            ),
        };
        let header = serde_json::to_string(&response).unwrap_or_else(|_| "{}".into());
        let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
        let ok = writeln!(stdout, "{header}").and_then(|_| stdout.write_all(&bytes)).and_then(|_| stdout.flush());
        if ok.is_err() {
            break; // the stage went away
        }
    }
}

#[cfg(test)]
mod tests {
    use super::take_marks;

    #[test]
    fn marks_are_removed_and_located_by_character() {
        let (text, marks) = take_marks("<speak>One. <mark name=\"card:show:A\"/>Two <mark name=\"m\"/></speak>");
        assert_eq!(text, "<speak>One. Two </speak>");
        assert_eq!(marks, vec![("card:show:A".to_string(), 13), ("m".to_string(), 17)]);
        assert_eq!(take_marks("plain").0, "plain");
    }
}
