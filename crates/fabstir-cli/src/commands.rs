//! One module per `fabstir` command: its arguments and what it does.

pub(crate) mod ask;
pub(crate) mod balance;
pub(crate) mod chat;
pub(crate) mod demo;
pub(crate) mod devnet;
pub(crate) mod faucet;
pub(crate) mod gateway;
pub(crate) mod job;
pub(crate) mod nodes;
pub(crate) mod sessions;
pub(crate) mod withdraw;
