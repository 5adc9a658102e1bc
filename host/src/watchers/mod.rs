//! Watchers: loading a component into a shared [`load::Spec`], its
//! settings, the per-target supervisor that runs and restarts instances,
//! and hot reload.

pub(crate) mod load;
pub(crate) mod reload;
pub(crate) mod settings;
pub(crate) mod supervisor;
mod view;
