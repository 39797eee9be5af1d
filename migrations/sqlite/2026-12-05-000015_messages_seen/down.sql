ALTER TABLE account DROP COLUMN messages_seen_at;
