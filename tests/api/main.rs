//! Integration tests over real HTTP: one test binary, one server per test, each with
//! its own SQLite file and tokens signed by keys generated at test time.

mod support;

mod access;
mod accounts;
mod agreement;
mod audit;
mod auth;
mod bad_input;
mod bounds;
mod bundles;
mod capability;
mod crud;
mod egress;
mod fuzz;
mod history;
mod instances;
mod lifecycle;
mod messaging;
mod mhd;
mod mtls;
mod notify;
mod plans;
mod portal;
mod profile;
mod search;
