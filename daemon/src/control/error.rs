//! What ends the show loop with an error, and how long it waits for the stage.

use std::time::Duration;

use crate::store::StoreError;

pub(super) const CONNECT_PATIENCE: Duration = Duration::from_secs(60);
pub(super) const END_PATIENCE: Duration = Duration::from_secs(20);
/// How long after the stage refused the show it is asked again.
pub(super) const REFUSED_RETRY: Duration = Duration::from_secs(30);
/// How long the picture fades to black when the room ends gracefully.
pub(super) const END_FADE_MS: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the stage on {socket} did not accept a connection within {CONNECT_PATIENCE:?}: {last}")]
    StageUnreachable { socket: String, last: String },
    #[error("the stage refused the show: {0}")]
    Refused(String),
    #[error("the stage did not confirm the end of the show within {END_PATIENCE:?}")]
    EndTimeout,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the content thread: {0}")]
    Thread(std::io::Error),
}
