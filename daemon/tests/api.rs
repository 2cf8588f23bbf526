//! The local API over a real socket: auth, JSON errors, and that refused requests change nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use emcee_daemon::client::{ApiClient, ClientError};
use emcee_daemon::control::calls::{Refusal, ShowCall, Status};
use emcee_daemon::scheduler::{Offset, Room};
use emcee_daemon::store::Store;
use emcee_daemon::{api, api_server};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// Serves the API with a stand-in show loop that answers and counts what reached it.
async fn serve() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let dir = std::env::temp_dir().join(format!("emcee-api-test-{}-{}", std::process::id(), rand_suffix()));
    let store = Store::open(&dir).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let listener = api::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(api_server::serve(listener, api::router(TOKEN.into(), tx, store)));
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    tokio::spawn(async move {
        while let Some(call) = rx.recv().await {
            counted.fetch_add(1, Ordering::SeqCst);
            match call {
                ShowCall::Status(reply) => {
                    let _ = reply.send(Status {
                        room: Room::Live,
                        offset: Offset::default(),
                        script_sentences: 3,
                        queued_interactions: 0,
                        playing: None,
                        stage_connected: true,
                        stage: None,
                        stage_report_age_ms: None,
                        state: Default::default(),
                        stage_refused: None,
                        cloud: None,
                    });
                }
                ShowCall::Say { reply, .. } => {
                    let _ = reply.send(Ok(7));
                }
                ShowCall::Ask { reply, .. } => {
                    let _ = reply.send(Err(Refusal::QueueFull { kind: "answers", queued: 100, limit: 100 }));
                }
                ShowCall::Room { reply, .. } => {
                    let _ = reply.send(Err("cannot start while the room is Live".into()));
                }
                // Tested on the real daemon.
                ShowCall::ContentOf { .. } | ShowCall::ChangeContent { .. } | ShowCall::CloudLink(_) => {}
            }
        }
    });
    (addr, calls)
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Blocking client calls run off the runtime's threads.
async fn call(
    client: ApiClient,
    method: &'static str,
    path: &'static str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, ClientError> {
    tokio::task::spawn_blocking(move || client.call(method, path, body.as_ref())).await.unwrap()
}

async fn raw(addr: std::net::SocketAddr, request: String) -> String {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_right_token_is_needed_and_wrong_ones_reach_nothing() {
    let (addr, calls) = serve().await;
    let ok = call(ApiClient::new(addr, TOKEN), "GET", "/v1/status", None).await.unwrap();
    assert_eq!(ok["room"], "live");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let wrong = call(
        ApiClient::new(addr, "not-the-token-at-all-00000000000"),
        "POST",
        "/v1/say",
        Some(serde_json::json!({"text": "hi"})),
    )
    .await;
    assert!(matches!(wrong, Err(ClientError::Refused { status: 401, .. })), "{wrong:?}");
    let missing = raw(addr, format!("GET /v1/status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")).await;
    assert!(missing.starts_with("HTTP/1.1 401"), "{missing}");
    assert!(missing.to_lowercase().contains("www-authenticate: bearer"), "{missing}");
    assert!(missing.contains("\"error\":\"missing `Authorization: Bearer <token>` header\""), "{missing}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "refused requests must not reach the show");

    // Prometheus metrics, with the same token.
    let metrics = raw(
        addr,
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("# TYPE emcee_room_state gauge"), "{metrics}");
    assert!(metrics.contains("emcee_room_state{state=\"live\"} 1\n"), "{metrics}");
    assert!(metrics.contains("emcee_room_state{state=\"idle\"} 0\n"), "{metrics}");
    assert!(metrics.contains("emcee_stage_connected 1\n"), "{metrics}");
    let unauthorised = raw(addr, format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")).await;
    assert!(unauthorised.starts_with("HTTP/1.1 401"), "{unauthorised}");

    // A full queue is a 429 with the count, not a server error.
    let body = r#"{"text":"How long is the warranty?"}"#;
    let full = raw(
        addr,
        format!(
            "POST /v1/ask HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(full.starts_with("HTTP/1.1 429") && full.contains("100 answers already wait"), "{full}");

    // The health probes need no token. Alive (the show loop answers), and not ready: no frame
    // has been reported, with the reason.
    let health = raw(addr, format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")).await;
    assert!(health.starts_with("HTTP/1.1 200") && health.contains("\"alive\":true"), "{health}");
    assert!(health.contains("\"stage_connected\":true") && health.contains("\"outputs_publishing\":0"), "{health}");
    let ready = raw(addr, format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")).await;
    assert!(ready.starts_with("HTTP/1.1 503") && ready.contains("no frame reported yet"), "{ready}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_bodies_get_precise_json_errors_and_change_nothing() {
    let (addr, calls) = serve().await;
    let client = move || ApiClient::new(addr, TOKEN);
    let cases: [(&'static str, Option<serde_json::Value>, u16, &str); 5] = [
        (
            "/v1/say",
            Some(serde_json::json!({"text": "Hi <emphasis>there</emphasis>"})),
            422,
            "at character 4: <emphasis> is not in",
        ),
        ("/v1/say", Some(serde_json::json!({"txt": "typo"})), 400, "unknown field `txt`"),
        ("/v1/say", Some(serde_json::json!({"text": "   "})), 422, "`text` is empty"),
        ("/v1/say", Some(serde_json::json!({"text": "hi", "priority": 1000})), 422, "`priority`"),
        ("/v1/room/dance", None, 404, "no room command `dance`"),
    ];
    // Content needs its media type; only the two documents exist.
    let content: [(&'static str, &'static str, &str, u16, &str); 4] = [
        ("PUT", "/v1/content/script", "application/json", 415, "`text/plain` (a sentence per line)"),
        ("PUT", "/v1/content/materials", "text/plain", 415, "materials as `Content-Type: application/toml`"),
        ("PUT", "/v1/content/playlist", "application/toml", 404, "no content `playlist`"),
        ("DELETE", "/v1/content/faq", "application/toml", 404, "no content `faq`"),
    ];
    for (method, path, media, status, needle) in content {
        match tokio::task::spawn_blocking(move || client().send(method, path, media, b"x = 1\n")).await.unwrap() {
            Err(ClientError::Refused { status: s, message }) => {
                assert_eq!(s, status, "{path}: {message}");
                assert!(message.contains(needle), "{path}: {message}");
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    for (path, body, status, needle) in cases {
        match call(client(), "POST", path, body).await {
            Err(ClientError::Refused { status: s, message }) => {
                assert_eq!(s, status, "{path}: {message}");
                assert!(message.contains(needle), "{path}: {message}");
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    // Broken JSON names the line and column.
    let body = "{\"text\": \"hi\",\n  oops}";
    let broken = raw(
        addr,
        format!("POST /v1/say HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
    )
    .await;
    assert!(broken.starts_with("HTTP/1.1 400"), "{broken}");
    assert!(broken.contains("line 2 column 3"), "{broken}");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing reached the show");

    // A refused room command is a 409 with the scheduler's reason.
    match call(client(), "POST", "/v1/room/start", None).await {
        Err(ClientError::Refused { status: 409, message }) => assert!(message.contains("while the room is Live")),
        other => panic!("{other:?}"),
    }
    let accepted = call(client(), "POST", "/v1/say", Some(serde_json::json!({"text": "Hello there"}))).await.unwrap();
    assert_eq!(accepted["cue"], "i7");
}
