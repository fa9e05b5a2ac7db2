/* object.c - key objects built from Transit keys. */
#include "common.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/asn1.h>
#include <openssl/x509.h>
#include <openssl/evp.h>

#include "object.h"
#include "kvstore.h"
#include "util.h"

static CK_OBJECT_HANDLE next_handle = 1;

CK_OBJECT_HANDLE vtp_object_next_handle(void)
{
    /* Two at a time: a key's public object is always its private object's handle + 1. */
    return __atomic_fetch_add(&next_handle, 2, __ATOMIC_RELAXED);
}

struct vtp_key *vtp_key_ref(struct vtp_key *k)
{
    if (k != NULL)
        __atomic_add_fetch(&k->refs, 1, __ATOMIC_RELAXED);
    return k;
}

void vtp_key_unref(struct vtp_key *k)
{
    if (k == NULL || __atomic_sub_fetch(&k->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    EVP_PKEY_free(k->pkey);
    free(k->name);
    free(k->spki);
    free(k->birth);
    free(k->id);
    free(k->label);
    free(k->ec_point);
    free(k->modulus);
    free(k->exponent);
    free(k);
}

CK_RV vtp_key_default_id(const char *name, unsigned char **id, size_t *id_len)
{
    size_t n = strlen(name);
    unsigned char *p;

    if (n == 0)
        return CKR_ARGUMENTS_BAD;
    p = malloc(n);
    if (p == NULL)
        return CKR_HOST_MEMORY;
    memcpy(p, name, n);
    *id = p;
    *id_len = n;
    return CKR_OK;
}

/* DER OCTET STRING around raw bytes (lengths up to 65535). */
static unsigned char *der_octet_string(const unsigned char *raw, size_t len, size_t *out_len)
{
    size_t hdr = len < 0x80 ? 2 : (len < 0x100 ? 3 : 4);
    unsigned char *p = malloc(hdr + len);

    if (p == NULL || len > 0xffff) {
        free(p);
        return NULL;
    }
    p[0] = 0x04;
    if (hdr == 2) {
        p[1] = (unsigned char)len;
    } else if (hdr == 3) {
        p[1] = 0x81;
        p[2] = (unsigned char)len;
    } else {
        p[1] = 0x82;
        p[2] = (unsigned char)(len >> 8);
        p[3] = (unsigned char)len;
    }
    memcpy(p + hdr, raw, len);
    *out_len = hdr + len;
    return p;
}

/* Big-endian magnitude of a DER INTEGER, leading zero bytes dropped. */
static CK_RV int_bytes(const ASN1_TYPE *t, unsigned char **out, size_t *out_len)
{
    const unsigned char *p;
    int n;

    if (t == NULL || t->type != V_ASN1_INTEGER)
        return CKR_KEY_TYPE_INCONSISTENT;
    p = ASN1_STRING_get0_data(t->value.integer);
    n = ASN1_STRING_length(t->value.integer);
    while (n > 1 && *p == 0) {
        p++;
        n--;
    }
    *out = malloc(n > 0 ? (size_t)n : 1);
    if (*out == NULL)
        return CKR_HOST_MEMORY;
    memcpy(*out, p, (size_t)n);
    *out_len = (size_t)n;
    return CKR_OK;
}

/* RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER } */
static CK_RV rsa_parts(struct vtp_key *k, const unsigned char *der, int len)
{
    const unsigned char *p = der;
    STACK_OF(ASN1_TYPE) *seq = d2i_ASN1_SEQUENCE_ANY(NULL, &p, len);
    CK_RV rv = CKR_KEY_TYPE_INCONSISTENT;

    if (seq != NULL && sk_ASN1_TYPE_num(seq) == 2) {
        rv = int_bytes(sk_ASN1_TYPE_value(seq, 0), &k->modulus, &k->modulus_len);
        if (rv == CKR_OK)
            rv = int_bytes(sk_ASN1_TYPE_value(seq, 1), &k->exponent, &k->exponent_len);
    }
    sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
    return rv;
}

/* The public components, read from the SubjectPublicKeyInfo itself: no provider call, so it
 * works the same inside applications that load OpenSSL engines. */
static CK_RV derive_public(struct vtp_key *k)
{
    const unsigned char *p = k->spki, *raw = NULL;
    X509_PUBKEY *xpk = d2i_X509_PUBKEY(NULL, &p, (long)k->spki_len);
    int raw_len = 0, base = EVP_PKEY_get_base_id(k->pkey), bits = EVP_PKEY_get_bits(k->pkey);
    CK_RV rv = CKR_KEY_TYPE_INCONSISTENT;

    if (xpk == NULL || X509_PUBKEY_get0_param(NULL, &raw, &raw_len, NULL, xpk) != 1 ||
        raw_len <= 0)
        goto out;
    switch (k->kt->kind) {
    case VTP_KIND_EC:
        if (base != EVP_PKEY_EC || bits != (int)k->kt->bits || raw[0] != 0x04)
            goto out;
        break;
    case VTP_KIND_ED25519:
        if (base != EVP_PKEY_ED25519 || raw_len != 32)
            goto out;
        break;
    case VTP_KIND_RSA:
        if (base != EVP_PKEY_RSA || bits != (int)k->kt->bits)
            goto out;
        rv = rsa_parts(k, raw, raw_len);
        goto out;
    }
    k->ec_point = der_octet_string(raw, (size_t)raw_len, &k->ec_point_len);
    rv = k->ec_point ? CKR_OK : CKR_HOST_MEMORY;
out:
    X509_PUBKEY_free(xpk);
    return rv;
}

static CK_RV apply_meta(struct vtp_key *k, const json_t *meta, const char *name_prefix)
{
    const char *hex = NULL, *label = NULL;
    const char *shortname = k->name;
    size_t plen = name_prefix ? strlen(name_prefix) : 0, label_len = 0;
    unsigned char *id = NULL;
    size_t id_len = 0;
    long usage = -1, name_usage = -1;
    bool in_name;

    if (plen > 0 && strncmp(k->name, name_prefix, plen) == 0 && k->name[plen] != '\0')
        shortname = k->name + plen;
    (void)vtp_kv_meta_fields(meta, &hex, &label, &usage);
    if (hex != NULL && hex[0] == '\0') {
        k->id = malloc(1); /* an empty ID, as given */
        if (k->id == NULL)
            return CKR_HOST_MEMORY;
        k->id_len = 0;
        k->id_stored = true;
    } else if (hex != NULL) {
        if (!vtp_hex_decode(hex, &k->id, &k->id_len)) {
            VTP_LOG_WARN("key %s: stored id is not hex, using the default id", k->name);
            k->id = NULL;
        } else {
            k->id_stored = true;
        }
    }
    if (label != NULL) {
        k->id_stored = true;
        k->label = strdup(label);
        if (k->label == NULL)
            return CKR_HOST_MEMORY;
    }
    /* a name carries label, ID and usage only for a key with no KV entry: a KV entry's key
     * is named after its label, which may look like anything */
    in_name = !json_is_object(meta) &&
              vtp_name_decode(shortname, &label_len, &id, &id_len, &name_usage);
    if (usage < 0)
        usage = name_usage;
    if (usage >= 0)
        k->usage = (unsigned)usage;
    if (k->id == NULL || k->label == NULL) {
        /* no KV entry: what the name carries (kvstore.h), else the name itself */
        if (!in_name)
            label_len = strlen(shortname);
        if (k->label == NULL && (k->label = strndup(shortname, label_len)) == NULL) {
            free(id);
            return CKR_HOST_MEMORY;
        }
        if (k->id == NULL && id != NULL) {
            k->id = id;
            k->id_len = id_len;
            id = NULL;
        }
        if (k->id == NULL) {
            CK_RV rv = vtp_key_default_id(shortname, &k->id, &k->id_len);
            if (rv != CKR_OK) {
                free(id);
                return rv;
            }
        }
    }
    free(id);
    return CKR_OK;
}

unsigned vtp_usage_bit(CK_ATTRIBUTE_TYPE type, bool pub)
{
    switch (type) {
    case CKA_SIGN:
        return pub ? 0 : VTP_USE_SIGN;
    case CKA_DECRYPT:
        return pub ? 0 : VTP_USE_DECRYPT;
    case CKA_UNWRAP:
        return pub ? 0 : VTP_USE_UNWRAP;
    case CKA_SIGN_RECOVER:
        return pub ? 0 : VTP_USE_SIGN_RECOVER;
    case CKA_DERIVE:
        return pub ? VTP_USE_PUB_DERIVE : VTP_USE_DERIVE;
    case CKA_VERIFY:
        return pub ? VTP_USE_VERIFY : 0;
    case CKA_ENCRYPT:
        return pub ? VTP_USE_ENCRYPT : 0;
    case CKA_WRAP:
        return pub ? VTP_USE_WRAP : 0;
    case CKA_VERIFY_RECOVER:
        return pub ? VTP_USE_VERIFY_RECOVER : 0;
    default:
        return 0;
    }
}

unsigned vtp_usage_default(const struct vtp_keytype *kt)
{
    unsigned u = VTP_USE_SIGN | VTP_USE_VERIFY;

    if (kt->kind == VTP_KIND_RSA)
        u |= VTP_USE_DECRYPT | VTP_USE_ENCRYPT; /* RSA-OAEP through Transit */
    return u;
}

CK_RV vtp_key_build(const struct vtp_transit_key *tk, const json_t *meta, const char *name_prefix,
                    struct vtp_key **out)
{
    const struct vtp_keytype *kt = vtp_keytype_by_transit(tk->type);
    const unsigned char *p;
    struct vtp_key *k;
    CK_RV rv;

    if (kt == NULL)
        return CKR_KEY_TYPE_INCONSISTENT;
    if (tk->spki == NULL || tk->spki_len == 0 || tk->latest_version == 0) {
        VTP_LOG_DEBUG("key %s: no public key for version %lu", tk->name, tk->latest_version);
        return CKR_KEY_TYPE_INCONSISTENT;
    }
    k = calloc(1, sizeof(*k));
    if (k == NULL)
        return CKR_HOST_MEMORY;
    k->refs = 1;
    k->kt = kt;
    k->version = tk->latest_version;
    k->usage = vtp_usage_default(kt);
    k->exportable = tk->exportable;
    k->imported = tk->imported;
    k->destroyable = true;
    k->name = strdup(tk->name);
    k->spki = malloc(tk->spki_len);
    if (k->name == NULL || k->spki == NULL) {
        rv = CKR_HOST_MEMORY;
        goto fail;
    }
    memcpy(k->spki, tk->spki, tk->spki_len);
    k->spki_len = tk->spki_len;
    if (tk->birth != NULL && (k->birth = strdup(tk->birth)) == NULL) {
        rv = CKR_HOST_MEMORY;
        goto fail;
    }
    p = k->spki;
    k->pkey = d2i_PUBKEY(NULL, &p, (long)k->spki_len);
    if (k->pkey == NULL) {
        VTP_LOG_WARN("key %s: public key does not parse", tk->name);
        rv = CKR_KEY_TYPE_INCONSISTENT;
        goto fail;
    }
    rv = derive_public(k);
    if (rv != CKR_OK) {
        VTP_LOG_WARN("key %s: public key does not match type %s", tk->name, tk->type);
        goto fail;
    }
    rv = apply_meta(k, meta, name_prefix);
    if (rv != CKR_OK)
        goto fail;
    k->priv_handle = vtp_object_next_handle();
    k->pub_handle = k->priv_handle + 1;
    *out = k;
    return CKR_OK;
fail:
    vtp_key_unref(k);
    return rv;
}

/* ---------------------------------------------------------------------------------------- */
/* certificates */

struct vtp_cert *vtp_cert_ref(struct vtp_cert *c)
{
    if (c != NULL)
        __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
    return c;
}

void vtp_cert_unref(struct vtp_cert *c)
{
    if (c == NULL || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    free(c->kv_name);
    free(c->value);
    free(c->id);
    free(c->label);
    free(c->subject);
    free(c->issuer);
    free(c->serial);
    free(c->spki);
    free(c);
}

void vtp_obj_release(struct vtp_obj *o)
{
    vtp_key_unref(o->key);
    vtp_cert_unref(o->cert);
    o->key = NULL;
    o->cert = NULL;
}

static bool dup_bytes(const void *src, size_t len, unsigned char **dst, size_t *dst_len)
{
    *dst = malloc(len > 0 ? len : 1);
    if (*dst == NULL)
        return false;
    if (len > 0)
        memcpy(*dst, src, len);
    *dst_len = len;
    return true;
}

/* i2d of an X509 part into a malloc'ed buffer. */
#define I2D_DUP(fn, obj, dst, dst_len)                                                             \
    do {                                                                                           \
        unsigned char *tmp_ = NULL;                                                                \
        int n_ = fn(obj, &tmp_);                                                                   \
        bool ok_ = n_ > 0 && dup_bytes(tmp_, (size_t)n_, dst, dst_len);                            \
        OPENSSL_free(tmp_);                                                                        \
        if (!ok_)                                                                                  \
            goto fail;                                                                             \
    } while (0)

static bool from_template(const CK_ATTRIBUTE *tmpl, CK_ULONG count, CK_ATTRIBUTE_TYPE t,
                          unsigned char **dst, size_t *dst_len, bool *ok)
{
    for (CK_ULONG i = 0; tmpl != NULL && i < count; i++) {
        if (tmpl[i].type == t && tmpl[i].pValue != NULL && tmpl[i].ulValueLen > 0) {
            *ok = dup_bytes(tmpl[i].pValue, tmpl[i].ulValueLen, dst, dst_len);
            return true;
        }
    }
    return false;
}

CK_RV vtp_cert_build(const unsigned char *der, size_t der_len, const unsigned char *id,
                     size_t id_len, const char *label, size_t label_len,
                     const CK_ATTRIBUTE *tmpl, CK_ULONG count, struct vtp_cert **out)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)der_len);
    struct vtp_cert *c = NULL;
    unsigned char sha1[20];
    ASN1_INTEGER *sn;
    bool ok = true;

    if (x == NULL || p != der + der_len) {
        X509_free(x);
        VTP_LOG_INFO("CKA_VALUE is not one DER X.509 certificate");
        return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        goto fail;
    c->refs = 1;
    if (!dup_bytes(der, der_len, &c->value, &c->value_len) ||
        !dup_bytes(id, id ? id_len : 0, &c->id, &c->id_len))
        goto fail;
    c->label = label ? strndup(label, label_len) : strdup("");
    if (c->label == NULL)
        goto fail;
    if (!from_template(tmpl, count, CKA_SUBJECT, &c->subject, &c->subject_len, &ok))
        I2D_DUP(i2d_X509_NAME, X509_get_subject_name(x), &c->subject, &c->subject_len);
    if (ok && !from_template(tmpl, count, CKA_ISSUER, &c->issuer, &c->issuer_len, &ok))
        I2D_DUP(i2d_X509_NAME, X509_get_issuer_name(x), &c->issuer, &c->issuer_len);
    sn = X509_get_serialNumber(x);
    if (ok && !from_template(tmpl, count, CKA_SERIAL_NUMBER, &c->serial, &c->serial_len, &ok))
        I2D_DUP(i2d_ASN1_INTEGER, sn, &c->serial, &c->serial_len);
    if (!ok)
        goto fail;
    I2D_DUP(i2d_X509_PUBKEY, X509_get_X509_PUBKEY(x), &c->spki, &c->spki_len);
    if (EVP_Digest(der, der_len, sha1, NULL, EVP_sha1(), NULL) != 1)
        goto fail;
    memcpy(c->check_value, sha1, 3);
    c->handle = vtp_object_next_handle();
    X509_free(x);
    *out = c;
    return CKR_OK;
fail:
    X509_free(x);
    vtp_cert_unref(c);
    return CKR_HOST_MEMORY;
}

int vtp_json_set_b64(json_t *o, const char *key, const unsigned char *p, size_t len)
{
    char *b = vtp_b64_encode(p, len);
    int r = b ? json_object_set_new(o, key, json_string(b)) : -1;
    free(b);
    return r;
}

CK_RV vtp_cert_relabel(const struct vtp_cert *c, const unsigned char *id, size_t id_len,
                       const char *label, size_t label_len, struct vtp_cert **out)
{
    CK_ATTRIBUTE tmpl[] = {{CKA_SUBJECT, c->subject, c->subject_len},
                           {CKA_ISSUER, c->issuer, c->issuer_len},
                           {CKA_SERIAL_NUMBER, c->serial, c->serial_len}};
    struct vtp_cert *n = NULL;
    CK_RV rv;

    rv = vtp_cert_build(c->value, c->value_len, id ? id : c->id, id ? id_len : c->id_len,
                        label ? label : c->label, label ? label_len : strlen(c->label), tmpl, 3,
                        &n);
    if (rv != CKR_OK)
        return rv;
    n->handle = c->handle;
    n->read_only = c->read_only;
    if (c->kv_name != NULL && (n->kv_name = strdup(c->kv_name)) == NULL) {
        vtp_cert_unref(n);
        return CKR_HOST_MEMORY;
    }
    *out = n;
    return CKR_OK;
}

CK_RV vtp_key_relabel(const struct vtp_key *k, const unsigned char *id, size_t id_len,
                      const char *label, size_t label_len, struct vtp_key **out)
{
    struct vtp_key *n = calloc(1, sizeof(*n));

    if (n == NULL)
        return CKR_HOST_MEMORY;
    *n = *k;
    n->refs = 1;
    n->name = strdup(k->name);
    n->label = label ? strndup(label, label_len) : strdup(k->label);
    n->pkey = k->pkey;
    EVP_PKEY_up_ref(n->pkey);
    n->spki = n->id = n->ec_point = n->modulus = n->exponent = NULL;
    n->birth = k->birth ? strdup(k->birth) : NULL;
    if (n->name == NULL || n->label == NULL || (k->birth != NULL && n->birth == NULL) ||
        !dup_bytes(k->spki, k->spki_len, &n->spki, &n->spki_len) ||
        !dup_bytes(id ? id : k->id, id ? id_len : k->id_len, &n->id, &n->id_len) ||
        (k->ec_point && !dup_bytes(k->ec_point, k->ec_point_len, &n->ec_point, &n->ec_point_len)) ||
        (k->modulus && !dup_bytes(k->modulus, k->modulus_len, &n->modulus, &n->modulus_len)) ||
        (k->exponent &&
         !dup_bytes(k->exponent, k->exponent_len, &n->exponent, &n->exponent_len))) {
        vtp_key_unref(n);
        return CKR_HOST_MEMORY;
    }
    n->id_stored = true;
    *out = n;
    return CKR_OK;
}
