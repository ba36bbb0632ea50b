//! HTTP/1.1 plumbing shared by every server of the crate (the fleet's backends, both control APIs,
//! the WebSocket servers' handshake): request-head parsing, body framing, response writing.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::{TcpListener, TcpStream};

/// Largest accepted request head (request line + headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest accepted request body.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// A parsed request head.
pub(crate) struct Head {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) http10: bool,
    /// Names lowercased, values trimmed.
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// HTTP/1.1: persistent unless `Connection: close`; HTTP/1.0: only with `keep-alive`.
    pub(crate) fn keep_alive(&self) -> bool {
        if self.http10 {
            self.has_token("connection", "keep-alive")
        } else {
            !self.has_token("connection", "close")
        }
    }
}

enum ReadError {
    /// The connection failed or ended mid-request: just close it.
    Io(#[allow(dead_code)] io::Error),
    /// The request is malformed: answer with this status and message, then close.
    Http(u16, &'static str),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> ReadError {
        ReadError::Io(e)
    }
}

/// Reads one line (ending in `\n`) of at most `limit` bytes into `out` (cleared first).
/// Returns `Ok(false)` on a clean EOF before any byte.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
    out: &mut Vec<u8>,
    too_long: (u16, &'static str),
) -> Result<bool, ReadError> {
    out.clear();
    let n = (&mut *reader)
        .take(limit as u64)
        .read_until(b'\n', out)
        .await?;
    if n == 0 {
        return Ok(false);
    }
    if out.last() != Some(&b'\n') {
        return Err(if n >= limit {
            ReadError::Http(too_long.0, too_long.1)
        } else {
            ReadError::Io(io::ErrorKind::UnexpectedEof.into())
        });
    }
    out.pop();
    if out.last() == Some(&b'\r') {
        out.pop();
    }
    Ok(true)
}

/// Reads a request head. `Ok(None)` on a clean EOF between requests.
async fn read_head<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Option<Head>, ReadError> {
    const TOO_LARGE: (u16, &str) = (431, "request head too large");
    let mut used = 0usize;
    let mut request_line: Option<String> = None;
    let mut headers = Vec::new();
    let mut line = Vec::new();
    loop {
        let budget = MAX_HEAD.saturating_sub(used);
        if budget == 0 {
            return Err(ReadError::Http(TOO_LARGE.0, TOO_LARGE.1));
        }
        if !read_line(reader, budget, &mut line, TOO_LARGE).await? {
            return if request_line.is_none() && headers.is_empty() {
                Ok(None)
            } else {
                Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()))
            };
        }
        used += line.len() + 2;
        let text = String::from_utf8_lossy(&line);
        if text.is_empty() {
            if request_line.is_none() {
                continue; // tolerate empty lines before the request line (RFC 9112 §2.2)
            }
            break;
        }
        if request_line.is_none() {
            request_line = Some(text.into_owned());
            continue;
        }
        let (name, value) = text
            .split_once(':')
            .ok_or(ReadError::Http(400, "malformed header line"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let request_line = request_line.unwrap_or_default();
    let parts: Vec<&str> = request_line.split_whitespace().collect();
    let [method, target, version] = parts.as_slice() else {
        return Err(ReadError::Http(400, "malformed request line"));
    };
    let http10 = match *version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        v if v.starts_with("HTTP/") => {
            return Err(ReadError::Http(505, "only HTTP/1.0 and HTTP/1.1"))
        }
        _ => return Err(ReadError::Http(400, "malformed request line")),
    };
    Ok(Some(Head {
        method: method.to_string(),
        target: target.to_string(),
        http10,
        headers,
    }))
}

/// The next request head on a connection, or `None` when the connection is to be closed: a clean
/// EOF, an I/O error, or a malformed head (answered first, see [`respond_and_close`]).
pub(crate) async fn next_head(io: &mut BufReader<TcpStream>) -> Option<Head> {
    match read_head(io).await {
        Ok(Some(head)) => Some(head),
        Ok(None) | Err(ReadError::Io(_)) => None,
        Err(ReadError::Http(status, message)) => {
            let _ = respond_and_close(io.get_mut(), status, message).await;
            None
        }
    }
}

/// The body of `head`'s request ([`read_body`]), or `None` when the connection is to be closed: an
/// I/O error, or a malformed or oversized body (answered first, see [`respond_and_close`]).
pub(crate) async fn next_body(io: &mut BufReader<TcpStream>, head: &Head) -> Option<Vec<u8>> {
    match read_body(io, head).await {
        Ok(body) => Some(body),
        Err(ReadError::Io(_)) => None,
        Err(ReadError::Http(status, message)) => {
            let _ = respond_and_close(io.get_mut(), status, message).await;
            None
        }
    }
}

/// Reads the body framed by `Transfer-Encoding: chunked` or `Content-Length` (none: empty).
/// Sends `100 Continue` first if the client asked for it.
async fn read_body(reader: &mut BufReader<TcpStream>, head: &Head) -> Result<Vec<u8>, ReadError> {
    let chunked = match head.header("transfer-encoding") {
        None => false,
        Some(te) if te.eq_ignore_ascii_case("chunked") => true,
        Some(_) => {
            return Err(ReadError::Http(
                501,
                "only Transfer-Encoding: chunked is supported",
            ))
        }
    };
    let length = match (chunked, head.header("content-length")) {
        (true, _) | (false, None) => 0,
        (false, Some(value)) => value
            .parse::<usize>()
            .map_err(|_| ReadError::Http(400, "bad Content-Length"))?,
    };
    if length > MAX_BODY {
        return Err(ReadError::Http(413, "request body too large"));
    }
    if (chunked || length > 0) && head.has_token("expect", "100-continue") {
        reader
            .get_mut()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await?;
    }
    if chunked {
        return read_chunked(reader).await;
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    Ok(body)
}

async fn read_chunked<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, ReadError> {
    const LINE_LIMIT: usize = 4096;
    const BAD: (u16, &str) = (400, "malformed chunked body");
    let bad = || ReadError::Http(BAD.0, BAD.1);
    let eof = || ReadError::Io(io::ErrorKind::UnexpectedEof.into());
    let mut body = Vec::new();
    let mut line = Vec::new();
    loop {
        if !read_line(reader, LINE_LIMIT, &mut line, BAD).await? {
            return Err(eof());
        }
        let text = String::from_utf8_lossy(&line);
        let size_text = text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        if size == 0 {
            // Trailer section: header lines up to an empty line (ignored).
            for _ in 0..100 {
                if !read_line(reader, LINE_LIMIT, &mut line, BAD).await? {
                    return Err(eof());
                }
                if line.is_empty() {
                    return Ok(body);
                }
            }
            return Err(bad());
        }
        if body.len().saturating_add(size) > MAX_BODY {
            return Err(ReadError::Http(413, "request body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).await?;
        if !read_line(reader, LINE_LIMIT, &mut line, BAD).await? {
            return Err(eof());
        }
        if !line.is_empty() {
            return Err(bad());
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Body {
    Bytes(Vec<u8>),
    /// `n` bytes of [`pattern_byte`] content, generated while writing.
    Pattern(usize),
    /// The same, sent with `Transfer-Encoding: chunked` (no length up front).
    ChunkedPattern(usize),
}

impl Body {
    pub(crate) fn len(&self) -> usize {
        match self {
            Body::Bytes(bytes) => bytes.len(),
            Body::Pattern(n) | Body::ChunkedPattern(n) => *n,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Body,
}

impl Response {
    pub(crate) fn text(status: u16, text: impl Into<String>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".to_owned())],
            body: Body::Bytes(text.into().into_bytes()),
        }
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }
}

/// Answers with a plain-text `message` (a malformed request, or a one-shot answer), then closes.
pub(crate) async fn respond_and_close(
    stream: &mut TcpStream,
    status: u16,
    message: &str,
) -> io::Result<()> {
    write_response(stream, &Response::text(status, message), &[], false, true).await?;
    stream.shutdown().await
}

/// Writes a `Content-Length`-framed response (`head_only`: without the body, for HEAD).
pub(crate) async fn write_response<W: AsyncWrite + Unpin>(
    writer: &mut W,
    response: &Response,
    extra: &[(&str, String)],
    head_only: bool,
    close: bool,
) -> io::Result<()> {
    const INLINE_BODY: usize = 64 * 1024;
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in response
        .headers
        .iter()
        .map(|(n, v)| (*n, v))
        .chain(extra.iter().map(|(n, v)| (*n, v)))
    {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if matches!(response.body, Body::ChunkedPattern(_)) {
        out.push_str("Transfer-Encoding: chunked\r\n");
    } else {
        out.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    match &response.body {
        _ if head_only => writer.write_all(&out).await?,
        Body::Bytes(bytes) if bytes.len() <= INLINE_BODY => {
            out.extend_from_slice(bytes); // one write: head and small body in one segment
            writer.write_all(&out).await?;
        }
        Body::Bytes(bytes) => {
            writer.write_all(&out).await?;
            writer.write_all(bytes).await?;
        }
        Body::Pattern(n) => {
            writer.write_all(&out).await?;
            write_pattern(writer, *n).await?;
        }
        Body::ChunkedPattern(n) => {
            writer.write_all(&out).await?;
            write_chunked_pattern(writer, *n).await?;
        }
    }
    writer.flush().await
}

/// Writes `n` bytes of [`pattern_byte`] content in 64 KiB chunks.
async fn write_pattern<W: AsyncWrite + Unpin>(writer: &mut W, n: usize) -> io::Result<()> {
    const CHUNK: usize = 64 * 1024;
    // The pattern has period 251, so any chunk is a slice of this buffer starting at offset % 251.
    let buffer: Vec<u8> = (0..CHUNK + 251).map(pattern_byte).collect();
    let mut offset = 0;
    while offset < n {
        let len = CHUNK.min(n - offset);
        let start = offset % 251;
        writer.write_all(&buffer[start..start + len]).await?;
        offset += len;
    }
    Ok(())
}

/// Writes `n` bytes of [`pattern_byte`] content as 64 KiB chunks of the chunked coding.
async fn write_chunked_pattern<W: AsyncWrite + Unpin>(writer: &mut W, n: usize) -> io::Result<()> {
    const CHUNK: usize = 64 * 1024;
    let buffer: Vec<u8> = (0..CHUNK + 251).map(pattern_byte).collect();
    let mut offset = 0;
    while offset < n {
        let len = CHUNK.min(n - offset);
        let start = offset % 251;
        writer.write_all(format!("{len:x}\r\n").as_bytes()).await?;
        writer.write_all(&buffer[start..start + len]).await?;
        writer.write_all(b"\r\n").await?;
        offset += len;
    }
    writer.write_all(b"0\r\n\r\n").await
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        425 => "Too Early",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// The path of a request target, without the query string.
pub(crate) fn path_only(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

pub(crate) fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The content of `/bytes/{n}`: byte `i` of the body is `pattern_byte(i)`.
pub fn pattern_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// First value of `name` in an `application/x-www-form-urlencoded` query string, decoded.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

/// Decodes `%XX` escapes and `+` (as space); malformed escapes are kept literally.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Re-binds a port a server used before (it may have connections in TIME_WAIT; tokio's
/// `TcpListener::bind` sets `SO_REUSEADDR` on Unix, which allows that). Tries `attempts` times,
/// 10 ms apart, in case the old socket is still being torn down.
pub(crate) async fn bind_again(addr: SocketAddr, attempts: usize) -> io::Result<TcpListener> {
    let mut last_error = None;
    for _ in 0..attempts {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) => {
                last_error = Some(e);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("bind failed")))
}
