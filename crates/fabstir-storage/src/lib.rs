//! Content-addressed storage of job results for Fabstir hosts: CIDv1 (raw codec, sha2-256)
//! keys, a verifying `ResultStore` trait, a local file-system store and an IPFS (Kubo RPC)
//! store.
