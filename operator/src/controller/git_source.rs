//! Git source mode.
