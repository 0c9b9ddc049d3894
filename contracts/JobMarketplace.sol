// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {NodeRegistry} from "./NodeRegistry.sol";
import {PaymentEscrow} from "./PaymentEscrow.sol";

/// @title JobMarketplace
/// @notice Clients post inference jobs with escrowed payment (ETH or an accepted ERC-20);
/// registered hosts claim them and settle with the result CID and the client's newest receipt:
/// an EIP-712 signature over (job id, tokens received, transcript hash), checked here with
/// ECDSA or ERC-1271, so contract wallets can be clients. A job is fully funded: its escrow is
/// exactly `maxTokens * pricePerToken`. The host is paid for the receipt's tokens and never
/// more, `tokens * pricePerToken` less the protocol fee (its rate fixed when the job was posted),
/// which accrues to the treasury; the rest is refunded to the client in the same transaction.
/// The prompt never goes on chain, only its keccak256 hash. Clients approve this contract (the
/// spender) for ERC-20 payments; it moves the funds straight into the PaymentEscrow.
///
/// Time rules (immutable, set at deployment): a job lasts at least `minJobDuration`; a claimed
/// job may still be settled during `submitGrace` after its deadline, and nobody can expire it
/// then; a client whose host stays silent asks to close, and the host has `closeWindow` to
/// settle before the job can be expired and refunded. The owner has no power over jobs in
/// flight: it lists tokens and sets the fee and treasury for jobs posted later.
contract JobMarketplace is Ownable2Step, ReentrancyGuardTransient, EIP712 {
    using SafeERC20 for IERC20;

    /// @notice Highest protocol fee, in basis points (10%).
    uint16 public constant MAX_FEE_BPS = 1000;
    /// @notice Longest result CID accepted, in bytes.
    uint256 public constant MAX_CID_LENGTH = 128;
    /// @notice The EIP-712 type hash of a receipt.
    bytes32 public constant RECEIPT_TYPEHASH = keccak256("Receipt(uint256 jobId,uint64 tokens,bytes32 transcript)");

    /// @notice Life cycle of a job.
    enum JobStatus {
        None,
        Posted,
        Claimed,
        Completed,
        Cancelled,
        Expired,
        Released,
        Closing
    }

    /// @notice What the client asks for and pays.
    struct JobDetails {
        bytes32 modelId;
        bytes32 promptHash;
        uint32 maxTokens;
        uint256 pricePerToken;
        uint64 deadline;
    }

    /// @notice What the client signed for a job (EIP-712 `Receipt`, with the job id): the tokens
    /// it received and the transcript hash after them.
    struct Receipt {
        uint64 tokens;
        bytes32 transcript;
    }

    /// @notice Who may take the job: a named host, or address(0) for any registered host
    /// serving the model.
    struct JobRequirements {
        address host;
    }

    /// @notice A job as returned by `getJob`. The prompt hash is not stored (it is in the
    /// job's JobPosted event) to keep posting cheap.
    struct Job {
        address client;
        address host;
        address token;
        uint256 amount;
        bytes32 modelId;
        uint32 maxTokens;
        uint256 pricePerToken;
        uint64 deadline;
        JobStatus status;
        uint16 feeBps;
    }

    // Packed into three slots; a claim writes only slot 2. While Closing, `deadline` holds the
    // end of the host's last chance to settle. The model id is stored as an index
    // into `_models`; the prompt hash and the result CID live only in the JobPosted and
    // JobCompleted events.
    struct JobRecord {
        // slot 0
        address client;
        uint40 deadline;
        uint32 modelIndex;
        uint16 feeBps;
        // slot 1
        address token;
        uint96 amount;
        // slot 2
        address host;
        JobStatus status;
        uint24 maxTokens;
        uint64 pricePerToken;
    }

    /// @notice Where hosts are registered.
    NodeRegistry public immutable registry;
    /// @notice Where job funds are held; clients approve this address.
    PaymentEscrow public immutable escrow;
    /// @notice Shortest time from posting to a job's deadline, in seconds.
    uint64 public immutable minJobDuration;
    /// @notice Seconds after its deadline during which a claimed job may still be settled and
    /// cannot be expired.
    uint64 public immutable submitGrace;
    /// @notice Seconds a host has to settle after the client asked to close.
    uint64 public immutable closeWindow;

    // One slot: read or written together on every post and submit.
    address private _treasury;
    uint16 private _feeBps;
    uint64 private _nextJobId;

    mapping(uint256 => JobRecord) private _jobs;
    // Every model id ever posted, append-only, by 1-based index (0 = never seen).
    mapping(uint32 => bytes32) private _models;
    mapping(bytes32 => uint32) private _modelIndex;
    uint32 private _modelCount;
    address[] private _acceptedTokens;
    mapping(address => uint256) private _tokenIndex; // 1-based; 0 = not accepted

    /// @notice The payment token is not on the accepted list.
    error TokenNotAccepted(address token);
    /// @notice A job's price per token must be above zero.
    error ZeroPrice();
    /// @notice The escrow must be exactly `maxTokens * pricePerToken`.
    error WrongAmount(uint256 expected, uint256 amount);
    /// @notice The named host asks more per token in this payment token (0: it does not take it).
    error BelowHostPrice(address host, uint256 hostPrice, uint256 pricePerToken);
    /// @notice The escrow received less than the amount (a fee-on-transfer token).
    error TransferShortfall(address token, uint256 amount, uint256 received);
    /// @notice The price per token does not fit the packed storage (uint64).
    error PriceTooLarge(uint256 pricePerToken);
    /// @notice The job details are malformed (zero model id, or max tokens zero or above 2^24-1).
    error InvalidJobDetails();
    /// @notice The job's deadline is not in the future.
    error InvalidDeadline(uint64 deadline, uint256 currentTime);
    /// @notice No job with this id.
    error JobNotFound(uint256 jobId);
    /// @notice Another host has claimed the job already.
    error JobAlreadyClaimed(uint256 jobId, address claimer);
    /// @notice The job is not in a state that allows this call.
    error InvalidJobStatus(uint256 jobId, JobStatus status);
    /// @notice The job names another host.
    error NotAssignedHost(uint256 jobId, address assigned, address caller);
    /// @notice The host is not an active registered node serving the model.
    error HostNotEligible(address host, bytes32 modelId);
    /// @notice Only the claiming host may do this.
    error NotClaimer(uint256 jobId, address claimer, address caller);
    /// @notice Only the client may do this.
    error NotClient(uint256 jobId, address client, address caller);
    /// @notice The job's deadline has passed.
    error DeadlinePassed(uint256 jobId, uint64 deadline);
    /// @notice The job's deadline has not passed yet.
    error DeadlineNotReached(uint256 jobId, uint64 deadline);
    /// @notice More tokens reported than the job allows.
    error TokensExceedMax(uint256 jobId, uint256 tokensUsed, uint32 maxTokens);
    /// @notice The result CID is empty or too long.
    error InvalidResultCid();
    /// @notice The receipt is not signed by the job's client (wrong signer, job, chain or
    /// contract, or altered).
    error InvalidReceipt(uint256 jobId);
    /// @notice The fee is above `MAX_FEE_BPS`.
    error FeeTooHigh(uint16 feeBps);
    /// @notice A zero address where one is required.
    error ZeroAddress();
    /// @notice Only the treasury may withdraw the fees.
    error NotTreasury(address caller);
    /// @notice Ownership cannot be renounced: the marketplace would lose its configuration.
    error RenounceDisabled();

    /// @notice A job was posted and its payment escrowed. `host` is address(0) for open jobs.
    event JobPosted(
        uint256 indexed jobId,
        bytes32 indexed modelId,
        address indexed host,
        address client,
        address token,
        uint256 amount,
        bytes32 promptHash,
        uint32 maxTokens,
        uint256 pricePerToken,
        uint64 deadline
    );
    /// @notice A host claimed a job.
    event JobClaimed(uint256 indexed jobId, address indexed host);
    /// @notice A job finished and was settled.
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
    /// @notice The owner added or removed a payment token (address(0) is ETH).
    event TokenAcceptanceChanged(address indexed token, bool accepted);
    /// @notice The owner changed the protocol fee.
    event FeeChanged(uint16 feeBps);
    /// @notice The owner changed the treasury.
    event TreasuryChanged(address treasury);

    constructor(
        address owner_,
        NodeRegistry registry_,
        address treasury_,
        uint16 feeBps_,
        uint64 minJobDuration_,
        uint64 submitGrace_,
        uint64 closeWindow_
    ) Ownable(owner_) EIP712("Fabstir Marketplace", "1") {
        if (treasury_ == address(0) || address(registry_) == address(0)) revert ZeroAddress();
        if (feeBps_ > MAX_FEE_BPS) revert FeeTooHigh(feeBps_);
        registry = registry_;
        minJobDuration = minJobDuration_;
        submitGrace = submitGrace_;
        closeWindow = closeWindow_;
        escrow = new PaymentEscrow(address(this));
        _treasury = treasury_;
        _feeBps = feeBps_;
        _nextJobId = 1;
    }

    // ----- owner -----

    /// @notice Adds or removes a payment token (address(0) is ETH).
    function setTokenAccepted(address token, bool accepted) external onlyOwner {
        uint256 index = _tokenIndex[token];
        if (accepted && index == 0) {
            _acceptedTokens.push(token);
            _tokenIndex[token] = _acceptedTokens.length;
        } else if (!accepted && index != 0) {
            uint256 last = _acceptedTokens.length;
            if (index != last) {
                address moved = _acceptedTokens[last - 1];
                _acceptedTokens[index - 1] = moved;
                _tokenIndex[moved] = index;
            }
            _acceptedTokens.pop();
            delete _tokenIndex[token];
        } else {
            return;
        }
        emit TokenAcceptanceChanged(token, accepted);
    }

    /// @notice Sets the protocol fee in basis points.
    function setFeeBps(uint16 feeBps_) external onlyOwner {
        if (feeBps_ > MAX_FEE_BPS) revert FeeTooHigh(feeBps_);
        _feeBps = feeBps_;
        emit FeeChanged(feeBps_);
    }

    /// @notice Sets the address receiving protocol fees.
    function setTreasury(address treasury_) external onlyOwner {
        if (treasury_ == address(0)) revert ZeroAddress();
        _treasury = treasury_;
        emit TreasuryChanged(treasury_);
    }

    /// @notice Disabled: see `RenounceDisabled`.
    function renounceOwnership() public view override onlyOwner {
        revert RenounceDisabled();
    }

    // ----- treasury -----

    /// @notice Sends the fees accrued in `token` to `to`; only the treasury.
    function withdrawFees(address token, address to) external nonReentrant returns (uint256) {
        if (msg.sender != _treasury) revert NotTreasury(msg.sender);
        if (to == address(0)) revert ZeroAddress();
        return escrow.withdrawFees(token, to);
    }

    // ----- client -----

    /// @notice Posts a job paid in ETH; the escrow is `msg.value`.
    function postJob(JobDetails calldata details, JobRequirements calldata requirements)
        external
        payable
        nonReentrant
        returns (uint256 jobId)
    {
        jobId = _post(details, requirements, address(0), msg.value);
        escrow.lockEth{value: msg.value}();
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
    function cancelJob(uint256 jobId) external nonReentrant {
        JobRecord storage job = _jobs[jobId];
        _requireStatus(jobId, job, JobStatus.Posted);
        address client = job.client;
        if (msg.sender != client) revert NotClient(jobId, client, msg.sender);
        job.status = JobStatus.Cancelled;
        uint256 amount = job.amount;
        escrow.refund(job.token, client, amount);
        emit JobCancelled(jobId, client, amount);
    }

    /// @notice Asks to close a claimed job whose host is silent; only its client. The host may
    /// still settle until `closeWindow` from now (or its grace period's end, if sooner); then
    /// anyone may expire the job and the client is refunded.
    function requestClose(uint256 jobId) external {
        JobRecord storage job = _jobs[jobId];
        _requireStatus(jobId, job, JobStatus.Claimed);
        address client = job.client;
        if (msg.sender != client) revert NotClient(jobId, client, msg.sender);
        uint256 settleBy = block.timestamp + closeWindow;
        uint256 graceEnd = uint256(job.deadline) + submitGrace;
        if (settleBy > graceEnd) settleBy = graceEnd;
        job.deadline = uint40(settleBy);
        job.status = JobStatus.Closing;
        emit CloseRequested(jobId, job.host, uint64(settleBy));
    }

    /// @notice Ends an unfinished job whose time is up and refunds its client in full; anyone may
    /// call it. An unclaimed job's time ends at its deadline, a claimed one's at the end of the
    /// grace period, a closing one's at the end of the close window.
    function expireJob(uint256 jobId) external nonReentrant {
        JobRecord storage job = _jobs[jobId];
        JobStatus status = job.status;
        if (status == JobStatus.None) revert JobNotFound(jobId);
        if (status != JobStatus.Posted && status != JobStatus.Claimed && status != JobStatus.Closing) {
            revert InvalidJobStatus(jobId, status);
        }
        uint64 end = _settleBy(job, status);
        if (block.timestamp <= end) revert DeadlineNotReached(jobId, end);
        job.status = JobStatus.Expired;
        if (status != JobStatus.Posted) registry.closeClaim(job.host);
        uint256 amount = job.amount;
        escrow.refund(job.token, job.client, amount);
        emit JobExpired(jobId, msg.sender, amount);
    }

    // ----- host -----

    /// @notice Claims a posted job; only an active registered host serving the model, and the
    /// assigned host if the job names one. The claim locks the host's stake until the job ends.
    function claimJob(uint256 jobId) external {
        JobRecord storage job = _jobs[jobId];
        JobStatus status = job.status;
        if (status != JobStatus.Posted) {
            if (status == JobStatus.Claimed) revert JobAlreadyClaimed(jobId, job.host);
            if (status == JobStatus.None) revert JobNotFound(jobId);
            revert InvalidJobStatus(jobId, status);
        }
        uint64 deadline = job.deadline;
        if (block.timestamp > deadline) revert DeadlinePassed(jobId, deadline);
        address assigned = job.host;
        if (assigned != address(0) && assigned != msg.sender) revert NotAssignedHost(jobId, assigned, msg.sender);
        // The registry is trusted (set at construction), so no reentrancy guard is needed.
        bytes32 modelId = _models[job.modelIndex];
        if (!registry.openClaim(msg.sender, modelId)) revert HostNotEligible(msg.sender, modelId);
        job.host = msg.sender;
        job.status = JobStatus.Claimed;
        emit JobClaimed(jobId, msg.sender);
    }

    /// @notice Settles a claimed job with its result and the client's receipt: before the
    /// deadline, or during the grace period after it, or before the close window ends if the
    /// client asked to close. The host is paid for `receipt.tokens`, which the client signed.
    function submitResult(
        uint256 jobId,
        bytes calldata resultCid,
        Receipt calldata receipt,
        bytes calldata signature
    ) external nonReentrant {
        JobRecord storage job = _jobs[jobId];
        address host = job.host;
        {
            JobStatus status = _requireClaimed(jobId, job);
            if (msg.sender != host) revert NotClaimer(jobId, host, msg.sender);
            uint64 end = _settleBy(job, status);
            if (block.timestamp > end) revert DeadlinePassed(jobId, end);
            uint32 maxTokens = job.maxTokens;
            if (receipt.tokens > maxTokens) revert TokensExceedMax(jobId, receipt.tokens, maxTokens);
            if (resultCid.length == 0 || resultCid.length > MAX_CID_LENGTH) revert InvalidResultCid();
        }
        _checkReceipt(jobId, job.client, receipt, signature);
        job.status = JobStatus.Completed;
        registry.closeClaim(host);
        (uint256 paid, uint256 fee, uint256 refundAmount) = _pay(job, host, receipt.tokens);
        emit JobCompleted(jobId, host, resultCid, receipt.transcript, receipt.tokens, paid, fee, refundAmount);
    }

    /// @notice The claiming host gives a job up (for instance after a failed inference); the
    /// client is refunded in full at once instead of waiting for the deadline.
    function releaseJob(uint256 jobId) external nonReentrant {
        JobRecord storage job = _jobs[jobId];
        _requireClaimed(jobId, job);
        address host = job.host;
        if (msg.sender != host) revert NotClaimer(jobId, host, msg.sender);
        job.status = JobStatus.Released;
        registry.closeClaim(host);
        uint256 amount = job.amount;
        escrow.refund(job.token, job.client, amount);
        emit JobReleased(jobId, host, amount);
    }

    // ----- views -----

    /// @notice The EIP-712 domain separator receipts are signed under.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @notice The job with id `jobId` (status None if there is none).
    function getJob(uint256 jobId) external view returns (Job memory) {
        JobRecord storage job = _jobs[jobId];
        return Job({
            client: job.client,
            host: job.host,
            token: job.token,
            amount: job.amount,
            modelId: _models[job.modelIndex],
            maxTokens: job.maxTokens,
            pricePerToken: job.pricePerToken,
            deadline: job.deadline,
            status: job.status,
            feeBps: job.feeBps
        });
    }

    /// @notice How many jobs were ever posted; ids run from 1 to this number.
    function jobCount() external view returns (uint256) {
        return _nextJobId - 1;
    }

    /// @notice The accepted payment tokens (address(0) is ETH).
    function acceptedTokens() external view returns (address[] memory) {
        return _acceptedTokens;
    }

    /// @notice Whether `token` is accepted for payment.
    function isTokenAccepted(address token) external view returns (bool) {
        return _tokenIndex[token] != 0;
    }

    /// @notice The protocol fee in basis points.
    function feeBps() external view returns (uint16) {
        return _feeBps;
    }

    /// @notice The address receiving protocol fees.
    function treasury() external view returns (address) {
        return _treasury;
    }

    // ----- internal -----

    function _post(JobDetails calldata details, JobRequirements calldata requirements, address token, uint256 amount)
        private
        returns (uint256 jobId)
    {
        _checkTerms(details, requirements.host, token, amount);
        jobId = _nextJobId;
        _nextJobId = uint64(jobId + 1);
        address host = requirements.host;
        _jobs[jobId] = JobRecord({
            client: msg.sender,
            deadline: uint40(details.deadline),
            modelIndex: _modelIndexOf(details.modelId),
            feeBps: _feeBps,
            token: token,
            amount: uint96(amount),
            host: host,
            status: JobStatus.Posted,
            maxTokens: uint24(details.maxTokens),
            pricePerToken: uint64(details.pricePerToken)
        });
        emit JobPosted(
            jobId,
            details.modelId,
            host,
            msg.sender,
            token,
            amount,
            details.promptHash,
            details.maxTokens,
            details.pricePerToken,
            details.deadline
        );
    }

    /// Refuses malformed or underfunded terms: a zero price, an escrow other than exactly
    /// `maxTokens * pricePerToken`, too short a deadline, a price below the named host's.
    function _checkTerms(JobDetails calldata details, address host, address token, uint256 amount) private view {
        if (_tokenIndex[token] == 0) revert TokenNotAccepted(token);
        uint256 price = details.pricePerToken;
        if (price == 0) revert ZeroPrice();
        if (price > type(uint64).max) revert PriceTooLarge(price);
        if (details.modelId == bytes32(0) || details.maxTokens == 0 || details.maxTokens > type(uint24).max) {
            revert InvalidJobDetails();
        }
        // Both factors are bounded (2^24 and 2^64), so the product fits the escrow's uint96.
        uint256 expected = uint256(details.maxTokens) * price;
        if (amount != expected) revert WrongAmount(expected, amount);
        if (details.deadline < block.timestamp + minJobDuration || details.deadline > type(uint40).max) {
            revert InvalidDeadline(details.deadline, block.timestamp);
        }
        if (host != address(0)) {
            uint256 hostPrice = registry.priceOf(host, token);
            if (hostPrice == 0 || price < hostPrice) revert BelowHostPrice(host, hostPrice, price);
        }

    }

    function _modelIndexOf(bytes32 modelId) private returns (uint32 index) {
        index = _modelIndex[modelId];
        if (index == 0) {
            index = ++_modelCount;
            _models[index] = modelId;
            _modelIndex[modelId] = index;
        }
    }

    /// Moves `amount` of `token` from the caller to the escrow and refuses tokens that deliver
    /// less than they were asked to move (fee-on-transfer): the escrow must hold what it records.
    function _pull(address token, uint256 amount) private {
        uint256 before = IERC20(token).balanceOf(address(escrow));
        IERC20(token).safeTransferFrom(msg.sender, address(escrow), amount);
        uint256 received = IERC20(token).balanceOf(address(escrow)) - before;
        if (received != amount) revert TransferShortfall(token, amount, received);
    }

    /// Pays `host` for `tokens` at the job's price less the fee fixed at posting, accrues the
    /// fee, refunds the rest to the client. Never above the escrow: it is exactly
    /// `maxTokens * pricePerToken` and `tokens <= maxTokens`.
    function _pay(JobRecord storage job, address host, uint256 tokens)
        private
        returns (uint256 paid, uint256 fee, uint256 refundAmount)
    {
        uint256 cost = tokens * job.pricePerToken;
        fee = (cost * job.feeBps) / 10_000;
        paid = cost - fee;
        refundAmount = job.amount - cost;
        escrow.settle(job.token, host, paid, fee, job.client, refundAmount);
    }

    /// Requires `signature` to be `client`'s over the receipt for `jobId` (ECDSA for accounts,
    /// ERC-1271 for contract wallets).
    function _checkReceipt(uint256 jobId, address client, Receipt calldata receipt, bytes calldata signature)
        private
        view
    {
        bytes32 digest =
            _hashTypedDataV4(keccak256(abi.encode(RECEIPT_TYPEHASH, jobId, receipt.tokens, receipt.transcript)));
        if (!SignatureChecker.isValidSignatureNow(client, digest, signature)) revert InvalidReceipt(jobId);
    }

    /// The last second a job in `status` may be settled (and after which it may be expired).
    function _settleBy(JobRecord storage job, JobStatus status) private view returns (uint64) {
        uint64 deadline = job.deadline;
        return status == JobStatus.Claimed ? deadline + submitGrace : deadline;
    }

    /// Requires a claimed or closing job; returns which.
    function _requireClaimed(uint256 jobId, JobRecord storage job) private view returns (JobStatus status) {
        status = job.status;
        if (status == JobStatus.Claimed || status == JobStatus.Closing) return status;
        if (status == JobStatus.None) revert JobNotFound(jobId);
        revert InvalidJobStatus(jobId, status);
    }

    function _requireStatus(uint256 jobId, JobRecord storage job, JobStatus expected) private view {
        JobStatus status = job.status;
        if (status == expected) return;
        if (status == JobStatus.None) revert JobNotFound(jobId);
        if (expected == JobStatus.Posted && status == JobStatus.Claimed) revert JobAlreadyClaimed(jobId, job.host);
        revert InvalidJobStatus(jobId, status);
    }
}
