//! The CLI's side of the local API: one blocking HTTP/1.1 request per call, over loopback.
//! We control both ends, so a few lines of HTTP replace a client library.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the control plane is not running at {addr}: {source}")]
    Unreachable { addr: SocketAddr, source: std::io::Error },
    #[error("cannot read the API token {path}: {source}")]
    Token { path: String, source: std::io::Error },
    #[error("talking to the control plane: {0}")]
    Io(#[from] std::io::Error),
    #[error("the control plane answered something that is not HTTP/JSON: {0}")]
    Protocol(String),
    /// The API refused the request; `message` is its JSON error.
    #[error("{message} (HTTP {status})")]
    Refused { status: u16, message: String },
}

pub struct ApiClient {
    addr: SocketAddr,
    token: String,
}

impl ApiClient {
    /// The API of the daemon configured by `config`, with its token file.
    pub fn for_config(config: &Config) -> Result<Self, ClientError> {
        let token = std::fs::read_to_string(&config.token_file)
            .map_err(|source| ClientError::Token { path: config.token_file.display().to_string(), source })?;
        Ok(Self { addr: config.api_listen, token: token.trim().to_string() })
    }

    pub fn new(addr: SocketAddr, token: &str) -> Self {
        Self { addr, token: token.to_string() }
    }

    /// Sends one request with a JSON body (or none); returns the JSON body of a 2xx answer.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.send(method, path, "application/json", body.as_bytes())
    }

    /// Sends one request with a body of type `media`; returns the JSON body of a 2xx answer.
    pub fn send(&self, method: &str, path: &str, media: &str, body: &[u8]) -> Result<serde_json::Value, ClientError> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(3))
            .map_err(|source| ClientError::Unreachable { addr: self.addr, source })?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: {media}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            self.token,
            body.len()
        )?;
        stream.write_all(body)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response);
        let (head, payload) = text.split_once("\r\n\r\n").ok_or_else(|| ClientError::Protocol(text.to_string()))?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ClientError::Protocol(head.to_string()))?;
        let json: serde_json::Value =
            serde_json::from_str(payload).map_err(|e| ClientError::Protocol(format!("{e}: {payload}")))?;
        if (200..300).contains(&status) {
            Ok(json)
        } else {
            let message = json["error"].as_str().unwrap_or("request refused").to_string();
            Err(ClientError::Refused { status, message })
        }
    }
}
