-- A change's state moves about ten times in its life. Indexed, every move writes a new entry into each of the
-- table's indexes and leaves the old ones for vacuum; unindexed, a move rewrites the row in place on its page
-- (a heap-only update), and room is left on each page for that. Live changes are found through the CIs they
-- touch (change_cis) or their approval round instead.
DROP INDEX changes_state;
ALTER TABLE changes SET (fillfactor = 70);
