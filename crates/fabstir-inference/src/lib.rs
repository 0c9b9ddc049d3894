//! Inference backends for Fabstir hosts: an embedded CPU engine for llama2.c checkpoints
//! and a client for OpenAI-compatible servers, both behind one streaming trait.
