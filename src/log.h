/* log.h - debug logging, off by default.
 *
 * VAULT_TRANSIT_PKCS11_DEBUG=level:N[,file:/path] enables it (N: 1 error, 2 warning, 3 info,
 * 4 debug). Lines carry time, pid, thread, function. A log line never contains a secret.
 */
#ifndef VTP_LOG_H
#define VTP_LOG_H

#include <stddef.h>

#include "vtp-pkcs11.h"

enum vtp_log_level {
    VTP_LOG_OFF = 0,
    VTP_LOG_ERROR = 1,
    VTP_LOG_WARNING = 2,
    VTP_LOG_INFO = 3,
    VTP_LOG_DEBUG_LEVEL = 4,
};

/* Reads VAULT_TRANSIT_PKCS11_DEBUG once per process (and again after vtp_log_reset). */
void vtp_log_init(void);
void vtp_log_reset(void);
/* Errors also go to stderr or syslog when the config says so ([module] log_errors =). */
void vtp_log_set_error_sink(const char *sink); /* "stderr", "syslog" or NULL */
int vtp_log_level(void);
/* A program that links the module's code (vault-transit-pkcs11-check) may also receive every
 * line of level <= level as it is written, the message alone (no time, pid or function); fn
 * may run on any thread. fn NULL stops it. */
typedef void (*vtp_log_capture_fn)(int level, const char *msg, void *arg);
void vtp_log_set_capture(int level, vtp_log_capture_fn fn, void *arg);
void vtp_log_write(int level, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The name of a CK_RV ("CKR_DEVICE_ERROR"), or "CKR_0x%08lx" in a static thread-local buffer. */
const char *vtp_rv_name(CK_RV rv);
/* The name of a CKM_* / CKA_* value, "unknown" if not known. */
const char *vtp_mech_name(CK_MECHANISM_TYPE m);
const char *vtp_attr_name(CK_ATTRIBUTE_TYPE a);

/* The name tables behind them, sorted by value (tests/unit/test-names checks that they are,
 * and that they name every CKR_, CKM_ and CKA_ value of p11-kit's pkcs11.h). kind: 'r', 'm',
 * 'a'. */
struct vtp_name {
    CK_ULONG value;
    const char *name;
};
const struct vtp_name *vtp_name_table(char kind, size_t *n);

#define VTP_LOG(level, ...)                                                                        \
    do {                                                                                           \
        if (vtp_log_level() >= (level))                                                           \
            vtp_log_write((level), __func__, __VA_ARGS__);                                         \
    } while (0)
#define VTP_LOG_ERR(...) VTP_LOG(VTP_LOG_ERROR, __VA_ARGS__)
#define VTP_LOG_WARN(...) VTP_LOG(VTP_LOG_WARNING, __VA_ARGS__)
#define VTP_LOG_INFO(...) VTP_LOG(VTP_LOG_INFO, __VA_ARGS__)
#define VTP_LOG_DEBUG(...) VTP_LOG(VTP_LOG_DEBUG_LEVEL, __VA_ARGS__)

#endif /* VTP_LOG_H */
