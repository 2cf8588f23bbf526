//! Content changes, prepared off the show loop: checking a new document against the rest of
//! the library, building the answerer's index and storing the document take a second or more
//! for a large catalog, and the loop must go on pinging the watchdog and answering calls
//! meanwhile. The content thread prepares the change from a snapshot of the library; the loop
//! then swaps the ready result in (a few pointer moves) at its next turn.
//!
//! One change is prepared at a time and the next waits its turn, so each is checked against
//! the library the one before it left — and stored in that order.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use emcee_protocol::Scene;
use tokio::sync::oneshot;

use super::calls::{ContentInfo, ContentRefused};
use crate::answer::Answerer;
use crate::config::Config;
use crate::library::{image_base, Built, Doc, DocName, Library, Origin};
use crate::materials::Materials;
use crate::scheduler::{Offset, ScriptSentence};
use crate::store::{now_ms, Store, StoreError};

pub(super) type ContentReply = oneshot::Sender<Result<ContentInfo, ContentRefused>>;

/// What a content change needs from the configuration.
#[derive(Clone)]
pub(super) struct ContentSettings {
    products: Option<PathBuf>,
    script: PathBuf,
    scene: Scene,
    image_base: PathBuf,
    min_confidence: f64,
    holding_line: String,
}

impl ContentSettings {
    pub(super) fn of(config: &Config) -> Self {
        Self {
            products: config.products.clone(),
            script: config.script.clone(),
            scene: config.stage.avatar.scene,
            image_base: image_base(config),
            min_confidence: config.min_confidence,
            holding_line: config.holding_line.clone(),
        }
    }

    pub(super) fn answerer(&self, materials: &Materials) -> Answerer {
        Answerer::new(&materials.products, self.min_confidence, &self.holding_line)
    }
}

/// A checked and stored change, ready to be swapped in.
pub(super) struct Prepared {
    pub(super) name: DocName,
    pub(super) library: Arc<Library>,
    pub(super) sentences: Vec<ScriptSentence>,
    pub(super) script_key: String,
    pub(super) answerer: Answerer,
    /// Where a new script starts: its own saved place (`None`: the script's text is unchanged,
    /// the show keeps its place).
    pub(super) resume_at: Option<Offset>,
}

type Job = oneshot::Receiver<Result<Prepared, ContentRefused>>;

/// A change for the content thread: what to prepare, from what, and where the result goes.
struct Work {
    request: (DocName, Option<Doc>),
    library: Arc<Library>,
    script_key: String,
    done: oneshot::Sender<Result<Prepared, ContentRefused>>,
}

/// The change being prepared and those waiting their turn.
pub(super) struct Changes {
    /// To the content thread: one long-lived thread prepares every change, so a large catalog's
    /// transient memory is reused from one change to the next instead of growing a new
    /// allocator arena in whichever pool thread a change happened to run on.
    worker: std::sync::mpsc::Sender<Work>,
    running: Option<(Job, ContentReply)>,
    /// What to change (`None`: back to the file), and where the answer goes.
    waiting: VecDeque<(DocName, Option<Doc>, ContentReply)>,
}

impl Changes {
    /// Starts the content thread, which first builds the answerer for the boot `materials`
    /// (returned with the changes); `store` is its own connection to the state database, so
    /// storing a large document does not hold the loop's.
    pub(super) fn new(
        settings: ContentSettings,
        store: Store,
        materials: Materials,
    ) -> std::io::Result<(Self, Answerer)> {
        let (worker, jobs) = std::sync::mpsc::channel::<Work>();
        let (booted, answerer) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new().name("content".into()).spawn(move || {
            // Frames first: on a box with two cores, a large catalog's second of parsing must
            // not take the stage's CPU (nice 10, this thread only; refused is fine).
            let _ = rustix::process::setpriority_process(None, 10);
            let _ = booted.send(settings.answerer(&materials));
            drop(materials);
            // Ends when the show (the sender) is gone.
            for work in jobs {
                let result = prepare(&settings, &store, work.request, &work.library, &work.script_key);
                let _ = work.done.send(result);
            }
        })?;
        let answerer = answerer.recv().map_err(|_| std::io::Error::other("the content thread ended at once"))?;
        Ok((Self { worker, running: None, waiting: VecDeque::new() }, answerer))
    }

    /// Asks for a change: `doc: None` goes back to the configured file. Prepared at once from
    /// `library` when no other change is under way; otherwise after the ones before it.
    pub(super) fn request(
        &mut self,
        change: (DocName, Option<Doc>, ContentReply),
        library: &Arc<Library>,
        script_key: &str,
    ) {
        self.waiting.push_back(change);
        self.start_next(library, script_key);
    }

    /// Starts preparing the next waiting change, if none is under way.
    pub(super) fn start_next(&mut self, library: &Arc<Library>, script_key: &str) {
        if self.running.is_some() {
            return;
        }
        let Some((name, doc, reply)) = self.waiting.pop_front() else { return };
        let (done, job) = oneshot::channel();
        let work = Work { request: (name, doc), library: library.clone(), script_key: script_key.to_string(), done };
        // A content thread that is gone drops `done`: the change is refused below.
        let _ = self.worker.send(work);
        self.running = Some((job, reply));
    }

    /// The change under way, once prepared (never resolves when there is none). The loop
    /// swaps it in, answers the reply, then calls [`Changes::start_next`].
    pub(super) async fn finished(&mut self) -> (Result<Prepared, ContentRefused>, ContentReply) {
        let Some((job, _)) = self.running.as_mut() else { return std::future::pending().await };
        let result = job.await.unwrap_or_else(|_| Err(ContentRefused::Store("the content thread is gone".into())));
        let (_, reply) = self.running.take().expect("a change was under way");
        (result, reply)
    }
}

/// Checks `doc` with the rest of `library` and stores it (durable before it is acknowledged
/// or played). A refused change changes nothing.
fn prepare(
    settings: &ContentSettings,
    store: &Store,
    (name, doc): (DocName, Option<Doc>),
    library: &Library,
    script_key: &str,
) -> Result<Prepared, ContentRefused> {
    let file = match name {
        DocName::Materials => settings.products.as_deref(),
        DocName::Script => Some(settings.script.as_path()),
    };
    let candidate = match doc {
        Some(doc) => doc,
        None => Doc::from_file(name, file).map_err(ContentRefused::Invalid)?,
    };
    let mut library = library.with(candidate);
    let Built { materials, sentences, script_key: key } =
        library.build(settings.scene, &settings.image_base).map_err(ContentRefused::Invalid)?;
    let answerer = settings.answerer(&materials);
    let stored = |e: StoreError| ContentRefused::Store(e.to_string());
    if matches!(library.doc(name).origin, Origin::Request) {
        let updated_ms = now_ms();
        store.save_content(library.doc(name), updated_ms).map_err(stored)?;
        library.doc_mut(name).origin = Origin::Stored { updated_ms };
    } else {
        store.delete_content(name).map_err(stored)?;
    }
    let resume_at = if key == script_key { None } else { Some(store.offset(&key).map_err(stored)?) };
    Ok(Prepared { name, library: Arc::new(library), sentences, script_key: key, answerer, resume_at })
}
