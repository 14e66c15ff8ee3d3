/* sigil-server's entry point: the commands that run the server itself (run, migrate,
 * healthcheck) are handled here; every other command group (entry, agent, token, bundle,
 * federation, audit) goes to the CLI, which talks to a running server's admin API. */
#include <getopt.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli.h"
#include "cli_ca.h"
#include "migrate.h"
#include "server_config.h"
#include "sigil/db.h"
#include "sigil/err.h"
#include "upstream.h"

#ifndef SIGIL_VERSION
#define SIGIL_VERSION "0.0.0"
#endif

#define DEFAULT_ADMIN_SOCKET SIGIL_SERVER_ADMIN_SOCKET_DEFAULT

static const char usage_text[] =
    "usage: sigil-server COMMAND [OPTIONS]\n"
    "\n"
    "Server commands:\n"
    "  run --config FILE            run the server in the foreground\n"
    "      --check-config           (with --config) validate the configuration and exit\n"
    "      --print-config-doc       print the commented example configuration and exit\n"
    "  migrate --config FILE        apply the database migrations and exit\n"
    "          --database CONNINFO  (instead of --config; default $SIGIL_DATABASE)\n"
    "          --migrations DIR     (default $SIGIL_MIGRATIONS_DIR, "
    "then " SIGIL_MIGRATIONS_DEFAULT_DIR ")\n"
    "  ca show|prepare|activate|retire --config FILE\n"
    "                               root CA rotation against the configured database and\n"
    "                               ca.key_dir (sigil-server ca --help)\n"
    "  healthcheck [--admin-socket PATH]\n"
    "                               GET /live on the admin socket (default $SIGIL_ADMIN_SOCKET,\n"
    "                               then " DEFAULT_ADMIN_SOCKET ")\n"
    "\n"
    "Admin commands (over the admin socket; see sigil-server COMMAND --help):\n"
    "  entry, agent, token, bundle, federation, audit\n"
    "\n"
    "  -h, --help     this text\n"
    "  -V, --version  the version\n"
    "\n"
    "Exit codes (every command, the admin commands too):\n"
    "  0   done\n"
    "  1   failed or refused (by the server, the policy or a local check; database\n"
    "      unreachable; the server not live; a runtime error)\n"
    "  2   the server cannot be reached (admin socket) or its answer is unreadable\n"
    "  3   invalid configuration\n"
    "  4   refused by the database's state (an edited migration, a schema newer than this\n"
    "      binary, another trust domain, a CA key that does not match the CA journal)\n"
    "  64  command line error\n";

/* one scheme for the whole binary: cli.h's */
enum exit_code {
    EXIT_OK = SIGIL_CLI_EXIT_OK,
    EXIT_FAIL = SIGIL_CLI_EXIT_FAIL,
    EXIT_UNREACHABLE = SIGIL_CLI_EXIT_UNREACHABLE,
    EXIT_CONFIG = SIGIL_CLI_EXIT_CONFIG,
    EXIT_REFUSED = SIGIL_CLI_EXIT_DBSTATE,
    EXIT_USAGE = SIGIL_CLI_EXIT_USAGE,
};

static int
usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "sigil-server: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(sigil-server --help shows the commands)\n");
    return EXIT_USAGE;
}

static int
load_config(const char *path, struct sigil_server_config *cfg)
{
    struct sigil_config_error err;

    if (sigil_server_config_load(path, cfg, &err) != 0) {
        fprintf(stderr, "sigil-server: %s\n", err.text);
        return EXIT_CONFIG;
    }
    return EXIT_OK;
}

/* libuv's thread pool (signing batches, DNS look-ups, file work) has 4 threads unless
 * UV_THREADPOOL_SIZE says otherwise, and reads that once, at its first use. Size it to the
 * cores this process may run on (4 to 64), before any loop work; an operator's own setting
 * is kept. */
static void
size_thread_pool(void)
{
    cpu_set_t set;
    int n = 4;
    char buf[16];

    if (getenv("UV_THREADPOOL_SIZE") != NULL)
        return;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
    if (n < 4)
        n = 4;
    if (n > 64)
        n = 64;
    snprintf(buf, sizeof buf, "%d", n);
    setenv("UV_THREADPOOL_SIZE", buf, 0);
}

static int
cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"print-config-doc", no_argument, NULL, 'P'},
        {"check-config", no_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct sigil_server_config cfg;
    const char *config = NULL;
    bool check_only = false;
    int c, code;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'P':
            return sigil_server_config_print_doc(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
        case 'C':
            check_only = true;
            break;
        case 'h':
            printf("usage: sigil-server run --config FILE [--check-config] | --print-config-doc\n"
                   "exit 0 after a graceful stop (SIGTERM, SIGINT), 1 on a runtime failure\n"
                   "(database unreachable, socket in use), 3 for an invalid configuration,\n"
                   "4 when the database's state refuses this server, 64 command line error\n");
            return EXIT_OK;
        default:
            return EXIT_USAGE;
        }
    }
    if (optind != argc)
        return usage_error("run: unexpected argument \"%s\"", argv[optind]);
    if (config == NULL)
        return usage_error("%s", "run: --config FILE is required");
    if ((code = load_config(config, &cfg)) != EXIT_OK)
        return code;
    if (check_only) {
        printf("ok: %s\n", config);
        sigil_server_config_free(&cfg);
        return EXIT_OK;
    }
    size_thread_pool();
    code = sigil_upstream_run(&cfg);
    sigil_server_config_free(&cfg);
    return code;
}

static void
on_applied(void *arg, const struct sigil_migration *m)
{
    (void)arg;
    printf("applied %04d_%s (sha256 %s)\n", m->version, m->name, m->sha256);
    fflush(stdout);
}

static int
cmd_migrate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"database", required_argument, NULL, 'd'},
        {"migrations", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct sigil_server_config cfg = {0};
    struct sigil_migrate_report rep;
    struct sigil_db_error dberr;
    struct sigil_db_conn *conn = NULL;
    const char *config = NULL, *database = NULL, *dir = NULL;
    int c, r, code;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:d:m:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'd':
            database = optarg;
            break;
        case 'm':
            dir = optarg;
            break;
        case 'h':
            printf(
                "usage: sigil-server migrate --config FILE | --database CONNINFO "
                "[--migrations DIR]\n"
                "exit 0 when the schema is current, 1 on a failure (database unreachable, a\n"
                "migration failed), 3 for an invalid configuration, 4 when the database's\n"
                "state refuses it (an edited migration, a newer schema), 64 command line error\n");
            return EXIT_OK;
        default:
            return EXIT_USAGE;
        }
    }
    if (optind != argc)
        return usage_error("migrate: unexpected argument \"%s\"", argv[optind]);
    if (config != NULL && database != NULL)
        return usage_error("%s", "migrate: give --config or --database, not both");
    if (config != NULL) {
        if ((code = load_config(config, &cfg)) != EXIT_OK)
            return code;
        database = cfg.db_conninfo;
    } else if (database == NULL) {
        database = getenv("SIGIL_DATABASE");
    }
    if (database == NULL || database[0] == '\0') {
        sigil_server_config_free(&cfg);
        return usage_error("%s", "migrate: no database (--config, --database or $SIGIL_DATABASE)");
    }
    if (dir == NULL && ((dir = getenv("SIGIL_MIGRATIONS_DIR")) == NULL || dir[0] == '\0'))
        dir = SIGIL_MIGRATIONS_DEFAULT_DIR;
    code = EXIT_FAIL;
    if (sigil_db_connect(database, &conn, &dberr) != 0) {
        fprintf(stderr, "sigil-server: migrate: cannot connect: %s\n", dberr.message);
        goto out;
    }
    memset(&rep, 0, sizeof rep);
    if ((r = sigil_migrate_run(conn, dir, on_applied, NULL, &rep)) != 0) {
        fprintf(stderr, "sigil-server: migrate: %s\n", rep.error);
        code = (r == SIGIL_ERR_VERIFY || r == SIGIL_ERR_UNSUPPORTED) ? EXIT_REFUSED : EXIT_FAIL;
        goto out;
    }
    printf("schema at version %d (was %d; this run applied %zu)\n", rep.to_version,
           rep.from_version, rep.applied);
    code = EXIT_OK;
out:
    sigil_db_disconnect(conn);
    sigil_server_config_free(&cfg);
    return code;
}

static size_t
discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

static int
cmd_healthcheck(int argc, char **argv)
{
    static const struct option opts[] = {
        {"admin-socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *sock = NULL;
    CURL *curl = NULL;
    CURLcode cr;
    long status = 0;
    int c, code = EXIT_FAIL;

    optind = 1;
    while ((c = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            sock = optarg;
            break;
        case 'h':
            printf("usage: sigil-server healthcheck [--admin-socket PATH]\n"
                   "exit 0 if the server answers GET /live with 200, 1 if it answers anything\n"
                   "else, 2 if the admin socket cannot be reached, 64 command line error\n");
            return EXIT_OK;
        default:
            return EXIT_USAGE;
        }
    }
    if (optind != argc)
        return usage_error("healthcheck: unexpected argument \"%s\"", argv[optind]);
    if (sock == NULL && ((sock = getenv("SIGIL_ADMIN_SOCKET")) == NULL || sock[0] == '\0'))
        sock = DEFAULT_ADMIN_SOCKET;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (curl = curl_easy_init()) == NULL) {
        fprintf(stderr, "sigil-server: healthcheck: cannot start libcurl\n");
        goto out;
    }
    curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, sock);
    curl_easy_setopt(curl, CURLOPT_URL, "http://localhost/live");
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    if ((cr = curl_easy_perform(curl)) != CURLE_OK) {
        fprintf(stderr, "sigil-server: healthcheck: %s: %s\n", sock, curl_easy_strerror(cr));
        code = EXIT_UNREACHABLE;
        goto out;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        fprintf(stderr, "sigil-server: healthcheck: %s: /live answered %ld\n", sock, status);
        goto out;
    }
    printf("live\n");
    code = EXIT_OK;
out:
    curl_easy_cleanup(curl);
    curl_global_cleanup();
    return code;
}

int
main(int argc, char **argv)
{
    const char *cmd;

    if (argc < 2) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
        printf("sigil-server %s\n", SIGIL_VERSION);
        return EXIT_OK;
    }
    /* each command parses its own options: argv[0] is the command */
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "migrate") == 0)
        return cmd_migrate(argc - 1, argv + 1);
    if (strcmp(cmd, "ca") == 0)
        return sigil_cli_ca_main(argc - 1, argv + 1);
    if (strcmp(cmd, "healthcheck") == 0)
        return cmd_healthcheck(argc - 1, argv + 1);
    if (cmd[0] == '-')
        return usage_error("unknown option \"%s\"", cmd);
    /* the CLI owns every other command, and its own usage errors */
    return sigil_cli_main(argc - 1, argv + 1);
}
