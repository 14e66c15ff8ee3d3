/* The systemd workload attestor: systemd:id:<unit> for the service or scope whose cgroup the
 * caller runs in, read from /proc/<pid>/cgroup (no D-Bus: the kernel's record is what counts,
 * and a process cannot move itself out of its unit's cgroup without privileges). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attestor.h"
#include "sigil/err.h"

static bool
ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);

    return n > k && memcmp(s + n - k, suffix, k) == 0;
}

/* The unit in one cgroup path ("/system.slice/web.service/sub"): its last segment that names
 * a service or a scope. Returns 0 with seg and seglen set, or SIGIL_ERR_NOTFOUND. */
static int
unit_of_path(const char *p, size_t n, const char **seg, size_t *seglen)
{
    const char *end = p + n, *s = p, *e;
    int found = SIGIL_ERR_NOTFOUND;

    while (s < end) {
        while (s < end && *s == '/')
            s++;
        e = s;
        while (e < end && *e != '/')
            e++;
        if (e > s && (ends_with(s, (size_t)(e - s), ".service") ||
                      ends_with(s, (size_t)(e - s), ".scope"))) {
            *seg = s;
            *seglen = (size_t)(e - s);
            found = 0;
        }
        s = e;
    }
    return found;
}

int
sigil_attest_systemd_unit(const char *s, size_t len, char *out, size_t cap)
{
    const char *p = s, *end = s + len, *line_end, *c1, *c2;
    const char *unified = NULL, *named = NULL;
    size_t unified_len = 0, named_len = 0, seglen;
    const char *seg, *path;
    size_t pathlen;
    int r;

    if (cap > 0)
        out[0] = '\0';
    if (memchr(s, '\0', len) != NULL)
        return SIGIL_ERR_INVALID;
    /* Lines are "hierarchy-id:controllers:path". */
    while (p < end) {
        line_end = memchr(p, '\n', (size_t)(end - p));
        if (line_end == NULL)
            line_end = end;
        if (line_end > p) {
            c1 = memchr(p, ':', (size_t)(line_end - p));
            c2 = c1 != NULL ? memchr(c1 + 1, ':', (size_t)(line_end - c1 - 1)) : NULL;
            if (c2 == NULL)
                return SIGIL_ERR_INVALID;
            if (c1 - p == 1 && p[0] == '0' && c2 == c1 + 1) {
                unified = c2 + 1;
                unified_len = (size_t)(line_end - unified);
            } else if ((size_t)(c2 - c1 - 1) == strlen("name=systemd") &&
                       memcmp(c1 + 1, "name=systemd", strlen("name=systemd")) == 0) {
                named = c2 + 1;
                named_len = (size_t)(line_end - named);
            }
        }
        p = line_end + 1;
    }
    /* The unified hierarchy is the kernel's record on systemd >= 243 hosts; on hybrid hosts
     * it may sit at "/" while name=systemd holds the unit. */
    r = SIGIL_ERR_NOTFOUND;
    for (int pass = 0; pass < 2 && r == SIGIL_ERR_NOTFOUND; pass++) {
        path = pass == 0 ? unified : named;
        pathlen = pass == 0 ? unified_len : named_len;
        if (path == NULL)
            continue;
        if (pathlen == 0 || path[0] != '/')
            return SIGIL_ERR_INVALID;
        r = unit_of_path(path, pathlen, &seg, &seglen);
    }
    if (r != 0)
        return r;
    if (seglen + 1 > cap)
        return SIGIL_ERR_RANGE;
    memcpy(out, seg, seglen);
    out[seglen] = '\0';
    return 0;
}

static int
systemd_collect(const struct sigil_attest_opts *o, const struct sigil_attest_proc *p,
                struct sigil_selector_set *out, const char **why)
{
    char *buf, unit[512], value[520];
    size_t len;
    int r;

    (void)o;
    if ((buf = malloc(SIGIL_ATTEST_PROC_FILE_MAX)) == NULL)
        return SIGIL_ERR_NOMEM;
    r = sigil_attest_read_proc(p->pid, "cgroup", buf, SIGIL_ATTEST_PROC_FILE_MAX, &len);
    if (r != 0) {
        *why = "cannot read /proc/<pid>/cgroup";
        goto out;
    }
    r = sigil_attest_systemd_unit(buf, len, unit, sizeof unit);
    if (r != 0) {
        r = 0; /* not in a unit (or a cgroup layout we do not know): no systemd selector */
        goto out;
    }
    snprintf(value, sizeof value, "id:%s", unit);
    r = sigil_attest_add(out, "systemd", value);
out:
    free(buf);
    return r;
}

const struct sigil_attestor sigil_attestor_systemd = {
    .name = "systemd",
    .collect = systemd_collect,
};
