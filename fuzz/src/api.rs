//! The local API's request bodies and queries, sent through the daemon's own router with its
//! token. The show behind it is gone, so a body that passes every check is answered 503; what
//! the target looks for is a panic, or a 500 (an input the API did not turn into a clear error).

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use emcee_daemon::store::Store;
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token";

struct Api {
    rt: tokio::runtime::Runtime,
    router: Router,
}

fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("emcee-fuzz-api-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let store = Store::open(&dir).expect("a state database in the scratch directory");
        // No show loop: the receiver is dropped, so every call that gets through is a 503.
        let (calls, _) = tokio::sync::mpsc::channel(1);
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        Api { rt, router: emcee_daemon::api::router(TOKEN.into(), calls, store) }
    })
}

/// The first byte picks the endpoint (and for content, the declared type); the rest is the body
/// (or the query string of the audit log).
pub fn body(data: &[u8]) {
    if let Some((uri, status)) = send(data) {
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}: a 500 for a client's input");
    }
}

/// The request `data` stands for, and the status the API answered it with.
fn send(data: &[u8]) -> Option<(String, StatusCode)> {
    let (&pick, rest) = data.split_first()?;
    let types = ["application/toml", "text/plain", "application/json", "application/toml; charset=utf-8"];
    let content_type = types[usize::from(pick >> 4) % types.len()];
    let (method, uri) = match pick % 6 {
        0 => (Method::POST, "/v1/say".to_string()),
        1 => (Method::POST, "/v1/ask".to_string()),
        2 => (Method::PUT, "/v1/content/materials".to_string()),
        3 => (Method::PUT, "/v1/content/script".to_string()),
        4 => (Method::POST, format!("/v1/room/{}", String::from_utf8_lossy(rest).replace(['/', '?', '#'], ""))),
        _ => (Method::GET, format!("/v1/log?{}", String::from_utf8_lossy(rest))),
    };
    // An invalid URI is not a request a client could send.
    let request = Request::builder()
        .method(method)
        .uri(&uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", content_type)
        .body(Body::from(rest.to_vec()))
        .ok()?;
    let api = api();
    let response = api.rt.block_on(api.router.clone().oneshot(request)).expect("the router answers every request");
    Some((uri, response.status()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(data: &[u8]) -> StatusCode {
        send(data).expect("a valid request").1
    }

    #[test]
    fn good_bodies_reach_the_show_and_bad_ones_get_a_clear_refusal() {
        // The show is gone, so what passes every check is 503.
        assert_eq!(status(b"\x00{\"text\":\"Hello.\"}"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(b"\x01{\"text\":\"Why?\"}"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(b"\x02[[product]]"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status(b"\x00{\"text\":"), StatusCode::BAD_REQUEST);
        assert_eq!(status(b"\x00{\"text\":\"  \"}"), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            status(b"\x00{\"text\":\"<prosody rate=\\\"9000%\\\">x</prosody>\"}"),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(status(b"\x21Hello."), StatusCode::UNSUPPORTED_MEDIA_TYPE, "a script as JSON");
        assert_eq!(status(b"\x02\xff\xfe"), StatusCode::BAD_REQUEST, "not UTF-8");
        assert_eq!(status(b"\x04dance"), StatusCode::NOT_FOUND);
        assert_eq!(status(b"\x05limit=0"), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(status(b"\x05since=x"), StatusCode::BAD_REQUEST);
        assert_eq!(status(b"\x05since=0&limit=5"), StatusCode::OK, "the audit log is read from the store");
    }
}
