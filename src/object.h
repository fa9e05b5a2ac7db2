/* object.h - the object model (src/object.c).
 *
 * A Transit key of a usable type is one struct vtp_key: immutable once built, shared by
 * reference count between the slot's cache snapshot and the sessions using it. It stands for the
 * key's latest version when it was read and shows two objects, a private key (handle
 * priv_handle) and a public key (pub_handle). Handles come from one process-wide counter and are
 * never reused; a key keeps its handles across cache refreshes while its name and version stay.
 */
#ifndef VTP_OBJECT_H
#define VTP_OBJECT_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/evp.h>

#include "vtp-pkcs11.h"
#include "mech.h"
#include "vault/transit.h"

struct vtp_key {
    int refs; /* atomic */
    char *name; /* Transit key name, prefix included */
    const struct vtp_keytype *kt;
    unsigned long version;
    EVP_PKEY *pkey; /* public key of that version */
    unsigned char *spki;
    size_t spki_len;
    unsigned char *id;
    size_t id_len;
    char *label;
    bool id_stored;      /* id/label came from KV metadata */
    bool private_is_private; /* CKA_PRIVATE of the private key: true when login is required */
    CK_OBJECT_HANDLE priv_handle;
    CK_OBJECT_HANDLE pub_handle;
    /* derived public attributes, DER / big-endian */
    unsigned char *ec_point; /* DER OCTET STRING of the point (EC, Edwards) */
    size_t ec_point_len;
    unsigned char *modulus; /* RSA */
    size_t modulus_len;
    unsigned char *exponent;
    size_t exponent_len;
};

/* Builds a key object from a Transit key and optional KV metadata ({"id": hex, "label": str}).
 * name_prefix is stripped to make the default label. CKR_KEY_TYPE_INCONSISTENT if the
 * Transit type is not usable (the caller skips the key with a debug log). */
CK_RV vtp_key_build(const struct vtp_transit_key *tk, const json_t *meta, const char *name_prefix,
                    struct vtp_key **out);
struct vtp_key *vtp_key_ref(struct vtp_key *k);
void vtp_key_unref(struct vtp_key *k);

/* The next pair of object handles (h, h + 1; never 0, never reused). */
CK_OBJECT_HANDLE vtp_object_next_handle(void);

/* Default CKA_ID of a key without stored metadata: derived from its name, stable, non-empty. */
CK_RV vtp_key_default_id(const char *name, unsigned char **id, size_t *id_len);

#endif /* VTP_OBJECT_H */
