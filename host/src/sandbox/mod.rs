//! The sandbox around untrusted watchers: the shared engine, instances with
//! their memory cap and call deadline, captured stdio, and the caps on what
//! a call may return.

mod bindings;
mod convert;
pub(crate) mod engine;
pub(crate) mod instance;
pub(crate) mod limits;
pub(crate) mod output;
pub(crate) mod stdio;
mod store;
pub(crate) mod trap;

pub use bindings::wit;
pub(crate) use engine::Compiled;
pub use engine::Engine;
pub use instance::Instance;
pub(crate) use instance::Trap;
