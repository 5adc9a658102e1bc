//! The subcommands besides `lookout run` that read the configuration and
//! print what they find.

pub mod targets;
