//! A configurable [`HostService`](crate::HostService) for tests and benchmarks (feature `test-utils`; never enable
//! it in a production build).
//!
//! [`TestHost::builder`] makes a scripted host: its own key and peer id, the models it serves
//! at one price, what it streams ([`Script`]) and how fast ([`Pacing`]), the jobs it lets
//! clients stream and the results it stores. [`TestHost::wrapping`] puts the same faults over
//! another service (a real node's), which keeps deciding everything else. [`Fault`]s are what
//! a broken or hostile host does: forged capabilities, a crash right after quoting.
//! [`DelayProxy`] adds a fixed latency to a TCP connection, for streams over a slow link.
//! [`RawClient`] drives a job's stream by hand, for tests of hostile clients.

mod delay;
mod host;
mod raw;
mod script;

pub use delay::DelayProxy;
pub use host::{Fault, TEST_CHAIN_ID, TestHost, TestHostBuilder};
pub use raw::RawClient;
pub use script::{Pacing, Script, padded_token, token};
