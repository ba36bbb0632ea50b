//! Standalone test fleet for the Kotlin/Swift/Python tests (and for poking at by hand).
//!
//! ```text
//! cargo run --example test-fleet -- --backends 3
//! ```
//!
//! Starts N backends plus a control server on 127.0.0.1, prints ONE line of JSON to stdout:
//! `{"backends":["http://127.0.0.1:PORT",...],"control":"http://127.0.0.1:PORT"}`
//! and runs until its stdin reaches EOF (so a test that spawns it with a pipe and dies never
//! leaks it). `--ignore-stdin` runs until killed instead (for `&` in a shell).
//!
//! Control API (plain-text bodies): `POST /backends/{i}/fault` with `ok`, `down`, `blackhole`,
//! `status 503`, `retry-after 503 2`, `slow 200`, `truncate` or `reset`; `GET /backends/{i}/hits`
//! (`?path=/api/health` for one path); `POST /backends/{i}/reset-hits`;
//! `GET /backends/{i}/idempotency-keys`; see `ControlServer` in the
//! `robust-api-fleet` crate (`fleet/src/control.rs`) for more.
//!
//! Uploads: every backend streams `multipart/form-data` on `/upload`, `/upload/...` and
//! `/api/videos` (SHA-256 of the file part, the other fields, idempotency keys honoured); control:
//! `GET /backends/{i}/uploads` (JSON array), `GET /backends/{i}/upload-bytes`,
//! `POST /backends/{i}/upload-reset-after` with `<bytes>` or `off` (reset the next upload's
//! connection after that many body bytes, once), `POST /backends/{i}/reset-uploads`.
//!
//! WebSockets (`--websockets`): as many WebSocket servers again (`ws_backends`), each answering
//! `GET /api/health` and echoing WebSocket messages on any other path, so a client configured with
//! `ws_backends` probes and selects them like HTTP backends. Their control API (`ws_control`):
//! `POST /ws/{i}/mode` with `echo`, `deaf` (no pongs, TCP kept open) or `reject <status>`;
//! `POST /ws/{i}/kill`, `/start`, `/restart`; `POST /ws/{i}/close` with `<code> [reason]`;
//! `POST /ws/{i}/push` with a text; `GET /ws/{i}/upgrades` (connection attempts), `/open`,
//! `/received`; see `WsControl` in `fleet/src/ws/control.rs`. The printed line becomes
//! `{"backends":[...],"control":"...","ws_backends":[...],"ws_control":"..."}`.
//!
//! Proxy (`--proxy-to PORT`): an [`HttpProxy`](robust_api_fleet::HttpProxy) on 127.0.0.1 in front
//! of `127.0.0.1:PORT` (e.g. the official tus server of the resumable-upload tests), driven by the
//! control API: `POST /proxy/cut-after` with `<bytes>` (cut the connection mid-body that many
//! request-body bytes further on, once), `GET /proxy/cuts`, `/proxy/body-bytes`,
//! `/proxy/wire-bytes`, `/proxy/requests`. The line gets `"proxy":"http://127.0.0.1:PORT"`.

use std::io::{Read, Write};
use std::process::ExitCode;

const USAGE: &str =
    "usage: test-fleet [--backends N] [--ignore-stdin] [--websockets] [--proxy-to PORT]\n\
    Starts N (default 3, max 64) HTTP test backends and a control server on 127.0.0.1,\n\
    prints {\"backends\":[...],\"control\":\"...\"} on one line, exits when stdin reaches EOF.\n\
    --websockets also starts N WebSocket echo backends and their control server and adds\n\
    \"ws_backends\":[...],\"ws_control\":\"...\" to the line.\n\
    --proxy-to PORT relays http://127.0.0.1:<new port> to 127.0.0.1:PORT (cuts on request, see\n\
    /proxy/... in the control API) and adds \"proxy\":\"...\" to the line.";

struct Options {
    backends: usize,
    ignore_stdin: bool,
    websockets: bool,
    proxy_to: Option<u16>,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        backends: 3,
        ignore_stdin: false,
        websockets: false,
        proxy_to: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--backends" | "-n" => {
                let value = args.next().ok_or("--backends needs a value")?;
                options.backends = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| format!("bad --backends {value:?}: expected 1..=64"))?;
            }
            "--ignore-stdin" => options.ignore_stdin = true,
            "--websockets" => options.websockets = true,
            "--proxy-to" => {
                let value = args.next().ok_or("--proxy-to needs a port")?;
                options.proxy_to = Some(
                    value
                        .parse()
                        .map_err(|_| format!("bad --proxy-to {value:?}: expected a port"))?,
                );
            }
            "--help" | "-h" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("test-fleet: {message}");
            }
            eprintln!("{USAGE}");
            return if message.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };

    let fleet = match robust_api_fleet::Fleet::try_start(options.backends).await {
        Ok(fleet) => fleet,
        Err(e) => {
            eprintln!("test-fleet: cannot start backends: {e}");
            return ExitCode::FAILURE;
        }
    };
    let proxy = match options.proxy_to {
        Some(port) => {
            let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            match robust_api_fleet::HttpProxy::start(upstream).await {
                Ok(p) => Some(std::sync::Arc::new(p)),
                Err(e) => {
                    eprintln!("test-fleet: cannot start the proxy: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
    };
    let control = match &proxy {
        Some(p) => fleet.start_control_with_proxy(p.clone()).await,
        None => fleet.start_control().await,
    };
    let control = match control {
        Ok(control) => control,
        Err(e) => {
            eprintln!("test-fleet: cannot start the control server: {e}");
            return ExitCode::FAILURE;
        }
    };

    // `--websockets`: the WebSocket servers and their control API (kept alive until exit).
    let websockets = if options.websockets {
        let ws_fleet = match robust_api_fleet::ws::WsFleet::try_start(options.backends).await {
            Ok(f) => f,
            Err(e) => {
                eprintln!("test-fleet: cannot start WebSocket backends: {e}");
                return ExitCode::FAILURE;
            }
        };
        match ws_fleet.start_control().await {
            Ok(c) => Some((ws_fleet, c)),
            Err(e) => {
                eprintln!("test-fleet: cannot start the WebSocket control server: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };

    // URLs contain no characters that need JSON escaping.
    let backends: Vec<String> = fleet
        .urls()
        .iter()
        .map(|url| format!("\"{url}\""))
        .collect();
    let mut line = format!(
        r#"{{"backends":[{}],"control":"{}""#,
        backends.join(","),
        control.url()
    );
    if let Some((ws_fleet, ws_control)) = &websockets {
        let ws_backends: Vec<String> = ws_fleet
            .urls()
            .iter()
            .map(|url| format!("\"{url}\""))
            .collect();
        line.push_str(&format!(
            r#","ws_backends":[{}],"ws_control":"{}""#,
            ws_backends.join(","),
            ws_control.url()
        ));
    }
    if let Some(p) = &proxy {
        line.push_str(&format!(r#","proxy":"{}""#, p.url()));
    }
    line.push('}');
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE; // nobody is listening
    }
    drop(stdout);

    if options.ignore_stdin {
        std::future::pending::<()>().await;
    }
    // Wait for EOF (or an error) on stdin, on a blocking thread.
    let _ = tokio::task::spawn_blocking(|| {
        let mut stdin = std::io::stdin().lock();
        let mut buffer = [0u8; 1024];
        loop {
            match stdin.read(&mut buffer) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    })
    .await;
    drop(websockets);
    drop(control);
    drop(fleet);
    // Exit at once: don't let the runtime's shutdown wait on anything.
    std::process::exit(0)
}
