/* config.c - the module's configuration: INI file (libinih), Vault's environment, defaults.
 *
 * The text is checked line by line before libinih sees it: leading blanks are removed (so an
 * indented line is never taken for the continuation of the previous value), section headers
 * are validated and slots created in file order, and over-long or malformed lines are rejected
 * with their line number. libinih then calls one handler per "key = value" line; since the
 * scan numbered those lines, every error names its file, line and key. Nothing unknown is
 * ignored: a typo in a key or section is an error, as is a key given twice.
 */
#include "common.h"
#include "cfg.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>
#include <openssl/crypto.h>

#define CFG_DEFAULT_ADDRESS "https://127.0.0.1:8200"
#define CFG_DEFAULT_MOUNT "transit"
#define CFG_DEFAULT_KV_PREFIX "vault-transit-pkcs11"
#define CFG_AUTO_KV_MOUNT "secret" /* kv_mount = auto: KV v2 of dev servers and most setups */
#define CFG_DEFAULT_LABEL_PREFIX "Vault Transit "
#define CFG_DEFAULT_JWT_FILE "/var/run/secrets/kubernetes.io/serviceaccount/token"
#define CFG_DEFAULT_TIMEOUT_MS 30000L
#define CFG_DEFAULT_CONNECT_TIMEOUT_MS 5000L
#define CFG_DEFAULT_CACHE_TTL_MS 60000L
#define CFG_MAX_FILE_SIZE (1024L * 1024L)
/* libinih reads lines into a 200-byte buffer (INI_MAX_LINE); stay well inside it. */
#define CFG_MAX_LINE 190
#define CFG_MAX_LABEL 32
#define CFG_MAX_SLOT_NAME 32
#define CFG_MAX_PATH_VALUE 128 /* mount, namespace, kv_prefix */
#define CFG_MAX_ERROR 256

enum section_kind { SECTION_NONE = 0, SECTION_VAULT, SECTION_MODULE, SECTION_SLOT };

enum opt_type {
    OPT_STRING,   /* free text without control characters; "" = unset */
    OPT_FILE,     /* a file or directory path; "" = unset */
    OPT_SECRET,   /* like OPT_STRING, wiped on free, never logged */
    OPT_HOSTNAME, /* no blanks */
    OPT_PATH,     /* Vault path (mount, namespace): segments of [A-Za-z0-9_.-] */
    OPT_PATH_OR_EMPTY,
    OPT_KEY_PREFIX,
    OPT_LABEL,
    OPT_BOOL,
    OPT_DURATION,
    OPT_ADDRESSES,
    OPT_AUTH,
    OPT_SINK,
    OPT_COUNT,
};

struct opt {
    const char *name;
    enum opt_type type;
    size_t offset;
};

/* clang-format off */
#define VOPT(n, t, f) {n, t, offsetof(struct vtp_vault_conf, f)}
/* clang-format on */
static const struct opt vault_opts[] = {
    VOPT("address", OPT_ADDRESSES, addresses),
    VOPT("ca_cert", OPT_FILE, ca_cert),
    VOPT("ca_path", OPT_FILE, ca_path),
    VOPT("client_cert", OPT_FILE, client_cert),
    VOPT("client_key", OPT_FILE, client_key),
    VOPT("tls_server_name", OPT_HOSTNAME, tls_server_name),
    VOPT("skip_verify", OPT_BOOL, skip_verify),
    VOPT("namespace", OPT_PATH_OR_EMPTY, namespace_),
    VOPT("auth", OPT_AUTH, auth),
    VOPT("token", OPT_SECRET, token),
    VOPT("token_file", OPT_FILE, token_file),
    VOPT("auth_mount", OPT_PATH, auth_mount),
    VOPT("role_id", OPT_STRING, role_id),
    VOPT("secret_id", OPT_SECRET, secret_id),
    VOPT("secret_id_file", OPT_FILE, secret_id_file),
    VOPT("role", OPT_STRING, role),
    VOPT("jwt_file", OPT_FILE, jwt_file),
    VOPT("timeout", OPT_DURATION, timeout_ms),
    VOPT("connect_timeout", OPT_DURATION, connect_timeout_ms),
};

/* clang-format off */
#define SOPT(n, t, f) {n, t, offsetof(struct vtp_slot_conf, f)}
/* clang-format on */
static const struct opt slot_opts[] = {
    SOPT("mount", OPT_PATH, mount),
    SOPT("key_prefix", OPT_KEY_PREFIX, key_prefix),
    SOPT("kv_mount", OPT_PATH_OR_EMPTY, kv_mount),
    SOPT("kv_prefix", OPT_PATH_OR_EMPTY, kv_prefix),
    SOPT("label", OPT_LABEL, label),
    SOPT("namespace", OPT_PATH_OR_EMPTY, namespace_),
    SOPT("allow_destroy", OPT_BOOL, allow_destroy),
    SOPT("cache_ttl", OPT_DURATION, cache_ttl_ms),
    SOPT("certificates", OPT_STRING, certificates),
};

static const struct opt module_opts[] = {
    {"log_errors", OPT_SINK, offsetof(struct vtp_config, log_errors)},
    {"batching", OPT_BOOL, offsetof(struct vtp_config, batching)},
    {"batch_max_items", OPT_COUNT, offsetof(struct vtp_config, batch_max_items)},
    {"batch_concurrency", OPT_COUNT, offsetof(struct vtp_config, batch_concurrency)},
    {"batch_rsa", OPT_BOOL, offsetof(struct vtp_config, batch_rsa)},
    {"cache_dir", OPT_FILE, offsetof(struct vtp_config, cache_dir)},
};

/* Bits of seen[] are indexes into the option tables above. */
_Static_assert(VTP_ARRAY_SIZE(vault_opts) <= 32, "seen mask too small");

struct parse_ctx {
    struct vtp_config *cfg;
    const char *file;   /* for messages */
    int *key_lines;     /* line number of the n-th "key = value" line */
    size_t n_key_lines; /* as counted by the scan */
    size_t next_key;    /* handler calls so far */
    uint32_t vault_seen, module_seen, slot_seen[VTP_MAX_SLOTS];
    bool has_secret; /* token or secret_id given in the file */
    CK_RV rv;        /* first error */
};

/* --- small parsers ------------------------------------------------------------------------ */

bool vtp_config_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1", "t", "y"};
    static const char *const no[] = {"false", "no", "off", "0", "f", "n"};
    size_t i;

    if (s == NULL || out == NULL)
        return false;
    for (i = 0; i < VTP_ARRAY_SIZE(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* A whole number followed by nothing (seconds) or one of ms, s, m, h. */
bool vtp_config_parse_duration_ms(const char *s, long *out)
{
    unsigned long long v = 0;
    long factor;
    const char *p = s;

    if (s == NULL || out == NULL || !isdigit((unsigned char)*p))
        return false;
    while (isdigit((unsigned char)*p)) {
        v = v * 10 + (unsigned long long)(*p - '0');
        if (v > (unsigned long long)LONG_MAX)
            return false;
        p++;
    }
    if (*p == '\0' || strcmp(p, "s") == 0)
        factor = 1000;
    else if (strcmp(p, "ms") == 0)
        factor = 1;
    else if (strcmp(p, "m") == 0)
        factor = 60L * 1000;
    else if (strcmp(p, "h") == 0)
        factor = 3600L * 1000;
    else
        return false;
    if (v > (unsigned long long)(LONG_MAX / factor))
        return false;
    *out = (long)v * factor;
    return true;
}

static bool has_control_chars(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    }
    return false;
}

/* Control characters other than tab. */
static bool has_bad_control_chars(const char *s)
{
    for (; *s != '\0'; s++) {
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
            return true;
    }
    return false;
}

static bool has_blanks(const char *s)
{
    for (; *s != '\0'; s++) {
        if (isspace((unsigned char)*s))
            return true;
    }
    return false;
}

static bool is_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.';
}

/* A Vault path: one or more segments of [A-Za-z0-9_.-], separated by single '/', none of them
 * "." or "..". The caller has stripped trailing slashes. */
static bool is_vault_path(const char *s)
{
    const char *seg = s, *p;

    if (*s == '\0' || strlen(s) > CFG_MAX_PATH_VALUE)
        return false;
    for (p = s;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t n = (size_t)(p - seg);
            if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
                return false;
            if (*p == '\0')
                return true;
            seg = p + 1;
        } else if (!is_name_char(*p)) {
            return false;
        }
    }
}

/* Transit key names: [A-Za-z0-9_.@-]. */
static bool is_key_prefix(const char *s)
{
    if (strlen(s) > 64)
        return false;
    for (; *s != '\0'; s++) {
        if (!is_name_char(*s) && *s != '@')
            return false;
    }
    return true;
}

static bool is_slot_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > CFG_MAX_SLOT_NAME)
        return false;
    for (; *s != '\0'; s++) {
        if (!is_name_char(*s))
            return false;
    }
    return true;
}

static void strip_trailing_slashes(char *s)
{
    size_t n = strlen(s);

    while (n > 0 && s[n - 1] == '/')
        s[--n] = '\0';
}

/* http:// or https://, a host, no blanks; trailing '/' removed. Returns a malloc'ed copy, or
 * NULL with *rv set (CKR_ARGUMENTS_BAD or CKR_HOST_MEMORY). */
static char *normalize_address(const char *s, size_t len, CK_RV *rv)
{
    char *a;
    size_t scheme;

    *rv = CKR_ARGUMENTS_BAD;
    a = strndup(s, len);
    if (a == NULL) {
        *rv = CKR_HOST_MEMORY;
        return NULL;
    }
    strip_trailing_slashes(a);
    if (strncmp(a, "https://", 8) == 0)
        scheme = 8;
    else if (strncmp(a, "http://", 7) == 0)
        scheme = 7;
    else
        goto bad;
    if (a[scheme] == '\0' || a[scheme] == '/' || has_blanks(a) || has_control_chars(a) ||
        strlen(a) > 512)
        goto bad;
    *rv = CKR_OK;
    return a;

bad:
    free(a);
    return NULL;
}

/* --- errors ------------------------------------------------------------------------------- */

static void ctx_error(struct parse_ctx *ctx, CK_RV rv, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void ctx_error(struct parse_ctx *ctx, CK_RV rv, int line, const char *fmt, ...)
{
    char msg[CFG_MAX_ERROR];
    va_list ap;

    if (ctx->rv != CKR_OK)
        return; /* the first error is the one reported */
    ctx->rv = rv;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (line > 0)
        VTP_LOG_ERR("%s:%d: %s (%s)", ctx->file, line, msg, vtp_rv_name(rv));
    else
        VTP_LOG_ERR("%s: %s (%s)", ctx->file, msg, vtp_rv_name(rv));
}

/* --- sections ----------------------------------------------------------------------------- */

/* "vault", "module" or "slot NAME" (blanks around NAME allowed). */
static enum section_kind classify_section(const char *section, const char **name, size_t *name_len)
{
    const char *p, *end;

    if (strcmp(section, "vault") == 0)
        return SECTION_VAULT;
    if (strcmp(section, "module") == 0)
        return SECTION_MODULE;
    if (strncmp(section, "slot", 4) != 0 || !isspace((unsigned char)section[4]))
        return SECTION_NONE;
    p = section + 4;
    while (isspace((unsigned char)*p))
        p++;
    end = p + strlen(p);
    while (end > p && isspace((unsigned char)end[-1]))
        end--;
    *name = p;
    *name_len = (size_t)(end - p);
    return SECTION_SLOT;
}

static struct vtp_slot_conf *find_slot(struct vtp_config *cfg, const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < cfg->n_slots; i++) {
        if (strlen(cfg->slots[i].name) == len && memcmp(cfg->slots[i].name, name, len) == 0)
            return &cfg->slots[i];
    }
    return NULL;
}

static CK_RV slot_init(struct vtp_slot_conf *slot, const char *name, size_t len)
{
    memset(slot, 0, sizeof(*slot));
    slot->name = strndup(name, len);
    if (slot->name == NULL)
        return CKR_HOST_MEMORY;
    slot->allow_destroy = true;
    slot->cache_ttl_ms = CFG_DEFAULT_CACHE_TTL_MS;
    return CKR_OK;
}

/* --- the line scan ------------------------------------------------------------------------ */

/* The header line (blanks already skipped) "[...]": validates it, creates a slot, and checks
 * that no section appears twice. */
static void scan_section(struct parse_ctx *ctx, char *line, int lineno, uint32_t *seen_fixed)
{
    struct vtp_config *cfg = ctx->cfg;
    const char *name = NULL;
    size_t name_len = 0;
    char *close = strchr(line, ']'), *rest;
    enum section_kind kind;
    CK_RV rv;

    if (close == NULL) {
        ctx_error(ctx, CKR_ARGUMENTS_BAD, lineno, "section header without ']'");
        return;
    }
    for (rest = close + 1; isspace((unsigned char)*rest); rest++)
        ;
    if (*rest != '\0' && *rest != ';' && *rest != '#') {
        ctx_error(ctx, CKR_ARGUMENTS_BAD, lineno, "text after section header");
        return;
    }
    *close = '\0';
    kind = classify_section(line + 1, &name, &name_len);
    *close = ']';
    switch (kind) {
    case SECTION_VAULT:
    case SECTION_MODULE:
        if (*seen_fixed & (1u << kind)) {
            ctx_error(ctx, CKR_ARGUMENTS_BAD, lineno, "section %.*s given twice",
                      (int)(close - line + 1), line);
            return;
        }
        *seen_fixed |= 1u << kind;
        return;
    case SECTION_SLOT:
        if (name_len == 0 || name_len > CFG_MAX_SLOT_NAME) {
            ctx_error(ctx, CKR_ARGUMENTS_BAD, lineno,
                      "slot name must be 1 to %d characters of A-Z a-z 0-9 _ . -",
                      CFG_MAX_SLOT_NAME);
            return;
        }
        if (find_slot(cfg, name, name_len) != NULL) {
            ctx_error(ctx, CKR_ARGUMENTS_BAD, lineno, "slot %.*s given twice", (int)name_len, name);
            return;
        }
        if (cfg->n_slots >= VTP_MAX_SLOTS) {
            ctx_error(ctx, CKR_ARGUMENTS_BAD, lineno, "more than %d slots", VTP_MAX_SLOTS);
            return;
        }
        rv = slot_init(&cfg->slots[cfg->n_slots], name, name_len);
        if (rv != CKR_OK) {
            ctx_error(ctx, rv, lineno, "out of memory");
            return;
        }
        cfg->n_slots++;
        if (!is_slot_name(cfg->slots[cfg->n_slots - 1].name))
            ctx_error(ctx, CKR_ARGUMENTS_BAD, lineno,
                      "slot name must be 1 to %d characters of A-Z a-z 0-9 _ . -",
                      CFG_MAX_SLOT_NAME);
        return;
    case SECTION_NONE:
    default:
        ctx_error(ctx, CKR_ARGUMENTS_BAD, lineno,
                  "unknown section %.*s (expected [vault], [module] or [slot NAME])",
                  (int)(close - line + 1 > 60 ? 60 : close - line + 1), line);
        return;
    }
}

/* libinih's rule for "name = value" lines: a '=' or ':' before any inline comment (a ';' that
 * follows a blank). */
static bool has_separator(const char *s)
{
    bool was_space = false;

    for (; *s != '\0'; s++) {
        if (*s == '=' || *s == ':')
            return true;
        if (*s == ';' && was_space)
            return false;
        was_space = isspace((unsigned char)*s);
    }
    return false;
}

/* Copies text into a buffer libinih will parse, line for line, without leading blanks;
 * numbers the key lines; handles sections. Returns the buffer or NULL (ctx->rv set). */
static char *scan_text(struct parse_ctx *ctx, const char *text)
{
    size_t len = strlen(text), o = 0, cap_keys = 0;
    const char *p = text;
    uint32_t seen_fixed = 0;
    char *norm;
    int lineno = 0;

    /* A UTF-8 byte order mark is tolerated, as libinih does. */
    if (strncmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    norm = malloc(len + 2);
    if (norm == NULL) {
        ctx_error(ctx, CKR_HOST_MEMORY, 0, "out of memory");
        return NULL;
    }

    while (*p != '\0' && ctx->rv == CKR_OK) {
        const char *eol = strchr(p, '\n');
        size_t n = eol != NULL ? (size_t)(eol - p) : strlen(p);
        const char *next = p + n + (eol != NULL ? 1 : 0);
        char *line = norm + o;

        lineno++;
        while (n > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            n--;
        }
        if (n > 0 && p[n - 1] == '\r')
            n--;
        memcpy(line, p, n);
        line[n] = '\0';
        if (n > CFG_MAX_LINE) {
            ctx_error(ctx, CKR_ARGUMENTS_BAD, lineno, "line longer than %d characters",
                      CFG_MAX_LINE);
        } else if (has_bad_control_chars(line)) {
            ctx_error(ctx, CKR_ARGUMENTS_BAD, lineno, "control character in line");
        } else if (n == 0 || line[0] == ';' || line[0] == '#') {
            /* blank or comment */
        } else if (line[0] == '[') {
            scan_section(ctx, line, lineno, &seen_fixed);
        } else if (!has_separator(line)) {
            ctx_error(ctx, CKR_ARGUMENTS_BAD, lineno, "expected 'key = value'");
        } else {
            if (ctx->n_key_lines == cap_keys) {
                size_t cap = cap_keys == 0 ? 32 : cap_keys * 2;
                int *k = realloc(ctx->key_lines, cap * sizeof(*k));
                if (k == NULL) {
                    ctx_error(ctx, CKR_HOST_MEMORY, 0, "out of memory");
                    break;
                }
                ctx->key_lines = k;
                cap_keys = cap;
            }
            ctx->key_lines[ctx->n_key_lines++] = lineno;
        }
        o += n;
        norm[o++] = '\n';
        p = next;
    }
    norm[o] = '\0';

    if (ctx->rv != CKR_OK) {
        OPENSSL_cleanse(norm, len + 2);
        free(norm);
        return NULL;
    }
    return norm;
}

/* --- the handler -------------------------------------------------------------------------- */

static CK_RV set_string(char **field, const char *value, bool secret)
{
    char *copy = NULL;

    if (*value != '\0') {
        copy = strdup(value);
        if (copy == NULL)
            return CKR_HOST_MEMORY;
    }
    if (secret)
        vtp_free_secret(*field);
    else
        free(*field);
    *field = copy;
    return CKR_OK;
}

static CK_RV set_addresses(struct parse_ctx *ctx, int lineno, const char *value)
{
    struct vtp_vault_conf *v = &ctx->cfg->vault;
    char *list[VTP_MAX_ADDRESSES];
    size_t n = 0, i;
    const char *p = value;
    CK_RV rv = CKR_OK;

    while (rv == CKR_OK) {
        const char *end = strchr(p, ','), *s = p, *e;
        e = end != NULL ? end : p + strlen(p);
        while (s < e && isspace((unsigned char)*s))
            s++;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        if (n == VTP_MAX_ADDRESSES) {
            ctx_error(ctx, CKR_ARGUMENTS_BAD, lineno, "address: more than %d addresses",
                      VTP_MAX_ADDRESSES);
            rv = CKR_ARGUMENTS_BAD;
            break;
        }
        list[n] = normalize_address(s, (size_t)(e - s), &rv);
        if (list[n] == NULL) {
            if (rv == CKR_HOST_MEMORY)
                ctx_error(ctx, rv, lineno, "out of memory");
            else
                ctx_error(ctx, rv, lineno, "address: '%.*s' is not an http:// or https:// URL",
                          (int)(e - s), s);
            break;
        }
        n++;
        if (end == NULL)
            break;
        p = end + 1;
    }
    if (rv != CKR_OK) {
        for (i = 0; i < n; i++)
            free(list[i]);
        return rv;
    }
    for (i = 0; i < v->n_addresses; i++) {
        free(v->addresses[i]);
        v->addresses[i] = NULL;
    }
    for (i = 0; i < n; i++)
        v->addresses[i] = list[i];
    v->n_addresses = n;
    return CKR_OK;
}

static bool parse_auth(const char *s, enum vtp_auth_method *out)
{
    static const struct {
        const char *name;
        enum vtp_auth_method method;
    } methods[] = {
        {"token", VTP_AUTH_TOKEN},     {"token_file", VTP_AUTH_TOKEN_FILE}, {"pin", VTP_AUTH_PIN},
        {"approle", VTP_AUTH_APPROLE}, {"kubernetes", VTP_AUTH_KUBERNETES}, {"cert", VTP_AUTH_CERT},
    };
    size_t i;

    for (i = 0; i < VTP_ARRAY_SIZE(methods); i++) {
        if (strcmp(s, methods[i].name) == 0) {
            *out = methods[i].method;
            return true;
        }
    }
    return false;
}

/* Sets one option of base (a struct vtp_vault_conf, vtp_slot_conf or vtp_config). */
static CK_RV set_option(struct parse_ctx *ctx, int lineno, const char *section,
                        const struct opt *opt, void *base, const char *value)
{
    char *field_str, **field = (char **)((char *)base + opt->offset);
    const char *name = opt->name;
    CK_RV rv = CKR_OK;
    bool b;
    long ms;

    switch (opt->type) {
    case OPT_SECRET:
        if (*value != '\0')
            ctx->has_secret = true;
        rv = set_string(field, value, true);
        break;
    case OPT_STRING:
    case OPT_FILE:
        rv = set_string(field, value, false);
        break;
    case OPT_HOSTNAME:
        if (has_blanks(value))
            goto bad_value;
        rv = set_string(field, value, false);
        break;
    case OPT_PATH:
    case OPT_PATH_OR_EMPTY:
    case OPT_KEY_PREFIX:
        field_str = strdup(value);
        if (field_str == NULL) {
            rv = CKR_HOST_MEMORY;
            break;
        }
        if (opt->type != OPT_KEY_PREFIX)
            strip_trailing_slashes(field_str);
        if ((opt->type == OPT_KEY_PREFIX && !is_key_prefix(field_str)) ||
            (opt->type == OPT_PATH && !is_vault_path(field_str)) ||
            (opt->type == OPT_PATH_OR_EMPTY && *field_str != '\0' && !is_vault_path(field_str))) {
            free(field_str);
            goto bad_value;
        }
        /* kv_mount and namespace: empty means none; kv_prefix and key_prefix keep "". */
        if (*field_str == '\0' && opt->type == OPT_PATH_OR_EMPTY &&
            strcmp(name, "kv_prefix") != 0) {
            free(field_str);
            field_str = NULL;
        }
        free(*field);
        *field = field_str;
        break;
    case OPT_LABEL:
        if (strlen(value) > CFG_MAX_LABEL) {
            ctx_error(ctx, CKR_ARGUMENTS_BAD, lineno, "[%s] %s: longer than %d characters", section,
                      name, CFG_MAX_LABEL);
            return CKR_ARGUMENTS_BAD;
        }
        if (*value == '\0' || has_control_chars(value))
            goto bad_value;
        rv = set_string(field, value, false);
        break;
    case OPT_BOOL:
        if (!vtp_config_parse_bool(value, &b))
            goto bad_value;
        *(bool *)((char *)base + opt->offset) = b;
        break;
    case OPT_DURATION:
        if (!vtp_config_parse_duration_ms(value, &ms))
            goto bad_value;
        if (ms == 0) {
            ctx_error(ctx, CKR_ARGUMENTS_BAD, lineno, "[%s] %s: must be greater than zero", section,
                      name);
            return CKR_ARGUMENTS_BAD;
        }
        *(long *)((char *)base + opt->offset) = ms;
        break;
    case OPT_COUNT: {
        char *end = NULL;
        long n = strtol(value, &end, 10);
        long max = strcmp(name, "batch_max_items") == 0 ? VTP_MAX_BATCH_ITEMS : 1024;
        if (end == value || *end != '\0' || n < 1 || n > max) {
            ctx_error(ctx, CKR_ARGUMENTS_BAD, lineno, "[%s] %s: a number from 1 to %ld", section,
                      name, max);
            return CKR_ARGUMENTS_BAD;
        }
        *(long *)((char *)base + opt->offset) = n;
        break;
    }
    case OPT_ADDRESSES:
        return set_addresses(ctx, lineno, value);
    case OPT_AUTH:
        if (!parse_auth(value, (enum vtp_auth_method *)((char *)base + opt->offset)))
            goto bad_value;
        break;
    case OPT_SINK:
        if (strcmp(value, "none") == 0 || *value == '\0') {
            free(*field);
            *field = NULL;
        } else if (strcmp(value, "stderr") == 0 || strcmp(value, "syslog") == 0) {
            rv = set_string(field, value, false);
        } else {
            goto bad_value;
        }
        break;
    }
    if (rv != CKR_OK)
        ctx_error(ctx, rv, lineno, "out of memory");
    return rv;

bad_value:
    ctx_error(ctx, CKR_ARGUMENTS_BAD, lineno, "[%s] %s: invalid value '%.64s'", section, name,
              value);
    return CKR_ARGUMENTS_BAD;
}

static int ini_handler_cb(void *user, const char *section, const char *name, const char *value)
{
    struct parse_ctx *ctx = user;
    struct vtp_config *cfg = ctx->cfg;
    const struct opt *opts;
    size_t n_opts, i, slot_name_len = 0;
    const char *slot_name = NULL;
    struct vtp_slot_conf *slot = NULL;
    uint32_t *seen;
    void *base;
    int lineno = 0;

    if (ctx->next_key < ctx->n_key_lines)
        lineno = ctx->key_lines[ctx->next_key];
    ctx->next_key++;
    if (ctx->rv != CKR_OK)
        return 0;

    switch (classify_section(section, &slot_name, &slot_name_len)) {
    case SECTION_VAULT:
        opts = vault_opts;
        n_opts = VTP_ARRAY_SIZE(vault_opts);
        base = &cfg->vault;
        seen = &ctx->vault_seen;
        break;
    case SECTION_MODULE:
        opts = module_opts;
        n_opts = VTP_ARRAY_SIZE(module_opts);
        base = cfg;
        seen = &ctx->module_seen;
        break;
    case SECTION_SLOT:
        slot = find_slot(cfg, slot_name, slot_name_len);
        if (slot == NULL) {
            /* the section line was not taken as this slot (inih cuts long section names) */
            ctx_error(ctx, CKR_ARGUMENTS_BAD, lineno, "[%s]: not a slot section that was read",
                      section);
            return 0;
        }
        opts = slot_opts;
        n_opts = VTP_ARRAY_SIZE(slot_opts);
        base = slot;
        seen = &ctx->slot_seen[slot - cfg->slots];
        break;
    case SECTION_NONE:
    default:
        ctx_error(ctx, CKR_ARGUMENTS_BAD, lineno,
                  "key '%.64s' outside of a section ([vault], [module] or [slot NAME])", name);
        return 0;
    }

    for (i = 0; i < n_opts; i++) {
        if (strcmp(name, opts[i].name) == 0)
            break;
    }
    if (i == n_opts) {
        ctx_error(ctx, CKR_ARGUMENTS_BAD, lineno, "unknown key '%.64s' in [%s]", name, section);
        return 0;
    }
    if (*seen & (1u << i)) {
        ctx_error(ctx, CKR_ARGUMENTS_BAD, lineno, "key '%s' given twice in [%s]", name, section);
        return 0;
    }
    *seen |= 1u << i;
    return set_option(ctx, lineno, section, &opts[i], base, value) == CKR_OK ? 1 : 0;
}

/* --- whole-config steps ------------------------------------------------------------------- */

static CK_RV config_new(struct vtp_config **out)
{
    struct vtp_config *cfg = calloc(1, sizeof(*cfg));

    if (cfg == NULL)
        return CKR_HOST_MEMORY;
    cfg->vault.auth = VTP_AUTH_TOKEN;
    cfg->vault.timeout_ms = CFG_DEFAULT_TIMEOUT_MS;
    cfg->batching = true;
    cfg->batch_max_items = 200;
    cfg->batch_concurrency = 2;
    cfg->batch_rsa = true;
    cfg->vault.connect_timeout_ms = CFG_DEFAULT_CONNECT_TIMEOUT_MS;
    *out = cfg;
    return CKR_OK;
}

static CK_RV config_parse_text(struct vtp_config *cfg, const char *file, const char *text,
                               bool *has_secret)
{
    struct parse_ctx ctx;
    char *norm = NULL;
    int rc;
    CK_RV rv;

    memset(&ctx, 0, sizeof(ctx));
    ctx.cfg = cfg;
    ctx.file = file;
    ctx.rv = CKR_OK;

    norm = scan_text(&ctx, text);
    if (norm == NULL) {
        rv = ctx.rv;
        goto out;
    }
    rc = ini_parse_string(norm, ini_handler_cb, &ctx);
    if (ctx.rv != CKR_OK) {
        rv = ctx.rv;
        goto out;
    }
    if (rc < 0) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    if (rc > 0) {
        /* The scan accepts only what libinih accepts; this is a safety net. */
        ctx_error(&ctx, CKR_ARGUMENTS_BAD, rc, "syntax error");
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    *has_secret = ctx.has_secret;
    rv = CKR_OK;

out:
    if (norm != NULL) {
        OPENSSL_cleanse(norm, strlen(norm));
        free(norm);
    }
    free(ctx.key_lines);
    return rv;
}

const struct vtp_config_env vtp_config_env_vars[] = {
    {"VAULT_ADDR", false},
    {"VAULT_TOKEN", true},
    {"VAULT_CACERT", false},
    {"VAULT_CAPATH", false},
    {"VAULT_CLIENT_CERT", false},
    {"VAULT_CLIENT_KEY", false},
    {"VAULT_TLS_SERVER_NAME", false},
    {"VAULT_NAMESPACE", false},
    {"VAULT_SKIP_VERIFY", false},
    {NULL, false},
};

static const char *env_value(const char *name)
{
    const char *v = getenv(name);

    return v != NULL && *v != '\0' ? v : NULL;
}

/* Vault CLI precedence: a non-empty VAULT_* variable overrides the file's [vault] setting. */
static CK_RV config_apply_env(struct vtp_config *cfg)
{
    static const struct {
        const char *env;
        size_t offset;
    } strings[] = {
        {"VAULT_CACERT", offsetof(struct vtp_vault_conf, ca_cert)},
        {"VAULT_CAPATH", offsetof(struct vtp_vault_conf, ca_path)},
        {"VAULT_CLIENT_CERT", offsetof(struct vtp_vault_conf, client_cert)},
        {"VAULT_CLIENT_KEY", offsetof(struct vtp_vault_conf, client_key)},
        {"VAULT_TLS_SERVER_NAME", offsetof(struct vtp_vault_conf, tls_server_name)},
    };
    struct vtp_vault_conf *v = &cfg->vault;
    const char *val;
    char *addr = NULL, *ns = NULL;
    size_t i;
    bool b;
    CK_RV rv = CKR_OK;

    val = env_value("VAULT_ADDR");
    if (val != NULL) {
        addr = normalize_address(val, strlen(val), &rv);
        if (addr == NULL) {
            if (rv != CKR_HOST_MEMORY)
                VTP_LOG_ERR("VAULT_ADDR is not an http:// or https:// URL: '%.64s'", val);
            goto out;
        }
        for (i = 0; i < v->n_addresses; i++) {
            free(v->addresses[i]);
            v->addresses[i] = NULL;
        }
        v->addresses[0] = addr;
        v->n_addresses = 1;
    }

    val = env_value("VAULT_TOKEN");
    if (val != NULL) {
        rv = set_string(&v->token, val, true);
        if (rv != CKR_OK)
            goto out;
    }

    for (i = 0; i < VTP_ARRAY_SIZE(strings); i++) {
        val = env_value(strings[i].env);
        if (val == NULL)
            continue;
        if (i == VTP_ARRAY_SIZE(strings) - 1 && has_blanks(val)) {
            VTP_LOG_ERR("%s: invalid value '%.64s'", strings[i].env, val);
            rv = CKR_ARGUMENTS_BAD;
            goto out;
        }
        rv = set_string((char **)((char *)v + strings[i].offset), val, false);
        if (rv != CKR_OK)
            goto out;
    }

    val = env_value("VAULT_NAMESPACE");
    if (val != NULL) {
        ns = strdup(val);
        if (ns == NULL) {
            rv = CKR_HOST_MEMORY;
            goto out;
        }
        strip_trailing_slashes(ns);
        if (*ns != '\0' && !is_vault_path(ns)) {
            VTP_LOG_ERR("VAULT_NAMESPACE: invalid value '%.64s'", val);
            free(ns);
            rv = CKR_ARGUMENTS_BAD;
            goto out;
        }
        free(v->namespace_);
        v->namespace_ = *ns != '\0' ? ns : NULL;
        if (v->namespace_ == NULL)
            free(ns);
    }

    val = env_value("VAULT_SKIP_VERIFY");
    if (val != NULL) {
        if (!vtp_config_parse_bool(val, &b)) {
            VTP_LOG_ERR("VAULT_SKIP_VERIFY: invalid value '%.64s'", val);
            rv = CKR_ARGUMENTS_BAD;
            goto out;
        }
        v->skip_verify = b;
    }

out:
    return rv;
}

/* A [slot NAME]'s default token label: "Vault Transit NAME", or NAME alone when that does not
 * fit the label's 32 bytes. Slot names are unique and have no spaces, so no two defaults are
 * the same (the mount is not used: slots on one mount would share their label). */
static char *default_label(const char *name)
{
    char label[CFG_MAX_LABEL + 1];

    if (strlen(CFG_DEFAULT_LABEL_PREFIX) + strlen(name) > CFG_MAX_LABEL)
        return strdup(name);
    snprintf(label, sizeof(label), "%s%s", CFG_DEFAULT_LABEL_PREFIX, name);
    return strdup(label);
}

/* Two tokens with one label: pkcs11:token=LABEL matches both, and clients take the first. */
static void warn_same_labels(const struct vtp_config *cfg)
{
    for (size_t i = 0; i < cfg->n_slots; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->slots[i].label, cfg->slots[j].label) == 0)
                VTP_LOG_WARN("slots %s and %s have the same token label \"%s\": a "
                             "pkcs11:token= URI or --token-label matches both",
                             cfg->slots[j].name, cfg->slots[i].name, cfg->slots[i].label);
}

/* Defaults that depend on other settings, and checks across options. */
static CK_RV config_finish(struct vtp_config *cfg, const char *file)
{
    struct vtp_vault_conf *v = &cfg->vault;
    const char *need = NULL, *method = NULL, *default_mount = NULL;
    size_t i;

    if (v->n_addresses == 0) {
        v->addresses[0] = strdup(CFG_DEFAULT_ADDRESS);
        if (v->addresses[0] == NULL)
            return CKR_HOST_MEMORY;
        v->n_addresses = 1;
    }
    if (v->timeout_ms <= 0 || v->connect_timeout_ms <= 0) {
        VTP_LOG_ERR("%s: [vault] %s must be greater than zero", file,
                    v->timeout_ms <= 0 ? "timeout" : "connect_timeout");
        return CKR_ARGUMENTS_BAD;
    }

    switch (v->auth) {
    case VTP_AUTH_TOKEN_FILE:
        method = "token_file";
        if (v->token_file == NULL)
            need = "token_file";
        break;
    case VTP_AUTH_APPROLE:
        method = "approle";
        default_mount = "approle";
        if (v->role_id == NULL)
            need = "role_id";
        else if (v->secret_id != NULL && v->secret_id_file != NULL)
            need = "only one of secret_id and secret_id_file";
        break;
    case VTP_AUTH_KUBERNETES:
        method = "kubernetes";
        default_mount = "kubernetes";
        if (v->role == NULL)
            need = "role";
        break;
    case VTP_AUTH_CERT:
        method = "cert";
        default_mount = "cert";
        if (v->client_cert == NULL || v->client_key == NULL)
            need = "client_cert and client_key";
        break;
    case VTP_AUTH_TOKEN:
    case VTP_AUTH_PIN:
    default:
        /* A missing token is reported by the first request, not here. */
        break;
    }
    if (need != NULL) {
        VTP_LOG_ERR("%s: [vault] auth = %s needs %s", file, method, need);
        return CKR_ARGUMENTS_BAD;
    }
    if (default_mount != NULL && v->auth_mount == NULL) {
        v->auth_mount = strdup(default_mount);
        if (v->auth_mount == NULL)
            return CKR_HOST_MEMORY;
    }
    if (v->auth == VTP_AUTH_KUBERNETES && v->jwt_file == NULL) {
        v->jwt_file = strdup(CFG_DEFAULT_JWT_FILE);
        if (v->jwt_file == NULL)
            return CKR_HOST_MEMORY;
    }

    if (cfg->n_slots == 0) {
        /* No [slot] section (no file at all, for instance): one slot over mount transit that
         * keeps IDs, labels and certificates in KV v2 secret/ when the token can. */
        if (slot_init(&cfg->slots[0], "default", strlen("default")) != CKR_OK ||
            (cfg->slots[0].kv_mount = strdup(CFG_AUTO_KV_MOUNT)) == NULL ||
            (cfg->slots[0].label = strdup(CFG_DEFAULT_LABEL_PREFIX CFG_DEFAULT_MOUNT)) == NULL)
            return CKR_HOST_MEMORY;
        cfg->slots[0].kv_auto = true;
        cfg->n_slots = 1;
    }
    for (i = 0; i < cfg->n_slots; i++) {
        struct vtp_slot_conf *s = &cfg->slots[i];
        if (s->mount == NULL && (s->mount = strdup(CFG_DEFAULT_MOUNT)) == NULL)
            return CKR_HOST_MEMORY;
        if (s->kv_mount != NULL && strcmp(s->kv_mount, "auto") == 0) {
            free(s->kv_mount);
            if ((s->kv_mount = strdup(CFG_AUTO_KV_MOUNT)) == NULL)
                return CKR_HOST_MEMORY;
            s->kv_auto = true;
        }
        if (s->key_prefix == NULL && (s->key_prefix = strdup("")) == NULL)
            return CKR_HOST_MEMORY;
        if (s->kv_prefix == NULL && (s->kv_prefix = strdup(CFG_DEFAULT_KV_PREFIX)) == NULL)
            return CKR_HOST_MEMORY;
        if (s->label == NULL && (s->label = default_label(s->name)) == NULL)
            return CKR_HOST_MEMORY;
    }
    warn_same_labels(cfg);
    return CKR_OK;
}

static CK_RV read_file(const char *path, int fd, char **out, struct stat *st)
{
    char *buf = NULL;
    size_t len = 0;
    CK_RV rv = CKR_GENERAL_ERROR;

    if (fstat(fd, st) != 0) {
        VTP_LOG_ERR("%s: cannot stat: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st->st_mode)) {
        VTP_LOG_ERR("%s: not a regular file", path);
        goto out;
    }
    if (st->st_size > CFG_MAX_FILE_SIZE) {
        VTP_LOG_ERR("%s: larger than %ld bytes", path, CFG_MAX_FILE_SIZE);
        goto out;
    }
    buf = malloc((size_t)CFG_MAX_FILE_SIZE + 1);
    if (buf == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, (size_t)CFG_MAX_FILE_SIZE + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            VTP_LOG_ERR("%s: cannot read: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > (size_t)CFG_MAX_FILE_SIZE) {
            VTP_LOG_ERR("%s: larger than %ld bytes", path, CFG_MAX_FILE_SIZE);
            goto out;
        }
    }
    if (memchr(buf, '\0', len) != NULL) {
        VTP_LOG_ERR("%s: contains a NUL byte", path);
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    buf[len] = '\0';
    *out = buf;
    buf = NULL;
    rv = CKR_OK;

out:
    if (buf != NULL) {
        OPENSSL_cleanse(buf, len);
        free(buf);
    }
    return rv;
}

/* --- public ------------------------------------------------------------------------------- */

char *vtp_config_locate_reserved(const char *reserved)
{
    static const char seps[] = " \t\r\n,;";
    const char *p = reserved;

    while (p != NULL && *p != '\0') {
        size_t n;
        p += strspn(p, seps);
        n = strcspn(p, seps);
        if (n > 7 && strncmp(p, "config=", 7) == 0)
            return strndup(p + 7, n - 7);
        p += n;
    }
    return NULL;
}

char *vtp_config_locate_source(const char *reserved, enum vtp_config_source *source)
{
    char *path = vtp_config_locate_reserved(reserved);
    const char *env;

    *source = VTP_CONFIG_FROM_RESERVED;
    if (path != NULL)
        return path;
    env = env_value(VTP_CONFIG_ENV);
    *source = VTP_CONFIG_FROM_ENV;
    if (env != NULL)
        return strdup(env);
    *source = VTP_CONFIG_FROM_DEFAULT;
    return strdup(VTP_DEFAULT_CONFIG_PATH);
}

char *vtp_config_locate(const char *reserved)
{
    enum vtp_config_source source;

    return vtp_config_locate_source(reserved, &source);
}

CK_RV vtp_config_parse_string(const char *text, bool apply_env, struct vtp_config **out)
{
    struct vtp_config *cfg = NULL;
    bool has_secret = false;
    CK_RV rv;

    VTP_RETURN_VAL_IF_FAIL(text != NULL, CKR_ARGUMENTS_BAD);
    VTP_RETURN_VAL_IF_FAIL(out != NULL, CKR_ARGUMENTS_BAD);

    rv = config_new(&cfg);
    if (rv != CKR_OK)
        goto out;
    rv = config_parse_text(cfg, "<string>", text, &has_secret);
    if (rv != CKR_OK)
        goto out;
    if (apply_env) {
        rv = config_apply_env(cfg);
        if (rv != CKR_OK)
            goto out;
    }
    rv = config_finish(cfg, "<string>");
    if (rv != CKR_OK)
        goto out;
    *out = cfg;
    cfg = NULL;

out:
    vtp_config_free(cfg);
    return rv;
}

CK_RV vtp_config_check_secret_mode(const char *path, unsigned long mode, const char *holds)
{
    if (mode & (S_IWGRP | S_IWOTH)) {
        VTP_LOG_ERR("%s: holds %s but group or others may write it (mode %03lo); refusing it "
                    "(chmod go-w)",
                    path, holds, mode & 0777);
        return CKR_GENERAL_ERROR;
    }
    if (mode & S_IROTH)
        VTP_LOG_WARN("%s: holds %s and is readable by others (mode %03lo; chmod o-r)", path, holds,
                     mode & 0777);
    return CKR_OK;
}

CK_RV vtp_config_load(const char *path, struct vtp_config **out)
{
    struct vtp_config *cfg = NULL;
    char *text = NULL;
    struct stat st;
    bool has_secret = false;
    int fd = -1;
    CK_RV rv;

    VTP_RETURN_VAL_IF_FAIL(out != NULL, CKR_ARGUMENTS_BAD);

    rv = config_new(&cfg);
    if (rv != CKR_OK)
        goto out;

    if (path != NULL) {
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0 && errno != ENOENT) {
            VTP_LOG_ERR("%s: cannot open: %s", path, strerror(errno));
            rv = CKR_GENERAL_ERROR;
            goto out;
        }
        if (fd < 0)
            VTP_LOG_INFO("%s: no such file; using defaults and environment", path);
    }
    if (fd >= 0) {
        rv = read_file(path, fd, &text, &st);
        if (rv != CKR_OK)
            goto out;
        cfg->path = strdup(path);
        if (cfg->path == NULL) {
            rv = CKR_HOST_MEMORY;
            goto out;
        }
        rv = config_parse_text(cfg, path, text, &has_secret);
        if (rv != CKR_OK)
            goto out;
        if (has_secret) {
            rv = vtp_config_check_secret_mode(path, st.st_mode, "a token or secret_id");
            if (rv != CKR_OK)
                goto out;
        }
    }

    rv = config_apply_env(cfg);
    if (rv != CKR_OK)
        goto out;
    rv = config_finish(cfg, path != NULL ? path : "<environment>");
    if (rv != CKR_OK)
        goto out;
    VTP_LOG_INFO("config %s: %zu address(es), first %s; %zu slot(s)",
                 cfg->path != NULL ? cfg->path : "(none)", cfg->vault.n_addresses,
                 cfg->vault.addresses[0], cfg->n_slots);
    *out = cfg;
    cfg = NULL;

out:
    if (fd >= 0)
        close(fd);
    if (text != NULL) {
        OPENSSL_cleanse(text, strlen(text));
        free(text);
    }
    vtp_config_free(cfg);
    return rv;
}

void vtp_config_free(struct vtp_config *cfg)
{
    struct vtp_vault_conf *v;
    size_t i;

    if (cfg == NULL)
        return;
    v = &cfg->vault;
    for (i = 0; i < VTP_MAX_ADDRESSES; i++)
        free(v->addresses[i]);
    free(v->ca_cert);
    free(v->ca_path);
    free(v->client_cert);
    free(v->client_key);
    free(v->tls_server_name);
    free(v->namespace_);
    vtp_free_secret(v->token);
    free(v->token_file);
    free(v->auth_mount);
    free(v->role_id);
    vtp_free_secret(v->secret_id);
    free(v->secret_id_file);
    free(v->role);
    free(v->jwt_file);
    for (i = 0; i < VTP_MAX_SLOTS; i++) {
        struct vtp_slot_conf *s = &cfg->slots[i];
        free(s->name);
        free(s->mount);
        free(s->key_prefix);
        free(s->kv_mount);
        free(s->kv_prefix);
        free(s->label);
        free(s->certificates);
        free(s->namespace_);
    }
    free(cfg->path);
    free(cfg->log_errors);
    free(cfg->cache_dir);
    free(cfg);
}
