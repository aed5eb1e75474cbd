//! Rebuilds the crate when a PostgreSQL migration changes (they are embedded).

fn main() {
    println!("cargo:rerun-if-changed=../../migrations/postgres");
}
