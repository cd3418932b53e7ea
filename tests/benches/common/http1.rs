//! One keep-alive HTTP/1.1 connection to the daemon, from hyper's client, for the benchmarks
//! that drive it over loopback (`#[path]`-included by each).

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// The example tenant's administrator.
pub const ADMIN: &str = "Bearer acme-admin-token";

pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    authorization: String,
}

impl Connection {
    /// A connection acting as the example tenant's administrator.
    pub async fn connect(addr: &str) -> Connection {
        Connection::connect_as(addr, ADMIN).await
    }

    /// A connection sending `authorization` (`Bearer ...`) with every request.
    pub async fn connect_as(addr: &str, authorization: &str) -> Connection {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .unwrap_or_else(|e| panic!("handshake: {e}"));
        tokio::spawn(connection);
        Connection {
            sender,
            authorization: authorization.to_string(),
        }
    }

    /// Sends a request; panics unless it succeeds (2xx).
    pub async fn request(&mut self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, text) = self.send(method, path, body).await;
        assert!(status < 300, "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Sends a request: the status and the body.
    pub async fn send(&mut self, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
        let bytes = body
            .map(|b| Bytes::from(serde_json::to_vec(b).unwrap_or_default()))
            .unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "flowgate")
            .header("authorization", &self.authorization)
            .header("content-type", "application/json")
            .body(Full::new(bytes))
            .unwrap_or_else(|e| panic!("{e}"));
        let response = self
            .sender
            .send_request(request)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
            .to_bytes();
        (status, String::from_utf8_lossy(&body).to_string())
    }
}
