//! What can stop the pipeline from starting (after it runs, faults are handled in place).

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("renderer: {0}")]
    Render(#[from] emcee_renderer::RenderError),
    #[error("avatar {path}: {reason}")]
    Avatar { path: String, reason: String },
    #[error("video encoder: {0}")]
    Video(#[from] emcee_nvenc::EncodeError),
    #[error("audio encoder: {0}")]
    Audio(#[from] emcee_stream::aac::AacError),
    #[error("outputs: {0}")]
    Output(#[from] emcee_stream::rtmp::RtmpError),
    #[error("cannot start thread: {0}")]
    Thread(std::io::Error),
}
