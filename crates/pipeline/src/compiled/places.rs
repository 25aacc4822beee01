//! Which node of a document a value's text was split into, found by where the text sits.
//!
//! A document's lookups ask for the same few objects again and again (`user`, `objectRef`, a pod's
//! containers). Most documents have a handful of nodes, which a scan finds fastest; but one whose detections
//! walk a workload's containers or a role's rules has dozens, and a hostile one thousands, where a scan makes
//! every lookup pay for every node. This open-addressed table answers in one or two probes.

/// Node indexes by the address of their text (`(address, length)`, as [`super::key_of`] gives it).
#[derive(Debug, Default)]
pub(super) struct Places {
    /// `node index + 1` per slot, `0` for an empty one; the length is a power of two, at least twice the
    /// number of entries.
    slots: Vec<u32>,
    entries: usize,
}

impl Places {
    const SMALLEST: usize = 32;

    pub(super) fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Empty, its memory kept.
    pub(super) fn clear(&mut self) {
        self.slots.fill(0);
        self.entries = 0;
    }

    /// The node whose key is `key`; `key_of` gives the key of a node index.
    pub(super) fn find(
        &self,
        key: (usize, usize),
        key_of: impl Fn(usize) -> (usize, usize),
    ) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut slot = Self::hash(key.0) & mask;
        loop {
            let id = (*self.slots.get(slot)? as usize).checked_sub(1)?;
            if key_of(id) == key {
                return Some(id);
            }
            slot = (slot + 1) & mask;
        }
    }

    /// Notes that node `id` has the key `key` (not noted before); `key_of` gives the key of a node index.
    pub(super) fn insert(
        &mut self,
        key: (usize, usize),
        id: usize,
        key_of: impl Fn(usize) -> (usize, usize),
    ) {
        if (self.entries + 1) * 2 > self.slots.len() {
            self.grow(&key_of);
        }
        Self::place(&mut self.slots, key.0, id);
        self.entries += 1;
    }

    fn grow(&mut self, key_of: &impl Fn(usize) -> (usize, usize)) {
        let mut slots = vec![0; (self.slots.len() * 2).max(Self::SMALLEST)];
        for id in self
            .slots
            .iter()
            .filter_map(|s| (*s as usize).checked_sub(1))
        {
            Self::place(&mut slots, key_of(id).0, id);
        }
        self.slots = slots;
    }

    fn place(slots: &mut [u32], address: usize, id: usize) {
        let mask = slots.len() - 1;
        let mut slot = Self::hash(address) & mask;
        while slots[slot] != 0 {
            slot = (slot + 1) & mask;
        }
        // Documents have far fewer than 2^32 nodes (each is a bracket of the event's text).
        slots[slot] = u32::try_from(id + 1).unwrap_or(u32::MAX);
    }

    /// The address's bits mixed (Fibonacci hashing): nodes' addresses share their high bits and differ by
    /// small strides.
    fn hash(address: usize) -> usize {
        ((address as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every key inserted is found with its node, and keys never inserted are not, at any size.
        #[test]
        fn finds_what_was_inserted_and_nothing_else(
            addresses in proptest::collection::btree_set(0usize..1 << 20, 0..300),
            absent in proptest::collection::vec(0usize..1 << 20, 0..50),
        ) {
            let keys: Vec<(usize, usize)> = addresses.iter().map(|a| (*a, a % 7 + 2)).collect();
            let mut places = Places::default();
            for round in 0..2 {
                for (id, key) in keys.iter().enumerate() {
                    places.insert(*key, id, |i| keys[i]);
                }
                for (id, key) in keys.iter().enumerate() {
                    prop_assert_eq!(places.find(*key, |i| keys[i]), Some(id), "round {}", round);
                    // Same address, another length: another value.
                    prop_assert_eq!(places.find((key.0, key.1 + 1), |i| keys[i]), None);
                }
                for a in absent.iter().filter(|a| !addresses.contains(a)) {
                    prop_assert_eq!(places.find((*a, a % 7 + 2), |i| keys[i]), None);
                }
                places.clear();
                prop_assert_eq!(places.find(keys.first().copied().unwrap_or((0, 0)), |i| keys[i]), None);
            }
        }
    }
}
