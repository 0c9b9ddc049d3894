//! `/fabstir/result/1.0.0` is private: a result goes only to its job's client. A request
//! carries the client's signature over the job, the CID, the host it asks and an expiry (one
//! round trip, no challenge: the host's own peer id in the text keeps it from being replayed to
//! another host); the host checks the expiry here and who signed through its
//! [`HostService`](crate::HostService).

use fabstir_core::auth::{self, ClientSigner};
use fabstir_core::cid::Cid;
use fabstir_core::clock::unix_now;
use fabstir_core::primitives::Address;
use fabstir_core::{JobId, NodePeerId};

use crate::codec::ResultRequest;
use crate::service::ClientProof;
use crate::{Error, Result};

/// How long a signed request is good for.
pub const RESULT_REQUEST_VALIDITY: u64 = 60;

/// The longest validity a host accepts: a request expiring later is refused (a signature that
/// stays good for long is one that can be stolen and used).
pub const MAX_RESULT_REQUEST_VALIDITY: u64 = 600;

/// What a request for a result is signed for: the chain, the marketplace and the host asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResultScope {
    /// Chain id.
    pub(crate) chain_id: u64,
    /// The JobMarketplace.
    pub(crate) marketplace: Address,
    /// The host asked (its peer id).
    pub(crate) host: NodePeerId,
}

impl ResultScope {
    fn message(&self, job: JobId, cid: &Cid, expires_at: u64) -> String {
        auth::result_request_message(
            self.chain_id,
            self.marketplace,
            job,
            cid,
            &self.host,
            expires_at,
        )
    }

    /// A request for `job`'s result `cid`, signed by `signer` (the job's client).
    pub(crate) async fn request(
        &self,
        job: JobId,
        cid: &Cid,
        signer: &dyn ClientSigner,
    ) -> Result<ResultRequest> {
        let expires_at = unix_now() + RESULT_REQUEST_VALIDITY;
        let signature = signer
            .sign_message(&self.message(job, cid, expires_at))
            .await?;
        Ok(ResultRequest {
            job,
            cid: *cid,
            expires_at,
            signature,
        })
    }

    /// The proof a request carries, for the service to check against the job's client;
    /// `Err` when the request has expired or is good for longer than a host accepts.
    pub(crate) fn proof(&self, request: &ResultRequest, now: u64) -> Result<ClientProof> {
        if request.expires_at <= now {
            return Err(Error::Cancelled);
        }
        if request.expires_at > now.saturating_add(MAX_RESULT_REQUEST_VALIDITY) {
            return Err(Error::Cancelled);
        }
        let digest =
            auth::message_digest(&self.message(request.job, &request.cid, request.expires_at));
        Ok(ClientProof {
            digest,
            recovered: auth::recover_digest(digest, &request.signature).ok(),
            signature: request.signature.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use fabstir_core::auth::SigningKey;
    use fabstir_core::cid::cid_of;

    use super::*;

    fn scope() -> ResultScope {
        ResultScope {
            chain_id: 31_337,
            marketplace: Address::repeat_byte(7),
            host: NodePeerId::from_bytes(vec![0, 4, 1, 2, 3, 4]).unwrap(),
        }
    }

    #[tokio::test]
    async fn a_request_proves_its_signer_until_it_expires() {
        let key = SigningKey::from_bytes(&[0x11; 32].into()).unwrap();
        let cid = cid_of(b"text");
        let request = scope().request(JobId(4), &cid, &key).await.unwrap();
        let now = unix_now();
        let proof = scope().proof(&request, now).unwrap();
        assert_eq!(proof.recovered, Some(auth::address_of(&key)));
        assert!(
            scope().proof(&request, request.expires_at).is_err(),
            "expired"
        );
        let far = ResultRequest {
            expires_at: now + MAX_RESULT_REQUEST_VALIDITY + 1,
            ..request.clone()
        };
        assert!(scope().proof(&far, now).is_err(), "good for too long");
        // Another job, CID or host: the signature proves someone else.
        for changed in [
            ResultRequest {
                job: JobId(5),
                ..request.clone()
            },
            ResultRequest {
                cid: cid_of(b"other"),
                ..request.clone()
            },
        ] {
            let proof = scope().proof(&changed, now).unwrap();
            assert_ne!(proof.recovered, Some(auth::address_of(&key)));
        }
        let other_host = ResultScope {
            host: NodePeerId::from_bytes(vec![0, 4, 9, 9, 9, 9]).unwrap(),
            ..scope()
        };
        let proof = other_host.proof(&request, now).unwrap();
        assert_ne!(proof.recovered, Some(auth::address_of(&key)));
    }
}
