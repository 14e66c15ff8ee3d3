/* Workload attestors: selectors of this very process (uid, path, sha256 checked against a hash
 * computed here), the /proc parsers on good and malformed text, systemd units from sample
 * cgroup files, and PID-reuse refusals (a caller that exits mid-attestation gets nothing). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "attestor.h"
#include "sigil/err.h"

static int
pidfd_of(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static bool
has(const struct sigil_selector_set *s, const char *type, const char *value)
{
    struct sigil_selector sel;
    bool r;

    assert_int_equal(sigil_selector_make(type, strlen(type), value, strlen(value), &sel, NULL), 0);
    r = sigil_selector_set_contains(s, &sel);
    sigil_selector_free(&sel);
    return r;
}

static bool
has_type_prefix(const struct sigil_selector_set *s, const char *prefix)
{
    size_t i;

    for (i = 0; i < s->count; i++)
        if (strncmp(s->items[i].value, prefix, strlen(prefix)) == 0)
            return true;
    return false;
}

static void
sha256_file_hex(const char *path, char out[65])
{
    static const char hexd[] = "0123456789abcdef";
    unsigned char md[32], buf[8192];
    unsigned mdlen = 0, i;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    FILE *fp = fopen(path, "rb");
    size_t n;

    assert_non_null(fp);
    assert_int_equal(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
        assert_int_equal(EVP_DigestUpdate(ctx, buf, n), 1);
    fclose(fp);
    assert_int_equal(EVP_DigestFinal_ex(ctx, md, &mdlen), 1);
    EVP_MD_CTX_free(ctx);
    for (i = 0; i < 32; i++) {
        out[2 * i] = hexd[md[i] >> 4];
        out[2 * i + 1] = hexd[md[i] & 15];
    }
    out[64] = '\0';
}

static void
self_selectors(void **state)
{
    struct sigil_attest_opts o = {.sha256_max = SIGIL_ATTEST_SHA256_MAX_DEFAULT};
    struct sigil_attest_proc p = {.pid = getpid(), .uid = getuid(), .gid = getgid()};
    struct sigil_selector_set s;
    char v[4200], exe[4096], hex[65];
    const char *why = NULL;
    ssize_t k;

    (void)state;
    p.pidfd = pidfd_of(p.pid);
    assert_true(p.pidfd >= 0);
    assert_int_equal(sigil_attest_collect(&o, &p, &s, &why), 0);
    snprintf(v, sizeof v, "uid:%lu", (unsigned long)getuid());
    assert_true(has(&s, "unix", v));
    snprintf(v, sizeof v, "gid:%lu", (unsigned long)getgid());
    assert_true(has(&s, "unix", v));
    if (getuid() == 0)
        assert_true(has(&s, "unix", "user:root"));
    k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(k > 0);
    exe[k] = '\0';
    snprintf(v, sizeof v, "path:%s", exe);
    assert_true(has(&s, "unix", v));
    sha256_file_hex(exe, hex);
    snprintf(v, sizeof v, "sha256:%s", hex);
    assert_true(has(&s, "unix", v));
    sigil_selector_set_free(&s);

    /* Again: the hash comes from the cache of hashes, and is the same. */
    uint64_t hits = sigil_attest_hash_cache_hits();
    assert_int_equal(sigil_attest_collect(&o, &p, &s, &why), 0);
    assert_true(has(&s, "unix", v));
    assert_int_equal(sigil_attest_hash_cache_hits(), hits + 1);
    sigil_selector_set_free(&s);

    /* Over the size limit: no sha256 selector, the rest stays. */
    o.sha256_max = 1;
    assert_int_equal(sigil_attest_collect(&o, &p, &s, &why), 0);
    assert_false(has_type_prefix(&s, "sha256:"));
    assert_true(has_type_prefix(&s, "path:"));
    sigil_selector_set_free(&s);
    o.no_sha256 = true;
    o.sha256_max = SIGIL_ATTEST_SHA256_MAX_DEFAULT;
    assert_int_equal(sigil_attest_collect(&o, &p, &s, &why), 0);
    assert_false(has_type_prefix(&s, "sha256:"));
    sigil_selector_set_free(&s);

    /* SO_PEERCRED named another uid than the process now at that pid holds: a pid reused
     * between connect and accept. Refused. */
    p.uid = getuid() + 12345;
    assert_int_equal(sigil_attest_collect(&o, &p, &s, &why), SIGIL_ERR_DENIED);
    assert_non_null(strstr(why, "uid"));
    assert_int_equal(s.count, 0);
    p.uid = getuid();

    /* No pidfd: the caller is not held, so it is refused. */
    close(p.pidfd);
    p.pidfd = -1;
    assert_int_equal(sigil_attest_collect(&o, &p, &s, &why), SIGIL_ERR_DENIED);
    assert_int_equal(s.count, 0);
}

static void
parse_stat(void **state)
{
    const char *good = "1234 (sh) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 "
                       "987654 1000 200 18446744073709551615\n";
    const char *tricky = "77 (a) b) (c) R 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0 0\n";
    uint64_t t = 0;
    char st = 0;

    (void)state;
    assert_int_equal(sigil_attest_parse_stat(good, strlen(good), &st, &t), 0);
    assert_int_equal(st, 'S');
    assert_int_equal(t, 987654);
    assert_int_equal(sigil_attest_parse_stat(tricky, strlen(tricky), &st, &t), 0);
    assert_int_equal(st, 'R');
    assert_int_equal(t, 42);
    const char *bad[] = {
        "",
        "1234 sh S 1",
        "1234 (sh) S 1 2 3",
        "1234 (sh)",
        "1234 (sh) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 x 0",
        "1234 (sh) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99999999999999999999999 0",
        "1234 (sh) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 12a 0",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sigil_attest_parse_stat(bad[i], strlen(bad[i]), &st, &t),
                         SIGIL_ERR_INVALID);
}

static void
parse_groups(void **state)
{
    const char *status = "Name:\tsh\nUid:\t0\t0\t0\t0\nGroups:\t4 24 27 \nNSpid:\t1\n";
    gid_t g[4];

    (void)state;
    assert_int_equal(sigil_attest_parse_groups(status, strlen(status), g, 4), 3);
    assert_int_equal(g[0], 4);
    assert_int_equal(g[2], 27);
    assert_int_equal(sigil_attest_parse_groups("Groups:\n", 8, g, 4), 0);
    assert_int_equal(sigil_attest_parse_groups("Name: x\n", 8, g, 4), 0);
    assert_int_equal(sigil_attest_parse_groups("Groups: 1 2 3", 13, g, 2), SIGIL_ERR_RANGE);
    assert_int_equal(sigil_attest_parse_groups("Groups: 1x", 10, g, 4), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_attest_parse_groups("Groups: -1", 10, g, 4), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_attest_parse_groups("Groups: 4294967296", 18, g, 4), SIGIL_ERR_INVALID);
}

static void
systemd_units(void **state)
{
    static const struct {
        const char *cgroup;
        int r;
        const char *unit;
    } cases[] = {
        {"0::/system.slice/nginx.service\n", 0, "nginx.service"},
        {"0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-foo.scope\n", 0,
         "app-foo.scope"},
        {"0::/system.slice/docker.service/payload\n", 0, "docker.service"},
        {"0::/system.slice/sshd.service", 0, "sshd.service"}, /* no final newline */
        /* hybrid: the unified line at "/" and the unit on name=systemd */
        {"12:pids:/system.slice/cron.service\n1:name=systemd:/system.slice/cron.service\n0::/\n", 0,
         "cron.service"},
        {"0::/\n", SIGIL_ERR_NOTFOUND, ""},
        {"0::/init.scope.d/x\n", SIGIL_ERR_NOTFOUND, ""},
        {"0::/system.slice\n", SIGIL_ERR_NOTFOUND, ""},
        {"0::/.service\n", SIGIL_ERR_NOTFOUND, ""}, /* a bare suffix is no unit name */
        {"", SIGIL_ERR_NOTFOUND, ""},
        {"garbage\n", SIGIL_ERR_INVALID, ""},
        {"0:relative\n", SIGIL_ERR_INVALID, ""},
        {"0::relative.service\n", SIGIL_ERR_INVALID, ""},
    };
    char out[64];

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int r =
            sigil_attest_systemd_unit(cases[i].cgroup, strlen(cases[i].cgroup), out, sizeof out);

        if (r != cases[i].r)
            fail_msg("case %zu (%s): got %d want %d", i, cases[i].cgroup, r, cases[i].r);
        if (r == 0)
            assert_string_equal(out, cases[i].unit);
    }
    /* A NUL inside, and a unit longer than the output. */
    assert_int_equal(sigil_attest_systemd_unit("0::/a\0.service", 14, out, sizeof out),
                     SIGIL_ERR_INVALID);
    assert_int_equal(sigil_attest_systemd_unit("0::/x/abcdef.service", 20, out, 8),
                     SIGIL_ERR_RANGE);
}

/* PID reuse: children that exit before or during attestation are refused. */
static pid_t victim;

static void
kill_victim(void *arg)
{
    (void)arg;
    kill(victim, SIGKILL);
    waitpid(victim, NULL, 0); /* reaped: the pid may now be reused */
}

static pid_t
spawn_sleeper(void)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        pause();
        _exit(0);
    }
    return pid;
}

static void
pid_reuse(void **state)
{
    struct sigil_attest_opts o = {.sha256_max = SIGIL_ATTEST_SHA256_MAX_DEFAULT};
    struct sigil_attest_proc p = {.uid = getuid(), .gid = getgid()};
    struct sigil_selector_set s;
    const char *why = NULL;

    (void)state;
    /* Alive throughout: attested. */
    p.pid = spawn_sleeper();
    p.pidfd = pidfd_of(p.pid);
    assert_true(p.pidfd >= 0);
    assert_int_equal(sigil_attest_collect(&o, &p, &s, &why), 0);
    assert_true(s.count > 0);
    sigil_selector_set_free(&s);

    /* Exits (and is reaped) after the selectors were gathered: refused, nothing returned. */
    victim = p.pid;
    o.test_after_gather = kill_victim;
    assert_int_equal(sigil_attest_collect(&o, &p, &s, &why), SIGIL_ERR_DENIED);
    assert_int_equal(s.count, 0);
    assert_non_null(strstr(why, "exited"));
    o.test_after_gather = NULL;

    /* Already gone before attestation starts. */
    assert_int_equal(sigil_attest_collect(&o, &p, &s, &why), SIGIL_ERR_DENIED);
    close(p.pidfd);

    /* A zombie (exited, not reaped) is no caller either. */
    p.pid = spawn_sleeper();
    p.pidfd = pidfd_of(p.pid);
    kill(p.pid, SIGKILL);
    {
        siginfo_t si;

        assert_int_equal(waitid(P_PID, (id_t)p.pid, &si, WEXITED | WNOWAIT), 0);
    }
    assert_int_equal(sigil_attest_collect(&o, &p, &s, &why), SIGIL_ERR_DENIED);
    waitpid(p.pid, NULL, 0);
    close(p.pidfd);
}

/* Starts `file 30` and waits until the child runs it (its /proc/<pid>/exe is file). */
static pid_t
spawn_exec(const char *file)
{
    char link[64], target[4096];
    pid_t pid = fork();
    ssize_t k;

    assert_true(pid >= 0);
    if (pid == 0) {
        execl(file, file, "30", (char *)NULL);
        _exit(127);
    }
    snprintf(link, sizeof link, "/proc/%ld/exe", (long)pid);
    for (int i = 0; i < 500; i++) {
        k = readlink(link, target, sizeof target - 1);
        if (k > 0) {
            target[k] = '\0';
            if (strcmp(target, file) == 0)
                return pid;
        }
        usleep(10000);
    }
    fail_msg("the child never ran %s", file);
    return -1;
}

/* A changed executable is hashed again, not served from the cache of hashes. */
static void
hash_cache_follows_changes(void **state)
{
    struct sigil_attest_opts o = {.sha256_max = SIGIL_ATTEST_SHA256_MAX_DEFAULT};
    struct sigil_attest_proc p = {.uid = getuid(), .gid = getgid()};
    char dir[] = "/tmp/attest_test.XXXXXX", file[64], cmd[256], hex[65], v[80];
    struct sigil_selector_set s;
    const char *why = NULL;
    FILE *fp;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/sleeper", dir);
    snprintf(cmd, sizeof cmd, "cp /bin/sleep %s && chmod 0755 %s", file, file);
    assert_int_equal(system(cmd), 0);
    for (int round = 0; round < 2; round++) {
        p.pid = spawn_exec(file);
        p.pidfd = pidfd_of(p.pid);
        assert_int_equal(sigil_attest_collect(&o, &p, &s, &why), 0);
        sha256_file_hex(file, hex);
        snprintf(v, sizeof v, "sha256:%s", hex);
        assert_true(has(&s, "unix", v));
        sigil_selector_set_free(&s);
        kill(p.pid, SIGKILL);
        waitpid(p.pid, NULL, 0);
        close(p.pidfd);
        /* Change the file: one more byte (an ELF file ignores trailing bytes). */
        assert_non_null(fp = fopen(file, "ab"));
        fputc(0, fp);
        fclose(fp);
    }
    unlink(file);
    rmdir(dir);
}

/* The asynchronous job: done runs on the loop with the selectors; a cancelled job is silent. */
static int async_calls;
static int async_err;
static size_t async_count;

static void
async_done(void *ud, int err, const struct sigil_selector_set *sels, const char *why)
{
    (void)ud;
    (void)why;
    async_calls++;
    async_err = err;
    async_count = sels != NULL ? sels->count : 0;
}

static void
async_job(void **state)
{
    struct sigil_attest_opts o = {0};
    struct sigil_attest_proc p = {.pid = getpid(), .uid = getuid(), .gid = getgid()};
    struct sigil_attest_job *job = NULL;
    uv_loop_t loop;

    (void)state;
    uv_loop_init(&loop);
    p.pidfd = pidfd_of(p.pid);
    assert_int_equal(sigil_attest_start(&loop, &o, &p, async_done, NULL, &job), 0);
    assert_non_null(job);
    /* The job holds its own pidfd: closing ours at once (a connection gone) is fine. */
    close(p.pidfd);
    p.pidfd = pidfd_of(p.pid);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(async_calls, 1);
    assert_int_equal(async_err, 0);
    assert_true(async_count >= 3);

    assert_int_equal(sigil_attest_start(&loop, &o, &p, async_done, NULL, &job), 0);
    sigil_attest_cancel(job);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(async_calls, 1);
    close(p.pidfd);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(self_selectors),
        cmocka_unit_test(parse_stat),
        cmocka_unit_test(parse_groups),
        cmocka_unit_test(systemd_units),
        cmocka_unit_test(pid_reuse),
        cmocka_unit_test(async_job),
        cmocka_unit_test(hash_cache_follows_changes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
