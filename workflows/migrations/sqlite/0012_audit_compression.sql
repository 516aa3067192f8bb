-- PostgreSQL compresses audit snapshots with lz4 from here on; SQLite does not compress them.
SELECT 1;
