/* bench-crypto.c - mechanisms, signing inputs, base64 and local verification for p11bench. */
#include "config.h"

#include <string.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>

#include "p11bench.h"

static const struct bench_mech mechs[] = {
    {"ecdsa", CKM_ECDSA, "CKM_ECDSA", BENCH_KIND_EC, BENCH_IN_DIGEST, false, NULL, NULL},
    {"ecdsa-sha256", CKM_ECDSA_SHA256, "CKM_ECDSA_SHA256", BENCH_KIND_EC, BENCH_IN_HASH, false,
     "sha2-256", NULL},
    {"rsa-pss", CKM_RSA_PKCS_PSS, "CKM_RSA_PKCS_PSS", BENCH_KIND_RSA, BENCH_IN_DIGEST, true,
     "sha2-256", "pss"},
    {"rsa-pss-sha256", CKM_SHA256_RSA_PKCS_PSS, "CKM_SHA256_RSA_PKCS_PSS", BENCH_KIND_RSA,
     BENCH_IN_HASH, true, "sha2-256", "pss"},
    {"sha256-rsa-pkcs-pss", CKM_SHA256_RSA_PKCS_PSS, "CKM_SHA256_RSA_PKCS_PSS", BENCH_KIND_RSA,
     BENCH_IN_HASH, true, "sha2-256", "pss"},
    {"rsa-pkcs", CKM_RSA_PKCS, "CKM_RSA_PKCS", BENCH_KIND_RSA, BENCH_IN_DIGESTINFO, false, "none",
     "pkcs1v15"},
    {"sha256-rsa-pkcs", CKM_SHA256_RSA_PKCS, "CKM_SHA256_RSA_PKCS", BENCH_KIND_RSA, BENCH_IN_HASH,
     false, "sha2-256", "pkcs1v15"},
    {"eddsa", CKM_EDDSA, "CKM_EDDSA", BENCH_KIND_ED25519, BENCH_IN_MESSAGE, false, NULL, NULL},
};

/* DER of DigestInfo { AlgorithmIdentifier { id-sha256, NULL }, OCTET STRING (32 bytes) }
 * without the digest itself (RFC 8017, section 9.2, note 1). */
static const unsigned char sha256_digestinfo[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                                  0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                                  0x01, 0x05, 0x00, 0x04, 0x20};

const struct bench_mech *bench_mech_lookup(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++) {
        if (strcmp(mechs[i].name, name) == 0)
            return &mechs[i];
    }
    return NULL;
}

const char *bench_mech_names(void)
{
    return "ecdsa, ecdsa-sha256, rsa-pss, rsa-pss-sha256 (= sha256-rsa-pkcs-pss), rsa-pkcs, "
           "sha256-rsa-pkcs, eddsa";
}

const char *bench_kind_name(enum bench_kind kind)
{
    switch (kind) {
    case BENCH_KIND_EC:
        return "EC";
    case BENCH_KIND_RSA:
        return "RSA";
    case BENCH_KIND_ED25519:
        return "Ed25519";
    }
    return "?";
}

/* splitmix64: cheap, good enough to make every message different. */
static uint64_t mix(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void bench_msg_make(struct bench_msg *m, const struct bench_mech *mech, size_t msg_len,
                    uint64_t seed, uint64_t counter)
{
    uint64_t state = seed ^ (counter * 0xd1342543de82ef95ULL);
    unsigned int dlen = 0;
    size_t i;

    if (msg_len > BENCH_MAX_MSG)
        msg_len = BENCH_MAX_MSG;
    for (i = 0; i < msg_len; i += 8) {
        uint64_t r = mix(&state);
        size_t n = msg_len - i < 8 ? msg_len - i : 8;
        memcpy(m->msg + i, &r, n);
    }
    m->msg_len = msg_len;
    if (EVP_Digest(m->msg, msg_len, m->digest, &dlen, EVP_sha256(), NULL) != 1 || dlen != 32)
        memset(m->digest, 0, sizeof(m->digest)); /* cannot happen with the default provider */

    switch (mech->input) {
    case BENCH_IN_HASH:
    case BENCH_IN_MESSAGE:
        memcpy(m->p11_in, m->msg, msg_len);
        m->p11_in_len = msg_len;
        break;
    case BENCH_IN_DIGEST:
        memcpy(m->p11_in, m->digest, 32);
        m->p11_in_len = 32;
        break;
    case BENCH_IN_DIGESTINFO:
        memcpy(m->p11_in, sha256_digestinfo, sizeof(sha256_digestinfo));
        memcpy(m->p11_in + sizeof(sha256_digestinfo), m->digest, 32);
        m->p11_in_len = sizeof(sha256_digestinfo) + 32;
        break;
    }
    /* Transit gets what the module would send: the digest, prehashed, except for pure EdDSA. */
    if (mech->input == BENCH_IN_HASH) {
        m->http_in = m->digest;
        m->http_in_len = 32;
    } else {
        m->http_in = m->p11_in;
        m->http_in_len = m->p11_in_len;
    }
}

/* PKCS#11 ECDSA signatures are r || s; OpenSSL verifies DER. Returns the DER length or 0. */
static size_t ecdsa_raw_to_der(const unsigned char *raw, size_t len, unsigned char *der,
                               size_t der_size)
{
    ECDSA_SIG *s = NULL;
    BIGNUM *r = NULL, *sv = NULL;
    unsigned char *p = der;
    size_t out = 0;
    int n;

    if (len == 0 || len % 2 != 0)
        return 0;
    s = ECDSA_SIG_new();
    r = BN_bin2bn(raw, (int)(len / 2), NULL);
    sv = BN_bin2bn(raw + len / 2, (int)(len / 2), NULL);
    if (s == NULL || r == NULL || sv == NULL || ECDSA_SIG_set0(s, r, sv) != 1)
        goto out;
    r = sv = NULL; /* owned by s now */
    n = i2d_ECDSA_SIG(s, NULL);
    if (n <= 0 || (size_t)n > der_size)
        goto out;
    if (i2d_ECDSA_SIG(s, &p) == n)
        out = (size_t)n;
out:
    BN_free(r);
    BN_free(sv);
    ECDSA_SIG_free(s);
    return out;
}

int bench_verify(EVP_PKEY *pub, const struct bench_mech *mech, const struct bench_msg *m,
                 const unsigned char *sig, size_t sig_len, bool der_ecdsa)
{
    unsigned char der[BENCH_MAX_SIG];
    EVP_MD_CTX *mctx = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    int ok = 0;

    if (mech->kind == BENCH_KIND_ED25519) {
        mctx = EVP_MD_CTX_new();
        if (mctx != NULL && EVP_DigestVerifyInit(mctx, NULL, NULL, NULL, pub) == 1)
            ok = EVP_DigestVerify(mctx, sig, sig_len, m->msg, m->msg_len) == 1;
        EVP_MD_CTX_free(mctx);
        return ok;
    }
    if (mech->kind == BENCH_KIND_EC && !der_ecdsa) {
        sig_len = ecdsa_raw_to_der(sig, sig_len, der, sizeof(der));
        if (sig_len == 0)
            return 0;
        sig = der;
    }
    ctx = EVP_PKEY_CTX_new(pub, NULL);
    if (ctx == NULL || EVP_PKEY_verify_init(ctx) != 1)
        goto out;
    if (mech->kind == BENCH_KIND_RSA) {
        if (EVP_PKEY_CTX_set_rsa_padding(ctx, mech->pss ? RSA_PKCS1_PSS_PADDING
                                                        : RSA_PKCS1_PADDING) != 1 ||
            EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1)
            goto out;
        if (mech->pss && (EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, BENCH_PSS_SALT) != 1 ||
                          EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) != 1))
            goto out;
    }
    ok = EVP_PKEY_verify(ctx, sig, sig_len, m->digest, sizeof(m->digest)) == 1;
out:
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

int bench_check_pub_kind(EVP_PKEY *pub, const struct bench_mech *mech, char *err, size_t errlen)
{
    int id = EVP_PKEY_get_base_id(pub), want = EVP_PKEY_NONE;

    switch (mech->kind) {
    case BENCH_KIND_EC:
        want = EVP_PKEY_EC;
        break;
    case BENCH_KIND_RSA:
        want = EVP_PKEY_RSA;
        break;
    case BENCH_KIND_ED25519:
        want = EVP_PKEY_ED25519;
        break;
    }
    if (id == want)
        return 0;
    snprintf(err, errlen, "the key is %s, mechanism %s needs an %s key",
             OBJ_nid2sn(id) != NULL ? OBJ_nid2sn(id) : "of an unknown type", mech->name,
             bench_kind_name(mech->kind));
    return -1;
}

void bench_b64_encode(const unsigned char *in, size_t len, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

long bench_b64_decode(const char *in, size_t in_len, unsigned char *out, size_t out_size)
{
    int n, pad = 0;

    if (in_len == 0)
        return 0;
    if (in_len % 4 != 0 || in_len / 4 * 3 > out_size || in_len > 0x7fffffff)
        return -1;
    if (in[in_len - 1] == '=')
        pad++;
    if (in_len >= 2 && in[in_len - 2] == '=')
        pad++;
    n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)in_len);
    if (n < pad)
        return -1;
    return (long)n - pad;
}
