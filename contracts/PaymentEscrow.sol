// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @title PaymentEscrow
/// @notice Holds the funds of every job, in ETH (token address(0)) and ERC-20. Only the
/// marketplace that created it can lock, release and refund: ETH arrives through `lockEth`,
/// ERC-20 funds are moved here by the marketplace from the client (who approved the
/// marketplace). SafeERC20 makes tokens that return no bool (like USDT) work.
///
/// Fees are never pushed: they accrue here per token and the treasury withdraws them through
/// the marketplace, so no settlement depends on the treasury accepting a transfer.
///
/// A refund the client cannot receive (a contract that rejects ETH, an address a token
/// blocks) does not block settlement or expiry: it is credited to the client, who withdraws
/// it with `withdrawCredit`. So a client can never hold a host's payment hostage, and funds are
/// never locked past a job's deadline.
contract PaymentEscrow is ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Gas forwarded with an ETH refund; a receiver needing more is credited instead.
    uint256 public constant REFUND_GAS = 50_000;

    /// @notice The marketplace allowed to move funds.
    address public immutable marketplace;

    /// @notice Refunds that could not be delivered, by token and account.
    mapping(address => mapping(address => uint256)) public credit;
    /// @notice The sum of `credit` per token: the escrow holds this on top of open jobs.
    mapping(address => uint256) public totalCredit;
    /// @notice Protocol fees earned and not yet withdrawn, per token.
    mapping(address => uint256) public accruedFees;

    /// @notice A refund could not be delivered and was credited to `account`.
    event Credited(address indexed token, address indexed account, uint256 amount);
    /// @notice `account` withdrew its credit to `to`.
    event CreditWithdrawn(address indexed token, address indexed account, address to, uint256 amount);
    /// @notice The treasury withdrew the accrued fees in `token` to `to`.
    event FeesWithdrawn(address indexed token, address to, uint256 amount);

    /// @notice The caller is not the marketplace.
    error NotMarketplace(address caller);
    /// @notice Sending ETH to `to` failed.
    error EthTransferFailed(address to, uint256 amount);

    constructor(address marketplace_) {
        marketplace = marketplace_;
    }

    modifier onlyMarketplace() {
        if (msg.sender != marketplace) revert NotMarketplace(msg.sender);
        _;
    }

    /// @notice Receives the ETH of a job posted with `postJob`.
    function lockEth() external payable onlyMarketplace {}

    /// @notice Pays a finished job: `paid` to the host, `fee` accrued for the treasury,
    /// `refund` to the client.
    function settle(address token, address host, uint256 paid, uint256 fee, address client, uint256 refundAmount)
        external
        onlyMarketplace
        nonReentrant
    {
        accruedFees[token] += fee;
        _send(token, host, paid);
        _refund(token, client, refundAmount);
    }

    /// @notice Sends the accrued fees in `token` to `to` (the marketplace checks that the
    /// treasury asked).
    function withdrawFees(address token, address to) external onlyMarketplace nonReentrant returns (uint256 amount) {
        amount = accruedFees[token];
        if (amount == 0) return 0;
        accruedFees[token] = 0;
        _send(token, to, amount);
        emit FeesWithdrawn(token, to, amount);
    }

    /// @notice Returns `amount` of `token` to `to` (a cancelled, expired or released job's
    /// client), crediting it if it cannot be delivered.
    function refund(address token, address to, uint256 amount) external onlyMarketplace nonReentrant {
        _refund(token, to, amount);
    }

    /// @notice Sends the caller's credit in `token` to `to`.
    function withdrawCredit(address token, address to) external nonReentrant {
        uint256 amount = credit[token][msg.sender];
        if (amount == 0) return;
        credit[token][msg.sender] = 0;
        totalCredit[token] -= amount;
        _send(token, to, amount);
        emit CreditWithdrawn(token, msg.sender, to, amount);
    }

    /// @notice What this escrow holds in `token` (address(0) is ETH).
    function balanceOf(address token) external view returns (uint256) {
        if (token == address(0)) return address(this).balance;
        return IERC20(token).balanceOf(address(this));
    }

    function _refund(address token, address to, uint256 amount) private {
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
            credit[token][to] += amount;
            totalCredit[token] += amount;
            emit Credited(token, to, amount);
        }
    }

    function _send(address token, address to, uint256 amount) private {
        if (amount == 0) return;
        if (token == address(0)) {
            (bool ok,) = to.call{value: amount}("");
            if (!ok) revert EthTransferFailed(to, amount);
        } else {
            IERC20(token).safeTransfer(to, amount);
        }
    }
}
