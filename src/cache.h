/* cache.h - per-slot key list and public keys (src/cache.c).
 *
 * Readers take a reference to the current snapshot under a short lock and never touch the
 * network once it is loaded. A refresh reads Transit (and KV v2 metadata) with no lock held that
 * readers need, builds a new snapshot and swaps it in; keys keep their object handles across
 * refreshes while their name and version are unchanged.
 */
#ifndef VTP_CACHE_H
#define VTP_CACHE_H

#include <stdbool.h>

#include "vtp-pkcs11.h"
#include "object.h"
#include "vault/transit.h"

struct vtp_snapshot {
    int refs; /* atomic */
    struct vtp_key **keys; /* the latest version of each key, sorted by priv_handle */
    size_t n;
    /* Older versions that clients may still hold handles to after a rotation: they keep signing
     * with the version whose public key the client saw; searches do not return them. */
    struct vtp_key **retired;
    size_t n_retired;
    struct vtp_cert **certs; /* sorted by handle */
    size_t n_certs;
    /* Transit key names listed (prefix matched); when !complete only some of them are loaded:
     * those a search by CKA_LABEL or CKA_ID asked for, and those loaded before a refresh. */
    char **names;
    size_t n_names;
    bool complete;
    char **memo; /* searches already resolved: "l:<hex>" / "i:<hex>" */
    size_t n_memo;
    int64_t loaded_ms;
};

struct vtp_cache;

struct vtp_cache_conf {
    const struct vtp_transit *transit; /* borrowed, outlives the cache */
    const char *key_prefix;
    long ttl_ms;
    bool private_is_private;
    bool allow_destroy; /* the slot's allow_destroy: CKA_DESTROYABLE of its keys */
    const char *cert_files; /* comma-separated PEM files (read-only certificates), or NULL */
    const char *disk_path;  /* on-disk copy of the last good load, or NULL */
};

CK_RV vtp_cache_new(const struct vtp_cache_conf *conf, struct vtp_cache **out);
void vtp_cache_free(struct vtp_cache *c);

/* The current snapshot (a reference: release with vtp_snapshot_unref). Loads it on first use;
 * with refresh_if_stale, reloads it when older than the TTL (keeping the old one, with a log
 * line, if Vault cannot be reached). With complete, every key is loaded; otherwise only the
 * key list and the keys already in use. */
CK_RV vtp_cache_get(struct vtp_cache *c, bool refresh_if_stale, bool complete,
                    struct vtp_snapshot **out);
/* Makes sure every key whose CKA_LABEL (type CKA_LABEL) or CKA_ID equals value is loaded, at a
 * cost that does not grow with the number of keys: the key named <prefix><value> and those
 * the KV index names. Remembered until the next refresh. */
CK_RV vtp_cache_resolve(struct vtp_cache *c, CK_ATTRIBUTE_TYPE type, const void *value,
                        size_t len);
/* Reloads now. */
CK_RV vtp_cache_refresh(struct vtp_cache *c);
void vtp_snapshot_unref(struct vtp_snapshot *s);

/* The key showing object handle h (a reference) and the object's class.
 * CKR_OBJECT_HANDLE_INVALID if no key of this slot shows it. */
CK_RV vtp_cache_lookup(struct vtp_cache *c, CK_OBJECT_HANDLE h, struct vtp_key **key,
                       CK_OBJECT_CLASS *cls);
/* Any object by handle (references taken; release with vtp_obj_release). */
CK_RV vtp_cache_lookup_obj(struct vtp_cache *c, CK_OBJECT_HANDLE h, struct vtp_obj *out);
/* Adds or replaces (same handle) a certificate; drops one. */
CK_RV vtp_cache_put_cert(struct vtp_cache *c, struct vtp_cert *cert);
CK_RV vtp_cache_remove_cert(struct vtp_cache *c, CK_OBJECT_HANDLE h);

/* Adds k (a new reference is taken), replacing a key of the same name. */
CK_RV vtp_cache_put(struct vtp_cache *c, struct vtp_key *k);
/* Drops the key of that name. */
CK_RV vtp_cache_remove(struct vtp_cache *c, const char *name);
/* After one half of a pair was destroyed (and with it the Transit key), destroying the other
 * half still succeeds once: clients such as crypto11 destroy both. */
void vtp_cache_note_destroyed(struct vtp_cache *c, CK_OBJECT_HANDLE other_half);
bool vtp_cache_take_destroyed(struct vtp_cache *c, CK_OBJECT_HANDLE h);
/* Is a key of that name known? */
bool vtp_cache_has_name(struct vtp_cache *c, const char *name);

/* Sets what a key shows of the slot (CKA_PRIVATE, CKA_DESTROYABLE, CKA_MODIFIABLE). */
void vtp_cache_finish_key(struct vtp_cache *c, struct vtp_key *k);

/* Loads one key (Transit read + KV metadata) as the cache would. */
CK_RV vtp_cache_load_key(struct vtp_cache *c, const char *name, struct vtp_key **out);


#endif /* VTP_CACHE_H */
