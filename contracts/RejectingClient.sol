// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";

/// @title RejectingClient
/// @notice A contract wallet used by tests as a job client: it rejects ETH (it has no receive
/// or fallback function), so refunds to it cannot be delivered, and it signs receipts through
/// ERC-1271 with the key of the account that deployed it.
contract RejectingClient is IERC1271 {
    /// @notice The account whose signatures this wallet accepts.
    address public immutable owner;

    constructor() {
        owner = msg.sender;
    }

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

    /// @notice ERC-1271: valid when the owner signed `hash`.
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(hash, signature);
        if (err == ECDSA.RecoverError.NoError && signer == owner) return IERC1271.isValidSignature.selector;
        return 0xffffffff;
    }
}
