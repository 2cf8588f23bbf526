//! Durable state in SQLite (WAL, `synchronous=FULL`): the script offset, the interaction queue
//! and the audit log of every utterance. Every write is its own transaction, committed before
//! the control plane acts on it, so a crash or power cut loses nothing that was acknowledged.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::library::{Doc, DocName, Format, Origin};
use crate::scheduler::{Interaction, InteractionKind, Offset};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("cannot create the state directory {path}: {source}")]
    Dir { path: String, source: std::io::Error },
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub cue: String,
    /// `script`, `operator` or `answer`.
    pub source: String,
    pub text: String,
    /// `started`, `mark`, `finished`, `cut`, `failed`, `expired`, or an action's
    /// `action_started`, `action_finished`, `action_stopped` (`text` names the action).
    pub event: String,
    /// Wall-clock time, Unix milliseconds.
    pub wall_ms: i64,
    /// Media time at the stage, milliseconds (0 for `failed`).
    pub media_ms: i64,
}

pub struct Store {
    conn: Connection,
}

/// A state database that failed its check at boot and was moved aside (kept, never deleted)
/// for a new one: what the show lost (offsets, queued lines, the audit log, pushed content)
/// is in the kept file.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SetAside {
    /// Where the damaged database now is.
    pub kept_as: String,
    /// What SQLite said about it.
    pub reason: String,
    /// When it was found, Unix milliseconds.
    pub at_ms: i64,
}

/// Whether SQLite's error says the file is damaged (as opposed to unreachable: a read-only
/// directory or a full disk is not fixed by moving the database away).
fn is_damage(e: &StoreError) -> bool {
    let sql = match e {
        StoreError::Open { source, .. } | StoreError::Sql(source) => source,
        StoreError::Dir { .. } => return false,
    };
    matches!(sql.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS script_offset (
    script_key TEXT PRIMARY KEY,
    pass INTEGER NOT NULL,
    sentence INTEGER NOT NULL,
    attempt INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS interaction (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    priority INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    cue TEXT NOT NULL,
    source TEXT NOT NULL,
    text TEXT NOT NULL,
    event TEXT NOT NULL,
    wall_ms INTEGER NOT NULL,
    media_ms INTEGER NOT NULL
);
-- Content pushed through the API (`materials`, `script`); it replaces the configured file
-- until it is deleted here.
CREATE TABLE IF NOT EXISTS content (
    name TEXT PRIMARY KEY,
    format TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);
";

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Store {
    /// Opens (creating if needed) `dir/state.db`.
    /// Opens (or creates) `dir/state.db`. The directory is made 0700 and the database files
    /// 0600, also when an older version left them open to others: they hold the queued lines
    /// and the audit log.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        use std::os::unix::fs::PermissionsExt;
        let dir_err = |source| StoreError::Dir { path: dir.display().to_string(), source };
        std::fs::create_dir_all(dir).map_err(dir_err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(dir_err)?;
        let path = dir.join("state.db");
        let open_err = |source| StoreError::Open { path: path.display().to_string(), source };
        let conn = Connection::open(&path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        // FULL: a committed write survives power loss, not only a process crash.
        conn.pragma_update(None, "synchronous", "FULL").map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(open_err)?;
        if version < 2 {
            // Databases from before expiring answers: add the column (absent only there).
            let _ = conn.execute("ALTER TABLE interaction ADD COLUMN expires_ms INTEGER", []);
            conn.pragma_update(None, "user_version", 2).map_err(open_err)?;
        }
        if version < 3 {
            // Which mark of its sentence a mark record is (0 for other events). A restarted
            // control plane may hear the same event again from a stage that kept running: it
            // is the same utterance, recorded once; two actions at one mark, or 37 marks of
            // one name at one place, are that many records.
            let _ = conn.execute("ALTER TABLE audit ADD COLUMN ordinal INTEGER NOT NULL DEFAULT 0", []);
            conn.execute_batch(
                "DROP INDEX IF EXISTS audit_once; DROP INDEX IF EXISTS audit_once_per_text;
                 CREATE UNIQUE INDEX IF NOT EXISTS audit_once_per_mark ON audit (cue, event, media_ms, text, ordinal);",
            )
            .map_err(open_err)?;
            conn.pragma_update(None, "user_version", 3).map_err(open_err)?;
        }
        for file in ["state.db", "state.db-wal", "state.db-shm"] {
            let file = dir.join(file);
            if file.exists() {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).map_err(dir_err)?;
            }
        }
        Ok(Self { conn })
    }

    /// Opens the state database at boot, checked: one that SQLite finds damaged (not a
    /// database, or failing `PRAGMA quick_check`) is renamed `state.db.damaged-<ms>` with its
    /// journal files — kept for whoever wants to recover from it — and a new one is started,
    /// so the show goes on from the configured files. Anything else (an unusable directory)
    /// is an error.
    pub fn open_checked(dir: &Path) -> Result<(Self, Option<SetAside>), StoreError> {
        let reason = match Self::open(dir).and_then(|store| store.damage().map(|d| (store, d))) {
            Ok((store, None)) => return Ok((store, None)),
            Ok((store, Some(reason))) => {
                drop(store);
                reason
            }
            Err(e) if is_damage(&e) => e.to_string(),
            Err(e) => return Err(e),
        };
        let at_ms = now_ms();
        let kept = dir.join(format!("state.db.damaged-{at_ms}"));
        for suffix in ["", "-wal", "-shm"] {
            let from = dir.join(format!("state.db{suffix}"));
            if from.exists() {
                let to = format!("{}{suffix}", kept.display());
                std::fs::rename(&from, &to)
                    .map_err(|source| StoreError::Dir { path: from.display().to_string(), source })?;
            }
        }
        let set_aside = SetAside { kept_as: kept.display().to_string(), reason, at_ms };
        tracing::error!(kept_as = %set_aside.kept_as, reason = %set_aside.reason, "the state database was damaged; it is kept aside and the show starts afresh from the configured files");
        let store = Self::open(dir)?;
        let note = format!("state database damaged ({}); kept as {}", set_aside.reason, set_aside.kept_as);
        store.audit("state", "system", &note, "state_set_aside", 0)?;
        Ok((store, Some(set_aside)))
    }

    /// What SQLite's quick check finds wrong, if anything.
    fn damage(&self) -> Result<Option<String>, StoreError> {
        let mut problems = Vec::new();
        let mut statement = self.conn.prepare("PRAGMA quick_check")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let line: String = row.get(0)?;
            if line != "ok" {
                problems.push(line);
            }
        }
        Ok((!problems.is_empty()).then(|| format!("integrity check: {}", problems.join("; "))))
    }

    pub fn offset(&self, script_key: &str) -> Result<Offset, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT pass, sentence, attempt FROM script_offset WHERE script_key = ?1",
                params![script_key],
                |r| {
                    Ok(Offset {
                        pass: r.get::<_, i64>(0)? as u64,
                        sentence: r.get::<_, i64>(1)? as usize,
                        attempt: r.get(2)?,
                    })
                },
            )
            .optional()?;
        Ok(row.unwrap_or_default())
    }

    pub fn save_offset(&self, script_key: &str, o: Offset) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO script_offset (script_key, pass, sentence, attempt) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(script_key) DO UPDATE SET pass = ?2, sentence = ?3, attempt = ?4",
            params![script_key, o.pass as i64, o.sentence as i64, o.attempt],
        )?;
        Ok(())
    }

    /// Stores a new interaction durably and returns it with its id.
    pub fn enqueue(
        &self,
        kind: InteractionKind,
        text: &str,
        priority: i32,
        expires_ms: Option<i64>,
    ) -> Result<Interaction, StoreError> {
        self.conn.execute(
            "INSERT INTO interaction (kind, text, priority, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![kind.as_str(), text, priority, now_ms(), expires_ms],
        )?;
        Ok(Interaction { id: self.conn.last_insert_rowid(), kind, text: text.to_string(), priority, expires_ms })
    }

    /// Interactions not yet done, in arrival order.
    pub fn queued(&self) -> Result<Vec<Interaction>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, kind, text, priority, expires_ms FROM interaction WHERE done = 0 ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            let kind: String = r.get(1)?;
            Ok(Interaction {
                id: r.get(0)?,
                kind: InteractionKind::from_name(&kind),
                text: r.get(2)?,
                priority: r.get(3)?,
                expires_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn interaction_done(&self, id: i64) -> Result<(), StoreError> {
        self.conn.execute("UPDATE interaction SET done = 1 WHERE id = ?1", params![id])?;
        Ok(())
    }

    pub fn audit(&self, cue: &str, source: &str, text: &str, event: &str, media_ms: u64) -> Result<(), StoreError> {
        self.insert_audit((cue, source), (text, 0), event, media_ms)
    }

    /// The `index`-th mark (from 0) of cue `cue`'s sentence, named `name`.
    pub fn audit_mark(&self, cue: &str, source: &str, name: &str, index: u32, media_ms: u64) -> Result<(), StoreError> {
        self.insert_audit((cue, source), (name, index), "mark", media_ms)
    }

    fn insert_audit(
        &self,
        (cue, source): (&str, &str),
        (text, ordinal): (&str, u32),
        event: &str,
        media_ms: u64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO audit (cue, source, text, event, wall_ms, media_ms, ordinal)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![cue, source, text, event, now_ms(), media_ms as i64, ordinal],
        )?;
        Ok(())
    }

    /// Stores `doc` as the show's `doc.name` (in place of the configured file).
    pub fn save_content(&self, doc: &Doc, updated_ms: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO content (name, format, body, updated_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET format = ?2, body = ?3, updated_ms = ?4",
            params![doc.name.as_str(), doc.format.as_str(), doc.body, updated_ms],
        )?;
        Ok(())
    }

    /// Forgets the stored `name`: the configured file is the show's again.
    pub fn delete_content(&self, name: DocName) -> Result<(), StoreError> {
        self.conn.execute("DELETE FROM content WHERE name = ?1", params![name.as_str()])?;
        Ok(())
    }

    /// The documents pushed through the API. Rows this build cannot read are skipped.
    pub fn stored_content(&self) -> Result<Vec<Doc>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT name, format, body, updated_ms FROM content ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
        })?;
        let mut docs = Vec::new();
        for row in rows {
            let (name, format, body, updated_ms) = row?;
            match (DocName::from_name(&name), Format::from_name(&format)) {
                (Some(name), Some(format)) => {
                    docs.push(Doc { name, format, origin: Origin::Stored { updated_ms }, body })
                }
                _ => tracing::warn!(name, format, "unreadable stored content ignored"),
            }
        }
        Ok(docs)
    }

    /// Applies the audit log's retention: records older than `max_age_ms` go, then the oldest
    /// until the database's used pages take at most `max_bytes` (freed pages are reused, so
    /// the file stops growing). In batches, so the show's own writes never wait long.
    /// Returns how many records went.
    pub fn prune_audit(&self, now_ms: i64, max_age_ms: i64, max_bytes: u64) -> Result<u64, StoreError> {
        const BATCH: i64 = 10_000;
        let mut deleted = 0u64;
        loop {
            let n = self.conn.execute(
                "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE wall_ms < ?1 ORDER BY seq LIMIT ?2)",
                params![now_ms - max_age_ms, BATCH],
            )?;
            deleted += n as u64;
            if (n as i64) < BATCH {
                break;
            }
        }
        loop {
            let used = self.used_bytes()?;
            if used <= max_bytes {
                break;
            }
            // The share of the records that is over, as a first guess (the rest of the
            // database is small); at most a batch at a time.
            let records: i64 = self.conn.query_row("SELECT count(*) FROM audit", [], |r| r.get(0))?;
            let over = ((records as f64 * (used - max_bytes) as f64 / used as f64).ceil() as i64 + 1).min(BATCH);
            let n = self.conn.execute(
                "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit ORDER BY seq LIMIT ?1)",
                params![over],
            )?;
            if n == 0 {
                break;
            }
            deleted += n as u64;
        }
        Ok(deleted)
    }

    /// Bytes in the database's pages that hold data (free pages are not counted).
    pub fn used_bytes(&self) -> Result<u64, StoreError> {
        let pragma = |name: &str| self.conn.pragma_query_value(None, name, |r| r.get::<_, i64>(0));
        let (pages, free, size) = (pragma("page_count")?, pragma("freelist_count")?, pragma("page_size")?);
        Ok(((pages - free).max(0) * size) as u64)
    }

    /// Audit records with `seq > since`, oldest first, at most `limit`.
    pub fn audit_since(&self, since: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, cue, source, text, event, wall_ms, media_ms FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![since, limit], |r| {
            Ok(AuditRecord {
                seq: r.get(0)?,
                cue: r.get(1)?,
                source: r.get(2)?,
                text: r.get(3)?,
                event: r.get(4)?,
                wall_ms: r.get(5)?,
                media_ms: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("emcee-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn offsets_and_queues_survive_reopening() {
        let dir = temp_dir("reopen");
        let key = "0123456789abcdef";
        {
            let store = Store::open(&dir).unwrap();
            assert_eq!(store.offset(key).unwrap(), Offset::default());
            store.save_offset(key, Offset { pass: 1, sentence: 2, attempt: 3 }).unwrap();
            let a = store.enqueue(InteractionKind::Operator, "first", 0, None).unwrap();
            store.enqueue(InteractionKind::Answer, "second", 5, Some(123)).unwrap();
            store.interaction_done(a.id).unwrap();
            store.audit("s0.0.0", "script", "a", "started", 1000).unwrap();
            store.audit("s0.0.0", "script", "a", "started", 1000).unwrap(); // heard twice, kept once
                                                                            // 37 marks of one name at one place are 37 records; each heard twice, kept once.
            for _ in 0..2 {
                for index in 0..37 {
                    store.audit_mark("s0.0.0", "script", "m", index, 1200).unwrap();
                }
            }
        }
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.offset(key).unwrap(), Offset { pass: 1, sentence: 2, attempt: 3 });
        let queued = store.queued().unwrap();
        assert_eq!(queued.len(), 1);
        assert_eq!(
            (queued[0].text.as_str(), queued[0].kind, queued[0].priority),
            ("second", InteractionKind::Answer, 5)
        );
        let log = store.audit_since(0, 100).unwrap();
        assert_eq!(log.len(), 38);
        assert_eq!(log.iter().filter(|r| r.event == "mark").count(), 37);
        assert_eq!((log[0].cue.as_str(), log[0].event.as_str(), log[0].media_ms), ("s0.0.0", "started", 1000));
        assert!(store.audit_since(log[37].seq, 10).unwrap().is_empty());
        let journal: String = store.conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(journal, "wal");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stored_content_is_replaced_and_deleted_by_name() {
        let dir = temp_dir("content");
        let store = Store::open(&dir).unwrap();
        let doc = |body: &str| Doc {
            name: DocName::Script,
            format: Format::Lines,
            origin: Origin::Request,
            body: body.into(),
        };
        store.save_content(&doc("One.\n"), 10).unwrap();
        store.save_content(&doc("Two.\n"), 20).unwrap();
        let stored = Store::open(&dir).unwrap().stored_content().unwrap();
        assert_eq!(stored, vec![Doc { origin: Origin::Stored { updated_ms: 20 }, ..doc("Two.\n") }]);
        store.delete_content(DocName::Script).unwrap();
        assert!(store.stored_content().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_directory_is_a_clear_error() {
        let err = Store::open(Path::new("/proc/emcee-cannot-be-here")).err().unwrap().to_string();
        assert!(err.contains("/proc/emcee-cannot-be-here"), "{err}");
        // Not damage: nothing is moved, the error stands.
        assert!(Store::open_checked(Path::new("/proc/emcee-cannot-be-here")).is_err());
    }

    #[test]
    fn the_audit_log_is_kept_by_age_and_by_size() {
        let dir = temp_dir("retention");
        let store = Store::open(&dir).unwrap();
        let text = "A sentence said on air, about as long as most are. ".repeat(4);
        for i in 0..5_000u64 {
            store.audit(&format!("s0.{i}.0"), "script", &text, "started", i).unwrap();
        }
        let now = now_ms();
        // By age: nothing is old yet; everything is, a day from now.
        assert_eq!(store.prune_audit(now, 86_400_000, u64::MAX).unwrap(), 0);
        let used = store.used_bytes().unwrap();
        // By size: the oldest go until the database holds at most half of what it did.
        let gone = store.prune_audit(now, 86_400_000, used / 2).unwrap();
        assert!(store.used_bytes().unwrap() <= used / 2 && gone > 1_000 && gone < 5_000, "{gone}");
        let kept = store.audit_since(0, 100_000).unwrap();
        assert_eq!(
            (kept.len() as u64, kept.last().map(|r| r.media_ms)),
            (5_000 - gone, Some(4_999)),
            "the newest stay"
        );
        assert_eq!(store.prune_audit(now + 86_400_001, 86_400_000, u64::MAX).unwrap(), 5_000 - gone);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A database with an offset, a queued line and enough audit records to span many pages.
    fn filled(dir: &Path) -> u64 {
        let store = Store::open(dir).unwrap();
        store.save_offset("k", Offset { pass: 0, sentence: 7, attempt: 0 }).unwrap();
        store.enqueue(InteractionKind::Operator, "queued", 0, None).unwrap();
        for i in 0..2000 {
            store.audit(&format!("s0.{i}.0"), "script", "A sentence said on air.", "started", i * 10).unwrap();
        }
        store.conn.pragma_update(None, "wal_checkpoint", "TRUNCATE").unwrap();
        std::fs::metadata(dir.join("state.db")).unwrap().len()
    }

    #[test]
    fn a_damaged_database_is_kept_aside_and_a_new_one_started() {
        type Damage = fn(&Path, u64);
        let damages: [(&str, Damage); 3] = [
            ("garbled-header", |db, _| {
                let mut bytes = std::fs::read(db).unwrap();
                bytes[..16].copy_from_slice(b"not a database!!");
                std::fs::write(db, bytes).unwrap();
            }),
            ("truncated", |db, len| {
                let bytes = std::fs::read(db).unwrap();
                std::fs::write(db, &bytes[..(len as usize / 2 / 4096) * 4096 + 100]).unwrap();
            }),
            ("garbled-pages", |db, len| {
                let mut bytes = std::fs::read(db).unwrap();
                for b in &mut bytes[4096..len as usize] {
                    *b ^= 0xa5;
                }
                std::fs::write(db, bytes).unwrap();
            }),
        ];
        for (name, damage) in damages {
            let dir = temp_dir(name);
            let len = filled(&dir);
            let db = dir.join("state.db");
            damage(&db, len);
            let damaged = std::fs::read(&db).unwrap();
            let (store, set_aside) = Store::open_checked(&dir).unwrap();
            let set_aside = set_aside.unwrap_or_else(|| panic!("{name}: not found damaged"));
            assert_eq!(std::fs::read(&set_aside.kept_as).unwrap(), damaged, "{name}: kept as it was");
            // A new database: the show starts from the files; the event is in the new audit log.
            assert_eq!(store.offset("k").unwrap(), Offset::default(), "{name}");
            let log = store.audit_since(0, 10).unwrap();
            assert_eq!((log.len(), log[0].event.as_str(), log[0].source.as_str()), (1, "state_set_aside", "system"));
            assert!(log[0].text.contains(&set_aside.kept_as), "{name}: {}", log[0].text);
            drop(store);
            let (_, again) = Store::open_checked(&dir).unwrap();
            assert!(again.is_none(), "{name}: the new database is healthy");
            let _ = std::fs::remove_dir_all(&dir);
        }
        let dir = temp_dir("healthy");
        filled(&dir);
        let (store, set_aside) = Store::open_checked(&dir).unwrap();
        assert!(set_aside.is_none());
        assert_eq!(store.queued().unwrap().len(), 1, "a healthy database is used as it is");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
