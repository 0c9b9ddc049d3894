// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {NodeRegistry} from "./NodeRegistry.sol";
import {PaymentEscrow} from "./PaymentEscrow.sol";

/// @title MarketplaceBase
/// @notice What one-shot jobs (JobMarketplace) and sessions (Sessions) share: the owner's
/// configuration (accepted tokens, fee, treasury), the time rules, the registry, the funds
/// book (PaymentEscrow), the client's EIP-712 receipts and the one id space. Jobs and sessions
/// live in the same mapping, one slot each, so an id names one of them only and a receipt
/// signed for one can never be used for the other.
///
/// A slot packs the hash of the terms (its top 216 bits), the end of a close window (32 bits,
/// while closing) and the status (8 bits). An id is `block << 32 | n`: it carries the block the
/// job or session began in, so readers find its first event without scanning the chain.
abstract contract MarketplaceBase is Ownable2Step, EIP712, PaymentEscrow {
    /// @notice Highest protocol fee, in basis points (10%).
    uint16 public constant MAX_FEE_BPS = 1000;
    /// @notice The EIP-712 type hash of a receipt (for a job or a session: the id says which).
    bytes32 public constant RECEIPT_TYPEHASH = keccak256("Receipt(uint256 jobId,uint64 tokens,bytes32 transcript)");

    uint256 internal constant STATUS_MASK = 0xFF;
    uint256 internal constant CLOSE_SHIFT = 8;
    uint256 internal constant HASH_MASK = ~uint256(0xFF_FFFF_FFFF);

    /// @notice Life cycle of an id's slot: a one-shot job (Posted to Closing) or a session
    /// (SessionOpen, SessionClosing). Finished ones are deleted (None); their last event says
    /// how they ended. Completed, Cancelled, Expired and Released are never stored: they name
    /// outcomes for readers.
    enum JobStatus {
        None,
        Posted,
        Claimed,
        Completed,
        Cancelled,
        Expired,
        Released,
        Closing,
        SessionOpen,
        SessionClosing
    }

    /// @notice What the client signed (EIP-712 `Receipt`, with the job or session id): the
    /// tokens it received in all and the transcript hash after them.
    struct Receipt {
        uint64 tokens;
        bytes32 transcript;
    }

    /// @notice Where hosts are registered.
    NodeRegistry public immutable registry;
    /// @notice Shortest time from posting to a job's deadline (or from opening to a session's
    /// expiry), in seconds.
    uint64 public immutable minJobDuration;
    /// @notice Seconds after a deadline (or expiry) during which the host may still settle and
    /// nobody can expire.
    uint64 public immutable submitGrace;
    /// @notice Seconds a host has to settle after the client asked to close.
    uint64 public immutable closeWindow;

    // One slot: read together on every post.
    address private _treasury;
    uint16 internal _feeBps;

    mapping(uint256 => uint256) internal _jobs;
    address[] private _acceptedTokens;
    // Every token ever accepted, append-only: where a host's open claims may be counted.
    address[] private _everAccepted;
    mapping(address => uint256) private _tokenIndex; // 1-based; 0 = not accepted
    mapping(address => bool) private _wasAccepted;

    /// @notice The payment token is not on the accepted list.
    error TokenNotAccepted(address token);
    /// @notice A price per token must be above zero.
    error ZeroPrice();
    /// @notice The price per token is above 2^64-1 base units.
    error PriceTooLarge(uint256 pricePerToken);
    /// @notice The named host asks more per token in this payment token (0: it does not take it).
    error BelowHostPrice(address host, uint256 hostPrice, uint256 pricePerToken);
    /// @notice The host is not an active registered node serving the model.
    error HostNotEligible(address host, bytes32 modelId);
    /// @notice The deadline (or expiry) is too soon (before `minJobDuration` from now) or too far.
    error InvalidDeadline(uint64 deadline, uint256 currentTime);
    /// @notice No open job or session with this id.
    error JobNotFound(uint256 jobId);
    /// @notice The terms passed are not the id's (they do not hash to what is stored).
    error TermsMismatch(uint256 jobId);
    /// @notice The job or session is not in a state that allows this call.
    error InvalidJobStatus(uint256 jobId, JobStatus status);
    /// @notice Only the job's claiming host (or the session's host) may do this.
    error NotClaimer(uint256 jobId, address claimer, address caller);
    /// @notice Only the client may do this.
    error NotClient(uint256 jobId, address client, address caller);
    /// @notice The deadline (or the last second to settle) has passed.
    error DeadlinePassed(uint256 jobId, uint64 deadline);
    /// @notice The deadline (or the last second to settle) has not passed yet.
    error DeadlineNotReached(uint256 jobId, uint64 deadline);
    /// @notice The receipt is not signed by the client (wrong signer, id, chain or contract, or
    /// altered).
    error InvalidReceipt(uint256 jobId);
    /// @notice The fee is above `MAX_FEE_BPS`.
    error FeeTooHigh(uint16 feeBps);
    /// @notice A zero address where one is required.
    error ZeroAddress();
    /// @notice Only the treasury may withdraw the fees.
    error NotTreasury(address caller);
    /// @notice Ownership cannot be renounced: the marketplace would lose its configuration.
    error RenounceDisabled();

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
        _treasury = treasury_;
        _feeBps = feeBps_;
    }

    // ----- owner -----

    /// @notice Adds or removes a payment token (address(0) is ETH).
    function setTokenAccepted(address token, bool accepted) external onlyOwner {
        uint256 index = _tokenIndex[token];
        if (accepted && index == 0) {
            if (!_wasAccepted[token]) {
                _wasAccepted[token] = true;
                _everAccepted.push(token);
            }
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

    /// @notice Sets the protocol fee in basis points, for jobs and sessions begun from now on.
    function setFeeBps(uint16 feeBps_) external onlyOwner {
        if (feeBps_ > MAX_FEE_BPS) revert FeeTooHigh(feeBps_);
        _feeBps = feeBps_;
        emit FeeChanged(feeBps_);
    }

    /// @notice Sets the address that withdraws protocol fees.
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
        return _withdrawFees(token, to);
    }

    // ----- views -----

    /// @notice The EIP-712 domain separator receipts are signed under.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @notice Claimed jobs of `host` not yet settled, released or expired (they lock its
    /// stake), over every token ever accepted.
    function openClaims(address host) external view returns (uint256 open) {
        uint256 count = _everAccepted.length;
        for (uint256 i = 0; i < count; ++i) {
            open += _accounts[_everAccepted[i]][host].openClaims;
        }
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

    /// A new id in this block: `n` starts at the low 32 bits of `seed` and moves on past ids in
    /// use (a job or a session).
    function _newId(bytes32 seed) internal view returns (uint256 id) {
        uint256 n = uint32(uint256(seed));
        id = (block.number << 32) | n;
        while (_jobs[id] != 0) {
            n = uint32(n + 1);
            id = (block.number << 32) | n;
        }
    }

    /// Refuses a token not accepted, a zero or too large price, and a deadline too soon or
    /// too far.
    function _checkPayment(address token, uint256 price, uint64 deadline) internal view {
        if (_tokenIndex[token] == 0) revert TokenNotAccepted(token);
        if (price == 0) revert ZeroPrice();
        if (price > type(uint64).max) revert PriceTooLarge(price);
        if (deadline < block.timestamp + minJobDuration || deadline > type(uint32).max) {
            revert InvalidDeadline(deadline, block.timestamp);
        }
    }

    /// Refuses a price below what `host` asks in `token` (or a token it does not take).
    function _checkHostPrice(address host, address token, uint256 price) internal view {
        uint256 hostPrice = registry.priceOf(host, token);
        if (hostPrice == 0 || price < hostPrice) revert BelowHostPrice(host, hostPrice, price);
    }

    /// The id's state, after checking that it exists.
    function _load(uint256 id) internal view returns (uint256 state) {
        state = _jobs[id];
        if (state == 0) revert JobNotFound(id);
    }

    function _status(uint256 state) internal pure returns (JobStatus) {
        return JobStatus(uint8(state & STATUS_MASK));
    }

    /// The end of the close window stored in `state`.
    function _closeBy(uint256 state) internal pure returns (uint64) {
        return uint64(uint32(state >> CLOSE_SHIFT));
    }

    /// Starts the close window of `id` (a job's or a session's, its client asking): the host
    /// may still settle until `min(now + closeWindow, end + submitGrace)`, `end` being the
    /// job's deadline or the session's expiry. Stores the `closing` status; returns that time.
    function _startClose(uint256 id, uint256 state, JobStatus closing, uint64 end) internal returns (uint64) {
        uint256 settleBy = block.timestamp + closeWindow;
        uint256 graceEnd = uint256(end) + submitGrace;
        if (settleBy > graceEnd) settleBy = graceEnd;
        state = _withStatus(state, closing, settleBy);
        _jobs[id] = state;
        return _closeBy(state);
    }

    /// `state` with its status and close window replaced.
    function _withStatus(uint256 state, JobStatus status, uint256 closeBy) internal pure returns (uint256) {
        if (closeBy > type(uint32).max) closeBy = type(uint32).max;
        return (state & HASH_MASK) | (closeBy << CLOSE_SHIFT) | uint256(status);
    }

    /// Requires `signature` to be `client`'s over the receipt for `id` (ECDSA for accounts,
    /// ERC-1271 for contract wallets).
    function _checkReceipt(uint256 id, address client, Receipt calldata receipt, bytes calldata signature)
        internal
        view
    {
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(RECEIPT_TYPEHASH, id, receipt.tokens, receipt.transcript)));
        if (!SignatureChecker.isValidSignatureNow(client, digest, signature)) revert InvalidReceipt(id);
    }
}
