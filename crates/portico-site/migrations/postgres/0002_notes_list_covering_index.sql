-- The notes list reads id, title, tags and updated_at of one owner's newest notes. With tags and
-- title included in the index, the list can be read from the index alone (an index-only scan)
-- instead of one heap fetch per row, so its cost does not grow with the notes of other users.
DROP INDEX notes_owner_updated;
CREATE INDEX notes_owner_updated ON notes (owner_id, updated_at DESC, id DESC) INCLUDE (tags, title);
