// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title TestFeeToken
/// @notice A fee-on-transfer token for tests: every transfer burns 1% of the amount, so the
/// receiver gets less than the sender sent. The marketplace must refuse it.
contract TestFeeToken is ERC20 {
    constructor() ERC20("Test Fee Token", "FEE") {}

    /// @notice Open faucet: anyone may mint on a local chain.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function _update(address from, address to, uint256 value) internal override {
        if (from != address(0) && to != address(0)) {
            uint256 burned = value / 100;
            super._update(from, address(0), burned);
            value -= burned;
        }
        super._update(from, to, value);
    }
}
