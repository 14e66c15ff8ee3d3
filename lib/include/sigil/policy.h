/* The built-in registration policy (seed "trust domain & attestation policy framework" §4,
 * §6): every registration-entry write is checked against a SPIFFE ID scheme, per compute
 * model selector requirements, discouraged selectors and TTL bounds, and a refusal names the
 * rule it broke and how to fix it. Also the team-delegation check of the admin API.
 *
 * What is checked, in this order (the first refusal wins; warnings are all collected):
 *   policy.id.trust_domain      the entry's SPIFFE ID is in the policy's trust domain
 *   policy.id.path              the ID has a path (X-2: an SVID's ID is never path-less)
 *   policy.id.scheme            the ID has exactly the scheme's segments (unless exempt)
 *   policy.id.segment_value     a segment with an allowed-values list holds one of them
 *   policy.id.segment_pattern   a segment without such a list matches its pattern
 *   policy.parent.trust_domain  the parent ID (when given) is in the trust domain
 *   policy.selectors.empty      the entry has at least one selector
 *   policy.selectors.model      the selectors name a compute model        (not node aliases)
 *   policy.selectors.mixed_models   they name only one                   (not node aliases)
 *   policy.selectors.required   the model's required "type:key" selectors are all present
 *   policy.selectors.digest     container-image values are pinned by "@sha256:<64 hex>",
 *                               sha256 values are 64 lowercase hex (the model's digest check)
 *   policy.selectors.path       path values are absolute
 *   policy.selectors.discouraged    no discouraged selector (refused or warned by tier)
 *   policy.ttl.x509, policy.ttl.jwt TTLs within bounds (0 means the default)
 *
 * Where the seed says region, zone, cluster, namespace, pod and node never appear in the path:
 * no code can tell that a segment "is a region", so this is enforced through the scheme (a
 * fixed number of segments, closed value lists for environment and platform, one pattern
 * for the rest). */
#ifndef SIGIL_POLICY_H
#define SIGIL_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sigil/selectors.h"
#include "sigil/spiffeid.h"

#define SIGIL_POLICY_SEGMENTS_MAX 16    /* segments in the ID scheme */
#define SIGIL_POLICY_NAME_MAX 32        /* bytes of a segment name */
#define SIGIL_POLICY_VALUES_MAX 256     /* allowed values of one segment */
#define SIGIL_POLICY_PATTERN_MAX 64     /* bytes of a segment pattern */
#define SIGIL_POLICY_EXEMPT_MAX 64      /* exempt ID prefixes */
#define SIGIL_POLICY_MODELS_MAX 16      /* compute models */
#define SIGIL_POLICY_REQUIRED_MAX 16    /* required selector keys per model */
#define SIGIL_POLICY_DISCOURAGED_MAX 64 /* discouraged selector keys */
#define SIGIL_POLICY_TTL_MAX INT32_MAX  /* seconds: SPIRE's entry TTLs are int32 */
#define SIGIL_POLICY_DEFAULT_PATTERN "[a-z0-9][a-z0-9-]{0,62}"

/* How discouraged selectors are treated. */
enum sigil_policy_tier {
    SIGIL_POLICY_TIER_STRICT = 0, /* each discouraged selector refused or warned as listed */
    SIGIL_POLICY_TIER_RELAXED,    /* every discouraged selector only warns */
    SIGIL_POLICY_TIER_OFF,        /* discouraged selectors are not looked at */
};

/* What a discouraged selector does in the strict tier. */
enum sigil_policy_action {
    SIGIL_POLICY_REFUSE = 0,
    SIGIL_POLICY_WARN,
};

/* One segment of the ID scheme. A segment with allowed values must hold one of them (the
 * pattern is then not used); otherwise it must match the pattern. A pattern is a restricted
 * regular expression: one character class, or a class for the first character followed by a
 * class for the rest, the last class optionally counted by {n} or {min,max} (e.g.
 * "[a-z0-9][a-z0-9-]{0,62}", "[a-z]{2,8}"). A class lists characters and ranges ("a-z");
 * '-' first or last is literal; only SPIFFE path characters [A-Za-z0-9._-] may appear;
 * there is no negation, no '*' and no '+'. */
struct sigil_policy_segment {
    char *name;     /* "environment" */
    char **allowed; /* n_allowed values; none: any value matching the pattern */
    size_t n_allowed;
    char *pattern;     /* the pattern's text, for messages */
    uint8_t first[32]; /* bitmap of the first character's class, when has_first */
    uint8_t rest[32];  /* bitmap of the (remaining) characters' class */
    bool has_first;
    size_t rest_min; /* how many characters the last class takes */
    size_t rest_max;
};

/* A compute model, recognised by its selector type (k8s, unix, systemd, ...). */
struct sigil_policy_model {
    char *type;      /* the selector type, also the model's name */
    char **required; /* keys: "ns" means a "type:ns:<something>" selector is required */
    size_t n_required;
    bool digest_check; /* container-image must carry a digest; sha256 must be 64 hex */
};

/* A discouraged selector key: "type:key:<anything>" is refused or warned. */
struct sigil_policy_discouraged {
    char *type;
    char *key;
    enum sigil_policy_action action;
};

/* Bounds of one SVID TTL, in seconds: min <= default_s <= max, all > 0. */
struct sigil_policy_ttl {
    int64_t min;
    int64_t max;
    int64_t default_s; /* used when an entry says 0 */
};

/* The policy: plain data whose strings and arrays it owns. Build it with
 * sigil_policy_init_defaults, adjust it with the setters below (they validate and keep it
 * consistent), free it with sigil_policy_free. Read the fields freely; write them only
 * through the setters. */
struct sigil_policy {
    char trust_domain[SIGIL_TRUST_DOMAIN_MAX + 1];
    bool enforce_scheme; /* false: no policy.id.scheme / segment rules (trust domains
                            that name their workloads differently) */
    struct sigil_policy_segment *segments;
    size_t n_segments;
    struct sigil_spiffeid *exempt; /* IDs equal to or under these skip the scheme rules */
    size_t n_exempt;
    struct sigil_policy_model *models; /* none: no compute-model rules at all */
    size_t n_models;
    struct sigil_policy_discouraged *discouraged;
    size_t n_discouraged;
    enum sigil_policy_tier tier;
    struct sigil_policy_ttl x509_ttl;
    struct sigil_policy_ttl jwt_ttl;
};

/* A registration entry as the policy sees it; the caller owns everything it points to.
 * node_alias: the caller sets it for an entry whose parent is the server itself (a node
 * alias grouping agents by their node-attestation selectors: join_token, x509pop). Such
 * entries skip the compute-model rules (model, mixed_models, required, digest, path); their
 * ID must lie under spiffe://<td>/sigil/node/ (policy.node_alias.id) and their selectors be
 * node selectors only (policy.node_alias.selectors). A workload entry may neither take an
 * ID under /sigil/node/ (policy.id.node_alias) nor carry a node selector
 * (policy.selectors.node_type). The discouraged-selector and TTL rules apply to both. admin and downstream are carried
 * for the caller's records and for future rules: no rule of this version looks at them (an
 * admin or downstream entry is checked like any other; give such IDs an exempt prefix). */
struct sigil_policy_entry {
    const struct sigil_spiffeid *spiffe_id;     /* required */
    const struct sigil_spiffeid *parent_id;     /* NULL: not checked */
    const struct sigil_selector_set *selectors; /* required (may be empty: then refused) */
    int64_t x509_svid_ttl;                      /* seconds; 0: the policy's default */
    int64_t jwt_svid_ttl;                       /* seconds; 0: the policy's default */
    bool admin;
    bool downstream;
    bool node_alias;
};

/* One refusal or warning: rule is a static id ("policy.selectors.digest"), message says what
 * is wrong and the fix, e.g. "selector policy: k8s entries need k8s:container-image with a
 * digest (add k8s:container-image:<image>@sha256:<64 hex>)"; the result owns the message. */
struct sigil_policy_finding {
    const char *rule;
    const char *message;
};

/* The verdict of sigil_policy_check_entry. Free with sigil_policy_result_free. */
struct sigil_policy_result {
    bool ok;                               /* true: the entry may be written */
    const char *rule;                      /* the first refusal's rule id; NULL when ok */
    const char *message;                   /* its message; NULL when ok */
    struct sigil_policy_finding *warnings; /* warned (not refused) findings, in order */
    size_t n_warnings;
    int64_t x509_svid_ttl; /* the TTLs to store, the default put in for 0 (when in bounds) */
    int64_t jwt_svid_ttl;
    char *text; /* owns every message; private */
};

/* --- building a policy */

/* Fills p with the seed's defaults for trust domain td (bare "example.org" or
 * "spiffe://example.org"): scheme environment{prod,staging,dev}/platform{gcp,azure,aws,
 * onprem}/team/workload enforced, each segment pattern SIGIL_POLICY_DEFAULT_PATTERN; exempt
 * prefix spiffe://<td>/sigil (Sigil's own agent and server IDs); models k8s{ns,sa,
 * container-image}, unix{uid,path,sha256} with digest checks and systemd{id}; discouraged
 * k8s:pod-name, k8s:pod-uid, k8s:node-name, unix:pid (refuse); tier strict; X.509 TTL
 * 1m..24h default 1h; JWT TTL 30s..1h default 5m. p is overwritten (as if uninitialised).
 * Returns 0, or SIGIL_ERR_INVALID (bad td, *why set) / SIGIL_ERR_NOMEM; on error p holds
 * nothing. Free with sigil_policy_free. */
int sigil_policy_init_defaults(struct sigil_policy *p, const char *td, const char **why);

/* Frees everything p owns; p is then empty (and freeing it again is a no-op). */
void sigil_policy_free(struct sigil_policy *p);

/* --- setters, for the server's config loader. Each returns 0, or SIGIL_ERR_INVALID /
 * SIGIL_ERR_RANGE (over a cap) / SIGIL_ERR_NOTFOUND (no such segment or model) /
 * SIGIL_ERR_NOMEM with *why set to a static text naming the problem; on error p is
 * unchanged. */

/* Switches the ID scheme rules on or off. */
void sigil_policy_set_enforce_scheme(struct sigil_policy *p, bool on);

/* Replaces the scheme by n segment names (1..SIGIL_POLICY_SEGMENTS_MAX, each
 * [a-z][a-z0-9_]{0,31}, distinct), each with no allowed values and the default pattern. */
int sigil_policy_set_scheme(struct sigil_policy *p, const char *const *names, size_t n,
                            const char **why);

/* Sets the allowed values of segment `name` (n = 0: any value matching its pattern). Each
 * value must be a valid path segment (ID-5), distinct. */
int sigil_policy_set_allowed(struct sigil_policy *p, const char *name, const char *const *values,
                             size_t n, const char **why);

/* Sets the pattern of segment `name` (grammar: see struct sigil_policy_segment). */
int sigil_policy_set_pattern(struct sigil_policy *p, const char *name, const char *pattern,
                             const char **why);

/* Adds an exempt ID prefix ("spiffe://<td>/sigil"): a SPIFFE ID in the policy's trust
 * domain, with or without a path. Adding one already present changes nothing. */
int sigil_policy_add_exempt_prefix(struct sigil_policy *p, const char *prefix, const char **why);

/* Removes every exempt prefix. */
void sigil_policy_clear_exempt_prefixes(struct sigil_policy *p);

/* Adds or replaces compute model `type` (a selector type, [a-z0-9_]{1,32}) requiring the n
 * "type:key" selectors in required (e.g. "k8s:ns"; the type must be the model's, the key
 * [a-z0-9_-]{1,32}, distinct). A new model has the digest check on. */
int sigil_policy_set_required(struct sigil_policy *p, const char *type, const char *const *required,
                              size_t n, const char **why);

/* Turns the digest check of model `type` on or off. */
int sigil_policy_set_digest_check(struct sigil_policy *p, const char *type, bool on,
                                  const char **why);

/* Removes model `type` (SIGIL_ERR_NOTFOUND if there is none). */
int sigil_policy_remove_model(struct sigil_policy *p, const char *type, const char **why);

/* Adds or replaces a discouraged selector key "type:key" (e.g. "k8s:pod-name") with action
 * "refuse" or "warn". */
int sigil_policy_add_discouraged(struct sigil_policy *p, const char *type_key, const char *action,
                                 const char **why);

/* Removes every discouraged selector key. */
void sigil_policy_clear_discouraged(struct sigil_policy *p);

/* Sets the tier from "strict", "relaxed" or "off". */
int sigil_policy_set_tier(struct sigil_policy *p, const char *tier, const char **why);

/* Sets the TTL bounds of kind "x509" or "jwt", in seconds: 0 < min <= default_s <= max <=
 * SIGIL_POLICY_TTL_MAX. */
int sigil_policy_set_ttl(struct sigil_policy *p, const char *kind, int64_t min, int64_t max,
                         int64_t default_s, const char **why);

/* Like sigil_policy_set_ttl with the three values as durations ("1m", "24h", "1h";
 * sigil/duration.h), each a whole number of seconds. */
int sigil_policy_set_ttl_str(struct sigil_policy *p, const char *kind, const char *min,
                             const char *max, const char *default_s, const char **why);

/* --- checking */

/* Checks entry e against p and fills res (overwritten, as if uninitialised): res->ok, or the
 * first refusal's rule and message; warnings in either case; the effective TTLs. Returns 0
 * when res holds a verdict, or SIGIL_ERR_INVALID (a required pointer is NULL) /
 * SIGIL_ERR_NOMEM, when res holds no verdict (ok false, rule NULL). Free res with
 * sigil_policy_result_free on every path. */
int sigil_policy_check_entry(const struct sigil_policy *p, const struct sigil_policy_entry *e,
                             struct sigil_policy_result *res);

/* Frees what res owns; res is then empty. Safe on an emptied or zeroed result. */
void sigil_policy_result_free(struct sigil_policy_result *res);

/* --- delegation */

/* True if id equals or lies under (on a segment boundary) one of the n SPIFFE ID prefixes
 * in team_prefixes ("spiffe://td/prod/gcp/payments" covers ".../payments/api" but not
 * ".../payments2/api"). A prefix that is not a valid SPIFFE ID grants nothing. */
bool sigil_policy_may_write(const char *const *team_prefixes, size_t n,
                            const struct sigil_spiffeid *id);

/* Finds segment `name` of id under p's scheme: sets *seg (pointing into id->str, not
 * NUL-terminated) and *len and returns 0, or SIGIL_ERR_NOTFOUND if the scheme has no such
 * segment, or id is outside the trust domain, exempt, or does not have the scheme's number
 * of segments. */
int sigil_policy_id_segment(const struct sigil_policy *p, const struct sigil_spiffeid *id,
                            const char *name, const char **seg, size_t *len);

/* sigil_policy_id_segment for the segment named "team" (the admin API stores it with the
 * entry). */
int sigil_policy_id_team(const struct sigil_policy *p, const struct sigil_spiffeid *id,
                         const char **seg, size_t *len);

#endif
