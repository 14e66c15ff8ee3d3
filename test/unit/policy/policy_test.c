/* Unit tests of the built-in registration policy: the seed's example IDs pass, every rule
 * refuses with its rule id and exact message (the texts reach people as HTTP 400 bodies),
 * tiers turn refusals into warnings, exemptions work, team prefixes stop at segment
 * boundaries, and the config setters reject what they must and leave the policy unchanged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sigil/err.h"
#include "sigil/policy.h"

#define TD "yourorg.com"
#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define IMG "k8s:container-image:gcr.io/yourorg/api-server@sha256:" HEX64
#define SCHEME_FIX "(use spiffe://yourorg.com/<environment>/<platform>/<team>/<workload>)"

/* A k8s and a unix selector set that satisfy the defaults. */
#define K8S_OK "k8s:ns:payments", "k8s:sa:api-server", IMG
#define UNIX_OK                                                                                    \
    "unix:uid:1001", "unix:path:/opt/yourorg/api-server/bin/server", "unix:sha256:" HEX64

/* One entry to check: NULL-terminated selector list, TTLs in seconds. */
struct in {
    const char *id;
    const char *parent;
    const char *sels[12];
    int64_t x509, jwt;
    bool node_alias, admin, downstream;
};

static struct sigil_policy *
policy(void **state)
{
    return *state;
}

static int
setup(void **state)
{
    struct sigil_policy *p = calloc(1, sizeof *p);
    const char *why = NULL;

    if (p == NULL || sigil_policy_init_defaults(p, TD, &why) != 0) {
        free(p);
        return -1;
    }
    *state = p;
    return 0;
}

static int
teardown(void **state)
{
    sigil_policy_free(*state);
    free(*state);
    return 0;
}

static struct sigil_spiffeid
must_id(const char *s)
{
    struct sigil_spiffeid id;
    const char *why = NULL;

    if (sigil_spiffeid_parse(s, strlen(s), &id, &why) != 0)
        fail_msg("test ID %s does not parse: %s", s, why);
    return id;
}

/* Runs the check; res must be freed by the caller. */
static void
run(const struct sigil_policy *p, const struct in *in, struct sigil_policy_result *res)
{
    struct sigil_selector_set set = SIGIL_SELECTOR_SET_INIT;
    struct sigil_spiffeid id = must_id(in->id), parent;
    struct sigil_policy_entry e = {0};
    const char *why = NULL;

    for (size_t i = 0; i < 12 && in->sels[i] != NULL; i++) {
        if (sigil_selector_set_add_str(&set, in->sels[i], strlen(in->sels[i]), &why) != 0)
            fail_msg("test selector %s: %s", in->sels[i], why);
    }
    e.spiffe_id = &id;
    if (in->parent != NULL) {
        parent = must_id(in->parent);
        e.parent_id = &parent;
    }
    e.selectors = &set;
    e.x509_svid_ttl = in->x509;
    e.jwt_svid_ttl = in->jwt;
    e.node_alias = in->node_alias;
    e.admin = in->admin;
    e.downstream = in->downstream;
    assert_int_equal(sigil_policy_check_entry(p, &e, res), 0);
    sigil_selector_set_free(&set);
}

static void
expect_ok(const struct sigil_policy *p, const struct in *in)
{
    struct sigil_policy_result res;

    run(p, in, &res);
    if (!res.ok)
        fail_msg("%s refused: %s: %s", in->id, res.rule, res.message);
    assert_null(res.rule);
    assert_null(res.message);
    assert_int_equal(res.n_warnings, 0);
    sigil_policy_result_free(&res);
}

static void
expect_refused(const struct sigil_policy *p, const struct in *in, const char *rule,
               const char *message)
{
    struct sigil_policy_result res;

    run(p, in, &res);
    if (res.ok)
        fail_msg("%s accepted, want %s", in->id, rule);
    assert_string_equal(res.rule, rule);
    assert_string_equal(res.message, message);
    sigil_policy_result_free(&res);
}

/* --- the seed's examples */

static void
seed_examples_accepted(void **state)
{
    const struct in ins[] = {
        {.id = "spiffe://yourorg.com/prod/gcp/payments/api-server",
         .parent = "spiffe://yourorg.com/sigil/agent/gcp_iit/proj/i-1",
         .sels = {K8S_OK}},
        {.id = "spiffe://yourorg.com/prod/azure/identity/token-service",
         .sels = {"k8s:ns:identity", "k8s:sa:token-service",
                  "k8s:container-image:yourorg.azurecr.io/token-service:2.1@sha256:" HEX64,
                  "k8s:pod-label:app:token-service"}},
        {.id = "spiffe://yourorg.com/prod/aws/payments/order-processor", .sels = {UNIX_OK}},
        {.id = "spiffe://yourorg.com/staging/onprem/data/postgres-primary",
         .sels = {"unix:uid:999", "unix:path:/usr/lib/postgresql/16/bin/postgres",
                  "unix:sha256:" HEX64, "unix:gid:999"}},
        {.id = "spiffe://yourorg.com/dev/gcp/checkout/order-processor",
         .sels = {"systemd:id:order-processor.service"}},
    };
    struct sigil_policy_result res;

    for (size_t i = 0; i < sizeof ins / sizeof ins[0]; i++)
        expect_ok(policy(state), &ins[i]);
    /* 0 TTLs become the seed's 1 h and 5 min; given TTLs are kept */
    run(policy(state), &ins[0], &res);
    assert_int_equal(res.x509_svid_ttl, 3600);
    assert_int_equal(res.jwt_svid_ttl, 300);
    sigil_policy_result_free(&res);
    struct in t = ins[2];
    t.x509 = 1800;
    t.jwt = 60;
    run(policy(state), &t, &res);
    assert_true(res.ok);
    assert_int_equal(res.x509_svid_ttl, 1800);
    assert_int_equal(res.jwt_svid_ttl, 60);
    sigil_policy_result_free(&res);
}

/* --- the ID rules */

static void
id_wrong_trust_domain(void **state)
{
    expect_refused(
        policy(state),
        &(struct in){.id = "spiffe://other.org/prod/gcp/payments/api-server", .sels = {K8S_OK}},
        "policy.id.trust_domain",
        "SPIFFE ID policy: spiffe://other.org/prod/gcp/payments/api-server is not in "
        "trust domain yourorg.com (use an ID under spiffe://yourorg.com/)");
    /* a longer trust domain sharing the prefix is another trust domain */
    expect_refused(policy(state),
                   &(struct in){.id = "spiffe://yourorg.com.evil/prod/gcp/payments/api-server",
                                .sels = {K8S_OK}},
                   "policy.id.trust_domain",
                   "SPIFFE ID policy: spiffe://yourorg.com.evil/prod/gcp/payments/api-server is "
                   "not in trust domain yourorg.com (use an ID under spiffe://yourorg.com/)");
    expect_refused(policy(state),
                   &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/api-server",
                                .parent = "spiffe://other.org/sigil/agent/x",
                                .sels = {K8S_OK}},
                   "policy.parent.trust_domain",
                   "SPIFFE ID policy: parent ID spiffe://other.org/sigil/agent/x is not in trust "
                   "domain yourorg.com (use an agent, node alias or server ID under "
                   "spiffe://yourorg.com)");
}

static void
id_without_path(void **state)
{
    expect_refused(policy(state), &(struct in){.id = "spiffe://yourorg.com", .sels = {K8S_OK}},
                   "policy.id.path",
                   "SPIFFE ID policy: spiffe://yourorg.com has no path, and an SVID's ID needs "
                   "one (X-2) " SCHEME_FIX);
}

static void
id_segment_count(void **state)
{
    expect_refused(policy(state),
                   &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments", .sels = {K8S_OK}},
                   "policy.id.scheme",
                   "SPIFFE ID policy: spiffe://yourorg.com/prod/gcp/payments has 3 path "
                   "segments, the scheme has 4 " SCHEME_FIX);
    expect_refused(policy(state), &(struct in){.id = "spiffe://yourorg.com/api", .sels = {K8S_OK}},
                   "policy.id.scheme",
                   "SPIFFE ID policy: spiffe://yourorg.com/api has 1 path segment, the scheme "
                   "has 4 " SCHEME_FIX);
    /* a region in the path: one segment too many (seed §4.4) */
    expect_refused(policy(state),
                   &(struct in){.id = "spiffe://yourorg.com/prod/gcp/us-east1/payments/api-server",
                                .sels = {K8S_OK}},
                   "policy.id.scheme",
                   "SPIFFE ID policy: spiffe://yourorg.com/prod/gcp/us-east1/payments/api-server "
                   "has 5 path segments, the scheme has 4 " SCHEME_FIX);
}

static void
id_segment_values(void **state)
{
    expect_refused(
        policy(state),
        &(struct in){.id = "spiffe://yourorg.com/prod2/gcp/payments/api-server", .sels = {K8S_OK}},
        "policy.id.segment_value",
        "SPIFFE ID policy: environment \"prod2\" is not allowed (use one of: prod, "
        "staging, dev)");
    expect_refused(
        policy(state),
        &(struct in){.id = "spiffe://yourorg.com/Prod/gcp/payments/api-server", .sels = {K8S_OK}},
        "policy.id.segment_value",
        "SPIFFE ID policy: environment \"Prod\" is not allowed (use one of: prod, "
        "staging, dev)");
    /* the compute model is not a platform (seed §4.3) */
    expect_refused(
        policy(state),
        &(struct in){.id = "spiffe://yourorg.com/prod/k8s/payments/api-server", .sels = {K8S_OK}},
        "policy.id.segment_value",
        "SPIFFE ID policy: platform \"k8s\" is not allowed (use one of: gcp, azure, "
        "aws, onprem)");
}

static void
id_segment_patterns(void **state)
{
    char id[200], msg[400];
    const char *w64 = "a123456789012345678901234567890123456789012345678901234567890123";

    expect_refused(
        policy(state),
        &(struct in){.id = "spiffe://yourorg.com/prod/gcp/Payments/api-server", .sels = {K8S_OK}},
        "policy.id.segment_pattern",
        "SPIFFE ID policy: team \"Payments\" does not match [a-z0-9][a-z0-9-]{0,62} "
        "(path segments are case-sensitive; use \"payments\")");
    expect_refused(
        policy(state),
        &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/api_server", .sels = {K8S_OK}},
        "policy.id.segment_pattern",
        "SPIFFE ID policy: workload \"api_server\" does not match "
        "[a-z0-9][a-z0-9-]{0,62} ('_' at position 4 is not allowed there; rename the "
        "segment to match)");
    expect_refused(
        policy(state),
        &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/-api", .sels = {K8S_OK}},
        "policy.id.segment_pattern",
        "SPIFFE ID policy: workload \"-api\" does not match [a-z0-9][a-z0-9-]{0,62} "
        "('-' at position 1 is not allowed there; rename the segment to match)");
    /* 63 characters pass, 64 do not */
    snprintf(id, sizeof id, "spiffe://yourorg.com/prod/gcp/payments/%.63s", w64);
    expect_ok(policy(state), &(struct in){.id = id, .sels = {K8S_OK}});
    snprintf(id, sizeof id, "spiffe://yourorg.com/prod/gcp/payments/%s", w64);
    snprintf(msg, sizeof msg,
             "SPIFFE ID policy: workload \"%s\" does not match [a-z0-9][a-z0-9-]{0,62} (shorten "
             "it to at most 63 characters)",
             w64);
    expect_refused(policy(state), &(struct in){.id = id, .sels = {K8S_OK}},
                   "policy.id.segment_pattern", msg);
}

/* --- the selector rules */

static void
k8s_required(void **state)
{
    expect_refused(policy(state),
                   &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/api-server",
                                .sels = {"k8s:ns:payments", "k8s:sa:api-server"}},
                   "policy.selectors.required",
                   "selector policy: k8s entries need k8s:container-image with a digest (add "
                   "k8s:container-image:<image>@sha256:<64 hex>)");
    expect_refused(policy(state),
                   &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/api-server",
                                .sels = {"k8s:ns:payments", IMG}},
                   "policy.selectors.required",
                   "selector policy: k8s entries need k8s:sa (add k8s:sa:<service account>)");
    /* "k8s:ns:" names no namespace */
    expect_refused(policy(state),
                   &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/api-server",
                                .sels = {"k8s:ns:", "k8s:ns", "k8s:sa:api-server", IMG}},
                   "policy.selectors.required",
                   "selector policy: k8s entries need k8s:ns (add k8s:ns:<namespace>)");
}

static void
k8s_image_digest(void **state)
{
    struct in in = {.id = "spiffe://yourorg.com/prod/gcp/payments/api-server",
                    .sels = {"k8s:ns:payments", "k8s:sa:api-server",
                             "k8s:container-image:gcr.io/yourorg/api-server:1.4.2"}};

    expect_refused(policy(state), &in, "policy.selectors.digest",
                   "selector policy: k8s:container-image:gcr.io/yourorg/api-server:1.4.2 names "
                   "an image without a digest (pin it: "
                   "k8s:container-image:gcr.io/yourorg/api-server@sha256:<64 hex>)");
    in.sels[2] = "k8s:container-image:registry.local:5000/api";
    expect_refused(policy(state), &in, "policy.selectors.digest",
                   "selector policy: k8s:container-image:registry.local:5000/api names an image "
                   "without a digest (pin it: k8s:container-image:registry.local:5000/api"
                   "@sha256:<64 hex>)");
    in.sels[2] = "k8s:container-image:api@sha512:abcd";
    expect_refused(policy(state), &in, "policy.selectors.digest",
                   "selector policy: k8s:container-image:api@sha512:abcd names an image without "
                   "a digest (pin it: k8s:container-image:api@sha256:<64 hex>)");
    in.sels[2] = "k8s:container-image:api@sha256:abc123";
    expect_refused(policy(state), &in, "policy.selectors.digest",
                   "selector policy: k8s:container-image:api@sha256:abc123 has a malformed digest "
                   "(use k8s:container-image:api@sha256:<64 lowercase hex>)");
    in.sels[2] = "k8s:container-image:api@sha256:" HEX64 "0";
    expect_refused(policy(state), &in, "policy.selectors.digest",
                   "selector policy: k8s:container-image:api@sha256:" HEX64 "0 has a malformed "
                   "digest (use k8s:container-image:api@sha256:<64 lowercase hex>)");
    in.sels[2] = "k8s:container-image:api@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef"
                 "0123456789abcdef";
    expect_refused(policy(state), &in, "policy.selectors.digest",
                   "selector policy: k8s:container-image:api@sha256:0123456789ABCDEF0123456789"
                   "abcdef0123456789abcdef0123456789abcdef has a malformed digest (use "
                   "k8s:container-image:api@sha256:<64 lowercase hex>)");
    in.sels[2] = "k8s:container-image:@sha256:" HEX64;
    expect_refused(policy(state), &in, "policy.selectors.digest",
                   "selector policy: k8s:container-image:@sha256:" HEX64 " has no image name "
                   "before the digest (use k8s:container-image:<image>@sha256:<64 lowercase "
                   "hex>)");
    /* every image selector must be pinned, not just one */
    in.sels[2] = IMG;
    in.sels[3] = "k8s:container-image:nginx:latest";
    expect_refused(policy(state), &in, "policy.selectors.digest",
                   "selector policy: k8s:container-image:nginx:latest names an image without a "
                   "digest (pin it: k8s:container-image:nginx@sha256:<64 hex>)");
}

static void
unix_required_and_values(void **state)
{
    struct in in = {.id = "spiffe://yourorg.com/prod/aws/payments/order-processor",
                    .sels = {"unix:uid:1001", "unix:path:/opt/yourorg/api-server/bin/server"}};

    expect_refused(policy(state), &in, "policy.selectors.required",
                   "selector policy: unix entries need unix:sha256 (add unix:sha256:<64 hex>)");
    in.sels[1] = "unix:sha256:" HEX64;
    expect_refused(policy(state), &in, "policy.selectors.required",
                   "selector policy: unix entries need unix:path (add unix:path:<absolute path>)");
    in.sels[2] = "unix:path:bin/server";
    expect_refused(policy(state), &in, "policy.selectors.path",
                   "selector policy: unix:path:bin/server is not an absolute path (use the "
                   "binary's full path: unix:path:/...)");
    in.sels[2] = "unix:path:/opt/yourorg/bin/server";
    in.sels[1] = "unix:sha256:def456";
    expect_refused(policy(state), &in, "policy.selectors.digest",
                   "selector policy: unix:sha256:def456 is not a SHA-256 hash (use "
                   "unix:sha256:<64 lowercase hex>, as sha256sum prints it)");
    in.sels[0] = "unix:user:payments";
    in.sels[1] = "unix:sha256:" HEX64;
    expect_refused(policy(state), &in, "policy.selectors.required",
                   "selector policy: unix entries need unix:uid (add unix:uid:<uid>)");
}

static void
systemd_and_model_rules(void **state)
{
    expect_refused(policy(state),
                   &(struct in){.id = "spiffe://yourorg.com/dev/gcp/checkout/order-processor",
                                .sels = {"systemd:name:order"}},
                   "policy.selectors.required",
                   "selector policy: systemd entries need systemd:id (add systemd:id:<unit "
                   "name>)");
    expect_refused(policy(state),
                   &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/api-server",
                                .sels = {K8S_OK, UNIX_OK}},
                   "policy.selectors.mixed_models",
                   "selector policy: one entry may not mix k8s and unix selectors (make one "
                   "entry per compute model)");
    expect_refused(policy(state),
                   &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/api-server",
                                .sels = {K8S_OK, UNIX_OK, "systemd:id:x.service"}},
                   "policy.selectors.mixed_models",
                   "selector policy: one entry may not mix k8s, unix and systemd selectors (make "
                   "one entry per compute model)");
    expect_refused(policy(state),
                   &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/api-server",
                                .sels = {"docker:label:app:api"}},
                   "policy.selectors.model",
                   "selector policy: no selector names a compute model (add the selectors of one "
                   "of: k8s, unix, systemd; a node alias is parented to spiffe://" TD "/sigil/server)");
    expect_refused(policy(state),
                   &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/api-server"},
                   "policy.selectors.empty",
                   "selector policy: the entry has no selectors, so it would never match (add the "
                   "selectors that identify the workload)");
}

static void
discouraged_by_tier(void **state)
{
    struct sigil_policy *p = policy(state);
    struct sigil_policy_result res;
    const char *why = NULL;
    const char *msg = "selector policy: k8s:pod-name:api-server-7d9f is discouraged: pod names "
                      "change on every pod restart (remove it; k8s:ns and k8s:sa scope the "
                      "workload)";
    struct in in = {.id = "spiffe://yourorg.com/prod/gcp/payments/api-server",
                    .sels = {K8S_OK, "k8s:pod-name:api-server-7d9f"}};

    expect_refused(p, &in, "policy.selectors.discouraged", msg);

    assert_int_equal(sigil_policy_set_tier(p, "relaxed", &why), 0);
    run(p, &in, &res);
    assert_true(res.ok);
    assert_int_equal(res.n_warnings, 1);
    assert_string_equal(res.warnings[0].rule, "policy.selectors.discouraged");
    assert_string_equal(res.warnings[0].message, msg);
    sigil_policy_result_free(&res);

    assert_int_equal(sigil_policy_set_tier(p, "off", &why), 0);
    expect_ok(p, &in);

    /* the other three of the seed (§6.3), back in strict */
    assert_int_equal(sigil_policy_set_tier(p, "strict", &why), 0);
    in.sels[3] = "k8s:pod-uid:0f1e2d3c";
    expect_refused(p, &in, "policy.selectors.discouraged",
                   "selector policy: k8s:pod-uid:0f1e2d3c is discouraged: pod UIDs change on every "
                   "pod restart (remove it; k8s:ns and k8s:sa scope the workload)");
    in.sels[3] = "k8s:node-name:gke-pool-1-abcd";
    expect_refused(p, &in, "policy.selectors.discouraged",
                   "selector policy: k8s:node-name:gke-pool-1-abcd is discouraged: it ties the "
                   "identity to where the pod was scheduled (remove it; k8s:ns and k8s:sa scope "
                   "the workload)");
    expect_refused(p,
                   &(struct in){.id = "spiffe://yourorg.com/prod/aws/payments/order-processor",
                                .sels = {UNIX_OK, "unix:pid:4242"}},
                   "policy.selectors.discouraged",
                   "selector policy: unix:pid:4242 is discouraged: process IDs change on every "
                   "process restart (remove it; unix:uid, unix:path and unix:sha256 identify the "
                   "process)");

    /* a key listed as "warn" only warns even in strict; one of our own has a plain text */
    assert_int_equal(sigil_policy_add_discouraged(p, "k8s:container-name", "warn", &why), 0);
    in.sels[3] = "k8s:container-name:api";
    in.sels[4] = "k8s:pod-uid:1";
    run(p, &in, &res);
    assert_false(res.ok);
    assert_string_equal(res.rule, "policy.selectors.discouraged");
    assert_int_equal(res.n_warnings, 1);
    assert_string_equal(res.warnings[0].message,
                        "selector policy: k8s:container-name:api is discouraged: this server's "
                        "policy discourages it (remove it)");
    sigil_policy_result_free(&res);
    /* replacing the action of a listed key */
    assert_int_equal(sigil_policy_add_discouraged(p, "k8s:pod-uid", "warn", &why), 0);
    run(p, &in, &res);
    assert_true(res.ok);
    assert_int_equal(res.n_warnings, 2);
    sigil_policy_result_free(&res);
    sigil_policy_clear_discouraged(p);
    expect_ok(p, &in);
}

static void
warnings_kept_beside_a_refusal(void **state)
{
    struct sigil_policy *p = policy(state);
    struct sigil_policy_result res;
    const char *why = NULL;

    assert_int_equal(sigil_policy_set_tier(p, "relaxed", &why), 0);
    run(p,
        &(struct in){.id = "spiffe://other.org/prod/gcp/payments/api-server",
                     .sels = {"k8s:ns:payments", "k8s:pod-name:a", "k8s:node-name:n"},
                     .x509 = 5},
        &res);
    assert_false(res.ok);
    /* the first refusal wins: the trust domain, not the selectors or the TTL */
    assert_string_equal(res.rule, "policy.id.trust_domain");
    assert_int_equal(res.n_warnings, 2);
    assert_string_equal(res.warnings[0].rule, "policy.selectors.discouraged");
    assert_non_null(strstr(res.warnings[0].message, "k8s:node-name:n"));
    assert_non_null(strstr(res.warnings[1].message, "k8s:pod-name:a"));
    sigil_policy_result_free(&res);
}

/* --- TTLs */

static void
ttl_bounds(void **state)
{
    struct in in = {.id = "spiffe://yourorg.com/prod/gcp/payments/api-server", .sels = {K8S_OK}};

    in.x509 = 59;
    expect_refused(policy(state), &in, "policy.ttl.x509",
                   "TTL policy: x509_svid_ttl 59s is below the minimum 1m (use 1m to 1d, or 0 for "
                   "the default 1h)");
    in.x509 = 86401;
    expect_refused(policy(state), &in, "policy.ttl.x509",
                   "TTL policy: x509_svid_ttl 1d1s is above the maximum 1d (use 1m to 1d, or 0 "
                   "for the default 1h)");
    in.x509 = -5;
    expect_refused(policy(state), &in, "policy.ttl.x509",
                   "TTL policy: x509_svid_ttl -5s is negative (use 1m to 1d, or 0 for the default "
                   "1h)");
    in.x509 = INT64_MAX;
    expect_refused(policy(state), &in, "policy.ttl.x509",
                   "TTL policy: x509_svid_ttl 9223372036854775807s is above the maximum 1d (use "
                   "1m to 1d, or 0 for the default 1h)");
    in.x509 = 60;
    expect_ok(policy(state), &in);
    in.x509 = 86400;
    expect_ok(policy(state), &in);
    in.jwt = 29;
    expect_refused(policy(state), &in, "policy.ttl.jwt",
                   "TTL policy: jwt_svid_ttl 29s is below the minimum 30s (use 30s to 1h, or 0 "
                   "for the default 5m)");
    in.jwt = 7200;
    expect_refused(policy(state), &in, "policy.ttl.jwt",
                   "TTL policy: jwt_svid_ttl 2h is above the maximum 1h (use 30s to 1h, or 0 for "
                   "the default 5m)");
    in.jwt = 3600;
    expect_ok(policy(state), &in);
}

static void
ttl_setters(void **state)
{
    struct sigil_policy *p = policy(state);
    const char *why = NULL;

    assert_int_equal(sigil_policy_set_ttl_str(p, "x509", "5m", "12h", "2h", &why), 0);
    assert_int_equal(p->x509_ttl.min, 300);
    assert_int_equal(p->x509_ttl.max, 43200);
    assert_int_equal(p->x509_ttl.default_s, 7200);
    assert_int_equal(sigil_policy_set_ttl_str(p, "jwt", "1500ms", "1h", "5m", &why),
                     SIGIL_ERR_INVALID);
    assert_string_equal(why, "policy: TTLs are whole seconds");
    assert_int_equal(sigil_policy_set_ttl_str(p, "jwt", "1x", "1h", "5m", &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_policy_set_ttl(p, "jwt", 60, 30, 45, &why), SIGIL_ERR_INVALID);
    assert_string_equal(why, "policy: TTL bounds need 0 < min <= default <= max");
    assert_int_equal(sigil_policy_set_ttl(p, "jwt", 0, 30, 10, &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_policy_set_ttl(p, "jwt", 10, 5, 30, &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_policy_set_ttl(p, "jwt", 1, (int64_t)INT32_MAX + 1, 30, &why),
                     SIGIL_ERR_RANGE);
    assert_int_equal(sigil_policy_set_ttl(p, "svid", 1, 10, 5, &why), SIGIL_ERR_INVALID);
    assert_string_equal(why, "policy: TTL kind is \"x509\" or \"jwt\"");
    /* failures left the JWT bounds as they were */
    assert_int_equal(p->jwt_ttl.min, 30);
    assert_int_equal(p->jwt_ttl.max, 3600);
    assert_int_equal(p->jwt_ttl.default_s, 300);
    expect_refused(p,
                   &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/api-server",
                                .sels = {K8S_OK},
                                .x509 = 60},
                   "policy.ttl.x509",
                   "TTL policy: x509_svid_ttl 1m is below the minimum 5m (use 5m to 12h, or 0 for "
                   "the default 2h)");
}

/* --- exemptions */

static void
node_alias_exempt_from_models(void **state)
{
    struct in in = {.id = "spiffe://yourorg.com/sigil/node/rack-7",
                    .parent = "spiffe://yourorg.com/sigil/server",
                    .sels = {"x509pop:subject:cn:rack-7", "join_token:abc"},
                    .node_alias = true};

    expect_ok(policy(state), &in);
    in.id = "spiffe://yourorg.com/sigil/node/dc1/rack-7";
    expect_ok(policy(state), &in);
    /* the ID: under /sigil/node/, with a name */
    in.id = "spiffe://yourorg.com/prod/onprem/platform/rack-7-nodes";
    expect_refused(policy(state), &in, "policy.node_alias.id",
                   "SPIFFE ID policy: node alias "
                   "spiffe://yourorg.com/prod/onprem/platform/rack-7-nodes is not under "
                   "spiffe://yourorg.com/sigil/node/ (name it "
                   "spiffe://yourorg.com/sigil/node/<name>, e.g. "
                   "spiffe://yourorg.com/sigil/node/rack-7)");
    in.id = "spiffe://yourorg.com/sigil/nodes/x";
    expect_refused(policy(state), &in, "policy.node_alias.id",
                   "SPIFFE ID policy: node alias spiffe://yourorg.com/sigil/nodes/x is not under "
                   "spiffe://yourorg.com/sigil/node/ (name it "
                   "spiffe://yourorg.com/sigil/node/<name>, e.g. "
                   "spiffe://yourorg.com/sigil/node/rack-7)");
    in.id = "spiffe://other.org/sigil/node/rack-7";
    expect_refused(policy(state), &in, "policy.id.trust_domain",
                   "SPIFFE ID policy: spiffe://other.org/sigil/node/rack-7 is not in trust domain "
                   "yourorg.com (use an ID under spiffe://yourorg.com/)");
    /* the selectors: node attestation only */
    in.id = "spiffe://yourorg.com/sigil/node/rack-7";
    in.sels[2] = "unix:uid:0";
    expect_refused(policy(state), &in, "policy.node_alias.selectors",
                   "selector policy: a node alias matches node attestation selectors and "
                   "unix:uid:0 is not one (use join_token: or x509pop: selectors; to match "
                   "workloads, parent the entry to an agent or a node alias instead of "
                   "spiffe://yourorg.com/sigil/server)");
    in.sels[2] = "k8s:node-name:n1";
    expect_refused(policy(state), &in, "policy.node_alias.selectors",
                   "selector policy: a node alias matches node attestation selectors and "
                   "k8s:node-name:n1 is not one (use join_token: or x509pop: selectors; to match "
                   "workloads, parent the entry to an agent or a node alias instead of "
                   "spiffe://yourorg.com/sigil/server)");
    /* ... and the TTL rules still apply */
    in.sels[2] = NULL;
    in.jwt = 1;
    expect_refused(policy(state), &in, "policy.ttl.jwt",
                   "TTL policy: jwt_svid_ttl 1s is below the minimum 30s (use 30s to 1h, or 0 for "
                   "the default 5m)");
    /* without the flag: an alias ID and node selectors are refused on a workload entry */
    in.jwt = 0;
    in.node_alias = false;
    in.parent = "spiffe://yourorg.com/sigil/agent/n1";
    expect_refused(policy(state), &in, "policy.id.node_alias",
                   "SPIFFE ID policy: spiffe://yourorg.com/sigil/node/rack-7 is a node alias ID, "
                   "and a node alias's parent is spiffe://yourorg.com/sigil/server (give it that "
                   "parent, or choose an ID outside spiffe://yourorg.com/sigil/node/)");
    in.id = "spiffe://yourorg.com/prod/onprem/platform/api";
    expect_refused(policy(state), &in, "policy.selectors.node_type",
                   "selector policy: join_token:abc is a node attestation selector, which no "
                   "workload has (remove it; to group nodes, create a node alias: an entry "
                   "parented to spiffe://yourorg.com/sigil/server)");
    struct in wl = {.id = "spiffe://yourorg.com/prod/onprem/platform/api",
                    .parent = "spiffe://yourorg.com/sigil/node/rack-7",
                    .sels = {UNIX_OK, "x509pop:subject:cn:rack-7"}};
    expect_refused(policy(state), &wl, "policy.selectors.node_type",
                   "selector policy: x509pop:subject:cn:rack-7 is a node attestation selector, "
                   "which no workload has (remove it; to group nodes, create a node alias: an "
                   "entry parented to spiffe://yourorg.com/sigil/server)");
    /* a workload parented to the alias is an ordinary workload entry */
    wl.sels[3] = NULL;
    expect_ok(policy(state), &wl);
    in.node_alias = true;
    in.id = "spiffe://yourorg.com/sigil/node/rack-7";
    in.parent = "spiffe://yourorg.com/sigil/server";
    in.sels[0] = NULL;
    expect_refused(policy(state), &in, "policy.selectors.empty",
                   "selector policy: the entry has no selectors, so it would never match (add the "
                   "selectors that identify the workload)");
}

static void
exempt_prefixes(void **state)
{
    struct sigil_policy *p = policy(state);
    const char *why = NULL;

    /* the default: Sigil's own IDs under /sigil skip the scheme, not the selector rules */
    expect_ok(
        p, &(struct in){.id = "spiffe://yourorg.com/sigil/agent/x509pop/abc", .sels = {UNIX_OK}});
    expect_ok(p, &(struct in){.id = "spiffe://yourorg.com/sigil", .sels = {UNIX_OK}});
    expect_refused(
        p, &(struct in){.id = "spiffe://yourorg.com/sigil/downstream/gcp", .sels = {"unix:uid:0"}},
        "policy.selectors.required",
        "selector policy: unix entries need unix:path (add unix:path:<absolute path>)");
    /* segment boundary: /sigilx is not under /sigil */
    expect_refused(p, &(struct in){.id = "spiffe://yourorg.com/sigilx/a", .sels = {UNIX_OK}},
                   "policy.id.scheme",
                   "SPIFFE ID policy: spiffe://yourorg.com/sigilx/a has 2 path segments, the "
                   "scheme has 4 " SCHEME_FIX);
    /* admin and downstream flags alone exempt nothing */
    struct in admin = {.id = "spiffe://yourorg.com/ops/admin",
                       .sels = {UNIX_OK},
                       .admin = true,
                       .downstream = true};
    expect_refused(p, &admin, "policy.id.scheme",
                   "SPIFFE ID policy: spiffe://yourorg.com/ops/admin has 2 path segments, the "
                   "scheme has 4 " SCHEME_FIX);

    assert_int_equal(sigil_policy_add_exempt_prefix(p, "spiffe://yourorg.com/ops", &why), 0);
    assert_int_equal(sigil_policy_add_exempt_prefix(p, "spiffe://yourorg.com/ops", &why), 0);
    assert_int_equal(p->n_exempt, 2);
    expect_ok(p, &admin);
    assert_int_equal(sigil_policy_add_exempt_prefix(p, "spiffe://other.org/ops", &why),
                     SIGIL_ERR_INVALID);
    assert_string_equal(why, "policy: an exempt prefix must be in the policy's trust domain");
    assert_int_equal(sigil_policy_add_exempt_prefix(p, "spiffe://yourorg.com/ops/", &why),
                     SIGIL_ERR_INVALID);
    assert_string_equal(why, "ID-5: path has a trailing '/'");
    assert_int_equal(p->n_exempt, 2);
    sigil_policy_clear_exempt_prefixes(p);
    assert_int_equal(p->n_exempt, 0);
    expect_refused(p, &(struct in){.id = "spiffe://yourorg.com/sigil", .sels = {UNIX_OK}},
                   "policy.id.scheme",
                   "SPIFFE ID policy: spiffe://yourorg.com/sigil has 1 path segment, the scheme "
                   "has 4 " SCHEME_FIX);

    /* a trust domain that names workloads its own way */
    sigil_policy_set_enforce_scheme(p, false);
    expect_ok(p, &admin);
    expect_ok(p, &(struct in){.id = "spiffe://yourorg.com/Any/Shape/At_All", .sels = {UNIX_OK}});
    /* still a leaf identity and still ours */
    expect_refused(p, &(struct in){.id = "spiffe://yourorg.com", .sels = {UNIX_OK}},
                   "policy.id.path",
                   "SPIFFE ID policy: spiffe://yourorg.com has no path, and an SVID's ID needs "
                   "one (X-2) " SCHEME_FIX);
    expect_refused(p, &(struct in){.id = "spiffe://other.org/a", .sels = {UNIX_OK}},
                   "policy.id.trust_domain",
                   "SPIFFE ID policy: spiffe://other.org/a is not in trust domain yourorg.com "
                   "(use an ID under spiffe://yourorg.com/)");
}

/* --- delegation */

static void
team_prefixes(void **state)
{
    struct sigil_spiffeid api = must_id("spiffe://yourorg.com/prod/gcp/payments/api-server");
    struct sigil_spiffeid team = must_id("spiffe://yourorg.com/prod/gcp/payments");
    struct sigil_spiffeid other = must_id("spiffe://other.org/prod/gcp/payments/api-server");
    const char *pay[] = {"spiffe://yourorg.com/prod/gcp/pay"};
    const char *payments[] = {"spiffe://yourorg.com/prod/gcp/payments"};
    const char *two[] = {"spiffe://yourorg.com/prod/gcp/identity",
                         "spiffe://yourorg.com/prod/gcp/payments"};
    const char *bad[] = {"spiffe://yourorg.com/prod/gcp/payments/",
                         "spiffe://yourorg.com/prod/"
                         "gcp/pay*",
                         NULL};
    const char *root[] = {"spiffe://yourorg.com"};
    const char *seg = NULL;
    size_t len = 0;

    (void)state;
    /* no prefix match across a segment boundary */
    assert_false(sigil_policy_may_write(pay, 1, &api));
    assert_true(sigil_policy_may_write(payments, 1, &api));
    assert_true(sigil_policy_may_write(payments, 1, &team));
    assert_false(sigil_policy_may_write(payments, 1, &other));
    assert_true(sigil_policy_may_write(two, 2, &api));
    assert_false(sigil_policy_may_write(two, 1, &api));
    assert_false(sigil_policy_may_write(two, 0, &api));
    assert_false(sigil_policy_may_write(NULL, 1, &api));
    /* prefixes that are not SPIFFE IDs grant nothing */
    assert_false(sigil_policy_may_write(bad, 3, &api));
    /* the platform team's prefix is the whole trust domain */
    assert_true(sigil_policy_may_write(root, 1, &api));
    assert_false(sigil_policy_may_write(root, 1, &other));

    assert_int_equal(sigil_policy_id_team(policy(state), &api, &seg, &len), 0);
    assert_int_equal(len, 8);
    assert_memory_equal(seg, "payments", 8);
    assert_int_equal(sigil_policy_id_segment(policy(state), &api, "workload", &seg, &len), 0);
    assert_int_equal(len, 10);
    assert_memory_equal(seg, "api-server", 10);
    assert_int_equal(sigil_policy_id_segment(policy(state), &api, "environment", &seg, &len), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(seg, "prod", 4);
    assert_int_equal(sigil_policy_id_segment(policy(state), &api, "region", &seg, &len),
                     SIGIL_ERR_NOTFOUND);
    assert_int_equal(sigil_policy_id_team(policy(state), &team, &seg, &len), SIGIL_ERR_NOTFOUND);
    assert_int_equal(sigil_policy_id_team(policy(state), &other, &seg, &len), SIGIL_ERR_NOTFOUND);
    struct sigil_spiffeid agent = must_id("spiffe://yourorg.com/sigil/agent/join_token/abc");
    assert_int_equal(sigil_policy_id_team(policy(state), &agent, &seg, &len), SIGIL_ERR_NOTFOUND);
}

/* --- building the policy from config */

static void
scheme_setters(void **state)
{
    struct sigil_policy *p = policy(state);
    const char *why = NULL;
    const char *two[] = {"team", "workload"};
    const char *dup[] = {"team", "team"};
    const char *upper[] = {"Team"};
    const char *envs[] = {"prod", "qa"};
    const char *slash[] = {"prod/eu"};
    const char *dots[] = {".."};
    const char *twice[] = {"prod", "prod"};
    struct sigil_spiffeid id = must_id("spiffe://yourorg.com/payments/api");
    const char *seg = NULL;
    size_t len = 0;

    /* bad values leave the list as it was */
    assert_int_equal(sigil_policy_set_allowed(p, "environment", slash, 1, &why), SIGIL_ERR_INVALID);
    assert_string_equal(why, "policy: an allowed value is one path segment and may not hold '/'");
    assert_int_equal(sigil_policy_set_allowed(p, "environment", dots, 1, &why), SIGIL_ERR_INVALID);
    assert_string_equal(why, "ID-5: path segment is '.' or '..'");
    assert_int_equal(sigil_policy_set_allowed(p, "environment", twice, 2, &why), SIGIL_ERR_INVALID);
    assert_string_equal(why, "policy: an allowed value is listed twice");
    assert_int_equal(sigil_policy_set_allowed(p, "region", envs, 2, &why), SIGIL_ERR_NOTFOUND);
    assert_string_equal(why, "policy: no scheme segment has that name");
    assert_int_equal(p->segments[0].n_allowed, 3);

    assert_int_equal(sigil_policy_set_allowed(p, "environment", envs, 2, &why), 0);
    expect_ok(p, &(struct in){.id = "spiffe://yourorg.com/qa/gcp/payments/api", .sels = {K8S_OK}});
    expect_refused(
        p, &(struct in){.id = "spiffe://yourorg.com/dev/gcp/payments/api", .sels = {K8S_OK}},
        "policy.id.segment_value",
        "SPIFFE ID policy: environment \"dev\" is not allowed (use one of: prod, qa)");
    /* no values: the pattern decides */
    assert_int_equal(sigil_policy_set_allowed(p, "environment", NULL, 0, &why), 0);
    expect_ok(
        p, &(struct in){.id = "spiffe://yourorg.com/sandbox/gcp/payments/api", .sels = {K8S_OK}});

    assert_int_equal(sigil_policy_set_scheme(p, dup, 2, &why), SIGIL_ERR_INVALID);
    assert_string_equal(why, "policy: a scheme segment name is listed twice");
    assert_int_equal(sigil_policy_set_scheme(p, upper, 1, &why), SIGIL_ERR_INVALID);
    assert_string_equal(why, "policy: a scheme segment name must be [a-z][a-z0-9_]{0,31}");
    assert_int_equal(sigil_policy_set_scheme(p, two, 0, &why), SIGIL_ERR_INVALID);
    assert_int_equal(p->n_segments, 4);

    assert_int_equal(sigil_policy_set_scheme(p, two, 2, &why), 0);
    expect_ok(p, &(struct in){.id = "spiffe://yourorg.com/payments/api", .sels = {K8S_OK}});
    expect_refused(
        p, &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/api", .sels = {K8S_OK}},
        "policy.id.scheme",
        "SPIFFE ID policy: spiffe://yourorg.com/prod/gcp/payments/api has 4 path "
        "segments, the scheme has 2 (use spiffe://yourorg.com/<team>/<workload>)");
    assert_int_equal(sigil_policy_id_team(p, &id, &seg, &len), 0);
    assert_memory_equal(seg, "payments", len);
}

static void
pattern_setter(void **state)
{
    struct sigil_policy *p = policy(state);
    const char *why = NULL;
    static const char *const bad[] = {
        "",          "a-z",        "[a-z",     "[]",           "[z-a]",           "[^a-z]",
        "[a-z]+",    "[a-z]*",     "[\\d]",    "[a-z]{",       "[a-z]{1",         "[a-z]{1,}",
        "[a-z]{,3}", "[a-z]{3,1}", "[a-z]{0}", "[a-z]{12345}", "[a-z][a-z][a-z]", "[a-z]{1}x",
        "[A-z]",     "[a-z/]",     "[a-z ]",   "[a-z]{1}{2}",
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        if (sigil_policy_set_pattern(p, "workload", bad[i], &why) == 0)
            fail_msg("pattern \"%s\" accepted", bad[i]);
        assert_non_null(why);
    }
    assert_int_equal(sigil_policy_set_pattern(p, "workload", "[^a]", &why), SIGIL_ERR_INVALID);
    assert_string_equal(why, "segment pattern: a class may hold only SPIFFE path characters "
                             "[A-Za-z0-9._-] (ID-5); no negation or escapes");
    assert_int_equal(sigil_policy_set_pattern(p, "nope", "[a-z]", &why), SIGIL_ERR_NOTFOUND);
    /* failures left the default in place */
    assert_string_equal(p->segments[3].pattern, SIGIL_POLICY_DEFAULT_PATTERN);

    assert_int_equal(sigil_policy_set_pattern(p, "workload", "[a-z]{2,4}", &why), 0);
    expect_ok(p,
              &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/api", .sels = {K8S_OK}});
    expect_refused(p,
                   &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/a", .sels = {K8S_OK}},
                   "policy.id.segment_pattern",
                   "SPIFFE ID policy: workload \"a\" does not match [a-z]{2,4} (lengthen it to at "
                   "least 2 characters)");
    expect_refused(
        p, &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/abcde", .sels = {K8S_OK}},
        "policy.id.segment_pattern",
        "SPIFFE ID policy: workload \"abcde\" does not match [a-z]{2,4} (shorten it to "
        "at most 4 characters)");
    /* '-' first or last is a literal; ranges and dots */
    assert_int_equal(sigil_policy_set_pattern(p, "workload", "[A-Z][-a-z0-9._]{0,10}", &why), 0);
    expect_ok(p, &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/Api-v1.2_x",
                              .sels = {K8S_OK}});
    expect_refused(
        p, &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/api", .sels = {K8S_OK}},
        "policy.id.segment_pattern",
        "SPIFFE ID policy: workload \"api\" does not match [A-Z][-a-z0-9._]{0,10} ('a' "
        "at position 1 is not allowed there; rename the segment to match)");
    assert_int_equal(sigil_policy_set_pattern(p, "workload", "[a-z-]", &why), 0);
    expect_ok(p, &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/-", .sels = {K8S_OK}});
    assert_int_equal(sigil_policy_set_pattern(p, "workload", "[a-z][0-9]", &why), 0);
    expect_ok(p, &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/a1", .sels = {K8S_OK}});
    expect_refused(
        p, &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/a12", .sels = {K8S_OK}},
        "policy.id.segment_pattern",
        "SPIFFE ID policy: workload \"a12\" does not match [a-z][0-9] (shorten it to at "
        "most 2 characters)");
}

static void
model_and_tier_setters(void **state)
{
    struct sigil_policy *p = policy(state);
    const char *why = NULL;
    const char *docker[] = {"docker:image_id"};
    const char *wrong_type[] = {"k8s:ns"};
    const char *bad_key[] = {"docker:Image"};
    const char *dup[] = {"docker:image_id", "docker:image_id"};
    struct in tagged = {
        .id = "spiffe://yourorg.com/prod/gcp/payments/api",
        .sels = {"k8s:ns:payments", "k8s:sa:api", "k8s:container-image:nginx:1.25"}};

    assert_int_equal(sigil_policy_set_required(p, "docker", wrong_type, 1, &why),
                     SIGIL_ERR_INVALID);
    assert_string_equal(why, "policy: a required selector is \"<model type>:<key>\"");
    assert_int_equal(sigil_policy_set_required(p, "docker", bad_key, 1, &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_policy_set_required(p, "docker", dup, 2, &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_policy_set_required(p, "Docker", docker, 1, &why), SIGIL_ERR_INVALID);
    assert_int_equal(p->n_models, 3);
    assert_int_equal(sigil_policy_set_required(p, "docker", docker, 1, &why), 0);
    assert_int_equal(p->n_models, 4);
    expect_ok(p, &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/api",
                              .sels = {"docker:image_id:sha256:" HEX64}});
    expect_refused(p,
                   &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/api",
                                .sels = {"docker:label:app:api"}},
                   "policy.selectors.required",
                   "selector policy: docker entries need docker:image_id (add "
                   "docker:image_id:<value>)");

    /* digest check off: a tag is enough, and the fix stops asking for a digest */
    assert_int_equal(sigil_policy_set_digest_check(p, "k8s", false, &why), 0);
    expect_ok(p, &tagged);
    expect_refused(p,
                   &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/api",
                                .sels = {"k8s:ns:payments", "k8s:sa:api"}},
                   "policy.selectors.required",
                   "selector policy: k8s entries need k8s:container-image (add "
                   "k8s:container-image:<image>)");
    assert_int_equal(sigil_policy_set_digest_check(p, "podman", false, &why), SIGIL_ERR_NOTFOUND);

    /* fewer requirements */
    assert_int_equal(sigil_policy_set_required(p, "k8s", wrong_type, 1, &why), 0);
    expect_ok(p, &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/api",
                              .sels = {"k8s:ns:payments"}});

    /* removing a model makes its selectors model-less */
    assert_int_equal(sigil_policy_remove_model(p, "systemd", &why), 0);
    assert_int_equal(sigil_policy_remove_model(p, "systemd", &why), SIGIL_ERR_NOTFOUND);
    expect_refused(p,
                   &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/api",
                                .sels = {"systemd:id:api.service"}},
                   "policy.selectors.model",
                   "selector policy: no selector names a compute model (add the selectors of one "
                   "of: k8s, unix, docker; a node alias is parented to spiffe://" TD "/sigil/server)");
    /* no models at all: no model rules */
    assert_int_equal(sigil_policy_remove_model(p, "k8s", &why), 0);
    assert_int_equal(sigil_policy_remove_model(p, "unix", &why), 0);
    assert_int_equal(sigil_policy_remove_model(p, "docker", &why), 0);
    expect_ok(p, &(struct in){.id = "spiffe://yourorg.com/prod/gcp/payments/api",
                              .sels = {"systemd:id:api.service", "unix:uid:1"}});

    assert_int_equal(sigil_policy_set_tier(p, "lenient", &why), SIGIL_ERR_INVALID);
    assert_string_equal(why, "policy: tier is \"strict\", \"relaxed\" or \"off\"");
    assert_int_equal(p->tier, SIGIL_POLICY_TIER_STRICT);
    assert_int_equal(sigil_policy_add_discouraged(p, "k8s:pod-name", "ignore", &why),
                     SIGIL_ERR_INVALID);
    assert_string_equal(why, "policy: a discouraged selector's action is \"refuse\" or \"warn\"");
    assert_int_equal(sigil_policy_add_discouraged(p, "pod-name", "warn", &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_policy_add_discouraged(p, "k8s:", "warn", &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_policy_add_discouraged(p, "K8S:pod", "warn", &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_policy_add_discouraged(p, "k8s:pod:name", "warn", &why),
                     SIGIL_ERR_INVALID);
    assert_int_equal(p->n_discouraged, 4);
}

static void
init_and_bad_calls(void **state)
{
    struct sigil_policy p;
    struct sigil_policy_result res;
    struct sigil_policy_entry e = {0};
    struct sigil_selector_set set = SIGIL_SELECTOR_SET_INIT;
    struct sigil_spiffeid id = must_id("spiffe://yourorg.com/prod/gcp/payments/api");
    const char *why = NULL;

    (void)state;
    assert_int_equal(sigil_policy_init_defaults(&p, "spiffe://yourorg.com", &why), 0);
    assert_string_equal(p.trust_domain, "yourorg.com");
    assert_string_equal(p.exempt[0].str, "spiffe://yourorg.com/sigil");
    sigil_policy_free(&p);
    sigil_policy_free(&p);
    assert_int_equal(sigil_policy_init_defaults(&p, "YourOrg.com", &why), SIGIL_ERR_INVALID);
    assert_string_equal(why, "ID-3: trust domain must be lowercase");
    assert_int_equal(sigil_policy_init_defaults(&p, NULL, &why), SIGIL_ERR_INVALID);

    assert_int_equal(sigil_policy_check_entry(policy(state), NULL, &res), SIGIL_ERR_INVALID);
    assert_false(res.ok);
    assert_null(res.rule);
    assert_int_equal(sigil_policy_check_entry(policy(state), &e, &res), SIGIL_ERR_INVALID);
    e.spiffe_id = &id;
    assert_int_equal(sigil_policy_check_entry(policy(state), &e, &res), SIGIL_ERR_INVALID);
    e.selectors = &set;
    assert_int_equal(sigil_policy_check_entry(NULL, &e, &res), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_policy_check_entry(policy(state), &e, NULL), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_policy_check_entry(policy(state), &e, &res), 0);
    assert_false(res.ok);
    assert_string_equal(res.rule, "policy.selectors.empty");
    sigil_policy_result_free(&res);
    sigil_policy_result_free(&res);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(seed_examples_accepted),
        T(id_wrong_trust_domain),
        T(id_without_path),
        T(id_segment_count),
        T(id_segment_values),
        T(id_segment_patterns),
        T(k8s_required),
        T(k8s_image_digest),
        T(unix_required_and_values),
        T(systemd_and_model_rules),
        T(discouraged_by_tier),
        T(warnings_kept_beside_a_refusal),
        T(ttl_bounds),
        T(ttl_setters),
        T(node_alias_exempt_from_models),
        T(exempt_prefixes),
        T(team_prefixes),
        T(scheme_setters),
        T(pattern_setter),
        T(model_and_tier_setters),
        T(init_and_bad_calls),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
