//! Embeds the templates and watches the migrations folder.

fn main() {
    minijinja_embed::embed_templates!("templates");
    // `sqlx::migrate!` embeds the migration files at compile time but does not watch the folder:
    // without this, a new migration file would not be in the next build.
    println!("cargo:rerun-if-changed=migrations");
}
