//! End-to-end tests across the Fabstir crates. One integration binary for the whole suite.

mod workspace;
