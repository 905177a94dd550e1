//! Least-recently-used accounting for the cache's size cap: which objects
//! to evict so the cache fits. Pure bookkeeping; the store deletes files.

use std::collections::{BTreeMap, HashMap};

/// Sizes and use order of the cached objects, by key.
#[derive(Debug, Default)]
pub struct Lru {
    /// key → (size, use tick).
    entries: HashMap<String, (u64, u64)>,
    /// use tick → key, oldest first.
    order: BTreeMap<u64, String>,
    total: u64,
    tick: u64,
}

impl Lru {
    /// Records an object (or replaces one under the same key) as just used.
    pub fn insert(&mut self, key: &str, size: u64) {
        self.remove(key);
        self.tick += 1;
        self.entries.insert(key.to_string(), (size, self.tick));
        self.order.insert(self.tick, key.to_string());
        self.total += size;
    }

    /// Marks an object as just used.
    pub fn touch(&mut self, key: &str) {
        if let Some((size, tick)) = self.entries.get(key).copied() {
            self.order.remove(&tick);
            self.tick += 1;
            self.entries.insert(key.to_string(), (size, self.tick));
            self.order.insert(self.tick, key.to_string());
        }
    }

    /// Forgets an object; its size if it was known.
    pub fn remove(&mut self, key: &str) -> Option<u64> {
        let (size, tick) = self.entries.remove(key)?;
        self.order.remove(&tick);
        self.total -= size;
        Some(size)
    }

    /// Removes and returns the least recently used objects until the total
    /// is at most `cap`.
    pub fn evict_to(&mut self, cap: u64) -> Vec<String> {
        let mut evicted = Vec::new();
        while self.total > cap {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some((size, _)) = self.entries.remove(&key) {
                self.total -= size;
            }
            evicted.push(key);
        }
        evicted
    }

    /// Bytes held.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Objects held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_objects_go_first() {
        let mut lru = Lru::default();
        lru.insert("a", 40);
        lru.insert("b", 40);
        lru.insert("c", 40);
        lru.touch("a");
        assert_eq!(lru.total(), 120);
        assert_eq!(lru.evict_to(100), vec!["b".to_string()]);
        lru.insert("d", 50);
        assert_eq!(lru.evict_to(100), vec!["c".to_string()]);
        assert_eq!((lru.len(), lru.total()), (2, 90));
        assert_eq!(lru.evict_to(60), vec!["a".to_string()]);
    }

    #[test]
    fn replacing_an_object_counts_its_new_size_only() {
        let mut lru = Lru::default();
        lru.insert("a", 10);
        lru.insert("a", 30);
        assert_eq!((lru.len(), lru.total()), (1, 30));
        assert_eq!(lru.remove("a"), Some(30));
        assert_eq!(lru.remove("a"), None);
        assert!(lru.is_empty());
        assert!(lru.evict_to(0).is_empty());
    }

    #[test]
    fn an_object_over_the_cap_is_evicted_alone() {
        let mut lru = Lru::default();
        lru.insert("small", 10);
        lru.insert("huge", 1000);
        lru.touch("small");
        assert_eq!(lru.evict_to(100), vec!["huge".to_string()]);
        assert_eq!(lru.total(), 10);
    }
}
