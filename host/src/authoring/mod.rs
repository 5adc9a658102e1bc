//! The authoring commands: `lookout check`, `record`, `test` and `new`.

pub(crate) mod check;
pub(crate) mod record;
pub(crate) mod replay;
pub(crate) mod scaffold;
