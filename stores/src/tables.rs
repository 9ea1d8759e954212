//! Ordered in-memory tables: the whole state of the memory backend, and the file backend's
//! in-memory image of its log. Plus the overlay the file backend applies a batch to before
//! the batch is durable.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::engine::{KvGet, KvPut, KvRead, Pairs, Table};
use crate::StoreError;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// One ordered map per [`Table`].
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemTables {
    maps: [Map; 5],
}

impl MemTables {
    fn map(&self, table: Table) -> &Map {
        // Table discriminants are 0..5, the array's indices.
        &self.maps[table as usize]
    }

    pub(crate) fn apply(&mut self, table: Table, key: Vec<u8>, value: Option<Vec<u8>>) {
        let map = &mut self.maps[table as usize];
        match value {
            Some(v) => {
                map.insert(key, v);
            }
            None => {
                map.remove(&key);
            }
        }
    }

    /// Every (table, key, value), table by table in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Table, &Vec<u8>, &Vec<u8>)> {
        Table::ALL
            .into_iter()
            .flat_map(move |t| self.map(t).iter().map(move |(k, v)| (t, k, v)))
    }

    /// Number of entries in all tables.
    pub(crate) fn len(&self) -> usize {
        self.maps.iter().map(BTreeMap::len).sum()
    }
}

impl KvGet for MemTables {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map(table).get(key).cloned())
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
}

impl KvRead for MemTables {
    fn range(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Pairs, StoreError> {
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .map(table)
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
}
