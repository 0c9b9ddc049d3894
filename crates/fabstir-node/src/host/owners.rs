//! Whose each stored result is: one small file per job in the node's storage folder
//! (`owners/<job id>`: the client's address and the result's CID), written when the result is
//! stored. `/fabstir/result/1.0.0` serves a result only to that client and only under that
//! job, also after a restart, and a stranger's request costs a file read, not a chain call.

use std::path::PathBuf;

use fabstir_core::JobId;
use fabstir_core::cid::{Cid, parse_cid};
use fabstir_core::primitives::Address;
use fabstir_p2p::{ClientProof, ResultResponse};

use super::Host;

/// The folder of owner records.
#[derive(Debug, Clone)]
pub(crate) struct ResultOwners {
    dir: PathBuf,
}

impl ResultOwners {
    /// Records in `dir` (created when the first record is written).
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn path(&self, job: JobId) -> PathBuf {
        self.dir.join(job.to_string())
    }

    /// Records that `job`'s result `cid` is `client`'s (written whole: a temporary file,
    /// then renamed).
    pub(crate) async fn record(
        &self,
        job: JobId,
        client: Address,
        cid: &Cid,
    ) -> std::io::Result<()> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let path = self.path(job);
        let partial = path.with_extension("partial");
        tokio::fs::write(&partial, format!("{client:#x}\n{cid}\n")).await?;
        tokio::fs::rename(&partial, &path).await
    }

    /// `job`'s client and result CID, if this host stored its result.
    pub(crate) async fn lookup(&self, job: JobId) -> Option<(Address, Cid)> {
        let text = tokio::fs::read_to_string(self.path(job)).await.ok()?;
        let mut lines = text.lines();
        let client = lines.next()?.parse().ok()?;
        let cid = parse_cid(lines.next()?).ok()?;
        Some((client, cid))
    }
}

impl Host {
    /// Keeps whose `job`'s result `cid` is; a record that cannot be written is logged (the
    /// result is then served to no one).
    pub(super) async fn record_owner(&self, job: JobId, client: Address, cid: &Cid) {
        if let Err(e) = self.owners.record(job, client, cid).await {
            tracing::warn!(%job, error = %e, "cannot record whose result this is");
        }
    }

    /// `job`'s result `cid` for `/fabstir/result/1.0.0`, if `proof` is the job's client's.
    pub(super) async fn stored_result(
        &self,
        job: JobId,
        cid: &Cid,
        proof: &ClientProof,
    ) -> ResultResponse {
        let Some((client, stored)) = self.owners.lookup(job).await else {
            return ResultResponse::NotFound;
        };
        let by_key = proof.recovered == Some(client);
        if !by_key
            && !self
                .wallet_accepts(client, proof.digest, &proof.signature)
                .await
        {
            tracing::debug!(%job, "a result request not signed by the job's client");
            return ResultResponse::Refused;
        }
        if stored != *cid {
            return ResultResponse::NotFound;
        }
        match self.store.get(cid).await {
            Ok(bytes) => ResultResponse::Found(bytes),
            Err(e) => {
                tracing::warn!(%job, %cid, error = %e, "a recorded result cannot be read");
                ResultResponse::NotFound
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_round_trip_and_unknown_jobs_have_none() {
        let dir = tempfile::tempdir().unwrap();
        let owners = ResultOwners::new(dir.path().join("owners"));
        assert_eq!(owners.lookup(JobId(3)).await, None);
        let cid = fabstir_core::cid::cid_of(b"text");
        let client = Address::repeat_byte(0xab);
        owners.record(JobId(3), client, &cid).await.unwrap();
        assert_eq!(owners.lookup(JobId(3)).await, Some((client, cid)));
        assert_eq!(owners.lookup(JobId(4)).await, None);
    }
}
