//! Real receivers on loopback for notification tests: a minimal HTTP/1.1 webhook receiver and a
//! minimal SMTP sink. Both record what arrived and can be told to refuse, to test retries.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// What a receiver answers.
#[derive(Debug, Default)]
struct Switch {
    /// Refuse this many requests first.
    fail_first: AtomicUsize,
    /// Refuse everything while set.
    failing: AtomicBool,
    /// Requests (or messages) seen, refused or not.
    seen: AtomicUsize,
}

impl Switch {
    /// Counts one request; true when it is to be refused.
    fn refuse(&self) -> bool {
        let n = self.seen.fetch_add(1, Ordering::SeqCst);
        n < self.fail_first.load(Ordering::SeqCst) || self.failing.load(Ordering::SeqCst)
    }
}

/// One webhook request: headers (lowercased names) and body.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// An HTTP receiver: 204 to what it accepts, 500 to what it refuses.
#[derive(Debug)]
pub struct WebhookReceiver {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    switch: Arc<Switch>,
}

impl WebhookReceiver {
    /// Listens on a free loopback port; refuses the first `fail_first` requests.
    pub fn start(fail_first: usize) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let received = Arc::new(Mutex::new(Vec::new()));
        let switch = Arc::new(Switch::default());
        switch.fail_first.store(fail_first, Ordering::SeqCst);
        let (seen, sw) = (received.clone(), switch.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (seen, sw) = (seen.clone(), sw.clone());
                std::thread::spawn(move || serve_http(stream, &seen, &sw));
            }
        });
        Ok(WebhookReceiver {
            url,
            received,
            switch,
        })
    }

    /// Refuses every request while `failing`.
    pub fn set_failing(&self, failing: bool) {
        self.switch.failing.store(failing, Ordering::SeqCst);
    }

    /// The requests accepted so far.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every request so far, refused or not.
    pub fn requests(&self) -> usize {
        self.switch.seen.load(Ordering::SeqCst)
    }
}

fn serve_http(stream: TcpStream, seen: &Mutex<Vec<Received>>, switch: &Switch) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return; // the client closed the connection
        }
        let mut headers = BTreeMap::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_lowercase(), v.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let status = if switch.refuse() {
            "500 Internal Server Error"
        } else {
            seen.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Received { headers, body });
            "204 No Content"
        };
        let stream = reader.get_mut();
        if write!(stream, "HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}

/// One message the SMTP sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent (headers and body), dot-unstuffed.
    pub data: String,
}

impl Mail {
    /// A header's value (the first with that name, case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.data
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then_some(v.trim())
            })
    }
}

/// An SMTP server that keeps what it is sent: enough of RFC 5321 for a client such as lettre
/// (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT), without TLS or authentication. A refused message
/// gets a 451 (try again later) after its DATA.
#[derive(Debug)]
pub struct SmtpSink {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    switch: Arc<Switch>,
}

impl SmtpSink {
    /// Listens on a free loopback port; refuses the first `fail_first` messages.
    pub fn start(fail_first: usize) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let switch = Arc::new(Switch::default());
        switch.fail_first.store(fail_first, Ordering::SeqCst);
        let (kept, sw) = (mails.clone(), switch.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (kept, sw) = (kept.clone(), sw.clone());
                std::thread::spawn(move || {
                    let _ = serve_smtp(stream, &kept, &sw);
                });
            }
        });
        Ok(SmtpSink {
            port,
            mails,
            switch,
        })
    }

    /// The lettre URL of the sink.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Refuses every message while `failing`.
    pub fn set_failing(&self, failing: bool) {
        self.switch.failing.store(failing, Ordering::SeqCst);
    }

    /// The messages accepted so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every message so far, refused or not.
    pub fn attempts(&self) -> usize {
        self.switch.seen.load(Ordering::SeqCst)
    }
}

fn serve_smtp(stream: TcpStream, kept: &Mutex<Vec<Mail>>, switch: &Switch) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    writer.write_all(b"220 sink.test ESMTP\r\n")?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" | "NOOP" => b"250 ok\r\n",
            "RSET" => {
                (from, to) = (String::new(), Vec::new());
                b"250 ok\r\n"
            }
            "MAIL" => {
                from = address(&command);
                b"250 ok\r\n"
            }
            "RCPT" => {
                to.push(address(&command));
                b"250 ok\r\n"
            }
            "DATA" => {
                writer.write_all(b"354 end with <CRLF>.<CRLF>\r\n")?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                let mail = Mail {
                    from: std::mem::take(&mut from),
                    to: std::mem::take(&mut to),
                    data,
                };
                if switch.refuse() {
                    b"451 try again later\r\n"
                } else {
                    kept.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(mail);
                    b"250 queued\r\n"
                }
            }
            "QUIT" => {
                writer.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            _ => b"502 not implemented\r\n",
        };
        writer.write_all(reply)?;
    }
}

/// The address in `MAIL FROM:<a>` or `RCPT TO:<a>`.
fn address(command: &str) -> String {
    let start = command.find('<').map_or(0, |i| i + 1);
    let end = command.rfind('>').unwrap_or(command.len());
    command.get(start..end).unwrap_or_default().to_string()
}

/// One request an [`ApiServer`] received.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    /// Lowercased names.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// What an [`ApiServer`] answers: a status, headers and a body, after a delay.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: std::time::Duration,
}

impl Reply {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
            delay: std::time::Duration::ZERO,
        }
    }

    /// A redirect to `location`.
    pub fn redirect(location: &str) -> Self {
        Reply {
            status: 302,
            headers: vec![("location".into(), location.into())],
            ..Reply::default()
        }
    }

    /// The same answer, after `delay`.
    pub fn after(mut self, delay: std::time::Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Answer = dyn Fn(&ApiRequest, usize) -> Reply + Send + Sync;

/// Another system's HTTP API on loopback, for connector tests: answers each request with what
/// `answer` says (given the request and how many came before it) and records it.
pub struct ApiServer {
    /// `http://127.0.0.1:port`.
    pub base: String,
    received: Arc<Mutex<Vec<ApiRequest>>>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("base", &self.base)
            .finish()
    }
}

impl ApiServer {
    /// Listens on a free loopback port.
    pub fn start(
        answer: impl Fn(&ApiRequest, usize) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let base = format!("http://{}", listener.local_addr()?);
        let received = Arc::new(Mutex::new(Vec::new()));
        let answer: Arc<Answer> = Arc::new(answer);
        let seen = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (seen, answer) = (seen.clone(), answer.clone());
                std::thread::spawn(move || serve_api(stream, &seen, &*answer));
            }
        });
        Ok(ApiServer { base, received })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// The requests received so far.
    pub fn received(&self) -> Vec<ApiRequest> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn serve_api(stream: TcpStream, seen: &Mutex<Vec<ApiRequest>>, answer: &Answer) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut headers = BTreeMap::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_lowercase(), v.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request = ApiRequest {
            method,
            path,
            headers,
            body,
        };
        let reply = {
            let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            let reply = answer(&request, seen.len());
            seen.push(request);
            reply
        };
        std::thread::sleep(reply.delay);
        let stream = reader.get_mut();
        let mut head = format!(
            "HTTP/1.1 {} X\r\ncontent-length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        if stream.write_all(head.as_bytes()).is_err() || stream.write_all(&reply.body).is_err() {
            return;
        }
    }
}
