//! Self-test of the test fleet (the `robust-api-fleet` crate, `fleet/`): every fault, seen from a real client
//! (reqwest, or raw sockets where the exact TCP behaviour matters), plus the standalone
//! `test-fleet` binary and its control API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use robust_api_fleet::{expected_bytes, Fault, Fleet};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// reqwest is built with `rustls-no-provider`: a crypto provider must be installed before any
/// client is built, even for plain-HTTP use.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default(); // Err = already installed
}

/// A client with a short overall timeout, so a broken fleet fails the test instead of hanging it.
fn client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("reqwest client")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .expect("ASCII header")
}

/// Sends a raw HTTP/1.1 GET on a fresh connection and reads until EOF or error.
async fn raw_get(url_addr: std::net::SocketAddr, path: &str) -> (Vec<u8>, std::io::Result<()>) {
    let mut stream = TcpStream::connect(url_addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) => return (received, Ok(())),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) => return (received, Err(e)),
        }
    }
}

/// A response read off a raw keep-alive connection: status, headers (lowercased names), body.
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one `Content-Length`-framed response (the fleet always frames that way).
async fn read_raw_response(reader: &mut BufReader<TcpStream>) -> RawResponse {
    let mut line = String::new();
    reader.read_line(&mut line).await.expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.expect("header line");
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').expect("header");
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .expect("content-length");
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await.expect("body");
    RawResponse {
        status,
        headers,
        body,
    }
}

/// Whether an error's source chain holds an `io::Error` of this kind.
fn caused_by(error: &(dyn std::error::Error + 'static), kind: std::io::ErrorKind) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == kind)
        {
            return true;
        }
        current = e.source();
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connection_serves_many_requests_and_sees_fault_changes() {
    let fleet = Fleet::start(1).await;
    let server = fleet.server(0);
    let mut conn = BufReader::new(TcpStream::connect(server.addr()).await.unwrap());
    // Three pipelined requests in one write, the middle one with a body.
    conn.get_mut()
        .write_all(
            b"GET /api/health HTTP/1.1\r\nHost: t\r\n\r\n\
              POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
              GET /a?b=c HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .await
        .unwrap();
    let health = read_raw_response(&mut conn).await;
    assert_eq!((health.status, health.body.as_slice()), (200, &b"ok"[..]));
    assert_eq!(health.header("x-request-count"), Some("1"));
    assert_eq!(health.header("connection"), None, "stays open");
    let echo = read_raw_response(&mut conn).await;
    assert_eq!(echo.body, b"abc");
    assert_eq!(echo.header("x-request-count"), Some("2"));
    let json = read_raw_response(&mut conn).await;
    assert_eq!(json.body, br#"{"server":0,"method":"GET","path":"/a?b=c"}"#);

    // A fault switch applies to the next request on the same connection.
    server.set_fault(Fault::Status(503)).await;
    conn.get_mut()
        .write_all(b"GET /api/health HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let failing = read_raw_response(&mut conn).await;
    assert_eq!(
        (failing.status, failing.body.as_slice()),
        (503, &b"error 503"[..])
    );
    assert_eq!(failing.header("x-backend"), Some("0"));
    assert_eq!(failing.header("x-request-count"), Some("4"));

    assert_eq!(server.hits(), 4);
    assert_eq!(server.hits_for("/api/health"), 2);
    assert_eq!(server.connections(), 1);
    assert!(server.requests().iter().all(|r| r.connection == 1));

    // `Connection: close` is honoured.
    server.set_fault(Fault::None).await;
    conn.get_mut()
        .write_all(b"GET /api/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let last = read_raw_response(&mut conn).await;
    assert_eq!(last.header("connection"), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(conn.read_to_end(&mut rest).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_routes_headers_and_keep_alive() {
    let fleet = Fleet::start(2).await;
    let urls = fleet.urls();
    assert_eq!(urls.len(), 2);
    assert!(urls[0].starts_with("http://127.0.0.1:") && !urls[0].ends_with('/'));
    assert_ne!(urls[0], urls[1]);
    let http = client();

    let health = http
        .get(format!("{}/api/health", urls[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(header(&health, "x-backend"), "0");
    assert_eq!(header(&health, "x-request-count"), "1");
    assert_eq!(health.text().await.unwrap(), "ok");

    let json = http.get(format!("{}/x?q=1", urls[0])).send().await.unwrap();
    assert_eq!(json.status(), 200);
    assert_eq!(header(&json, "content-type"), "application/json");
    assert_eq!(header(&json, "x-request-count"), "2");
    assert_eq!(
        json.text().await.unwrap(),
        r#"{"server":0,"method":"GET","path":"/x?q=1"}"#
    );

    let bytes = http
        .get(format!("{}/bytes/100000", urls[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&bytes, "content-type"), "application/octet-stream");
    assert_eq!(
        bytes.bytes().await.unwrap().as_ref(),
        expected_bytes(100_000).as_slice()
    );

    let echo = http
        .put(format!("{}/echo", urls[0]))
        .header("content-type", "text/x-test")
        .header("x-custom", "Value")
        .body("hello fleet")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&echo, "content-type"), "text/x-test");
    assert_eq!(echo.text().await.unwrap(), "hello fleet");

    let other = http.get(format!("{}/y", urls[1])).send().await.unwrap();
    assert_eq!(header(&other, "x-backend"), "1");
    assert_eq!(
        other.text().await.unwrap(),
        r#"{"server":1,"method":"GET","path":"/y"}"#
    );

    let s0 = fleet.server(0);
    assert_eq!(s0.hits(), 4);
    assert_eq!(s0.hits_for("/api/health"), 1);
    assert_eq!(s0.hits_for("/x"), 1, "per-path counts ignore the query");
    assert_eq!(fleet.server(1).hits(), 1);
    assert_eq!(fleet.total_hits(), 5);

    let requests = s0.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(requests[1].method, "GET");
    assert_eq!(requests[1].path, "/x?q=1");
    assert_eq!(requests[3].method, "PUT");
    assert_eq!(requests[3].body, b"hello fleet");
    assert_eq!(requests[3].header("X-Custom"), Some("Value"));
    assert!(requests[3]
        .headers
        .iter()
        .any(|(n, v)| n == "x-custom" && v == "Value"));
    assert!(requests
        .windows(2)
        .all(|w| w[0].received_at <= w[1].received_at));

    s0.reset_hits();
    assert_eq!(
        (s0.hits(), s0.hits_for("/api/health"), s0.requests().len()),
        (0, 0, 0)
    );
    let after = http
        .get(format!("{}/api/health", urls[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&after, "x-request-count"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_request_bodies_are_decoded() {
    let fleet = Fleet::start(1).await;
    let mut stream = TcpStream::connect(fleet.server(0).addr()).await.unwrap();
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
              5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n",
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("Connection: close\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nhello, world"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_refuses_connections_and_comes_back_on_the_same_url() {
    let fleet = Fleet::start(1).await;
    let server = fleet.server(0);
    let url = format!("{}/api/health", server.url());
    let http = client();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);

    // An open keep-alive connection gets closed by Down.
    let mut open = TcpStream::connect(server.addr()).await.unwrap();
    open.write_all(b"GET /api/health HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 1024];
    assert!(open.read(&mut buffer).await.unwrap() > 0);

    // Several cycles in a row: rebinding must work with the closed connections in TIME_WAIT.
    for cycle in 0..3 {
        server.set_fault(Fault::Down).await;
        assert_eq!(server.fault(), Fault::Down);
        let refused = TcpStream::connect(server.addr()).await.unwrap_err();
        assert_eq!(
            refused.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "cycle {cycle}"
        );
        // A fresh client: a pooled connection may not have noticed the close yet.
        let error = client().get(&url).send().await.unwrap_err();
        assert!(
            error.is_connect(),
            "cycle {cycle}: expected a connect error, got {error:?}"
        );

        server.set_fault(Fault::None).await;
        let back = client().get(&url).send().await.unwrap();
        assert_eq!(back.status(), 200, "cycle {cycle}");
        assert_eq!(header(&back, "x-backend"), "0");
    }
    // The connection that was open before the first Down was closed by it.
    let n = tokio::time::timeout(Duration::from_secs(1), open.read(&mut buffer)).await;
    assert!(
        matches!(n, Ok(Ok(0)) | Ok(Err(_))),
        "expected the old connection closed, got {n:?}"
    );
    assert_eq!(server.hits(), 5); // 1 + the raw one + 3 after each cycle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_hole_reads_but_never_answers() {
    let fleet = Fleet::start(1).await;
    let server = fleet.server(0);
    server.set_fault(Fault::BlackHole).await;
    install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();

    let started = Instant::now();
    let error = http
        .get(format!("{}/api/health", server.url()))
        .send()
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(error.is_timeout(), "expected a timeout, got {error:?}");
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(1500),
        "{elapsed:?}"
    );
    assert_eq!(server.hits(), 1, "the request was read and counted");

    // A pending request's connection is closed, unanswered, when the fault changes.
    let mut raw = TcpStream::connect(server.addr()).await.unwrap();
    raw.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    while server.hits() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.set_fault(Fault::None).await;
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(1), raw.read_to_end(&mut received)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "expected close without answer: {read:?}"
    );
    assert!(received.is_empty());

    let ok = http
        .get(format!("{}/api/health", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_retry_after() {
    let fleet = Fleet::start(1).await;
    let server = fleet.server(0);
    let http = client();
    let url = format!("{}/api/health", server.url());
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);

    server.set_fault(Fault::Status(503)).await;
    let unavailable = http.get(&url).send().await.unwrap();
    assert_eq!(unavailable.status(), 503);
    assert_eq!(header(&unavailable, "x-backend"), "0");
    assert_eq!(header(&unavailable, "x-request-count"), "2");
    assert!(unavailable.headers().get("retry-after").is_none());
    assert_eq!(unavailable.text().await.unwrap(), "error 503");

    server
        .set_fault(Fault::RetryAfter {
            status: 429,
            secs: 2,
        })
        .await;
    let limited = http
        .post(format!("{}/orders", server.url()))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(header(&limited, "retry-after"), "2");
    assert_eq!(limited.text().await.unwrap(), "error 429");

    assert_eq!(
        server.unique_effects(),
        0,
        "a rejected mutation has no effect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_delays_the_answer() {
    let fleet = Fleet::start(1).await;
    let server = fleet.server(0);
    let http = client();
    let url = format!("{}/api/health", server.url());
    let started = Instant::now();
    http.get(&url).send().await.unwrap().text().await.unwrap();
    let fast = started.elapsed();

    server
        .set_fault(Fault::Slow(Duration::from_millis(200)))
        .await;
    let started = Instant::now();
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "ok");
    let slow = started.elapsed();
    assert!(slow >= Duration::from_millis(200), "{slow:?}");
    assert!(slow < Duration::from_millis(1000), "{slow:?}");
    assert!(fast < Duration::from_millis(150), "{fast:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_gives_a_body_error() {
    let fleet = Fleet::start(1).await;
    let server = fleet.server(0);
    server.set_fault(Fault::Truncate).await;
    let response = client()
        .get(format!("{}/bytes/5000", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(1000));
    let error = response.bytes().await.unwrap_err();
    // reqwest reports a failed body read as a decode error whose source is the body error.
    assert!(
        error.is_body() || error.is_decode(),
        "expected a body error, got {error:?}"
    );
    assert!(
        caused_by(&error, std::io::ErrorKind::UnexpectedEof),
        "{error:?}"
    );

    // On the wire: exactly 100 body bytes after the head, then a clean EOF.
    let (received, result) = raw_get(server.addr(), "/api/health").await;
    assert!(result.is_ok(), "truncate closes with FIN, got {result:?}");
    let text = String::from_utf8_lossy(&received);
    let split = text.find("\r\n\r\n").expect("a head") + 4;
    assert!(text.contains("Content-Length: 1000\r\n"));
    assert_eq!(received.len() - split, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_body_gives_a_body_error_and_a_reset() {
    let fleet = Fleet::start(1).await;
    let server = fleet.server(0);
    server.set_fault(Fault::ResetMidBody).await;
    let response = client()
        .get(format!("{}/bytes/5000", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let error = response.bytes().await.unwrap_err();
    assert!(
        error.is_body() || error.is_decode(),
        "expected a body error, got {error:?}"
    );
    assert!(
        caused_by(&error, std::io::ErrorKind::ConnectionReset),
        "{error:?}"
    );

    let (received, result) = raw_get(server.addr(), "/api/health").await;
    let error = result.expect_err("expected ECONNRESET");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200 OK\r\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_replay_the_first_response() {
    let fleet = Fleet::start(1).await;
    let server = fleet.server(0);
    let http = client();
    let orders = format!("{}/orders", server.url());

    let first = http
        .post(&orders)
        .header("Idempotency-Key", "k1")
        .body("a")
        .send()
        .await
        .unwrap();
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_body = first.text().await.unwrap();
    assert_eq!(
        first_body,
        r#"{"server":0,"method":"POST","path":"/orders","effect":1}"#
    );

    let again = http
        .post(&orders)
        .header("Idempotency-Key", "k1")
        .body("a")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(header(&again, "idempotent-replayed"), "true");
    assert_eq!(
        header(&again, "x-request-count"),
        "2",
        "X-Request-Count is live, not replayed"
    );
    assert_eq!(again.text().await.unwrap(), first_body);
    assert_eq!(server.unique_effects(), 1);

    // Unkeyed mutations each apply; GETs never do.
    for _ in 0..2 {
        http.patch(&orders).body("b").send().await.unwrap();
    }
    http.get(&orders).send().await.unwrap();
    assert_eq!(server.unique_effects(), 3);

    // A mutation rejected by a fault is not stored: the retry applies it for real.
    server.set_fault(Fault::Status(503)).await;
    let rejected = http
        .delete(&orders)
        .header("Idempotency-Key", "k2")
        .send()
        .await
        .unwrap();
    assert_eq!(rejected.status(), 503);
    server.set_fault(Fault::None).await;
    let applied = http
        .delete(&orders)
        .header("Idempotency-Key", "k2")
        .send()
        .await
        .unwrap();
    assert!(applied.headers().get("idempotent-replayed").is_none());
    assert_eq!(server.unique_effects(), 4);

    // A response lost in transit (Truncate) was still applied: the retry replays it.
    server.set_fault(Fault::Truncate).await;
    let lost = http
        .put(&orders)
        .header("Idempotency-Key", "k3")
        .body("c")
        .send()
        .await
        .unwrap();
    assert!(lost.bytes().await.is_err());
    assert_eq!(server.unique_effects(), 5);
    server.set_fault(Fault::None).await;
    let replayed = http
        .put(&orders)
        .header("Idempotency-Key", "k3")
        .body("c")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&replayed, "idempotent-replayed"), "true");
    assert_eq!(
        replayed.text().await.unwrap(),
        r#"{"server":0,"method":"PUT","path":"/orders","effect":5}"#
    );
    assert_eq!(server.unique_effects(), 5);

    assert_eq!(
        server.idempotency_keys(),
        ["k1", "k1", "k2", "k2", "k3", "k3"]
    );
    server.reset_effects();
    assert_eq!(server.unique_effects(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_api_in_process() {
    let fleet = Fleet::start(2).await;
    let control = fleet.start_control().await.unwrap();
    let base = control.url();
    let http = client();
    let text = |r: reqwest::Response| async move { (r.status().as_u16(), r.text().await.unwrap()) };

    let set = |fault: &'static str| {
        http.post(format!("{base}/backends/1/fault"))
            .body(fault)
            .send()
    };
    assert_eq!(
        text(set("status 503").await.unwrap()).await,
        (200, "ok".into())
    );
    assert_eq!(fleet.server(1).fault(), Fault::Status(503));
    assert_eq!(text(set("retry-after 503 2").await.unwrap()).await.0, 200);
    assert_eq!(
        fleet.server(1).fault(),
        Fault::RetryAfter {
            status: 503,
            secs: 2
        }
    );
    assert_eq!(text(set(" Slow 250\n").await.unwrap()).await.0, 200);
    assert_eq!(
        fleet.server(1).fault(),
        Fault::Slow(Duration::from_millis(250))
    );
    let fault = http
        .get(format!("{base}/backends/1/fault"))
        .send()
        .await
        .unwrap();
    assert_eq!(text(fault).await, (200, "slow 250".into()));
    let (status, message) = text(set("explode").await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(message.contains("unknown fault"), "{message}");
    assert_eq!(text(set("status 42").await.unwrap()).await.0, 400);
    assert_eq!(text(set("ok").await.unwrap()).await.0, 200);

    let bad_index = http
        .get(format!("{base}/backends/7/hits"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_index.status(), 404);
    let not_a_number = http
        .get(format!("{base}/backends/one/hits"))
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_number.status(), 400);
    let unknown = http
        .get(format!("{base}/backends/0/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let wrong_method = http
        .post(format!("{base}/backends/0/hits"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);

    let backend = fleet.urls()[0].clone();
    http.get(format!("{backend}/api/health"))
        .send()
        .await
        .unwrap();
    http.post(format!("{backend}/pay"))
        .header("Idempotency-Key", "abc")
        .send()
        .await
        .unwrap();
    http.post(format!("{backend}/pay"))
        .header("Idempotency-Key", "def")
        .send()
        .await
        .unwrap();
    let hits = |query: &'static str| http.get(format!("{base}/backends/0/hits{query}")).send();
    assert_eq!(text(hits("").await.unwrap()).await, (200, "3".into()));
    assert_eq!(text(hits("?path=/api/health").await.unwrap()).await.1, "1");
    assert_eq!(
        text(hits("?path=%2Fapi%2Fhealth").await.unwrap()).await.1,
        "1"
    );
    assert_eq!(text(hits("?path=/pay").await.unwrap()).await.1, "2");
    let keys = http
        .get(format!("{base}/backends/0/idempotency-keys"))
        .send()
        .await
        .unwrap();
    assert_eq!(text(keys).await.1, "abc\ndef");
    let effects = http
        .get(format!("{base}/backends/0/unique-effects"))
        .send()
        .await
        .unwrap();
    assert_eq!(text(effects).await.1, "2");
    let reset = http
        .post(format!("{base}/backends/0/reset-hits"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    assert_eq!(text(hits("").await.unwrap()).await.1, "0");
    let keys = http
        .get(format!("{base}/backends/0/idempotency-keys"))
        .send()
        .await
        .unwrap();
    assert_eq!(text(keys).await.1, "");

    let backends = http.get(format!("{base}/backends")).send().await.unwrap();
    assert_eq!(
        text(backends).await.1,
        format!(r#"["{}","{}"]"#, fleet.urls()[0], fleet.urls()[1])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_fleet_closes_everything() {
    let fleet = Fleet::start(2).await;
    let addr = fleet.server(1).addr();
    let mut open = TcpStream::connect(addr).await.unwrap();
    open.write_all(b"GET /api/health HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 1024];
    assert!(open.read(&mut buffer).await.unwrap() > 0);
    let kept = fleet.server(1).clone(); // a handle outliving the fleet must not keep it alive
    drop(fleet);

    let closed = tokio::time::timeout(Duration::from_secs(1), open.read(&mut buffer)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ if Instant::now() > deadline => panic!("port {addr} still accepting after drop"),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    assert!(
        kept.try_set_fault(Fault::None).await.is_err(),
        "no rebinding after drop"
    );
}

#[test]
fn fault_syntax_round_trips() {
    let faults = [
        Fault::None,
        Fault::Down,
        Fault::BlackHole,
        Fault::Status(503),
        Fault::RetryAfter {
            status: 429,
            secs: 7,
        },
        Fault::Slow(Duration::from_millis(200)),
        Fault::Truncate,
        Fault::ResetMidBody,
    ];
    for fault in faults {
        assert_eq!(
            fault.to_string().parse::<Fault>(),
            Ok(fault.clone()),
            "{fault}"
        );
    }
    assert_eq!("OK".parse::<Fault>(), Ok(Fault::None));
    assert_eq!("reset".parse::<Fault>(), Ok(Fault::ResetMidBody));
    for bad in [
        "",
        "status",
        "status abc",
        "status 99",
        "slow -1",
        "retry-after 503",
        "down now",
    ] {
        assert!(bad.parse::<Fault>().is_err(), "{bad:?} should not parse");
    }
}

// ---------------------------------------------------------------------------------------------
// The standalone binary
// ---------------------------------------------------------------------------------------------

/// Kills the child if the test fails before it exits on its own.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Every `.rs` file below `dir` (the fleet crate's sources), appended to `out`.
fn rust_files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files_under(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `target/<profile>/examples/test-fleet`, built with cargo if missing or older than its sources.
/// (`cargo test --test fleet_selftest` does not build examples; plain `cargo test` does.)
fn test_fleet_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/fleet_selftest-<hash> -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    let binary = profile_dir
        .join("examples")
        .join(format!("test-fleet{}", std::env::consts::EXE_SUFFIX));
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = vec![
        manifest_dir.join("examples/test-fleet.rs"),
        manifest_dir.join("fleet/Cargo.toml"),
    ];
    rust_files_under(&manifest_dir.join("fleet/src"), &mut sources);
    let built = modified(&binary);
    let fresh = built.is_some() && sources.iter().all(|s| modified(s) <= built);
    if !fresh {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--example", "test-fleet", "--manifest-path"])
            .arg(manifest_dir.join("Cargo.toml"));
        if profile_dir
            .file_name()
            .is_some_and(|name| name == "release")
        {
            build.arg("--release");
        }
        let output = build
            .output()
            .expect("run cargo build --example test-fleet");
        assert!(
            output.status.success(),
            "cargo build --example test-fleet failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(
        binary.exists(),
        "{} not found after building it",
        binary.display()
    );
    binary
}

/// Pulls the quoted `http://...` strings out of the binary's JSON line, in order.
fn quoted_urls(json: &str) -> Vec<String> {
    json.split('"')
        .filter(|s| s.starts_with("http://"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_binary_serves_a_control_api_and_exits_on_stdin_eof() {
    let binary = tokio::task::spawn_blocking(test_fleet_binary)
        .await
        .unwrap();
    let child = Command::new(&binary)
        .args(["--backends", "3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn test-fleet");
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let line = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
                .map(|_| line)
        }),
    )
    .await
    .expect("the JSON line within 5 s")
    .unwrap()
    .unwrap();
    assert!(
        line.starts_with(r#"{"backends":["http://127.0.0.1:"#),
        "{line}"
    );
    assert!(
        line.trim_end().ends_with('}') && line.contains(r#"],"control":"http://127.0.0.1:"#),
        "{line}"
    );
    let urls = quoted_urls(&line);
    assert_eq!(urls.len(), 4, "3 backends + control: {line}");
    let (backends, control) = (&urls[..3], &urls[3]);

    let http = client();
    let fault = http
        .post(format!("{control}/backends/2/fault"))
        .body("status 503")
        .send()
        .await
        .unwrap();
    assert_eq!(fault.status(), 200);
    let failing = http
        .get(format!("{}/api/health", backends[2]))
        .send()
        .await
        .unwrap();
    assert_eq!(failing.status(), 503);
    assert_eq!(header(&failing, "x-backend"), "2");
    let healthy = http
        .get(format!("{}/api/health", backends[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(healthy.status(), 200);
    let hits = http
        .get(format!("{control}/backends/2/hits?path=/api/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(hits.text().await.unwrap(), "1");
    let bad = http
        .post(format!("{control}/backends/2/fault"))
        .body("nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let alive = http.get(format!("{control}/health")).send().await.unwrap();
    assert_eq!(
        alive.text().await.unwrap(),
        "ok",
        "a bad request must not kill the control server"
    );

    // Closing stdin ends the process.
    drop(child.0.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(3);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "test-fleet did not exit after stdin EOF"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
    assert!(
        TcpStream::connect(backends[0].trim_start_matches("http://"))
            .await
            .is_err()
    );
}

/// The upload route's multipart parser (`robust_api_fleet::multipart`), without sockets.
mod multipart {
    use robust_api_fleet::multipart::{find_bytes, multipart_boundary, MultipartSink};

    #[test]
    fn parses_fields_and_hashes_the_file_across_any_split() {
        use sha2::Digest;
        let b = "XyZ";
        let content: Vec<u8> = (0..5000u32).map(|i| (i % 13) as u8 + b'\r' - 3).collect();
        let mut body = format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nHello\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&content);
        body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
        let want: String = sha2::Sha256::digest(&content)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect();
        for split in [1usize, 2, 3, 7, 64, 4096, body.len()] {
            let mut s = MultipartSink::new(b);
            for chunk in body.chunks(split) {
                s.feed(chunk).unwrap();
            }
            assert!(s.is_done(), "split {split}");
            assert_eq!(s.fields(), [("title".to_owned(), "Hello".to_owned())]);
            let (field, name, ct, size, hash) = s.file().cloned().unwrap();
            assert_eq!(
                (field.as_str(), name.as_str(), ct.as_str()),
                ("file", "a.bin", "application/octet-stream")
            );
            assert_eq!(
                (size, hash),
                (content.len() as u64, want.clone()),
                "split {split}"
            );
        }
    }

    #[test]
    fn boundaries() {
        assert_eq!(
            multipart_boundary("multipart/form-data; boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            multipart_boundary("Multipart/Form-Data; charset=x; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(multipart_boundary("application/json"), None);
        assert_eq!(find_bytes(b"abcabd", b"abd"), Some(3));
        assert_eq!(find_bytes(b"ab", b"abd"), None);
    }
}
