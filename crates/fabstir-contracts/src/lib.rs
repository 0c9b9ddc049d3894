//! Stateless access to the Fabstir smart contracts (NodeRegistry, JobMarketplace,
//! PaymentEscrow and the test tokens).
//!
//! This is the only layer besides `fabstir-payments` that talks to an Ethereum node. It holds
//! contract addresses and a read-only provider; every state-changing call takes the signer for
//! that call and keeps nothing of it. It builds on the domain types of `fabstir-core` and is
//! used by `fabstir-payments`, `fabstir-sdk` and `fabstir-node`.
