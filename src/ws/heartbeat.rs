//! Heartbeat timing of one open WebSocket connection (pure: the caller passes the time in).
//!
//! A ping goes out every `interval`; one ping is outstanding at a time, and a pong must echo its
//! payload (a counter) within `timeout`, or the connection is declared dead. After an answer the
//! next ping is due `interval` after the previous one was sent (so the cadence does not drift by
//! the round trip). A connection that dies right after a pong is therefore detected at the latest
//! `interval + timeout` later. [`Heartbeat::check_now`] asks for a ping at once (used when the
//! network comes back: a socket opened before a network switch is usually dead).

use std::time::{Duration, Instant};

/// What the connection task must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing until this instant (or until a frame arrives).
    Wait(Instant),
    /// Send a ping with this payload now (it is now outstanding).
    SendPing(Vec<u8>),
    /// The outstanding ping got no pong within the timeout: the connection is dead.
    Dead {
        /// How long ago the unanswered ping was sent.
        waited: Duration,
    },
}

/// Heartbeat state of one connection.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    interval: Duration,
    timeout: Duration,
    next_ping: Instant,
    /// `(sequence, sent_at)` of the ping awaiting its pong.
    outstanding: Option<(u64, Instant)>,
    seq: u64,
    last_rtt: Option<Duration>,
}

impl Heartbeat {
    /// A heartbeat for a connection that opened at `now`: the first ping is due at
    /// `now + interval`.
    pub(crate) fn new(now: Instant, interval: Duration, timeout: Duration) -> Self {
        Heartbeat {
            interval,
            timeout,
            next_ping: now + interval,
            outstanding: None,
            seq: 0,
            last_rtt: None,
        }
    }

    /// What to do at `now`.
    pub(crate) fn poll(&mut self, now: Instant) -> Action {
        if let Some((_, sent)) = self.outstanding {
            let dead_at = sent + self.timeout;
            return if now >= dead_at {
                Action::Dead {
                    waited: now.saturating_duration_since(sent),
                }
            } else {
                Action::Wait(dead_at)
            };
        }
        if now >= self.next_ping {
            self.seq += 1;
            self.outstanding = Some((self.seq, now));
            return Action::SendPing(self.seq.to_be_bytes().to_vec());
        }
        Action::Wait(self.next_ping)
    }

    /// A pong arrived at `now`. Returns the round trip if it answers the outstanding ping
    /// (unsolicited pongs, which RFC 6455 allows, and stale ones are ignored).
    pub(crate) fn on_pong(&mut self, now: Instant, payload: &[u8]) -> Option<Duration> {
        let (seq, sent) = self.outstanding?;
        if payload != seq.to_be_bytes() {
            return None;
        }
        self.outstanding = None;
        let rtt = now.saturating_duration_since(sent);
        self.last_rtt = Some(rtt);
        self.next_ping = (sent + self.interval).max(now);
        Some(rtt)
    }

    /// Makes a ping due now, unless one is already outstanding.
    pub(crate) fn check_now(&mut self, now: Instant) {
        if self.outstanding.is_none() {
            self.next_ping = now;
        }
    }

    /// After a pause (the app was in the background): forgets an unanswered ping and makes the
    /// next one due now.
    pub(crate) fn resume(&mut self, now: Instant) {
        self.outstanding = None;
        self.next_ping = now;
    }

    /// The round trip of the last answered ping.
    #[cfg(test)]
    pub(crate) fn last_rtt(&self) -> Option<Duration> {
        self.last_rtt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn hb(t0: Instant) -> Heartbeat {
        Heartbeat::new(t0, 1000 * MS, 300 * MS)
    }

    fn ping(a: Action) -> Vec<u8> {
        match a {
            Action::SendPing(p) => p,
            other => panic!("expected a ping, got {other:?}"),
        }
    }

    #[test]
    fn first_ping_after_one_interval() {
        let t0 = Instant::now();
        let mut h = hb(t0);
        assert_eq!(h.poll(t0), Action::Wait(t0 + 1000 * MS));
        assert_eq!(h.poll(t0 + 999 * MS), Action::Wait(t0 + 1000 * MS));
        ping(h.poll(t0 + 1000 * MS));
    }

    #[test]
    fn a_pong_measures_rtt_and_keeps_the_cadence() {
        let t0 = Instant::now();
        let mut h = hb(t0);
        let p = ping(h.poll(t0 + 1000 * MS));
        // While outstanding, the next deadline is the pong timeout.
        assert_eq!(h.poll(t0 + 1010 * MS), Action::Wait(t0 + 1300 * MS));
        assert_eq!(h.on_pong(t0 + 1040 * MS, &p), Some(40 * MS));
        assert_eq!(h.last_rtt(), Some(40 * MS));
        // Next ping one interval after the previous one was sent, not after the pong.
        assert_eq!(h.poll(t0 + 1040 * MS), Action::Wait(t0 + 2000 * MS));
        let p2 = ping(h.poll(t0 + 2000 * MS));
        assert_ne!(p, p2, "each ping carries a new sequence number");
    }

    #[test]
    fn no_pong_within_the_timeout_is_dead() {
        let t0 = Instant::now();
        let mut h = hb(t0);
        ping(h.poll(t0 + 1000 * MS));
        assert_eq!(h.poll(t0 + 1299 * MS), Action::Wait(t0 + 1300 * MS));
        assert_eq!(h.poll(t0 + 1300 * MS), Action::Dead { waited: 300 * MS });
        // Still dead if asked again later (the caller reconnects; nothing is re-armed).
        assert!(matches!(h.poll(t0 + 5000 * MS), Action::Dead { .. }));
    }

    #[test]
    fn worst_case_detection_is_interval_plus_timeout() {
        let t0 = Instant::now();
        let mut h = hb(t0);
        let p = ping(h.poll(t0 + 1000 * MS));
        h.on_pong(t0 + 1001 * MS, &p);
        // The peer dies right after answering: the next ping is at 2000, dead at 2300.
        let died = t0 + 1001 * MS;
        ping(h.poll(t0 + 2000 * MS));
        let Action::Dead { .. } = h.poll(t0 + 2300 * MS) else {
            panic!("not dead at 2300 ms");
        };
        assert!(t0 + 2300 * MS - died <= 1300 * MS);
    }

    #[test]
    fn stale_unsolicited_and_late_pongs() {
        let t0 = Instant::now();
        let mut h = hb(t0);
        // Unsolicited pong before any ping: ignored.
        assert_eq!(h.on_pong(t0 + 10 * MS, b"hello"), None);
        let p = ping(h.poll(t0 + 1000 * MS));
        // A pong with another payload does not answer the ping.
        assert_eq!(h.on_pong(t0 + 1010 * MS, &[0, 0, 0, 0, 0, 0, 0, 99]), None);
        assert_eq!(h.poll(t0 + 1300 * MS), Action::Dead { waited: 300 * MS });
        // Only the echo does, and only once.
        let mut h = hb(t0);
        let p1 = ping(h.poll(t0 + 1000 * MS));
        assert_eq!(p, p1);
        assert!(h.on_pong(t0 + 1020 * MS, &p1).is_some());
        assert_eq!(h.on_pong(t0 + 1030 * MS, &p1), None);
    }

    #[test]
    fn a_very_late_answer_schedules_the_next_ping_now_at_the_earliest() {
        let t0 = Instant::now();
        let mut h = Heartbeat::new(t0, 100 * MS, 500 * MS); // timeout longer than the interval
        let p = ping(h.poll(t0 + 100 * MS));
        assert_eq!(h.on_pong(t0 + 450 * MS, &p), Some(350 * MS));
        ping(h.poll(t0 + 450 * MS));
    }

    #[test]
    fn check_now_pings_at_once_unless_one_is_outstanding() {
        let t0 = Instant::now();
        let mut h = hb(t0);
        h.check_now(t0 + 10 * MS);
        let p = ping(h.poll(t0 + 10 * MS));
        h.check_now(t0 + 20 * MS);
        assert_eq!(h.poll(t0 + 20 * MS), Action::Wait(t0 + 310 * MS));
        assert!(h.on_pong(t0 + 30 * MS, &p).is_some());
    }
}
