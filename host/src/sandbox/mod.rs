//! The sandbox around untrusted watchers: the shared engine, instances with
//! their memory cap and call deadline, captured stdio, and the caps on what
//! a call may return.

pub mod engine;
pub mod instance;
mod legacy;
pub mod limits;
pub mod output;
pub mod stdio;
mod store;
pub mod trap;

pub use engine::{Compiled, Engine, bindings::lookout::watcher::types as wit};
pub use instance::{Instance, Trap};
