/* crypt.c - RSA-OAEP (decrypt through Transit, encrypt locally), digests, random. */
#include "common.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <stdlib.h>
#include <string.h>
#include <openssl/rsa.h>

#include "crypt.h"
#include "slot.h"
#include "vault/transit.h"

#define OAEP_HASH_LEN 32 /* SHA-256 */

/* Transit does RSA-OAEP with SHA-256, MGF1-SHA-256 and an empty label, nothing else. */
static CK_RV oaep_params(const CK_MECHANISM *m)
{
    const CK_RSA_PKCS_OAEP_PARAMS *p = m->pParameter;

    if (p == NULL || m->ulParameterLen != sizeof(*p)) {
        VTP_LOG_INFO("CKM_RSA_PKCS_OAEP needs CK_RSA_PKCS_OAEP_PARAMS");
        return CKR_MECHANISM_PARAM_INVALID;
    }
    if (p->hashAlg != CKM_SHA256 || p->mgf != CKG_MGF1_SHA256 ||
        (p->source != 0 && p->source != CKZ_DATA_SPECIFIED) || p->ulSourceDataLen != 0) {
        VTP_LOG_INFO("RSA-OAEP: Transit uses SHA-256 with MGF1-SHA-256 and no label only "
                     "(asked: %s, MGF 0x%lx, label of %lu bytes)",
                     vtp_mech_name(p->hashAlg), p->mgf, p->ulSourceDataLen);
        return CKR_MECHANISM_PARAM_INVALID;
    }
    return CKR_OK;
}

static CK_RV crypt_init(struct vtp_session *s, struct vtp_op *op, CK_MECHANISM_PTR m,
                        CK_OBJECT_HANDLE h, bool encrypt)
{
    struct vtp_key *key = NULL;
    CK_OBJECT_CLASS cls;
    CK_RV rv;

    /* C_EncryptInit's list (PKCS#11 v2.40) has no CKR_ARGUMENTS_BAD; pkcs11test takes either */
    VTP_RETURN_VAL_IF_FAIL(m != NULL, encrypt ? CKR_MECHANISM_INVALID : CKR_ARGUMENTS_BAD);
    if (op->active)
        return CKR_OPERATION_ACTIVE;
    if (m->mechanism != CKM_RSA_PKCS_OAEP) {
        VTP_LOG_INFO("%s: only CKM_RSA_PKCS_OAEP can %s", vtp_mech_name(m->mechanism),
                     encrypt ? "encrypt" : "decrypt");
        return CKR_MECHANISM_INVALID;
    }
    rv = oaep_params(m);
    if (rv != CKR_OK)
        return rv;
    if (vtp_cache_lookup(vtp_slot_cache(vtp_session_slot(s)), h, &key, &cls) != CKR_OK)
        return CKR_KEY_HANDLE_INVALID;
    if (key->kt->kind != VTP_KIND_RSA) {
        rv = CKR_KEY_TYPE_INCONSISTENT;
    } else if (cls != (encrypt ? CKO_PUBLIC_KEY : CKO_PRIVATE_KEY) ||
               !(key->usage & (encrypt ? VTP_USE_ENCRYPT : VTP_USE_DECRYPT))) {
        VTP_LOG_INFO("object %lu may not %s", h, encrypt ? "encrypt" : "decrypt");
        rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
    } else if (!encrypt && key->private_is_private && !vtp_slot_is_logged_in(vtp_session_slot(s))) {
        rv = CKR_USER_NOT_LOGGED_IN;
    }
    if (rv != CKR_OK) {
        vtp_key_unref(key);
        return rv;
    }
    memset(op, 0, sizeof(*op));
    op->active = true;
    op->key = key;
    op->mech = vtp_mech_lookup(CKM_RSA_PKCS_OAEP);
    return CKR_OK;
}

CK_RV vtp_encrypt_init(struct vtp_session *s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    return crypt_init(s, vtp_session_op(s, VTP_OP_ENCRYPT), mech, key, true);
}

CK_RV vtp_decrypt_init(struct vtp_session *s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    return crypt_init(s, vtp_session_op(s, VTP_OP_DECRYPT), mech, key, false);
}

CK_RV vtp_encrypt(struct vtp_session *s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                  CK_ULONG_PTR out_len)
{
    struct vtp_op *op = vtp_session_op(s, VTP_OP_ENCRYPT);
    size_t k, len;
    EVP_PKEY_CTX *ctx = NULL;
    CK_RV rv = CKR_GENERAL_ERROR;

    if (!op->active)
        return CKR_OPERATION_NOT_INITIALIZED;
    if (out_len == NULL || (in == NULL && in_len != 0)) {
        rv = CKR_ARGUMENTS_BAD;
        goto end;
    }
    k = op->key->kt->sig_len;
    if (in_len > k - 2 * OAEP_HASH_LEN - 2) {
        VTP_LOG_INFO("RSA-OAEP: %lu bytes is more than %zu for this key", in_len,
                     k - 2 * OAEP_HASH_LEN - 2);
        rv = CKR_DATA_LEN_RANGE;
        goto end;
    }
    if (out == NULL) {
        *out_len = k;
        return CKR_OK;
    }
    if (*out_len < k) {
        *out_len = k;
        return CKR_BUFFER_TOO_SMALL;
    }
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, op->key->pkey, NULL);
    len = *out_len;
    if (ctx == NULL || EVP_PKEY_encrypt_init(ctx) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) != 1 ||
        EVP_PKEY_encrypt(ctx, out, &len, in, in_len) != 1)
        goto end;
    *out_len = len;
    rv = CKR_OK;
end:
    EVP_PKEY_CTX_free(ctx);
    vtp_op_reset(op);
    return rv;
}

CK_RV vtp_decrypt(struct vtp_session *s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                  CK_ULONG_PTR out_len)
{
    struct vtp_op *op = vtp_session_op(s, VTP_OP_DECRYPT);
    size_t k, max;
    CK_RV rv;

    if (!op->active)
        return CKR_OPERATION_NOT_INITIALIZED;
    if (out_len == NULL || (in == NULL && in_len != 0)) {
        rv = CKR_ARGUMENTS_BAD;
        goto end;
    }
    k = op->key->kt->sig_len;
    max = k - 2 * OAEP_HASH_LEN - 2;
    if (op->result != NULL) {
        /* A retry after CKR_BUFFER_TOO_SMALL gets the kept plaintext only for the same
         * ciphertext; another one is decrypted afresh. */
        unsigned char md[SHA256_DIGEST_LENGTH];
        SHA256(in, in_len, md);
        if (CRYPTO_memcmp(md, op->result_of, sizeof(md)) != 0) {
            OPENSSL_clear_free(op->result, op->result_len);
            op->result = NULL;
            op->result_len = 0;
        }
    }
    if (op->result == NULL) {
        if (in_len != k) {
            VTP_LOG_INFO("RSA-OAEP: a ciphertext of %lu bytes for a %zu-byte key", in_len, k);
            rv = CKR_ENCRYPTED_DATA_LEN_RANGE;
            goto end;
        }
        /* The length question is answered with the largest possible plaintext, offline. */
        if (out == NULL) {
            *out_len = max;
            return CKR_OK;
        }
        /* Transit's "decryption error" is VTP_ERR_DECRYPT_FAILED, which C_Decrypt returns as
         * CKR_ENCRYPTED_DATA_INVALID (src/errmap.c) */
        rv = vtp_transit_decrypt(vtp_slot_transit(vtp_session_slot(s)), op->key->name,
                                 op->key->version, in, in_len, &op->result, &op->result_len);
        if (rv != CKR_OK)
            goto end;
        SHA256(in, in_len, op->result_of);
    } else if (out == NULL) {
        *out_len = op->result_len;
        return CKR_OK;
    }
    if (*out_len < op->result_len) {
        *out_len = op->result_len; /* kept: the retry needs no second round trip */
        return CKR_BUFFER_TOO_SMALL;
    }
    memcpy(out, op->result, op->result_len);
    *out_len = op->result_len;
    rv = CKR_OK;
end:
    vtp_op_reset(op);
    return rv;
}

CK_RV vtp_digest_init(struct vtp_session *s, CK_MECHANISM_PTR m)
{
    struct vtp_op *op = vtp_session_op(s, VTP_OP_DIGEST);
    const struct vtp_mech *mech;

    VTP_RETURN_VAL_IF_FAIL(m != NULL, CKR_ARGUMENTS_BAD);
    if (op->active)
        return CKR_OPERATION_ACTIVE;
    mech = vtp_mech_lookup(m->mechanism);
    if (mech == NULL || !(mech->flags & CKF_DIGEST))
        return CKR_MECHANISM_INVALID;
    if (m->pParameter != NULL || m->ulParameterLen != 0)
        return CKR_MECHANISM_PARAM_INVALID;
    memset(op, 0, sizeof(*op));
    op->mech = mech;
    op->md = EVP_MD_CTX_new();
    if (op->md == NULL)
        return CKR_HOST_MEMORY;
    if (EVP_DigestInit_ex(op->md, vtp_md(mech->md_name), NULL) != 1) {
        vtp_op_reset(op);
        return CKR_GENERAL_ERROR;
    }
    op->active = true;
    return CKR_OK;
}

static CK_RV digest_out(struct vtp_op *op, const unsigned char *in, size_t in_len, bool final,
                        CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    size_t n = (size_t)EVP_MD_CTX_get_size(op->md);
    unsigned int got = 0;
    CK_RV rv = CKR_GENERAL_ERROR;

    if (out_len == NULL) {
        vtp_op_reset(op);
        return CKR_ARGUMENTS_BAD;
    }
    if (out == NULL) {
        *out_len = n;
        return CKR_OK;
    }
    if (*out_len < n) {
        *out_len = n;
        return CKR_BUFFER_TOO_SMALL;
    }
    if ((final || EVP_DigestUpdate(op->md, in, in_len) == 1) &&
        EVP_DigestFinal_ex(op->md, out, &got) == 1) {
        *out_len = got;
        rv = CKR_OK;
    }
    vtp_op_reset(op);
    return rv;
}

CK_RV vtp_digest(struct vtp_session *s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                 CK_ULONG_PTR out_len)
{
    struct vtp_op *op = vtp_session_op(s, VTP_OP_DIGEST);

    if (!op->active)
        return CKR_OPERATION_NOT_INITIALIZED;
    if (op->multipart) {
        vtp_op_reset(op); /* C_Digest after C_DigestUpdate: see sign.c */
        return CKR_OPERATION_NOT_INITIALIZED;
    }
    if (in == NULL && in_len != 0) {
        vtp_op_reset(op);
        return CKR_ARGUMENTS_BAD;
    }
    return digest_out(op, in, in_len, false, out, out_len);
}

CK_RV vtp_digest_update(struct vtp_session *s, CK_BYTE_PTR in, CK_ULONG in_len)
{
    struct vtp_op *op = vtp_session_op(s, VTP_OP_DIGEST);

    if (!op->active)
        return CKR_OPERATION_NOT_INITIALIZED;
    if ((in == NULL && in_len != 0) || EVP_DigestUpdate(op->md, in, in_len) != 1) {
        vtp_op_reset(op);
        return in == NULL ? CKR_ARGUMENTS_BAD : CKR_GENERAL_ERROR;
    }
    op->multipart = true;
    return CKR_OK;
}

CK_RV vtp_digest_final(struct vtp_session *s, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    struct vtp_op *op = vtp_session_op(s, VTP_OP_DIGEST);

    if (!op->active)
        return CKR_OPERATION_NOT_INITIALIZED;
    return digest_out(op, NULL, 0, true, out, out_len);
}

CK_RV vtp_random(struct vtp_session *s, CK_BYTE_PTR out, CK_ULONG len)
{
    VTP_RETURN_VAL_IF_FAIL(out != NULL || len == 0, CKR_ARGUMENTS_BAD);
    if (len == 0)
        return CKR_OK;
    /* auth = pin: the slot's token exists only while it is logged in */
    if (vtp_slot_login_required(vtp_session_slot(s)) && !vtp_slot_is_logged_in(vtp_session_slot(s)))
        return CKR_USER_NOT_LOGGED_IN;
    return vtp_transit_random(vtp_slot_transit(vtp_session_slot(s)), out, len);
}
