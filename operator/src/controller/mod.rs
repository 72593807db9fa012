//! `adgang controller`: the long-running mode inside Kubernetes.
//!
//! [`leader`] elects one replica with a `coordination.k8s.io/v1` Lease, so that only that
//! replica writes. [`git_source`] turns the git repository into `Supplier` and
//! `SupplierUser` objects with server-side apply and prunes the ones whose file is gone.
//! [`readiness`] adds the API server to the checks behind `/readyz`.

pub mod git_source;
pub mod leader;
pub mod readiness;

#[cfg(test)]
mod mock_api;
