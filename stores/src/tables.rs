//! Ordered in-memory tables: the whole state of the memory backend, and the file backend's
//! in-memory image of its log. Plus the overlay the file backend applies a batch to before
//! the batch is durable.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use crate::engine::{KvGet, KvPut, KvRead, Pairs, Table};
use crate::StoreError;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// One map per [`Table`]. Claims are only ever looked up by key (and are by far the
/// largest table), so they live in a hash map; the other tables are scanned in key order.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemTables {
    claims: HashMap<Vec<u8>, Vec<u8>>,
    ordered: [Map; 4],
}

impl MemTables {
    fn ordered(&self, table: Table) -> Option<&Map> {
        // Discriminants: Claims = 0, then the ordered tables 1..5.
        (table as usize)
            .checked_sub(1)
            .and_then(|i| self.ordered.get(i))
    }

    pub(crate) fn apply(&mut self, table: Table, key: Vec<u8>, value: Option<Vec<u8>>) {
        match (table, value) {
            (Table::Claims, Some(v)) => {
                self.claims.insert(key, v);
            }
            (Table::Claims, None) => {
                self.claims.remove(&key);
            }
            (t, value) => {
                if let Some(map) = (t as usize)
                    .checked_sub(1)
                    .and_then(|i| self.ordered.get_mut(i))
                {
                    match value {
                        Some(v) => map.insert(key, v),
                        None => map.remove(&key),
                    };
                }
            }
        }
    }

    /// Every (table, key, value): claims in no particular order, then the other tables in
    /// key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Table, &Vec<u8>, &Vec<u8>)> {
        let claims = self.claims.iter().map(|(k, v)| (Table::Claims, k, v));
        let ordered = Table::ALL.into_iter().flat_map(move |t| {
            self.ordered(t)
                .into_iter()
                .flat_map(move |m| m.iter().map(move |(k, v)| (t, k, v)))
        });
        claims.chain(ordered)
    }

    /// Number of entries in all tables.
    pub(crate) fn len(&self) -> usize {
        self.claims.len() + self.ordered.iter().map(BTreeMap::len).sum::<usize>()
    }
}

impl KvGet for MemTables {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(match table {
            Table::Claims => self.claims.get(key).cloned(),
            t => self.ordered(t).and_then(|m| m.get(key)).cloned(),
        })
    }
}

impl KvPut for MemTables {
    fn put(
        &mut self,
        table: Table,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        self.apply(table, key, value);
        Ok(())
    }

    fn replace(
        &mut self,
        table: Table,
        key: &[u8],
        value: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if table == Table::Claims {
            return Ok(self.claims.insert(key.to_vec(), value.to_vec()));
        }
        let old = self.get(table, key)?;
        self.apply(table, key.to_vec(), Some(value.to_vec()));
        Ok(old)
    }
}

impl KvRead for MemTables {
    fn range(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Pairs, StoreError> {
        let in_range = |k: &[u8]| k >= start && end.is_none_or(|e| k < e);
        let Some(map) = self.ordered(table) else {
            // Claims are never scanned by the engine; answer correctly anyway.
            let mut pairs: Pairs = self
                .claims
                .iter()
                .filter(|(k, _)| in_range(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            pairs.sort_unstable();
            pairs.truncate(limit);
            return Ok(pairs);
        };
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(map
            .range::<[u8], _>((Bound::Included(start), upper))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// Changes on top of a read-only base: reads see the changes first.
pub(crate) struct Overlay<'a> {
    base: &'a MemTables,
    changes: BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>,
}

impl<'a> Overlay<'a> {
    pub(crate) fn new(base: &'a MemTables) -> Self {
        Overlay {
            base,
            changes: BTreeMap::new(),
        }
    }

    /// The accumulated changes, in (table, key) order.
    pub(crate) fn into_changes(self) -> Vec<(Table, Vec<u8>, Option<Vec<u8>>)> {
        self.changes
            .into_iter()
            .map(|((t, k), v)| (t, k, v))
            .collect()
    }
}

impl KvGet for Overlay<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.changes.get(&(table, key.to_vec())) {
            Some(change) => Ok(change.clone()),
            None => self.base.get(table, key),
        }
    }
}

impl KvPut for Overlay<'_> {
    fn put(
        &mut self,
        table: Table,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        self.changes.insert((table, key), value);
        Ok(())
    }

    /// Where `old` is what the base holds, the undone write's change is dropped rather
    /// than replaced by one that writes `old` again: a refused unit adds nothing to the log.
    fn restore(
        &mut self,
        table: Table,
        key: Vec<u8>,
        old: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        if self.base.get(table, &key)? == old {
            self.changes.remove(&(table, key));
        } else {
            self.changes.insert((table, key), old);
        }
        Ok(())
    }
}
