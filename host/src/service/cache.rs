//! The committed states of recently changed instances, so a command does not decode its
//! instance from the store twice (once to prepare it, once in the writer to check its version).
//!
//! The writer is the only thing that changes instances, and it puts each state here after the
//! transaction that wrote it committed, so an entry is always the stored state. An ended instance
//! leaves (it takes no more commands). The cache is bounded by two generations: when the newer
//! one is full it becomes the older one and the oldest is dropped, so the instances in use stay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::engine::{Instance, Status};

type Key = (String, String);

#[derive(Debug)]
pub(crate) struct InstanceCache {
    per_generation: usize,
    generations: Mutex<[HashMap<Key, Arc<Instance>>; 2]>,
}

impl InstanceCache {
    /// Keeps at least `capacity` instances (and at most twice that).
    pub fn new(capacity: usize) -> Self {
        InstanceCache {
            per_generation: capacity.max(1),
            generations: Mutex::new([HashMap::new(), HashMap::new()]),
        }
    }

    fn lock(&self) -> MutexGuard<'_, [HashMap<Key, Arc<Instance>>; 2]> {
        self.generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The committed state of an instance, if it is here.
    pub fn get(&self, tenant: &str, id: &str) -> Option<Arc<Instance>> {
        let key = (tenant.to_string(), id.to_string());
        let generations = self.lock();
        generations[0]
            .get(&key)
            .or_else(|| generations[1].get(&key))
            .cloned()
    }

    /// States just committed, in commit order.
    pub fn committed<'a>(&self, states: impl IntoIterator<Item = &'a Arc<Instance>>) {
        let mut generations = self.lock();
        for state in states {
            let key = (state.tenant.clone(), state.id.clone());
            generations[1].remove(&key);
            if state.status != Status::Running {
                generations[0].remove(&key);
                continue;
            }
            if generations[0].len() >= self.per_generation && !generations[0].contains_key(&key) {
                let newer = std::mem::take(&mut generations[0]);
                generations[1] = newer;
            }
            generations[0].insert(key, state.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, status: Status, version: u64) -> Arc<Instance> {
        let json = serde_json::json!({
            "id": id, "tenant": "acme", "definition_id": "d", "definition_version": 1,
            "plugins": {}, "status": status, "data": {}, "tokens": {}, "tasks": {}, "timers": {},
            "forks": {}, "parent": null, "started_by": "ann", "started_at": 0, "ended_at": null,
            "version": version, "history_len": 0, "next_id": 1
        });
        Arc::new(serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn holds_the_latest_committed_state_and_forgets_ended_and_old_ones() {
        let cache = InstanceCache::new(2);
        cache.committed([&instance("a", Status::Running, 1)]);
        cache.committed([&instance("a", Status::Running, 2)]);
        assert_eq!(cache.get("acme", "a").map(|i| i.version), Some(2));
        assert!(cache.get("globex", "a").is_none());
        cache.committed([&instance("a", Status::Completed, 3)]);
        assert!(cache.get("acme", "a").is_none(), "an ended instance leaves");
        for (n, id) in ["b", "c", "d", "e", "f"].iter().enumerate() {
            cache.committed([&instance(id, Status::Running, n as u64)]);
        }
        // Capacity 2: the two newest generations hold at most 4, and the newest are there.
        assert!(cache.get("acme", "b").is_none());
        assert!(cache.get("acme", "e").is_some() && cache.get("acme", "f").is_some());
    }
}
