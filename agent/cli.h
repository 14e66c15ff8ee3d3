/* sigil-agent's command line: `api fetch x509|jwt`, `api validate jwt`, `api watch` and
 * `healthcheck`, each a Workload API client over our own gRPC client (sigil/rpc.h). */
#ifndef SIGIL_AGENT_CLI_H
#define SIGIL_AGENT_CLI_H

/* Exit codes of every command. */
enum sigil_agent_exit {
    SIGIL_AGENT_EXIT_OK = 0,
    SIGIL_AGENT_EXIT_FAILED = 1, /* the call failed (status printed), or unhealthy */
    SIGIL_AGENT_EXIT_USAGE = 2,  /* bad command line or endpoint address */
};

/* Runs sigil-agent with argv[0] the program name. Returns an exit code as above. */
int sigil_agent_cli_main(int argc, char **argv);

#endif
