//! Payment routing for Fabstir jobs: ETH (`postJob{value}`) or an accepted ERC-20
//! (`postJobWithToken`, or its EIP-2612 permit variant), with balance checks, allowance checks
//! and automatic approval.
//!
//! It sits on `fabstir-contracts` and can be used without the rest of the SDK.
