//! The streamed `multipart/form-data` body of an upload (RFC 7578): the form fields, then the file
//! read from disk in [`CHUNK`]-sized pieces, then the closing delimiter. The whole body is never in
//! memory, and its exact length is known up front ([`Layout::content_length`]), so it goes out with
//! a `Content-Length` (servers and proxies see the size; no chunked encoding).
//!
//! [`Meter`] is what the stream shares with the upload's task: bytes taken by the transport, the
//! time of the last activity (for the idle timeout), and an abort flag checked on every chunk.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::io::AsyncReadExt;

use crate::error::ApiError;

/// How much of the file one read (one body chunk) takes: bounds the memory of an upload.
pub(crate) const CHUNK: usize = 128 * 1024;

/// The fixed parts of a multipart body around the file content.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    boundary: String,
    /// Every form field, then the file part's headers.
    head: Bytes,
    /// `\r\n--boundary--\r\n`.
    tail: Bytes,
    file_len: u64,
}

/// A form field name or file name inside a quoted `Content-Disposition` parameter, escaped as
/// browsers do (WHATWG): `"` → `%22`, CR → `%0D`, LF → `%0A`.
fn quote(s: &str) -> String {
    s.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn random_boundary() -> String {
    format!(
        "robust-api-{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..)
    )
}

impl Layout {
    /// Lays out a body with `fields` (in the given order), then the file part.
    pub(crate) fn new(
        fields: &[(String, String)],
        field_name: &str,
        file_name: &str,
        content_type: &str,
        file_len: u64,
    ) -> Result<Layout, ApiError> {
        if field_name.is_empty() {
            return Err(ApiError::invalid_request("field_name must not be empty"));
        }
        if content_type.is_empty()
            || content_type
                .chars()
                .any(|c| c.is_control() || !c.is_ascii())
        {
            return Err(ApiError::invalid_request(format!(
                "content_type {content_type:?} is not a valid MIME type"
            )));
        }
        if let Some((name, _)) = fields.iter().find(|(n, _)| n.is_empty()) {
            return Err(ApiError::invalid_request(format!(
                "form field name {name:?} must not be empty"
            )));
        }
        // A random 128-bit boundary cannot plausibly occur in the file; make sure it does not
        // occur in the fields either.
        let boundary = loop {
            let b = random_boundary();
            if !fields.iter().any(|(n, v)| v.contains(&b) || n.contains(&b))
                && !file_name.contains(&b)
                && !field_name.contains(&b)
            {
                break b;
            }
        };
        let mut head = String::new();
        for (name, value) in fields {
            head.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{value}\r\n",
                quote(name)
            ));
        }
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\n\
             Content-Type: {content_type}\r\n\r\n",
            quote(field_name),
            quote(file_name)
        ));
        let tail = format!("\r\n--{boundary}--\r\n");
        Ok(Layout {
            boundary,
            head: Bytes::from(head),
            tail: Bytes::from(tail),
            file_len,
        })
    }

    /// A bare body: `file_len` bytes of the file (from where it is opened), no framing (a
    /// resumable upload's `PATCH`).
    pub(crate) fn raw(file_len: u64) -> Layout {
        Layout {
            boundary: String::new(),
            head: Bytes::new(),
            tail: Bytes::new(),
            file_len,
        }
    }

    /// The request's `Content-Type`.
    pub(crate) fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    /// The exact body length.
    pub(crate) fn content_length(&self) -> u64 {
        self.head.len() as u64 + self.file_len + self.tail.len() as u64
    }

    /// The file size this layout was made for.
    pub(crate) fn file_len(&self) -> u64 {
        self.file_len
    }
}

/// Shared between one attempt's body stream (on the client runtime's I/O threads) and the upload's
/// task. Lock-free: the stream only does atomic adds and, at each 1 % step, one `notify_one`.
#[derive(Debug)]
pub(crate) struct Meter {
    origin: Instant,
    sent: AtomicU64,
    step: u64,
    /// Milliseconds since `origin` of the last chunk taken (or response chunk received).
    last_activity_ms: AtomicU64,
    /// Milliseconds since `origin` when the last body byte was taken; `u64::MAX` until then.
    body_done_ms: AtomicU64,
    aborted: AtomicBool,
    /// Wakes the upload's task when another `step` bytes went out.
    pub(crate) wake: tokio::sync::Notify,
}

impl Meter {
    /// A meter that wakes the task every `step` bytes.
    pub(crate) fn new(step: u64) -> Meter {
        Meter {
            origin: Instant::now(),
            sent: AtomicU64::new(0),
            step: step.max(1),
            last_activity_ms: AtomicU64::new(0),
            body_done_ms: AtomicU64::new(u64::MAX),
            aborted: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Body bytes taken by the transport so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Something moved (a chunk went out or came in).
    pub(crate) fn touch(&self) {
        self.last_activity_ms
            .store(self.now_ms(), Ordering::Relaxed);
    }

    fn add(&self, n: u64) {
        let before = self.sent.fetch_add(n, Ordering::Relaxed);
        self.touch();
        if (before + n) / self.step > before / self.step {
            self.wake.notify_one();
        }
    }

    fn body_done(&self) {
        self.body_done_ms.store(self.now_ms(), Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// How long nothing moved.
    pub(crate) fn idle_for(&self) -> Duration {
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_activity_ms.load(Ordering::Relaxed)),
        )
    }

    /// When the last body byte was taken, if it was.
    pub(crate) fn body_done_at(&self) -> Option<Instant> {
        match self.body_done_ms.load(Ordering::Relaxed) {
            u64::MAX => None,
            ms => Some(self.origin + Duration::from_millis(ms)),
        }
    }

    /// Makes the stream fail at its next chunk (the attempt was cancelled or abandoned).
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
    }

    fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }
}

enum Part {
    Head(tokio::fs::File),
    File { file: tokio::fs::File, left: u64 },
    Tail,
    Done,
}

/// The body as a stream of chunks. `file` must be open at offset 0 with at least
/// `layout.file_len()` bytes; a file that turns out shorter fails the stream.
pub(crate) fn stream(
    layout: Layout,
    file: tokio::fs::File,
    meter: Arc<Meter>,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures_util::stream::try_unfold(
        (Part::Head(file), layout, meter),
        |(part, layout, meter)| async move {
            if meter.is_aborted() {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "upload cancelled",
                ));
            }
            let (chunk, next) = match part {
                Part::Head(file) => {
                    let next = if layout.file_len > 0 {
                        Part::File {
                            file,
                            left: layout.file_len,
                        }
                    } else {
                        Part::Tail
                    };
                    (layout.head.clone(), next)
                }
                Part::File { mut file, left } => {
                    let want = left.min(CHUNK as u64);
                    let mut buf = BytesMut::with_capacity(want as usize);
                    while (buf.len() as u64) < want {
                        let n = (&mut file)
                            .take(want - buf.len() as u64)
                            .read_buf(&mut buf)
                            .await?;
                        if n == 0 {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!(
                                    "the file got shorter during the upload ({} bytes missing)",
                                    left - buf.len() as u64
                                ),
                            ));
                        }
                    }
                    let left = left - want;
                    let next = if left > 0 {
                        Part::File { file, left }
                    } else {
                        Part::Tail
                    };
                    (buf.freeze(), next)
                }
                Part::Tail => (layout.tail.clone(), Part::Done),
                Part::Done => return Ok(None),
            };
            meter.add(chunk.len() as u64);
            if matches!(next, Part::Done) {
                meter.body_done();
            }
            Ok(Some((chunk, (next, layout, meter))))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn collect(layout: &Layout, content: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        std::fs::write(&path, content).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let file = tokio::fs::File::open(&path).await.unwrap();
            let meter = Arc::new(Meter::new(1));
            let mut s = Box::pin(stream(layout.clone(), file, meter.clone()));
            let mut out = Vec::new();
            while let Some(chunk) = s.next().await {
                let chunk = chunk.unwrap();
                assert!(chunk.len() <= CHUNK.max(layout.head.len()));
                out.extend_from_slice(&chunk);
            }
            assert_eq!(meter.sent(), out.len() as u64);
            assert!(meter.body_done_at().is_some());
            out
        })
    }

    #[test]
    fn body_is_well_formed_multipart_of_the_announced_length() {
        let content: Vec<u8> = (0..(CHUNK * 2 + 17)).map(|i| (i % 251) as u8).collect();
        let fields = vec![
            ("title".to_string(), "Holiday \"2024\"".to_string()),
            ("tags".to_string(), "a,b".to_string()),
        ];
        let layout = Layout::new(
            &fields,
            "file",
            "my \"clip\".mp4",
            "video/mp4",
            content.len() as u64,
        )
        .unwrap();
        let body = collect(&layout, &content);
        assert_eq!(body.len() as u64, layout.content_length());
        let b = &layout.boundary;
        assert_eq!(
            layout.content_type(),
            format!("multipart/form-data; boundary={b}")
        );
        let head = format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nHoliday \"2024\"\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"tags\"\r\n\r\na,b\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"my %22clip%22.mp4\"\r\n\
             Content-Type: video/mp4\r\n\r\n"
        );
        assert!(body.starts_with(head.as_bytes()));
        assert_eq!(&body[head.len()..head.len() + content.len()], &content[..]);
        assert_eq!(
            &body[head.len() + content.len()..],
            format!("\r\n--{b}--\r\n").as_bytes()
        );
    }

    #[test]
    fn empty_file_and_bad_inputs() {
        let layout = Layout::new(&[], "f", "empty", "text/plain", 0).unwrap();
        let body = collect(&layout, b"");
        assert_eq!(body.len() as u64, layout.content_length());
        assert!(Layout::new(&[], "", "x", "text/plain", 0).is_err());
        assert!(Layout::new(&[], "f", "x", "text/plain\r\nX: y", 0).is_err());
        assert!(Layout::new(&[(String::new(), "v".into())], "f", "x", "a/b", 0).is_err());
    }

    #[test]
    fn a_shrunk_file_fails_the_stream() {
        let layout = Layout::new(&[], "f", "x", "a/b", 1000).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short");
        std::fs::write(&path, [1u8; 10]).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let file = tokio::fs::File::open(&path).await.unwrap();
            let s = stream(layout, file, Arc::new(Meter::new(1)));
            let results: Vec<_> = s.collect().await;
            assert!(results.last().unwrap().is_err());
        });
    }

    #[test]
    fn an_aborted_meter_fails_the_stream() {
        let layout = Layout::new(&[], "f", "x", "a/b", 0).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e");
        std::fs::write(&path, b"").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let file = tokio::fs::File::open(&path).await.unwrap();
            let meter = Arc::new(Meter::new(1));
            meter.abort();
            let mut s = Box::pin(stream(layout, file, meter));
            assert!(s.next().await.unwrap().is_err());
        });
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Whatever the fields hold (including text that looks like our boundaries), the
            /// boundary is RFC 2046-valid and occurs in no field, and every CR/LF of a name is
            /// escaped: the body's structure is only what the layout wrote.
            #[test]
            fn the_boundary_never_occurs_in_the_fields(
                fields in proptest::collection::vec(
                    ("[^\u{0}]{1,20}", "(robust-api-[0-9a-f]{0,32}|--|\r\n|.){0,12}"), 0..5),
                file_name in ".{0,20}",
            ) {
                let layout = Layout::new(&fields, "file", &file_name, "text/plain", 3).unwrap();
                let b = &layout.boundary;
                prop_assert!(!b.is_empty() && b.len() <= 70);
                prop_assert!(b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'));
                for (name, value) in &fields {
                    prop_assert!(!value.contains(b.as_str()) && !name.contains(b.as_str()));
                }
                let head = std::str::from_utf8(&layout.head).unwrap();
                let delimiter = format!("--{b}\r\n");
                prop_assert_eq!(head.matches(delimiter.as_str()).count(), fields.len() + 1);
                prop_assert_eq!(layout.content_length(), layout.head.len() as u64 + 3 + layout.tail.len() as u64);
            }
        }
    }
}
