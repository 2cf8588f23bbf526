//! The local HTTP API (see `docs/api.yaml`): bearer-token auth, JSON in and out, JSON errors.
//!
//! Handlers never touch the scheduler directly: they send a [`ShowCall`] to the show loop and
//! wait for its answer, so there is one owner of the show's state. The audit log is read from
//! the database directly (SQLite WAL readers do not block the writer).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::control::calls::{ContentRefused, Refusal, ShowCall, Status};
use crate::library::{Doc, DocName, Format, Origin};
use crate::scheduler::{InteractionKind, RoomCommand};
use crate::store::{AuditRecord, Store};

/// Longest line the API accepts for the host to say.
pub const MAX_TEXT_CHARS: usize = 600;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("API token file {path}: {reason}")]
    Token { path: String, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// Reads the bearer token: a systemd credential `api-token` if present, else `file`, which is
/// created with a fresh random token (mode 0600) when missing. A token file others can read is
/// refused (see [`crate::secrets`]).
pub fn load_or_create_token(file: &Path) -> Result<String, ApiError> {
    let err = |path: &Path, reason: String| ApiError::Token { path: path.display().to_string(), reason };
    let credential = std::env::var_os("CREDENTIALS_DIRECTORY").map(|d| PathBuf::from(d).join("api-token"));
    let path = credential.filter(|p| p.exists()).unwrap_or_else(|| file.to_path_buf());
    if !path.exists() {
        use std::io::Read;
        let mut random = [0u8; 24];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut random))
            .map_err(|e| err(&path, format!("no randomness for a new token: {e}")))?;
        let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
        crate::secrets::create_private(&path, &token).map_err(|e| err(&path, format!("cannot create it: {e}")))?;
        return Ok(token);
    }
    let token = crate::secrets::read_private(&path).map_err(|e| ApiError::Token {
        path: path.display().to_string(),
        reason: match e {
            crate::secrets::SecretError::Unreadable { reason, .. } => reason,
            other => other.to_string(),
        },
    })?;
    if token.len() < 16 {
        return Err(err(&path, "a token must be at least 16 characters".into()));
    }
    Ok(token)
}

#[derive(Clone)]
struct AppState {
    token: Arc<str>,
    calls: mpsc::Sender<ShowCall>,
    log: Arc<Mutex<Store>>,
}

/// A JSON error response: `{"error": "..."}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// A refused request; becomes a JSON error response.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(state): State<AppState>, headers: HeaderMap, request: Request, next: Next) -> Response {
    let presented =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if same(token.trim().as_bytes(), state.token.as_bytes()) => next.run(request).await,
        Some(_) => {
            let mut r = error(StatusCode::UNAUTHORIZED, "the bearer token is wrong");
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            r
        }
        None => {
            let mut r = error(StatusCode::UNAUTHORIZED, "missing `Authorization: Bearer <token>` header");
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            r
        }
    }
}

async fn ask_show<T>(state: &AppState, make: impl FnOnce(oneshot::Sender<T>) -> ShowCall) -> Result<T, Failure> {
    let (tx, rx) = oneshot::channel();
    let unavailable = || Failure(StatusCode::SERVICE_UNAVAILABLE, "the show is not running".into());
    state.calls.send(make(tx)).await.map_err(|_| unavailable())?;
    rx.await.map_err(|_| unavailable())
}

async fn status(State(state): State<AppState>) -> Result<Response, Failure> {
    Ok(Json(ask_show(&state, ShowCall::Status).await?).into_response())
}

/// How long the health probes wait for the show loop: longer, and the loop is wedged.
const PROBE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// The show's status for the unauthenticated probes, or 503 when the show loop does not answer.
async fn probe(state: &AppState) -> Result<Status, Failure> {
    let asked = tokio::time::timeout(PROBE_PATIENCE, ask_show(state, ShowCall::Status)).await;
    asked.unwrap_or_else(|_| Err(Failure(StatusCode::SERVICE_UNAVAILABLE, "the show loop does not answer".into())))
}

/// `/healthz`: the control plane is alive (its show loop answers), with what a technician
/// looks at first. Never a stream key: outputs are only counted.
async fn healthz(State(state): State<AppState>) -> Result<Response, Failure> {
    let s = probe(&state).await?;
    let outputs = s.stage.as_ref().map_or(&[][..], |h| &h.outputs[..]);
    let publishing = outputs.iter().filter(|o| o.state == "publishing").count();
    Ok(Json(serde_json::json!({
        "alive": true,
        "room": s.room,
        "stage_connected": s.stage_connected,
        "outputs": outputs.len(),
        "outputs_publishing": publishing,
        "last_frame_age_ms": s.stage_report_age_ms,
        "state": s.state,
        "stage_refused": s.stage_refused,
    }))
    .into_response())
}

/// `/readyz`: the show is on air — room open, stage connected, an output publishing, frames
/// fresh; 503 with every reason otherwise.
async fn readyz(State(state): State<AppState>) -> Result<Response, Failure> {
    let reasons = crate::control::calls::not_ready_reasons(&probe(&state).await?);
    let code = if reasons.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    Ok((code, Json(serde_json::json!({ "ready": reasons.is_empty(), "reasons": reasons }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SayBody {
    text: String,
    #[serde(default)]
    priority: i32,
}

/// Parses a JSON body with a precise error (line, column, what was wrong).
fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|e| Failure(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))
}

/// A line or question for the host: trimmed, not empty, not too long (the API answers 422
/// otherwise, the fleet link reports it failed).
pub fn checked_text(text: &str) -> Result<String, String> {
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err("`text` is empty".into());
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(format!("`text` is longer than {MAX_TEXT_CHARS} characters"));
    }
    Ok(text)
}

/// An operator line: [`checked_text`] and valid SSML (plain text is), normalised.
pub fn checked_line(text: &str) -> Result<String, String> {
    let text = checked_text(text)?;
    crate::ssml::parse(&text).map(|sentence| sentence.ssml).map_err(|errors| {
        let list: Vec<String> =
            errors.iter().map(|e| format!("at character {}: {}", e.offset + 1, e.message)).collect();
        format!("`text` is not valid SSML: {}", list.join("; "))
    })
}

fn unprocessable(message: String) -> Failure {
    Failure(StatusCode::UNPROCESSABLE_ENTITY, message)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AskBody {
    text: String,
}

async fn ask(State(state): State<AppState>, body: Bytes) -> Result<Response, Failure> {
    let body: AskBody = parse_body(&body)?;
    let question = checked_text(&body.text).map_err(unprocessable)?;
    let asked = ask_show(&state, |reply| ShowCall::Ask { question, reply }).await?.map_err(refused)?;
    let status = if asked.duplicate { StatusCode::OK } else { StatusCode::ACCEPTED };
    let mut json = serde_json::to_value(&asked).unwrap_or_default();
    json["cue"] = serde_json::Value::String(format!("i{}", asked.id));
    Ok((status, Json(json)).into_response())
}

/// A line or question the show did not queue: 429 when its queue is full, else 500.
fn refused(refusal: Refusal) -> Failure {
    let status = match refusal {
        Refusal::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
        Refusal::NotStored(_) => StatusCode::INSUFFICIENT_STORAGE,
    };
    Failure(status, refusal.to_string())
}

async fn say(State(state): State<AppState>, body: Bytes) -> Result<Response, Failure> {
    let body: SayBody = parse_body(&body)?;
    // Operator lines are SSML like the script (plain text is valid SSML).
    let text = checked_line(&body.text).map_err(unprocessable)?;
    if !(-100..=100).contains(&body.priority) {
        return Err(Failure(StatusCode::UNPROCESSABLE_ENTITY, "`priority` must be between -100 and 100".into()));
    }
    let id = ask_show(&state, |reply| ShowCall::Say {
        text,
        priority: body.priority,
        kind: InteractionKind::Operator,
        reply,
    })
    .await?
    .map_err(refused)?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id, "cue": format!("i{id}") }))).into_response())
}

async fn room(State(state): State<AppState>, UrlPath(command): UrlPath<String>) -> Result<Response, Failure> {
    let command = match command.as_str() {
        "start" => RoomCommand::Start,
        "stop" => RoomCommand::Stop,
        "pause" => RoomCommand::Pause,
        "resume" => RoomCommand::Resume,
        "skip" => RoomCommand::Skip,
        other => {
            let message = format!("no room command `{other}`: use start, stop, pause, resume or skip");
            return Err(Failure(StatusCode::NOT_FOUND, message));
        }
    };
    let room = ask_show(&state, |reply| ShowCall::Room { command, reply })
        .await?
        .map_err(|e| Failure(StatusCode::CONFLICT, e))?;
    Ok(Json(serde_json::json!({ "room": room })).into_response())
}

fn doc_name(name: &str) -> Result<DocName, Failure> {
    DocName::from_name(name)
        .ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("no content `{name}`: use materials or script")))
}

async fn content_of(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Result<Response, Failure> {
    let name = doc_name(&name)?;
    let library = ask_show(&state, |reply| ShowCall::ContentOf { reply }).await?;
    Ok(Json(library.doc(name)).into_response())
}

/// How a document is written, from the request's `Content-Type`.
fn format_of(name: DocName, headers: &HeaderMap) -> Result<Format, Failure> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    match (name, media.as_deref()) {
        (_, Some("application/toml")) => Ok(Format::Toml),
        (DocName::Script, Some("text/plain")) => Ok(Format::Lines),
        (DocName::Script, _) => Err(Failure(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the script as `Content-Type: application/toml` (segments) or `text/plain` (a sentence per line)"
                .into(),
        )),
        (DocName::Materials, _) => Err(Failure(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the materials as `Content-Type: application/toml`".into(),
        )),
    }
}

async fn change_content(state: &AppState, name: DocName, doc: Option<Doc>) -> Result<Response, Failure> {
    match ask_show(state, |reply| ShowCall::ChangeContent { name, doc, reply }).await? {
        Ok(info) => Ok(Json(info).into_response()),
        Err(ContentRefused::Invalid(errors)) => {
            let file = errors.file.display().to_string();
            let list: Vec<serde_json::Value> = errors
                .errors
                .iter()
                .map(|e| serde_json::json!({ "file": file, "line": e.line, "column": e.column, "message": e.message }))
                .collect();
            let body = serde_json::json!({ "error": errors.to_string(), "errors": list });
            Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response())
        }
        Err(ContentRefused::Store(e)) => Err(Failure(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

async fn put_content(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let name = doc_name(&name)?;
    let format = format_of(name, &headers)?;
    // Without a copy: a catalog's body may be tens of megabytes.
    let body = String::from_utf8(Vec::from(body))
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, format!("the body is not UTF-8 text: {e}")))?;
    change_content(&state, name, Some(Doc { name, format, origin: Origin::Request, body })).await
}

async fn delete_content(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Result<Response, Failure> {
    let name = doc_name(&name)?;
    change_content(&state, name, None).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    #[serde(default)]
    since: i64,
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    1000
}

async fn audit_log(
    State(state): State<AppState>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else { return error(StatusCode::BAD_REQUEST, "query: since=<seq>&limit=<1..10000>") };
    if !(1..=10_000).contains(&q.limit) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "`limit` must be 1..10000");
    }
    let records: Result<Vec<AuditRecord>, String> = match state.log.lock() {
        Ok(store) => store.audit_since(q.since, q.limit).map_err(|e| e.to_string()),
        Err(_) => Err("audit log unavailable".into()),
    };
    match records {
        Ok(r) => Json(r).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn metrics(State(state): State<AppState>) -> Result<Response, Failure> {
    let status = ask_show(&state, ShowCall::Status).await?;
    let text = crate::metrics::text(&status);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint; see docs/api.yaml")
}

pub fn router(token: String, calls: mpsc::Sender<ShowCall>, log: Store) -> Router {
    let state = AppState { token: token.into(), calls, log: Arc::new(Mutex::new(log)) };
    let authed = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/say", post(say))
        .route("/v1/ask", post(ask))
        .route("/v1/room/{command}", post(room))
        // Content may be as large as a content file may be (a catalog of 100,000 products is
        // 35 MB); every other body keeps axum's 2 MB.
        .route(
            "/v1/content/{name}",
            put(put_content)
                .get(content_of)
                .delete(delete_content)
                .layer(axum::extract::DefaultBodyLimit::max(crate::files::MAX_FILE_BYTES as usize)),
        )
        .route("/v1/log", get(audit_log))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(authed)
        .fallback(not_found)
        .with_state(state)
}

/// Binds the API (before the show starts, so a port clash is reported at once).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ApiError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| ApiError::Listen { addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_needs_every_byte() {
        assert!(same(b"abcdef", b"abcdef"));
        assert!(!same(b"abcdef", b"abcdeg"));
        assert!(!same(b"abc", b"abcdef"));
    }

    #[test]
    fn a_missing_token_file_is_created_private_and_then_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("emcee-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = dir.join("api-token");
        let first = load_or_create_token(&file).unwrap();
        assert_eq!(first.len(), 48);
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_or_create_token(&file).unwrap(), first);
        std::fs::write(&file, "short\n").unwrap();
        assert!(load_or_create_token(&file).unwrap_err().to_string().contains("at least 16"));
        std::fs::write(&file, format!("{first}\n")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = load_or_create_token(&file).unwrap_err().to_string();
        assert!(refused.contains("readable by others"), "a world-readable token is refused: {refused}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
