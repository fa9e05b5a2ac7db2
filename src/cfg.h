/* cfg.h - the module's configuration (src/config.c).
 *
 * Sources, lowest precedence first: built-in defaults, the INI file, Vault's standard
 * environment variables (VAULT_ADDR, VAULT_TOKEN, VAULT_CACERT, VAULT_CAPATH, VAULT_CLIENT_CERT,
 * VAULT_CLIENT_KEY, VAULT_NAMESPACE, VAULT_SKIP_VERIFY, VAULT_TLS_SERVER_NAME), which override
 * the file's [vault] section as the Vault CLI does. A missing file is not an error: one slot
 * over mount "transit" is made from the environment alone.
 */
#ifndef VTP_CFG_H
#define VTP_CFG_H

#include <stdbool.h>
#include <stddef.h>

#include "vtp-pkcs11.h"

#define VTP_MAX_ADDRESSES 8
#define VTP_MAX_SLOTS 64
/* configure --with-config-file; by default
 * /etc/vault-transit-pkcs11/vault-transit-pkcs11.conf, whatever the prefix */
#define VTP_DEFAULT_CONFIG_PATH VTP_CONFIG_FILE

enum vtp_auth_method {
    VTP_AUTH_TOKEN = 0, /* token = ... or VAULT_TOKEN */
    VTP_AUTH_TOKEN_FILE,
    VTP_AUTH_PIN, /* the C_Login PIN is the Vault token */
    VTP_AUTH_APPROLE,
    VTP_AUTH_KUBERNETES,
    VTP_AUTH_CERT,
};

struct vtp_vault_conf {
    char *addresses[VTP_MAX_ADDRESSES]; /* without trailing '/'; failover order */
    size_t n_addresses;
    char *ca_cert;     /* file */
    char *ca_path;     /* directory */
    char *client_cert; /* mTLS */
    char *client_key;
    char *tls_server_name;
    bool skip_verify;
    char *namespace_; /* X-Vault-Namespace default for every slot; NULL = none */
    enum vtp_auth_method auth;
    char *token; /* secret: wiped on free */
    char *token_file;
    char *auth_mount; /* approle/kubernetes/cert mount; default per method */
    char *role_id;
    char *secret_id; /* secret */
    char *secret_id_file;
    char *role;     /* kubernetes role / cert role name */
    char *jwt_file; /* kubernetes service-account token */
    long timeout_ms;         /* deadline of one operation, retries included; default 30000 */
    long connect_timeout_ms; /* default 5000 */
};

struct vtp_slot_conf {
    char *name;       /* [slot NAME] */
    char *mount;      /* Transit mount, default "transit" */
    char *key_prefix; /* only keys with this prefix; created keys get it; default "" */
    char *kv_mount;   /* KV v2 mount for IDs/labels/certificates; NULL = none */
    bool kv_auto;     /* kv_mount = auto (the default slot's default): kv_mount ("secret") is
                         used only if the token can (vtp_kv_settle) */
    char *kv_prefix;  /* path under kv_mount, default "vault-transit-pkcs11" */
    char *label;      /* token label; default "Vault Transit <slot name>" */
    char *namespace_; /* overrides [vault] namespace */
    bool allow_destroy;   /* C_DestroyObject may delete Transit keys; default true */
    long cache_ttl_ms;    /* key-list refresh interval; default 60000 */
    char *certificates;   /* comma-separated PEM files shown as read-only certificates */
};

struct vtp_config {
    char *path; /* the file read, or NULL */
    struct vtp_vault_conf vault;
    struct vtp_slot_conf slots[VTP_MAX_SLOTS];
    size_t n_slots;
    char *log_errors; /* [module] log_errors = stderr | syslog; NULL = off */
    bool batching;    /* [module] batching: group concurrent signatures; default true */
    long batch_max_items;   /* [module] batch_max_items: default 200, 1..VTP_MAX_BATCH_ITEMS */
    long batch_concurrency; /* [module] batch_concurrency: requests in flight per key; default 2 */
    bool batch_rsa;   /* [module] batch_rsa: RSA signatures in cohorts too; default true */
    char *cache_dir;  /* [module] cache_dir: on-disk copy of key lists and public keys; NULL = off */
};

#define VTP_MAX_BATCH_ITEMS 240 /* = VTP_TRANSIT_MAX_BATCH (vault/transit.h); module.c checks */

#define VTP_CONFIG_ENV "VAULT_TRANSIT_PKCS11_CONFIG"

/* Where the config comes from: pReserved "config=/path" (may be NULL), else
 * $VAULT_TRANSIT_PKCS11_CONFIG, else VTP_DEFAULT_CONFIG_PATH. Returns a malloc'ed path. */
char *vtp_config_locate(const char *reserved);
/* The same, and which of the three chose it (vault-transit-pkcs11-check says so). */
enum vtp_config_source {
    VTP_CONFIG_FROM_RESERVED,
    VTP_CONFIG_FROM_ENV,
    VTP_CONFIG_FROM_DEFAULT,
};
char *vtp_config_locate_source(const char *reserved, enum vtp_config_source *source);
/* The environment variables vtp_config_load reads besides VTP_CONFIG_ENV, NULL-terminated;
 * secret says whether the value is a secret (never shown). */
struct vtp_config_env {
    const char *name;
    bool secret;
};
extern const struct vtp_config_env vtp_config_env_vars[];
/* The path of the "config=/path" word of a C_Initialize pReserved string, or NULL. */
char *vtp_config_locate_reserved(const char *reserved);

/* Loads path (NULL or a missing file: defaults + environment). CKR_ARGUMENTS_BAD with a log line
 * naming file and line for a syntax error or a bad value; CKR_GENERAL_ERROR for a file holding
 * secrets that group or others may write. Always at least one slot on success. */
CK_RV vtp_config_load(const char *path, struct vtp_config **out);
/* Parses INI text (unit tests); environment is applied too when apply_env. */
CK_RV vtp_config_parse_string(const char *text, bool apply_env, struct vtp_config **out);
void vtp_config_free(struct vtp_config *cfg);

/* The permission rule for a file that holds a secret (this config file when it names a token or
 * secret_id; token_file, secret_id_file, jwt_file): writable by group or others is refused
 * (CKR_GENERAL_ERROR, an error line naming the file, what it holds and its mode), readable by
 * others gives a warning. mode is the file's st_mode. */
CK_RV vtp_config_check_secret_mode(const char *path, unsigned long mode, const char *holds);

/* Helpers shared with tests. */
bool vtp_config_parse_bool(const char *s, bool *out);
bool vtp_config_parse_duration_ms(const char *s, long *out); /* "30", "30s", "500ms", "2m" */

#endif /* VTP_CFG_H */
