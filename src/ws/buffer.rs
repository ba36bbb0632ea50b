//! The bounded outbound buffer of one WebSocket connection (pure; no I/O).
//!
//! Every message the app sends goes through it: while the socket is open it is drained at once by
//! the connection task, while (re)connecting it holds the messages until the next connection opens,
//! then they go out in the order they were sent. It is bounded by message count and by bytes; a
//! message that does not fit is refused with a typed error, never dropped silently.

use std::collections::VecDeque;

/// One outbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outbound {
    Text(String),
    Binary(Vec<u8>),
}

impl Outbound {
    /// Payload size in bytes (what counts against the byte bound).
    pub(crate) fn len(&self) -> usize {
        match self {
            Outbound::Text(t) => t.len(),
            Outbound::Binary(b) => b.len(),
        }
    }
}

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The buffer is at one of its bounds now (it may drain later).
    Full,
    /// The message alone is larger than the byte bound: it can never be buffered.
    TooLarge,
}

/// FIFO bounded by `max_messages` and `max_bytes`.
#[derive(Debug)]
pub(crate) struct OutboundBuffer {
    queue: VecDeque<Outbound>,
    bytes: u64,
    max_messages: usize,
    max_bytes: u64,
}

impl OutboundBuffer {
    pub(crate) fn new(max_messages: usize, max_bytes: u64) -> Self {
        OutboundBuffer {
            queue: VecDeque::new(),
            bytes: 0,
            max_messages,
            max_bytes,
        }
    }

    /// Appends `msg`, or says why it cannot be taken (the buffer is then unchanged).
    pub(crate) fn push(&mut self, msg: Outbound) -> Result<(), Refused> {
        let len = msg.len() as u64;
        if len > self.max_bytes {
            return Err(Refused::TooLarge);
        }
        if self.queue.len() >= self.max_messages || self.bytes + len > self.max_bytes {
            return Err(Refused::Full);
        }
        self.bytes += len;
        self.queue.push_back(msg);
        Ok(())
    }

    /// The oldest message, removed.
    pub(crate) fn pop(&mut self) -> Option<Outbound> {
        let msg = self.queue.pop_front()?;
        self.bytes -= msg.len() as u64;
        Some(msg)
    }

    /// Removes everything; returns how many messages were dropped.
    pub(crate) fn clear(&mut self) -> usize {
        let n = self.queue.len();
        self.queue.clear();
        self.bytes = 0;
        n
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn max_messages(&self) -> usize {
        self.max_messages
    }

    pub(crate) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Outbound {
        Outbound::Text(s.to_string())
    }

    #[test]
    fn keeps_order_and_accounts_bytes() {
        let mut b = OutboundBuffer::new(10, 100);
        b.push(text("one")).unwrap();
        b.push(Outbound::Binary(vec![1, 2])).unwrap();
        b.push(text("three")).unwrap();
        assert_eq!((b.len(), b.bytes()), (3, 10));
        assert_eq!(b.pop(), Some(text("one")));
        assert_eq!(b.pop(), Some(Outbound::Binary(vec![1, 2])));
        assert_eq!((b.len(), b.bytes()), (1, 5));
        assert_eq!(b.pop(), Some(text("three")));
        assert_eq!(b.pop(), None);
        assert_eq!(b.bytes(), 0);
    }

    #[test]
    fn refuses_past_the_message_bound_without_dropping_anything() {
        let mut b = OutboundBuffer::new(2, 1000);
        b.push(text("a")).unwrap();
        b.push(text("b")).unwrap();
        assert_eq!(b.push(text("c")), Err(Refused::Full));
        assert_eq!(b.len(), 2);
        assert_eq!(b.pop(), Some(text("a")));
        b.push(text("c")).unwrap(); // room again once drained
        assert_eq!(b.pop(), Some(text("b")));
        assert_eq!(b.pop(), Some(text("c")));
    }

    #[test]
    fn refuses_past_the_byte_bound_and_oversized_messages() {
        let mut b = OutboundBuffer::new(100, 10);
        b.push(text("123456")).unwrap();
        assert_eq!(b.push(text("12345")), Err(Refused::Full));
        b.push(text("1234")).unwrap(); // exactly at the bound
        assert_eq!(b.bytes(), 10);
        assert_eq!(
            OutboundBuffer::new(100, 10).push(Outbound::Binary(vec![0; 11])),
            Err(Refused::TooLarge)
        );
        // Empty messages still count against the message bound.
        let mut b = OutboundBuffer::new(1, 10);
        b.push(text("")).unwrap();
        assert_eq!(b.push(text("")), Err(Refused::Full));
    }

    #[test]
    fn clear_reports_what_it_dropped() {
        let mut b = OutboundBuffer::new(10, 100);
        b.push(text("a")).unwrap();
        b.push(text("bc")).unwrap();
        assert_eq!(b.clear(), 2);
        assert_eq!((b.len(), b.bytes()), (0, 0));
    }
}
