/* Error codes of libsigil: every function that can fail returns 0 or a negative
 * SIGIL_ERR_*; functions that can say more take a `const char **why` that is set to a
 * static string naming the rule that failed (never allocated, never NULL on failure). */
#ifndef SIGIL_ERR_H
#define SIGIL_ERR_H

enum sigil_err {
    SIGIL_OK = 0,
    SIGIL_ERR_NOMEM = -1,       /* allocation failed */
    SIGIL_ERR_INVALID = -2,     /* malformed input */
    SIGIL_ERR_RANGE = -3,       /* input over a length or size cap */
    SIGIL_ERR_CRYPTO = -4,      /* a cryptographic operation failed */
    SIGIL_ERR_IO = -5,          /* a system call or file operation failed */
    SIGIL_ERR_NOTFOUND = -6,    /* no such thing */
    SIGIL_ERR_VERIFY = -7,      /* a signature or chain did not verify */
    SIGIL_ERR_EXPIRED = -8,     /* outside its validity period */
    SIGIL_ERR_UNSUPPORTED = -9, /* valid but not supported (algorithm, feature) */
    SIGIL_ERR_STATE = -10,      /* called in the wrong state */
    SIGIL_ERR_PROTOCOL = -11,   /* a peer broke the protocol */
    SIGIL_ERR_TIMEOUT = -12,    /* a deadline passed */
    SIGIL_ERR_CANCELLED = -13,  /* cancelled by the caller or the peer */
    SIGIL_ERR_EXISTS = -14,     /* already exists */
    SIGIL_ERR_DENIED = -15,     /* not permitted */
    SIGIL_ERR_INTERNAL = -16,   /* a bug: an invariant did not hold */
};

/* Returns a static, human-readable text for a SIGIL_ERR_* code (or "unknown error"). */
const char *sigil_strerror(int err);

#endif
