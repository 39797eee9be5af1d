-- The portal's read mark of the holder's messages: the server time (meta.lastUpdated)
-- of the latest message shown on their messages page; later ones are new.
ALTER TABLE account ADD COLUMN messages_seen_at TEXT;
