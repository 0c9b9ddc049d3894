//! The SDK's error: its own causes plus those of the layers it wires.

use fabstir_core::cid::Cid;
use fabstir_core::wire::RejectReason;
use fabstir_core::{JobId, JobStatus, NodePeerId};

/// Everything that can go wrong in the SDK.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A spending call was made with no signer set (see `FabstirSdk::set_signer`).
    #[error("no signer set: call set_signer first")]
    NoSigner,
    /// The signer is for another chain than the SDK's configuration.
    #[error("signer is for chain {signer}, the SDK is configured for chain {sdk}")]
    WrongChain {
        /// The signer's chain id.
        signer: u64,
        /// The configured chain id.
        sdk: u64,
    },
    /// Discovery found no host for the model at acceptable terms.
    #[error("no host serves model {0} at acceptable terms")]
    NoProviders(String),
    /// Every host tried failed; the last failure is given.
    #[error("job failed on {attempts} host(s); last: {last}")]
    AllAttemptsFailed {
        /// How many hosts were tried.
        attempts: u32,
        /// What went wrong last.
        #[source]
        last: Box<Error>,
    },
    /// A host declined to quote or to take the job.
    #[error("host declined: {reason:?}: {message}")]
    HostDeclined {
        /// The host.
        host: NodePeerId,
        /// Its reason.
        reason: RejectReason,
        /// Its explanation.
        message: String,
    },
    /// A host answered a request with a message that does not answer it.
    #[error("unexpected answer from {host}: {answer}")]
    UnexpectedAnswer {
        /// The host.
        host: NodePeerId,
        /// The answer, as debug text.
        answer: String,
    },
    /// The quote's price times the tokens asked for does not fit in 256 bits.
    #[error("escrow overflows")]
    EscrowOverflow,
    /// A posted job left the state the lifecycle waits in (another host claimed it, it was
    /// cancelled or expired).
    #[error("job {job} is {status}")]
    JobNotClaimable {
        /// The job.
        job: JobId,
        /// Where it is now.
        status: JobStatus,
    },
    /// A job's stream or settlement could not be waited for: the chain failed meanwhile.
    #[error("{what}: {source}")]
    While {
        /// What the SDK was doing ("reading the job", "opening the stream").
        what: &'static str,
        /// The cause.
        #[source]
        source: Box<Error>,
    },
    /// A host did not claim the posted job in time.
    #[error("host {host} did not claim job {job} in time")]
    ClaimTimeout {
        /// The job.
        job: JobId,
        /// The host.
        host: NodePeerId,
    },
    /// The stream stalled or broke before its final frame.
    #[error("stream of job {job} from {host} failed: {reason}")]
    StreamFailed {
        /// The job.
        job: JobId,
        /// The host.
        host: NodePeerId,
        /// What happened.
        reason: String,
    },
    /// The streamed text does not hash to the CID the host signed or submitted.
    #[error(
        "job {job}: result CID mismatch: streamed text is {streamed}, host reported {}",
        reported.as_ref().map_or_else(|| "bytes that are not a CID".to_owned(), |c| c.to_string())
    )]
    ResultMismatch {
        /// The job.
        job: JobId,
        /// CID of what the client received (boxed, as every CID in an error: it keeps
        /// `Result`s small).
        streamed: Box<Cid>,
        /// CID the host signed or submitted (`None`: it submitted bytes that are not one).
        reported: Option<Box<Cid>>,
    },
    /// A host's quote does not match what was asked or what it signed (checked before any
    /// transaction).
    #[error("host {host} sent a bad quote: {reason}")]
    BadQuote {
        /// The host.
        host: NodePeerId,
        /// What is wrong with it.
        reason: String,
    },
    /// The settlement on chain pays for another number of tokens than the client receipted.
    #[error("job {job}: the settlement pays for {paid_for} tokens, {receipted} were receipted")]
    SettlementMismatch {
        /// The job.
        job: JobId,
        /// Tokens with text the client received and receipted.
        receipted: u64,
        /// Tokens the settlement paid for.
        paid_for: u64,
    },
    /// The job's budget does not cover the host's quote.
    #[error("budget of {budget} does not cover {needed}")]
    OverBudget {
        /// The budget, formatted.
        budget: String,
        /// What the quote costs, formatted.
        needed: String,
    },
    /// The job is unknown.
    #[error("job {0} not found")]
    JobNotFound(JobId),
    /// The job was cancelled by the application.
    #[error("job cancelled")]
    Cancelled,
    /// A payment failed (insufficient balance, token not accepted...).
    #[error(transparent)]
    Payments(#[from] fabstir_payments::Error),
    /// A contract call failed.
    #[error(transparent)]
    Contracts(#[from] fabstir_contracts::Error),
    /// The network failed.
    #[error(transparent)]
    P2p(#[from] fabstir_p2p::Error),
    /// A domain value was invalid.
    #[error(transparent)]
    Core(#[from] fabstir_core::Error),
    /// Result storage failed.
    #[error(transparent)]
    Storage(#[from] fabstir_storage::Error),
}

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
