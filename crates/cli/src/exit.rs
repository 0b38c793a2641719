//! Exit codes (docs/cli.md#exit-codes): 2 for usage and configuration errors, 1 for
//! failures at run time. An error is a configuration error when a [`ConfigError`] is in
//! its chain, wherever it was raised.

use std::process::ExitCode;

/// A setting or flag that cannot work as given: the operator must change it.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Wraps a message (or an error's text) as a configuration error.
pub fn config(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(ConfigError(format!("{e:#}")))
}

pub const USAGE: u8 = 2;

/// The exit code for an error that ended a command.
pub fn code_for(e: &anyhow::Error) -> ExitCode {
    if e.chain().any(|c| c.is::<ConfigError>()) { ExitCode::from(USAGE) } else { ExitCode::FAILURE }
}
