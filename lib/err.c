/* Texts of libsigil's error codes. */
#include "sigil/err.h"

const char *
sigil_strerror(int err)
{
    switch (err) {
    case SIGIL_OK:
        return "success";
    case SIGIL_ERR_NOMEM:
        return "out of memory";
    case SIGIL_ERR_INVALID:
        return "invalid input";
    case SIGIL_ERR_RANGE:
        return "input too large";
    case SIGIL_ERR_CRYPTO:
        return "cryptographic operation failed";
    case SIGIL_ERR_IO:
        return "input/output error";
    case SIGIL_ERR_NOTFOUND:
        return "not found";
    case SIGIL_ERR_VERIFY:
        return "verification failed";
    case SIGIL_ERR_EXPIRED:
        return "expired or not yet valid";
    case SIGIL_ERR_UNSUPPORTED:
        return "not supported";
    case SIGIL_ERR_STATE:
        return "invalid state";
    case SIGIL_ERR_PROTOCOL:
        return "protocol error";
    case SIGIL_ERR_TIMEOUT:
        return "timed out";
    case SIGIL_ERR_CANCELLED:
        return "cancelled";
    case SIGIL_ERR_EXISTS:
        return "already exists";
    case SIGIL_ERR_DENIED:
        return "permission denied";
    case SIGIL_ERR_INTERNAL:
        return "internal error";
    }
    return "unknown error";
}
