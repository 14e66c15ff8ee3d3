/* Fuzzes the registration policy: arbitrary bytes become an entry (a 5-byte header of flags
 * and TTLs, then the SPIFFE ID on the first line and selectors on the rest) checked against
 * the defaults, and, on a flag, the first line becomes a segment pattern. A verdict must be
 * either ok or a rule id and a message in the documented shape; anything else aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sigil/err.h"
#include "sigil/policy.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define FALLBACK_ID "spiffe://yourorg.com/prod/gcp/payments/api-server"

static bool
starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* A message names its area, says what is wrong and ends with the fix in parentheses. */
static void
check_finding(const char *rule, const char *message)
{
    CHECK(rule != NULL && starts(rule, "policy."));
    CHECK(message != NULL);
    size_t n = strlen(message);
    CHECK(starts(message, "SPIFFE ID policy: ") || starts(message, "selector policy: ") ||
          starts(message, "TTL policy: "));
    CHECK(n > 0 && message[n - 1] == ')' && strstr(message, " (") != NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sigil_policy p;
    struct sigil_policy_result res;
    struct sigil_policy_entry e = {0};
    struct sigil_selector_set set = SIGIL_SELECTOR_SET_INIT;
    struct sigil_spiffeid id;
    const char *why = NULL, *text, *end, *line_end;
    uint8_t flags = 0;
    bool have_id;

    if (size >= 5) {
        flags = data[0];
        e.x509_svid_ttl = (int16_t)(data[1] | data[2] << 8) * 8;
        e.jwt_svid_ttl = (int16_t)(data[3] | data[4] << 8);
        data += 5;
        size -= 5;
    }
    CHECK(sigil_policy_init_defaults(&p, "yourorg.com", &why) == 0);
    static const char *const tiers[] = {"strict", "relaxed", "off", "strict"};
    CHECK(sigil_policy_set_tier(&p, tiers[flags & 3], &why) == 0);
    e.node_alias = (flags & 4) != 0;
    sigil_policy_set_enforce_scheme(&p, (flags & 8) == 0);

    text = (const char *)data;
    end = text + size;
    line_end = memchr(text, '\n', size);
    if (line_end == NULL)
        line_end = end;
    size_t first_len = (size_t)(line_end - text);

    if (flags & 16) {
        /* The pattern parser reads config text: it must accept or name the problem. */
        char *pat = malloc(first_len + 1);
        CHECK(pat != NULL);
        memcpy(pat, text, first_len);
        pat[first_len] = '\0';
        why = NULL;
        int r = sigil_policy_set_pattern(&p, "workload", pat, &why);
        CHECK(r == 0 || (why != NULL && (r == SIGIL_ERR_INVALID || r == SIGIL_ERR_RANGE)));
        if (r == 0)
            CHECK(strcmp(p.segments[3].pattern, pat) == 0);
        free(pat);
    }

    have_id = sigil_spiffeid_parse(text, first_len, &id, NULL) == 0;
    if (!have_id)
        CHECK(sigil_spiffeid_parse(FALLBACK_ID, strlen(FALLBACK_ID), &id, NULL) == 0);
    for (const char *s = line_end; s < end;) {
        const char *nl;
        s++; /* past the '\n' */
        nl = memchr(s, '\n', (size_t)(end - s));
        if (nl == NULL)
            nl = end;
        (void)sigil_selector_set_add_str(&set, s, (size_t)(nl - s), NULL);
        s = nl;
    }

    e.spiffe_id = &id;
    e.selectors = &set;
    if (flags & 32)
        e.parent_id = &id;
    CHECK(sigil_policy_check_entry(&p, &e, &res) == 0);
    if (res.ok) {
        CHECK(res.rule == NULL && res.message == NULL);
        CHECK(res.x509_svid_ttl >= p.x509_ttl.min && res.x509_svid_ttl <= p.x509_ttl.max);
        CHECK(res.jwt_svid_ttl >= p.jwt_ttl.min && res.jwt_svid_ttl <= p.jwt_ttl.max);
        CHECK(set.count > 0);
    } else {
        check_finding(res.rule, res.message);
    }
    for (size_t i = 0; i < res.n_warnings; i++) {
        CHECK(strcmp(res.warnings[i].rule, "policy.selectors.discouraged") == 0);
        check_finding(res.warnings[i].rule, res.warnings[i].message);
    }
    /* with the defaults every discouraged key refuses, so only the relaxed tier warns */
    CHECK(res.n_warnings == 0 || (flags & 3) == 1);
    sigil_policy_result_free(&res);

    /* an ID is always under itself, never under a prefix that is not an ID */
    const char *self = id.str;
    CHECK(sigil_policy_may_write(&self, 1, &id));
    const char *broken = "spiffe://yourorg.com/";
    CHECK(!sigil_policy_may_write(&broken, 1, &id));
    const char *seg = NULL;
    size_t seg_len = 0;
    if (sigil_policy_id_team(&p, &id, &seg, &seg_len) == 0)
        CHECK(seg >= id.str && seg + seg_len <= id.str + id.len && seg_len > 0);

    sigil_selector_set_free(&set);
    sigil_policy_free(&p);
    return 0;
}
