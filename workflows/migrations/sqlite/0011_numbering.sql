-- PostgreSQL numbers changes and incidents from sequences; SQLite has one writer at a time and keeps
-- numbering them MAX + 1, so there is nothing to create here.
SELECT 1;
