// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

/// @title RejectingClient
/// @notice A job client used by tests that rejects ETH (it has no receive or fallback
/// function), so refunds to it cannot be delivered.
contract RejectingClient {
    /// @notice Calls `to` with `data` and the sent ETH, bubbling reverts.
    function execute(address to, bytes calldata data) external payable returns (bytes memory) {
        (bool ok, bytes memory ret) = to.call{value: msg.value}(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
        return ret;
    }
}
