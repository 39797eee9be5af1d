//! The access stages of the pipeline: authenticate (token → [`Principal`]), decide
//! (coarse rules → [`Verdict`]), narrow (row predicates for the store) and check rows
//! (the same rules, one row at a time, for what cannot be narrowed).

pub mod authenticate;
pub mod decide;
pub mod directory;
pub mod egress;
pub mod gate;
pub mod matrix;
pub mod principal;
pub mod rules;
pub mod space;
pub mod space_cache;

pub use authenticate::Authenticator;
pub use decide::{Verdict, decide, decide_request};
pub use egress::{BundleEntry, BundleLink, BundleOut, Released};
pub use gate::{Gate, PresumedNarrowing};
pub use matrix::Matrix;
pub use principal::{ActorKind, Principal, PurposeOfUse};
