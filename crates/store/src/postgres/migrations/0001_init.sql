-- fabrouter's first PostgreSQL schema: the records of the Store trait, and design bytes as
-- content-addressed chunks. Applied once, in one transaction, by postgres/migrate.rs.

-- Design bytes. An upload writes its chunks under a fresh upload id, each chunk in its own
-- short transaction; the commit of the blob then names that upload in `blobs` (or, when the
-- same bytes are stored already, drops the upload). Chunks of an upload that never committed
-- are removed once the upload is stale.
CREATE TABLE blob_uploads (
    id bigserial PRIMARY KEY,
    touched_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE blob_chunks (
    upload_id bigint NOT NULL,
    idx integer NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (upload_id, idx)
);
-- Out of line and uncompressed: meshes compress poorly, and compressing every MiB costs more
-- CPU than the disk it saves.
ALTER TABLE blob_chunks ALTER COLUMN bytes SET STORAGE EXTERNAL;

-- One row per stored content; `refs` counts the designs naming it and changes in the same
-- transaction as the design record.
CREATE TABLE blobs (
    sha256 text PRIMARY KEY,
    size_bytes bigint NOT NULL,
    chunk_count integer NOT NULL,
    upload_id bigint NOT NULL UNIQUE,
    refs bigint NOT NULL DEFAULT 0 CHECK (refs >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A committed blob not yet referenced by its design (the receipt the server holds between
-- the two steps). While a pin lives the bytes are kept even with no reference; a pin whose
-- holder died expires.
CREATE TABLE blob_pins (
    id bigserial PRIMARY KEY,
    sha256 text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX blob_pins_sha256 ON blob_pins (sha256);

-- Ids and owners compare byte-wise (COLLATE "C") whatever the database's locale: listings
-- page by id, and ids are time-ordered only as bytes.
CREATE TABLE designs (
    id text COLLATE "C" PRIMARY KEY,
    owner text COLLATE "C" NOT NULL,
    file_name text NOT NULL,
    size_bytes bigint NOT NULL,
    sha256 text NOT NULL REFERENCES blobs (sha256),
    format integer NOT NULL,
    created_unix_ms bigint NOT NULL,
    report bytea NOT NULL,
    repaired_from text
);
CREATE INDEX designs_owner_id ON designs (owner, id);

CREATE TABLE tokens (
    id text PRIMARY KEY,
    secret_sha256 text NOT NULL UNIQUE,
    role integer NOT NULL,
    principal text NOT NULL,
    label text NOT NULL,
    created_unix_ms bigint NOT NULL
);

CREATE TABLE nodes (
    node_id text PRIMARY KEY,
    secret_sha256 text NOT NULL,
    label text NOT NULL,
    created_unix_ms bigint NOT NULL
);

-- `job` is the encoded fabrouter.v1.Job; `version` is the compare-and-set guard of updates.
CREATE TABLE jobs (
    id text COLLATE "C" PRIMARY KEY,
    owner text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    last_seq bigint NOT NULL,
    active boolean NOT NULL,
    job bytea NOT NULL
);
CREATE INDEX jobs_owner_id ON jobs (owner, id);
CREATE INDEX jobs_active ON jobs (id) WHERE active;

CREATE TABLE job_events (
    job_id text COLLATE "C" NOT NULL REFERENCES jobs (id),
    seq bigint NOT NULL,
    event bytea NOT NULL,
    PRIMARY KEY (job_id, seq)
);

-- The idempotency entries of submissions: the commit point of a submit.
CREATE TABLE submissions (
    owner text NOT NULL,
    key text NOT NULL,
    job_ids text[] NOT NULL,
    PRIMARY KEY (owner, key)
);

CREATE TABLE printers (
    name text PRIMARY KEY,
    printer bytea NOT NULL
);

-- Computed values (estimates); losing them loses nothing, so they skip the WAL.
CREATE UNLOGGED TABLE cache (
    key text PRIMARY KEY,
    value bytea NOT NULL
);
