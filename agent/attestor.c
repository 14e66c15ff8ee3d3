/* The workload attestation core: /proc readers shared by the attestors, the PID-reuse check
 * (a caller is held by its pidfd and must still be the same live process once every attestor
 * has looked at it), and the worker-thread job that keeps all of this off the event loop. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "attestor.h"
#include "sigil/err.h"
#include "sigil/log.h"

static const struct sigil_attestor *const attestors[] = {
    &sigil_attestor_unix,
    &sigil_attestor_systemd,
};

int
sigil_attest_add(struct sigil_selector_set *set, const char *type, const char *value)
{
    struct sigil_selector sel;
    const char *why = NULL;
    int r;

    r = sigil_selector_make(type, strlen(type), value, strlen(value), &sel, &why);
    if (r == SIGIL_ERR_NOMEM)
        return r;
    if (r != 0) {
        /* A value we cannot express (a path with control bytes) is left out, not fatal: the
         * caller simply matches fewer entries. */
        sigil_log_kv(SIGIL_LOG_WARN, "attest", "selector left out", "type", type, "why", why, NULL);
        return 0;
    }
    r = sigil_selector_set_add(set, &sel, &why);
    sigil_selector_free(&sel);
    return r;
}

int
sigil_attest_read_proc(pid_t pid, const char *name, char *buf, size_t cap, size_t *len)
{
    char path[64];
    size_t n = 0;
    ssize_t k;
    int fd, r = SIGIL_ERR_IO;

    *len = 0;
    if (cap == 0)
        return SIGIL_ERR_RANGE;
    buf[0] = '\0';
    snprintf(path, sizeof path, "/proc/%ld/%s", (long)pid, name);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return SIGIL_ERR_IO;
    for (;;) {
        if (n == cap - 1) {
            r = SIGIL_ERR_RANGE;
            goto out;
        }
        k = read(fd, buf + n, cap - 1 - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            goto out;
        if (k == 0)
            break;
        n += (size_t)k;
    }
    buf[n] = '\0';
    *len = n;
    r = 0;
out:
    close(fd);
    return r;
}

int
sigil_attest_parse_stat(const char *s, size_t len, char *state, uint64_t *starttime)
{
    const char *p = NULL, *end = s + len;
    uint64_t v = 0;
    int field;
    size_t i;

    for (i = len; i > 0; i--) {
        if (s[i - 1] == ')') {
            p = s + i;
            break;
        }
    }
    if (p == NULL || p + 3 > end || p[0] != ' ')
        return SIGIL_ERR_INVALID;
    p++;
    *state = *p;
    /* p is at field 3; walk to field 22. */
    for (field = 3; field < 22; field++) {
        while (p < end && *p != ' ')
            p++;
        if (p == end)
            return SIGIL_ERR_INVALID;
        p++;
    }
    if (p == end || *p < '0' || *p > '9')
        return SIGIL_ERR_INVALID;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - 9) / 10)
            return SIGIL_ERR_INVALID;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (p < end && *p != ' ' && *p != '\n')
        return SIGIL_ERR_INVALID;
    *starttime = v;
    return 0;
}

int
sigil_attest_parse_groups(const char *s, size_t len, gid_t *gids, size_t cap)
{
    static const char key[] = "Groups:";
    const char *p = s, *end = s + len, *line_end;
    size_t n = 0;

    while (p < end) {
        line_end = memchr(p, '\n', (size_t)(end - p));
        if (line_end == NULL)
            line_end = end;
        if ((size_t)(line_end - p) >= sizeof key - 1 && memcmp(p, key, sizeof key - 1) == 0) {
            p += sizeof key - 1;
            while (p < line_end) {
                uint64_t v = 0;
                bool digits = false;

                while (p < line_end && (*p == ' ' || *p == '\t'))
                    p++;
                if (p == line_end)
                    break;
                while (p < line_end && *p >= '0' && *p <= '9') {
                    v = v * 10 + (uint64_t)(*p - '0');
                    if (v > UINT32_MAX)
                        return SIGIL_ERR_INVALID;
                    digits = true;
                    p++;
                }
                if (!digits || (p < line_end && *p != ' ' && *p != '\t'))
                    return SIGIL_ERR_INVALID;
                if (n == cap)
                    return SIGIL_ERR_RANGE;
                gids[n++] = (gid_t)v;
            }
            return (int)n;
        }
        p = line_end + 1;
    }
    return 0;
}

/* State and start time of pid now. */
static int
proc_identity(pid_t pid, char *state, uint64_t *starttime)
{
    char buf[4096];
    size_t len;
    int r;

    if ((r = sigil_attest_read_proc(pid, "stat", buf, sizeof buf, &len)) != 0)
        return r;
    return sigil_attest_parse_stat(buf, len, state, starttime);
}

int
sigil_attest_collect(const struct sigil_attest_opts *o, const struct sigil_attest_proc *p,
                     struct sigil_selector_set *out, const char **why)
{
    uint64_t start0, start1;
    char state;
    size_t i;
    int r;

    memset(out, 0, sizeof *out);
    *why = NULL;
    if (p->pidfd < 0 || p->pid <= 0) {
        *why = "the caller is not held by a pidfd";
        return SIGIL_ERR_DENIED;
    }
    if (proc_identity(p->pid, &state, &start0) != 0 || state == 'Z') {
        *why = "the caller exited before attestation";
        return SIGIL_ERR_DENIED;
    }
    for (i = 0; i < sizeof attestors / sizeof attestors[0]; i++) {
        if (attestors[i] == &sigil_attestor_systemd && o->no_systemd)
            continue;
        if ((r = attestors[i]->collect(o, p, out, why)) != 0) {
            if (r == SIGIL_ERR_IO)
                r = SIGIL_ERR_DENIED; /* /proc vanished under us: the caller is gone */
            goto out;
        }
    }
    if (o->test_after_gather != NULL)
        o->test_after_gather(o->test_arg);
    /* Anything read above belongs to the caller only if it is still alive now: a live process
     * keeps its pid, so the /proc/<pid> we read was its own all along. The start time catches
     * a pid reused before the pidfd check could (belt and braces). */
    if (proc_identity(p->pid, &state, &start1) != 0 || state == 'Z' || start1 != start0) {
        *why = "the caller exited or was replaced during attestation";
        r = SIGIL_ERR_DENIED;
        goto out;
    }
    if (syscall(SYS_pidfd_send_signal, p->pidfd, 0, NULL, 0) != 0) {
        *why = "the caller exited during attestation (pidfd)";
        r = SIGIL_ERR_DENIED;
        goto out;
    }
    r = 0;
out:
    if (r != 0) {
        sigil_selector_set_free(out);
        if (*why == NULL)
            *why = sigil_strerror(r);
    }
    return r;
}

struct sigil_attest_job {
    uv_work_t work;
    struct sigil_attest_opts opts;
    struct sigil_attest_proc proc;
    struct sigil_selector_set sels;
    sigil_attest_done_fn done;
    void *ud;
    const char *why;
    int err;
    bool cancelled;
};

static void
job_work(uv_work_t *w)
{
    struct sigil_attest_job *j = w->data;

    j->err = sigil_attest_collect(&j->opts, &j->proc, &j->sels, &j->why);
}

static void
job_after(uv_work_t *w, int status)
{
    struct sigil_attest_job *j = w->data;

    if (!j->cancelled) {
        if (status != 0 && j->err == 0) {
            j->err = SIGIL_ERR_INTERNAL;
            j->why = "attestation work was not run";
        }
        if (j->err != 0) {
            char pid[24];

            snprintf(pid, sizeof pid, "%ld", (long)j->proc.pid);
            sigil_log_kv(SIGIL_LOG_WARN, "attest", "caller refused", "pid", pid, "why", j->why,
                         NULL);
        }
        j->done(j->ud, j->err, j->err == 0 ? &j->sels : NULL, j->why);
    }
    sigil_selector_set_free(&j->sels);
    if (j->proc.pidfd >= 0)
        close(j->proc.pidfd);
    free(j);
}

int
sigil_attest_start(uv_loop_t *loop, const struct sigil_attest_opts *o,
                   const struct sigil_attest_proc *p, sigil_attest_done_fn done, void *ud,
                   struct sigil_attest_job **out)
{
    struct sigil_attest_job *j;

    if (out != NULL)
        *out = NULL;
    if ((j = calloc(1, sizeof *j)) == NULL)
        return SIGIL_ERR_NOMEM;
    j->opts = *o;
    if (j->opts.sha256_max == 0)
        j->opts.sha256_max = SIGIL_ATTEST_SHA256_MAX_DEFAULT;
    j->proc = *p;
    /* Our own reference: the connection owning p->pidfd may close while we work. */
    j->proc.pidfd = p->pidfd >= 0 ? fcntl(p->pidfd, F_DUPFD_CLOEXEC, 0) : -1;
    if (p->pidfd >= 0 && j->proc.pidfd < 0) {
        free(j);
        return SIGIL_ERR_IO;
    }
    j->done = done;
    j->ud = ud;
    j->work.data = j;
    if (uv_queue_work(loop, &j->work, job_work, job_after) != 0) {
        if (j->proc.pidfd >= 0)
            close(j->proc.pidfd);
        free(j);
        return SIGIL_ERR_IO;
    }
    if (out != NULL)
        *out = j;
    return 0;
}

void
sigil_attest_cancel(struct sigil_attest_job *job)
{
    if (job != NULL)
        job->cancelled = true;
}
