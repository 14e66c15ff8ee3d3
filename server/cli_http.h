/* The CLI's one door to the server: an HTTP/1.1 request over the admin Unix socket (libcurl
 * stays behind this header), the answer read whole into memory under a cap. */
#ifndef SIGIL_CLI_HTTP_H
#define SIGIL_CLI_HTTP_H

#include <stddef.h>

#include "sigil/buf.h"

/* Largest answer the CLI reads: a page of 1,000 entries or 10,000 batch results fits. */
#define SIGIL_CLI_HTTP_RESPONSE_MAX (64u * 1024 * 1024)
/* Seconds to connect, and for a whole request (a batch of 10,000 entries included). */
#define SIGIL_CLI_HTTP_CONNECT_SECONDS 10
#define SIGIL_CLI_HTTP_TOTAL_SECONDS 600

/* One answer: the HTTP status and the body (may hold a secret such as a join token). */
struct sigil_cli_response {
    long status;
    struct sigil_buf body;
};

/* Once per process, before the first request. Returns 0 or SIGIL_ERR_INTERNAL. */
int sigil_cli_http_init(void);

/* Sends method (GET, POST, PUT, PATCH, DELETE) to target ("/v1/entries?...", already
 * percent-encoded) at http://localhost over the Unix socket socket_path, with body_len bytes
 * of JSON body (body may be NULL for none). resp (zeroed by the caller) gets the status and
 * the body; free it with sigil_cli_response_free. Returns 0 for any HTTP status,
 * SIGIL_ERR_IO when the socket cannot be reached, SIGIL_ERR_RANGE for an answer over
 * SIGIL_CLI_HTTP_RESPONSE_MAX, SIGIL_ERR_TIMEOUT, or SIGIL_ERR_PROTOCOL; err gets a text. */
int sigil_cli_http_request(const char *socket_path, const char *method, const char *target,
                           const char *body, size_t body_len, struct sigil_cli_response *resp,
                           char *err, size_t errlen);

/* Wipes and frees the body; resp is zeroed and reusable. */
void sigil_cli_response_free(struct sigil_cli_response *resp);

#endif
