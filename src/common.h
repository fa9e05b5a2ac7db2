/* common.h - small helpers every source file uses. */
#ifndef VTP_COMMON_H
#define VTP_COMMON_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vtp-pkcs11.h"
#include "log.h"

#define VTP_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Caller mistakes: log at the place they are found and return. */
#define VTP_RETURN_VAL_IF_FAIL(expr, rv)                                                           \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            VTP_LOG_DEBUG("precondition failed: %s", #expr);                                       \
            return (rv);                                                                           \
        }                                                                                          \
    } while (0)

/* A growable byte buffer; free with vtp_buf_free (or vtp_buf_clear_free for secrets). */
typedef struct vtp_buf {
    unsigned char *data;
    size_t len;
} vtp_buf;

#endif /* VTP_COMMON_H */
