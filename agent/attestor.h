/* Workload attestation: turns a caller the kernel named (SO_PEERCRED uid/gid/pid, held by a
 * pidfd) into selectors ("unix:uid:1000", "systemd:id:web.service"). Each attestor is one file
 * with a collect function that runs on a worker thread; the core here runs them off the event
 * loop and refuses a caller that exited or was replaced while it was being looked at. */
#ifndef SIGIL_AGENT_ATTESTOR_H
#define SIGIL_AGENT_ATTESTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "sigil/selectors.h"

#define SIGIL_ATTEST_SHA256_MAX_DEFAULT (256ull << 20) /* bytes of executable we hash */
#define SIGIL_ATTEST_PROC_FILE_MAX (64 * 1024)         /* bytes of one /proc text we read */

/* What the attestors may do. */
struct sigil_attest_opts {
    uint64_t sha256_max; /* executables larger than this get no unix:sha256 [256 MiB if 0] */
    bool no_sha256;      /* never hash executables */
    bool no_systemd;     /* skip the systemd attestor */
    /* Tests only: runs on the worker thread after the selectors were gathered and before the
     * caller is checked to be still the same live process. */
    void (*test_after_gather)(void *arg);
    void *test_arg;
};

/* The caller being attested. */
struct sigil_attest_proc {
    pid_t pid;
    uid_t uid; /* from SO_PEERCRED */
    gid_t gid;
    int pidfd;
};

/* One workload attestor: collect() adds its selectors for p to out on a worker thread (it may
 * block). It returns 0 (possibly adding nothing) or a negative SIGIL_ERR_* with *why when the
 * process could not be read at all. */
struct sigil_attestor {
    const char *name;
    int (*collect)(const struct sigil_attest_opts *o, const struct sigil_attest_proc *p,
                   struct sigil_selector_set *out, const char **why);
};

extern const struct sigil_attestor sigil_attestor_unix;
extern const struct sigil_attestor sigil_attestor_systemd;

/* Adds the selector type:value to set; an invalid value (control bytes, bad UTF-8, too long) is
 * logged and skipped, not an error. Returns 0 or SIGIL_ERR_NOMEM / SIGIL_ERR_RANGE. */
int sigil_attest_add(struct sigil_selector_set *set, const char *type, const char *value);

/* Reads /proc/<pid>/<name> (at most SIGIL_ATTEST_PROC_FILE_MAX - 1 bytes) into buf, NUL-
 * terminated, *len its length. Returns 0, SIGIL_ERR_IO (gone, unreadable) or SIGIL_ERR_RANGE. */
int sigil_attest_read_proc(pid_t pid, const char *name, char *buf, size_t cap, size_t *len);

/* Parses the text of /proc/<pid>/stat: *state is field 3, *starttime field 22 (clock ticks
 * since boot). The command name may hold spaces and ')': fields are counted after the last
 * ')'. Returns 0 or SIGIL_ERR_INVALID. */
int sigil_attest_parse_stat(const char *s, size_t len, char *state, uint64_t *starttime);

/* Parses the "Groups:" line of /proc/<pid>/status into gids (at most cap). Returns the number
 * found (0 without the line), or SIGIL_ERR_INVALID / SIGIL_ERR_RANGE. */
int sigil_attest_parse_groups(const char *s, size_t len, gid_t *gids, size_t cap);

/* Finds the systemd unit of a process in the text of /proc/<pid>/cgroup: the last path
 * segment ending in ".service" or ".scope" of the unified hierarchy ("0::") or, without one,
 * of the "name=systemd" hierarchy. Writes it NUL-terminated into out. Returns 0,
 * SIGIL_ERR_NOTFOUND (no unit, e.g. the root cgroup), SIGIL_ERR_INVALID or SIGIL_ERR_RANGE. */
int sigil_attest_systemd_unit(const char *s, size_t len, char *out, size_t cap);

/* How many executable hashes were answered from the unix attestor's cache of hashes (keyed by
 * device, inode, size, mtime and ctime), for tests and metrics. */
uint64_t sigil_attest_hash_cache_hits(void);

/* Runs every attestor for p synchronously (blocking) and then checks that p is still the live
 * process it was at the start (pidfd_send_signal(pidfd, 0) succeeds, not a zombie, same start
 * time). out is overwritten. Returns 0, SIGIL_ERR_DENIED (the caller exited or was replaced:
 * *out is empty) or another error, with *why. */
int sigil_attest_collect(const struct sigil_attest_opts *o, const struct sigil_attest_proc *p,
                         struct sigil_selector_set *out, const char **why);

/* The result of an asynchronous attestation: err 0 and the caller's selectors (valid during
 * the call), or an error with why; runs on the loop. */
typedef void (*sigil_attest_done_fn)(void *ud, int err, const struct sigil_selector_set *sels,
                                     const char *why);

struct sigil_attest_job;

/* Attests p on a libuv worker thread (sigil_attest_collect over a dup of p->pidfd, so the
 * connection may close meanwhile) and calls done on the loop. o is copied. *out (may be NULL)
 * lets the caller cancel. Returns 0 or SIGIL_ERR_NOMEM / SIGIL_ERR_IO (then done never runs). */
int sigil_attest_start(uv_loop_t *loop, const struct sigil_attest_opts *o,
                       const struct sigil_attest_proc *p, sigil_attest_done_fn done, void *ud,
                       struct sigil_attest_job **out);

/* Cancels a started attestation: done will not run; the job frees itself once the worker is
 * done. */
void sigil_attest_cancel(struct sigil_attest_job *job);

#endif
