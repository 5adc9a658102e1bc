//! The sandbox around untrusted watchers: the shared engine, instances with
//! their memory cap and call deadline, captured stdio, and the caps on what
//! a call may return.

mod bindings;
mod convert;
pub mod engine;
pub mod instance;
pub mod limits;
pub mod output;
pub mod stdio;
mod store;
pub mod trap;

pub use bindings::wit;
pub use engine::{Compiled, Engine};
pub use instance::{Instance, Trap};
