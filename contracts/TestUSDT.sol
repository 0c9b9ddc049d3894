// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

/// @title TestUSDT
/// @notice A USDT-like token for local chains. Like mainnet USDT, `transfer`, `transferFrom`
/// and `approve` return nothing, and `approve` requires the allowance to be zero first
/// (or the new allowance to be zero). 6 decimals, open faucet mint.
contract TestUSDT {
    /// @notice Token name.
    string public constant name = "Test Tether USD";
    /// @notice Token symbol.
    string public constant symbol = "USDT";
    /// @notice 6 decimals, like USDT.
    uint8 public constant decimals = 6;
    /// @notice Total minted supply.
    uint256 public totalSupply;
    /// @notice Balances by owner.
    mapping(address => uint256) public balanceOf;
    /// @notice Allowances by owner and spender.
    mapping(address => mapping(address => uint256)) public allowance;

    /// @notice ERC-20 transfer event.
    event Transfer(address indexed from, address indexed to, uint256 value);
    /// @notice ERC-20 approval event.
    event Approval(address indexed owner, address indexed spender, uint256 value);

    /// @notice Open faucet: anyone may mint on a local chain.
    function mint(address to, uint256 amount) external {
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    /// @notice Transfers `value` to `to`; returns nothing, like USDT.
    function transfer(address to, uint256 value) external {
        _transfer(msg.sender, to, value);
    }

    /// @notice Transfers `value` from `from` to `to` using the caller's allowance; returns nothing.
    function transferFrom(address from, address to, uint256 value) external {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            require(allowed >= value, "USDT: insufficient allowance");
            allowance[from][msg.sender] = allowed - value;
        }
        _transfer(from, to, value);
    }

    /// @notice Sets an allowance; a non-zero allowance may only be set from zero.
    function approve(address spender, uint256 value) external {
        require(value == 0 || allowance[msg.sender][spender] == 0, "USDT: approve from non-zero");
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
    }

    function _transfer(address from, address to, uint256 value) private {
        require(to != address(0), "USDT: transfer to zero");
        require(balanceOf[from] >= value, "USDT: insufficient balance");
        balanceOf[from] -= value;
        balanceOf[to] += value;
        emit Transfer(from, to, value);
    }
}
