//! On-disk cache of synthesized sentences, keyed by engine, voice, settings and text.
//!
//! A 24/7 show repeats its script: a looped sentence is synthesized once. Each entry is one file
//! named by a hash of its key, holding the full key (so a hash collision is a miss, never the
//! wrong speech), a JSON header and the PCM. Files are written to a temporary name and renamed,
//! so a power cut leaves either the whole entry or none; an unreadable entry is a miss. The
//! oldest entries are removed when the directory grows past its cap.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::viseme::PhonemeSpan;
use crate::Utterance;

#[derive(Serialize, Deserialize)]
struct Header {
    key: String,
    samples: usize,
    phonemes: Vec<(String, u64, u64)>,
    marks: Vec<(String, u64)>,
}

pub struct SpeechCache {
    dir: PathBuf,
    cap_bytes: u64,
}

/// FNV-1a, 64 bit: a stable file name for a key (std's hasher may change between releases).
fn fnv1a(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

impl SpeechCache {
    /// A cache in `dir` (created if missing) holding at most about `cap_bytes`.
    pub fn new(dir: PathBuf, cap_bytes: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir, cap_bytes })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{:016x}.utt", fnv1a(key)))
    }

    /// The utterance stored under `key`, if any.
    pub fn get(&self, key: &str) -> Option<Utterance> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        let newline = bytes.iter().position(|&b| b == b'\n')?;
        let header: Header = serde_json::from_slice(&bytes[..newline]).ok()?;
        let pcm_bytes = &bytes[newline + 1..];
        if header.key != key || pcm_bytes.len() != header.samples * 2 {
            return None;
        }
        Some(Utterance {
            pcm: pcm_bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect(),
            phonemes: header.phonemes.into_iter().map(|(ipa, start, end)| PhonemeSpan { ipa, start, end }).collect(),
            marks: header.marks,
            pitch: Vec::new(),
        })
    }

    /// Stores `utterance` under `key`. Failures (a full disk) only cost the cache.
    pub fn put(&self, key: &str, utterance: &Utterance) {
        let header = Header {
            key: key.to_string(),
            samples: utterance.pcm.len(),
            phonemes: utterance.phonemes.iter().map(|p| (p.ipa.clone(), p.start, p.end)).collect(),
            marks: utterance.marks.clone(),
        };
        let path = self.path(key);
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            serde_json::to_writer(&mut f, &header)?;
            f.write_all(b"\n")?;
            let pcm: Vec<u8> = utterance.pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
            f.write_all(&pcm)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            tracing::warn!(error = %e, dir = %self.dir.display(), "speech cache: entry not stored");
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        self.trim();
    }

    /// Removes the least recently written entries until the cache is under its cap.
    fn trim(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                if e.path().extension()? != "utt" {
                    return None;
                }
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.cap_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utterance(n: usize) -> Utterance {
        Utterance {
            pcm: (0..n).map(|i| i as i16 - 7).collect(),
            phonemes: vec![PhonemeSpan { ipa: "ˈa".into(), start: 0, end: n as u64 }],
            marks: vec![("card:show:A".into(), 3)],
            pitch: Vec::new(),
        }
    }

    #[test]
    fn entries_round_trip_and_damage_is_a_miss() {
        let dir = std::env::temp_dir().join(format!("emcee-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = SpeechCache::new(dir.clone(), 1 << 20).unwrap();
        assert!(cache.get("k").is_none());
        cache.put("k", &utterance(100));
        let got = cache.get("k").unwrap();
        assert_eq!(got.pcm, utterance(100).pcm);
        assert_eq!(got.phonemes, utterance(100).phonemes);
        assert_eq!(got.marks, utterance(100).marks);
        assert!(cache.get("other key").is_none());
        // A torn file (power cut mid-write without the rename) reads as a miss.
        let path = cache.path("k");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(cache.get("k").is_none());
        std::fs::write(&path, b"garbage").unwrap();
        assert!(cache.get("k").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_oldest_entries_go_past_the_cap() {
        let dir = std::env::temp_dir().join(format!("emcee-cache-cap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = SpeechCache::new(dir.clone(), 5_000).unwrap();
        for k in ["a", "b", "c"] {
            cache.put(k, &utterance(1000)); // ~2.1 kB each
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(cache.get("a").is_none(), "the oldest entry was removed");
        assert!(cache.get("b").is_some() && cache.get("c").is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
