-- pgTAP: the tables, keys, constraints and indexes of migrations/.
BEGIN;
SELECT plan(55);

SELECT has_table(t) FROM unnest(ARRAY['sigil_revision', 'events', 'trust_domain', 'teams',
  'team_prefixes', 'team_admins', 'ca_journal', 'bundles', 'federation_relationships', 'entries',
  'entry_selectors', 'entry_dns_names', 'entry_federates_with', 'agents', 'agent_selectors',
  'join_tokens', 'audit_log', 'sigil_schema_migrations']) AS t;

SELECT col_is_pk('entries', 'id');
SELECT col_is_pk('agents', 'spiffe_id');
SELECT col_is_pk('join_tokens', 'token_sha256');
SELECT col_is_pk('bundles', 'trust_domain');
SELECT col_is_pk('events', ARRAY['revision', 'kind', 'object_id']);
SELECT col_is_pk('entry_selectors', ARRAY['entry_id', 'type', 'value']);
SELECT col_is_pk('sigil_schema_migrations', 'version');

SELECT fk_ok('entry_selectors', 'entry_id', 'entries', 'id');
SELECT fk_ok('entry_dns_names', 'entry_id', 'entries', 'id');
SELECT fk_ok('entry_federates_with', 'entry_id', 'entries', 'id');
SELECT fk_ok('agent_selectors', 'agent_id', 'agents', 'spiffe_id');
SELECT fk_ok('entries', 'team', 'teams', 'name');
SELECT fk_ok('team_prefixes', 'team', 'teams', 'name');

SELECT has_index('entries', 'entries_unique', ARRAY['spiffe_id', 'parent_id', 'selectors_canon']);
SELECT index_is_unique('entries', 'entries_unique');
SELECT has_index('entries', 'entries_parent_id', 'parent_id');
SELECT has_index('entries', 'entries_revision', 'revision');
SELECT has_index('entry_selectors', 'entry_selectors_type_value', ARRAY['type', 'value']);
SELECT has_index('agent_selectors', 'agent_selectors_type_value', ARRAY['type', 'value']);
SELECT index_is_unique('bundles', 'bundles_one_own');
SELECT index_is_unique('ca_journal', 'ca_journal_kid');

SELECT col_type_is('join_tokens', 'token_sha256', 'bytea');
SELECT col_not_null('entries', 'selectors_canon');
SELECT col_default_is('entries', 'x509_ttl_seconds', 3600);
SELECT col_default_is('entries', 'jwt_ttl_seconds', 300);

-- constraints refuse bad rows
SELECT throws_ok($$INSERT INTO entries (spiffe_id, parent_id, selectors_canon)
                  VALUES ('spiffe://td', 'spiffe://td/agent', 'unix:uid:1')$$,
                 '23514', NULL, 'an entry needs a SPIFFE ID with a path');
SELECT throws_ok($$INSERT INTO entries (spiffe_id, parent_id, selectors_canon)
                  VALUES ('spiffe://TD/a', 'spiffe://td/agent', 'unix:uid:1')$$,
                 '23514', NULL, 'uppercase trust domains are refused');
SELECT throws_ok($$INSERT INTO entries (spiffe_id, parent_id, selectors_canon)
                  VALUES ('spiffe://td/a', 'spiffe://td/agent', '')$$,
                 '23514', NULL, 'an entry needs selectors');
SELECT throws_ok($$INSERT INTO entries (spiffe_id, parent_id, selectors_canon, x509_ttl_seconds)
                  VALUES ('spiffe://td/a', 'spiffe://td/agent', 'unix:uid:1', 0)$$,
                 '23514', NULL, 'TTLs are positive');
SELECT lives_ok($$INSERT INTO entries (spiffe_id, parent_id, selectors_canon)
                  VALUES ('spiffe://td/a', 'spiffe://td/agent', 'unix:uid:1')$$,
                'a good entry is accepted');
SELECT throws_ok($$INSERT INTO entries (spiffe_id, parent_id, selectors_canon)
                  VALUES ('spiffe://td/a', 'spiffe://td/agent', 'unix:uid:1')$$,
                 '23505', NULL, 'the same spiffe id, parent and selectors twice is refused');
SELECT throws_ok($$INSERT INTO join_tokens (token_sha256, expires_at) VALUES ('\x00', now())$$,
                 '23514', NULL, 'join tokens are stored as 32-byte hashes only');
SELECT throws_ok($$INSERT INTO bundles (trust_domain, own, document) VALUES ('a.org', true, '{}'),
                  ('b.org', true, '{}')$$, '23505', NULL, 'only one own bundle');
SELECT throws_ok($$INSERT INTO federation_relationships (trust_domain, bundle_endpoint_url, profile)
                  VALUES ('b.org', 'http://b.org/bundle', 'https_web')$$,
                 '23514', NULL, 'bundle endpoints are https');
SELECT throws_ok($$INSERT INTO federation_relationships (trust_domain, bundle_endpoint_url, profile)
                  VALUES ('b.org', 'https://b.org/bundle', 'https_spiffe')$$,
                 '23514', NULL, 'https_spiffe needs the endpoint SPIFFE ID');
SELECT throws_ok($$INSERT INTO ca_journal (kind, state, public_key_der, key_ref, not_before, not_after)
                  VALUES ('jwt_key', 'active', '\x01', 'f', now(), now() + interval '1h')$$,
                 '23514', NULL, 'a JWT key needs a kid');
SELECT throws_ok($$INSERT INTO agent_selectors VALUES ('spiffe://td/nope', 'x', 'y')$$,
                 '23503', NULL, 'agent selectors need their agent');

SELECT * FROM finish();
ROLLBACK;
