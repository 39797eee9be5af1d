//! The access stages of the pipeline: authenticate (token → [`Principal`]), decide
//! (coarse rules → [`Verdict`]), narrow (row predicates for the store) and check rows
//! (the same rules, one row at a time, for what cannot be narrowed).

pub mod authenticate;
pub mod decide;
pub mod principal;

pub use authenticate::Authenticator;
pub use decide::{Verdict, check_row, decide, narrowing};
pub use principal::{ActorKind, Principal, PurposeOfUse};
