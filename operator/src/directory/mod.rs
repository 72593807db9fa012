//! Active Directory over LDAPS: reading a snapshot of the managed base and applying actions.
