//! Git source mode.

mod decide;
#[cfg(test)]
mod fixtures;

pub use decide::*;
