//! Parsed space facts shared by all requests, revalidated against the space's access
//! version (`store::access::space_version`), which every write to the space's Patient
//! or Consents bumps in its own transaction. A stale entry is never used: a changed
//! version is a miss.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::space::SpaceFacts;

/// A bounded map of space → (access version, facts).
pub struct SpaceCache {
    entries: Mutex<HashMap<String, (i64, Arc<SpaceFacts>)>>,
    capacity: usize,
}

impl SpaceCache {
    pub fn new(capacity: usize) -> SpaceCache {
        SpaceCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, Arc<SpaceFacts>)>> {
        // The map holds no invariant a panicking holder could break.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The facts of `patient` if cached at exactly `version`.
    pub fn get(&self, patient: &str, version: i64) -> Option<Arc<SpaceFacts>> {
        self.lock()
            .get(patient)
            .filter(|(cached, _)| *cached == version)
            .map(|(_, facts)| Arc::clone(facts))
    }

    /// The facts of `patient` at the latest version this process cached, with that
    /// version: not known to be current (see `Gate::presumed_search_narrowing`).
    pub fn latest(&self, patient: &str) -> Option<(i64, Arc<SpaceFacts>)> {
        self.lock()
            .get(patient)
            .map(|(version, facts)| (*version, Arc::clone(facts)))
    }

    pub fn put(&self, patient: &str, version: i64, facts: Arc<SpaceFacts>) {
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(patient) {
            entries.clear();
        }
        entries.insert(patient.to_owned(), (version, facts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_version_is_a_miss_and_the_size_is_bounded() {
        let cache = SpaceCache::new(2);
        cache.put("p1", 3, Arc::new(SpaceFacts::default()));
        assert!(cache.get("p1", 3).is_some());
        assert!(cache.get("p1", 4).is_none());
        assert_eq!(cache.latest("p1").map(|(version, _)| version), Some(3));
        assert!(cache.latest("p9").is_none());
        cache.put("p2", 1, Arc::new(SpaceFacts::default()));
        cache.put("p3", 1, Arc::new(SpaceFacts::default()));
        assert!(cache.get("p3", 1).is_some());
        assert!(cache.lock().len() <= 2);
    }
}
