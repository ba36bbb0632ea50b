//! The in-memory tier in front of SQLite: recently stored or read entries, bounded in bytes,
//! least recently used out first. A hit here costs no SQLite read (and no blocking I/O); the
//! tier only ever holds what the table holds or is about to hold (see [`super::writer`]), and
//! every invalidation, clear and eviction of a scope goes through it as well.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use super::Entry;

/// Most variants (`Vary`) kept per key, here and in the table.
pub(crate) const MAX_VARIANTS: usize = 4;

#[derive(Default)]
struct Inner {
    /// Key → its variants, each with its recency tick.
    by_key: HashMap<String, Vec<(u64, Arc<Entry>)>>,
    /// Tick → (key, vary): the eviction order.
    order: BTreeMap<u64, (String, String)>,
    bytes: u64,
    tick: u64,
}

/// A byte-bounded LRU of entries.
pub(crate) struct Hot {
    max_bytes: u64,
    inner: Mutex<Inner>,
}

impl Hot {
    pub(crate) fn new(max_bytes: u64) -> Self {
        Hot {
            max_bytes,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The first variant of `key` that `matches` accepts (and marks it recently used).
    pub(crate) fn get(&self, key: &str, matches: impl Fn(&Entry) -> bool) -> Option<Arc<Entry>> {
        let mut g = self.lock();
        let inner = &mut *g;
        let variants = inner.by_key.get_mut(key)?;
        let slot = variants.iter_mut().find(|(_, e)| matches(e))?;
        inner.tick += 1;
        if let Some(k) = inner.order.remove(&slot.0) {
            inner.order.insert(inner.tick, k);
        }
        slot.0 = inner.tick;
        Some(slot.1.clone())
    }

    /// Puts `entry` in (replacing the same key and variant), then evicts down to the bound.
    pub(crate) fn insert(&self, entry: Arc<Entry>) {
        let size = entry.size.max(0) as u64;
        if size > self.max_bytes / 4 {
            self.remove(&entry.key, &entry.vary);
            return;
        }
        let mut g = self.lock();
        let inner = &mut *g;
        inner.tick += 1;
        let tick = inner.tick;
        let variants = inner.by_key.entry(entry.key.clone()).or_default();
        if let Some(i) = variants.iter().position(|(_, e)| e.vary == entry.vary) {
            let (old_tick, old) = variants.remove(i);
            inner.order.remove(&old_tick);
            inner.bytes = inner.bytes.saturating_sub(old.size.max(0) as u64);
        }
        inner
            .order
            .insert(tick, (entry.key.clone(), entry.vary.clone()));
        variants.push((tick, entry));
        inner.bytes += size;
        // Too many variants of one key: its least recently used goes.
        if variants.len() > MAX_VARIANTS {
            if let Some(i) = (0..variants.len()).min_by_key(|i| variants[*i].0) {
                let (t, e) = variants.remove(i);
                inner.order.remove(&t);
                inner.bytes = inner.bytes.saturating_sub(e.size.max(0) as u64);
            }
        }
        while inner.bytes > self.max_bytes {
            let Some((_, (k, v))) = inner.order.pop_first() else {
                break;
            };
            take(inner, &k, &v);
        }
    }

    /// Removes one key's variant.
    pub(crate) fn remove(&self, key: &str, vary: &str) {
        let mut g = self.lock();
        if let Some(t) = take(&mut g, key, vary) {
            g.order.remove(&t);
        }
    }

    /// Removes every entry `drop_it` selects.
    pub(crate) fn retain(&self, drop_it: impl Fn(&Entry) -> bool) {
        let mut g = self.lock();
        let doomed: Vec<(String, String)> = g
            .by_key
            .values()
            .flatten()
            .filter(|(_, e)| drop_it(e))
            .map(|(_, e)| (e.key.clone(), e.vary.clone()))
            .collect();
        for (k, v) in doomed {
            if let Some(t) = take(&mut g, &k, &v) {
                g.order.remove(&t);
            }
        }
    }

    pub(crate) fn clear(&self) {
        *self.lock() = Inner::default();
    }

    /// Bytes held (for tests).
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        self.lock().bytes
    }
}

/// Takes a variant out of `by_key` (not `order`), returning its tick.
fn take(inner: &mut Inner, key: &str, vary: &str) -> Option<u64> {
    let variants = inner.by_key.get_mut(key)?;
    let i = variants.iter().position(|(_, e)| e.vary == vary)?;
    let (tick, e) = variants.remove(i);
    if variants.is_empty() {
        inner.by_key.remove(key);
    }
    inner.bytes = inner.bytes.saturating_sub(e.size.max(0) as u64);
    Some(tick)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, vary: &str, size: i64) -> Arc<Entry> {
        Arc::new(Entry {
            key: key.into(),
            vary: vary.into(),
            size,
            ..Entry::blank()
        })
    }

    #[test]
    fn the_tier_stays_within_its_bytes_evicting_the_least_recently_used() {
        let hot = Hot::new(1_000);
        for i in 0..10 {
            hot.insert(entry(&format!("k{i}"), "", 200));
        }
        assert!(hot.bytes() <= 1_000);
        assert!(hot.get("k0", |_| true).is_none(), "the oldest went first");
        assert!(hot.get("k9", |_| true).is_some());
        // Reading k5 keeps it over the others.
        assert!(hot.get("k5", |_| true).is_some());
        for i in 10..13 {
            hot.insert(entry(&format!("k{i}"), "", 200));
        }
        assert!(hot.get("k5", |_| true).is_some());
        // Too big for the tier: not kept.
        hot.insert(entry("big", "", 600));
        assert!(hot.get("big", |_| true).is_none());
    }

    #[test]
    fn variants_are_bounded_per_key_and_removed_one_by_one() {
        let hot = Hot::new(100_000);
        for v in 0..6 {
            hot.insert(entry("k", &format!("v{v}"), 10));
        }
        let kept = (0..6)
            .filter(|v| {
                let want = format!("v{v}");
                hot.get("k", |e| e.vary == want).is_some()
            })
            .count();
        assert_eq!(kept, MAX_VARIANTS);
        hot.remove("k", "v5");
        assert!(hot.get("k", |e| e.vary == "v5").is_none());
        hot.retain(|e| e.vary == "v4");
        assert!(hot.get("k", |e| e.vary == "v4").is_none());
        hot.clear();
        assert_eq!(hot.bytes(), 0);
    }
}
