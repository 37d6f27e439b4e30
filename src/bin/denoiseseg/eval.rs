//! `denoiseseg eval` (being written).
use std::process::ExitCode;

use anyhow::{bail, Result};

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn main(_args: Args, _verbose: u8) -> Result<ExitCode> {
    bail!("eval is not implemented yet")
}
