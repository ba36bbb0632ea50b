//! Fault modes: what a backend does with the requests it receives ([`Fault`], switched with
//! [`Server::set_fault`](crate::Server::set_fault)), and the fault behaviours the request loops
//! share (black hole, broken answers).

use std::fmt;
use std::io;
use std::str::FromStr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::http::pattern_byte;

/// `Content-Length` announced by [`Fault::Truncate`] and [`Fault::ResetMidBody`] responses.
pub const BROKEN_DECLARED_LEN: usize = 1000;
/// Body bytes actually sent by [`Fault::Truncate`] and [`Fault::ResetMidBody`] responses.
pub const BROKEN_SENT_LEN: usize = 100;

/// What a server does with the requests it receives. Switch with [`Server::set_fault`](crate::Server::set_fault).
///
/// A fault is read when a request's head has been parsed, so a change applies to new connections
/// *and* to the next request on existing keep-alive connections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Normal behaviour.
    #[default]
    None,
    /// Connection refused: the listener is closed and every open connection of this server is
    /// closed (FIN) before `set_fault` returns. Any other fault rebinds the same port.
    ///
    /// Note: a client that had an idle pooled keep-alive connection may not have processed the FIN
    /// when it sends its next request, and then sees "connection closed before message completed"
    /// (not a connect error) once; new connections always get `ECONNREFUSED`.
    Down,
    /// Accepts connections and reads requests (they count as hits) but never answers. A pending
    /// request's connection stays open until the client hangs up or the fault changes; then it is
    /// closed without an answer.
    BlackHole,
    /// Answers every request (health probes included) with this status and body `error <status>`.
    /// No effect is applied.
    Status(u16),
    /// Like `Status`, plus `Retry-After: <secs>`.
    RetryAfter { status: u16, secs: u64 },
    /// Handles the request normally (a mutation's effect is applied at once) but waits this long
    /// before sending the answer.
    Slow(Duration),
    /// Sends `200` headers with `Content-Length: 1000`, then only 100 body bytes, then closes the
    /// connection (FIN). The request was handled (a mutation's effect is applied): the response is
    /// what got lost.
    Truncate,
    /// Like `Truncate`, but the connection is then reset (RST, via `SO_LINGER` 0) about 10 ms after
    /// the partial body, so the client reads the head and part of the body, then `ECONNRESET`.
    ResetMidBody,
}

impl FromStr for Fault {
    type Err = String;

    /// Parses the control-API syntax: `ok` (or `none`), `down`, `blackhole`, `status <code>`,
    /// `retry-after <code> <secs>`, `slow <ms>`, `truncate`, `reset`. Case-insensitive; surrounding
    /// whitespace is ignored. Status codes must be within 200..=599.
    fn from_str(s: &str) -> Result<Fault, String> {
        let words: Vec<String> = s.split_whitespace().map(str::to_ascii_lowercase).collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let status = |w: &str| -> Result<u16, String> {
            match w.parse::<u16>() {
                Ok(code) if (200..=599).contains(&code) => Ok(code),
                _ => Err(format!("bad status code {w:?}: expected 200..=599")),
            }
        };
        let number = |w: &str, what: &str| -> Result<u64, String> {
            w.parse::<u64>()
                .map_err(|_| format!("bad {what} {w:?}: expected a non-negative integer"))
        };
        match words.as_slice() {
            ["ok"] | ["none"] => Ok(Fault::None),
            ["down"] => Ok(Fault::Down),
            ["blackhole"] | ["black-hole"] => Ok(Fault::BlackHole),
            ["status", code] => Ok(Fault::Status(status(code)?)),
            ["retry-after", code, secs] => Ok(Fault::RetryAfter {
                status: status(code)?,
                secs: number(secs, "seconds")?,
            }),
            ["slow", ms] => Ok(Fault::Slow(Duration::from_millis(number(
                ms,
                "milliseconds",
            )?))),
            ["truncate"] => Ok(Fault::Truncate),
            ["reset"] | ["reset-mid-body"] => Ok(Fault::ResetMidBody),
            _ => Err(format!(
                "unknown fault {:?}; expected one of: ok, down, blackhole, status <code>, \
                 retry-after <code> <secs>, slow <ms>, truncate, reset",
                s.trim()
            )),
        }
    }
}

impl fmt::Display for Fault {
    /// Formats in the control-API syntax (round-trips through [`FromStr`], `Slow` at ms precision).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::None => write!(f, "ok"),
            Fault::Down => write!(f, "down"),
            Fault::BlackHole => write!(f, "blackhole"),
            Fault::Status(s) => write!(f, "status {s}"),
            Fault::RetryAfter { status, secs } => write!(f, "retry-after {status} {secs}"),
            Fault::Slow(d) => write!(f, "slow {}", d.as_millis()),
            Fault::Truncate => write!(f, "truncate"),
            Fault::ResetMidBody => write!(f, "reset"),
        }
    }
}
/// Holds a connection whose request will never be answered: discards whatever the client sends,
/// returns (closing the connection) when the client hangs up or the fault stops being BlackHole.
pub(crate) async fn black_hole(io: &mut BufReader<TcpStream>, faults: &mut watch::Receiver<Fault>) {
    let mut sink = [0u8; 4096];
    loop {
        tokio::select! {
            changed = faults.changed() => {
                if changed.is_err() || *faults.borrow_and_update() != Fault::BlackHole {
                    return;
                }
            }
            read = io.read(&mut sink) => {
                if !matches!(read, Ok(n) if n > 0) {
                    return;
                }
            }
        }
    }
}

/// `Truncate` / `ResetMidBody`: a 200 head announcing [`BROKEN_DECLARED_LEN`] bytes, then only
/// [`BROKEN_SENT_LEN`], then FIN (truncate) or RST (reset: `SO_LINGER` 0 is set, and the caller
/// then drops the connection at once).
pub(crate) async fn send_broken(
    stream: &mut TcpStream,
    extra: &[(&str, String)],
    reset: bool,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {BROKEN_DECLARED_LEN}\r\n"
    );
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend((0..BROKEN_SENT_LEN).map(pattern_byte));
    stream.write_all(&out).await?;
    stream.flush().await?;
    if reset {
        // Give the client a moment to take the head, then close with SO_LINGER 0 => RST.
        tokio::time::sleep(Duration::from_millis(10)).await;
        stream.set_zero_linger()?;
    } else {
        stream.shutdown().await?;
    }
    Ok(())
}
