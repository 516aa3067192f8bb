-- Who wrote the change's current revision: they may not approve it, whoever requested the change.
ALTER TABLE changes ADD COLUMN revised_by_id TEXT;
UPDATE changes SET revised_by_id = requester_id;
