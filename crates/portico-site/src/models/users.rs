//! User accounts. Passwords are hashed with Argon2id on a blocking thread, never on the async
//! runtime, and only the hash is stored.
//!
//! A username is stored NFKC-normalised (full-width `ａｌｉｃｅ` is `alice`), and is unique by its
//! key, [`username_key`]: the name case-folded as well, so `alice`, `Alice` and `ＡＬＩＣＥ` are one
//! account. Login finds an account by its exact stored name first, then by key.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use sqlx::Row;

use crate::db::Db;

/// Longest username.
pub const USERNAME_MAX: usize = 150;
/// Shortest password.
pub const PASSWORD_MIN: usize = super::passwords::MIN_LENGTH;
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
    #[error("That username is taken. Names that differ only in capital letters or in look-alike characters count as the same name. Please choose another.")]
    Taken,
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// A username as it is stored: NFKC-normalised and trimmed.
pub fn normalize_username(username: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    username.trim().nfkc().collect()
}

/// The key that makes usernames unique: the compatibility case fold of Unicode (NFKC, case
/// fold, NFKC again), so names that differ only in case or in look-alike forms share one key.
///
/// ```ignore
/// assert_eq!(username_key("ＡＬＩＣＥ"), username_key("alice"));
/// assert_eq!(username_key("Straße"), username_key("STRASSE"));
/// ```
pub fn username_key(username: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let folded: String = caseless::default_case_fold_str(&normalize_username(username));
    folded.nfkc().collect()
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

/// Checks a password: Django's four validators (see [`super::passwords`]) and the length cap.
/// Every failing rule's message is given, one sentence each.
pub fn validate_password(password: &str, username: &str) -> Result<(), String> {
    if password.chars().count() > PASSWORD_MAX {
        return Err(format!(
            "The password can be at most {PASSWORD_MAX} characters."
        ));
    }
    super::passwords::validate(password, username).map_err(|errors| errors.join(" "))
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

/// Creates a user after validating the name and password; answers the new id. The name is
/// stored NFKC-normalised; one that differs from an existing name only by case or look-alike
/// characters is taken.
pub async fn create_user(db: &Db, username: &str, password: &str) -> Result<i64, CreateUserError> {
    let username = normalize_username(username);
    validate_username(&username).map_err(CreateUserError::InvalidUsername)?;
    validate_password(password, &username).map_err(CreateUserError::InvalidPassword)?;
    insert_user(db, &username, password).await
}

/// Creates a user checking the name but not the password's strength (`portico createuser
/// --no-validate`); the length cap still holds.
pub async fn create_user_unvalidated(
    db: &Db,
    username: &str,
    password: &str,
) -> Result<i64, CreateUserError> {
    let username = normalize_username(username);
    validate_username(&username).map_err(CreateUserError::InvalidUsername)?;
    if password.is_empty() || password.chars().count() > PASSWORD_MAX {
        return Err(CreateUserError::InvalidPassword(format!(
            "The password must be 1 to {PASSWORD_MAX} characters."
        )));
    }
    insert_user(db, &username, password).await
}

async fn insert_user(db: &Db, username: &str, password: &str) -> Result<i64, CreateUserError> {
    let key = username_key(username);
    if find_by_key(db, &key).await?.is_some() {
        return Err(CreateUserError::Taken);
    }
    let hash = hash_password(password)
        .await
        .map_err(CreateUserError::Hash)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // The unique index on username_key settles a race between two registrations of one name.
    // Read to the end: the id is answered only once the row is stored.
    let query = sqlx::query(
        "INSERT INTO users (username, username_key, password_hash, created_at) \
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(username)
    .bind(&key)
    .bind(&hash)
    .bind(now);
    crate::db::insert_returning_id(db, query)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => CreateUserError::Taken,
            _ => CreateUserError::Db(e),
        })
}

fn user_row(r: sqlx::any::AnyRow) -> Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        id: r.try_get(0)?,
        username: r.try_get(1)?,
        password_hash: r.try_get(2)?,
    })
}

async fn find_by_key(db: &Db, key: &str) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query("SELECT id, username, password_hash FROM users WHERE username_key = $1")
        .bind(key)
        .fetch_optional(&db.pool)
        .await?
        .map(user_row)
        .transpose()
}

/// The user a typed name means: the account stored under exactly that (NFKC-normalised) name,
/// else the one whose key it shares (`ALICE` finds `alice`).
pub async fn find_by_username(db: &Db, username: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let username = normalize_username(username);
    let exact = sqlx::query("SELECT id, username, password_hash FROM users WHERE username = $1")
        .bind(&username)
        .fetch_optional(&db.pool)
        .await?
        .map(user_row)
        .transpose()?;
    match exact {
        Some(row) => Ok(Some(row)),
        None => find_by_key(db, &username_key(&username)).await,
    }
}

/// Gives every account created before usernames had keys its key, oldest account first.
///
/// Two old accounts whose names share a key (`alice` and `Alice`) cannot both have it: the older
/// one gets it, the newer one keeps no key and is reported here. It still logs in by its exact
/// name, and no new account can take any form of the name; an operator may rename or remove it.
pub async fn backfill_username_keys(db: &Db) -> Result<(), sqlx::Error> {
    let rows = sqlx::query("SELECT id, username FROM users WHERE username_key IS NULL ORDER BY id")
        .fetch_all(&db.pool)
        .await?;
    for r in rows {
        let id: i64 = r.try_get(0)?;
        let name: String = r.try_get(1)?;
        let key = username_key(&name);
        let done = sqlx::query(
            "UPDATE users SET username_key = $1 WHERE id = $2 AND username_key IS NULL",
        )
        .bind(&key)
        .bind(id)
        .execute(&db.pool)
        .await;
        match done {
            Ok(_) => {}
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
                tracing::warn!(
                    id,
                    username = %name,
                    "this account's name differs from an older account's only by case or look-alike characters; it keeps its exact name for login and no key"
                );
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
        assert!(validate_password("password", "ada").is_err());
        assert!(validate_password("12345678", "ada").is_err());
        assert!(validate_password("aaaaaaaa", "ada").is_err());
    }

    #[test]
    fn look_alike_names_share_a_key() {
        assert_eq!(normalize_username("ａｌｉｃｅ"), "alice");
        assert_eq!(normalize_username(" Alice "), "Alice");
        let alice = username_key("alice");
        for other in ["Alice", "ALICE", "ａｌｉｃｅ", "ＡＬＩＣＥ"] {
            assert_eq!(username_key(other), alice, "{other}");
        }
        assert_eq!(username_key("Straße"), username_key("STRASSE"));
        assert_ne!(username_key("alice"), username_key("alicia"));
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
