//! The Fabstir LLM host node: registers on the NodeRegistry, advertises its models in the
//! DHT, claims jobs, runs inference, streams tokens to the client, stores the result by CID and
//! submits it on chain to be paid.
