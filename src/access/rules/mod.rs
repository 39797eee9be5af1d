//! The access rules, one function per rule id, evaluated in SPEC order by the gate.

pub mod patient;
pub mod professional;
pub mod scopes;
