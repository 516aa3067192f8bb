-- A change's state moves about ten times in its life; an index on it cost a write on every move. Live changes
-- are found through the CIs they touch (change_cis) or their approval round instead.
DROP INDEX changes_state;
