//! Notes: title, body, tags from a fixed list, owned by one user.
