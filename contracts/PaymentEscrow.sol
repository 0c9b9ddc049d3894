// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @title PaymentEscrow
/// @notice The funds book of the marketplace, which inherits it: every job's and session's funds, in ETH
/// (token address(0)) and ERC-20, are held by the marketplace contract itself (no separate
/// escrow contract, so no extra call and no extra account per payment). SafeERC20 makes tokens
/// that return no bool (like USDT) work; tokens that deliver less than asked (fee-on-transfer)
/// are refused.
///
/// Nothing is pushed that could block a settlement. A host's earnings are credited to it and
/// it withdraws them with `withdrawCredit` (one transfer for many jobs); protocol fees accrue
/// per token and the treasury withdraws them. A refund is sent to the client at once, and if
/// it cannot be delivered (a contract that rejects ETH, an address a token blocks) it is
/// credited instead. So no counterparty can hold a settlement or an expiry hostage, and the
/// contract always holds exactly the open jobs' funds plus `totalCredit` plus `accruedFees`.
///
/// Storage is laid out for the settlement path: per token and account one slot (the credit,
/// and for a host the jobs it holds claimed in this token), per token one slot (all credit,
/// all fees).
abstract contract PaymentEscrow is ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Gas forwarded with an ETH refund; a receiver needing more is credited instead.
    uint256 public constant REFUND_GAS = 50_000;

    /// What the contract owes one account in one token, and (for a host) how many of its
    /// claimed jobs in that token are open.
    struct Account {
        uint128 credit;
        uint32 openClaims;
    }

    /// The totals of one token.
    struct Book {
        uint128 credited;
        uint128 fees;
    }

    mapping(address => mapping(address => Account)) internal _accounts;
    mapping(address => Book) private _books;

    /// @notice A refund could not be delivered and was credited to `account`.
    event Credited(address indexed token, address indexed account, uint256 amount);
    /// @notice `account` withdrew its credit to `to`.
    event CreditWithdrawn(address indexed token, address indexed account, address to, uint256 amount);
    /// @notice The treasury withdrew the accrued fees in `token` to `to`.
    event FeesWithdrawn(address indexed token, address to, uint256 amount);

    /// @notice Sending ETH to `to` failed.
    error EthTransferFailed(address to, uint256 amount);
    /// @notice The contract received less than the amount (a fee-on-transfer token).
    error TransferShortfall(address token, uint256 amount, uint256 received);

    /// @notice Sends the caller's credit in `token` to `to`.
    function withdrawCredit(address token, address to) external nonReentrant {
        Account storage account = _accounts[token][msg.sender];
        uint256 amount = account.credit;
        if (amount == 0) return;
        account.credit = 0;
        _books[token].credited -= uint128(amount);
        _send(token, to, amount);
        emit CreditWithdrawn(token, msg.sender, to, amount);
    }

    /// @notice What the contract owes `account` in `token`: a host's earnings and refunds that
    /// could not be delivered.
    function credit(address token, address account) external view returns (uint256) {
        return _accounts[token][account].credit;
    }

    /// @notice The sum of every account's credit in `token`.
    function totalCredit(address token) external view returns (uint256) {
        return _books[token].credited;
    }

    /// @notice Protocol fees earned in `token` and not yet withdrawn by the treasury.
    function accruedFees(address token) external view returns (uint256) {
        return _books[token].fees;
    }

    /// @notice What the contract holds in `token` (address(0) is ETH): open jobs, credits and
    /// accrued fees.
    function escrowBalance(address token) external view returns (uint256) {
        if (token == address(0)) return address(this).balance;
        return IERC20(token).balanceOf(address(this));
    }

    /// Moves `amount` of `token` from the caller to this contract and refuses tokens that
    /// deliver less than they were asked to move: the escrow must hold what it records.
    function _pull(address token, uint256 amount) internal {
        uint256 before = IERC20(token).balanceOf(address(this));
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = IERC20(token).balanceOf(address(this)) - before;
        if (received != amount) revert TransferShortfall(token, amount, received);
    }

    /// Settles one job's money: credits the host and ends its claim (see `_credit`), then
    /// refunds the client (crediting it if it cannot receive).
    function _settle(address token, address host, uint256 paid, uint256 fee, address client, uint256 refundAmount)
        internal
    {
        _credit(token, host, paid, fee, 1);
        _refund(token, client, refundAmount);
    }

    /// The one settlement path of jobs and sessions: credits `paid` to the host and ends
    /// `claimsEnded` of its claims (1 for a job, 0 for a session, which holds none) in one
    /// write, and accrues the fee. Every amount is below 2^96 (a job's below 2^88: max tokens
    /// 2^24 x price 2^64; a session's deposit is at most 2^96-1), so the 128-bit fields cannot
    /// overflow in practice and checked arithmetic reverts if they ever would.
    function _credit(address token, address host, uint256 paid, uint256 fee, uint32 claimsEnded) internal {
        Account storage account = _accounts[token][host];
        account.credit += uint128(paid);
        account.openClaims -= claimsEnded;
        Book storage book = _books[token];
        book.credited += uint128(paid);
        book.fees += uint128(fee);
    }

    /// Sends the accrued fees in `token` to `to`.
    function _withdrawFees(address token, address to) internal returns (uint256 amount) {
        Book storage book = _books[token];
        amount = book.fees;
        if (amount == 0) return 0;
        book.fees = 0;
        _send(token, to, amount);
        emit FeesWithdrawn(token, to, amount);
    }

    /// Returns `amount` of `token` to `to`, crediting it if it cannot be delivered.
    function _refund(address token, address to, uint256 amount) internal {
        if (amount == 0) return;
        bool ok;
        if (token == address(0)) {
            uint256 gasLimit = REFUND_GAS;
            // No return data is copied, so a receiver cannot make this expensive.
            assembly {
                ok := call(gasLimit, to, amount, 0, 0, 0, 0)
            }
        } else {
            ok = IERC20(token).trySafeTransfer(to, amount);
        }
        if (!ok) {
            _accounts[token][to].credit += uint128(amount);
            _books[token].credited += uint128(amount);
            emit Credited(token, to, amount);
        }
    }

    function _send(address token, address to, uint256 amount) private {
        if (token == address(0)) {
            (bool ok,) = to.call{value: amount}("");
            if (!ok) revert EthTransferFailed(to, amount);
        } else {
            IERC20(token).safeTransfer(to, amount);
        }
    }
}
