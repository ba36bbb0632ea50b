//! The token service ([`TokenService`]), shared by every server of a fleet: access tokens and
//! **rotating** refresh tokens, as an OAuth server issues them.
//!
//! * `POST /auth/token` with a refresh token as the body → `200` JSON
//!   `{"access_token":"..","refresh_token":".."}`: a new pair; the refresh token used is spent
//!   (valid once). A spent refresh token → `400 {"error":"invalid_grant","reused":true}`, counted
//!   ([`TokenService::reused`]): two refreshes that raced with the same token. Any other token, or
//!   while [`TokenService::set_refresh_failing`] is on → `400 {"error":"invalid_grant"}`.
//! * `/private/...` (any method) needs `Authorization: Bearer <the current access token>`;
//!   otherwise `401` with `WWW-Authenticate: Bearer error="invalid_token"` — before any effect
//!   (a refused mutation changes nothing). With it, the normal routes answer.
//!
//! Tests drive it with [`TokenService::issue`] (a new pair, as a login), [`TokenService::expire`]
//! (the access token stops working; the refresh token still does) and the counters.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::http::{path_only, Body, Head, Response};
use crate::lock;

/// At most this many spent refresh tokens are remembered (to tell a reuse from garbage).
const MAX_SPENT: usize = 10_000;

#[derive(Default)]
struct State {
    serial: u64,
    access: Option<String>,
    refresh: Option<String>,
    spent: HashSet<String>,
    refreshes: u64,
    reused: u64,
    rejected: u64,
    failing: bool,
}

/// See the module docs.
#[derive(Default)]
pub struct TokenService {
    state: Mutex<State>,
}

impl TokenService {
    fn new_pair(s: &mut State) -> (String, String) {
        s.serial += 1;
        let access = format!("acc-{}-{:016x}", s.serial, fastrand::u64(..));
        let refresh = format!("ref-{}-{:016x}", s.serial, fastrand::u64(..));
        if let Some(old) = s.refresh.replace(refresh.clone()) {
            if s.spent.len() >= MAX_SPENT {
                s.spent.clear();
            }
            s.spent.insert(old);
        }
        s.access = Some(access.clone());
        (access, refresh)
    }

    /// A new `(access, refresh)` pair, as a login: the previous ones stop working.
    pub fn issue(&self) -> (String, String) {
        Self::new_pair(&mut lock(&self.state))
    }

    /// The current access token stops working (the refresh token still does).
    pub fn expire(&self) {
        lock(&self.state).access = None;
    }

    /// Every refresh failing (`true`) or answered normally again.
    pub fn set_refresh_failing(&self, failing: bool) {
        lock(&self.state).failing = failing;
    }

    /// Successful refreshes so far.
    pub fn refreshes(&self) -> u64 {
        lock(&self.state).refreshes
    }

    /// Refresh requests with an already spent refresh token so far.
    pub fn reused(&self) -> u64 {
        lock(&self.state).reused
    }

    /// `/private/...` requests refused with `401` so far.
    pub fn rejected(&self) -> u64 {
        lock(&self.state).rejected
    }

    /// Answers `/auth/token`, or refuses a `/private/...` request without the current token;
    /// `None`: not this service's business (normal handling follows).
    pub(crate) fn check(&self, head: &Head, body: &[u8]) -> Option<Response> {
        let path = path_only(&head.target);
        if path == "/auth/token" {
            return Some(self.token(body));
        }
        if !path.starts_with("/private/") && path != "/private" {
            return None;
        }
        let mut s = lock(&self.state);
        let bearer = head
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some() && bearer == s.access.as_deref() {
            return None;
        }
        s.rejected += 1;
        Some(
            Response::text(401, "invalid or expired access token").with_header(
                "WWW-Authenticate",
                "Bearer error=\"invalid_token\"".to_owned(),
            ),
        )
    }

    fn token(&self, body: &[u8]) -> Response {
        let presented = String::from_utf8_lossy(body).trim().to_owned();
        let mut s = lock(&self.state);
        let invalid = |reused: bool| {
            let body = if reused {
                r#"{"error":"invalid_grant","reused":true}"#
            } else {
                r#"{"error":"invalid_grant"}"#
            };
            json(400, body.to_owned())
        };
        if s.spent.contains(&presented) {
            s.reused += 1;
            return invalid(true);
        }
        if s.failing || s.refresh.as_deref() != Some(presented.as_str()) {
            return invalid(false);
        }
        s.refreshes += 1;
        let (access, refresh) = Self::new_pair(&mut s);
        json(
            200,
            format!(r#"{{"access_token":"{access}","refresh_token":"{refresh}"}}"#),
        )
    }
}

fn json(status: u16, body: String) -> Response {
    Response {
        status,
        headers: vec![("Content-Type", "application/json".to_owned())],
        body: Body::Bytes(body.into_bytes()),
    }
}
