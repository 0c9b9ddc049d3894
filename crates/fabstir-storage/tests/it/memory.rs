//! The suite over `MemoryStore`.

use async_trait::async_trait;
use fabstir_storage::{Cid, MemoryStore, ResultStore};

use crate::suite::{self, Harness, LIMIT};

struct Memory(MemoryStore);

#[async_trait]
impl Harness for Memory {
    fn store(&self) -> &dyn ResultStore {
        &self.0
    }

    async fn corrupt(&self, cid: &Cid, bytes: &[u8]) {
        self.0.corrupt(cid, bytes.to_vec());
    }
}

#[tokio::test]
async fn suite() {
    suite::run(&Memory(MemoryStore::new().with_max_size(LIMIT))).await;
}
