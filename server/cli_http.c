/* HTTP over the admin Unix socket with libcurl, for the CLI. The host name in the URL is
 * never resolved (CURLOPT_UNIX_SOCKET_PATH decides where bytes go); answers are capped and
 * wiped on free because a join token travels in one. */
#include "cli_http.h"

#include "sigil/err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

/* Longest request target we build (query strings of many selectors included). */
#define TARGET_MAX (64 * 1024)

struct sink {
    struct sigil_buf *body;
    bool over;
};

int
sigil_cli_http_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : SIGIL_ERR_INTERNAL;
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;
    size_t len = size * n;

    if (len > SIGIL_CLI_HTTP_RESPONSE_MAX - s->body->len) {
        s->over = true;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    if (sigil_buf_append(s->body, p, len) != 0)
        return 0;
    return len;
}

int
sigil_cli_http_request(const char *socket_path, const char *method, const char *target,
                       const char *body, size_t body_len, struct sigil_cli_response *resp,
                       char *err, size_t errlen)
{
    CURL *c = NULL;
    struct curl_slist *hdrs = NULL;
    struct sink sink = {&resp->body, false};
    char url[TARGET_MAX + 32], cerr[CURL_ERROR_SIZE] = "";
    CURLcode cr;
    int r = SIGIL_ERR_PROTOCOL;

    resp->status = 0;
    if (strlen(target) > TARGET_MAX || target[0] != '/') {
        snprintf(err, errlen, "request target too long or not a path");
        return SIGIL_ERR_RANGE;
    }
    snprintf(url, sizeof url, "http://localhost%s", target);
    if ((c = curl_easy_init()) == NULL) {
        snprintf(err, errlen, "out of memory");
        return SIGIL_ERR_NOMEM;
    }
    if ((hdrs = curl_slist_append(hdrs, "Accept: application/json")) == NULL ||
        (body != NULL &&
         (hdrs = curl_slist_append(hdrs, "Content-Type: application/json")) == NULL)) {
        snprintf(err, errlen, "out of memory");
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    /* "Expect: 100-continue" would stall big batch bodies for a second each. */
    if ((hdrs = curl_slist_append(hdrs, "Expect:")) == NULL) {
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket_path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)SIGIL_CLI_HTTP_CONNECT_SECONDS);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)SIGIL_CLI_HTTP_TOTAL_SECONDS);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "sigil-server-cli/1");
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    cr = curl_easy_perform(c);
    switch (cr) {
    case CURLE_OK:
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
        r = 0;
        break;
    case CURLE_COULDNT_CONNECT:
        /* Tell "nobody listens" from "you may not" (the socket's mode picks the admins). */
        if (access(socket_path, F_OK) == 0 && access(socket_path, W_OK) != 0 && errno == EACCES)
            snprintf(err, errlen,
                     "permission denied on the admin socket at %s: run as a user "
                     "who may write it",
                     socket_path);
        else
            snprintf(err, errlen,
                     "cannot reach the server's admin socket at %s: is sigil-server "
                     "running? (set --admin-socket or SIGIL_ADMIN_SOCKET)",
                     socket_path);
        r = SIGIL_ERR_IO;
        break;
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(err, errlen, "the server did not answer within %d seconds",
                 SIGIL_CLI_HTTP_TOTAL_SECONDS);
        r = SIGIL_ERR_TIMEOUT;
        break;
    case CURLE_WRITE_ERROR:
        if (sink.over) {
            snprintf(err, errlen, "the server's answer is over %u MiB",
                     SIGIL_CLI_HTTP_RESPONSE_MAX / (1024 * 1024));
            r = SIGIL_ERR_RANGE;
            break;
        }
        snprintf(err, errlen, "out of memory");
        r = SIGIL_ERR_NOMEM;
        break;
    default:
        snprintf(err, errlen, "talking to the server at %s: %s", socket_path,
                 cerr[0] != '\0' ? cerr : curl_easy_strerror(cr));
        r = SIGIL_ERR_PROTOCOL;
        break;
    }
out:
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return r;
}

void
sigil_cli_response_free(struct sigil_cli_response *resp)
{
    sigil_buf_freezero(&resp->body);
    resp->status = 0;
}
