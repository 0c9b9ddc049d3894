//! The headless Fabstir SDK: a thin facade that wires discovery (`fabstir-p2p`), payments
//! (`fabstir-payments`), contracts (`fabstir-contracts`) and storage (`fabstir-storage`) behind
//! traits and runs the job lifecycle for an application that owns its own signer.
