// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title ReentrantToken
/// @notice A malicious ERC-20 used by tests: once armed, the next token movement calls back
/// into `target` with `data` (for instance the marketplace or the escrow) and records whether
/// that re-entrant call succeeded. It can also act as a job client through `execute`.
contract ReentrantToken is ERC20 {
    /// @notice Contract called back on the next transfer when armed.
    address public target;
    /// @notice Calldata of the call-back.
    bytes public attackData;
    /// @notice Whether the next transfer triggers the call-back.
    bool public armed;
    /// @notice How many call-backs were attempted.
    uint256 public attempts;
    /// @notice How many call-backs succeeded (must stay zero against a safe escrow).
    uint256 public successes;
    /// @notice Return or revert data of the last call-back.
    bytes public lastResult;

    constructor() ERC20("Reentrant Token", "EVIL") {}

    /// @notice Open faucet.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Arms the call-back for the next token movement.
    function arm(address target_, bytes calldata data) external {
        target = target_;
        attackData = data;
        armed = true;
    }

    /// @notice Lets this contract act as a client: calls `to` with `data`, bubbling reverts.
    function execute(address to, bytes calldata data) external payable returns (bytes memory) {
        (bool ok, bytes memory ret) = to.call{value: msg.value}(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
        return ret;
    }

    /// @notice Accepts ETH refunds when acting as a client.
    receive() external payable {}

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (armed) {
            armed = false;
            attempts += 1;
            (bool ok, bytes memory ret) = target.call(attackData);
            if (ok) successes += 1;
            lastResult = ret;
        }
    }
}
