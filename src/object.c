/* object.c - key objects built from Transit keys. */
#include "common.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/bn.h>
#include <openssl/x509.h>

#include "object.h"
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

static CK_RV bn_param(EVP_PKEY *pkey, const char *param, unsigned char **out, size_t *out_len)
{
    BIGNUM *bn = NULL;
    CK_RV rv = CKR_GENERAL_ERROR;
    int n;

    if (EVP_PKEY_get_bn_param(pkey, param, &bn) != 1)
        goto out;
    n = BN_num_bytes(bn);
    *out = malloc(n > 0 ? (size_t)n : 1);
    if (*out == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    *out_len = (size_t)BN_bn2bin(bn, *out);
    rv = CKR_OK;
out:
    BN_free(bn);
    return rv;
}

static CK_RV derive_public(struct vtp_key *k)
{
    unsigned char raw[160];
    size_t raw_len = 0;

    switch (k->kt->kind) {
    case VTP_KIND_EC:
        if (EVP_PKEY_get_base_id(k->pkey) != EVP_PKEY_EC ||
            EVP_PKEY_get_bits(k->pkey) != (int)k->kt->bits)
            return CKR_KEY_TYPE_INCONSISTENT;
        if (EVP_PKEY_get_octet_string_param(k->pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, raw,
                                            sizeof(raw), &raw_len) != 1)
            return CKR_GENERAL_ERROR;
        break;
    case VTP_KIND_ED25519:
        raw_len = sizeof(raw);
        if (EVP_PKEY_get_base_id(k->pkey) != EVP_PKEY_ED25519 ||
            EVP_PKEY_get_raw_public_key(k->pkey, raw, &raw_len) != 1)
            return CKR_KEY_TYPE_INCONSISTENT;
        break;
    case VTP_KIND_RSA:
        if (EVP_PKEY_get_base_id(k->pkey) != EVP_PKEY_RSA ||
            EVP_PKEY_get_bits(k->pkey) != (int)k->kt->bits)
            return CKR_KEY_TYPE_INCONSISTENT;
        if (bn_param(k->pkey, OSSL_PKEY_PARAM_RSA_N, &k->modulus, &k->modulus_len) != CKR_OK ||
            bn_param(k->pkey, OSSL_PKEY_PARAM_RSA_E, &k->exponent, &k->exponent_len) != CKR_OK)
            return CKR_HOST_MEMORY;
        return CKR_OK;
    }
    k->ec_point = der_octet_string(raw, raw_len, &k->ec_point_len);
    return k->ec_point ? CKR_OK : CKR_HOST_MEMORY;
}

static CK_RV apply_meta(struct vtp_key *k, const json_t *meta, const char *name_prefix)
{
    const char *hex = NULL, *label = NULL;
    const char *shortname = k->name;
    size_t plen = name_prefix ? strlen(name_prefix) : 0;

    if (plen > 0 && strncmp(k->name, name_prefix, plen) == 0 && k->name[plen] != '\0')
        shortname = k->name + plen;
    if (json_is_object(meta)) {
        hex = json_string_value(json_object_get(meta, "id"));
        label = json_string_value(json_object_get(meta, "label"));
    }
    if (hex != NULL && hex[0] != '\0') {
        if (!vtp_hex_decode(hex, &k->id, &k->id_len)) {
            VTP_LOG_WARN("key %s: stored id is not hex, using the default id", k->name);
            k->id = NULL;
        } else {
            k->id_stored = true;
        }
    }
    if (k->id == NULL) {
        CK_RV rv = vtp_key_default_id(shortname, &k->id, &k->id_len);
        if (rv != CKR_OK)
            return rv;
    }
    k->label = strdup(label != NULL ? label : shortname);
    if (label != NULL)
        k->id_stored = true;
    return k->label ? CKR_OK : CKR_HOST_MEMORY;
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
    k->name = strdup(tk->name);
    k->spki = malloc(tk->spki_len);
    if (k->name == NULL || k->spki == NULL) {
        rv = CKR_HOST_MEMORY;
        goto fail;
    }
    memcpy(k->spki, tk->spki, tk->spki_len);
    k->spki_len = tk->spki_len;
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
