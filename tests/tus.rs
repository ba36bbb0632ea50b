//! Resumable uploads (tus 1.0) against the official Node server, `@tus/server` with
//! `@tus/file-store` (versions pinned in scripts/tus-server/package-lock.json, installed once by
//! scripts/setup-tus-server.sh under ~/.cache/robust-api), started by each test on 127.0.0.1 as a
//! child process, behind the fleet's [`HttpProxy`] (wire bytes, cuts mid-`PATCH`, canned lies).
//!
//! Figures are printed (`cargo test --test tus -- --nocapture`): wire bytes of the cut upload,
//! bytes sent across the SIGKILLs.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use robust_api::{
    ApiError, CancelToken, ClientConfig, PendingUpload, ResumableUploadListener, RobustClient,
    UploadRequest, UploadState,
};
use robust_api_fleet::{make_file, sha256_file, wait_until, Canned, HttpProxy};
use support::tus::TusServer;
use support::Progress;

const MB: u64 = 1 << 20;

fn config(backends: Vec<String>, dir: &Path, chunk: u64) -> ClientConfig {
    let mut c = ClientConfig::new(backends);
    c.storage_dir = Some(dir.to_string_lossy().into_owned());
    c.retry.base_delay_ms = 10;
    c.retry.max_delay_ms = 40;
    c.timeouts.connect_ms = 500;
    c.upload.idle_timeout_ms = 5_000;
    c.upload.chunk_bytes = chunk as i32;
    c
}

fn files() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("tus-files-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// What an attached listener heard.
#[derive(Default)]
struct Heard {
    progress: Mutex<Vec<(i64, i64)>>,
    completed: Mutex<Option<i32>>,
    failed: Mutex<Option<String>>,
}

impl ResumableUploadListener for Heard {
    fn on_progress(&self, _id: String, sent: i64, total: i64) -> Result<(), ApiError> {
        self.progress.lock().unwrap().push((sent, total));
        Ok(())
    }
    fn on_completed(&self, _id: String, status: i32, _body: Vec<u8>) -> Result<(), ApiError> {
        *self.completed.lock().unwrap() = Some(status);
        Ok(())
    }
    fn on_failed(&self, _id: String, error: String) -> Result<(), ApiError> {
        *self.failed.lock().unwrap() = Some(error);
        Ok(())
    }
}

fn video(file: &Path, title: &str) -> UploadRequest {
    let mut r = UploadRequest::new("/files/", file.to_string_lossy());
    r.fields.insert("title".into(), title.into());
    r
}

/// Starts `req` in the background; returns the call's handle and the upload's id (once recorded).
async fn start(
    client: &Arc<RobustClient>,
    req: UploadRequest,
    progress: Option<Arc<Progress>>,
) -> (
    tokio::task::JoinHandle<Result<robust_api::ApiResponse, ApiError>>,
    PendingUpload,
) {
    let c = client.clone();
    let call = tokio::spawn(async move {
        c.upload_file(
            req,
            progress.map(|p| Box::new(p) as Box<dyn robust_api::UploadProgressListener>),
        )
        .await
    });
    wait_until("the upload to get there", Duration::from_secs(20), || {
        !client.pending_uploads().unwrap().is_empty()
    })
    .await;
    (call, client.pending_uploads().unwrap().remove(0))
}

/// Waits until `id` has a confirmed offset of at least `bytes`.
async fn confirmed_at_least(client: &RobustClient, id: &str, bytes: i64) {
    wait_until("the upload to get there", Duration::from_secs(60), || {
        client
            .pending_uploads()
            .unwrap()
            .iter()
            .any(|p| p.id == id && p.confirmed_bytes >= bytes)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_upload_survives_cuts_at_30_60_90_percent_and_arrives_intact() {
    let size = 200 * MB;
    let chunk = 8 * MB;
    let server = TusServer::start(0);
    let proxy = HttpProxy::start(server.addr()).await.unwrap();
    let (dir, store) = (files(), tempfile::tempdir().unwrap());
    let path = make_file(dir.path(), "clip.mp4", size);
    let want = sha256_file(&path);
    let client = RobustClient::new(config(vec![proxy.url()], store.path(), chunk)).unwrap();
    let progress = Progress::new();
    let before = proxy.bytes_from_clients();
    let cutter = {
        let proxy_state = Arc::new(proxy);
        let p = proxy_state.clone();
        let task = tokio::spawn(async move {
            for (i, pct) in [30u64, 60, 90].iter().enumerate() {
                let at = size * pct / 100;
                let now = p.body_bytes();
                p.cut_after_body_bytes(at.saturating_sub(now));
                wait_until("the upload to get there", Duration::from_secs(120), || {
                    p.cuts() > i as u64
                })
                .await;
            }
        });
        (proxy_state, task)
    };
    let (proxy, task) = cutter;
    let r = client
        .upload_file(
            video(&path, "Beach, day 1"),
            Some(Box::new(progress.clone())),
        )
        .await
        .unwrap();
    task.await.unwrap();
    assert_eq!(proxy.cuts(), 3, "three cuts mid-PATCH");
    assert!((200..300).contains(&r.status), "{r:?}");
    let total = progress.assert_monotonic_to_total();
    assert_eq!(total as u64, size);
    // The server's file is the source, byte for byte, and the metadata arrived.
    let records = client.pending_uploads().unwrap();
    assert!(
        records.is_empty(),
        "a completed upload is no longer pending: {records:?}"
    );
    let heads: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("HEAD"))
        .collect();
    assert!(
        heads.len() >= 3,
        "each cut is followed by a HEAD: {heads:?}"
    );
    let url = heads[0].split(' ').nth(1).unwrap().to_string();
    let (file, info) = server.stored(&url);
    assert_eq!(
        sha256_file(&file),
        want,
        "the server's file equals the source"
    );
    assert!(info.contains("\"title\":\"Beach, day 1\""), "{info}");
    assert!(info.contains("\"filename\":\"clip.mp4\""), "{info}");
    let wire = proxy.bytes_from_clients() - before;
    let bound = size + size / 20 + chunk;
    println!(
        "FIGURE cut upload: {size} bytes, {wire} bytes on the wire ({:.4} x size), bound {bound}, \
         {} PATCH/HEAD/POST requests",
        wire as f64 / size as f64,
        proxy.requests().len()
    );
    assert!(wire <= bound, "{wire} wire bytes > {bound}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_409_is_answered_with_a_head_and_the_upload_continues() {
    let size = 6 * MB;
    let server = TusServer::start(0);
    let proxy = HttpProxy::start(server.addr()).await.unwrap();
    let (dir, store) = (files(), tempfile::tempdir().unwrap());
    let path = make_file(dir.path(), "a.bin", size);
    let client = RobustClient::new(config(vec![proxy.url()], store.path(), MB)).unwrap();
    // The second PATCH is answered 409 (creation-with-upload carried the first chunk).
    proxy.answer_next(Canned {
        method: "PATCH".into(),
        status: 409,
        headers: vec![("Tus-Resumable".into(), "1.0.0".into())],
    });
    let r = client.upload_file(video(&path, "t"), None).await.unwrap();
    assert_eq!(r.status, 204);
    let reqs = proxy.requests();
    let first_patch = reqs.iter().position(|r| r.starts_with("PATCH")).unwrap();
    assert!(
        reqs[first_patch + 1].starts_with("HEAD"),
        "a HEAD follows the 409: {reqs:?}"
    );
    let url = reqs[first_patch].split(' ').nth(1).unwrap();
    assert_eq!(sha256_file(&server.stored(url).0), sha256_file(&path));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_claiming_more_than_was_sent_is_a_typed_error() {
    let size = 4 * MB;
    let server = TusServer::start(0);
    let proxy = HttpProxy::start(server.addr()).await.unwrap();
    let (dir, store) = (files(), tempfile::tempdir().unwrap());
    let path = make_file(dir.path(), "lie.bin", size);
    let client = RobustClient::new(config(vec![proxy.url()], store.path(), MB)).unwrap();
    // A PATCH of 1 MiB answered with an offset past it.
    proxy.answer_next(Canned {
        method: "PATCH".into(),
        status: 204,
        headers: vec![
            ("Tus-Resumable".into(), "1.0.0".into()),
            ("Upload-Offset".into(), (3 * MB).to_string()),
        ],
    });
    let err = client
        .upload_file(video(&path, "t"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ApiError::UploadProtocolViolation { reason, .. } if reason.contains("Upload-Offset")),
        "{err:?}"
    );
    assert!(err.to_string().contains("broke the tus protocol"), "{err}");
    let p = client.pending_uploads().unwrap();
    assert_eq!(
        p[0].state,
        UploadState::Failed,
        "kept for inspection: {p:?}"
    );
    // A HEAD lying the same way (after a pause).
    let path2 = make_file(dir.path(), "lie2.bin", size);
    let client2_store = tempfile::tempdir().unwrap();
    let client2 = RobustClient::new(config(vec![proxy.url()], client2_store.path(), MB)).unwrap();
    let (call, up) = start(&client2, video(&path2, "t"), None).await;
    confirmed_at_least(&client2, &up.id, MB as i64).await;
    assert!(client2.pause_upload(up.id.clone()).unwrap());
    let _ = call.await.unwrap();
    proxy.answer_next(Canned {
        method: "HEAD".into(),
        status: 200,
        headers: vec![
            ("Tus-Resumable".into(), "1.0.0".into()),
            ("Upload-Offset".into(), size.to_string()),
            ("Upload-Length".into(), size.to_string()),
        ],
    });
    let heard = Arc::new(Heard::default());
    assert!(client2
        .attach_upload_listener(up.id.clone(), heard.clone())
        .unwrap());
    let confirmed = client2.pending_uploads().unwrap()[0].confirmed_bytes as u64;
    assert!(client2.resume_upload(up.id.clone()).unwrap());
    wait_until("the upload to get there", Duration::from_secs(20), || {
        heard.failed.lock().unwrap().is_some()
    })
    .await;
    let text = heard.failed.lock().unwrap().clone().unwrap();
    if confirmed + MB < size {
        assert!(text.contains("beyond the"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_upload_is_created_anew_and_an_expired_one_too() {
    let size = 4 * MB;
    let server = TusServer::start(0);
    let (dir, store) = (files(), tempfile::tempdir().unwrap());
    let path = make_file(dir.path(), "gone.bin", size);
    let client = RobustClient::new(config(
        vec![format!("http://127.0.0.1:{}", server.port)],
        store.path(),
        MB,
    ))
    .unwrap();
    let (call, up) = start(&client, video(&path, "t"), None).await;
    confirmed_at_least(&client, &up.id, MB as i64).await;
    client.pause_upload(up.id.clone()).unwrap();
    let _ = call.await.unwrap();
    let url = client.pending_uploads().unwrap()[0]
        .upload_url
        .clone()
        .unwrap();
    // The server loses it: 404 on HEAD.
    let (file, _) = server.stored(&url);
    std::fs::remove_file(&file).unwrap();
    std::fs::remove_file(format!("{}.json", file.display())).unwrap();
    let heard = Arc::new(Heard::default());
    client
        .attach_upload_listener(up.id.clone(), heard.clone())
        .unwrap();
    client.resume_upload(up.id.clone()).unwrap();
    wait_until("the upload to get there", Duration::from_secs(30), || {
        heard.completed.lock().unwrap().is_some()
    })
    .await;
    assert_eq!(server.upload_count(), 1, "one new upload");
    let p = heard.progress.lock().unwrap().clone();
    assert_eq!(p.last().unwrap().0 as u64, size);

    // Expiration: a server whose uploads expire after 1.5 s; the paused upload is restarted.
    let server = TusServer::start(1_500);
    let store = tempfile::tempdir().unwrap();
    let client = RobustClient::new(config(
        vec![format!("http://127.0.0.1:{}", server.port)],
        store.path(),
        MB,
    ))
    .unwrap();
    let (call, up) = start(&client, video(&path, "t"), None).await;
    confirmed_at_least(&client, &up.id, MB as i64).await;
    client.pause_upload(up.id.clone()).unwrap();
    let _ = call.await.unwrap();
    let first_url = client.pending_uploads().unwrap()[0]
        .upload_url
        .clone()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let heard = Arc::new(Heard::default());
    client
        .attach_upload_listener(up.id.clone(), heard.clone())
        .unwrap();
    client.resume_upload(up.id.clone()).unwrap();
    wait_until("the upload to get there", Duration::from_secs(30), || {
        heard.completed.lock().unwrap().is_some() || heard.failed.lock().unwrap().is_some()
    })
    .await;
    assert_eq!(
        *heard.completed.lock().unwrap(),
        Some(204),
        "{:?}",
        heard.failed.lock().unwrap()
    );
    let _ = first_url;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_or_deleted_file_is_a_typed_error_and_cancel_deletes_the_server_copy() {
    let size = 4 * MB;
    let server = TusServer::start(0);
    let base = format!("http://127.0.0.1:{}", server.port);
    let (dir, store) = (files(), tempfile::tempdir().unwrap());
    let client = RobustClient::new(config(vec![base.clone()], store.path(), MB)).unwrap();

    // Changed between attempts.
    let path = make_file(dir.path(), "changed.bin", size);
    let (call, up) = start(&client, video(&path, "t"), None).await;
    confirmed_at_least(&client, &up.id, MB as i64).await;
    client.pause_upload(up.id.clone()).unwrap();
    let _ = call.await.unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(size - 10) as usize] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let heard = Arc::new(Heard::default());
    client
        .attach_upload_listener(up.id.clone(), heard.clone())
        .unwrap();
    client.resume_upload(up.id.clone()).unwrap();
    wait_until("the upload to get there", Duration::from_secs(20), || {
        heard.failed.lock().unwrap().is_some()
    })
    .await;
    let text = heard.failed.lock().unwrap().clone().unwrap();
    assert!(text.contains("changed since its upload began"), "{text}");
    assert_eq!(
        client.pending_uploads().unwrap()[0].state,
        UploadState::Failed
    );
    // Cancel: the server's copy is deleted, the record removed.
    let url = client.pending_uploads().unwrap()[0]
        .upload_url
        .clone()
        .unwrap();
    assert!(server.stored(&url).0.exists());
    assert!(client.cancel_upload(up.id.clone()).await.unwrap());
    assert!(!server.stored(&url).0.exists(), "termination deleted it");
    assert!(client.pending_uploads().unwrap().is_empty());

    // Deleted between attempts.
    let path = make_file(dir.path(), "deleted.bin", size);
    let (call, up) = start(&client, video(&path, "t"), None).await;
    confirmed_at_least(&client, &up.id, MB as i64).await;
    client.pause_upload(up.id.clone()).unwrap();
    let _ = call.await.unwrap();
    std::fs::remove_file(&path).unwrap();
    let heard = Arc::new(Heard::default());
    client
        .attach_upload_listener(up.id.clone(), heard.clone())
        .unwrap();
    client.resume_upload(up.id.clone()).unwrap();
    wait_until("the upload to get there", Duration::from_secs(20), || {
        heard.failed.lock().unwrap().is_some()
    })
    .await;
    let text = heard.failed.lock().unwrap().clone().unwrap();
    assert!(text.contains("record was removed"), "{text}");
    assert!(
        client.pending_uploads().unwrap().is_empty(),
        "the record is gone"
    );

    // Cancel through a token while running.
    let path = make_file(dir.path(), "token.bin", 32 * MB);
    let token = CancelToken::new();
    let t = token.clone();
    let progress = Progress::with_hook(move |sent, _| {
        if sent >= MB as i64 {
            t.cancel();
        }
    });
    let before = server.upload_count();
    let err = client
        .upload_file_with_token(video(&path, "t"), token, Some(Box::new(progress)))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Cancelled { .. }), "{err:?}");
    assert_eq!(
        server.upload_count(),
        before,
        "the server's copy was deleted"
    );
    assert!(client.pending_uploads().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_of_one_user_never_resume_under_another_and_nothing_goes_out_offline() {
    let size = 4 * MB;
    let server = TusServer::start(0);
    let proxy = HttpProxy::start(server.addr()).await.unwrap();
    let (dir, store) = (files(), tempfile::tempdir().unwrap());
    let path = make_file(dir.path(), "alice.bin", size);
    let client = RobustClient::new(config(vec![proxy.url()], store.path(), MB)).unwrap();
    client.set_user_scope(Some("alice".into()));
    let (call, up) = start(&client, video(&path, "t"), None).await;
    confirmed_at_least(&client, &up.id, MB as i64).await;
    // Bob logs in: alice's upload stops at once and is not his to see, resume or cancel.
    client.set_user_scope(Some("bob".into()));
    let _ = call.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = proxy.requests().len();
    assert!(client.pending_uploads().unwrap().is_empty());
    client.resume_uploads().unwrap();
    assert!(!client.resume_upload(up.id.clone()).unwrap());
    assert!(!client.pause_upload(up.id.clone()).unwrap());
    assert!(!client.cancel_upload(up.id.clone()).await.unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        proxy.requests().len(),
        seen,
        "nothing sent for alice while bob is current"
    );
    // Offline: nothing goes out, for anyone.
    client.set_network_available(false);
    client.set_user_scope(Some("alice".into()));
    let other = make_file(dir.path(), "offline.bin", MB);
    let err = client
        .upload_file(video(&other, "t"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Offline), "{err:?}");
    client.resume_uploads().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        proxy.requests().len(),
        seen,
        "no upload traffic while offline"
    );
    // Online again as alice: her upload resumes by itself and completes.
    let heard = Arc::new(Heard::default());
    client
        .attach_upload_listener(up.id.clone(), heard.clone())
        .unwrap();
    client.set_network_available(true);
    wait_until("the upload to get there", Duration::from_secs(30), || {
        heard.completed.lock().unwrap().is_some()
    })
    .await;
    let p = heard.progress.lock().unwrap().clone();
    assert!(p.windows(2).all(|w| w[0].0 <= w[1].0), "monotonic: {p:?}");
}

/// The child of the SIGKILL test: uploads `TUS_CHILD_FILE` from `TUS_CHILD_STORE` to
/// `TUS_CHILD_BACKEND` (resuming what the last child left), printing the confirmed offset.
#[test]
fn tus_child() {
    let (Ok(file), Ok(store), Ok(backend)) = (
        std::env::var("TUS_CHILD_FILE"),
        std::env::var("TUS_CHILD_STORE"),
        std::env::var("TUS_CHILD_BACKEND"),
    ) else {
        return; // not a child: nothing to do
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = RobustClient::new(config(vec![backend], Path::new(&store), 4 * MB)).unwrap();
        let pending = client.pending_uploads().unwrap();
        let heard = Arc::new(Heard::default());
        if let Some(p) = pending.first() {
            println!("RESUMING {} at {}", p.id, p.confirmed_bytes);
            client
                .attach_upload_listener(p.id.clone(), heard.clone())
                .unwrap();
            // (it resumes by itself: the client is online at start)
        } else {
            let c = client.clone();
            let f = file.clone();
            tokio::spawn(async move {
                let _ = c.upload_file(video(Path::new(&f), "killed"), None).await;
            });
            wait_until("the upload to get there", Duration::from_secs(20), || {
                !client.pending_uploads().unwrap().is_empty()
            })
            .await;
            let id = client.pending_uploads().unwrap()[0].id.clone();
            client.attach_upload_listener(id, heard.clone()).unwrap();
        }
        println!("STARTED");
        loop {
            if let Some(s) = *heard.completed.lock().unwrap() {
                println!("DONE {s}");
                break;
            }
            if let Some(e) = heard.failed.lock().unwrap().clone() {
                println!("FAILED {e}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mib_upload_survives_three_sigkills() {
    let size = 200 * MB;
    let server = TusServer::start(0);
    let proxy = HttpProxy::start(server.addr()).await.unwrap();
    let (dir, store) = (files(), tempfile::tempdir().unwrap());
    let path = make_file(dir.path(), "killed.mp4", size);
    let want = sha256_file(&path);
    let run = |kill_at: Option<u64>| {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tus_child", "--nocapture", "--test-threads=1"])
            .env("TUS_CHILD_FILE", &path)
            .env("TUS_CHILD_STORE", store.path())
            .env("TUS_CHILD_BACKEND", proxy.url())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        (child, lines, kill_at)
    };
    let mut killed_at = Vec::new();
    for _ in 0..3 {
        let start_bytes = proxy.body_bytes();
        // A random point 5-25 % of the file further on.
        let further = size * (5 + fastrand::u64(..20)) / 100;
        let (mut child, lines, _) = run(Some(further));
        wait_until("the upload to get there", Duration::from_secs(120), || {
            proxy.body_bytes() >= start_bytes + further
                || lines.lock().unwrap().iter().any(|l| l.contains("DONE"))
        })
        .await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        killed_at.push(proxy.body_bytes());
        let l = lines.lock().unwrap().clone();
        assert!(
            !l.iter().any(|l| l.contains("DONE") || l.contains("FAILED")),
            "{l:?}"
        );
    }
    let (mut child, lines, _) = run(None);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let l = lines.lock().unwrap().clone();
    assert!(status.success(), "{l:?}");
    assert!(l.iter().any(|l| l.contains("RESUMING")), "{l:?}");
    assert!(l.iter().any(|l| l.contains("DONE 204")), "{l:?}");
    let url = proxy
        .requests()
        .into_iter()
        .find(|r| r.starts_with("PATCH") || r.starts_with("HEAD"))
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(sha256_file(&server.stored(&url).0), want);
    assert_eq!(server.upload_count(), 1, "resumed, never restarted");
    println!(
        "FIGURE SIGKILL x3: {size} bytes, {} body bytes sent ({:.4} x size), {} bytes on the wire, \
         killed after {killed_at:?} body bytes",
        proxy.body_bytes(),
        proxy.body_bytes() as f64 / size as f64,
        proxy.bytes_from_clients()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_is_not_tus_gets_multipart_and_is_asked_once() {
    let fleet = robust_api_fleet::Fleet::start(1).await;
    let (dir, store) = (files(), tempfile::tempdir().unwrap());
    let path = make_file(dir.path(), "plain.mp4", 2 * MB);
    let mut c = config(fleet.urls(), store.path(), MB);
    c.upload.video_path = "/api/videos".into();
    let client = RobustClient::new(c).unwrap();
    for _ in 0..2 {
        let r = client
            .upload_video_file(path.to_string_lossy().into_owned(), "T".into(), None)
            .await
            .unwrap();
        assert_eq!(r.status, 201, "the fleet's multipart route stored it");
    }
    // Two POSTs and one OPTIONS: discovery is remembered per backend and endpoint.
    assert_eq!(fleet.server(0).hits_for("/api/videos"), 3);
    assert_eq!(fleet.server(0).uploads().len(), 2);
    assert!(client.pending_uploads().unwrap().is_empty());
    // Configured "tus" against a non-tus endpoint: InvalidRequest, nothing stored.
    let store2 = tempfile::tempdir().unwrap();
    let mut c = config(fleet.urls(), store2.path(), MB);
    c.upload.resumable = "tus".into();
    let strict = RobustClient::new(c).unwrap();
    let err = strict
        .upload_video_file(path.to_string_lossy().into_owned(), "T".into(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::InvalidRequest { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_backend_stays_down_waits_then_restarts_on_another_after_the_bound() {
    let size = 4 * MB;
    let (a, b) = (TusServer::start(0), TusServer::start(0));
    let proxy = HttpProxy::start(a.addr()).await.unwrap();
    let proxy_b = HttpProxy::start(b.addr()).await.unwrap();
    proxy_b.set_down(true); // the upload is created on A
    let (dir, store) = (files(), tempfile::tempdir().unwrap());
    let path = make_file(dir.path(), "moved.bin", size);
    let mut c = config(vec![proxy.url(), proxy_b.url()], store.path(), MB);
    c.upload.restart_elsewhere_after_ms = 300;
    c.upload.max_retries = 1;
    let client = RobustClient::new(c).unwrap();
    let (call, up) = start(&client, video(&path, "t"), None).await;
    confirmed_at_least(&client, &up.id, MB as i64).await;
    client.pause_upload(up.id.clone()).unwrap();
    let _ = call.await.unwrap();
    let held = client.pending_uploads().unwrap()[0].backend.clone();
    assert_eq!(held.as_deref(), Some(proxy.url().as_str()));
    proxy.set_down(true);
    proxy_b.set_down(false);
    let heard = Arc::new(Heard::default());
    client
        .attach_upload_listener(up.id.clone(), heard.clone())
        .unwrap();
    // First resume: the holder is unreachable, the bound not reached: it waits (still Active).
    client.resume_upload(up.id.clone()).unwrap();
    wait_until(
        "the first resume to give up",
        Duration::from_secs(20),
        || {
            client.pending_uploads().unwrap()[0].last_error.is_some()
                || client.pending_uploads().unwrap()[0].state == UploadState::Active
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(heard.completed.lock().unwrap().is_none());
    assert_eq!(b.upload_count(), 0, "not moved before the bound");
    // Past the bound: created anew on the other backend, from byte 0, and completed.
    tokio::time::sleep(Duration::from_millis(400)).await;
    client.resume_uploads().unwrap();
    wait_until("completed elsewhere", Duration::from_secs(30), || {
        heard.completed.lock().unwrap().is_some() || heard.failed.lock().unwrap().is_some()
    })
    .await;
    assert_eq!(
        *heard.completed.lock().unwrap(),
        Some(204),
        "{:?}",
        heard.failed.lock().unwrap()
    );
    assert_eq!(b.upload_count(), 1);
    assert_eq!(sha256_file(&b.newest_upload()), sha256_file(&path));
}

/// The upload requests (`POST`, `PATCH`, `HEAD`, `DELETE`: not discovery, not health probes) the
/// proxy saw.
fn upload_requests(proxy: &HttpProxy) -> Vec<String> {
    proxy
        .requests()
        .into_iter()
        .filter(|r| {
            ["POST ", "PATCH ", "HEAD ", "DELETE "]
                .iter()
                .any(|m| r.starts_with(m))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmetered_only_upload_waits_while_metered_and_goes_on_when_unmetered() {
    let size = 96 * MB;
    let server = TusServer::start(0);
    let proxy = HttpProxy::start(server.addr()).await.unwrap();
    let (dir, store) = (files(), tempfile::tempdir().unwrap());
    let path = make_file(dir.path(), "wifi.mp4", size);
    let client = RobustClient::new(config(vec![proxy.url()], store.path(), 2 * MB)).unwrap();
    client.set_network_metered(true);
    let mut req = video(&path, "Wi-Fi only");
    req.unmetered_only = true;
    let progress = Progress::new();
    let (call, up) = start(&client, req, Some(progress.clone())).await;
    assert!(
        up.unmetered_only && up.state == UploadState::Active,
        "{up:?}"
    );
    // Metered: over a measured interval, not one upload request (discovery aside) goes out.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(upload_requests(&proxy).is_empty(), "{:?}", proxy.requests());
    assert_eq!(proxy.body_bytes(), 0);
    assert!(!call.is_finished(), "the call waits");
    // Unmetered: it starts by itself. Metered again mid-way: the transfer stops at once.
    client.set_network_metered(false);
    confirmed_at_least(&client, &up.id, 8 * MB as i64).await;
    client.set_network_metered(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (requests, body) = (upload_requests(&proxy).len(), proxy.body_bytes());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        upload_requests(&proxy).len(),
        requests,
        "no request while metered"
    );
    assert_eq!(proxy.body_bytes(), body, "no upload byte while metered");
    assert!(body < size, "stopped mid-way ({body} of {size} bytes)");
    assert!(!call.is_finished(), "the call still waits");
    // Unmetered again: it goes on by itself, from the server's offset.
    client.set_network_metered(false);
    confirmed_at_least(&client, &up.id, (body + 4 * MB) as i64).await;
    // Offline (for every upload): the transfer under way stops at once, nothing goes out.
    client.set_network_available(false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (offline_requests, offline_body) = (upload_requests(&proxy).len(), proxy.body_bytes());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        upload_requests(&proxy).len(),
        offline_requests,
        "no request offline"
    );
    assert_eq!(proxy.body_bytes(), offline_body, "no upload byte offline");
    assert!(
        offline_body < size,
        "stopped mid-way ({offline_body} of {size} bytes)"
    );
    // Online: it goes on and completes intact.
    client.set_network_available(true);
    let heard = Arc::new(Heard::default());
    client
        .attach_upload_listener(up.id.clone(), heard.clone())
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while heard.completed.lock().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "no completion: {:?}, {:?}",
            client.pending_uploads(),
            upload_requests(&proxy)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = call.await.unwrap();
    let wire = proxy.body_bytes();
    let reqs = upload_requests(&proxy);
    let url = reqs
        .iter()
        .find(|r| r.starts_with("PATCH") || r.starts_with("HEAD"))
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(sha256_file(&server.stored(&url).0), sha256_file(&path));
    assert_eq!(
        server.upload_count(),
        1,
        "one upload, resumed (never created anew)"
    );
    let p = heard.progress.lock().unwrap().clone();
    assert!(p.windows(2).all(|w| w[0].0 <= w[1].0), "monotonic: {p:?}");
    println!(
        "FIGURE unmetered-only: {size} bytes; {body} body bytes before the metered stop, \
         {offline_body} at the offline stop, {wire} in all ({:.4} x size); call: {:?}",
        wire as f64 / size as f64,
        r.as_ref().map(|r| r.status)
    );
    // The call waited through the metered spell and ended with `Offline` at the offline one
    // (the durable upload itself went on), with progress that never went backwards.
    assert!(matches!(r, Err(ApiError::Offline)), "{r:?}");
    let calls = progress.calls();
    assert!(
        calls.windows(2).all(|w| w[0].0 <= w[1].0),
        "monotonic: {calls:?}"
    );
    assert!(
        calls.last().is_some_and(|c| c.0 as u64 >= body),
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksums_go_where_offered_and_a_mismatch_is_resent_once_then_a_typed_error() {
    // The fleet's small tus server offers the checksum extension (the official one does not).
    let fleet = robust_api_fleet::Fleet::start(1).await;
    let server = fleet.server(0);
    let (dir, store) = (files(), tempfile::tempdir().unwrap());
    let size = MB + 5;
    let path = make_file(dir.path(), "sum.bin", size);
    let chunk = 256 * 1024;
    let client = RobustClient::new(config(fleet.urls(), store.path(), chunk)).unwrap();
    // One chunk arrives corrupted: the server answers 460, the chunk is sent once more.
    server.tus_corrupt_next_patches(1);
    let r = client
        .upload_file(
            UploadRequest::new("/tus/files", path.to_string_lossy()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(
        server.tus_newest_upload().unwrap(),
        std::fs::read(&path).unwrap()
    );
    let sums = server.tus_checksums();
    let chunks = size.div_ceil(chunk) as usize;
    assert_eq!(
        sums.len(),
        chunks + 1,
        "every PATCH, and the resent one: {sums:?}"
    );
    assert!(sums.iter().all(|s| s.starts_with("sha1 ")), "{sums:?}");
    assert_eq!(
        sums[0], sums[1],
        "the rejected chunk was sent again as it was"
    );
    assert_eq!(server.tus_mismatches(), 1);
    // The same chunk rejected twice: a typed error, the record kept as failed.
    server.tus_corrupt_next_patches(2);
    let other = make_file(dir.path(), "sum2.bin", size);
    let err = client
        .upload_file(
            UploadRequest::new("/tus/files", other.to_string_lossy()),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::UploadChecksumMismatch { offset: 0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert_eq!(server.tus_mismatches(), 3);
    let failed = client.pending_uploads().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].state, UploadState::Failed);
    // The official server does not offer it: no Upload-Checksum there (tests above), and none to
    // an endpoint whose OPTIONS lacks the extension (policy unit tests).
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_resumed_by_a_new_client_sends_the_apps_headers_and_no_credential_is_stored() {
    let fleet = robust_api_fleet::Fleet::start(1).await;
    let server = fleet.server(0);
    let (dir, store) = (files(), tempfile::tempdir().unwrap());
    let path = make_file(dir.path(), "h.bin", MB);
    let chunk = 64 * 1024;
    // Slow answers, so the upload is surely mid-way when it is paused.
    server
        .set_fault(robust_api_fleet::Fault::Slow(Duration::from_millis(100)))
        .await;
    let client = RobustClient::new(config(fleet.urls(), store.path(), chunk)).unwrap();
    let mut req = UploadRequest::new("/tus/files", path.to_string_lossy());
    req.headers.insert("X-App-Version".into(), "7".into());
    req.headers
        .insert("Authorization".into(), "Bearer upload-secret-42".into());
    let (call, up) = start(&client, req, None).await;
    confirmed_at_least(&client, &up.id, chunk as i64).await;
    assert!(client.pause_upload(up.id.clone()).unwrap());
    let _ = call.await.unwrap();
    client.shutdown();
    drop(client);
    // On disk: the app's header, never the credential.
    let mut on_disk = Vec::new();
    for f in std::fs::read_dir(store.path()).unwrap() {
        on_disk.extend(std::fs::read(f.unwrap().path()).unwrap_or_default());
    }
    let contains = |needle: &[u8]| on_disk.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"X-App-Version") || contains(b"x-app-version"));
    assert!(
        !contains(b"upload-secret-42"),
        "a credential reached the disk"
    );
    // A new client (as after a kill) resumes it: its requests carry the app's header again.
    server.set_fault(robust_api_fleet::Fault::None).await;
    let before = server.requests().len();
    let client = RobustClient::new(config(fleet.urls(), store.path(), chunk)).unwrap();
    let heard = Arc::new(Heard::default());
    assert!(client
        .attach_upload_listener(up.id.clone(), heard.clone())
        .unwrap());
    assert!(client.resume_upload(up.id.clone()).unwrap());
    wait_until(
        "the resumed upload to complete",
        Duration::from_secs(30),
        || heard.completed.lock().unwrap().is_some(),
    )
    .await;
    assert_eq!(
        server.tus_newest_upload().unwrap(),
        std::fs::read(&path).unwrap()
    );
    let resumed: Vec<_> = server.requests()[before..]
        .iter()
        .filter(|r| r.method == "PATCH" || r.method == "HEAD")
        .cloned()
        .collect();
    assert!(!resumed.is_empty());
    for r in &resumed {
        assert_eq!(
            r.header("x-app-version"),
            Some("7"),
            "{} {}",
            r.method,
            r.path
        );
        assert_eq!(r.header("authorization"), None);
    }
}
