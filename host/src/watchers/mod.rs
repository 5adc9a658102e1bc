//! Watchers: loading a component into a shared [`load::Spec`], its
//! settings, the per-target supervisor that runs and restarts instances,
//! and hot reload.

pub mod load;
pub mod reload;
pub mod settings;
pub mod supervisor;
mod view;
