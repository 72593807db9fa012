//! Adgang reconciles the Active Directory accounts of a municipality's supplier staff from a
//! declared desired state: YAML files in a git repository, or Kubernetes custom resources.
//!
//! The plan is a pure function of the desired state, what AD holds and the clock
//! ([`plan`]); everything that touches the network sits at the edges ([`directory`],
//! [`source`], [`credentials`]) and is tested against real servers. [`sync`] ties them
//! together for one reconcile.

pub mod authorization;
pub mod calendar;
pub mod config;
pub mod controller;
pub mod cpr;
pub mod credentials;
pub mod desired;
pub mod directory;
pub mod expiry;
pub mod mail;
pub mod model;
pub mod notice;
pub mod output;
pub mod plan;
pub mod reminders;
pub mod report;
pub mod resources;
pub mod schedule;
pub mod server;
pub mod signatures;
pub mod source;
pub mod sync;
pub mod templates;
pub mod username;
pub mod validate;
