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

/* Usage attributes (CKA_SIGN, ...) of a key pair, as a mask: private key, then public key. The
 * default is what a Transit key of the type does; a template may ask for others, which are kept
 * (kvstore.h) and shown, and enforced for the operations the module has. */
enum {
    VTP_USE_SIGN = 1 << 0,
    VTP_USE_DECRYPT = 1 << 1,
    VTP_USE_UNWRAP = 1 << 2,
    VTP_USE_SIGN_RECOVER = 1 << 3,
    VTP_USE_DERIVE = 1 << 4, /* private key */
    VTP_USE_VERIFY = 1 << 5,
    VTP_USE_ENCRYPT = 1 << 6,
    VTP_USE_WRAP = 1 << 7,
    VTP_USE_VERIFY_RECOVER = 1 << 8,
    VTP_USE_PUB_DERIVE = 1 << 9, /* public key */
    VTP_USE_ALL = (1 << 10) - 1,
};
/* The bit of attribute type on a public or private key, 0 if it is not a usage attribute. */
unsigned vtp_usage_bit(CK_ATTRIBUTE_TYPE type, bool pub);
unsigned vtp_usage_default(const struct vtp_keytype *kt);

struct vtp_key {
    int refs; /* atomic */
    char *name; /* Transit key name, prefix included */
    const struct vtp_keytype *kt;
    unsigned long version;
    EVP_PKEY *pkey; /* public key of that version */
    unsigned char *spki;
    size_t spki_len;
    char *birth; /* the Transit key's identity across versions (vtp_transit_key.birth) or NULL */
    unsigned char *id;
    size_t id_len;
    char *label;
    bool id_stored;      /* id/label came from KV metadata */
    unsigned usage;      /* VTP_USE_* the objects show and allow */
    bool exportable;     /* from Transit: CKA_EXTRACTABLE, not CKA_SENSITIVE */
    bool imported;       /* from Transit: not CKA_LOCAL, never CKA_ALWAYS_SENSITIVE */
    bool destroyable;    /* the slot's allow_destroy */
    bool modifiable;     /* CKA_LABEL/CKA_ID can be changed (there is KV) */
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

/* An X.509 certificate object: stored in KV v2 (kv_name set) or read from a PEM file named in
 * the slot's config (read-only). Immutable once built, shared by reference count. */
struct vtp_cert {
    int refs; /* atomic */
    CK_OBJECT_HANDLE handle;
    char *kv_name; /* name under certs/<mount>/ in KV, NULL for a file certificate */
    bool read_only;
    unsigned char *value; /* DER */
    size_t value_len;
    unsigned char *id;
    size_t id_len;
    char *label;
    unsigned char *subject, *issuer, *serial, *spki; /* DER */
    size_t subject_len, issuer_len, serial_len, spki_len;
    unsigned char check_value[3];
};

/* Builds a certificate from DER. id/label may be NULL (then empty); subject, issuer and
 * serial come from the template when given (tmpl may be NULL), else from the certificate.
 * CKR_ATTRIBUTE_VALUE_INVALID if value is not an X.509 certificate. */
CK_RV vtp_cert_build(const unsigned char *der, size_t der_len, const unsigned char *id,
                     size_t id_len, const char *label, size_t label_len,
                     const CK_ATTRIBUTE *tmpl, CK_ULONG count, struct vtp_cert **out);
/* o[key] = standard base64 of p; 0 on success (jansson's convention). */
int vtp_json_set_b64(json_t *o, const char *key, const unsigned char *p, size_t len);
struct vtp_cert *vtp_cert_ref(struct vtp_cert *c);
void vtp_cert_unref(struct vtp_cert *c);

/* A copy of k (same handles, version and public key) with another id and/or label. */
CK_RV vtp_key_relabel(const struct vtp_key *k, const unsigned char *id, size_t id_len,
                      const char *label, size_t label_len, struct vtp_key **out);
CK_RV vtp_cert_relabel(const struct vtp_cert *c, const unsigned char *id, size_t id_len,
                       const char *label, size_t label_len, struct vtp_cert **out);

/* Any object a handle names: a key's private or public half, or a certificate. */
struct vtp_obj {
    CK_OBJECT_CLASS cls;
    struct vtp_key *key;   /* CKO_PRIVATE_KEY, CKO_PUBLIC_KEY */
    struct vtp_cert *cert; /* CKO_CERTIFICATE */
};
void vtp_obj_release(struct vtp_obj *o);

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
