//! Adgang reconciles the Active Directory accounts of a municipality's supplier staff from a
//! declared desired state: YAML files in a git repository, or Kubernetes custom resources.
//!
//! The plan is a pure function of the desired state, what AD holds and the clock
//! ([`plan`]); everything that touches the network sits at the edges ([`directory`],
//! [`source`]) and is tested against real servers.

pub mod directory;
pub mod model;
pub mod resources;
pub mod source;
