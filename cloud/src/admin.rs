//! What the operator's verbs do, straight on the database (any instance then hears of it).

use std::time::{Duration, Instant};

use emcee_fleet::identity::{digest_hex, random_hex};
use emcee_fleet::wire::Command;
use serde_json::Value;

use crate::store::{CommandOutcome, Db, StoreError};

/// A new one-time enrolment code for `group`, valid for `valid`. Only its digest is stored: the
/// code is shown once, here.
pub async fn enrol_code(db: &Db, group: &str, valid: Duration) -> Result<String, StoreError> {
    // 16 random bytes: not guessable within a code's lifetime, short enough to type.
    let code = random_hex(16).unwrap_or_default();
    db.add_enrol_code(group, &digest_hex(&code), valid).await?;
    Ok(code)
}

/// Queues `command` for `device` and waits up to `patience` for its outcome (`None`: not carried
/// out yet — the device is offline; it gets it on its return if that is soon).
pub async fn command(
    db: &Db,
    device: &str,
    command: &Command,
    patience: Duration,
) -> Result<(i64, Option<CommandOutcome>), StoreError> {
    let id = db.add_command(device, command).await?;
    let until = Instant::now() + patience;
    while Instant::now() < until {
        if let Some(outcome) = db.command_outcome(id).await? {
            return Ok((id, Some(outcome)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((id, None))
}

/// The devices as JSON lines.
pub async fn devices(db: &Db, only: Option<&str>) -> Result<Vec<Value>, StoreError> {
    Ok(db.devices(only).await?.into_iter().map(|d| serde_json::to_value(d).unwrap_or_default()).collect())
}
