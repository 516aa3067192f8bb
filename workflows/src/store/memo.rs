//! Small in-process caches of what the store reads on every request.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A bounded map of values read from the store, each kept for at most `ttl`. [`Memo::clear`] empties it
/// and voids reads already under way, so a value read before a write is never stored after it.
#[derive(Debug)]
pub(crate) struct Memo<K, V> {
    inner: Mutex<Inner<K, V>>,
    ttl: Duration,
    capacity: usize,
}

#[derive(Debug)]
struct Inner<K, V> {
    map: HashMap<K, (V, Instant)>,
    generation: u64,
}

/// Taken before reading from the store; the value read may be kept only if nothing cleared the memo since.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(u64);

impl<K: Eq + Hash, V: Clone> Memo<K, V> {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Memo { inner: Mutex::new(Inner { map: HashMap::new(), generation: 0 }), ttl, capacity }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        // A panic while holding the lock cannot leave the map inconsistent: every update is one call.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let inner = self.lock();
        inner.map.get(key).filter(|(_, at)| at.elapsed() < self.ttl).map(|(v, _)| v.clone())
    }

    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.lock().generation)
    }

    /// Keeps `value` unless the memo was cleared after `ticket` was taken.
    pub(crate) fn insert(&self, ticket: Ticket, key: K, value: V) {
        let mut inner = self.lock();
        if inner.generation != ticket.0 {
            return;
        }
        if inner.map.len() >= self.capacity {
            let ttl = self.ttl;
            inner.map.retain(|_, (_, at)| at.elapsed() < ttl);
            if inner.map.len() >= self.capacity {
                inner.map.clear();
            }
        }
        inner.map.insert(key, (value, Instant::now()));
    }

    pub(crate) fn clear(&self) {
        let mut inner = self.lock();
        inner.map.clear();
        inner.generation += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_read_before_a_clear_is_not_kept() {
        let memo: Memo<&str, i32> = Memo::new(Duration::from_secs(60), 8);
        let before = memo.ticket();
        memo.clear();
        memo.insert(before, "k", 1);
        assert_eq!(memo.get(&"k"), None);
        memo.insert(memo.ticket(), "k", 2);
        assert_eq!(memo.get(&"k"), Some(2));
    }

    #[test]
    fn values_expire_and_the_memo_stays_bounded() {
        let memo: Memo<u32, u32> = Memo::new(Duration::ZERO, 4);
        memo.insert(memo.ticket(), 1, 1);
        assert_eq!(memo.get(&1), None, "a zero ttl keeps nothing");
        let memo: Memo<u32, u32> = Memo::new(Duration::from_secs(60), 4);
        for i in 0..100 {
            memo.insert(memo.ticket(), i, i);
        }
        assert!(memo.lock().map.len() <= 4);
        assert_eq!(memo.get(&99), Some(99));
    }
}
