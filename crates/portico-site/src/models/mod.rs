//! The site's models: users and notes, with the SQL that reads and writes them.

pub mod notes;
pub mod passwords;
pub mod users;
