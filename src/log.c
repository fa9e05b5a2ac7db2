/* log.c - debug logging, off by default; names of CKR_*, CKM_* and CKA_* values.
 *
 * VAULT_TRANSIT_PKCS11_DEBUG=level:N[,file:/path] is read on first use and again after
 * vtp_log_reset() (C_Initialize after C_Finalize or fork). Each line is formatted in full and
 * handed to one write(), so lines from concurrent threads (and processes appending to the same
 * file) never interleave:
 *
 *   2024-05-01T12:34:56.789Z vault-transit-pkcs11[4242] tid 4243 ERROR vtp_transit_sign: ...
 *
 * Errors can also go to stderr or syslog when the config asks for it ([module] log_errors), even
 * with debug logging off. Callers never pass secrets; control characters in messages (a Vault
 * error text with a newline, say) are replaced so one call is always one line.
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "vault/errkind.h"

#define VTP_LOG_ENV "VAULT_TRANSIT_PKCS11_DEBUG"
#define VTP_LOG_IDENT "vault-transit-pkcs11"
#define VTP_LOG_LINE_MAX 4096

enum { SINK_NONE = 0, SINK_STDERR, SINK_SYSLOG };

/* The environment is read under log_lock, once; log_ready publishes the result so the common
 * path (vtp_log_level() on every VTP_LOG) is one atomic load. A resettable pthread_once. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int log_ready;
static atomic_int log_env_level;
static atomic_int log_fd = -1; /* the debug log file, or -1 for stderr */
static atomic_int log_sink = SINK_NONE;
/* vtp_log_set_capture: set before the program's first request, read without a lock */
static atomic_int capture_level = VTP_LOG_OFF;
static vtp_log_capture_fn capture_fn;
static void *capture_arg;

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

static int parse_level(const char *s)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0)
        return VTP_LOG_OFF;
    return v > VTP_LOG_DEBUG_LEVEL ? VTP_LOG_DEBUG_LEVEL : (int)v;
}

/* "level:N[,file:/path]"; words in any order; anything unknown is ignored. */
static void read_env_locked(void)
{
    const char *env = getenv(VTP_LOG_ENV);
    char *copy, *word, *save = NULL;
    int level = VTP_LOG_OFF, fd = -1, open_errno = 0;
    const char *file = NULL;

    if (env == NULL || *env == '\0')
        goto done;
    copy = strdup(env);
    if (copy == NULL)
        goto done;
    for (word = strtok_r(copy, ",", &save); word != NULL; word = strtok_r(NULL, ",", &save)) {
        while (*word == ' ')
            word++;
        if (strncmp(word, "level:", 6) == 0)
            level = parse_level(word + 6);
        else if (strncmp(word, "file:", 5) == 0 && word[5] != '\0')
            file = word + 5;
    }
    if (level > VTP_LOG_OFF && file != NULL) {
        fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd < 0)
            open_errno = errno;
    }
    if (open_errno != 0) {
        char msg[512];
        int n = snprintf(msg, sizeof(msg), "%s: cannot open log file %s: %s; logging to stderr\n",
                         VTP_LOG_IDENT, file, strerror(open_errno));
        if (n > 0)
            write_all(STDERR_FILENO, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
    }
    free(copy);

done:
    atomic_store(&log_fd, fd);
    atomic_store(&log_env_level, level);
}

void vtp_log_init(void)
{
    int saved_errno = errno;

    if (atomic_load_explicit(&log_ready, memory_order_acquire))
        return;
    if (pthread_mutex_lock(&log_lock) != 0)
        return;
    if (!atomic_load_explicit(&log_ready, memory_order_relaxed)) {
        read_env_locked();
        atomic_store_explicit(&log_ready, 1, memory_order_release);
    }
    pthread_mutex_unlock(&log_lock);
    errno = saved_errno;
}

/* Forget what was read: the next log call reads the environment again (and reopens the file).
 * Call it only when no other thread can be logging: in a fork child (where log_lock may have been
 * left locked by a parent thread that does not exist here, hence the fresh mutex) or around
 * C_Initialize/C_Finalize. The error sink is left as it is; the config sets it again. */
void vtp_log_reset(void)
{
    int fd;

    pthread_mutex_init(&log_lock, NULL);
    fd = atomic_exchange(&log_fd, -1);
    if (fd >= 0)
        close(fd);
    atomic_store(&log_env_level, VTP_LOG_OFF);
    atomic_store_explicit(&log_ready, 0, memory_order_release);
}

void vtp_log_set_error_sink(const char *sink)
{
    int s = SINK_NONE;

    if (sink != NULL && strcmp(sink, "stderr") == 0)
        s = SINK_STDERR;
    else if (sink != NULL && strcmp(sink, "syslog") == 0)
        s = SINK_SYSLOG;
    atomic_store(&log_sink, s);
}

void vtp_log_set_capture(int level, vtp_log_capture_fn fn, void *arg)
{
    capture_fn = fn;
    capture_arg = arg;
    atomic_store(&capture_level, fn != NULL ? level : VTP_LOG_OFF);
}

int vtp_log_level(void)
{
    int level, captured;

    if (!atomic_load_explicit(&log_ready, memory_order_acquire))
        vtp_log_init();
    level = atomic_load_explicit(&log_env_level, memory_order_relaxed);
    if (level < VTP_LOG_ERROR && atomic_load_explicit(&log_sink, memory_order_relaxed) != SINK_NONE)
        level = VTP_LOG_ERROR;
    captured = atomic_load_explicit(&capture_level, memory_order_relaxed);
    return captured > level ? captured : level;
}

static const char *level_word(int level)
{
    switch (level) {
    case VTP_LOG_ERROR:
        return "ERROR";
    case VTP_LOG_WARNING:
        return "WARN";
    case VTP_LOG_INFO:
        return "INFO";
    default:
        return "DEBUG";
    }
}

void vtp_log_write(int level, const char *func, const char *fmt, ...)
{
    char line[VTP_LOG_LINE_MAX];
    size_t len, msg_start, i;
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int saved_errno = errno, n, env_level, sink, fd;
    bool to_debug, to_stderr_sink, to_capture;

    if (level <= VTP_LOG_OFF)
        goto out;
    if (!atomic_load_explicit(&log_ready, memory_order_acquire))
        vtp_log_init();
    env_level = atomic_load(&log_env_level);
    sink = level <= VTP_LOG_ERROR ? atomic_load(&log_sink) : SINK_NONE;
    to_debug = level <= env_level;
    fd = atomic_load(&log_fd);
    /* No second copy on stderr when the debug log already goes there. */
    to_stderr_sink = sink == SINK_STDERR && !(to_debug && fd < 0);
    to_capture = level <= atomic_load(&capture_level);
    if (!to_debug && sink == SINK_NONE && !to_capture)
        goto out;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || gmtime_r(&ts.tv_sec, &tm) == NULL) {
        memset(&tm, 0, sizeof(tm));
        ts.tv_nsec = 0;
    }
    n = snprintf(line, sizeof(line),
                 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%ld] tid %ld %s %s: ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L,
                 VTP_LOG_IDENT, (long)getpid(), (long)syscall(SYS_gettid), level_word(level),
                 func != NULL ? func : "?");
    if (n < 0)
        goto out;
    msg_start = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;

    va_start(ap, fmt);
    n = vsnprintf(line + msg_start, sizeof(line) - msg_start, fmt, ap);
    va_end(ap);
    if (n < 0)
        goto out;
    len = msg_start + (size_t)n;
    if (len > sizeof(line) - 5) {
        len = sizeof(line) - 5;
        memcpy(line + len, "...", 3);
        len += 3;
    }
    for (i = msg_start; i < len; i++) {
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = ' ';
    }
    line[len++] = '\n';
    line[len] = '\0';

    if (to_capture) {
        line[len - 1] = '\0';
        capture_fn(level, line + msg_start, capture_arg);
        line[len - 1] = '\n';
    }
    if (to_debug)
        write_all(fd >= 0 ? fd : STDERR_FILENO, line, len);
    if (to_stderr_sink)
        write_all(STDERR_FILENO, line, len);
    if (sink == SINK_SYSLOG) {
        line[len - 1] = '\0';
        syslog(LOG_USER | LOG_ERR, "%s: %s", VTP_LOG_IDENT, line + msg_start);
    }

out:
    errno = saved_errno;
}

/* Names of PKCS#11 constants, sorted by value for bsearch. Generated from the
 * <p11-kit/pkcs11.h> of p11-kit 0.24 (every CKR_, CKM_ and CKA_ macro; where two names share a
 * value the later, current one is kept: CKA_EC_PARAMS, CKM_EC_KEY_PAIR_GEN, CKM_CAST128_*),
 * plus the PKCS#11 3.0 return values that header lacks. */

/* clang-format off */
#define VTP_NAME(n) {(n), #n}
#define VTP_NAME_V(s, v) {(v), (s)}

static const struct vtp_name rv_names[] = {
    VTP_NAME(CKR_OK),
    VTP_NAME(CKR_CANCEL),
    VTP_NAME(CKR_HOST_MEMORY),
    VTP_NAME(CKR_SLOT_ID_INVALID),
    VTP_NAME(CKR_GENERAL_ERROR),
    VTP_NAME(CKR_FUNCTION_FAILED),
    VTP_NAME(CKR_ARGUMENTS_BAD),
    VTP_NAME(CKR_NO_EVENT),
    VTP_NAME(CKR_NEED_TO_CREATE_THREADS),
    VTP_NAME(CKR_CANT_LOCK),
    VTP_NAME(CKR_ATTRIBUTE_READ_ONLY),
    VTP_NAME(CKR_ATTRIBUTE_SENSITIVE),
    VTP_NAME(CKR_ATTRIBUTE_TYPE_INVALID),
    VTP_NAME(CKR_ATTRIBUTE_VALUE_INVALID),
    VTP_NAME(CKR_ACTION_PROHIBITED),
    VTP_NAME(CKR_DATA_INVALID),
    VTP_NAME(CKR_DATA_LEN_RANGE),
    VTP_NAME(CKR_DEVICE_ERROR),
    VTP_NAME(CKR_DEVICE_MEMORY),
    VTP_NAME(CKR_DEVICE_REMOVED),
    VTP_NAME_V("CKR_AEAD_DECRYPT_FAILED", 0x35UL), /* PKCS#11 3.0 */
    VTP_NAME(CKR_ENCRYPTED_DATA_INVALID),
    VTP_NAME(CKR_ENCRYPTED_DATA_LEN_RANGE),
    VTP_NAME(CKR_FUNCTION_CANCELED),
    VTP_NAME(CKR_FUNCTION_NOT_PARALLEL),
    VTP_NAME(CKR_FUNCTION_NOT_SUPPORTED),
    VTP_NAME(CKR_KEY_HANDLE_INVALID),
    VTP_NAME(CKR_KEY_SIZE_RANGE),
    VTP_NAME(CKR_KEY_TYPE_INCONSISTENT),
    VTP_NAME(CKR_KEY_NOT_NEEDED),
    VTP_NAME(CKR_KEY_CHANGED),
    VTP_NAME(CKR_KEY_NEEDED),
    VTP_NAME(CKR_KEY_INDIGESTIBLE),
    VTP_NAME(CKR_KEY_FUNCTION_NOT_PERMITTED),
    VTP_NAME(CKR_KEY_NOT_WRAPPABLE),
    VTP_NAME(CKR_KEY_UNEXTRACTABLE),
    VTP_NAME(CKR_MECHANISM_INVALID),
    VTP_NAME(CKR_MECHANISM_PARAM_INVALID),
    VTP_NAME(CKR_OBJECT_HANDLE_INVALID),
    VTP_NAME(CKR_OPERATION_ACTIVE),
    VTP_NAME(CKR_OPERATION_NOT_INITIALIZED),
    VTP_NAME(CKR_PIN_INCORRECT),
    VTP_NAME(CKR_PIN_INVALID),
    VTP_NAME(CKR_PIN_LEN_RANGE),
    VTP_NAME(CKR_PIN_EXPIRED),
    VTP_NAME(CKR_PIN_LOCKED),
    VTP_NAME(CKR_SESSION_CLOSED),
    VTP_NAME(CKR_SESSION_COUNT),
    VTP_NAME(CKR_SESSION_HANDLE_INVALID),
    VTP_NAME(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
    VTP_NAME(CKR_SESSION_READ_ONLY),
    VTP_NAME(CKR_SESSION_EXISTS),
    VTP_NAME(CKR_SESSION_READ_ONLY_EXISTS),
    VTP_NAME(CKR_SESSION_READ_WRITE_SO_EXISTS),
    VTP_NAME(CKR_SIGNATURE_INVALID),
    VTP_NAME(CKR_SIGNATURE_LEN_RANGE),
    VTP_NAME(CKR_TEMPLATE_INCOMPLETE),
    VTP_NAME(CKR_TEMPLATE_INCONSISTENT),
    VTP_NAME(CKR_TOKEN_NOT_PRESENT),
    VTP_NAME(CKR_TOKEN_NOT_RECOGNIZED),
    VTP_NAME(CKR_TOKEN_WRITE_PROTECTED),
    VTP_NAME(CKR_UNWRAPPING_KEY_HANDLE_INVALID),
    VTP_NAME(CKR_UNWRAPPING_KEY_SIZE_RANGE),
    VTP_NAME(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT),
    VTP_NAME(CKR_USER_ALREADY_LOGGED_IN),
    VTP_NAME(CKR_USER_NOT_LOGGED_IN),
    VTP_NAME(CKR_USER_PIN_NOT_INITIALIZED),
    VTP_NAME(CKR_USER_TYPE_INVALID),
    VTP_NAME(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
    VTP_NAME(CKR_USER_TOO_MANY_TYPES),
    VTP_NAME(CKR_WRAPPED_KEY_INVALID),
    VTP_NAME(CKR_WRAPPED_KEY_LEN_RANGE),
    VTP_NAME(CKR_WRAPPING_KEY_HANDLE_INVALID),
    VTP_NAME(CKR_WRAPPING_KEY_SIZE_RANGE),
    VTP_NAME(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
    VTP_NAME(CKR_RANDOM_SEED_NOT_SUPPORTED),
    VTP_NAME(CKR_RANDOM_NO_RNG),
    VTP_NAME(CKR_DOMAIN_PARAMS_INVALID),
    VTP_NAME(CKR_CURVE_NOT_SUPPORTED),
    VTP_NAME(CKR_BUFFER_TOO_SMALL),
    VTP_NAME(CKR_SAVED_STATE_INVALID),
    VTP_NAME(CKR_INFORMATION_SENSITIVE),
    VTP_NAME(CKR_STATE_UNSAVEABLE),
    VTP_NAME(CKR_CRYPTOKI_NOT_INITIALIZED),
    VTP_NAME(CKR_CRYPTOKI_ALREADY_INITIALIZED),
    VTP_NAME(CKR_MUTEX_BAD),
    VTP_NAME(CKR_MUTEX_NOT_LOCKED),
    VTP_NAME(CKR_NEW_PIN_MODE),
    VTP_NAME(CKR_NEXT_OTP),
    VTP_NAME(CKR_EXCEEDED_MAX_ITERATIONS),
    VTP_NAME(CKR_FIPS_SELF_TEST_FAILED),
    VTP_NAME(CKR_LIBRARY_LOAD_FAILED),
    VTP_NAME(CKR_PIN_TOO_WEAK),
    VTP_NAME(CKR_PUBLIC_KEY_INVALID),
    VTP_NAME(CKR_FUNCTION_REJECTED),
    VTP_NAME_V("CKR_TOKEN_RESOURCE_EXCEEDED", 0x201UL), /* PKCS#11 3.0 */
    VTP_NAME_V("CKR_OPERATION_CANCEL_FAILED", 0x202UL), /* PKCS#11 3.0 */
    VTP_NAME(CKR_VENDOR_DEFINED),
};

static const struct vtp_name mech_names[] = {
    VTP_NAME(CKM_RSA_PKCS_KEY_PAIR_GEN),
    VTP_NAME(CKM_RSA_PKCS),
    VTP_NAME(CKM_RSA_9796),
    VTP_NAME(CKM_RSA_X_509),
    VTP_NAME(CKM_MD2_RSA_PKCS),
    VTP_NAME(CKM_MD5_RSA_PKCS),
    VTP_NAME(CKM_SHA1_RSA_PKCS),
    VTP_NAME(CKM_RIPEMD128_RSA_PKCS),
    VTP_NAME(CKM_RIPEMD160_RSA_PKCS),
    VTP_NAME(CKM_RSA_PKCS_OAEP),
    VTP_NAME(CKM_RSA_X9_31_KEY_PAIR_GEN),
    VTP_NAME(CKM_RSA_X9_31),
    VTP_NAME(CKM_SHA1_RSA_X9_31),
    VTP_NAME(CKM_RSA_PKCS_PSS),
    VTP_NAME(CKM_SHA1_RSA_PKCS_PSS),
    VTP_NAME(CKM_DSA_KEY_PAIR_GEN),
    VTP_NAME(CKM_DSA),
    VTP_NAME(CKM_DSA_SHA1),
    VTP_NAME(CKM_DSA_SHA224),
    VTP_NAME(CKM_DSA_SHA256),
    VTP_NAME(CKM_DSA_SHA384),
    VTP_NAME(CKM_DSA_SHA512),
    VTP_NAME(CKM_DH_PKCS_KEY_PAIR_GEN),
    VTP_NAME(CKM_DH_PKCS_DERIVE),
    VTP_NAME(CKM_X9_42_DH_KEY_PAIR_GEN),
    VTP_NAME(CKM_X9_42_DH_DERIVE),
    VTP_NAME(CKM_X9_42_DH_HYBRID_DERIVE),
    VTP_NAME(CKM_X9_42_MQV_DERIVE),
    VTP_NAME(CKM_SHA256_RSA_PKCS),
    VTP_NAME(CKM_SHA384_RSA_PKCS),
    VTP_NAME(CKM_SHA512_RSA_PKCS),
    VTP_NAME(CKM_SHA256_RSA_PKCS_PSS),
    VTP_NAME(CKM_SHA384_RSA_PKCS_PSS),
    VTP_NAME(CKM_SHA512_RSA_PKCS_PSS),
    VTP_NAME(CKM_SHA224_RSA_PKCS),
    VTP_NAME(CKM_SHA224_RSA_PKCS_PSS),
    VTP_NAME(CKM_SHA512_224),
    VTP_NAME(CKM_SHA512_224_HMAC),
    VTP_NAME(CKM_SHA512_224_HMAC_GENERAL),
    VTP_NAME(CKM_SHA512_224_KEY_DERIVATION),
    VTP_NAME(CKM_SHA512_256),
    VTP_NAME(CKM_SHA512_256_HMAC),
    VTP_NAME(CKM_SHA512_256_HMAC_GENERAL),
    VTP_NAME(CKM_SHA512_256_KEY_DERIVATION),
    VTP_NAME(CKM_SHA512_T),
    VTP_NAME(CKM_SHA512_T_HMAC),
    VTP_NAME(CKM_SHA512_T_HMAC_GENERAL),
    VTP_NAME(CKM_SHA512_T_KEY_DERIVATION),
    VTP_NAME(CKM_RC2_KEY_GEN),
    VTP_NAME(CKM_RC2_ECB),
    VTP_NAME(CKM_RC2_CBC),
    VTP_NAME(CKM_RC2_MAC),
    VTP_NAME(CKM_RC2_MAC_GENERAL),
    VTP_NAME(CKM_RC2_CBC_PAD),
    VTP_NAME(CKM_RC4_KEY_GEN),
    VTP_NAME(CKM_RC4),
    VTP_NAME(CKM_DES_KEY_GEN),
    VTP_NAME(CKM_DES_ECB),
    VTP_NAME(CKM_DES_CBC),
    VTP_NAME(CKM_DES_MAC),
    VTP_NAME(CKM_DES_MAC_GENERAL),
    VTP_NAME(CKM_DES_CBC_PAD),
    VTP_NAME(CKM_DES2_KEY_GEN),
    VTP_NAME(CKM_DES3_KEY_GEN),
    VTP_NAME(CKM_DES3_ECB),
    VTP_NAME(CKM_DES3_CBC),
    VTP_NAME(CKM_DES3_MAC),
    VTP_NAME(CKM_DES3_MAC_GENERAL),
    VTP_NAME(CKM_DES3_CBC_PAD),
    VTP_NAME(CKM_DES3_CMAC_GENERAL),
    VTP_NAME(CKM_DES3_CMAC),
    VTP_NAME(CKM_CDMF_KEY_GEN),
    VTP_NAME(CKM_CDMF_ECB),
    VTP_NAME(CKM_CDMF_CBC),
    VTP_NAME(CKM_CDMF_MAC),
    VTP_NAME(CKM_CDMF_MAC_GENERAL),
    VTP_NAME(CKM_CDMF_CBC_PAD),
    VTP_NAME(CKM_DES_OFB64),
    VTP_NAME(CKM_DES_OFB8),
    VTP_NAME(CKM_DES_CFB64),
    VTP_NAME(CKM_DES_CFB8),
    VTP_NAME(CKM_MD2),
    VTP_NAME(CKM_MD2_HMAC),
    VTP_NAME(CKM_MD2_HMAC_GENERAL),
    VTP_NAME(CKM_MD5),
    VTP_NAME(CKM_MD5_HMAC),
    VTP_NAME(CKM_MD5_HMAC_GENERAL),
    VTP_NAME(CKM_SHA_1),
    VTP_NAME(CKM_SHA_1_HMAC),
    VTP_NAME(CKM_SHA_1_HMAC_GENERAL),
    VTP_NAME(CKM_RIPEMD128),
    VTP_NAME(CKM_RIPEMD128_HMAC),
    VTP_NAME(CKM_RIPEMD128_HMAC_GENERAL),
    VTP_NAME(CKM_RIPEMD160),
    VTP_NAME(CKM_RIPEMD160_HMAC),
    VTP_NAME(CKM_RIPEMD160_HMAC_GENERAL),
    VTP_NAME(CKM_SHA256),
    VTP_NAME(CKM_SHA256_HMAC),
    VTP_NAME(CKM_SHA256_HMAC_GENERAL),
    VTP_NAME(CKM_SHA224),
    VTP_NAME(CKM_SHA224_HMAC),
    VTP_NAME(CKM_SHA224_HMAC_GENERAL),
    VTP_NAME(CKM_SHA384),
    VTP_NAME(CKM_SHA384_HMAC),
    VTP_NAME(CKM_SHA384_HMAC_GENERAL),
    VTP_NAME(CKM_SHA512),
    VTP_NAME(CKM_SHA512_HMAC),
    VTP_NAME(CKM_SHA512_HMAC_GENERAL),
    VTP_NAME(CKM_SECURID_KEY_GEN),
    VTP_NAME(CKM_SECURID),
    VTP_NAME(CKM_HOTP_KEY_GEN),
    VTP_NAME(CKM_HOTP),
    VTP_NAME(CKM_ACTI),
    VTP_NAME(CKM_ACTI_KEY_GEN),
    VTP_NAME(CKM_CAST_KEY_GEN),
    VTP_NAME(CKM_CAST_ECB),
    VTP_NAME(CKM_CAST_CBC),
    VTP_NAME(CKM_CAST_MAC),
    VTP_NAME(CKM_CAST_MAC_GENERAL),
    VTP_NAME(CKM_CAST_CBC_PAD),
    VTP_NAME(CKM_CAST3_KEY_GEN),
    VTP_NAME(CKM_CAST3_ECB),
    VTP_NAME(CKM_CAST3_CBC),
    VTP_NAME(CKM_CAST3_MAC),
    VTP_NAME(CKM_CAST3_MAC_GENERAL),
    VTP_NAME(CKM_CAST3_CBC_PAD),
    VTP_NAME(CKM_CAST128_KEY_GEN),
    VTP_NAME(CKM_CAST128_ECB),
    VTP_NAME(CKM_CAST128_CBC),
    VTP_NAME(CKM_CAST128_MAC),
    VTP_NAME(CKM_CAST128_MAC_GENERAL),
    VTP_NAME(CKM_CAST128_CBC_PAD),
    VTP_NAME(CKM_RC5_KEY_GEN),
    VTP_NAME(CKM_RC5_ECB),
    VTP_NAME(CKM_RC5_CBC),
    VTP_NAME(CKM_RC5_MAC),
    VTP_NAME(CKM_RC5_MAC_GENERAL),
    VTP_NAME(CKM_RC5_CBC_PAD),
    VTP_NAME(CKM_IDEA_KEY_GEN),
    VTP_NAME(CKM_IDEA_ECB),
    VTP_NAME(CKM_IDEA_CBC),
    VTP_NAME(CKM_IDEA_MAC),
    VTP_NAME(CKM_IDEA_MAC_GENERAL),
    VTP_NAME(CKM_IDEA_CBC_PAD),
    VTP_NAME(CKM_GENERIC_SECRET_KEY_GEN),
    VTP_NAME(CKM_CONCATENATE_BASE_AND_KEY),
    VTP_NAME(CKM_CONCATENATE_BASE_AND_DATA),
    VTP_NAME(CKM_CONCATENATE_DATA_AND_BASE),
    VTP_NAME(CKM_XOR_BASE_AND_DATA),
    VTP_NAME(CKM_EXTRACT_KEY_FROM_KEY),
    VTP_NAME(CKM_SSL3_PRE_MASTER_KEY_GEN),
    VTP_NAME(CKM_SSL3_MASTER_KEY_DERIVE),
    VTP_NAME(CKM_SSL3_KEY_AND_MAC_DERIVE),
    VTP_NAME(CKM_SSL3_MASTER_KEY_DERIVE_DH),
    VTP_NAME(CKM_TLS_PRE_MASTER_KEY_GEN),
    VTP_NAME(CKM_TLS_MASTER_KEY_DERIVE),
    VTP_NAME(CKM_TLS_KEY_AND_MAC_DERIVE),
    VTP_NAME(CKM_TLS_MASTER_KEY_DERIVE_DH),
    VTP_NAME(CKM_TLS_PRF),
    VTP_NAME(CKM_SSL3_MD5_MAC),
    VTP_NAME(CKM_SSL3_SHA1_MAC),
    VTP_NAME(CKM_MD5_KEY_DERIVATION),
    VTP_NAME(CKM_MD2_KEY_DERIVATION),
    VTP_NAME(CKM_SHA1_KEY_DERIVATION),
    VTP_NAME(CKM_SHA256_KEY_DERIVATION),
    VTP_NAME(CKM_SHA384_KEY_DERIVATION),
    VTP_NAME(CKM_SHA512_KEY_DERIVATION),
    VTP_NAME(CKM_SHA224_KEY_DERIVATION),
    VTP_NAME(CKM_PBE_MD2_DES_CBC),
    VTP_NAME(CKM_PBE_MD5_DES_CBC),
    VTP_NAME(CKM_PBE_MD5_CAST_CBC),
    VTP_NAME(CKM_PBE_MD5_CAST3_CBC),
    VTP_NAME(CKM_PBE_MD5_CAST128_CBC),
    VTP_NAME(CKM_PBE_SHA1_CAST128_CBC),
    VTP_NAME(CKM_PBE_SHA1_RC4_128),
    VTP_NAME(CKM_PBE_SHA1_RC4_40),
    VTP_NAME(CKM_PBE_SHA1_DES3_EDE_CBC),
    VTP_NAME(CKM_PBE_SHA1_DES2_EDE_CBC),
    VTP_NAME(CKM_PBE_SHA1_RC2_128_CBC),
    VTP_NAME(CKM_PBE_SHA1_RC2_40_CBC),
    VTP_NAME(CKM_PKCS5_PBKD2),
    VTP_NAME(CKM_PBA_SHA1_WITH_SHA1_HMAC),
    VTP_NAME(CKM_WTLS_PRE_MASTER_KEY_GEN),
    VTP_NAME(CKM_WTLS_MASTER_KEY_DERIVE),
    VTP_NAME(CKM_WTLS_MASTER_KEY_DERIVE_DH_ECC),
    VTP_NAME(CKM_WTLS_PRF),
    VTP_NAME(CKM_WTLS_SERVER_KEY_AND_MAC_DERIVE),
    VTP_NAME(CKM_WTLS_CLIENT_KEY_AND_MAC_DERIVE),
    VTP_NAME(CKM_TLS10_MAC_SERVER),
    VTP_NAME(CKM_TLS10_MAC_CLIENT),
    VTP_NAME(CKM_TLS12_MAC),
    VTP_NAME(CKM_TLS12_KDF),
    VTP_NAME(CKM_TLS12_MASTER_KEY_DERIVE),
    VTP_NAME(CKM_TLS12_KEY_AND_MAC_DERIVE),
    VTP_NAME(CKM_TLS12_MASTER_KEY_DERIVE_DH),
    VTP_NAME(CKM_TLS12_KEY_SAFE_DERIVE),
    VTP_NAME(CKM_TLS_MAC),
    VTP_NAME(CKM_TLS_KDF),
    VTP_NAME(CKM_KEY_WRAP_LYNKS),
    VTP_NAME(CKM_KEY_WRAP_SET_OAEP),
    VTP_NAME(CKM_CMS_SIG),
    VTP_NAME(CKM_KIP_DERIVE),
    VTP_NAME(CKM_KIP_WRAP),
    VTP_NAME(CKM_KIP_MAC),
    VTP_NAME(CKM_CAMELLIA_KEY_GEN),
    VTP_NAME(CKM_CAMELLIA_ECB),
    VTP_NAME(CKM_CAMELLIA_CBC),
    VTP_NAME(CKM_CAMELLIA_MAC),
    VTP_NAME(CKM_CAMELLIA_MAC_GENERAL),
    VTP_NAME(CKM_CAMELLIA_CBC_PAD),
    VTP_NAME(CKM_CAMELLIA_ECB_ENCRYPT_DATA),
    VTP_NAME(CKM_CAMELLIA_CBC_ENCRYPT_DATA),
    VTP_NAME(CKM_CAMELLIA_CTR),
    VTP_NAME(CKM_ARIA_KEY_GEN),
    VTP_NAME(CKM_ARIA_ECB),
    VTP_NAME(CKM_ARIA_CBC),
    VTP_NAME(CKM_ARIA_MAC),
    VTP_NAME(CKM_ARIA_MAC_GENERAL),
    VTP_NAME(CKM_ARIA_CBC_PAD),
    VTP_NAME(CKM_ARIA_ECB_ENCRYPT_DATA),
    VTP_NAME(CKM_ARIA_CBC_ENCRYPT_DATA),
    VTP_NAME(CKM_SEED_KEY_GEN),
    VTP_NAME(CKM_SEED_ECB),
    VTP_NAME(CKM_SEED_CBC),
    VTP_NAME(CKM_SEED_MAC),
    VTP_NAME(CKM_SEED_MAC_GENERAL),
    VTP_NAME(CKM_SEED_CBC_PAD),
    VTP_NAME(CKM_SEED_ECB_ENCRYPT_DATA),
    VTP_NAME(CKM_SEED_CBC_ENCRYPT_DATA),
    VTP_NAME(CKM_SKIPJACK_KEY_GEN),
    VTP_NAME(CKM_SKIPJACK_ECB64),
    VTP_NAME(CKM_SKIPJACK_CBC64),
    VTP_NAME(CKM_SKIPJACK_OFB64),
    VTP_NAME(CKM_SKIPJACK_CFB64),
    VTP_NAME(CKM_SKIPJACK_CFB32),
    VTP_NAME(CKM_SKIPJACK_CFB16),
    VTP_NAME(CKM_SKIPJACK_CFB8),
    VTP_NAME(CKM_SKIPJACK_WRAP),
    VTP_NAME(CKM_SKIPJACK_PRIVATE_WRAP),
    VTP_NAME(CKM_SKIPJACK_RELAYX),
    VTP_NAME(CKM_KEA_KEY_PAIR_GEN),
    VTP_NAME(CKM_KEA_KEY_DERIVE),
    VTP_NAME(CKM_FORTEZZA_TIMESTAMP),
    VTP_NAME(CKM_BATON_KEY_GEN),
    VTP_NAME(CKM_BATON_ECB128),
    VTP_NAME(CKM_BATON_ECB96),
    VTP_NAME(CKM_BATON_CBC128),
    VTP_NAME(CKM_BATON_COUNTER),
    VTP_NAME(CKM_BATON_SHUFFLE),
    VTP_NAME(CKM_BATON_WRAP),
    VTP_NAME(CKM_EC_KEY_PAIR_GEN),
    VTP_NAME(CKM_ECDSA),
    VTP_NAME(CKM_ECDSA_SHA1),
    VTP_NAME(CKM_ECDSA_SHA224),
    VTP_NAME(CKM_ECDSA_SHA256),
    VTP_NAME(CKM_ECDSA_SHA384),
    VTP_NAME(CKM_ECDSA_SHA512),
    VTP_NAME(CKM_ECDH1_DERIVE),
    VTP_NAME(CKM_ECDH1_COFACTOR_DERIVE),
    VTP_NAME(CKM_ECMQV_DERIVE),
    VTP_NAME(CKM_ECDH_AES_KEY_WRAP),
    VTP_NAME(CKM_RSA_AES_KEY_WRAP),
    VTP_NAME(CKM_EC_EDWARDS_KEY_PAIR_GEN),
    VTP_NAME(CKM_EDDSA),
    VTP_NAME(CKM_JUNIPER_KEY_GEN),
    VTP_NAME(CKM_JUNIPER_ECB128),
    VTP_NAME(CKM_JUNIPER_CBC128),
    VTP_NAME(CKM_JUNIPER_COUNTER),
    VTP_NAME(CKM_JUNIPER_SHUFFLE),
    VTP_NAME(CKM_JUNIPER_WRAP),
    VTP_NAME(CKM_FASTHASH),
    VTP_NAME(CKM_AES_KEY_GEN),
    VTP_NAME(CKM_AES_ECB),
    VTP_NAME(CKM_AES_CBC),
    VTP_NAME(CKM_AES_MAC),
    VTP_NAME(CKM_AES_MAC_GENERAL),
    VTP_NAME(CKM_AES_CBC_PAD),
    VTP_NAME(CKM_AES_CTR),
    VTP_NAME(CKM_AES_GCM),
    VTP_NAME(CKM_AES_CCM),
    VTP_NAME(CKM_AES_CTS),
    VTP_NAME(CKM_AES_CMAC),
    VTP_NAME(CKM_AES_CMAC_GENERAL),
    VTP_NAME(CKM_AES_XCBC_MAC),
    VTP_NAME(CKM_AES_XCBC_MAC_96),
    VTP_NAME(CKM_AES_GMAC),
    VTP_NAME(CKM_BLOWFISH_KEY_GEN),
    VTP_NAME(CKM_BLOWFISH_CBC),
    VTP_NAME(CKM_TWOFISH_KEY_GEN),
    VTP_NAME(CKM_TWOFISH_CBC),
    VTP_NAME(CKM_BLOWFISH_CBC_PAD),
    VTP_NAME(CKM_TWOFISH_CBC_PAD),
    VTP_NAME(CKM_DES_ECB_ENCRYPT_DATA),
    VTP_NAME(CKM_DES_CBC_ENCRYPT_DATA),
    VTP_NAME(CKM_DES3_ECB_ENCRYPT_DATA),
    VTP_NAME(CKM_DES3_CBC_ENCRYPT_DATA),
    VTP_NAME(CKM_AES_ECB_ENCRYPT_DATA),
    VTP_NAME(CKM_AES_CBC_ENCRYPT_DATA),
    VTP_NAME(CKM_GOSTR3410_KEY_PAIR_GEN),
    VTP_NAME(CKM_GOSTR3410),
    VTP_NAME(CKM_GOSTR3410_WITH_GOSTR3411),
    VTP_NAME(CKM_GOSTR3410_KEY_WRAP),
    VTP_NAME(CKM_GOSTR3410_DERIVE),
    VTP_NAME(CKM_GOSTR3411),
    VTP_NAME(CKM_GOSTR3411_HMAC),
    VTP_NAME(CKM_GOST28147_KEY_GEN),
    VTP_NAME(CKM_GOST28147_ECB),
    VTP_NAME(CKM_GOST28147),
    VTP_NAME(CKM_GOST28147_MAC),
    VTP_NAME(CKM_GOST28147_KEY_WRAP),
    VTP_NAME(CKM_DSA_PARAMETER_GEN),
    VTP_NAME(CKM_DH_PKCS_PARAMETER_GEN),
    VTP_NAME(CKM_X9_42_DH_PARAMETER_GEN),
    VTP_NAME(CKM_DSA_PROBABLISTIC_PARAMETER_GEN),
    VTP_NAME(CKM_DSA_SHAWE_TAYLOR_PARAMETER_GEN),
    VTP_NAME(CKM_AES_OFB),
    VTP_NAME(CKM_AES_CFB64),
    VTP_NAME(CKM_AES_CFB8),
    VTP_NAME(CKM_AES_CFB128),
    VTP_NAME(CKM_AES_CFB1),
    VTP_NAME(CKM_AES_KEY_WRAP),
    VTP_NAME(CKM_AES_KEY_WRAP_PAD),
    VTP_NAME(CKM_RSA_PKCS_TPM_1_1),
    VTP_NAME(CKM_RSA_PKCS_OAEP_TPM_1_1),
    VTP_NAME(CKM_VENDOR_DEFINED),
};

static const struct vtp_name attr_names[] = {
    VTP_NAME(CKA_CLASS),
    VTP_NAME(CKA_TOKEN),
    VTP_NAME(CKA_PRIVATE),
    VTP_NAME(CKA_LABEL),
    VTP_NAME(CKA_APPLICATION),
    VTP_NAME(CKA_VALUE),
    VTP_NAME(CKA_OBJECT_ID),
    VTP_NAME(CKA_CERTIFICATE_TYPE),
    VTP_NAME(CKA_ISSUER),
    VTP_NAME(CKA_SERIAL_NUMBER),
    VTP_NAME(CKA_AC_ISSUER),
    VTP_NAME(CKA_OWNER),
    VTP_NAME(CKA_ATTR_TYPES),
    VTP_NAME(CKA_TRUSTED),
    VTP_NAME(CKA_CERTIFICATE_CATEGORY),
    VTP_NAME(CKA_JAVA_MIDP_SECURITY_DOMAIN),
    VTP_NAME(CKA_URL),
    VTP_NAME(CKA_HASH_OF_SUBJECT_PUBLIC_KEY),
    VTP_NAME(CKA_HASH_OF_ISSUER_PUBLIC_KEY),
    VTP_NAME(CKA_NAME_HASH_ALGORITHM),
    VTP_NAME(CKA_CHECK_VALUE),
    VTP_NAME(CKA_KEY_TYPE),
    VTP_NAME(CKA_SUBJECT),
    VTP_NAME(CKA_ID),
    VTP_NAME(CKA_SENSITIVE),
    VTP_NAME(CKA_ENCRYPT),
    VTP_NAME(CKA_DECRYPT),
    VTP_NAME(CKA_WRAP),
    VTP_NAME(CKA_UNWRAP),
    VTP_NAME(CKA_SIGN),
    VTP_NAME(CKA_SIGN_RECOVER),
    VTP_NAME(CKA_VERIFY),
    VTP_NAME(CKA_VERIFY_RECOVER),
    VTP_NAME(CKA_DERIVE),
    VTP_NAME(CKA_START_DATE),
    VTP_NAME(CKA_END_DATE),
    VTP_NAME(CKA_MODULUS),
    VTP_NAME(CKA_MODULUS_BITS),
    VTP_NAME(CKA_PUBLIC_EXPONENT),
    VTP_NAME(CKA_PRIVATE_EXPONENT),
    VTP_NAME(CKA_PRIME_1),
    VTP_NAME(CKA_PRIME_2),
    VTP_NAME(CKA_EXPONENT_1),
    VTP_NAME(CKA_EXPONENT_2),
    VTP_NAME(CKA_COEFFICIENT),
    VTP_NAME(CKA_PUBLIC_KEY_INFO),
    VTP_NAME(CKA_PRIME),
    VTP_NAME(CKA_SUBPRIME),
    VTP_NAME(CKA_BASE),
    VTP_NAME(CKA_PRIME_BITS),
    VTP_NAME(CKA_SUB_PRIME_BITS),
    VTP_NAME(CKA_VALUE_BITS),
    VTP_NAME(CKA_VALUE_LEN),
    VTP_NAME(CKA_EXTRACTABLE),
    VTP_NAME(CKA_LOCAL),
    VTP_NAME(CKA_NEVER_EXTRACTABLE),
    VTP_NAME(CKA_ALWAYS_SENSITIVE),
    VTP_NAME(CKA_KEY_GEN_MECHANISM),
    VTP_NAME(CKA_MODIFIABLE),
    VTP_NAME(CKA_COPYABLE),
    VTP_NAME(CKA_DESTROYABLE),
    VTP_NAME(CKA_EC_PARAMS),
    VTP_NAME(CKA_EC_POINT),
    VTP_NAME(CKA_SECONDARY_AUTH),
    VTP_NAME(CKA_AUTH_PIN_FLAGS),
    VTP_NAME(CKA_ALWAYS_AUTHENTICATE),
    VTP_NAME(CKA_WRAP_WITH_TRUSTED),
    VTP_NAME(CKA_OTP_FORMAT),
    VTP_NAME(CKA_OTP_LENGTH),
    VTP_NAME(CKA_OTP_TIME_INTERVAL),
    VTP_NAME(CKA_OTP_USER_FRIENDLY_MODE),
    VTP_NAME(CKA_OTP_CHALLENGE_REQUIREMENT),
    VTP_NAME(CKA_OTP_TIME_REQUIREMENT),
    VTP_NAME(CKA_OTP_COUNTER_REQUIREMENT),
    VTP_NAME(CKA_OTP_PIN_REQUIREMENT),
    VTP_NAME(CKA_OTP_USER_IDENTIFIER),
    VTP_NAME(CKA_OTP_SERVICE_IDENTIFIER),
    VTP_NAME(CKA_OTP_SERVICE_LOGO),
    VTP_NAME(CKA_OTP_SERVICE_LOGO_TYPE),
    VTP_NAME(CKA_OTP_COUNTER),
    VTP_NAME(CKA_OTP_TIME),
    VTP_NAME(CKA_GOSTR3410_PARAMS),
    VTP_NAME(CKA_GOSTR3411_PARAMS),
    VTP_NAME(CKA_GOST28147_PARAMS),
    VTP_NAME(CKA_HW_FEATURE_TYPE),
    VTP_NAME(CKA_RESET_ON_INIT),
    VTP_NAME(CKA_HAS_RESET),
    VTP_NAME(CKA_PIXEL_X),
    VTP_NAME(CKA_PIXEL_Y),
    VTP_NAME(CKA_RESOLUTION),
    VTP_NAME(CKA_CHAR_ROWS),
    VTP_NAME(CKA_CHAR_COLUMNS),
    VTP_NAME(CKA_COLOR),
    VTP_NAME(CKA_BITS_PER_PIXEL),
    VTP_NAME(CKA_CHAR_SETS),
    VTP_NAME(CKA_ENCODING_METHODS),
    VTP_NAME(CKA_MIME_TYPES),
    VTP_NAME(CKA_MECHANISM_TYPE),
    VTP_NAME(CKA_REQUIRED_CMS_ATTRIBUTES),
    VTP_NAME(CKA_DEFAULT_CMS_ATTRIBUTES),
    VTP_NAME(CKA_SUPPORTED_CMS_ATTRIBUTES),
    VTP_NAME(CKA_WRAP_TEMPLATE),
    VTP_NAME(CKA_UNWRAP_TEMPLATE),
    VTP_NAME(CKA_DERIVE_TEMPLATE),
    VTP_NAME(CKA_ALLOWED_MECHANISMS),
    VTP_NAME(CKA_VENDOR_DEFINED),
};
/* clang-format on */

static int name_cmp(const void *key, const void *elem)
{
    CK_ULONG k = *(const CK_ULONG *)key;
    CK_ULONG v = ((const struct vtp_name *)elem)->value;

    return k < v ? -1 : k > v ? 1 : 0;
}

static const char *lookup(const struct vtp_name *table, size_t n, CK_ULONG value)
{
    const struct vtp_name *hit = bsearch(&value, table, n, sizeof(*table), name_cmp);

    return hit != NULL ? hit->name : NULL;
}

/* The internal error kinds (vault/errkind.h): never returned to a caller, named in logs. */
static const char *const kind_names[VTP_ERR_INDEX_END] = {
#define KIND_NAME_(name, text) [VTP_ERR_INDEX_##name] = "VTP_ERR_" #name,
    VTP_ERR_KINDS(KIND_NAME_)
#undef KIND_NAME_
};

const char *vtp_rv_name(CK_RV rv)
{
    static __thread char buf[32];
    const char *name = lookup(rv_names, VTP_ARRAY_SIZE(rv_names), rv);

    if (name != NULL)
        return name;
    if (vtp_err_is_kind(rv))
        return kind_names[rv - VTP_ERR_BASE];
    snprintf(buf, sizeof(buf), "CKR_0x%08lx", (unsigned long)rv);
    return buf;
}

const char *vtp_mech_name(CK_MECHANISM_TYPE m)
{
    const char *name = lookup(mech_names, VTP_ARRAY_SIZE(mech_names), m);

    return name != NULL ? name : "unknown";
}

const char *vtp_attr_name(CK_ATTRIBUTE_TYPE a)
{
    const char *name = lookup(attr_names, VTP_ARRAY_SIZE(attr_names), a);

    return name != NULL ? name : "unknown";
}

const struct vtp_name *vtp_name_table(char kind, size_t *n)
{
    switch (kind) {
    case 'r':
        *n = VTP_ARRAY_SIZE(rv_names);
        return rv_names;
    case 'm':
        *n = VTP_ARRAY_SIZE(mech_names);
        return mech_names;
    case 'a':
        *n = VTP_ARRAY_SIZE(attr_names);
        return attr_names;
    default:
        *n = 0;
        return NULL;
    }
}
