/* The admin commands of sigil-server (entry, agent, token, bundle, federation, audit):
 * SPIRE-shaped command lines that talk to the running server's admin API over its Unix
 * socket. server/main.c hands every command it does not run itself to sigil_cli_main. */
#ifndef SIGIL_CLI_H
#define SIGIL_CLI_H

/* Default admin socket; --admin-socket or SIGIL_ADMIN_SOCKET choose another. */
#define SIGIL_CLI_ADMIN_SOCKET_DEFAULT "/run/sigil/server/admin.sock"

/* Exit codes of every sigil-server command, server and admin commands alike (main.c's and
 * each group's --help list them). */
enum sigil_cli_exit {
    SIGIL_CLI_EXIT_OK = 0,   /* done */
    SIGIL_CLI_EXIT_FAIL = 1, /* failed, or refused by the server, the policy or a local check */
    SIGIL_CLI_EXIT_UNREACHABLE = 2, /* the server cannot be reached, or its answer is unreadable */
    SIGIL_CLI_EXIT_CONFIG = 3,      /* the configuration file is invalid */
    SIGIL_CLI_EXIT_DBSTATE = 4,     /* refused by the database's state (schema, trust domain, CA) */
    SIGIL_CLI_EXIT_USAGE = 64,      /* a command line we do not understand */
};

/* Runs one admin command: argv[0] is the group ("entry"), argv[1] the command ("create"),
 * the rest its options. Prints results on stdout, errors on stderr. Returns an exit code
 * of enum sigil_cli_exit. */
int sigil_cli_main(int argc, char **argv);

#endif
