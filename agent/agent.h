/* sigil-agent run: attests the node (or reuses the SVID saved in data_dir), keeps the agent
 * SVID renewed, syncs the entries it may issue into the identity cache, makes a key per entry
 * on the node and has only CSRs signed, rotates SVIDs at half life with jitter, streams bundles,
 * mints JWT-SVIDs through the server, and keeps serving the cache while the server is away. */
#ifndef SIGIL_AGENT_AGENT_H
#define SIGIL_AGENT_AGENT_H

#include <stdint.h>
#include <time.h>

/* Exit code of `run` when the server says this agent is banned (or evicted and not
 * re-attestable): the agent logs the reason, stops serving and exits with it. */
#define SIGIL_AGENT_EXIT_BANNED 3

/* Runs `sigil-agent run` with argv[0] = "run". Returns the process exit code: 0 after
 * SIGINT/SIGTERM, 1 on a startup failure, 2 on a usage error, SIGIL_AGENT_EXIT_BANNED. */
int sigil_agent_run_main(int argc, char **argv);

/* When to renew an SVID valid from not_before to not_after: at half its life, moved by up to
 * jitter_percent of the half life either way, u in [0, 1) choosing where (0.5: no move).
 * Never before not_before; an SVID with no life left renews at once (returns not_before). */
time_t sigil_agent_renew_time(time_t not_before, time_t not_after, int jitter_percent, double u);

/* The next reconnect wait: initial_ms after the first failure (cur_ms 0), else doubled, at
 * most max_ms. */
uint64_t sigil_agent_backoff_next(uint64_t cur_ms, uint64_t initial_ms, uint64_t max_ms);

#endif
