/* transit.h - typed Transit and KV v2 requests (src/vault/transit.c).
 *
 * Every call returns CKR_OK, a standard CK_RV for a local failure (CKR_HOST_MEMORY,
 * CKR_DEVICE_ERROR for an answer that does not parse, ...), or the internal error kind
 * (vault/errkind.h) of what Vault answered; so does each sign item's rv. */
#ifndef VTP_TRANSIT_H
#define VTP_TRANSIT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <jansson.h>

#include "vtp-pkcs11.h"
#include "vault/errkind.h"
#include "vault/http.h"

/* kv_mount = auto: the KV v2 mount is used when the token can, decided at its first use
 * (vtp_kv_settle). Owned by the slot. */
struct vtp_kv_auto {
    pthread_mutex_t lock; /* held across the probe's requests: only settling waits on it */
    atomic_int state;     /* VTP_KV_UNSETTLED, VTP_KV_USED, VTP_KV_UNUSED */
    const char *mount;    /* the candidate, e.g. "secret" */
};
enum { VTP_KV_UNSETTLED, VTP_KV_USED, VTP_KV_UNUSED };

/* Where a slot's keys live. All strings are borrowed. */
struct vtp_transit {
    struct vtp_http *http;
    const char *namespace_;      /* or NULL */
    const char *mount;           /* Transit mount */
    const char *kv_mount;        /* KV v2 mount as configured, or NULL: read it with vtp_kv_mount */
    const char *kv_prefix;       /* path under the KV mount */
    struct vtp_kv_auto *kv_auto; /* kv_mount = auto, or NULL */
};

/* The KV v2 mount in use: the configured one, or the automatic one once settled and usable;
 * NULL when there is none (yet). */
const char *vtp_kv_mount(const struct vtp_transit *t);
/* Decides kv_mount = auto once (later calls return at once): the candidate is used when it is a
 * KV v2 mount whose vault-transit-pkcs11 directory the token may list. CKR_OK once decided
 * either way; an error when Vault could not be asked (then it is asked again next time). */
CK_RV vtp_kv_settle(const struct vtp_transit *t);

struct vtp_transit_key {
    char *name;
    char *type; /* Transit key type, e.g. "ecdsa-p256" */
    unsigned long latest_version;
    unsigned long min_encryption_version;
    bool deletion_allowed;
    bool supports_signing;
    bool exportable;   /* its private key can be exported in plaintext (export/, backup/) */
    bool imported;     /* imported_key: made outside Transit */
    unsigned char *spki; /* DER SubjectPublicKeyInfo of latest_version; NULL if none */
    size_t spki_len;
    char *birth; /* creation_time of the oldest version shown: a key deleted and made again under
                    the same name has another (NULL if the answer has none) */
};

void vtp_transit_key_free(struct vtp_transit_key *k);
/* Parses the "data" object of a read-key response (unit-tested). Ed25519's raw base64 key
 * is turned into an SPKI too. */
CK_RV vtp_transit_parse_key(const json_t *data, struct vtp_transit_key **out);

/* LIST <mount>/keys. No keys (404) is success with *n = 0. names: free each, then the array. */
CK_RV vtp_transit_list_keys(const struct vtp_transit *t, char ***names, size_t *n);
/* GET <mount>/keys/<name>. VTP_ERR_KEY_MISSING if the key does not exist. */
CK_RV vtp_transit_read_key(const struct vtp_transit *t, const char *name,
                           struct vtp_transit_key **out);
/* POST <mount>/keys/<name> {"type":type}. CKR_ATTRIBUTE_VALUE_INVALID... never: if the key
 * exists already Vault returns it unchanged; the caller compares the type. */
CK_RV vtp_transit_create_key(const struct vtp_transit *t, const char *name, const char *type,
                             struct vtp_transit_key **out);
/* Sets deletion_allowed, then DELETE <mount>/keys/<name>. */
CK_RV vtp_transit_delete_key(const struct vtp_transit *t, const char *name);

struct vtp_sign_params {
    const char *hash_algorithm;      /* "sha2-256", ..., "none"; NULL = not sent */
    bool prehashed;                  /* input is a digest (or DigestInfo for "none") */
    const char *signature_algorithm; /* "pss", "pkcs1v15"; NULL = not sent */
    long salt_length;                /* PSS salt in bytes; < 0 = not sent */
};

struct vtp_sign_item {
    const unsigned char *input; /* digest or message */
    size_t input_len;
    unsigned char *sig; /* out: malloc'ed raw signature bytes as Transit made them (ECDSA: DER) */
    size_t sig_len;
    CK_RV rv; /* out: this item's result */
};

/* POST <mount>/sign/<name> with batch_input (one item per entry, each with a reference) and
 * key_version = version; marshaling asn1. Returns the request's CK_RV; on CKR_OK each item
 * has its own rv. n is at most VTP_TRANSIT_MAX_BATCH. */
/* OpenBao >= 2.4.1 refuses a body of over 1000 JSON strings (keys and values). An item is 4
 * ("input", its value, "reference", its value) and the rest of a sign body at most 11, so 240
 * items (971 strings) always fit; 248 would not. */
#define VTP_TRANSIT_MAX_BATCH 240
CK_RV vtp_transit_sign(const struct vtp_transit *t, const char *name, unsigned long version,
                       const struct vtp_sign_params *p, struct vtp_sign_item *items, size_t n);

/* Maps data.batch_results of a sign answer back to items by reference ("0".."n-1"); decodes
 * "vault:vN:<b64>" and checks N == version (unless version is 0). A missing or malformed
 * result leaves that item CKR_FUNCTION_FAILED. Sets every item's sig, sig_len and rv
 * (unit-tested). */
/* A successful sign answer's body (the whole envelope) read without building a JSON tree: true
 * when every item got its signature (rv CKR_OK). False when the body is anything but the plain
 * answer (an item's error, escapes, non-ASCII, a signature of another version, a missing or
 * repeated reference, malformed JSON): the items are then untouched, and the body is for
 * jansson and vtp_transit_read_sign_answer. */
bool vtp_transit_scan_sign_answer(const char *body, size_t len, unsigned long version,
                                  struct vtp_sign_item *items, size_t n);
/* The same answer parsed by jansson: data.signature (n == 1) or data.batch_results. */
CK_RV vtp_transit_read_sign_answer(const json_t *body, unsigned long version,
                                   struct vtp_sign_item *items, size_t n);
CK_RV vtp_transit_parse_sign_results(const json_t *data, unsigned long version,
                                     struct vtp_sign_item *items, size_t n);

/* POST <mount>/decrypt/<name> with "vault:v<version>:<b64>" (RSA-OAEP, SHA-256). *pt is
 * malloc'ed; the caller wipes it. */
CK_RV vtp_transit_decrypt(const struct vtp_transit *t, const char *name, unsigned long version,
                          const unsigned char *ct, size_t ct_len, unsigned char **pt,
                          size_t *pt_len);
/* POST <mount>/random: len bytes from Vault's RNG. */
CK_RV vtp_transit_random(const struct vtp_transit *t, unsigned char *out, size_t len);

/* KV v2 under kv_mount/kv_prefix. path is relative to kv_prefix. */
/* Read: *data = the secret's data object (new reference) or NULL if absent. */
CK_RV vtp_kv_read(const struct vtp_transit *t, const char *path, json_t **data);
/* cas < 0: unconditional; cas = 0: only if the path holds no live version (else
 * VTP_ERR_CAS_MISMATCH, meaning "taken"); cas = N: only if N is its current version. */
CK_RV vtp_kv_write(const struct vtp_transit *t, const char *path, json_t *data, long cas);
/* Deletes all versions and metadata; absent is success. */
CK_RV vtp_kv_delete(const struct vtp_transit *t, const char *path);
/* Lists names under path; absent is success with *n = 0. */
CK_RV vtp_kv_list(const struct vtp_transit *t, const char *path, char ***names, size_t *n);

void vtp_strv_free(char **v, size_t n);

/* Paths the module uses (malloc'ed, segments escaped): "<mount>/<what>/<name>[/<suffix>]" of
 * the slot's Transit mount (name may be NULL: "<mount>/<what>"), and
 * "<kv_mount>/<kind>/<kv_prefix>/<path>" of a KV v2 mount (kind "data" or "metadata"). */
char *vtp_transit_path(const struct vtp_transit *t, const char *what, const char *name,
                       const char *suffix);
char *vtp_kv_path_in(const struct vtp_transit *t, const char *kv_mount, const char *kind,
                     const char *path);

/* POST sys/capabilities-self for n paths: CKR_OK when Vault answered (*rv_vault says what;
 * when CKR_OK, *caps is an object path -> array of capabilities, a new reference). Not one of
 * the seam's operations: only the real server has policies (kv_mount = auto and
 * vault-transit-pkcs11-check ask it). */
CK_RV vtp_vault_capabilities(const struct vtp_transit *t, const char *const *paths, size_t n,
                             json_t **caps, CK_RV *rv_vault);
/* Does caps (an array of capability names) hold one of want (NULL-terminated), or "root"? */
bool vtp_caps_have(const json_t *caps, const char *const *want);
/* GET sys/internal/ui/mounts/<mount>: its type ("kv", "transit") and options.version (KV:
 * "2"), malloc'ed or NULL, when Vault answered with *rv_vault CKR_OK. */
CK_RV vtp_vault_mount_info(const struct vtp_transit *t, const char *mount, char **type,
                           char **version, CK_RV *rv_vault);

/* What an answer of Vault or OpenBao means: CKR_OK for 2xx, else its internal error kind
 * (docs/errors.md has the table; unit-tested). body may be NULL. */
CK_RV vtp_transit_classify(long status, const json_t *body);
/* The same for the "error" of one item of a batch answer (NULL or "" is CKR_OK). */
CK_RV vtp_transit_classify_item(const char *error);

/* The seam behind the typed calls above: an operations table with the same signatures. The
 * module uses the real one (HTTP to Vault); a test may install a fake in-process Transit
 * (tests/lib/fake-transit.c) whose latency, errors and keys it controls, to reach races and
 * lifetimes that timing against a real server cannot. Install it before C_Initialize and
 * restore it (NULL) after C_Finalize. */
struct vtp_transit_ops {
    CK_RV (*list_keys)(const struct vtp_transit *t, char ***names, size_t *n);
    CK_RV (*read_key)(const struct vtp_transit *t, const char *name, struct vtp_transit_key **out);
    CK_RV (*create_key)(const struct vtp_transit *t, const char *name, const char *type,
                        struct vtp_transit_key **out);
    CK_RV (*delete_key)(const struct vtp_transit *t, const char *name);
    CK_RV (*sign)(const struct vtp_transit *t, const char *name, unsigned long version,
                  const struct vtp_sign_params *p, struct vtp_sign_item *items, size_t n);
    CK_RV (*decrypt)(const struct vtp_transit *t, const char *name, unsigned long version,
                     const unsigned char *ct, size_t ct_len, unsigned char **pt, size_t *pt_len);
    CK_RV (*random)(const struct vtp_transit *t, unsigned char *out, size_t len);
    CK_RV (*kv_read)(const struct vtp_transit *t, const char *path, json_t **data);
    CK_RV (*kv_write)(const struct vtp_transit *t, const char *path, json_t *data, long cas);
    CK_RV (*kv_delete)(const struct vtp_transit *t, const char *path);
    CK_RV (*kv_list)(const struct vtp_transit *t, const char *path, char ***names, size_t *n);
    /* Is mount a KV v2 mount the token may use under kv_prefix? *usable says; an error only
     * when Vault could not be asked. NULL in a fake: no KV. */
    CK_RV (*kv_probe)(const struct vtp_transit *t, const char *mount, bool *usable);
};
const struct vtp_transit_ops *vtp_transit_real_ops(void);
void vtp_transit_set_ops(const struct vtp_transit_ops *ops); /* NULL: the real operations */

#endif /* VTP_TRANSIT_H */
