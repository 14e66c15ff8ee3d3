-- Sigil's control-plane schema, first version.
-- Every writing transaction takes ONE revision from the counter row (sigil_tx_revision()):
-- the row lock orders writers by commit, so "everything after revision N" never misses a
-- change (the skipped-events problem of a plain bigserial). Triggers stamp rows and log
-- events; pg_notify wakes the servers' caches at commit.

CREATE TABLE sigil_revision (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    revision bigint NOT NULL DEFAULT 0 CHECK (revision >= 0),
    -- events at or below this revision have been pruned: a cache behind it reloads in full
    pruned_through bigint NOT NULL DEFAULT 0 CHECK (pruned_through >= 0)
);
INSERT INTO sigil_revision (id, revision) VALUES (true, 0);

-- The revision of the current transaction: taken once, from the counter row, on first use.
CREATE FUNCTION sigil_tx_revision() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cur text := current_setting('sigil.tx_revision', true);
    rev bigint;
BEGIN
    -- the setting is keyed by transaction id so a pooled session never reuses a stale one
    IF cur IS NOT NULL AND cur <> '' AND split_part(cur, ':', 1) = txid_current()::text THEN
        RETURN split_part(cur, ':', 2)::bigint;
    END IF;
    UPDATE sigil_revision SET revision = revision + 1 WHERE id RETURNING revision INTO rev;
    PERFORM set_config('sigil.tx_revision', txid_current()::text || ':' || rev::text, true);
    RETURN rev;
END $$;

CREATE TABLE events (
    revision bigint NOT NULL,
    kind text NOT NULL CHECK (kind IN ('entry', 'agent', 'bundle', 'federation', 'ca', 'team')),
    object_id text NOT NULL,
    op text NOT NULL CHECK (op IN ('upsert', 'delete')),
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (revision, kind, object_id)
);

-- Records one event for the row a trigger fires on and wakes the caches (delivered at
-- commit; PostgreSQL folds identical payloads of one transaction into one).
CREATE FUNCTION sigil_log_event(p_kind text, p_object_id text, p_op text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    rev bigint := sigil_tx_revision();
BEGIN
    -- one event per object and revision; a delete wins over any upsert of the same revision
    -- (a cascade logs child upserts after the parent's delete)
    INSERT INTO events (revision, kind, object_id, op) VALUES (rev, p_kind, p_object_id, p_op)
    ON CONFLICT (revision, kind, object_id) DO UPDATE SET op = 'delete'
        WHERE EXCLUDED.op = 'delete';
    PERFORM pg_notify('sigil_events', rev::text);
END $$;

CREATE TABLE trust_domain (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    name text NOT NULL CHECK (name ~ '^[a-z0-9._-]{1,255}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE teams (
    name text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    revision bigint NOT NULL DEFAULT 0
);

-- The SPIFFE ID prefixes a team owns (team admins write only under these).
CREATE TABLE team_prefixes (
    team text NOT NULL REFERENCES teams (name) ON DELETE CASCADE,
    prefix text NOT NULL CHECK (prefix ~ '^spiffe://[a-z0-9._-]+(/[a-zA-Z0-9._-]+)*$'),
    PRIMARY KEY (team, prefix)
);
CREATE UNIQUE INDEX team_prefixes_prefix ON team_prefixes (prefix);

-- Who administers which team (caller SPIFFE IDs); platform admins and viewers live in config.
CREATE TABLE team_admins (
    team text NOT NULL REFERENCES teams (name) ON DELETE CASCADE,
    spiffe_id text NOT NULL CHECK (spiffe_id LIKE 'spiffe://%'),
    PRIMARY KEY (team, spiffe_id)
);

-- The CA journal: every root, intermediate and JWT key this trust domain has had.
CREATE TABLE ca_journal (
    id bigserial PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('x509_root', 'x509_intermediate', 'jwt_key')),
    state text NOT NULL CHECK (state IN ('prepared', 'active', 'old', 'retired')),
    issued_to text,                         -- server instance or downstream SPIFFE ID
    kid text,                               -- jwt_key only
    cert_der bytea,                         -- x509 kinds
    public_key_der bytea NOT NULL,
    key_ref text NOT NULL,                  -- where the private key lives (file path, pkcs11 URI)
    not_before timestamptz NOT NULL,
    not_after timestamptz NOT NULL CHECK (not_after > not_before),
    created_at timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz,
    retired_at timestamptz,
    revision bigint NOT NULL DEFAULT 0,
    CHECK ((kind = 'jwt_key') = (kid IS NOT NULL)),
    CHECK ((kind = 'jwt_key') = (cert_der IS NULL))
);
CREATE UNIQUE INDEX ca_journal_kid ON ca_journal (kid) WHERE kid IS NOT NULL;
CREATE INDEX ca_journal_kind_state ON ca_journal (kind, state);

-- Bundles: our own (own = true, exactly one) and federated ones, each with its sequence.
CREATE TABLE bundles (
    trust_domain text PRIMARY KEY CHECK (trust_domain ~ '^[a-z0-9._-]{1,255}$'),
    own boolean NOT NULL DEFAULT false,
    document jsonb NOT NULL,                -- the SPIFFE bundle (JWKS) as served
    sequence bigint NOT NULL DEFAULT 0 CHECK (sequence >= 0),
    refresh_hint_seconds integer CHECK (refresh_hint_seconds > 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    revision bigint NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX bundles_one_own ON bundles (own) WHERE own;

CREATE TABLE federation_relationships (
    trust_domain text PRIMARY KEY CHECK (trust_domain ~ '^[a-z0-9._-]{1,255}$'),
    bundle_endpoint_url text NOT NULL CHECK (bundle_endpoint_url LIKE 'https://%'),
    profile text NOT NULL CHECK (profile IN ('https_web', 'https_spiffe')),
    endpoint_spiffe_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    revision bigint NOT NULL DEFAULT 0,
    CHECK ((profile = 'https_spiffe') = (endpoint_spiffe_id IS NOT NULL))
);

CREATE TABLE entries (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    spiffe_id text NOT NULL CHECK (spiffe_id ~ '^spiffe://[a-z0-9._-]+(/[a-zA-Z0-9._-]+)+$'),
    parent_id text NOT NULL CHECK (parent_id ~ '^spiffe://[a-z0-9._-]+(/[a-zA-Z0-9._-]+)*$'),
    -- canonical, sorted "type:value" list joined by newlines: the duplicate check's key
    selectors_canon text NOT NULL CHECK (selectors_canon <> ''),
    x509_ttl_seconds integer NOT NULL DEFAULT 3600 CHECK (x509_ttl_seconds > 0),
    jwt_ttl_seconds integer NOT NULL DEFAULT 300 CHECK (jwt_ttl_seconds > 0),
    admin boolean NOT NULL DEFAULT false,
    downstream boolean NOT NULL DEFAULT false,
    hint text NOT NULL DEFAULT '' CHECK (octet_length(hint) <= 1024),
    team text REFERENCES teams (name) ON DELETE RESTRICT,
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL DEFAULT '',
    revision bigint NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX entries_unique ON entries (spiffe_id, parent_id, selectors_canon);
CREATE INDEX entries_spiffe_id ON entries (spiffe_id);
CREATE INDEX entries_parent_id ON entries (parent_id);
CREATE INDEX entries_team ON entries (team);
CREATE INDEX entries_revision ON entries (revision);

CREATE TABLE entry_selectors (
    entry_id uuid NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    type text NOT NULL CHECK (type ~ '^[a-z0-9_]{1,64}$'),
    value text NOT NULL CHECK (value <> '' AND octet_length(value) <= 1024),
    PRIMARY KEY (entry_id, type, value)
);
CREATE INDEX entry_selectors_type_value ON entry_selectors (type, value);

CREATE TABLE entry_dns_names (
    entry_id uuid NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    ord smallint NOT NULL CHECK (ord >= 0),
    name text NOT NULL CHECK (name <> '' AND octet_length(name) <= 253),
    PRIMARY KEY (entry_id, ord),
    UNIQUE (entry_id, name)
);

CREATE TABLE entry_federates_with (
    entry_id uuid NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    trust_domain text NOT NULL CHECK (trust_domain ~ '^[a-z0-9._-]{1,255}$'),
    PRIMARY KEY (entry_id, trust_domain)
);

CREATE TABLE agents (
    spiffe_id text PRIMARY KEY CHECK (spiffe_id ~ '^spiffe://[a-z0-9._-]+(/[a-zA-Z0-9._-]+)+$'),
    attestation_type text NOT NULL,
    serial text NOT NULL,                   -- serial of the current agent SVID (hex)
    expires_at timestamptz NOT NULL,
    new_serial text,                        -- during renewal, until the new SVID is used
    new_expires_at timestamptz,
    banned boolean NOT NULL DEFAULT false,
    can_reattest boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    revision bigint NOT NULL DEFAULT 0
);
CREATE INDEX agents_expires_at ON agents (expires_at);

CREATE TABLE agent_selectors (
    agent_id text NOT NULL REFERENCES agents (spiffe_id) ON DELETE CASCADE,
    type text NOT NULL CHECK (type ~ '^[a-z0-9_]{1,64}$'),
    value text NOT NULL CHECK (value <> '' AND octet_length(value) <= 1024),
    PRIMARY KEY (agent_id, type, value)
);
CREATE INDEX agent_selectors_type_value ON agent_selectors (type, value);

-- Join tokens are stored only as SHA-256 of the token: a database dump cannot attest a node.
CREATE TABLE join_tokens (
    token_sha256 bytea PRIMARY KEY CHECK (octet_length(token_sha256) = 32),
    expires_at timestamptz NOT NULL,
    agent_path text,                        -- optional fixed agent ID path
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL DEFAULT ''
);
CREATE INDEX join_tokens_expires_at ON join_tokens (expires_at);

CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,                    -- caller SPIFFE ID or "uid:<n>" on the local socket
    action text NOT NULL,                   -- e.g. entry.create
    object_type text NOT NULL,
    object_id text NOT NULL,
    before jsonb,
    after jsonb,
    revision bigint NOT NULL DEFAULT 0
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_object ON audit_log (object_type, object_id);

-- Stamps a row with its transaction's revision.
CREATE FUNCTION sigil_stamp_revision() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := sigil_tx_revision();
    RETURN NEW;
END $$;

-- Logs an event for a row of a top-level table; TG_ARGV[0] is the kind, TG_ARGV[1] the key column.
CREATE FUNCTION sigil_row_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    PERFORM sigil_log_event(TG_ARGV[0], to_jsonb(r) ->> TG_ARGV[1],
                            CASE WHEN TG_OP = 'DELETE' THEN 'delete' ELSE 'upsert' END);
    RETURN NULL;
END $$;

-- A change to a child row (selectors, DNS names, ...) is a change of its parent object.
CREATE FUNCTION sigil_child_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    -- sigil_log_event keeps a delete the parent logged already (cascades)
    PERFORM sigil_log_event(TG_ARGV[0], to_jsonb(r) ->> TG_ARGV[1], 'upsert');
    RETURN NULL;
END $$;

CREATE TRIGGER entries_stamp BEFORE INSERT OR UPDATE ON entries
    FOR EACH ROW EXECUTE FUNCTION sigil_stamp_revision();
CREATE TRIGGER entries_event AFTER INSERT OR UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION sigil_row_event('entry', 'id');
CREATE TRIGGER entry_selectors_event AFTER INSERT OR UPDATE OR DELETE ON entry_selectors
    FOR EACH ROW EXECUTE FUNCTION sigil_child_event('entry', 'entry_id');
CREATE TRIGGER entry_dns_names_event AFTER INSERT OR UPDATE OR DELETE ON entry_dns_names
    FOR EACH ROW EXECUTE FUNCTION sigil_child_event('entry', 'entry_id');
CREATE TRIGGER entry_federates_with_event AFTER INSERT OR UPDATE OR DELETE ON entry_federates_with
    FOR EACH ROW EXECUTE FUNCTION sigil_child_event('entry', 'entry_id');

CREATE TRIGGER agents_stamp BEFORE INSERT OR UPDATE ON agents
    FOR EACH ROW EXECUTE FUNCTION sigil_stamp_revision();
CREATE TRIGGER agents_event AFTER INSERT OR UPDATE OR DELETE ON agents
    FOR EACH ROW EXECUTE FUNCTION sigil_row_event('agent', 'spiffe_id');
CREATE TRIGGER agent_selectors_event AFTER INSERT OR UPDATE OR DELETE ON agent_selectors
    FOR EACH ROW EXECUTE FUNCTION sigil_child_event('agent', 'agent_id');

CREATE TRIGGER bundles_stamp BEFORE INSERT OR UPDATE ON bundles
    FOR EACH ROW EXECUTE FUNCTION sigil_stamp_revision();
CREATE TRIGGER bundles_event AFTER INSERT OR UPDATE OR DELETE ON bundles
    FOR EACH ROW EXECUTE FUNCTION sigil_row_event('bundle', 'trust_domain');

CREATE TRIGGER federation_stamp BEFORE INSERT OR UPDATE ON federation_relationships
    FOR EACH ROW EXECUTE FUNCTION sigil_stamp_revision();
CREATE TRIGGER federation_event AFTER INSERT OR UPDATE OR DELETE ON federation_relationships
    FOR EACH ROW EXECUTE FUNCTION sigil_row_event('federation', 'trust_domain');

CREATE TRIGGER ca_journal_stamp BEFORE INSERT OR UPDATE ON ca_journal
    FOR EACH ROW EXECUTE FUNCTION sigil_stamp_revision();
CREATE TRIGGER ca_journal_event AFTER INSERT OR UPDATE OR DELETE ON ca_journal
    FOR EACH ROW EXECUTE FUNCTION sigil_row_event('ca', 'id');

CREATE TRIGGER teams_stamp BEFORE INSERT OR UPDATE ON teams
    FOR EACH ROW EXECUTE FUNCTION sigil_stamp_revision();
CREATE TRIGGER teams_event AFTER INSERT OR UPDATE OR DELETE ON teams
    FOR EACH ROW EXECUTE FUNCTION sigil_row_event('team', 'name');
CREATE TRIGGER team_prefixes_event AFTER INSERT OR UPDATE OR DELETE ON team_prefixes
    FOR EACH ROW EXECUTE FUNCTION sigil_child_event('team', 'team');
CREATE TRIGGER team_admins_event AFTER INSERT OR UPDATE OR DELETE ON team_admins
    FOR EACH ROW EXECUTE FUNCTION sigil_child_event('team', 'team');

-- Audit rows carry the revision of the change they record.
CREATE TRIGGER audit_log_stamp BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION sigil_stamp_revision();
-- The audit log is append-only.
CREATE FUNCTION sigil_audit_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_immutable BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION sigil_audit_immutable();

-- Drops events older than keep_seconds and records the horizon; returns rows removed.
CREATE FUNCTION sigil_prune_events(keep_seconds integer) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    horizon bigint;
    n bigint;
BEGIN
    SELECT max(revision) INTO horizon FROM events WHERE at < now() - make_interval(secs => keep_seconds);
    IF horizon IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM events WHERE revision <= horizon;
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE sigil_revision SET pruned_through = greatest(pruned_through, horizon) WHERE id;
    RETURN n;
END $$;
