/* sign.c - signing through Transit, verification locally with OpenSSL. */
#include "common.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/rsa.h>

#include "sign.h"
#include "batch.h"
#include "vault/transit.h"

/* Checks and records CK_RSA_PKCS_PSS_PARAMS. */
static CK_RV pss_params(struct vtp_op *op, const CK_MECHANISM *m, bool sign)
{
    const CK_RSA_PKCS_PSS_PARAMS *p = m->pParameter;
    const char *md, *mgf_md;
    long max_salt;
    int hlen;
    CK_ULONG slen;

    if (p == NULL || m->ulParameterLen != sizeof(*p)) {
        VTP_LOG_INFO("%s needs CK_RSA_PKCS_PSS_PARAMS", vtp_mech_name(m->mechanism));
        return CKR_MECHANISM_PARAM_INVALID;
    }
    md = vtp_mech_md_for_hash(p->hashAlg);
    mgf_md = vtp_mech_md_for_mgf(p->mgf);
    if (md == NULL || mgf_md == NULL || strcmp(md, mgf_md) != 0) {
        VTP_LOG_INFO("PSS: hash %s with MGF 0x%lx: Transit uses MGF1 with the signing hash",
                     vtp_mech_name(p->hashAlg), p->mgf);
        return CKR_MECHANISM_PARAM_INVALID;
    }
    if (op->mech->md_name != NULL && strcmp(op->mech->md_name, md) != 0) {
        VTP_LOG_INFO("%s: PSS hashAlg %s differs from the mechanism's hash",
                     vtp_mech_name(m->mechanism), vtp_mech_name(p->hashAlg));
        return CKR_MECHANISM_PARAM_INVALID;
    }
    hlen = EVP_MD_get_size(vtp_md(md));
    max_salt = (long)((op->key->kt->bits - 1 + 7) / 8) - 2 - hlen;
    if (hlen <= 0 || max_salt < 0) {
        VTP_LOG_INFO("PSS with %s does not fit this key", md);
        return CKR_MECHANISM_PARAM_INVALID;
    }
    slen = p->sLen;
    if (slen >= (CK_ULONG)-3) {
        /* Not a length but OpenSSL's special values, which libp11's engine passes through:
         * -1 the digest length, -2 and -3 the largest salt. Each becomes that exact length, so
         * Transit signs with what the caller asked for (a negative length used to reach Transit
         * as "not sent", which it reads as the largest salt even for -1). */
        slen = slen == (CK_ULONG)-1 ? (CK_ULONG)hlen : (CK_ULONG)max_salt;
        VTP_LOG_DEBUG("PSS: sLen %ld (an OpenSSL salt length code) taken as %lu bytes",
                      (long)p->sLen, slen);
    }
    if (slen > (CK_ULONG)max_salt) {
        VTP_LOG_INFO("PSS: salt length %lu is more than %ld for this key", slen, max_salt);
        return CKR_MECHANISM_PARAM_INVALID;
    }
    /* Transit reads salt_length 0 as "auto" (the largest salt): it cannot sign with an empty
     * salt. Verification, done here, can. */
    if (slen == 0 && sign) {
        VTP_LOG_INFO("PSS with sLen 0: Transit cannot sign without a salt (0 means the largest "
                     "salt to it); use sLen = hash length");
        return CKR_MECHANISM_PARAM_INVALID;
    }
    op->pss_md = md;
    op->salt_len = (long)slen;
    return CKR_OK;
}

static CK_RV op_init(struct vtp_session *s, struct vtp_op *op, CK_MECHANISM_PTR m,
                     CK_OBJECT_HANDLE h, bool sign)
{
    const struct vtp_mech *mech;
    struct vtp_key *key = NULL;
    CK_OBJECT_CLASS cls;
    CK_RV rv;

    VTP_RETURN_VAL_IF_FAIL(m != NULL, CKR_ARGUMENTS_BAD);
    if (op->active)
        return CKR_OPERATION_ACTIVE;
    mech = vtp_mech_lookup(m->mechanism);
    if (mech == NULL || !(mech->flags & (sign ? CKF_SIGN : CKF_VERIFY))) {
        VTP_LOG_INFO("mechanism %s (0x%lx) cannot %s", vtp_mech_name(m->mechanism),
                     m->mechanism, sign ? "sign" : "verify");
        return CKR_MECHANISM_INVALID;
    }
    rv = vtp_cache_lookup(vtp_slot_cache(vtp_session_slot(s)), h, &key, &cls);
    if (rv != CKR_OK)
        return CKR_KEY_HANDLE_INVALID;
    if (cls != (sign ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY)) {
        VTP_LOG_INFO("object %lu is a %s key: it cannot %s", h,
                     cls == CKO_PRIVATE_KEY ? "private" : "public", sign ? "sign" : "verify");
        rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
        goto fail;
    }
    if (key->kt->kind != mech->kind) {
        VTP_LOG_INFO("%s does not fit key %s of type %s", vtp_mech_name(mech->type), key->name,
                     key->kt->transit_type);
        rv = CKR_KEY_TYPE_INCONSISTENT;
        goto fail;
    }
    if (!(key->usage & (sign ? VTP_USE_SIGN : VTP_USE_VERIFY))) {
        VTP_LOG_INFO("key %s was made with %s = FALSE", key->name,
                     sign ? "CKA_SIGN" : "CKA_VERIFY");
        rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
        goto fail;
    }
    if (sign && key->private_is_private && !vtp_slot_is_logged_in(vtp_session_slot(s))) {
        rv = CKR_USER_NOT_LOGGED_IN;
        goto fail;
    }
    memset(op, 0, sizeof(*op));
    op->mech = mech;
    op->key = key;
    key = NULL;
    op->salt_len = -1;
    if (mech->pss) {
        rv = pss_params(op, m, sign);
        if (rv != CKR_OK)
            goto fail_op;
    } else if (m->pParameter != NULL || m->ulParameterLen != 0) {
        VTP_LOG_INFO("%s takes no parameters", vtp_mech_name(mech->type));
        rv = CKR_MECHANISM_PARAM_INVALID;
        goto fail_op;
    }
    if (mech->input == VTP_INPUT_HASH) {
        op->md = EVP_MD_CTX_new();
        if (op->md == NULL) {
            rv = CKR_HOST_MEMORY;
            goto fail_op;
        }
        if (EVP_DigestInit_ex(op->md, vtp_md(mech->md_name), NULL) != 1) {
            rv = CKR_GENERAL_ERROR;
            goto fail_op;
        }
    }
    op->active = true;
    VTP_LOG_DEBUG("%s with %s v%lu", vtp_mech_name(mech->type), op->key->name,
                  op->key->version);
    return CKR_OK;
fail_op:
    vtp_op_reset(op);
fail:
    vtp_key_unref(key);
    return rv;
}

CK_RV vtp_sign_init(struct vtp_session *s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    return op_init(s, vtp_session_op(s, VTP_OP_SIGN), mech, key, true);
}

CK_RV vtp_verify_init(struct vtp_session *s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    return op_init(s, vtp_session_op(s, VTP_OP_VERIFY), mech, key, false);
}

static CK_RV op_update(struct vtp_op *op, CK_BYTE_PTR part, CK_ULONG len)
{
    unsigned char *nb;

    if (!op->active)
        return CKR_OPERATION_NOT_INITIALIZED;
    VTP_RETURN_VAL_IF_FAIL(part != NULL || len == 0, CKR_ARGUMENTS_BAD);
    op->multipart = true;
    if (op->md != NULL)
        return EVP_DigestUpdate(op->md, part, len) == 1 ? CKR_OK : CKR_GENERAL_ERROR;
    if (len > VTP_SIGN_MAX_INPUT - op->buf_len) {
        VTP_LOG_INFO("%s: more than %u bytes of input", vtp_mech_name(op->mech->type),
                     VTP_SIGN_MAX_INPUT);
        return CKR_DATA_LEN_RANGE;
    }
    if (len == 0)
        return CKR_OK;
    nb = realloc(op->buf, op->buf_len + len);
    if (nb == NULL)
        return CKR_HOST_MEMORY;
    memcpy(nb + op->buf_len, part, len);
    op->buf = nb;
    op->buf_len += len;
    return CKR_OK;
}

/* The bytes that get signed or verified: a digest made here, or the caller's input. */
static CK_RV op_input(struct vtp_op *op, const unsigned char *data, size_t len, bool final,
                      unsigned char *md, size_t *md_len, const unsigned char **in, size_t *in_len)
{
    unsigned int n = 0;

    if (op->md == NULL) {
        *in = final ? op->buf : data;
        *in_len = final ? op->buf_len : len;
        return CKR_OK;
    }
    if (!final && EVP_DigestUpdate(op->md, data, len) != 1)
        return CKR_GENERAL_ERROR;
    if (EVP_DigestFinal_ex(op->md, md, &n) != 1)
        return CKR_GENERAL_ERROR;
    *md_len = n;
    *in = md;
    *in_len = n;
    return CKR_OK;
}

/* Input length rules checked before any network call. */
static CK_RV check_input_len(const struct vtp_op *op, size_t len)
{
    size_t k = op->key->kt->sig_len;

    switch (op->mech->input) {
    case VTP_INPUT_DIGEST:
        if (op->mech->pss) {
            int hlen = EVP_MD_get_size(vtp_md(op->pss_md));
            if (hlen <= 0 || len != (size_t)hlen)
                goto bad;
        } else if (len == 0 || len > 64) {
            goto bad;
        }
        return CKR_OK;
    case VTP_INPUT_DIGESTINFO:
        if (len == 0 || len > k - 11)
            goto bad;
        return CKR_OK;
    case VTP_INPUT_MESSAGE:
        return len <= VTP_SIGN_MAX_INPUT ? CKR_OK : CKR_DATA_LEN_RANGE;
    case VTP_INPUT_HASH:
        return CKR_OK;
    case VTP_INPUT_NONE:
        break;
    }
bad:
    VTP_LOG_INFO("%s: %zu bytes of input is not a valid length", vtp_mech_name(op->mech->type),
                 len);
    return CKR_DATA_LEN_RANGE;
}

/* One DER INTEGER at *p (before end), positive and minimally encoded, written right-aligned
 * into out[0..len-1]. */
static bool der_uint(const unsigned char **p, const unsigned char *end, unsigned char *out,
                     size_t len)
{
    const unsigned char *q = *p;
    size_t n;

    if (end - q < 2 || q[0] != 0x02 || q[1] == 0 || q[1] > 0x7f || (size_t)(end - q - 2) < q[1])
        return false;
    n = q[1];
    q += 2;
    if (q[0] & 0x80)
        return false; /* negative */
    if (q[0] == 0 && n > 1) {
        if (!(q[1] & 0x80))
            return false; /* a leading zero that is not needed: not DER */
        q++;
        n--;
    }
    if (n > len)
        return false;
    memset(out, 0, len - n);
    memcpy(out + len - n, q, n);
    *p = q + n;
    return true;
}

/* ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (DER) -> r || s, each out_len / 2
 * bytes. Read by hand: it is on every EC signature's path, and d2i_ECDSA_SIG with two BIGNUMs
 * cost more than the rest of the module's work on the answer. */
CK_RV vtp_ecdsa_der_to_raw(const unsigned char *der, size_t der_len, unsigned char *out,
                           size_t out_len)
{
    const unsigned char *p = der, *end = der + der_len;
    size_t len;

    if (der_len < 2 || p[0] != 0x30)
        goto bad;
    if (p[1] < 0x80) {
        len = p[1];
        p += 2;
    } else if (p[1] == 0x81 && der_len >= 3 && p[2] >= 0x80) {
        len = p[2];
        p += 3;
    } else {
        goto bad;
    }
    if ((size_t)(end - p) != len)
        goto bad;
    if (!der_uint(&p, end, out, out_len / 2) || !der_uint(&p, end, out + out_len / 2, out_len / 2))
        goto bad;
    if (p != end)
        goto bad;
    return CKR_OK;
bad:
    VTP_LOG_ERR("Transit returned an ECDSA signature that is not DER, or too long for the curve");
    return CKR_DEVICE_ERROR;
}

/* One Transit sign request for the operation's key and version. */
static CK_RV transit_sign(struct vtp_session *s, struct vtp_op *op, const unsigned char *in,
                          size_t in_len, unsigned char *out, size_t out_len)
{
    const struct vtp_mech *m = op->mech;
    struct vtp_sign_params p = {NULL, true, m->transit_sigalg, op->salt_len};
    struct vtp_sign_item item = {in, in_len, NULL, 0, CKR_OK};
    CK_RV rv;

    switch (m->input) {
    case VTP_INPUT_HASH:
    case VTP_INPUT_DIGESTINFO:
        p.hash_algorithm = m->transit_hash;
        break;
    case VTP_INPUT_DIGEST:
        /* ECDSA ignores the name when prehashed; PSS needs the digest's own hash. */
        p.hash_algorithm = op->pss_md ? vtp_mech_transit_hash_for_md(op->pss_md) : NULL;
        break;
    case VTP_INPUT_MESSAGE:
        p.prehashed = false;
        break;
    case VTP_INPUT_NONE:
        return CKR_MECHANISM_INVALID;
    }
    /* Transit signs the items of a batch one after another in one request, while it works on
     * several requests at once. For ECDSA and Ed25519 a signature costs far less than a
     * request, and batching wins by far; an RSA signature costs about as much server time as
     * the request around it, and RSA cohorts still signed 23-35% more per second than a
     * request each at 16 and 64 threads (docs/performance.md): batch_rsa = false sends each
     * RSA signature alone. */
    rv = vtp_batch_sign(vtp_slot_transit(vtp_session_slot(s)), op->key->name, op->key->version, &p,
                        op->key->kt->kind == VTP_KIND_RSA, &item);
    if (rv == CKR_OK)
        rv = item.rv;
    if (rv != CKR_OK)
        goto out;
    if (op->key->kt->kind == VTP_KIND_EC) {
        rv = vtp_ecdsa_der_to_raw(item.sig, item.sig_len, out, out_len);
    } else if (item.sig_len != out_len) {
        VTP_LOG_ERR("Transit returned a %zu-byte signature, %zu expected", item.sig_len, out_len);
        rv = CKR_DEVICE_ERROR;
    } else {
        memcpy(out, item.sig, out_len);
    }
out:
    free(item.sig);
    return rv;
}

static CK_RV sign_common(struct vtp_session *s, const unsigned char *data, size_t len, bool final,
                         CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
    struct vtp_op *op = vtp_session_op(s, VTP_OP_SIGN);
    unsigned char md[EVP_MAX_MD_SIZE];
    const unsigned char *in = NULL;
    size_t md_len = 0, in_len = 0, need;
    CK_RV rv;

    if (!op->active)
        return CKR_OPERATION_NOT_INITIALIZED;
    if (sig_len == NULL) {
        rv = CKR_ARGUMENTS_BAD; /* ends the operation, as any error but BUFFER_TOO_SMALL */
        goto end;
    }
    if (!final && op->multipart) {
        /* a single-part call after C_*Update: not in its list (PKCS#11 v2.40) as
         * CKR_OPERATION_ACTIVE; no single-part operation is active (as SoftHSM says) */
        rv = CKR_OPERATION_NOT_INITIALIZED;
        goto end;
    }
    if (!final && data == NULL && len != 0) {
        rv = CKR_ARGUMENTS_BAD;
        goto end;
    }
    need = op->key->kt->sig_len;
    /* Length questions are answered from the cached key: no network, the operation stays. */
    if (sig == NULL) {
        *sig_len = need;
        return CKR_OK;
    }
    if (*sig_len < need) {
        *sig_len = need;
        return CKR_BUFFER_TOO_SMALL;
    }
    if (op->md == NULL) {
        rv = check_input_len(op, final ? op->buf_len : len);
        if (rv != CKR_OK)
            goto end;
    }
    rv = op_input(op, data, len, final, md, &md_len, &in, &in_len);
    if (rv != CKR_OK)
        goto end;
    rv = transit_sign(s, op, in, in_len, sig, need);
    if (rv == CKR_OK)
        *sig_len = need;
end:
    vtp_op_reset(op);
    return rv;
}

CK_RV vtp_sign(struct vtp_session *s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
               CK_ULONG_PTR sig_len)
{
    return sign_common(s, data, len, false, sig, sig_len);
}

CK_RV vtp_sign_update(struct vtp_session *s, CK_BYTE_PTR part, CK_ULONG len)
{
    CK_RV rv = op_update(vtp_session_op(s, VTP_OP_SIGN), part, len);

    if (rv != CKR_OK && rv != CKR_OPERATION_NOT_INITIALIZED)
        vtp_op_reset(vtp_session_op(s, VTP_OP_SIGN));
    return rv;
}

CK_RV vtp_sign_final(struct vtp_session *s, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
    return sign_common(s, NULL, 0, true, sig, sig_len);
}

/* Local verification with the cached public key. */
static CK_RV verify_local(const struct vtp_op *op, const unsigned char *in, size_t in_len,
                          const unsigned char *sig, size_t sig_len)
{
    const struct vtp_key *k = op->key;
    EVP_PKEY_CTX *pctx = NULL;
    EVP_MD_CTX *mctx = NULL;
    unsigned char *der = NULL;
    ECDSA_SIG *es = NULL;
    const unsigned char *vsig = sig;
    size_t vsig_len = sig_len;
    CK_RV rv = CKR_SIGNATURE_INVALID;
    int ok = 0;

    if (sig_len != k->kt->sig_len)
        return CKR_SIGNATURE_LEN_RANGE;
    if (k->kt->kind == VTP_KIND_ED25519) {
        mctx = EVP_MD_CTX_new();
        if (mctx == NULL)
            return CKR_HOST_MEMORY;
        if (EVP_DigestVerifyInit(mctx, NULL, NULL, NULL, k->pkey) == 1)
            ok = EVP_DigestVerify(mctx, sig, sig_len, in, in_len);
        goto done;
    }
    if (k->kt->kind == VTP_KIND_EC) {
        BIGNUM *r = BN_bin2bn(sig, (int)sig_len / 2, NULL);
        BIGNUM *s = BN_bin2bn(sig + sig_len / 2, (int)sig_len / 2, NULL);
        int n;
        es = ECDSA_SIG_new();
        if (r == NULL || s == NULL || es == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
            BN_free(r);
            BN_free(s);
            rv = CKR_HOST_MEMORY;
            goto out;
        }
        n = i2d_ECDSA_SIG(es, &der);
        if (n <= 0) {
            rv = CKR_HOST_MEMORY;
            goto out;
        }
        vsig = der;
        vsig_len = (size_t)n;
    }
    pctx = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
    if (pctx == NULL || EVP_PKEY_verify_init(pctx) != 1) {
        rv = CKR_GENERAL_ERROR;
        goto out;
    }
    if (k->kt->kind == VTP_KIND_RSA) {
        const char *md = op->mech->pss ? op->pss_md : op->mech->md_name;
        int pad = op->mech->pss ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING;
        if (EVP_PKEY_CTX_set_rsa_padding(pctx, pad) != 1 ||
            (md != NULL &&
             EVP_PKEY_CTX_set_signature_md(pctx, vtp_md(md)) != 1) ||
            (op->mech->pss &&
             (EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, vtp_md(md)) != 1 ||
              EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, (int)op->salt_len) != 1))) {
            rv = CKR_GENERAL_ERROR;
            goto out;
        }
    }
    ok = EVP_PKEY_verify(pctx, vsig, vsig_len, in, in_len);
done:
    rv = ok == 1 ? CKR_OK : CKR_SIGNATURE_INVALID;
out:
    EVP_PKEY_CTX_free(pctx);
    EVP_MD_CTX_free(mctx);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    return rv;
}

static CK_RV verify_common(struct vtp_session *s, const unsigned char *data, size_t len,
                           bool final, CK_BYTE_PTR sig, CK_ULONG sig_len)
{
    struct vtp_op *op = vtp_session_op(s, VTP_OP_VERIFY);
    unsigned char md[EVP_MAX_MD_SIZE];
    const unsigned char *in = NULL;
    size_t md_len = 0, in_len = 0;
    CK_RV rv;

    if (!op->active)
        return CKR_OPERATION_NOT_INITIALIZED;
    if (!final && op->multipart) {
        /* a single-part call after C_*Update: not in its list (PKCS#11 v2.40) as
         * CKR_OPERATION_ACTIVE; no single-part operation is active (as SoftHSM says) */
        rv = CKR_OPERATION_NOT_INITIALIZED;
        goto end;
    }
    if (sig == NULL || (!final && data == NULL && len != 0)) {
        rv = CKR_ARGUMENTS_BAD;
        goto end;
    }
    if (op->md == NULL) {
        rv = check_input_len(op, final ? op->buf_len : len);
        if (rv != CKR_OK)
            goto end;
    }
    rv = op_input(op, data, len, final, md, &md_len, &in, &in_len);
    if (rv == CKR_OK)
        rv = verify_local(op, in, in_len, sig, sig_len);
end:
    vtp_op_reset(op);
    return rv;
}

CK_RV vtp_verify(struct vtp_session *s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                 CK_ULONG sig_len)
{
    return verify_common(s, data, len, false, sig, sig_len);
}

CK_RV vtp_verify_update(struct vtp_session *s, CK_BYTE_PTR part, CK_ULONG len)
{
    CK_RV rv = op_update(vtp_session_op(s, VTP_OP_VERIFY), part, len);

    if (rv != CKR_OK && rv != CKR_OPERATION_NOT_INITIALIZED)
        vtp_op_reset(vtp_session_op(s, VTP_OP_VERIFY));
    return rv;
}

CK_RV vtp_verify_final(struct vtp_session *s, CK_BYTE_PTR sig, CK_ULONG sig_len)
{
    return verify_common(s, NULL, 0, true, sig, sig_len);
}
