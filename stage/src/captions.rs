//! What is drawn over the picture, on the media clock: the sentence being said as a subtitle
//! (from the frame it starts until a moment after it ends, so the text does not blink between
//! sentences), the product card the marks put up, and the configured label. The overlay is
//! composited again only when one of these changes.

use std::collections::HashMap;

use emcee_overlay::{subtitle_of, Look, Overlay};
use emcee_protocol::{Card, StageConfig, StageEvent, MEDIA_CLOCK_HZ};
use emcee_renderer::Renderer;

/// A finished sentence's subtitle stays up this long (400 ms) unless the next one starts.
const LINGER: u64 = MEDIA_CLOCK_HZ * 2 / 5;

pub struct Captions {
    /// `None` when no font could be loaded: the show goes on without overlays.
    overlay: Option<Overlay>,
    subtitles: bool,
    label: Option<String>,
    /// Subtitle text of accepted cues, by cue id.
    texts: HashMap<String, String>,
    /// Cards of accepted cues, by SKU (the latest wins).
    cards: HashMap<String, Card>,
    /// The subtitle up now: cue, text, and when it comes down (once its cue has finished).
    current: Option<(String, String, Option<u64>)>,
}

impl Captions {
    pub fn new(config: &StageConfig) -> Self {
        let overlay = match Overlay::new(config.video.width, config.video.height) {
            Ok(o) => Some(o),
            Err(e) => {
                tracing::error!(error = %e, "no subtitles, cards or label on this stream");
                None
            }
        };
        Self {
            overlay,
            subtitles: config.avatar.subtitles,
            label: config.avatar.label.clone(),
            texts: HashMap::new(),
            cards: HashMap::new(),
            current: None,
        }
    }

    /// A new cue: its words (SSML) and the cards its marks may show.
    pub fn accepted(&mut self, id: &str, ssml: &str, cards: Vec<Card>) {
        if self.subtitles {
            self.texts.insert(id.to_string(), subtitle_of(ssml));
        }
        for card in cards {
            self.cards.insert(card.sku.clone(), card);
        }
    }

    /// Follows the speech: a start puts its subtitle up, an end lets it linger, a failure forgets it.
    pub fn event(&mut self, event: &StageEvent) {
        match event {
            StageEvent::Started { id, .. } => {
                if let Some(text) = self.texts.remove(id) {
                    self.current = Some((id.clone(), text, None));
                }
            }
            StageEvent::Finished { id, media_ts, .. } => {
                if let Some((current, _, until)) = self.current.as_mut() {
                    if current == id {
                        *until = Some(media_ts + LINGER);
                    }
                }
                self.texts.remove(id);
            }
            StageEvent::Failed { id, .. } => {
                self.texts.remove(id);
            }
            _ => {}
        }
    }

    /// Hands the current overlay to a freshly built renderer.
    pub fn reapply(&self, renderer: &mut Renderer) {
        if let Some(overlay) = &self.overlay {
            renderer.set_overlay((!overlay.is_clear()).then(|| overlay.pixels()));
        }
    }

    /// Brings the overlay up to date for the frame at `at`, with the card `card` (a SKU) up.
    pub fn frame(&mut self, at: u64, card: Option<&str>, renderer: &mut Renderer) {
        if self.current.as_ref().is_some_and(|(_, _, until)| until.is_some_and(|u| u <= at)) {
            self.current = None;
        }
        let Some(overlay) = self.overlay.as_mut() else { return };
        let look = Look {
            subtitle: self.current.as_ref().map(|(_, text, _)| text.clone()),
            card: card.and_then(|sku| self.cards.get(sku).cloned()),
            label: self.label.clone(),
        };
        if overlay.show(&look).is_some() {
            let clear = overlay.is_clear();
            renderer.set_overlay((!clear).then(|| overlay.pixels()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subtitle_lingers_after_its_sentence_unless_the_next_starts() {
        let mut c = Captions {
            overlay: None,
            subtitles: true,
            label: None,
            texts: HashMap::new(),
            cards: HashMap::new(),
            current: None,
        };
        c.accepted("a", "<speak>Hello &amp; welcome.</speak>", Vec::new());
        c.accepted("b", "<speak>Next.</speak>", Vec::new());
        c.event(&StageEvent::Started { id: "a".into(), media_ts: 0 });
        assert_eq!(c.current.as_ref().map(|x| x.1.as_str()), Some("Hello & welcome."));
        c.event(&StageEvent::Finished { id: "a".into(), was_stopped: false, media_ts: 48_000 });
        assert_eq!(c.current.as_ref().and_then(|x| x.2), Some(48_000 + LINGER));
        c.event(&StageEvent::Started { id: "b".into(), media_ts: 60_000 });
        assert_eq!(c.current.as_ref().map(|x| (x.1.as_str(), x.2)), Some(("Next.", None)));
    }
}
