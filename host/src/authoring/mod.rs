//! The authoring commands: `lookout check`, `record`, `test` and `new`.

pub mod check;
pub mod record;
pub mod replay;
pub mod scaffold;
