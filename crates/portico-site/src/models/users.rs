//! User accounts. Passwords are hashed with Argon2id on a blocking thread, never on the async
//! runtime, and only the hash is stored.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use sqlx::Row;

use crate::db::Db;

/// Longest username.
pub const USERNAME_MAX: usize = 150;
/// Shortest password.
pub const PASSWORD_MIN: usize = 8;
/// Longest password (bounds the hashing work an attacker can ask for).
pub const PASSWORD_MAX: usize = 256;

/// A stored user.
#[derive(Debug, Clone)]
pub struct UserRow {
    /// Id.
    pub id: i64,
    /// Name.
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
}

/// Why an account could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// The name is not acceptable.
    #[error("{0}")]
    InvalidUsername(String),
    /// The password is not acceptable.
    #[error("{0}")]
    InvalidPassword(String),
    /// The name is taken.
    #[error("That username is taken. Please choose another.")]
    Taken,
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Checks a username: 1–150 characters of letters, digits and `@ . + - _` (Django's rule).
pub fn validate_username(username: &str) -> Result<(), String> {
    if username.is_empty() {
        return Err("Please choose a username.".into());
    }
    if username.chars().count() > USERNAME_MAX {
        return Err(format!(
            "A username can be at most {USERNAME_MAX} characters."
        ));
    }
    if !username
        .chars()
        .all(|c| c.is_alphanumeric() || "@.+-_".contains(c))
    {
        return Err("A username may contain only letters, digits and @ . + - _".into());
    }
    Ok(())
}

/// Checks a password's length and that it is not the username.
pub fn validate_password(password: &str, username: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < PASSWORD_MIN {
        return Err(format!(
            "The password must be at least {PASSWORD_MIN} characters."
        ));
    }
    if n > PASSWORD_MAX {
        return Err(format!(
            "The password can be at most {PASSWORD_MAX} characters."
        ));
    }
    if password.eq_ignore_ascii_case(username) {
        return Err("The password must not be the username.".into());
    }
    Ok(())
}

/// Argon2id takes 19 MiB and tens of milliseconds of a core per hash. Unbounded, a burst of
/// logins ran a hash for each at once: under load the server's memory rose from 35 MB to 450 MB
/// and every other request waited for a core for seconds. One hash per core at a time; the others
/// wait their turn without holding a thread.
static HASHING: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
});

/// Hashes a password with Argon2id (default parameters) off the async runtime.
pub async fn hash_password(password: &str) -> Result<String, String> {
    let password = password.to_string();
    let _turn = HASHING.acquire().await.map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A hash of a random password, verified against when the account does not exist, so that a
/// failed login takes as long whether or not the user exists.
static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Checks a password against a stored hash (or against a dummy hash when `hash` is `None`),
/// off the async runtime. Always does the same work.
pub async fn verify_password(password: &str, hash: Option<&str>) -> bool {
    let password = password.to_string();
    let hash = hash.map(str::to_string);
    let Ok(_turn) = HASHING.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let dummy;
        let target = match &hash {
            Some(h) => h.as_str(),
            None => {
                dummy = DUMMY_HASH.get_or_init(|| {
                    let salt = SaltString::generate(&mut OsRng);
                    Argon2::default()
                        .hash_password(b"portico-no-such-user-password", &salt)
                        .map(|h| h.to_string())
                        .unwrap_or_default()
                });
                dummy.as_str()
            }
        };
        let ok = match PasswordHash::new(target) {
            Ok(parsed) => Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        };
        ok && hash.is_some()
    })
    .await
    .unwrap_or(false)
}

/// Creates a user after validating the name and password; answers the new id.
pub async fn create_user(db: &Db, username: &str, password: &str) -> Result<i64, CreateUserError> {
    validate_username(username).map_err(CreateUserError::InvalidUsername)?;
    validate_password(password, username).map_err(CreateUserError::InvalidPassword)?;
    if find_by_username(db, username).await?.is_some() {
        return Err(CreateUserError::Taken);
    }
    let hash = hash_password(password)
        .await
        .map_err(CreateUserError::Hash)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // Read to the end: the id is answered only once the row is stored.
    let query = sqlx::query(
        "INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(username)
    .bind(&hash)
    .bind(now);
    crate::db::insert_returning_id(db, query)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => CreateUserError::Taken,
            _ => CreateUserError::Db(e),
        })
}

/// The user with this name, if any.
pub async fn find_by_username(db: &Db, username: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let row = sqlx::query("SELECT id, username, password_hash FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(&db.pool)
        .await?;
    row.map(|r| {
        Ok(UserRow {
            id: r.try_get(0)?,
            username: r.try_get(1)?,
            password_hash: r.try_get(2)?,
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_rules() {
        assert!(validate_username("ada.l+test@x_y-z").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username("has space").is_err());
        assert!(validate_username(&"a".repeat(151)).is_err());
    }

    #[test]
    fn passwords_follow_the_rules() {
        assert!(validate_password("correct horse", "ada").is_ok());
        assert!(validate_password("short", "ada").is_err());
        assert!(validate_password("adalovelace", "AdaLovelace").is_err());
        assert!(validate_password(&"x".repeat(257), "ada").is_err());
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let h = hash_password("correct horse").await.unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", Some(&h)).await);
        assert!(!verify_password("wrong horse", Some(&h)).await);
        assert!(!verify_password("correct horse", None).await);
    }
}
