//! `/tus/files/...`: a small tus 1.0 server on every backend, for what the official Node server
//! (`@tus/server` with `@tus/file-store`, used by `tests/tus.rs`) does not offer: the `checksum`
//! extension. `OPTIONS` lists `creation,termination,checksum` and `Tus-Checksum-Algorithm:
//! md5,sha1`; a `PATCH` with `Upload-Checksum: sha1 <base64>` whose body does not match is
//! answered `460 Checksum Mismatch` and its bytes are discarded (as tusd does).
//!
//! Fault knob ([`crate::Server::tus_corrupt_next_patches`]): the next N `PATCH` bodies are
//! corrupted on arrival (one byte flipped, as a bad link would), so their checksum fails. Counters:
//! checksums seen, mismatches. Bodies are held in memory (bounded by the fleet's `MAX_BODY` per
//! request and [`MAX_TUS_BYTES`] in all).

use base64::Engine;

use crate::http::{path_only, Head, Response};

/// Bytes all tus uploads of one backend may hold.
pub const MAX_TUS_BYTES: usize = 256 * 1024 * 1024;

#[derive(Default)]
pub(crate) struct TusState {
    /// `(Upload-Length, bytes received)` per upload id (index); `None` once deleted.
    uploads: Vec<Option<(u64, Vec<u8>)>>,
    corrupt_next: u32,
    /// Every `Upload-Checksum` header received, in order.
    checksums: Vec<String>,
    mismatches: u64,
}

impl TusState {
    pub(crate) fn corrupt_next(&mut self, n: u32) {
        self.corrupt_next = n;
    }
    pub(crate) fn checksums(&self) -> Vec<String> {
        self.checksums.clone()
    }
    pub(crate) fn mismatches(&self) -> u64 {
        self.mismatches
    }
    /// The bytes of the newest upload.
    pub(crate) fn newest(&self) -> Option<Vec<u8>> {
        self.uploads
            .iter()
            .rev()
            .flatten()
            .next()
            .map(|(_, b)| b.clone())
    }

    fn tus(status: u16) -> Response {
        let mut r = Response::text(status, "");
        r.headers.clear();
        r.with_header("Tus-Resumable", "1.0.0".to_owned())
    }

    pub(crate) fn route(&mut self, head: &Head, body: &[u8]) -> Response {
        let path = path_only(&head.target);
        let method = head.method.as_str();
        if path == "/tus/files" || path == "/tus/files/" {
            return match method {
                "OPTIONS" => Self::tus(204)
                    .with_header("Tus-Version", "1.0.0".to_owned())
                    .with_header("Tus-Extension", "creation,termination,checksum".to_owned())
                    .with_header("Tus-Checksum-Algorithm", "md5,sha1".to_owned()),
                "POST" => {
                    let Some(length) = head
                        .header("upload-length")
                        .and_then(|v| v.parse::<u64>().ok())
                    else {
                        return Self::tus(400);
                    };
                    let held: usize = self
                        .uploads
                        .iter()
                        .flatten()
                        .map(|(l, _)| *l as usize)
                        .sum();
                    if held.saturating_add(length as usize) > MAX_TUS_BYTES {
                        return Self::tus(413);
                    }
                    self.uploads.push(Some((length, Vec::new())));
                    Self::tus(201)
                        .with_header("Location", format!("/tus/files/{}", self.uploads.len() - 1))
                }
                _ => Self::tus(405),
            };
        }
        let Some(id) = path
            .strip_prefix("/tus/files/")
            .and_then(|i| i.parse::<usize>().ok())
        else {
            return Self::tus(404);
        };
        let Some(Some((length, bytes))) = self.uploads.get_mut(id) else {
            return Self::tus(404);
        };
        let (length, offset) = (*length, bytes.len() as u64);
        match method {
            "HEAD" => Self::tus(200)
                .with_header("Upload-Offset", offset.to_string())
                .with_header("Upload-Length", length.to_string())
                .with_header("Cache-Control", "no-store".to_owned()),
            "DELETE" => {
                self.uploads[id] = None;
                Self::tus(204)
            }
            "PATCH" => {
                if head
                    .header("upload-offset")
                    .and_then(|v| v.parse::<u64>().ok())
                    != Some(offset)
                {
                    return Self::tus(409).with_header("Upload-Offset", offset.to_string());
                }
                if offset + body.len() as u64 > length {
                    return Self::tus(400);
                }
                let mut got = body.to_vec();
                if self.corrupt_next > 0 && !got.is_empty() {
                    self.corrupt_next -= 1;
                    got[0] ^= 0xff;
                }
                if let Some(c) = head.header("upload-checksum") {
                    self.checksums.push(c.to_owned());
                    let (alg, want) = c.split_once(' ').unwrap_or((c, ""));
                    if alg != "sha1" {
                        return Self::tus(400); // an algorithm not offered
                    }
                    let digest =
                        ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &got);
                    let have = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
                    if have != want.trim() {
                        self.mismatches += 1;
                        return Self::tus(460);
                    }
                }
                let Some(Some((_, bytes))) = self.uploads.get_mut(id) else {
                    return Self::tus(404);
                };
                bytes.extend_from_slice(&got);
                Self::tus(204).with_header("Upload-Offset", bytes.len().to_string())
            }
            _ => Self::tus(405),
        }
    }
}
