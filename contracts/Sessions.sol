// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {MarketplaceBase} from "./MarketplaceBase.sol";

/// @title Sessions
/// @notice Many prompts on one deposit: a payment channel between a client and one host, for
/// one model, at one price, paid in ETH or an accepted ERC-20. Prompts cost no transaction:
/// the client signs cumulative receipts (the same EIP-712 `Receipt` as one-shot jobs, with the
/// session's id) for the tokens it received in all, and the host settles with the newest.
///
/// Settlement is monotonic: `settleSession` pays only the increase since the last settlement
/// and `closeSession` pays the increase and refunds the rest of the deposit. The fee is taken on
/// the running total (`fee(tokens) - fee(settled)`), so it is the same however often the host
/// settles. Only the host settles or closes; a client whose host is gone asks to close, and the
/// host has `closeWindow` to close with its newest receipt before anyone may expire the
/// session and refund the unsettled deposit. A session ends at `expiry`; the host may still
/// settle during `submitGrace` after it. The client may top the deposit up while it is open.
///
/// Storage: the session's terms (`SessionTerms`, with the opening deposit) are emitted once in
/// SessionOpened and stored only as a hash in the id's slot (shared with jobs, see
/// MarketplaceBase). What changes (deposit added since opening, tokens settled) is in a second
/// slot written only by top-ups and partial settlements, so a session that is opened and closed
/// writes one slot. Bit 40 of the id's slot (`HAS_BOOK`) says whether that second slot is in
/// use, so a session without top-ups or partial settlements never reads it either (the stored
/// hash is the terms' keccak256 with its low 41 bits cleared). Money moves through the same
/// `_credit` and `_refund` as for jobs.
abstract contract Sessions is MarketplaceBase {
    /// @notice Largest total deposit of a session, in base units (2^96-1).
    uint256 public constant MAX_SESSION_DEPOSIT = type(uint96).max;

    /// The slot bit saying the session's book (`_sessionBooks`) has been written.
    uint256 private constant HAS_BOOK = 1 << 40;
    /// The bits of a session's slot holding its terms' hash.
    uint256 private constant SESSION_HASH_MASK = HASH_MASK & ~HAS_BOOK;

    /// @notice What the client opens a session with.
    struct SessionDetails {
        bytes32 modelId;
        address host;
        uint256 pricePerToken;
        uint64 expiry;
    }

    /// @notice Everything a session is, as emitted in SessionOpened and passed back to every
    /// later call. `deposit` is what was escrowed at opening; top-ups are counted on chain
    /// (`sessionState`).
    struct SessionTerms {
        address client;
        address host;
        address token;
        bytes32 modelId;
        uint256 pricePerToken;
        uint256 deposit;
        uint64 expiry;
        uint16 feeBps;
    }

    /// What changes during a session.
    struct SessionBook {
        uint128 toppedUp;
        uint64 settledTokens;
    }

    mapping(uint256 => SessionBook) private _sessionBooks;

    /// @notice The session details are malformed (zero model id or zero host).
    error InvalidSessionDetails();
    /// @notice The deposit does not pay for one token.
    error DepositTooSmall(uint256 deposit, uint256 pricePerToken);
    /// @notice The total deposit would be above `MAX_SESSION_DEPOSIT`.
    error DepositTooLarge(uint256 deposit);
    /// @notice The session is paid in `token`, not in what this top-up sends.
    error WrongToken(uint256 sessionId, address token);
    /// @notice The receipt counts fewer tokens than were settled already (or, for a partial
    /// settlement, no more).
    error StaleReceipt(uint256 sessionId, uint64 tokens, uint64 settled);
    /// @notice The receipt's tokens cost more than the session's whole deposit.
    error ReceiptExceedsDeposit(uint256 sessionId, uint256 cost, uint256 deposit);

    /// @notice A session was opened and its deposit escrowed: its terms, which every later
    /// call passes back.
    event SessionOpened(uint256 indexed sessionId, bytes32 indexed modelId, address indexed host, SessionTerms terms);
    /// @notice The client added `amount` to the deposit; `deposit` is the new total.
    event SessionToppedUp(uint256 indexed sessionId, uint256 amount, uint256 deposit);
    /// @notice The host settled part of a session: `tokens` receipted in all so far; `paid`
    /// (credited to the host) and `fee` are this settlement's increase.
    event SessionSettled(
        uint256 indexed sessionId, address indexed host, uint64 tokens, bytes32 transcript, uint256 paid, uint256 fee
    );
    /// @notice The client asked to close; the host may settle or close until `settleBy`.
    event SessionCloseRequested(uint256 indexed sessionId, address indexed host, uint64 settleBy);
    /// @notice The host closed the session: `tokens` receipted in all, `paid` and `fee` over the
    /// whole session, `refund` returned to the client.
    event SessionClosed(
        uint256 indexed sessionId,
        address indexed host,
        uint64 tokens,
        bytes32 transcript,
        uint256 paid,
        uint256 fee,
        uint256 refund
    );
    /// @notice The session's time ran out without a close; the unsettled deposit was refunded.
    event SessionExpired(uint256 indexed sessionId, address indexed caller, uint64 tokens, uint256 refund);

    // ----- client -----

    /// @notice Opens a session paid in ETH; the deposit is `msg.value`.
    function openSession(SessionDetails calldata details) external payable nonReentrant returns (uint256 sessionId) {
        sessionId = _open(details, address(0), msg.value);
    }

    /// @notice Opens a session paid with `amount` of an accepted ERC-20 (approve this contract
    /// first).
    function openSessionWithToken(SessionDetails calldata details, address token, uint256 amount)
        external
        nonReentrant
        returns (uint256 sessionId)
    {
        if (token == address(0)) revert TokenNotAccepted(token);
        sessionId = _open(details, token, amount);
        _pull(token, amount);
    }

    /// @notice Opens a session paid with an EIP-2612 token, the permit (spender: this contract)
    /// used in the same transaction. A permit already used (front-run) is ignored as long as
    /// the allowance suffices.
    function openSessionWithPermit(
        SessionDetails calldata details,
        address token,
        uint256 amount,
        uint256 permitDeadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant returns (uint256 sessionId) {
        if (token == address(0)) revert TokenNotAccepted(token);
        sessionId = _open(details, token, amount);
        try IERC20Permit(token).permit(msg.sender, address(this), amount, permitDeadline, v, r, s) {} catch {}
        _pull(token, amount);
    }

    /// @notice Adds `msg.value` to an open ETH session's deposit; only its client.
    function topUpSession(uint256 sessionId, SessionTerms calldata terms) external payable nonReentrant {
        if (terms.token != address(0)) revert WrongToken(sessionId, terms.token);
        _topUp(sessionId, terms, msg.value);
    }

    /// @notice Adds `amount` of the session's ERC-20 to an open session's deposit (approve this
    /// contract first); only its client.
    function topUpSessionWithToken(uint256 sessionId, SessionTerms calldata terms, uint256 amount)
        external
        nonReentrant
    {
        if (terms.token == address(0)) revert WrongToken(sessionId, address(0));
        _topUp(sessionId, terms, amount);
        _pull(terms.token, amount);
    }

    /// @notice Asks to close a session whose host is silent; only its client. The host may
    /// still settle or close until `closeWindow` from now (or the end of the grace period after
    /// expiry, if sooner); then anyone may expire the session and the client is refunded what
    /// was not settled.
    function requestSessionClose(uint256 sessionId, SessionTerms calldata terms) external {
        uint256 state = _loadSession(sessionId, terms);
        if (_status(state) != JobStatus.SessionOpen) revert InvalidJobStatus(sessionId, _status(state));
        if (msg.sender != terms.client) revert NotClient(sessionId, terms.client, msg.sender);
        uint64 settleBy = _startClose(sessionId, state, JobStatus.SessionClosing, terms.expiry);
        emit SessionCloseRequested(sessionId, terms.host, settleBy);
    }

    /// @notice Ends a session whose time is up and refunds its client the deposit not settled;
    /// anyone may call it. An open session's time ends at the end of the grace period after
    /// its expiry, a closing one's at the end of the close window.
    function expireSession(uint256 sessionId, SessionTerms calldata terms) external nonReentrant {
        uint256 state = _loadSession(sessionId, terms);
        uint64 end = _sessionSettleBy(state, terms);
        if (block.timestamp <= end) revert DeadlineNotReached(sessionId, end);
        SessionBook memory book = _bookOf(sessionId, state);
        _end(sessionId, state);
        uint256 refundAmount = terms.deposit + book.toppedUp - uint256(book.settledTokens) * terms.pricePerToken;
        _refund(terms.token, terms.client, refundAmount);
        emit SessionExpired(sessionId, msg.sender, book.settledTokens, refundAmount);
    }

    // ----- host -----

    /// @notice Settles part of a session with the client's newest receipt; only its host, until
    /// the grace period after expiry ends (or the close window, if the client asked to close).
    /// Pays only the increase since the last settlement; the session stays open.
    function settleSession(
        uint256 sessionId,
        SessionTerms calldata terms,
        Receipt calldata receipt,
        bytes calldata signature
    ) external nonReentrant {
        (uint256 state, SessionBook memory book) = _checkSettlement(sessionId, terms, receipt);
        if (receipt.tokens == book.settledTokens) revert StaleReceipt(sessionId, receipt.tokens, book.settledTokens);
        _checkReceipt(sessionId, terms.client, receipt, signature);
        (uint256 paid, uint256 fee) = _increase(terms, book.settledTokens, receipt.tokens);
        _sessionBooks[sessionId].settledTokens = receipt.tokens;
        _markBook(sessionId, state);
        _credit(terms.token, terms.host, paid, fee, 0);
        emit SessionSettled(sessionId, terms.host, receipt.tokens, receipt.transcript, paid, fee);
    }

    /// @notice Closes a session with the client's newest receipt; only its host, until the
    /// grace period after expiry ends (or the close window, if the client asked to close). Pays
    /// the increase since the last settlement and refunds the rest of the deposit. A receipt
    /// counting no more than was settled needs no signature: the host may always close (to
    /// decline a session, say) without being paid more.
    function closeSession(
        uint256 sessionId,
        SessionTerms calldata terms,
        Receipt calldata receipt,
        bytes calldata signature
    ) external nonReentrant {
        (uint256 state, SessionBook memory book) = _checkSettlement(sessionId, terms, receipt);
        if (receipt.tokens != book.settledTokens) _checkReceipt(sessionId, terms.client, receipt, signature);
        (uint256 paid, uint256 fee) = _increase(terms, book.settledTokens, receipt.tokens);
        _end(sessionId, state);
        uint256 cost = uint256(receipt.tokens) * terms.pricePerToken;
        uint256 refundAmount = terms.deposit + book.toppedUp - cost;
        _credit(terms.token, terms.host, paid, fee, 0);
        _refund(terms.token, terms.client, refundAmount);
        uint256 totalFee = _feeOf(terms, receipt.tokens);
        emit SessionClosed(
            sessionId, terms.host, receipt.tokens, receipt.transcript, cost - totalFee, totalFee, refundAmount
        );
    }

    // ----- views -----

    /// @notice An open session's status (SessionOpen or SessionClosing), the end of its close
    /// window (while closing, else 0), the hash of its terms (see `sessionTermsHash`), the
    /// deposit added since opening and the tokens settled so far. Status None: no such
    /// session, or a finished one (its last event says how it ended).
    function sessionState(uint256 sessionId)
        external
        view
        returns (JobStatus status, uint64 closeBy, bytes32 termsHash_, uint256 toppedUp, uint64 settledTokens)
    {
        uint256 state = _jobs[sessionId];
        status = _status(state);
        closeBy = _closeBy(state);
        termsHash_ = bytes32(state & SESSION_HASH_MASK);
        SessionBook memory book = _sessionBooks[sessionId];
        toppedUp = book.toppedUp;
        settledTokens = book.settledTokens;
    }

    /// @notice The stored hash of `terms`: `keccak256(abi.encode(terms))` with its low 41 bits
    /// cleared.
    function sessionTermsHash(SessionTerms calldata terms) external pure returns (bytes32) {
        return bytes32(_sessionHash(terms));
    }

    // ----- internal -----

    function _open(SessionDetails calldata details, address token, uint256 deposit) private returns (uint256 id) {
        uint256 price = details.pricePerToken;
        _checkPayment(token, price, details.expiry);
        address host = details.host;
        if (details.modelId == bytes32(0) || host == address(0)) revert InvalidSessionDetails();
        if (deposit < price) revert DepositTooSmall(deposit, price);
        if (deposit > MAX_SESSION_DEPOSIT) revert DepositTooLarge(deposit);
        _checkHostPrice(host, token, price);
        if (!registry.canServe(host, details.modelId)) revert HostNotEligible(host, details.modelId);
        id = _newId(keccak256(abi.encode(msg.sender, host, details.expiry)));
        SessionTerms memory terms = SessionTerms({
            client: msg.sender,
            host: host,
            token: token,
            modelId: details.modelId,
            pricePerToken: price,
            deposit: deposit,
            expiry: details.expiry,
            feeBps: _feeBps
        });
        _jobs[id] = _sessionHash(terms) | uint256(JobStatus.SessionOpen);
        emit SessionOpened(id, details.modelId, host, terms);
    }

    function _topUp(uint256 id, SessionTerms calldata terms, uint256 amount) private {
        uint256 state = _loadSession(id, terms);
        if (_status(state) != JobStatus.SessionOpen) revert InvalidJobStatus(id, _status(state));
        if (msg.sender != terms.client) revert NotClient(id, terms.client, msg.sender);
        if (block.timestamp > terms.expiry) revert DeadlinePassed(id, terms.expiry);
        SessionBook storage book = _sessionBooks[id];
        uint256 toppedUp = book.toppedUp + amount;
        uint256 total = terms.deposit + toppedUp;
        if (total > MAX_SESSION_DEPOSIT) revert DepositTooLarge(total);
        book.toppedUp = uint128(toppedUp);
        _markBook(id, state);
        emit SessionToppedUp(id, amount, total);
    }

    /// Checks a settlement by the host before its time is up, with a receipt no older than the
    /// last one settled and within the deposit; returns the slot and the session's book.
    function _checkSettlement(uint256 id, SessionTerms calldata terms, Receipt calldata receipt)
        private
        view
        returns (uint256 state, SessionBook memory book)
    {
        state = _loadSession(id, terms);
        if (msg.sender != terms.host) revert NotClaimer(id, terms.host, msg.sender);
        uint64 end = _sessionSettleBy(state, terms);
        if (block.timestamp > end) revert DeadlinePassed(id, end);
        book = _bookOf(id, state);
        if (receipt.tokens < book.settledTokens) revert StaleReceipt(id, receipt.tokens, book.settledTokens);
        uint256 cost = uint256(receipt.tokens) * terms.pricePerToken;
        uint256 deposit = terms.deposit + book.toppedUp;
        if (cost > deposit) revert ReceiptExceedsDeposit(id, cost, deposit);
    }

    /// What the host is paid and the fee, for the tokens from `settled` to `tokens`.
    function _increase(SessionTerms calldata terms, uint64 settled, uint64 tokens)
        private
        pure
        returns (uint256 paid, uint256 fee)
    {
        fee = _feeOf(terms, tokens) - _feeOf(terms, settled);
        paid = uint256(tokens - settled) * terms.pricePerToken - fee;
    }

    /// The fee on `tokens` of the session in all.
    function _feeOf(SessionTerms calldata terms, uint64 tokens) private pure returns (uint256) {
        return (uint256(tokens) * terms.pricePerToken * terms.feeBps) / 10_000;
    }

    /// The session's book: read only if it was ever written (`HAS_BOOK`), else empty.
    function _bookOf(uint256 id, uint256 state) private view returns (SessionBook memory book) {
        if (state & HAS_BOOK != 0) book = _sessionBooks[id];
    }

    /// Records in the session's slot that its book has been written.
    function _markBook(uint256 id, uint256 state) private {
        if (state & HAS_BOOK == 0) _jobs[id] = state | HAS_BOOK;
    }

    /// Forgets a finished session: its slot, and its book if it has one.
    function _end(uint256 id, uint256 state) private {
        delete _jobs[id];
        if (state & HAS_BOOK != 0) delete _sessionBooks[id];
    }

    /// The session's slot, after checking that it is an open session with these terms.
    function _loadSession(uint256 id, SessionTerms calldata terms) private view returns (uint256 state) {
        state = _load(id);
        JobStatus status = _status(state);
        if (status != JobStatus.SessionOpen && status != JobStatus.SessionClosing) {
            revert InvalidJobStatus(id, status);
        }
        if (state & SESSION_HASH_MASK != _sessionHash(terms)) revert TermsMismatch(id);
    }

    /// The last second a session may be settled (and after which it may be expired): the end
    /// of the grace period after expiry while open, the end of the close window while closing.
    function _sessionSettleBy(uint256 state, SessionTerms calldata terms) private view returns (uint64) {
        if (_status(state) == JobStatus.SessionClosing) return _closeBy(state);
        return terms.expiry + submitGrace;
    }

    function _sessionHash(SessionTerms memory terms) private pure returns (uint256) {
        return uint256(keccak256(abi.encode(terms))) & SESSION_HASH_MASK;
    }
}
