-- Up Migration
-- GET /users?q= finds users whose name or email contains q, any case. Trigram GIN indexes serve
-- ILIKE '%q%' (no leading-anchor B-tree can); pg_trgm is a trusted extension since PostgreSQL 13,
-- so the database owner may create it without superuser rights.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE INDEX users_name_trgm ON users USING gin (name gin_trgm_ops);
CREATE INDEX users_email_trgm ON users USING gin (email gin_trgm_ops);

-- Down Migration
DROP INDEX users_email_trgm;
DROP INDEX users_name_trgm;
