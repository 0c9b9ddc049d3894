// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title TestFAB
/// @notice The FAB staking token for local chains: 18 decimals, open faucet mint.
contract TestFAB is ERC20 {
    constructor() ERC20("Test Fabstir", "FAB") {}

    /// @notice Open faucet: anyone may mint on a local chain.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
