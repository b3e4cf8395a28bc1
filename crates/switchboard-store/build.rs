fn main() {
    // sqlx::migrate! and include_str! embed the migration files; rebuild when they change.
    println!("cargo:rerun-if-changed=migrations");
}
