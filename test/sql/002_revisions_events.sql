-- pgTAP: every writing transaction gets one revision from the counter row; rows are stamped
-- with it; every change of an object (and of its child rows) is one event; the audit log is
-- append-only; pruning records its horizon.
BEGIN;
SELECT plan(17);

SELECT is((SELECT revision FROM sigil_revision), 0::bigint, 'a fresh database is at revision 0');

-- one transaction (this test's), several writes: one revision
INSERT INTO entries (id, spiffe_id, parent_id, selectors_canon) VALUES
  ('00000000-0000-0000-0000-000000000001', 'spiffe://td/a', 'spiffe://td/agent', 'unix:uid:1'),
  ('00000000-0000-0000-0000-000000000002', 'spiffe://td/b', 'spiffe://td/agent', 'unix:uid:2');
INSERT INTO entry_selectors VALUES ('00000000-0000-0000-0000-000000000001', 'unix', 'uid:1');
INSERT INTO agents (spiffe_id, attestation_type, serial, expires_at)
  VALUES ('spiffe://td/agent', 'join_token', '01', now() + interval '1h');

SELECT is((SELECT revision FROM sigil_revision), 1::bigint, 'many writes in one transaction take one revision');
SELECT is((SELECT array_agg(DISTINCT revision) FROM entries), ARRAY[1::bigint], 'rows are stamped with it');
SELECT is((SELECT revision FROM agents), 1::bigint, 'agents too');
SELECT is((SELECT count(*) FROM events WHERE kind = 'entry'), 2::bigint,
          'one event per entry, child rows folded into their parent');
SELECT is((SELECT count(*) FROM events WHERE kind = 'agent'), 1::bigint, 'one event for the agent');
SELECT is(sigil_tx_revision(), 1::bigint, 'sigil_tx_revision is stable within the transaction');

-- a second transaction (a savepoint is not one: simulate with a new txid via a subtransaction?
-- no: pgTAP runs in one transaction, so a later revision is shown by clearing the setting).
SELECT set_config('sigil.tx_revision', '', true);
UPDATE entries SET hint = 'x' WHERE id = '00000000-0000-0000-0000-000000000002';
SELECT is((SELECT revision FROM entries WHERE id = '00000000-0000-0000-0000-000000000002'),
          2::bigint, 'an update takes the next revision');
SELECT is((SELECT op FROM events WHERE revision = 2), 'upsert', 'and logs an upsert');

SELECT set_config('sigil.tx_revision', '', true);
DELETE FROM entries WHERE id = '00000000-0000-0000-0000-000000000001';
SELECT is((SELECT op FROM events WHERE revision = 3 AND object_id = '00000000-0000-0000-0000-000000000001'),
          'delete', 'a delete cascading to child rows stays a delete');
SELECT is((SELECT count(*) FROM entry_selectors), 0::bigint, 'child rows went with it');
SELECT is((SELECT count(*) FROM events WHERE revision = 3), 1::bigint, 'one event for it');

-- events after N: exactly what changed since
SELECT is((SELECT array_agg(object_id ORDER BY object_id) FROM events WHERE revision > 1),
          ARRAY['00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-000000000002'],
          'events after revision 1 name the changed objects');

-- audit is append-only
INSERT INTO audit_log (actor, action, object_type, object_id, after)
  VALUES ('uid:0', 'entry.create', 'entry', 'x', '{"a":1}');
SELECT is((SELECT revision FROM audit_log), 3::bigint, 'audit rows carry the revision of their change');
SELECT throws_ok($$UPDATE audit_log SET actor = 'someone else'$$, 'P0001', 'audit_log is append-only',
                 'audit rows cannot be changed');
SELECT throws_ok($$DELETE FROM audit_log$$, 'P0001', 'audit_log is append-only', 'nor deleted');

-- pruning: everything older than 0 s goes and the horizon is recorded
UPDATE events SET at = now() - interval '1 hour';
SELECT sigil_prune_events(60);
SELECT is((SELECT pruned_through FROM sigil_revision), 3::bigint, 'pruning records its horizon');

SELECT * FROM finish();
ROLLBACK;
