/* The unix workload attestor: uid, user, gid, group and supplementary groups of the caller,
 * the path of its executable and, below a size limit, the SHA-256 of that executable read
 * through /proc/<pid>/exe (the file the process runs, even if replaced or deleted since). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "attestor.h"
#include "sigil/err.h"
#include "sigil/log.h"

#define GROUPS_MAX 1024
#define NSS_BUF_MAX (1024 * 1024)

/* Adds unix:user:NAME for uid (nothing if it has no name). */
static int
add_user(struct sigil_selector_set *set, uid_t uid)
{
    struct passwd pw, *res = NULL;
    size_t cap = 1024;
    char *buf = NULL, *nb;
    int r = 0, e;

    for (;;) {
        if ((nb = realloc(buf, cap)) == NULL) {
            free(buf);
            return SIGIL_ERR_NOMEM;
        }
        buf = nb;
        e = getpwuid_r(uid, &pw, buf, cap, &res);
        if (e != ERANGE || cap >= NSS_BUF_MAX)
            break;
        cap *= 2;
    }
    if (e == 0 && res != NULL) {
        char *v;

        if (asprintf(&v, "user:%s", pw.pw_name) < 0)
            r = SIGIL_ERR_NOMEM;
        else {
            r = sigil_attest_add(set, "unix", v);
            free(v);
        }
    }
    free(buf);
    return r;
}

/* Adds <prefix>:NAME for gid (nothing if it has no name). */
static int
add_group(struct sigil_selector_set *set, const char *prefix, gid_t gid)
{
    struct group gr, *res = NULL;
    size_t cap = 1024;
    char *buf = NULL, *nb, *v;
    int r = 0, e;

    for (;;) {
        if ((nb = realloc(buf, cap)) == NULL) {
            free(buf);
            return SIGIL_ERR_NOMEM;
        }
        buf = nb;
        e = getgrgid_r(gid, &gr, buf, cap, &res);
        if (e != ERANGE || cap >= NSS_BUF_MAX)
            break;
        cap *= 2;
    }
    if (e == 0 && res != NULL) {
        if (asprintf(&v, "%s:%s", prefix, gr.gr_name) < 0)
            r = SIGIL_ERR_NOMEM;
        else {
            r = sigil_attest_add(set, "unix", v);
            free(v);
        }
    }
    free(buf);
    return r;
}

/* Executables hashed before, by file identity: device, inode, size, mtime and ctime. Any write
 * to the file moves its ctime, which no caller can set back, so an unchanged key means
 * unchanged contents; a busy node then hashes each binary once, not once per call. */
#define HASH_CACHE_SLOTS 64

struct hash_slot {
    bool used;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtim, ctim;
    uint64_t stamp;
    char hex[2 * 32 + 8];
};

static struct hash_slot hash_cache[HASH_CACHE_SLOTS];
static pthread_mutex_t hash_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t hash_clock, hash_hits;

static bool
same_file(const struct hash_slot *h, const struct stat *st)
{
    return h->used && h->dev == st->st_dev && h->ino == st->st_ino && h->size == st->st_size &&
           h->mtim.tv_sec == st->st_mtim.tv_sec && h->mtim.tv_nsec == st->st_mtim.tv_nsec &&
           h->ctim.tv_sec == st->st_ctim.tv_sec && h->ctim.tv_nsec == st->st_ctim.tv_nsec;
}

static bool
hash_cache_get(const struct stat *st, char hex[2 * 32 + 8])
{
    bool found = false;
    size_t i;

    pthread_mutex_lock(&hash_lock);
    for (i = 0; i < HASH_CACHE_SLOTS && !found; i++) {
        if (same_file(&hash_cache[i], st)) {
            memcpy(hex, hash_cache[i].hex, sizeof hash_cache[i].hex);
            hash_cache[i].stamp = ++hash_clock;
            hash_hits++;
            found = true;
        }
    }
    pthread_mutex_unlock(&hash_lock);
    return found;
}

static void
hash_cache_put(const struct stat *st, const char hex[2 * 32 + 8])
{
    struct hash_slot *victim = &hash_cache[0];
    size_t i;

    pthread_mutex_lock(&hash_lock);
    for (i = 0; i < HASH_CACHE_SLOTS; i++) {
        if (!hash_cache[i].used || same_file(&hash_cache[i], st)) {
            victim = &hash_cache[i];
            break;
        }
        if (hash_cache[i].stamp < victim->stamp)
            victim = &hash_cache[i];
    }
    victim->used = true;
    victim->dev = st->st_dev;
    victim->ino = st->st_ino;
    victim->size = st->st_size;
    victim->mtim = st->st_mtim;
    victim->ctim = st->st_ctim;
    victim->stamp = ++hash_clock;
    memcpy(victim->hex, hex, sizeof victim->hex);
    pthread_mutex_unlock(&hash_lock);
}

uint64_t
sigil_attest_hash_cache_hits(void)
{
    uint64_t n;

    pthread_mutex_lock(&hash_lock);
    n = hash_hits;
    pthread_mutex_unlock(&hash_lock);
    return n;
}

/* ---- saying why path or sha256 selectors are missing ----
 * Reading another uid's /proc/<pid>/exe needs CAP_SYS_PTRACE (the link) and, for an
 * executable the agent may not read (0711), CAP_DAC_READ_SEARCH (the content). Without them
 * the selectors are left out and the caller is likely denied: a warning says so, at most once
 * a minute per uid (a busy workload must not flood the log). */

#define DENIED_SLOTS 64
#define DENIED_EVERY_S 60

static struct {
    uid_t uid;
    time_t at; /* CLOCK_MONOTONIC seconds of the last warning, 0: free */
} denied[DENIED_SLOTS];
static pthread_mutex_t denied_lock = PTHREAD_MUTEX_INITIALIZER;

/* True if a warning for uid is due now (and records it). */
static bool
denied_due(uid_t uid)
{
    struct timespec ts;
    size_t i, oldest = 0;
    bool due = true;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (ts.tv_sec < 1)
        ts.tv_sec = 1;
    pthread_mutex_lock(&denied_lock);
    for (i = 0; i < DENIED_SLOTS; i++) {
        if (denied[i].at != 0 && denied[i].uid == uid)
            break;
        if (denied[i].at < denied[oldest].at)
            oldest = i;
    }
    if (i < DENIED_SLOTS) {
        due = ts.tv_sec - denied[i].at >= DENIED_EVERY_S;
        if (due)
            denied[i].at = ts.tv_sec;
    } else {
        denied[oldest].uid = uid;
        denied[oldest].at = ts.tv_sec;
    }
    pthread_mutex_unlock(&denied_lock);
    return due;
}

/* Logs that /proc/<pid>/exe could not be read (err: EACCES or EPERM) and what is missing. */
static void
warn_exe_denied(const struct sigil_attest_proc *p, int err, bool link)
{
    char pid[24], uid[24];

    if (!denied_due(p->uid))
        return;
    snprintf(pid, sizeof pid, "%ld", (long)p->pid);
    snprintf(uid, sizeof uid, "%lu", (unsigned long)p->uid);
    if (link)
        sigil_log_kv(SIGIL_LOG_WARN, "attest",
                     "cannot read the caller's /proc/<pid>/exe: no unix:path or unix:sha256 "
                     "selector (entries that need them will not match)",
                     "pid", pid, "uid", uid, "error", strerror(err), "missing_capability",
                     "CAP_SYS_PTRACE", NULL);
    else
        sigil_log_kv(SIGIL_LOG_WARN, "attest",
                     "cannot read the caller's executable: no unix:sha256 selector (entries "
                     "that need it will not match)",
                     "pid", pid, "uid", uid, "error", strerror(err), "missing_capability",
                     "CAP_DAC_READ_SEARCH", NULL);
}

/* Hashes the caller's executable, or leaves sha256 out (logged) over the limit or when the
 * agent may not read it. */
static int
add_sha256(const struct sigil_attest_opts *o, const struct sigil_attest_proc *p,
           struct sigil_selector_set *set, bool warned)
{
    pid_t pid = p->pid;
    static const char hexd[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE], *chunk = NULL;
    char path[64], hex[2 * 32 + 8] = "sha256:";
    EVP_MD_CTX *ctx = NULL;
    unsigned mdlen = 0, i;
    uint64_t total = 0;
    struct stat st, st2;
    ssize_t k;
    int fd, r = SIGIL_ERR_IO;

    snprintf(path, sizeof path, "/proc/%ld/exe", (long)pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        if (errno == ENOENT || errno == ESRCH)
            return SIGIL_ERR_IO;
        if ((errno == EACCES || errno == EPERM) && !warned)
            warn_exe_denied(p, errno, false);
        return 0;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        r = 0; /* nothing to hash */
        goto out;
    }
    if ((uint64_t)st.st_size > o->sha256_max) {
        char size[24], limit[24];

        snprintf(size, sizeof size, "%lld", (long long)st.st_size);
        snprintf(limit, sizeof limit, "%llu", (unsigned long long)o->sha256_max);
        sigil_log_kv(SIGIL_LOG_WARN, "attest", "executable over the hash limit: no sha256 selector",
                     "size", size, "limit", limit, NULL);
        r = 0;
        goto out;
    }
    if (hash_cache_get(&st, hex)) {
        r = sigil_attest_add(set, "unix", hex);
        goto out;
    }
    if ((chunk = malloc(64 * 1024)) == NULL || (ctx = EVP_MD_CTX_new()) == NULL) {
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        r = SIGIL_ERR_CRYPTO;
        goto out;
    }
    for (;;) {
        k = read(fd, chunk, 64 * 1024);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            goto out;
        if (k == 0)
            break;
        total += (uint64_t)k;
        if (total > o->sha256_max) { /* grew while we read it */
            r = 0;
            goto out;
        }
        if (EVP_DigestUpdate(ctx, chunk, (size_t)k) != 1) {
            r = SIGIL_ERR_CRYPTO;
            goto out;
        }
    }
    if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32) {
        r = SIGIL_ERR_CRYPTO;
        goto out;
    }
    for (i = 0; i < mdlen; i++) {
        hex[7 + 2 * i] = hexd[md[i] >> 4];
        hex[8 + 2 * i] = hexd[md[i] & 15];
    }
    hex[7 + 2 * mdlen] = '\0';
    /* Cache it only if the file did not change while we read it. */
    if (fstat(fd, &st2) == 0 && total == (uint64_t)st.st_size) {
        struct hash_slot probe = {.used = true,
                                  .dev = st.st_dev,
                                  .ino = st.st_ino,
                                  .size = st.st_size,
                                  .mtim = st.st_mtim,
                                  .ctim = st.st_ctim};

        if (same_file(&probe, &st2))
            hash_cache_put(&st, hex);
    }
    r = sigil_attest_add(set, "unix", hex);
out:
    EVP_MD_CTX_free(ctx);
    free(chunk);
    close(fd);
    return r;
}

/* True if uid is one of the real, effective, saved and filesystem uids of the "Uid:" line. */
static bool
uid_is_among(const char *s, size_t len, uid_t uid)
{
    const char *p = s, *end = s + len, *line_end;

    while (p < end) {
        line_end = memchr(p, '\n', (size_t)(end - p));
        if (line_end == NULL)
            line_end = end;
        if (line_end - p > 4 && memcmp(p, "Uid:", 4) == 0) {
            for (p += 4; p < line_end;) {
                uint64_t v = 0;
                bool digits = false;

                while (p < line_end && (*p == ' ' || *p == '\t'))
                    p++;
                while (p < line_end && *p >= '0' && *p <= '9' && v <= UINT32_MAX) {
                    v = v * 10 + (uint64_t)(*p - '0');
                    digits = true;
                    p++;
                }
                if (!digits)
                    return false;
                if (v == (uint64_t)uid)
                    return true;
            }
            return false;
        }
        p = line_end + 1;
    }
    return false;
}

static int
unix_collect(const struct sigil_attest_opts *o, const struct sigil_attest_proc *p,
             struct sigil_selector_set *out, const char **why)
{
    static const char deleted[] = " (deleted)";
    char *status = NULL, path[64], exe[4096 + 8];
    gid_t gids[GROUPS_MAX];
    size_t len;
    ssize_t k;
    bool warned = false;
    int r, n, i;

    {
        char v[32];

        snprintf(v, sizeof v, "uid:%lu", (unsigned long)p->uid);
        if ((r = sigil_attest_add(out, "unix", v)) != 0)
            goto out;
        snprintf(v, sizeof v, "gid:%lu", (unsigned long)p->gid);
        if ((r = sigil_attest_add(out, "unix", v)) != 0)
            goto out;
    }
    if ((r = add_user(out, p->uid)) != 0 || (r = add_group(out, "group", p->gid)) != 0)
        goto out;

    if ((status = malloc(SIGIL_ATTEST_PROC_FILE_MAX)) == NULL) {
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    if ((r = sigil_attest_read_proc(p->pid, "status", status, SIGIL_ATTEST_PROC_FILE_MAX, &len)) !=
        0) {
        *why = "cannot read /proc/<pid>/status";
        goto out;
    }
    /* The pidfd was taken at accept, after connect: had the caller exited and its pid gone to
     * another user's process in between, we would be looking at that process now. */
    if (!uid_is_among(status, len, p->uid)) {
        *why = "the process at the caller's pid does not hold the caller's uid";
        r = SIGIL_ERR_DENIED;
        goto out;
    }
    if ((n = sigil_attest_parse_groups(status, len, gids, GROUPS_MAX)) < 0) {
        r = n;
        *why = "malformed Groups line in /proc/<pid>/status";
        goto out;
    }
    for (i = 0; i < n; i++) {
        char v[48];

        snprintf(v, sizeof v, "supplementary_gid:%lu", (unsigned long)gids[i]);
        if ((r = sigil_attest_add(out, "unix", v)) != 0 ||
            (r = add_group(out, "supplementary_group", gids[i])) != 0)
            goto out;
    }

    snprintf(path, sizeof path, "/proc/%ld/exe", (long)p->pid);
    memcpy(exe, "path:", 5);
    k = readlink(path, exe + 5, sizeof exe - 6);
    if (k > 0 && (size_t)k < sizeof exe - 6) {
        exe[5 + k] = '\0';
        /* A deleted executable has no path anyone could register. */
        if (!((size_t)k > sizeof deleted - 1 &&
              strcmp(exe + 5 + k - (sizeof deleted - 1), deleted) == 0) &&
            exe[5] == '/') {
            if ((r = sigil_attest_add(out, "unix", exe)) != 0)
                goto out;
        }
    } else if (k < 0 && (errno == EACCES || errno == EPERM)) {
        warn_exe_denied(p, errno, true);
        warned = true;
    }
    if (!o->no_sha256 && (r = add_sha256(o, p, out, warned)) != 0) {
        *why = "cannot hash the caller's executable";
        goto out;
    }
    r = 0;
out:
    free(status);
    return r;
}

const struct sigil_attestor sigil_attestor_unix = {
    .name = "unix",
    .collect = unix_collect,
};
