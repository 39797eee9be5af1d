//! The migrations are embedded in the binary (`embed_migrations!`): a migration
//! added or changed must rebuild it, which Cargo does not know on its own.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
