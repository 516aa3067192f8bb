-- Audit snapshots are compressed with lz4 where the server offers it (PostgreSQL 14+ built with lz4):
-- several times cheaper than the default pglz on every write.
DO $$
BEGIN
    ALTER TABLE audit_log ALTER COLUMN before_json SET COMPRESSION lz4, ALTER COLUMN after_json SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'lz4 is not available: audit snapshots keep the default compression';
END
$$;
