//! Verification of git commit signatures against the keys of contact persons and reviewers.
//!
//! Git stores a commit's signature in its `gpgsig` header. [`Signature::from_commit`] reads it
//! with the bytes it signs and sorts it by armor into the two formats that git signs with:
//! SSH signatures (`gpg.format=ssh`, the SSHSIG format of `ssh-keygen -Y sign`, namespace
//! `git`) and OpenPGP detached signatures. [`verify`] checks one signature against candidate
//! [`PublicKey`]s, and a [`KeyRing`] adds owners and validity windows on top, returning the
//! [`Signer`] that a per-path policy can authorise.
//!
//! Crates: SSH signatures are verified with `ssh-key` 0.6 (RustCrypto), its latest stable
//! release, for ed25519, ECDSA, RSA and FIDO (`sk-`) keys. OpenPGP signatures are verified
//! with `pgp` 0.21 (rPGP) because it is pure Rust and covers what git produces: detached
//! signatures by the primary key or by a bound signing subkey. `sequoia-openpgp` 2.4 links
//! the system's nettle library by default, and its pure Rust backend is marked by its own
//! build script as neither production-ready nor constant-time.
//!
//! Signature times are not trustworthy: see [`KeyRing::verify_signature`].

mod commit;
mod error;
mod key;
mod keyring;
mod verify;

pub use commit::{Signature, SignatureFormat};
pub use error::{KeyError, KeyLabel, SignatureError};
pub use key::{PublicKey, parse_signing_keys};
pub use keyring::{KeyRing, KeyRingEntry, Signer, SigningTime, TimeSource, ValidityWindow};
pub use verify::{Verified, verify};
