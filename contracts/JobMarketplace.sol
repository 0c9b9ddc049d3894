// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {NodeRegistry} from "./NodeRegistry.sol";
import {MarketplaceBase} from "./MarketplaceBase.sol";
import {Sessions} from "./Sessions.sol";

/// @title JobMarketplace
/// @notice The marketplace contract: one-shot jobs (here) and sessions (see Sessions), over the
/// shared configuration, funds book and receipts of MarketplaceBase.
///
/// Clients post inference jobs with escrowed payment (ETH or an accepted ERC-20);
/// registered hosts claim them and settle with the result CID and the client's newest receipt:
/// an EIP-712 signature over (job id, tokens received, transcript hash), checked here with
/// ECDSA or ERC-1271, so contract wallets can be clients. A job is fully funded: its escrow is
/// exactly `maxTokens * pricePerToken`. The host is paid for the receipt's tokens and never
/// more, `tokens * pricePerToken` less the protocol fee (its rate fixed when the job was posted):
/// the payment is credited to the host (see PaymentEscrow), the fee accrues to the treasury and
/// the rest is refunded to the client in the same transaction. The prompt never goes on chain,
/// only its keccak256 hash.
///
/// Storage: one slot per open job. A job's terms (`JobTerms`) are emitted once in `JobPosted`
/// and stored only as a hash; every later call passes them back and the contract checks them
/// against the hash. The slot packs the hash (its top 216 bits), the end of the close window
/// (32 bits, while Closing) and the status (8 bits). A claim rewrites the hash over the terms
/// with `host` set to the claimer. A finished job's slot is deleted (its gas refunded): its
/// outcome is its last event (JobCompleted, JobCancelled, JobExpired or JobReleased), and no
/// call can act on it again. A job id is `block << 32 | n`: it carries the block the job was
/// posted in, so readers find its JobPosted event without scanning the chain, and `n` is a
/// 32-bit number derived from the client and the prompt hash, moved on past ids in use.
///
/// Time rules (immutable, set at deployment): a job lasts at least `minJobDuration`; a claimed
/// job may still be settled during `submitGrace` after its deadline, and nobody can expire it
/// then; a client whose host stays silent asks to close, and the host has `closeWindow` to
/// settle before the job can be expired and refunded. The owner has no power over jobs in
/// flight: it lists tokens and sets the fee and treasury for jobs posted later.
contract JobMarketplace is MarketplaceBase, Sessions {
    /// @notice Longest result CID accepted, in bytes.
    uint256 public constant MAX_CID_LENGTH = 128;
    /// @notice Largest `maxTokens` of a job.
    uint32 public constant MAX_TOKENS = type(uint24).max;

    /// @notice What the client asks for and pays.
    struct JobDetails {
        bytes32 modelId;
        bytes32 promptHash;
        uint32 maxTokens;
        uint256 pricePerToken;
        uint64 deadline;
    }

    /// @notice Who may take the job: a named host, or address(0) for any registered host
    /// serving the model.
    struct JobRequirements {
        address host;
    }

    /// @notice Everything a job is, as emitted in JobPosted and passed back to every later
    /// call. `host` is the named host (or address(0)) until the job is claimed, the claimer
    /// after. The escrow is `maxTokens * pricePerToken`.
    struct JobTerms {
        address client;
        address host;
        address token;
        bytes32 modelId;
        bytes32 promptHash;
        uint32 maxTokens;
        uint256 pricePerToken;
        uint64 deadline;
        uint16 feeBps;
    }

    /// @notice The escrow must be exactly `maxTokens * pricePerToken`.
    error WrongAmount(uint256 expected, uint256 amount);
    /// @notice The job details are malformed (zero model id, or max tokens zero or above
    /// `MAX_TOKENS`).
    error InvalidJobDetails();
    /// @notice Another host has claimed the job already.
    error JobAlreadyClaimed(uint256 jobId);
    /// @notice The job names another host.
    error NotAssignedHost(uint256 jobId, address assigned, address caller);
    /// @notice More tokens reported than the job allows.
    error TokensExceedMax(uint256 jobId, uint256 tokensUsed, uint32 maxTokens);
    /// @notice The result CID is empty or too long.
    error InvalidResultCid();

    /// @notice A job was posted and its payment (`maxTokens * pricePerToken`) escrowed: its
    /// terms, which every later call passes back. `host` is address(0) for open jobs.
    event JobPosted(uint256 indexed jobId, bytes32 indexed modelId, address indexed host, JobTerms terms);
    /// @notice A host claimed a job.
    event JobClaimed(uint256 indexed jobId, address indexed host);
    /// @notice A job finished and was settled; `paid` is credited to the host.
    event JobCompleted(
        uint256 indexed jobId,
        address indexed host,
        bytes resultCid,
        bytes32 transcript,
        uint256 tokensUsed,
        uint256 paid,
        uint256 fee,
        uint256 refund
    );
    /// @notice The client cancelled an unclaimed job and was refunded.
    event JobCancelled(uint256 indexed jobId, address indexed client, uint256 refund);
    /// @notice A job passed its deadline unfinished and the client was refunded.
    event JobExpired(uint256 indexed jobId, address indexed caller, uint256 refund);
    /// @notice The claiming host gave the job up and the client was refunded.
    event JobReleased(uint256 indexed jobId, address indexed host, uint256 refund);
    /// @notice The client asked to close a claimed job; the host may settle until `settleBy`.
    event CloseRequested(uint256 indexed jobId, address indexed host, uint64 settleBy);

    constructor(
        address owner_,
        NodeRegistry registry_,
        address treasury_,
        uint16 feeBps_,
        uint64 minJobDuration_,
        uint64 submitGrace_,
        uint64 closeWindow_
    ) MarketplaceBase(owner_, registry_, treasury_, feeBps_, minJobDuration_, submitGrace_, closeWindow_) {}

    // ----- client -----

    /// @notice Posts a job paid in ETH; the escrow is `msg.value`.
    function postJob(JobDetails calldata details, JobRequirements calldata requirements)
        external
        payable
        nonReentrant
        returns (uint256 jobId)
    {
        jobId = _post(details, requirements, address(0), msg.value);
    }

    /// @notice Posts a job paid with `amount` of an accepted ERC-20 (approve this contract first).
    function postJobWithToken(
        JobDetails calldata details,
        JobRequirements calldata requirements,
        address token,
        uint256 amount
    ) external nonReentrant returns (uint256 jobId) {
        if (token == address(0)) revert TokenNotAccepted(token);
        jobId = _post(details, requirements, token, amount);
        _pull(token, amount);
    }

    /// @notice Posts a job paid with an EIP-2612 token: the permit (spender: this contract) and the
    /// post happen in one transaction. A permit that was already used (front-run) is ignored
    /// as long as the allowance suffices.
    function postJobWithPermit(
        JobDetails calldata details,
        JobRequirements calldata requirements,
        address token,
        uint256 amount,
        uint256 permitDeadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant returns (uint256 jobId) {
        if (token == address(0)) revert TokenNotAccepted(token);
        jobId = _post(details, requirements, token, amount);
        try IERC20Permit(token).permit(msg.sender, address(this), amount, permitDeadline, v, r, s) {} catch {}
        _pull(token, amount);
    }

    /// @notice Cancels an unclaimed job; only its client; refunds in full.
    function cancelJob(uint256 jobId, JobTerms calldata terms) external nonReentrant {
        uint256 state = _load(jobId);
        _requireStatus(jobId, state, JobStatus.Posted);
        _verify(jobId, state, terms);
        if (msg.sender != terms.client) revert NotClient(jobId, terms.client, msg.sender);
        delete _jobs[jobId];
        uint256 amount = _amount(terms);
        _refund(terms.token, terms.client, amount);
        emit JobCancelled(jobId, terms.client, amount);
    }

    /// @notice Asks to close a claimed job whose host is silent; only its client. The host may
    /// still settle until `closeWindow` from now (or its grace period's end, if sooner); then
    /// anyone may expire the job and the client is refunded.
    function requestClose(uint256 jobId, JobTerms calldata terms) external {
        uint256 state = _load(jobId);
        _requireStatus(jobId, state, JobStatus.Claimed);
        _verify(jobId, state, terms);
        if (msg.sender != terms.client) revert NotClient(jobId, terms.client, msg.sender);
        emit CloseRequested(jobId, terms.host, _startClose(jobId, state, JobStatus.Closing, terms.deadline));
    }

    /// @notice Ends an unfinished job whose time is up and refunds its client in full; anyone may
    /// call it. An unclaimed job's time ends at its deadline, a claimed one's at the end of the
    /// grace period, a closing one's at the end of the close window.
    function expireJob(uint256 jobId, JobTerms calldata terms) external nonReentrant {
        uint256 state = _load(jobId);
        JobStatus status = _status(state);
        if (status != JobStatus.Posted && status != JobStatus.Claimed && status != JobStatus.Closing) {
            revert InvalidJobStatus(jobId, status);
        }
        _verify(jobId, state, terms);
        uint64 end = _settleBy(state, terms);
        if (block.timestamp <= end) revert DeadlineNotReached(jobId, end);
        delete _jobs[jobId];
        if (status != JobStatus.Posted) _accounts[terms.token][terms.host].openClaims -= 1;
        uint256 amount = _amount(terms);
        _refund(terms.token, terms.client, amount);
        emit JobExpired(jobId, msg.sender, amount);
    }

    // ----- host -----

    /// @notice Claims a posted job; only an active registered host serving the model, and the
    /// assigned host if the job names one. The claim locks the host's stake until the job ends.
    function claimJob(uint256 jobId, JobTerms calldata terms) external {
        uint256 state = _load(jobId);
        _requireStatus(jobId, state, JobStatus.Posted);
        _verify(jobId, state, terms);
        if (block.timestamp > terms.deadline) revert DeadlinePassed(jobId, terms.deadline);
        address assigned = terms.host;
        if (assigned != address(0) && assigned != msg.sender) revert NotAssignedHost(jobId, assigned, msg.sender);
        // The registry is trusted (set at construction).
        if (!registry.canServe(msg.sender, terms.modelId)) revert HostNotEligible(msg.sender, terms.modelId);
        _accounts[terms.token][msg.sender].openClaims += 1;
        JobTerms memory claimed = terms;
        claimed.host = msg.sender;
        _jobs[jobId] = _hash(claimed) | uint256(JobStatus.Claimed);
        emit JobClaimed(jobId, msg.sender);
    }

    /// @notice Settles a claimed job with its result and the client's receipt: before the
    /// deadline, or during the grace period after it, or before the close window ends if the
    /// client asked to close. The host is credited for `receipt.tokens`, which the client signed.
    function submitResult(
        uint256 jobId,
        JobTerms calldata terms,
        bytes calldata resultCid,
        Receipt calldata receipt,
        bytes calldata signature
    ) external nonReentrant {
        uint256 state = _load(jobId);
        _requireClaimed(jobId, state);
        _verify(jobId, state, terms);
        address host = terms.host;
        if (msg.sender != host) revert NotClaimer(jobId, host, msg.sender);
        {
            uint64 end = _settleBy(state, terms);
            if (block.timestamp > end) revert DeadlinePassed(jobId, end);
        }
        if (receipt.tokens > terms.maxTokens) revert TokensExceedMax(jobId, receipt.tokens, terms.maxTokens);
        if (resultCid.length == 0 || resultCid.length > MAX_CID_LENGTH) revert InvalidResultCid();
        _checkReceipt(jobId, terms.client, receipt, signature);
        delete _jobs[jobId];
        uint256 cost = uint256(receipt.tokens) * terms.pricePerToken;
        uint256 fee = (cost * terms.feeBps) / 10_000;
        uint256 refundAmount = _amount(terms) - cost;
        _settle(terms.token, host, cost - fee, fee, terms.client, refundAmount);
        emit JobCompleted(jobId, host, resultCid, receipt.transcript, receipt.tokens, cost - fee, fee, refundAmount);
    }

    /// @notice The claiming host gives a job up (for instance after a failed inference); the
    /// client is refunded in full at once instead of waiting for the deadline.
    function releaseJob(uint256 jobId, JobTerms calldata terms) external nonReentrant {
        uint256 state = _load(jobId);
        _requireClaimed(jobId, state);
        _verify(jobId, state, terms);
        if (msg.sender != terms.host) revert NotClaimer(jobId, terms.host, msg.sender);
        delete _jobs[jobId];
        _accounts[terms.token][terms.host].openClaims -= 1;
        uint256 amount = _amount(terms);
        _refund(terms.token, terms.client, amount);
        emit JobReleased(jobId, terms.host, amount);
    }

    // ----- views -----

    /// @notice An open job's status (Posted, Claimed or Closing), the end of its close window
    /// (while Closing, else 0) and the hash of its terms (top 216 bits of
    /// `keccak256(abi.encode(terms))`, see `termsHash`). Status None: no such job, or a
    /// finished one (its last event says how it ended). For a session's id, the session's
    /// status (SessionOpen or SessionClosing) and hash.
    function jobState(uint256 jobId) external view returns (JobStatus status, uint64 closeBy, bytes32 termsHash_) {
        uint256 state = _jobs[jobId];
        status = _status(state);
        closeBy = _closeBy(state);
        termsHash_ = bytes32(state & HASH_MASK);
    }

    /// @notice The stored hash of `terms`: `keccak256(abi.encode(terms))` with its low 40 bits
    /// cleared.
    function termsHash(JobTerms calldata terms) external pure returns (bytes32) {
        return bytes32(_hash(terms));
    }

    // ----- internal -----

    function _post(JobDetails calldata details, JobRequirements calldata requirements, address token, uint256 amount)
        private
        returns (uint256 jobId)
    {
        address host = requirements.host;
        _checkTerms(details, host, token, amount);
        jobId = _newId(keccak256(abi.encode(msg.sender, details.promptHash)));
        JobTerms memory terms = JobTerms({
            client: msg.sender,
            host: host,
            token: token,
            modelId: details.modelId,
            promptHash: details.promptHash,
            maxTokens: details.maxTokens,
            pricePerToken: details.pricePerToken,
            deadline: details.deadline,
            feeBps: _feeBps
        });
        _jobs[jobId] = _hash(terms) | uint256(JobStatus.Posted);
        emit JobPosted(jobId, details.modelId, host, terms);
    }

    /// Refuses malformed or underfunded terms: a zero price, an escrow other than exactly
    /// `maxTokens * pricePerToken`, too short a deadline, a price below the named host's.
    function _checkTerms(JobDetails calldata details, address host, address token, uint256 amount) private view {
        uint256 price = details.pricePerToken;
        _checkPayment(token, price, details.deadline);
        if (details.modelId == bytes32(0) || details.maxTokens == 0 || details.maxTokens > MAX_TOKENS) {
            revert InvalidJobDetails();
        }
        // Both factors are bounded (2^24 and 2^64), so the product cannot overflow.
        uint256 expected = uint256(details.maxTokens) * price;
        if (amount != expected) revert WrongAmount(expected, amount);
        if (host != address(0)) _checkHostPrice(host, token, price);
    }

    /// Requires `terms` to be the job's terms (checked after its status, so a call sent with
    /// terms that a claim has just changed is told the job is claimed).
    function _verify(uint256 jobId, uint256 state, JobTerms calldata terms) private pure {
        if (state & HASH_MASK != _hash(terms)) revert TermsMismatch(jobId);
    }

    function _hash(JobTerms memory terms) private pure returns (uint256) {
        return uint256(keccak256(abi.encode(terms))) & HASH_MASK;
    }

    function _amount(JobTerms calldata terms) private pure returns (uint256) {
        return uint256(terms.maxTokens) * terms.pricePerToken;
    }

    /// The last second a job may be settled (and after which it may be expired): the deadline
    /// while posted, the end of the grace period while claimed, the end of the close window
    /// while closing.
    function _settleBy(uint256 state, JobTerms calldata terms) private view returns (uint64) {
        JobStatus status = _status(state);
        if (status == JobStatus.Closing) return _closeBy(state);
        if (status == JobStatus.Claimed) return terms.deadline + submitGrace;
        return terms.deadline;
    }

    /// Requires a claimed or closing job.
    function _requireClaimed(uint256 jobId, uint256 state) private pure {
        JobStatus status = _status(state);
        if (status != JobStatus.Claimed && status != JobStatus.Closing) revert InvalidJobStatus(jobId, status);
    }

    function _requireStatus(uint256 jobId, uint256 state, JobStatus expected) private pure {
        JobStatus status = _status(state);
        if (status == expected) return;
        if (expected == JobStatus.Posted && (status == JobStatus.Claimed || status == JobStatus.Closing)) {
            revert JobAlreadyClaimed(jobId);
        }
        revert InvalidJobStatus(jobId, status);
    }
}
