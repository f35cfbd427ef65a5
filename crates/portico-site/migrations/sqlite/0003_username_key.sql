-- Usernames are unique by their key: the name NFKC-normalised and case-folded, so `alice`,
-- `Alice` and the full-width `ａｌｉｃｅ` are one account. SQL cannot compute the key, so the
-- server fills it in for rows that predate this column (oldest account first) right after the
-- migrations run; rows whose key an older account already holds keep NULL, which the unique
-- index allows, and are reported in the server's log.
ALTER TABLE users ADD COLUMN username_key TEXT;

CREATE UNIQUE INDEX users_by_username_key ON users (username_key);
