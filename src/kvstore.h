/* kvstore.h - what the module keeps of its own: CKA_ID/CKA_LABEL of keys and certificate
 * objects, in KV v2 (src/kvstore.c) or, without KV, in the Transit key's name. */
#ifndef VTP_KVSTORE_H
#define VTP_KVSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "vtp-pkcs11.h"
#include "object.h"
#include "vault/transit.h"

/* Layout under <kv_mount>/{data,metadata}/<kv_prefix>/, format VTP_KV_FORMAT:
 *   <mount>/<key name>          {"format":1, "id":"<hex>", "label":"<UTF-8>", "usage":<mask>}
 *                               (each optional; usage: VTP_USE_* when not the type's default)
 *   <mount>/index/label/<hex>/<key name>   {"format":1, "key":"<key name>"}: one entry per
 *                               key with that CKA_LABEL (<hex> "-": empty), made with
 *                               check-and-set 0 and found with a LIST
 *   <mount>/index/id/<hex>/<key name>      the same for CKA_ID
 *   (<mount>/index/{label,id}/<hex> as one document {"<key name>":"key", ...} is the older
 *   index, still read)
 *   certs/<mount>/<name>        {"value":"<b64 DER>", "id", "label", "subject", "issuer",
 *                                "serial" (b64)}
 * where <mount> is the Transit mount. A key's entry is written with check-and-set 0 before its
 * Transit key is made: that claims the name, so two generations never share a key. Entries
 * without "format" are format 1; a newer format is read for the fields this one knows. */
#define VTP_KV_FORMAT 1

char *vtp_kv_meta_path(const struct vtp_transit *t, const char *name);
char *vtp_kv_meta_dir(const struct vtp_transit *t); /* for a LIST of every key's entry */
char *vtp_kv_cert_path(const struct vtp_transit *t, const char *name);
char *vtp_kv_cert_dir(const struct vtp_transit *t);
char *vtp_kv_index_path(const struct vtp_transit *t, CK_ATTRIBUTE_TYPE type, const void *value,
                        size_t len);

/* A key's entry: id and label as given (NULL: not given), usage mask (< 0: the default). */
json_t *vtp_kv_meta_new(const CK_ATTRIBUTE *id, const CK_ATTRIBUTE *label, long usage);
/* Its fields (borrowed from meta, NULL when absent; *usage -1 when absent); false if meta is
 * not an entry. */
bool vtp_kv_meta_fields(const json_t *meta, const char **hex_id, const char **label,
                        long *usage);

/* KV index of labels and IDs (no-op without KV): add or drop the entry of key name under a
 * value. vtp_kv_index_path is the directory of a value's entries (and the older document). */
CK_RV vtp_kv_index(const struct vtp_transit *t, CK_ATTRIBUTE_TYPE type, const void *value,
                   size_t len, const char *name, bool add);

/* CKA_LABEL: UTF-8 without NUL, since it is kept as a JSON string (CKR_ATTRIBUTE_VALUE_INVALID
 * with a log line otherwise). */
CK_RV vtp_label_check(const CK_ATTRIBUTE *a);

/* Certificates as stored (and in the offline copy). */
json_t *vtp_cert_to_json(const struct vtp_cert *c);
CK_RV vtp_cert_from_json(const json_t *data, const char *kv_name, struct vtp_cert **out);

/* Without KV, a key the module makes carries what it was given in its name:
 *   <key_prefix><label>.p11-<8 hex>[.u<3 hex>][.i<hex ID>]
 *   <key_prefix>p11-<8 hex>[.u<3 hex>][.i<hex ID>]          (no label given: this is its label)
 * ".u": the usage mask when it is not the type's default; ".i": the ID when it is not the
 * label. The 8 random hex digits make every name new, so two generations never share a key.
 * A label is kept only if it is a valid Transit name part (letters, digits, '_', '-', '.',
 * starting and ending with a letter, digit or '_'); an empty one cannot be kept. */
/* The name for a new key; *out NULL (CKR_ATTRIBUTE_VALUE_INVALID) when the label cannot be
 * kept so. */
CK_RV vtp_name_encode(const char *prefix, const CK_ATTRIBUTE *label, const CK_ATTRIBUTE *id,
                      long usage, char **out);
/* What a name (prefix removed) says: label length (a prefix of shortname), ID and usage (-1:
 * the default); false when it is not of the form above (then label and ID are the name
 * itself). *id is malloc'ed. */
bool vtp_name_decode(const char *shortname, size_t *label_len, unsigned char **id,
                     size_t *id_len, long *usage);

#endif /* VTP_KVSTORE_H */
