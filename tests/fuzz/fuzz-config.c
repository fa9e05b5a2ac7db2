/* fuzz-config.c - the configuration parser (src/config.c).
 *
 * The input is a config file. Lines at its start of the form "@VAULT_ADDR=value" (any of
 * Vault's variables that config.c reads) set that environment variable for this input first.
 * The rest goes through:
 *  - vtp_config_parse_string (cut at the first NUL), with the environment applied when such
 *    lines were given;
 *  - vtp_config_load on a memfd holding the raw bytes (NULs included), mode 0600 or 0666 (an
 *    input of odd length), which also reads the file and checks its mode;
 *  - vtp_config_parse_duration_ms, vtp_config_parse_bool and vtp_config_locate_reserved on the
 *    same text.
 * Properties of a config that loads: at least one slot and at most VTP_MAX_SLOTS, one to
 * VTP_MAX_ADDRESSES addresses, positive timeouts, every slot's mount, key prefix, KV prefix and
 * label set, labels that fit CK_TOKEN_INFO's 32 bytes, batch limits in range; and the file and
 * the string parsers agree on text without NUL, environment and secrets. */
#define _GNU_SOURCE 1 /* memfd_create */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "fuzz.h"

static const char *const env_names[] = {
    "VAULT_ADDR",
    "VAULT_TOKEN",
    "VAULT_CACERT",
    "VAULT_CAPATH",
    "VAULT_CLIENT_CERT",
    "VAULT_CLIENT_KEY",
    "VAULT_NAMESPACE",
    "VAULT_SKIP_VERIFY",
    "VAULT_TLS_SERVER_NAME",
    "VAULT_TRANSIT_PKCS11_CONFIG",
};
#define N_ENV (sizeof(env_names) / sizeof(env_names[0]))

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    for (size_t i = 0; i < N_ENV; i++)
        unsetenv(env_names[i]);
    fuzz_setup_log();
    return 0;
}

static void check_config(const struct vtp_config *cfg)
{
    const struct vtp_vault_conf *v = &cfg->vault;

    FUZZ_CHECK(cfg->n_slots >= 1 && cfg->n_slots <= VTP_MAX_SLOTS, "%zu slots", cfg->n_slots);
    FUZZ_CHECK(v->n_addresses >= 1 && v->n_addresses <= VTP_MAX_ADDRESSES, "%zu addresses",
               v->n_addresses);
    for (size_t i = 0; i < v->n_addresses; i++)
        FUZZ_CHECK(v->addresses[i] != NULL && v->addresses[i][0] != '\0', "address %zu", i);
    FUZZ_CHECK(v->timeout_ms > 0 && v->connect_timeout_ms > 0, "timeouts %ld %ld", v->timeout_ms,
               v->connect_timeout_ms);
    FUZZ_CHECK(cfg->batch_max_items >= 1 && cfg->batch_max_items <= VTP_MAX_BATCH_ITEMS,
               "batch_max_items %ld", cfg->batch_max_items);
    FUZZ_CHECK(cfg->batch_concurrency >= 1, "batch_concurrency %ld", cfg->batch_concurrency);
    for (size_t i = 0; i < cfg->n_slots; i++) {
        const struct vtp_slot_conf *s = &cfg->slots[i];
        FUZZ_CHECK(s->name != NULL && s->mount != NULL && s->key_prefix != NULL &&
                       s->kv_prefix != NULL && s->label != NULL,
                   "slot %zu lacks a setting", i);
        FUZZ_CHECK(strlen(s->label) <= 32, "slot %zu label '%s' longer than 32 bytes", i, s->label);
        FUZZ_CHECK(s->cache_ttl_ms >= 0, "slot %zu cache_ttl %ld", i, s->cache_ttl_ms);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(cfg->slots[j].name, s->name) != 0, "slot name %s twice", s->name);
    }
}

/* vtp_config_load on a memfd with exactly these bytes. */
static CK_RV load_memfd(const uint8_t *data, size_t size, mode_t mode, struct vtp_config **out)
{
    char path[64];
    int fd = memfd_create("fuzz-config", MFD_CLOEXEC);
    CK_RV rv;

    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    if ((size > 0 && write(fd, data, size) != (ssize_t)size) || fchmod(fd, mode) != 0) {
        perror("memfd");
        abort();
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    rv = vtp_config_load(path, out);
    close(fd);
    return rv;
}

static void small_parsers(const char *text)
{
    long ms = -1;
    bool b;
    char *path;

    if (vtp_config_parse_duration_ms(text, &ms))
        FUZZ_CHECK(ms >= 0, "duration '%s' -> %ld", text, ms);
    (void)vtp_config_parse_bool(text, &b);
    path = vtp_config_locate_reserved(text);
    if (path != NULL)
        FUZZ_CHECK(path[0] != '\0' && strstr(text, path) != NULL, "config path '%s'", path);
    free(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz f = {data, size};
    struct vtp_config *a = NULL, *b = NULL;
    bool env = false;
    char *text;
    CK_RV ra, rb;

    /* "@NAME=value\n" lines set environment variables for this input. */
    while (f.n > 1 && f.p[0] == '@') {
        const uint8_t *eol = memchr(f.p, '\n', f.n);
        size_t len = eol != NULL ? (size_t)(eol - f.p) : f.n;
        char *line = fz_strdup(f.p + 1, len - 1), *eq = strchr(line, '=');
        if (eq != NULL) {
            *eq = '\0';
            for (size_t i = 0; i < N_ENV; i++)
                if (strcmp(line, env_names[i]) == 0 && setenv(line, eq + 1, 1) == 0)
                    env = true;
        }
        free(line);
        f.p += len + (eol != NULL ? 1 : 0);
        f.n -= len + (eol != NULL ? 1 : 0);
    }

    text = fz_strdup(f.p, f.n);
    small_parsers(text);
    ra = vtp_config_parse_string(text, env, &a);
    if (ra == CKR_OK)
        check_config(a);
    FUZZ_CHECK(ra == CKR_OK || ra == CKR_ARGUMENTS_BAD, "parse_string returned 0x%lx", ra);

    rb = load_memfd(f.p, f.n, (size & 1) ? 0666 : 0600, &b);
    if (rb == CKR_OK)
        check_config(b);
    FUZZ_CHECK(rb == CKR_OK || rb == CKR_ARGUMENTS_BAD || rb == CKR_GENERAL_ERROR,
               "config_load returned 0x%lx", rb);
    /* Same text, no NUL, no environment, no secret in a writable file: the same verdict. */
    if (!env && strlen(text) == f.n && (rb != CKR_GENERAL_ERROR))
        FUZZ_CHECK((ra == CKR_OK) == (rb == CKR_OK), "parse_string 0x%lx but load 0x%lx", ra, rb);
    if (ra == CKR_OK && rb == CKR_OK) {
        FUZZ_CHECK(a->n_slots == b->n_slots && a->vault.n_addresses == b->vault.n_addresses,
                   "string and file parsers disagree");
        for (size_t i = 0; i < a->n_slots; i++)
            FUZZ_CHECK(strcmp(a->slots[i].name, b->slots[i].name) == 0 &&
                           strcmp(a->slots[i].label, b->slots[i].label) == 0,
                       "slot %zu differs", i);
    }
    vtp_config_free(a);
    vtp_config_free(b);
    free(text);
    for (size_t i = 0; env && i < N_ENV; i++)
        unsetenv(env_names[i]);
    return 0;
}
