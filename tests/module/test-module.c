/* test-module.c - drives the module through C_GetFunctionList against a real OpenBao/Vault.
 *
 * Runs under tests/lib/run-test, which provides VAULT_ADDR/VAULT_TOKEN, a config whose slot
 * uses a unique key_prefix (VTP_TEST_PREFIX) and kv_mount, and removes the keys afterwards.
 * Every signature the module makes is verified twice: by C_Verify and independently by OpenSSL
 * with the public key from CKA_PUBLIC_KEY_INFO.
 */
#include "config.h"

#include <pthread.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <curl/curl.h>

#include "p11test.h"
#include "batch.h"
#include "module.h"
#include "vault/http.h"

static CK_FUNCTION_LIST_PTR f;

static size_t discard(char *p, size_t size, size_t n, void *u)
{
    (void)p;
    (void)u;
    return size * n;
}
static CK_SLOT_ID slot;
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

static const unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const unsigned char oid_p521[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};
static const unsigned char name_ed25519[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd', 's',
                                             '2', '5', '5', '1', '9'};
static const unsigned char name_p256[] = {0x13, 0x0a, 'p', 'r', 'i', 'm', 'e', '2', '5', '6', 'v', '1'};
static const unsigned char oid_secp256k1[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a};

struct keyspec {
    const char *what;
    CK_MECHANISM_TYPE gen;
    CK_KEY_TYPE ckk;
    const unsigned char *params;
    size_t params_len;
    CK_ULONG bits;
    CK_ULONG sig_len;
};

static const struct keyspec specs[] = {
    {"P-256", CKM_EC_KEY_PAIR_GEN, CKK_EC, oid_p256, sizeof(oid_p256), 0, 64},
    {"P-384", CKM_EC_KEY_PAIR_GEN, CKK_EC, oid_p384, sizeof(oid_p384), 0, 96},
    {"P-521", CKM_EC_KEY_PAIR_GEN, CKK_EC, oid_p521, sizeof(oid_p521), 0, 132},
    {"P-256 by name", CKM_EC_KEY_PAIR_GEN, CKK_EC, name_p256, sizeof(name_p256), 0, 64},
    {"RSA-2048", CKM_RSA_PKCS_KEY_PAIR_GEN, CKK_RSA, NULL, 0, 2048, 256},
    {"Ed25519", CKM_EC_EDWARDS_KEY_PAIR_GEN, CKK_EC_EDWARDS, name_ed25519, sizeof(name_ed25519),
     0, 64},
};

static CK_RV generate(CK_SESSION_HANDLE s, const struct keyspec *ks, const char *label,
                      const unsigned char *id, size_t id_len, CK_OBJECT_HANDLE *pub,
                      CK_OBJECT_HANDLE *priv)
{
    CK_MECHANISM m = {ks->gen, NULL, 0};
    CK_ULONG bits = ks->bits;
    unsigned char e[] = {1, 0, 1};
    CK_ATTRIBUTE pt[8], vt[8];
    CK_ULONG pn = 0, vn = 0;

    pt[pn++] = (CK_ATTRIBUTE){CKA_TOKEN, &yes, sizeof(yes)};
    pt[pn++] = (CK_ATTRIBUTE){CKA_VERIFY, &yes, sizeof(yes)};
    pt[pn++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)label, strlen(label)};
    pt[pn++] = (CK_ATTRIBUTE){CKA_ID, (void *)id, id_len};
    if (ks->ckk == CKK_RSA) {
        pt[pn++] = (CK_ATTRIBUTE){CKA_MODULUS_BITS, &bits, sizeof(bits)};
        pt[pn++] = (CK_ATTRIBUTE){CKA_PUBLIC_EXPONENT, e, sizeof(e)};
    } else {
        pt[pn++] = (CK_ATTRIBUTE){CKA_EC_PARAMS, (void *)ks->params, ks->params_len};
    }
    vt[vn++] = (CK_ATTRIBUTE){CKA_TOKEN, &yes, sizeof(yes)};
    vt[vn++] = (CK_ATTRIBUTE){CKA_PRIVATE, &yes, sizeof(yes)};
    vt[vn++] = (CK_ATTRIBUTE){CKA_SENSITIVE, &yes, sizeof(yes)};
    vt[vn++] = (CK_ATTRIBUTE){CKA_EXTRACTABLE, &no, sizeof(no)};
    vt[vn++] = (CK_ATTRIBUTE){CKA_SIGN, &yes, sizeof(yes)};
    vt[vn++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)label, strlen(label)};
    vt[vn++] = (CK_ATTRIBUTE){CKA_ID, (void *)id, id_len};
    return f->C_GenerateKeyPair(s, &m, pt, pn, vt, vn, pub, priv);
}

static EVP_PKEY *public_key(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
    unsigned char buf[2048];
    CK_ATTRIBUTE a = {CKA_PUBLIC_KEY_INFO, buf, sizeof(buf)};
    const unsigned char *p = buf;

    if (f->C_GetAttributeValue(s, h, &a, 1) != CKR_OK)
        return NULL;
    return d2i_PUBKEY(NULL, &p, (long)a.ulValueLen);
}

/* Independent check of a PKCS#11 signature with OpenSSL. salt < -1: not PSS. */
static int openssl_verify(EVP_PKEY *pk, CK_MECHANISM_TYPE mech, const char *md,
                          const unsigned char *msg, size_t msg_len, const unsigned char *sig,
                          size_t sig_len, int pss_salt)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    unsigned char *der = NULL;
    const unsigned char *vsig = sig;
    size_t vlen = sig_len;
    int ok = 0;

    if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC) {
        ECDSA_SIG *es = ECDSA_SIG_new();
        ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)sig_len / 2, NULL),
                       BN_bin2bn(sig + sig_len / 2, (int)sig_len / 2, NULL));
        vlen = (size_t)i2d_ECDSA_SIG(es, &der);
        vsig = der;
        ECDSA_SIG_free(es);
    }
    if (mech == CKM_ECDSA || mech == CKM_RSA_PKCS_PSS ||
        (mech == CKM_RSA_PKCS && md != NULL)) {
        /* msg is a digest */
        pctx = EVP_PKEY_CTX_new(pk, NULL);
        EVP_PKEY_verify_init(pctx);
        if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA) {
            EVP_PKEY_CTX_set_rsa_padding(pctx, pss_salt >= -1 ? RSA_PKCS1_PSS_PADDING
                                                               : RSA_PKCS1_PADDING);
            EVP_PKEY_CTX_set_signature_md(pctx, EVP_get_digestbyname(md));
            if (pss_salt >= -1)
                EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, pss_salt);
        }
        ok = EVP_PKEY_verify(pctx, vsig, vlen, msg, msg_len) == 1;
        EVP_PKEY_CTX_free(pctx);
    } else {
        EVP_DigestVerifyInit(ctx, &pctx, md ? EVP_get_digestbyname(md) : NULL, NULL, pk);
        if (pss_salt >= -1) {
            EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, pss_salt);
        }
        ok = EVP_DigestVerify(ctx, vsig, vlen, msg, msg_len) == 1;
    }
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    return ok;
}

static const unsigned char message[] = "vault-transit-pkcs11 module test message";

static void digest(const char *md, const unsigned char *in, size_t len, unsigned char *out,
                   unsigned int *out_len)
{
    EVP_Digest(in, len, out, out_len, EVP_get_digestbyname(md), NULL);
}

/* Sign with mech, verify with the module and with OpenSSL, and check a tampered input fails. */
static void sign_and_check(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub,
                           EVP_PKEY *pk, CK_MECHANISM_TYPE mech, const char *md, CK_ULONG sig_len,
                           bool multipart)
{
    unsigned char in[600], sig[1024];
    size_t in_len;
    unsigned int dl = 0;
    CK_ULONG len = 0;
    CK_RSA_PKCS_PSS_PARAMS pss;
    CK_MECHANISM m = {mech, NULL, 0};
    int salt = -2;

    /* What the caller passes: the message, a digest, or DigestInfo || digest. */
    if (mech == CKM_ECDSA || mech == CKM_RSA_PKCS_PSS) {
        digest(md, message, sizeof(message), in, &dl);
        in_len = dl;
    } else if (mech == CKM_RSA_PKCS) {
        static const unsigned char di256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48,
                                              0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
                                              0x04, 0x20};
        memcpy(in, di256, sizeof(di256));
        digest("SHA256", message, sizeof(message), in + sizeof(di256), &dl);
        in_len = sizeof(di256) + dl;
    } else {
        memcpy(in, message, sizeof(message));
        in_len = sizeof(message);
    }
    if (mech == CKM_RSA_PKCS_PSS || mech == CKM_SHA256_RSA_PKCS_PSS ||
        mech == CKM_SHA384_RSA_PKCS_PSS || mech == CKM_SHA512_RSA_PKCS_PSS ||
        mech == CKM_SHA1_RSA_PKCS_PSS || mech == CKM_SHA224_RSA_PKCS_PSS) {
        const char *h = md;
        pss.hashAlg = strcmp(h, "SHA256") == 0   ? CKM_SHA256
                      : strcmp(h, "SHA384") == 0 ? CKM_SHA384
                      : strcmp(h, "SHA512") == 0 ? CKM_SHA512
                      : strcmp(h, "SHA224") == 0 ? CKM_SHA224
                                                 : CKM_SHA_1;
        pss.mgf = pss.hashAlg == CKM_SHA256   ? CKG_MGF1_SHA256
                  : pss.hashAlg == CKM_SHA384 ? CKG_MGF1_SHA384
                  : pss.hashAlg == CKM_SHA512 ? CKG_MGF1_SHA512
                  : pss.hashAlg == CKM_SHA224 ? CKG_MGF1_SHA224
                                              : CKG_MGF1_SHA1;
        pss.sLen = (CK_ULONG)EVP_MD_get_size(EVP_get_digestbyname(h));
        salt = (int)pss.sLen;
        m.pParameter = &pss;
        m.ulParameterLen = sizeof(pss);
    }

    CHECK_RV(f->C_SignInit(s, &m, priv), CKR_OK);
    if (multipart) {
        CHECK_RV(f->C_SignUpdate(s, in, 10), CKR_OK);
        CHECK_RV(f->C_SignUpdate(s, in + 10, in_len - 10), CKR_OK);
        CHECK_RV(f->C_SignFinal(s, NULL, &len), CKR_OK);
        CHECK(len == sig_len, "%s: length %lu", vtp_rv_name(0), len);
        len = 8;
        CHECK_RV(f->C_SignFinal(s, sig, &len), CKR_BUFFER_TOO_SMALL);
        len = sizeof(sig);
        CHECK_RV(f->C_SignFinal(s, sig, &len), CKR_OK);
    } else {
        CHECK_RV(f->C_Sign(s, in, in_len, NULL, &len), CKR_OK);
        CHECK(len == sig_len, "mech 0x%lx: signature length %lu, expected %lu", mech, len,
              sig_len);
        len = 8;
        CHECK_RV(f->C_Sign(s, in, in_len, sig, &len), CKR_BUFFER_TOO_SMALL);
        CHECK(len == sig_len, "length after BUFFER_TOO_SMALL %lu", len);
        len = sizeof(sig);
        CHECK_RV(f->C_Sign(s, in, in_len, sig, &len), CKR_OK);
    }
    CHECK(len == sig_len, "mech 0x%lx: signature of %lu bytes, expected %lu", mech, len,
          sig_len);
    /* the operation ended */
    CHECK_RV(f->C_Sign(s, in, in_len, sig, &len), CKR_OPERATION_NOT_INITIALIZED);

    CHECK(openssl_verify(pk, mech, mech == CKM_RSA_PKCS ? "SHA256" : md,
                         mech == CKM_RSA_PKCS ? in + 19 : in,
                         mech == CKM_RSA_PKCS ? in_len - 19 : in_len, sig, len, salt),
          "OpenSSL rejects the signature of mech 0x%lx", mech);
    CHECK_RV(f->C_VerifyInit(s, &m, pub), CKR_OK);
    CHECK_RV(f->C_Verify(s, in, in_len, sig, len), CKR_OK);
    sig[len / 2] ^= 0x01;
    CHECK_RV(f->C_VerifyInit(s, &m, pub), CKR_OK);
    CHECK_RV(f->C_Verify(s, in, in_len, sig, len), CKR_SIGNATURE_INVALID);
    CHECK(!openssl_verify(pk, mech, mech == CKM_RSA_PKCS ? "SHA256" : md,
                          mech == CKM_RSA_PKCS ? in + 19 : in,
                          mech == CKM_RSA_PKCS ? in_len - 19 : in_len, sig, len, salt),
          "OpenSSL accepts a tampered signature");
    CHECK_RV(f->C_VerifyInit(s, &m, pub), CKR_OK);
    CHECK_RV(f->C_Verify(s, in, in_len, sig, len - 1), CKR_SIGNATURE_LEN_RANGE);
}

/* RSA-OAEP both ways, digests and random. */
static void crypt_checks(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE pub, CK_OBJECT_HANDLE priv,
                         EVP_PKEY *pk)
{
    CK_RSA_PKCS_OAEP_PARAMS op = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0};
    CK_RSA_PKCS_OAEP_PARAMS bad = {CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, NULL, 0};
    CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &op, sizeof(op)};
    CK_MECHANISM mb = {CKM_RSA_PKCS_OAEP, &bad, sizeof(bad)};
    CK_MECHANISM d = {CKM_SHA384, NULL, 0};
    const unsigned char pt[] = "a secret for Transit";
    unsigned char ct[512], out[512], md[64], want[64], rnd1[48], rnd2[48];
    CK_ULONG ct_len = sizeof(ct), out_len = 0;
    unsigned int want_len = 0;
    size_t ossl_len = sizeof(ct);
    EVP_PKEY_CTX *ctx;

    CHECK_RV(f->C_EncryptInit(s, &mb, pub), CKR_MECHANISM_PARAM_INVALID);
    CHECK_RV(f->C_DecryptInit(s, &m, pub), CKR_KEY_FUNCTION_NOT_PERMITTED);
    CHECK_RV(f->C_EncryptInit(s, &m, pub), CKR_OK);
    CHECK_RV(f->C_Encrypt(s, (CK_BYTE_PTR)pt, sizeof(pt), ct, &ct_len), CKR_OK);
    CHECK(ct_len == 256, "OAEP ciphertext of %lu bytes", ct_len);
    CHECK_RV(f->C_DecryptInit(s, &m, priv), CKR_OK);
    CHECK_RV(f->C_Decrypt(s, ct, ct_len, NULL, &out_len), CKR_OK);
    CHECK(out_len >= sizeof(pt), "decrypt length query %lu", out_len);
    out_len = 4;
    CHECK_RV(f->C_Decrypt(s, ct, ct_len, out, &out_len), CKR_BUFFER_TOO_SMALL);
    CHECK(out_len == sizeof(pt), "exact length after BUFFER_TOO_SMALL: %lu", out_len);
    out_len = sizeof(out);
    CHECK_RV(f->C_Decrypt(s, ct, ct_len, out, &out_len), CKR_OK);
    CHECK(out_len == sizeof(pt) && memcmp(out, pt, sizeof(pt)) == 0, "OAEP round trip");

    /* OpenSSL encrypts, Transit decrypts */
    ctx = EVP_PKEY_CTX_new(pk, NULL);
    EVP_PKEY_encrypt_init(ctx);
    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING);
    EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256());
    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256());
    CHECK(EVP_PKEY_encrypt(ctx, ct, &ossl_len, pt, sizeof(pt)) == 1, "OpenSSL OAEP encrypt");
    EVP_PKEY_CTX_free(ctx);
    CHECK_RV(f->C_DecryptInit(s, &m, priv), CKR_OK);
    out_len = sizeof(out);
    CHECK_RV(f->C_Decrypt(s, ct, (CK_ULONG)ossl_len, out, &out_len), CKR_OK);
    CHECK(out_len == sizeof(pt) && memcmp(out, pt, sizeof(pt)) == 0, "OpenSSL -> Transit");
    ct[10] ^= 0x40;
    CHECK_RV(f->C_DecryptInit(s, &m, priv), CKR_OK);
    out_len = sizeof(out);
    CHECK_RV(f->C_Decrypt(s, ct, (CK_ULONG)ossl_len, out, &out_len), CKR_ENCRYPTED_DATA_INVALID);

    /* digests, single and multi-part */
    EVP_Digest(pt, sizeof(pt), want, &want_len, EVP_sha384(), NULL);
    CHECK_RV(f->C_DigestInit(s, &d), CKR_OK);
    out_len = sizeof(md);
    CHECK_RV(f->C_Digest(s, (CK_BYTE_PTR)pt, sizeof(pt), md, &out_len), CKR_OK);
    CHECK(out_len == want_len && memcmp(md, want, want_len) == 0, "SHA-384 digest");
    CHECK_RV(f->C_DigestInit(s, &d), CKR_OK);
    CHECK_RV(f->C_DigestUpdate(s, (CK_BYTE_PTR)pt, 5), CKR_OK);
    CHECK_RV(f->C_DigestUpdate(s, (CK_BYTE_PTR)pt + 5, sizeof(pt) - 5), CKR_OK);
    out_len = sizeof(md);
    CHECK_RV(f->C_DigestFinal(s, md, &out_len), CKR_OK);
    CHECK(out_len == want_len && memcmp(md, want, want_len) == 0, "multi-part SHA-384");

    /* random */
    CHECK_RV(f->C_GenerateRandom(s, rnd1, sizeof(rnd1)), CKR_OK);
    CHECK_RV(f->C_GenerateRandom(s, rnd2, sizeof(rnd2)), CKR_OK);
    CHECK(memcmp(rnd1, rnd2, sizeof(rnd1)) != 0, "two random draws are equal");
}

struct mechcase {
    CK_KEY_TYPE ckk;
    CK_MECHANISM_TYPE mech;
    const char *md;
};

static const struct mechcase mechcases[] = {
    {CKK_EC, CKM_ECDSA, "SHA256"},
    {CKK_EC, CKM_ECDSA_SHA1, "SHA1"},
    {CKK_EC, CKM_ECDSA_SHA224, "SHA224"},
    {CKK_EC, CKM_ECDSA_SHA256, "SHA256"},
    {CKK_EC, CKM_ECDSA_SHA384, "SHA384"},
    {CKK_EC, CKM_ECDSA_SHA512, "SHA512"},
    {CKK_RSA, CKM_RSA_PKCS, NULL},
    {CKK_RSA, CKM_SHA1_RSA_PKCS, "SHA1"},
    {CKK_RSA, CKM_SHA224_RSA_PKCS, "SHA224"},
    {CKK_RSA, CKM_SHA256_RSA_PKCS, "SHA256"},
    {CKK_RSA, CKM_SHA384_RSA_PKCS, "SHA384"},
    {CKK_RSA, CKM_SHA512_RSA_PKCS, "SHA512"},
    {CKK_RSA, CKM_RSA_PKCS_PSS, "SHA256"},
    {CKK_RSA, CKM_RSA_PKCS_PSS, "SHA384"},
    {CKK_RSA, CKM_SHA1_RSA_PKCS_PSS, "SHA1"},
    {CKK_RSA, CKM_SHA224_RSA_PKCS_PSS, "SHA224"},
    {CKK_RSA, CKM_SHA256_RSA_PKCS_PSS, "SHA256"},
    {CKK_RSA, CKM_SHA384_RSA_PKCS_PSS, "SHA384"},
    {CKK_RSA, CKM_SHA512_RSA_PKCS_PSS, "SHA512"},
    {CKK_EC_EDWARDS, CKM_EDDSA, NULL},
};

static CK_ULONG find(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *out,
                     CK_ULONG max)
{
    CK_ULONG count = 0;

    CHECK_RV(f->C_FindObjectsInit(s, t, n), CKR_OK);
    CHECK_RV(f->C_FindObjects(s, out, max, &count), CKR_OK);
    CHECK_RV(f->C_FindObjectsFinal(s), CKR_OK);
    return count;
}

static void check_attributes(CK_SESSION_HANDLE s, const struct keyspec *ks, CK_OBJECT_HANDLE pub,
                             CK_OBJECT_HANDLE priv, const char *label, const unsigned char *id,
                             size_t id_len)
{
    CK_OBJECT_CLASS cls = 0;
    CK_KEY_TYPE kt = 0;
    CK_BBOOL sens = 0, ext = 1, sign = 0, token = 0, never = 0, local = 0;
    unsigned char idb[64], lab[128], val[16], mechs[64 * sizeof(CK_MECHANISM_TYPE)];
    CK_ATTRIBUTE t[] = {
        {CKA_CLASS, &cls, sizeof(cls)},       {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_SENSITIVE, &sens, sizeof(sens)}, {CKA_EXTRACTABLE, &ext, sizeof(ext)},
        {CKA_SIGN, &sign, sizeof(sign)},      {CKA_VALUE, val, sizeof(val)},
        {CKA_TOKEN, &token, sizeof(token)},   {CKA_ID, idb, sizeof(idb)},
        {CKA_LABEL, lab, sizeof(lab)},        {CKA_NEVER_EXTRACTABLE, &never, sizeof(never)},
        {CKA_LOCAL, &local, sizeof(local)},   {CKA_ALLOWED_MECHANISMS, mechs, sizeof(mechs)},
        {0x80001234UL, val, sizeof(val)},
    };
    CK_ATTRIBUTE small = {CKA_PUBLIC_KEY_INFO, val, 4};
    CK_ATTRIBUTE q = {CKA_EC_POINT, NULL, 0};
    CK_RV rv;

    rv = f->C_GetAttributeValue(s, priv, t, sizeof(t) / sizeof(t[0]));
    CHECK(rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID,
          "private key attributes: %s", vtp_rv_name(rv));
    CHECK(cls == CKO_PRIVATE_KEY && kt == ks->ckk, "class %lu type %lu", cls, kt);
    CHECK(sens == CK_TRUE && ext == CK_FALSE && sign == CK_TRUE && token == CK_TRUE &&
              never == CK_TRUE && local == CK_TRUE,
          "flags sens=%d ext=%d sign=%d token=%d never=%d local=%d", sens, ext, sign, token,
          never, local);
    CHECK(t[5].ulValueLen == CK_UNAVAILABLE_INFORMATION, "CKA_VALUE length %lu", t[5].ulValueLen);
    CHECK(t[12].ulValueLen == CK_UNAVAILABLE_INFORMATION, "unknown attribute length %lu",
          t[12].ulValueLen);
    CHECK(t[7].ulValueLen == id_len && memcmp(idb, id, id_len) == 0, "CKA_ID differs");
    CHECK(t[8].ulValueLen == strlen(label) && memcmp(lab, label, strlen(label)) == 0,
          "CKA_LABEL differs");
    CHECK(t[11].ulValueLen > 0 && t[11].ulValueLen % sizeof(CK_MECHANISM_TYPE) == 0,
          "CKA_ALLOWED_MECHANISMS length %lu", t[11].ulValueLen);
    CHECK_RV(f->C_GetAttributeValue(s, pub, &small, 1), CKR_BUFFER_TOO_SMALL);
    CHECK(small.ulValueLen == CK_UNAVAILABLE_INFORMATION, "too small: length %lu",
          small.ulValueLen);
    if (ks->ckk == CKK_RSA) {
        unsigned char mod[1024];
        CK_ULONG bits = 0;
        CK_ATTRIBUTE r[] = {{CKA_MODULUS, mod, sizeof(mod)}, {CKA_MODULUS_BITS, &bits, sizeof(bits)}};
        CHECK_RV(f->C_GetAttributeValue(s, pub, r, 2), CKR_OK);
        CHECK(r[0].ulValueLen * 8 == ks->bits && bits == ks->bits, "modulus %lu bytes, bits %lu",
              r[0].ulValueLen, bits);
        CHECK_RV(f->C_GetAttributeValue(s, pub, &q, 1), CKR_ATTRIBUTE_TYPE_INVALID);
    } else {
        CHECK_RV(f->C_GetAttributeValue(s, pub, &q, 1), CKR_OK);
        CHECK(q.ulValueLen > 2, "CKA_EC_POINT length %lu", q.ulValueLen);
    }
}

/* A variant of the run's config (tests/lib/run-test writes one [slot] section): slot_extra is
 * appended to that section, module_lines form a [module] section. Fills "config=<path>". */
static void variant_config(char *reserved, size_t len, const char *name, const char *slot_extra,
                           const char *module_lines)
{
    char path[512], line[512];
    const char *tmp = getenv("VTP_TEST_TMP"), *cur = getenv("VAULT_TRANSIT_PKCS11_CONFIG");
    FILE *in = cur ? fopen(cur, "r") : NULL, *out;

    snprintf(path, sizeof(path), "%s/%s", tmp ? tmp : "/tmp", name);
    out = fopen(path, "w");
    REQUIRE_RV(in != NULL && out != NULL ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    while (fgets(line, sizeof(line), in) != NULL)
        fputs(line, out);
    fprintf(out, "\n%s\n[module]\n%s", slot_extra, module_lines);
    fclose(in);
    fclose(out);
    snprintf(reserved, len, "config=%s", path);
}

/* A blank-padded PKCS#11 string field holds its whole text: its last byte is padding (a text
 * cut at the field's size ends in a letter: "PKCS#11 over Vault/OpenBao Trans"). */
static bool field_whole(const unsigned char *field, size_t len)
{
    return len > 0 && field[len - 1] == ' ' && field[0] != ' ';
}

/* C_GetInfo, C_GetSlotInfo and C_GetTokenInfo texts fit their fields: the run's slot, and a
 * slot whose mount makes "Vault Transit <mount> (slot <name>)" longer than 64 bytes. */
static void info_texts_whole(void)
{
    char reserved[600];
    CK_C_INITIALIZE_ARGS a = {NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL};
    CK_SLOT_ID slots[4];
    CK_ULONG n = 4;
    CK_INFO info;
    CK_SLOT_INFO si;
    CK_TOKEN_INFO ti;

    variant_config(reserved, sizeof(reserved), "info.conf",
                   "\n[slot slot-name-of-exactly-thirty-two-]\n"
                   "mount = a/transit/mount/path/of/forty-four/bytes\n",
                   "");
    a.pReserved = reserved;
    REQUIRE_RV(f->C_Initialize(&a), CKR_OK);
    CHECK_RV(f->C_GetInfo(&info), CKR_OK);
    CHECK(field_whole(info.libraryDescription, sizeof(info.libraryDescription)),
          "libraryDescription cut: \"%.32s\"", info.libraryDescription);
    CHECK(memcmp(info.libraryDescription, "Vault/OpenBao Transit PKCS#11   ", 32) == 0,
          "libraryDescription \"%.32s\"", info.libraryDescription);
    CHECK(field_whole(info.manufacturerID, sizeof(info.manufacturerID)),
          "manufacturerID cut: \"%.32s\"", info.manufacturerID);
    CHECK_RV(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    CHECK(n == 2, "%lu slots, want the run's and info.conf's", n);
    for (CK_ULONG i = 0; i < n && i < 2; i++) {
        CHECK_RV(f->C_GetSlotInfo(slots[i], &si), CKR_OK);
        CHECK(field_whole(si.slotDescription, sizeof(si.slotDescription)),
              "slot %lu: slotDescription cut: \"%.64s\"", i, si.slotDescription);
        CHECK(field_whole(si.manufacturerID, sizeof(si.manufacturerID)),
              "slot %lu: manufacturerID cut", i);
        CHECK_RV(f->C_GetTokenInfo(slots[i], &ti), CKR_OK);
        CHECK(field_whole(ti.model, sizeof(ti.model)), "slot %lu: model cut", i);
        CHECK(field_whole(ti.manufacturerID, sizeof(ti.manufacturerID)),
              "slot %lu: token manufacturerID cut", i);
    }
    CHECK(n < 2 || memcmp(si.slotDescription,
                          "Vault Transit slot slot-name-of-exactly-thirty-two- ", 52) == 0,
          "long-mount slotDescription \"%.64s\"", si.slotDescription);
    CHECK(n < 2 || memcmp(ti.label, "slot-name-of-exactly-thirty-two-", 32) == 0,
          "default label of a 32-byte slot name \"%.32s\"", ti.label);
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);
}

/* Every signature counts in the statistics C_Finalize logs, RSA ones included (they bypass the
 * group-commit queues). */
static void stats_count_rsa(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE rsa_priv)
{
    struct vtp_batch_stats before, after;
    CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0};
    unsigned char sig[256];
    CK_ULONG len = sizeof(sig);

    vtp_batch_get_stats(&before);
    CHECK_RV(f->C_SignInit(s, &m, rsa_priv), CKR_OK);
    CHECK_RV(f->C_Sign(s, (CK_BYTE_PTR)message, sizeof(message), sig, &len), CKR_OK);
    vtp_batch_get_stats(&after);
    CHECK(after.items == before.items + 1 && after.requests == before.requests + 1,
          "an RSA signature counted as %lu signature(s) in %lu request(s)",
          after.items - before.items, after.requests - before.requests);
}

/* Vault as another operator uses it: a request with the test's token. */
static long vault_call(const char *method, const char *path, const char *body)
{
    char url[1024], hdr[1024];
    const char *addr = getenv("VAULT_ADDR"), *token = getenv("VAULT_TOKEN");
    struct curl_slist *h = NULL;
    CURL *c = curl_easy_init();
    long status = 0;

    if (c == NULL || addr == NULL || token == NULL)
        return 0;
    snprintf(url, sizeof(url), "%s/v1/%s", addr, path);
    snprintf(hdr, sizeof(hdr), "X-Vault-Token: %s", token);
    h = curl_slist_append(h, hdr);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body != NULL)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

static long vault_post(const char *path, const char *body)
{
    return vault_call("POST", path, body);
}

static void sign_msg(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE priv, unsigned char *sig,
                     CK_ULONG *len)
{
    CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};

    *len = 64;
    CHECK_RV(f->C_SignInit(s, &m, priv), CKR_OK);
    CHECK_RV(f->C_Sign(s, (CK_BYTE_PTR)message, sizeof(message), sig, len), CKR_OK);
}

/* A key deleted and made again under the same name (by another operator) is another key: the
 * objects of the old one must stop working, not sign with the new one (a CA's signatures would
 * no longer verify against its certificate). A new search finds the new key. */
static void recreated_key_invalidates_handles(void)
{
    char reserved[600], label[64], name[256], path[512];
    const char *prefix = getenv("VTP_TEST_PREFIX");
    CK_C_INITIALIZE_ARGS a = {NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL};
    CK_OBJECT_CLASS pc = CKO_PRIVATE_KEY;
    CK_OBJECT_HANDLE pub, priv, priv2 = 0;
    CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
    CK_SESSION_HANDLE s;
    unsigned char sig[64];
    CK_ULONG len;
    CK_RV rv;

    snprintf(label, sizeof(label), "mtrec-%d", (int)getpid());
    snprintf(name, sizeof(name), "%s%s", prefix ? prefix : "", label);
    variant_config(reserved, sizeof(reserved), "recreate.conf", "cache_ttl = 1s\n", "");
    a.pReserved = reserved;
    REQUIRE_RV(f->C_Initialize(&a), CKR_OK);
    REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s),
               CKR_OK);
    f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4);
    REQUIRE_RV(generate(s, &specs[0], label, (const unsigned char *)"rc", 2, &pub, &priv), CKR_OK);
    sign_msg(s, priv, sig, &len);
    snprintf(path, sizeof(path), "transit/keys/%s/config", name);
    CHECK(vault_post(path, "{\"deletion_allowed\":true}") == 200, "allow deletion of %s", name);
    snprintf(path, sizeof(path), "transit/keys/%s", name);
    CHECK(vault_call("DELETE", path, NULL) == 204, "delete %s through the HTTP API", name);
    CHECK(vault_post(path, "{\"type\":\"ecdsa-p256\"}") == 200 ||
              vault_post(path, "{\"type\":\"ecdsa-p256\"}") == 204,
          "make %s again through the HTTP API", name);
    sleep(2); /* past cache_ttl: the next search reloads */
    {
        CK_ATTRIBUTE t[] = {{CKA_CLASS, &pc, sizeof(pc)}, {CKA_LABEL, label, strlen(label)}};
        CHECK(find(s, t, 2, &priv2, 1) == 1, "the new key %s is found", name);
        CHECK(priv2 != priv, "the new key %s has the old key's handle %lu", name, priv);
    }
    len = sizeof(sig);
    rv = f->C_SignInit(s, &m, priv);
    if (rv == CKR_OK)
        rv = f->C_Sign(s, (CK_BYTE_PTR)message, sizeof(message), sig, &len);
    CHECK(rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID,
          "the old key's handle, after the key was made again under its name: %s (it must not "
          "sign with the new key)",
          vtp_rv_name(rv));
    if (priv2 != 0)
        CHECK_RV(f->C_DestroyObject(s, priv2), CKR_OK);
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);
}

/* C_Initialize (the run's config), a read-write session, C_Login: a fresh start. */
static CK_SESSION_HANDLE fresh_start(void)
{
    CK_SESSION_HANDLE s = 0;

    REQUIRE_RV(f->C_Initialize(NULL), CKR_OK);
    REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s),
               CKR_OK);
    f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4);
    return s;
}

static CK_BBOOL bool_attr(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type)
{
    CK_BBOOL v = 0xee;
    CK_ATTRIBUTE a = {type, &v, sizeof(v)};

    CHECK_RV(f->C_GetAttributeValue(s, h, &a, 1), CKR_OK);
    return v;
}

/* Usage attributes given at generation are kept, shown (also by a new load) and enforced; the
 * key's Transit flags (exportable) and the slot's allow_destroy show as CKA_EXTRACTABLE,
 * CKA_SENSITIVE, CKA_NEVER_EXTRACTABLE, CKA_ALWAYS_SENSITIVE and CKA_DESTROYABLE. Before
 * 2026-12-01 a pair made with CKA_SIGN = FALSE showed TRUE and signed. */
static void usage_and_transit_flags(void)
{
    char label[64], elabel[64], path[512], reserved[600];
    const char *prefix = getenv("VTP_TEST_PREFIX");
    CK_C_INITIALIZE_ARGS a = {NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL};
    CK_MECHANISM rsa_gen = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_MECHANISM sha256_rsa = {CKM_SHA256_RSA_PKCS, NULL, 0};
    CK_ULONG bits = 2048;
    CK_OBJECT_CLASS pc = CKO_PRIVATE_KEY;
    CK_OBJECT_HANDLE pub = 0, priv = 0, epriv = 0;
    CK_SESSION_HANDLE s;

    snprintf(label, sizeof(label), "mtuse-%d", (int)getpid());
    snprintf(elabel, sizeof(elabel), "mtexp-%d", (int)getpid());
    s = fresh_start();
    {
        CK_ATTRIBUTE pt[] = {{CKA_TOKEN, &yes, sizeof(yes)},
                             {CKA_MODULUS_BITS, &bits, sizeof(bits)},
                             {CKA_VERIFY, &no, sizeof(no)},
                             {CKA_LABEL, label, strlen(label)}};
        CK_ATTRIBUTE vt[] = {{CKA_TOKEN, &yes, sizeof(yes)},
                             {CKA_SIGN, &no, sizeof(no)},
                             {CKA_DECRYPT, &yes, sizeof(yes)},
                             {CKA_DERIVE, &yes, sizeof(yes)},
                             {CKA_LABEL, label, strlen(label)}};
        REQUIRE_RV(f->C_GenerateKeyPair(s, &rsa_gen, pt, 4, vt, 5, &pub, &priv), CKR_OK);
    }
    CHECK(bool_attr(s, priv, CKA_SIGN) == CK_FALSE, "CKA_SIGN = FALSE given, shown TRUE");
    CHECK(bool_attr(s, pub, CKA_VERIFY) == CK_FALSE, "CKA_VERIFY = FALSE given, shown TRUE");
    CHECK(bool_attr(s, priv, CKA_DECRYPT) == CK_TRUE, "CKA_DECRYPT = TRUE given, shown FALSE");
    CHECK(bool_attr(s, priv, CKA_DERIVE) == CK_TRUE, "CKA_DERIVE = TRUE given, shown FALSE");
    CHECK(bool_attr(s, pub, CKA_ENCRYPT) == CK_TRUE, "CKA_ENCRYPT (default) shown FALSE");
    CHECK_RV(f->C_SignInit(s, &sha256_rsa, priv), CKR_KEY_FUNCTION_NOT_PERMITTED);
    CHECK_RV(f->C_VerifyInit(s, &sha256_rsa, pub), CKR_KEY_FUNCTION_NOT_PERMITTED);
    /* a key made in Transit as exportable */
    snprintf(path, sizeof(path), "transit/keys/%s%s", prefix ? prefix : "", elabel);
    CHECK(vault_post(path, "{\"type\":\"ecdsa-p256\",\"exportable\":true}") / 100 == 2,
          "make exportable key %s through the HTTP API", path);
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);

    /* a new load: the usage comes back from KV, the flags from Transit */
    s = fresh_start();
    {
        CK_ATTRIBUTE t[] = {{CKA_CLASS, &pc, sizeof(pc)}, {CKA_LABEL, label, strlen(label)}};
        CK_ATTRIBUTE e[] = {{CKA_CLASS, &pc, sizeof(pc)}, {CKA_LABEL, elabel, strlen(elabel)}};
        CHECK(find(s, t, 2, &priv, 1) == 1, "key %s found again", label);
        CHECK(find(s, e, 2, &epriv, 1) == 1, "key %s found", elabel);
    }
    CHECK(bool_attr(s, priv, CKA_SIGN) == CK_FALSE, "a new load shows CKA_SIGN TRUE");
    CHECK(bool_attr(s, priv, CKA_DERIVE) == CK_TRUE, "a new load shows CKA_DERIVE FALSE");
    CHECK_RV(f->C_SignInit(s, &sha256_rsa, priv), CKR_KEY_FUNCTION_NOT_PERMITTED);
    CHECK(bool_attr(s, priv, CKA_SENSITIVE) == CK_TRUE &&
              bool_attr(s, priv, CKA_EXTRACTABLE) == CK_FALSE &&
              bool_attr(s, priv, CKA_NEVER_EXTRACTABLE) == CK_TRUE &&
              bool_attr(s, priv, CKA_ALWAYS_SENSITIVE) == CK_TRUE &&
              bool_attr(s, priv, CKA_LOCAL) == CK_TRUE,
          "a key Transit does not let out shows sensitive, never extractable, local");
    CHECK(bool_attr(s, epriv, CKA_SENSITIVE) == CK_FALSE &&
              bool_attr(s, epriv, CKA_EXTRACTABLE) == CK_TRUE &&
              bool_attr(s, epriv, CKA_NEVER_EXTRACTABLE) == CK_FALSE &&
              bool_attr(s, epriv, CKA_ALWAYS_SENSITIVE) == CK_FALSE,
          "an exportable Transit key shows as extractable and not sensitive");
    CHECK(bool_attr(s, priv, CKA_DESTROYABLE) == CK_TRUE, "allow_destroy = true: destroyable");
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);

    /* allow_destroy = false: not destroyable */
    variant_config(reserved, sizeof(reserved), "nodestroy.conf", "allow_destroy = false\n", "");
    a.pReserved = reserved;
    REQUIRE_RV(f->C_Initialize(&a), CKR_OK);
    REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s),
               CKR_OK);
    {
        CK_ATTRIBUTE t[] = {{CKA_CLASS, &pc, sizeof(pc)}, {CKA_LABEL, label, strlen(label)}};
        CHECK(find(s, t, 2, &priv, 1) == 1, "key %s found (allow_destroy = false)", label);
    }
    CHECK(bool_attr(s, priv, CKA_DESTROYABLE) == CK_FALSE,
          "allow_destroy = false, yet CKA_DESTROYABLE is TRUE");
    CHECK_RV(f->C_DestroyObject(s, priv), CKR_ACTION_PROHIBITED);
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);

    /* clean up: later checks count the objects */
    s = fresh_start();
    {
        CK_ATTRIBUTE t[] = {{CKA_CLASS, &pc, sizeof(pc)}, {CKA_LABEL, label, strlen(label)}};
        CK_ATTRIBUTE e[] = {{CKA_CLASS, &pc, sizeof(pc)}, {CKA_LABEL, elabel, strlen(elabel)}};
        if (find(s, t, 2, &priv, 1) == 1)
            CHECK_RV(f->C_DestroyObject(s, priv), CKR_OK);
        if (find(s, e, 2, &epriv, 1) == 1)
            CHECK_RV(f->C_DestroyObject(s, epriv), CKR_OK);
    }
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);
}

struct gen_arg {
    const char *label;
    int n;
    CK_RV rv;
};

static void *gen_thread(void *p)
{
    struct gen_arg *g = p;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE pub, priv;
    unsigned char id[2] = {0xc0, (unsigned char)g->n};

    g->rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    if (g->rv == CKR_OK)
        g->rv = generate(s, &specs[0], g->label, id, sizeof(id), &pub, &priv);
    return NULL;
}

/* Eight generations with one label at once: each makes its own Transit key, and a fresh start
 * finds all eight by that label (through the KV index). Before 2026-12-01 the index was one
 * document rewritten by each generation, and a new process found 6 of 8. */
static void concurrent_generations_indexed(void)
{
    enum { N = 8 };
    char label[64];
    pthread_t th[N];
    struct gen_arg ga[N];
    CK_OBJECT_CLASS pc = CKO_PRIVATE_KEY;
    CK_OBJECT_HANDLE found[2 * N];
    CK_SESSION_HANDLE s;

    snprintf(label, sizeof(label), "mtconc-%d", (int)getpid());
    s = fresh_start();
    for (int i = 0; i < N; i++) {
        ga[i] = (struct gen_arg){label, i, CKR_GENERAL_ERROR};
        pthread_create(&th[i], NULL, gen_thread, &ga[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        CHECK(ga[i].rv == CKR_OK, "generation %d: %s", i, vtp_rv_name(ga[i].rv));
    }
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);
    s = fresh_start();
    {
        CK_ATTRIBUTE t[] = {{CKA_CLASS, &pc, sizeof(pc)}, {CKA_LABEL, label, strlen(label)}};
        CK_ULONG n = find(s, t, 2, found, 2 * N);
        CHECK(n == N, "a fresh start finds %lu of %d keys labelled %s", n, N, label);
        for (CK_ULONG i = 0; i < n; i++)
            CHECK_RV(f->C_DestroyObject(s, found[i]), CKR_OK);
    }
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);
}

/* With KV a key is named after its label, which may look like a name that carries label, ID
 * and usage (kvstore.h): a fresh start must not read them from it. The fuzzer found such a key
 * showing CKA_ID 0x0a and CKA_VERIFY FALSE after a restart. */
static void kv_label_like_encoded_name(void)
{
    static const char label[] = "web.p11-0123abcd.u001.i0a";
    CK_OBJECT_CLASS pc = CKO_PUBLIC_KEY;
    CK_OBJECT_HANDLE pub = 0, priv = 0;
    unsigned char idb[64];
    CK_ATTRIBUTE ida = {CKA_ID, idb, sizeof(idb)};
    CK_SESSION_HANDLE s;
    const unsigned char id[] = {0x5e, 0xed};

    s = fresh_start();
    REQUIRE_RV(generate(s, &specs[0], label, id, sizeof(id), &pub, &priv), CKR_OK);
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);
    s = fresh_start();
    {
        CK_ATTRIBUTE t[] = {{CKA_CLASS, &pc, sizeof(pc)}, {CKA_LABEL, (void *)label, strlen(label)}};
        CHECK(find(s, t, 2, &pub, 1) == 1, "key %s found after a restart", label);
    }
    CHECK(bool_attr(s, pub, CKA_VERIFY) == CK_TRUE, "CKA_VERIFY read from the name");
    CHECK_RV(f->C_GetAttributeValue(s, pub, &ida, 1), CKR_OK);
    CHECK(ida.ulValueLen == sizeof(id) && memcmp(idb, id, sizeof(id)) == 0,
          "CKA_ID after a restart is not the one given");
    CHECK_RV(f->C_DestroyObject(s, pub), CKR_OK);
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);
}

/* Rotation by someone else, certificates, and label/ID changes, with a 1 s cache TTL. */
/* A label that is also the key's Transit name (behind the slot's prefix) is found both by name
 * and through the KV index: a fresh process's search by it, and by the ID, must still show the
 * key once (python-pkcs11 fails with MultipleObjectsReturned on two). */
static void search_shows_key_once(void)
{
    char label[64];
    unsigned char id[6] = {0xd0, 0x0b};
    CK_OBJECT_CLASS pc = CKO_PRIVATE_KEY;
    CK_OBJECT_HANDLE pub, priv, found[8];
    CK_SESSION_HANDLE s;

    snprintf(label, sizeof(label), "mtonce-%d", (int)getpid());
    memcpy(id + 2, &(int){getpid()}, 4);
    s = fresh_start();
    REQUIRE_RV(generate(s, &specs[0], label, id, sizeof(id), &pub, &priv), CKR_OK);
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);
    /* a fresh snapshot, as in a new process */
    s = fresh_start();
    {
        CK_ATTRIBUTE t[] = {{CKA_LABEL, label, strlen(label)}};
        CK_ULONG n = find(s, t, 1, found, 8);
        CHECK(n == 2, "a search by label %s shows %lu objects, not one private and one public key",
              label, n);
    }
    {
        CK_ATTRIBUTE t[] = {{CKA_CLASS, &pc, sizeof(pc)}, {CKA_ID, id, sizeof(id)}};
        CK_ULONG n = find(s, t, 2, found, 8);
        CHECK(n == 1, "a later search by ID shows %lu private keys, not one", n);
        if (n >= 1)
            CHECK_RV(f->C_DestroyObject(s, found[0]), CKR_OK);
    }
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);
}

static void lifecycle_checks(const unsigned char *id, const char *label, EVP_PKEY *pk1)
{
    char reserved[600], path[512], name[256];
    const char *prefix = getenv("VTP_TEST_PREFIX");
    CK_C_INITIALIZE_ARGS a = {NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL};
    CK_OBJECT_CLASS pc = CKO_PRIVATE_KEY, pubc = CKO_PUBLIC_KEY, cc = CKO_CERTIFICATE;
    CK_ATTRIBUTE tp[] = {{CKA_CLASS, &pc, sizeof(pc)}, {CKA_ID, (void *)id, 6}};
    CK_ATTRIBUTE tq[] = {{CKA_CLASS, &pubc, sizeof(pubc)}, {CKA_ID, (void *)id, 6}};
    CK_OBJECT_HANDLE h1, h2, q2, cert, found[8];
    CK_SESSION_HANDLE s;
    unsigned char sig[64];
    CK_ULONG len;
    EVP_PKEY *pk2;
    size_t n = 0;

    if (prefix == NULL || pk1 == NULL) {
        CHECK(0, "VTP_TEST_PREFIX is not set: run this test under tests/lib/run-test");
        return;
    }
    /* the Transit name the module gave the key: prefix + label with blanks as '-' */
    n = (size_t)snprintf(name, sizeof(name), "%s", prefix);
    for (const char *p = label; *p && n + 1 < sizeof(name); p++)
        name[n++] = *p == ' ' ? '-' : *p;
    name[n] = '\0';

    /* a read-only certificate from a PEM file named in the slot's config */
    {
        char pem[512], extra[700];
        EVP_PKEY *fk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        X509 *fx = X509_new();
        FILE *fp;
        snprintf(pem, sizeof(pem), "%s/file-cert.pem",
                 getenv("VTP_TEST_TMP") ? getenv("VTP_TEST_TMP") : "/tmp");
        X509_set_version(fx, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(fx), 7);
        X509_NAME_add_entry_by_txt(X509_get_subject_name(fx), "CN", MBSTRING_ASC,
                                   (const unsigned char *)"vtp file cert", -1, -1, 0);
        X509_set_issuer_name(fx, X509_get_subject_name(fx));
        X509_gmtime_adj(X509_getm_notBefore(fx), 0);
        X509_gmtime_adj(X509_getm_notAfter(fx), 3600);
        X509_set_pubkey(fx, fk);
        X509_sign(fx, fk, EVP_sha256());
        fp = fopen(pem, "w");
        REQUIRE_RV(fp != NULL && PEM_write_X509(fp, fx) == 1 ? CKR_OK : CKR_GENERAL_ERROR,
                   CKR_OK);
        fclose(fp);
        X509_free(fx);
        EVP_PKEY_free(fk);
        snprintf(extra, sizeof(extra), "cache_ttl = 1s\ncertificates = %s\n", pem);
        variant_config(reserved, sizeof(reserved), "ttl.conf", extra, "");
    }
    a.pReserved = reserved;
    REQUIRE_RV(f->C_Initialize(&a), CKR_OK);
    REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s),
               CKR_OK);
    REQUIRE_RV(find(s, tp, 2, &h1, 1) == 1 ? CKR_OK : CKR_OBJECT_HANDLE_INVALID, CKR_OK);
    {
        CK_ATTRIBUTE fl[] = {{CKA_CLASS, &cc, sizeof(cc)}, {CKA_LABEL, "vtp file cert", 13}};
        CK_ATTRIBUTE rl[] = {{CKA_LABEL, "x", 1}};
        CK_BBOOL mod = CK_TRUE;
        CK_ATTRIBUTE ma = {CKA_MODIFIABLE, &mod, sizeof(mod)};
        CK_OBJECT_HANDLE fc = 0;
        CHECK(find(s, fl, 2, &fc, 1) == 1, "certificate from the PEM file found by its CN");
        CHECK_RV(f->C_GetAttributeValue(s, fc, &ma, 1), CKR_OK);
        CHECK(mod == CK_FALSE, "a file certificate is not modifiable");
        CHECK_RV(f->C_SetAttributeValue(s, fc, rl, 1), CKR_ACTION_PROHIBITED);
        CHECK_RV(f->C_DestroyObject(s, fc), CKR_ACTION_PROHIBITED);
    }

    /* Another operator rotates the key. */
    snprintf(path, sizeof(path), "%s/keys/%s/rotate", getenv("VTP_TEST_MOUNT") ?
             getenv("VTP_TEST_MOUNT") : "transit", name);
    CHECK(vault_post(path, "{}") == 200, "rotating %s through the HTTP API", name);
    sign_msg(s, h1, sig, &len);
    CHECK(openssl_verify(pk1, CKM_ECDSA_SHA256, "SHA256", message, sizeof(message), sig, len, -2),
          "before the refresh, the object signs with the version it showed");
    usleep(1200 * 1000); /* let the 1 s cache TTL pass: the next search reloads */
    CHECK(find(s, tp, 2, &h2, 1) == 1, "rotated key found");
    CHECK(h2 != h1, "the new version is a new object");
    CHECK(find(s, tq, 2, &q2, 1) == 1, "rotated public key found");
    pk2 = public_key(s, q2);
    CHECK(pk2 != NULL && EVP_PKEY_eq(pk1, pk2) != 1, "the new version has a new public key");
    sign_msg(s, h1, sig, &len);
    CHECK(openssl_verify(pk1, CKM_ECDSA_SHA256, "SHA256", message, sizeof(message), sig, len, -2),
          "after the rotation, the old object still signs with the old version");
    sign_msg(s, h2, sig, &len);
    CHECK(pk2 != NULL && openssl_verify(pk2, CKM_ECDSA_SHA256, "SHA256", message,
                                        sizeof(message), sig, len, -2),
          "the new object signs with the new version");
    EVP_PKEY_free(pk2);

    /* A certificate stored in KV, found by id and label, relabelled, destroyed. */
    {
        EVP_PKEY *ck = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        X509 *x = X509_new();
        unsigned char *der = NULL, value[2048], subj[512];
        int der_len;
        CK_CERTIFICATE_TYPE ct = CKC_X_509;
        CK_BBOOL t = CK_TRUE;
        const char *cl = "module test cert";
        CK_ATTRIBUTE ctmpl[] = {{CKA_CLASS, &cc, sizeof(cc)},
                                {CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)},
                                {CKA_TOKEN, &t, sizeof(t)},
                                {CKA_ID, (void *)id, 6},
                                {CKA_LABEL, (void *)cl, strlen(cl)},
                                {CKA_VALUE, NULL, 0}};
        CK_ATTRIBUTE byid[] = {{CKA_CLASS, &cc, sizeof(cc)}, {CKA_ID, (void *)id, 6}};
        CK_ATTRIBUTE newl[] = {{CKA_LABEL, "renamed cert", 12}};
        CK_ATTRIBUTE bylabel[] = {{CKA_LABEL, "renamed cert", 12}};
        CK_ATTRIBUTE get[] = {{CKA_VALUE, value, sizeof(value)}, {CKA_SUBJECT, subj, sizeof(subj)}};
        CK_ATTRIBUTE junk[] = {{CKA_CLASS, &cc, sizeof(cc)},
                               {CKA_VALUE, "not a cert", 10},
                               {CKA_TOKEN, &t, sizeof(t)}};

        X509_set_version(x, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                   (const unsigned char *)"vtp module test", -1, -1, 0);
        X509_set_issuer_name(x, X509_get_subject_name(x));
        X509_gmtime_adj(X509_getm_notBefore(x), 0);
        X509_gmtime_adj(X509_getm_notAfter(x), 3600);
        X509_set_pubkey(x, ck);
        X509_sign(x, ck, EVP_sha256());
        der_len = i2d_X509(x, &der);
        ctmpl[5].pValue = der;
        ctmpl[5].ulValueLen = (CK_ULONG)der_len;
        CHECK_RV(f->C_CreateObject(s, junk, 3, &cert), CKR_ATTRIBUTE_VALUE_INVALID);
        {
            /* without CKA_TOKEN: a session object, which is refused (it was kept for good) */
            CK_ATTRIBUTE notok[] = {ctmpl[0], ctmpl[1], ctmpl[5]};
            CHECK_RV(f->C_CreateObject(s, notok, 3, &cert), CKR_TEMPLATE_INCONSISTENT);
        }
        CHECK_RV(f->C_CreateObject(s, ctmpl, 6, &cert), CKR_OK);
        CHECK(find(s, byid, 2, found, 8) == 1 && found[0] == cert, "certificate found by id");
        CHECK_RV(f->C_GetAttributeValue(s, cert, get, 2), CKR_OK);
        CHECK(get[0].ulValueLen == (CK_ULONG)der_len && memcmp(value, der, der_len) == 0,
              "CKA_VALUE is the certificate");
        CHECK(get[1].ulValueLen > 10, "CKA_SUBJECT from the certificate");
        CHECK_RV(f->C_SetAttributeValue(s, cert, newl, 1), CKR_OK);
        CHECK(find(s, bylabel, 1, found, 8) == 1 && found[0] == cert, "relabelled certificate");
        /* the same key pair relabelled */
        CHECK_RV(f->C_SetAttributeValue(s, h2, newl, 1), CKR_OK);
        CHECK(find(s, bylabel, 1, found, 8) == 3, "key pair and certificate share the label");
        /* everything survives a reload */
        CHECK_RV(f->C_Finalize(NULL), CKR_OK);
        REQUIRE_RV(f->C_Initialize(&a), CKR_OK);
        REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s),
                   CKR_OK);
        CHECK(find(s, bylabel, 1, found, 8) == 3, "labels persisted in KV");
        CHECK(find(s, byid, 2, &cert, 1) == 1, "certificate persisted");
        CHECK_RV(f->C_DestroyObject(s, cert), CKR_OK);
        CHECK(find(s, byid, 2, found, 8) == 0, "certificate destroyed");
        /* put the key's label back for the rest of the test */
        CHECK(find(s, tp, 2, &h2, 1) == 1, "key found after reload");
        newl[0].pValue = (void *)label;
        newl[0].ulValueLen = strlen(label);
        CHECK_RV(f->C_SetAttributeValue(s, h2, newl, 1), CKR_OK);
        OPENSSL_free(der);
        X509_free(x);
        EVP_PKEY_free(ck);
    }
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);
}

struct thread_arg {
    CK_OBJECT_HANDLE priv;
    EVP_PKEY *pk;
    int ok;
    int n;
    int id;
    pthread_barrier_t *start; /* optional: every thread signs at the same moment */
};

static void *sign_thread(void *p)
{
    struct thread_arg *a = p;
    CK_SESSION_HANDLE s;
    CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};

    if (f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
        s = CK_INVALID_HANDLE; /* still meet the others at the barrier, then fail each call */
    if (a->start != NULL)
        pthread_barrier_wait(a->start);
    for (int i = 0; s != CK_INVALID_HANDLE && i < a->n; i++) {
        unsigned char sig[64], msg[64];
        CK_ULONG len = sizeof(sig);
        /* each call signs its own message: a signature handed to the wrong caller fails */
        int mlen = snprintf((char *)msg, sizeof(msg), "thread %d message %d", a->id, i);
        if (f->C_SignInit(s, &m, a->priv) == CKR_OK &&
            f->C_Sign(s, msg, (CK_ULONG)mlen, sig, &len) == CKR_OK &&
            openssl_verify(a->pk, CKM_ECDSA_SHA256, "SHA256", msg, (size_t)mlen, sig, len, -2))
            a->ok++;
    }
    f->C_CloseSession(s);
    return NULL;
}

/* Initializes the module again with module_lines added to the run's configuration, then signs
 * `each` messages in each of n threads with the private key of CKA_ID id (6 bytes), all
 * starting at the same moment when at_once. Returns how many signatures verified; the batch
 * statistics before and after the threads ran go to *before and *after. */
static int sign_in_threads(const char *conf_name, const char *module_lines,
                           const unsigned char *id, EVP_PKEY *pk, int n, int each, bool at_once,
                           struct vtp_batch_stats *before, struct vtp_batch_stats *after)
{
    char reserved[600];
    CK_C_INITIALIZE_ARGS bargs = {NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL};
    pthread_barrier_t start;
    pthread_t *th = calloc((size_t)n, sizeof(*th));
    struct thread_arg *ta = calloc((size_t)n, sizeof(*ta));
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE key;
    CK_OBJECT_CLASS pc = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &pc, sizeof(pc)}, {CKA_ID, (void *)id, 6}};
    int ok = 0, started = 0;

    REQUIRE_RV(th != NULL && ta != NULL ? CKR_OK : CKR_HOST_MEMORY, CKR_OK);
    variant_config(reserved, sizeof(reserved), conf_name, "", module_lines);
    bargs.pReserved = reserved;
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);
    REQUIRE_RV(f->C_Initialize(&bargs), CKR_OK);
    /* a session that lives through the run keeps the key handle valid */
    REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
    REQUIRE_RV(find(s, t, 2, &key, 1) == 1 ? CKR_OK : CKR_OBJECT_HANDLE_INVALID, CKR_OK);
    vtp_batch_get_stats(before);
    if (at_once)
        pthread_barrier_init(&start, NULL, (unsigned)n);
    for (int i = 0; i < n; i++) {
        ta[i] = (struct thread_arg){key, pk, 0, each, i, at_once ? &start : NULL};
        if (pthread_create(&th[i], NULL, sign_thread, &ta[i]) != 0)
            break;
        started++;
    }
    REQUIRE_RV(started == n ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        ok += ta[i].ok;
    }
    if (at_once)
        pthread_barrier_destroy(&start);
    vtp_batch_get_stats(after);
    f->C_CloseSession(s);
    free(th);
    free(ta);
    return ok;
}

/* 300 callers released at once with one request in flight: the batches that follow could carry
 * up to 299 signatures, more than OpenBao's default JSON limit (1000 strings: 248 items) lets
 * through; the default batch_max_items (200, at most 240) must keep every request under it. */
static void group_commit_at_the_cap(const unsigned char *id, EVP_PKEY *pk)
{
    enum { N = 300, EACH = 2 };
    struct vtp_batch_stats before, after;
    int ok = sign_in_threads("batch-cap.conf", "batching = true\nbatch_concurrency = 1\n", id,
                             pk, N, EACH, true, &before, &after); /* default batch_max_items */

    CHECK(ok == N * EACH, "%d callers at once: %d of %d signatures verified", N, ok, N * EACH);
    CHECK(after.max_batch <= 200, "a batch of %lu items exceeds the default batch_max_items",
          after.max_batch);
    CHECK(after.splits == before.splits, "%lu batches were refused as too large",
          after.splits - before.splits);
    printf("group commit, %d callers at once: %d signatures in %lu requests, largest batch %lu\n",
           N, N * EACH, after.requests - before.requests, after.max_batch);
}

static void keygen_refusals(CK_SESSION_HANDLE s)
{
    CK_OBJECT_HANDLE pub, priv;
    struct keyspec bad = specs[0];
    const unsigned char id[] = {0xee};
    CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)},
                         {CKA_LABEL, "a", 1}};
    CK_ATTRIBUTE vt[] = {{CKA_LABEL, "b", 1}};
    CK_ATTRIBUTE vt2[] = {{CKA_EXTRACTABLE, &yes, sizeof(yes)}};
    CK_ATTRIBUTE vt3[] = {{CKA_SENSITIVE, &no, sizeof(no)}};

    bad.params = oid_secp256k1;
    bad.params_len = sizeof(oid_secp256k1);
    CHECK_RV(generate(s, &bad, "x", id, 1, &pub, &priv), CKR_CURVE_NOT_SUPPORTED);
    bad = specs[4];
    bad.bits = 1024;
    CHECK_RV(generate(s, &bad, "x", id, 1, &pub, &priv), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(f->C_GenerateKeyPair(s, &m, pt, 2, vt, 1, &pub, &priv), CKR_TEMPLATE_INCONSISTENT);
    CHECK_RV(f->C_GenerateKeyPair(s, &m, pt, 1, vt2, 1, &pub, &priv),
             CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(f->C_GenerateKeyPair(s, &m, pt, 1, vt3, 1, &pub, &priv),
             CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(f->C_GenerateKeyPair(s, &m, NULL, 0, NULL, 0, &pub, &priv), CKR_TEMPLATE_INCOMPLETE);
    m.mechanism = CKM_ECDSA;
    CHECK_RV(f->C_GenerateKeyPair(s, &m, pt, 1, NULL, 0, &pub, &priv), CKR_MECHANISM_INVALID);
}

int main(void)
{
    CK_C_INITIALIZE_ARGS args = {NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL};
    CK_SLOT_ID slots[8];
    CK_ULONG n = 8;
    CK_TOKEN_INFO ti;
    CK_SESSION_HANDLE s, ro;
    CK_SESSION_INFO si;
    CK_OBJECT_HANDLE pubs[8], privs[8], found[16];
    EVP_PKEY *pks[8];
    char labels[8][64];
    unsigned char ids[8][8];
    const size_t nspecs = sizeof(specs) / sizeof(specs[0]);
    pid_t pid = getpid();

    REQUIRE_RV(C_GetFunctionList(&f), CKR_OK);
    CHECK_RV(f->C_GetSlotList(CK_FALSE, slots, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
    CHECK_RV(f->C_Initialize(&args), CKR_OK);
    CHECK_RV(f->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);
    n = 0;
    CHECK_RV(f->C_GetSlotList(CK_TRUE, NULL, &n), CKR_OK);
    REQUIRE_RV(n >= 1 ? CKR_OK : CKR_SLOT_ID_INVALID, CKR_OK);
    n = 8;
    CHECK_RV(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    slot = slots[0];
    CHECK_RV(f->C_GetTokenInfo(slot, &ti), CKR_OK);
    CHECK(memcmp(ti.manufacturerID, "vault-transit-pkcs11", 20) == 0, "manufacturer");
    CHECK(ti.serialNumber[0] != ' ' && ti.serialNumber[15] != ' ', "serial is blank");
    CHECK_RV(f->C_GetTokenInfo(99, &ti), CKR_SLOT_ID_INVALID);

    REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s),
               CKR_OK);
    CHECK_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro), CKR_OK);
    CHECK_RV(f->C_OpenSession(slot, 0, NULL, NULL, &ro), CKR_SESSION_PARALLEL_NOT_SUPPORTED);
    CHECK_RV(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), CKR_OK);
    CHECK_RV(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), CKR_USER_ALREADY_LOGGED_IN);
    CHECK_RV(f->C_GetSessionInfo(s, &si), CKR_OK);
    CHECK(si.state == CKS_RW_USER_FUNCTIONS, "session state %lu", si.state);

    keygen_refusals(s);

    for (size_t i = 0; i < nspecs; i++) {
        snprintf(labels[i], sizeof(labels[i]), "mt %d %s", (int)pid, specs[i].what);
        memcpy(ids[i], &pid, sizeof(pid));
        ids[i][4] = (unsigned char)i;
        ids[i][5] = 0xa5;
        REQUIRE_RV(generate(ro, &specs[i], labels[i], ids[i], 6, &pubs[i], &privs[i]),
                   CKR_SESSION_READ_ONLY);
        REQUIRE_RV(generate(s, &specs[i], labels[i], ids[i], 6, &pubs[i], &privs[i]), CKR_OK);
        check_attributes(s, &specs[i], pubs[i], privs[i], labels[i], ids[i], 6);
        pks[i] = public_key(s, pubs[i]);
        CHECK(pks[i] != NULL, "%s: CKA_PUBLIC_KEY_INFO does not parse", specs[i].what);
    }

    /* Find by CKA_ID and class (what crypto11 does), and by label. */
    for (size_t i = 0; i < nspecs; i++) {
        CK_OBJECT_CLASS pc = CKO_PUBLIC_KEY;
        CK_ATTRIBUTE t[] = {{CKA_CLASS, &pc, sizeof(pc)}, {CKA_ID, ids[i], 6}};
        CK_ATTRIBUTE l[] = {{CKA_LABEL, labels[i], strlen(labels[i])}};
        CHECK(find(s, t, 2, found, 16) == 1 && found[0] == pubs[i], "find %s by id",
              specs[i].what);
        CHECK(find(s, l, 1, found, 16) == 2, "find %s by label", specs[i].what);
    }

    /* After warm-up (the searches above), searches, attributes, length questions,
     * verification and public-key encryption send nothing to Vault. */
    {
        struct vtp_http_stats before, after;
        CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
        CK_RSA_PKCS_OAEP_PARAMS op = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0};
        CK_MECHANISM oaep = {CKM_RSA_PKCS_OAEP, &op, sizeof(op)};
        unsigned char sig[64], ct[512], info[512];
        CK_ULONG len = 0, ct_len = sizeof(ct);
        CK_ATTRIBUTE a = {CKA_PUBLIC_KEY_INFO, info, sizeof(info)};

        REQUIRE_RV(vtp_module_http_stats(&before), CKR_OK);
        for (size_t i = 0; i < nspecs; i++) {
            CK_OBJECT_CLASS pc = CKO_PUBLIC_KEY;
            CK_ATTRIBUTE t[] = {{CKA_CLASS, &pc, sizeof(pc)}, {CKA_ID, ids[i], 6}};
            CK_ATTRIBUTE l[] = {{CKA_LABEL, labels[i], strlen(labels[i])}};
            CHECK(find(s, t, 2, found, 16) == 1, "warm search by id");
            CHECK(find(s, l, 1, found, 16) == 2, "warm search by label");
            a.ulValueLen = sizeof(info);
            CHECK_RV(f->C_GetAttributeValue(s, pubs[i], &a, 1), CKR_OK);
        }
        CHECK_RV(f->C_SignInit(s, &m, privs[0]), CKR_OK);
        CHECK_RV(f->C_Sign(s, (CK_BYTE_PTR)message, sizeof(message), NULL, &len), CKR_OK);
        len = 4;
        CHECK_RV(f->C_Sign(s, (CK_BYTE_PTR)message, sizeof(message), sig, &len),
                 CKR_BUFFER_TOO_SMALL);
        CHECK_RV(f->C_SignInit(s, &m, privs[0]), CKR_OPERATION_ACTIVE);
        memset(sig, 0, sizeof(sig));
        CHECK_RV(f->C_VerifyInit(s, &m, pubs[0]), CKR_OK);
        CHECK_RV(f->C_Verify(s, (CK_BYTE_PTR)message, sizeof(message), sig, 64),
                 CKR_SIGNATURE_INVALID);
        CHECK_RV(f->C_EncryptInit(s, &oaep, pubs[4]), CKR_OK);
        CHECK_RV(f->C_Encrypt(s, (CK_BYTE_PTR)message, 16, ct, &ct_len), CKR_OK);
        REQUIRE_RV(vtp_module_http_stats(&after), CKR_OK);
        CHECK(after.requests == before.requests,
              "%lu HTTP requests for work that needs no private key",
              after.requests - before.requests);
        /* end the pending sign operation */
        len = sizeof(sig);
        CHECK_RV(f->C_Sign(s, (CK_BYTE_PTR)message, sizeof(message), sig, &len), CKR_OK);
    }

    /* Every mechanism on every key type it fits. */
    for (size_t i = 0; i < nspecs; i++) {
        if (pks[i] == NULL)
            continue;
        for (size_t j = 0; j < sizeof(mechcases) / sizeof(mechcases[0]); j++) {
            const struct mechcase *mc = &mechcases[j];
            if (mc->ckk != specs[i].ckk)
                continue;
            sign_and_check(s, privs[i], pubs[i], pks[i], mc->mech, mc->md, specs[i].sig_len,
                           false);
            if (mc->mech != CKM_ECDSA && mc->mech != CKM_RSA_PKCS_PSS && mc->mech != CKM_RSA_PKCS)
                sign_and_check(s, privs[i], pubs[i], pks[i], mc->mech, mc->md, specs[i].sig_len,
                               true);
        }
    }

    if (pks[4] != NULL) {
        crypt_checks(s, pubs[4], privs[4], pks[4]);
        stats_count_rsa(s, privs[4]);
    }

    /* Refusals that need no server. */
    {
        CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
        CK_MECHANISM r = {CKM_SHA256_RSA_PKCS, NULL, 0};
        CK_RSA_PKCS_PSS_PARAMS bad = {CKM_SHA256, CKG_MGF1_SHA1, 32};
        CK_MECHANISM p = {CKM_SHA256_RSA_PKCS_PSS, &bad, sizeof(bad)};
        CK_MECHANISM e = {CKM_ECDSA, NULL, 0};
        unsigned char sig[256];
        CK_ULONG len = sizeof(sig);
        CHECK_RV(f->C_Sign(s, (CK_BYTE_PTR)message, 4, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
        CHECK_RV(f->C_SignInit(s, &m, pubs[0]), CKR_KEY_FUNCTION_NOT_PERMITTED);
        CHECK_RV(f->C_SignInit(s, &r, privs[0]), CKR_KEY_TYPE_INCONSISTENT);
        CK_RSA_PKCS_PSS_PARAMS nosalt = {CKM_SHA256, CKG_MGF1_SHA256, 0};
        CK_MECHANISM p0 = {CKM_SHA256_RSA_PKCS_PSS, &nosalt, sizeof(nosalt)};
        CHECK_RV(f->C_SignInit(s, &p, privs[4]), CKR_MECHANISM_PARAM_INVALID);
        /* Transit reads salt_length 0 as "largest salt": signing without salt is refused */
        CHECK_RV(f->C_SignInit(s, &p0, privs[4]), CKR_MECHANISM_PARAM_INVALID);
        CHECK_RV(f->C_VerifyInit(s, &p0, pubs[4]), CKR_OK);
        CHECK_RV(f->C_Verify(s, (CK_BYTE_PTR)message, 4, sig, 256), CKR_SIGNATURE_INVALID);
        CHECK_RV(f->C_SignInit(s, &m, 0xdeadbeef), CKR_KEY_HANDLE_INVALID);
        CHECK_RV(f->C_SignInit(s, &m, privs[0]), CKR_OK);
        CHECK_RV(f->C_SignInit(s, &m, privs[0]), CKR_OPERATION_ACTIVE);
        CHECK_RV(f->C_SignUpdate(s, (CK_BYTE_PTR)message, 4), CKR_OK);
        /* C_Sign after C_SignUpdate: C_Sign's list has no CKR_OPERATION_ACTIVE */
        CHECK_RV(f->C_Sign(s, (CK_BYTE_PTR)message, 4, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
        CHECK_RV(f->C_SignInit(s, &e, privs[0]), CKR_OK);
        CHECK_RV(f->C_Sign(s, (CK_BYTE_PTR)message, 0, sig, &len), CKR_DATA_LEN_RANGE);
    }

    /* Eight threads, each with its own session, signing at once. */
    if (pks[0] != NULL) {
        pthread_t th[8];
        struct thread_arg ta[8];
        int ok = 0;
        for (int i = 0; i < 8; i++) {
            ta[i] = (struct thread_arg){privs[0], pks[0], 0, 10, i, NULL};
            pthread_create(&th[i], NULL, sign_thread, &ta[i]);
        }
        for (int i = 0; i < 8; i++) {
            pthread_join(th[i], NULL);
            ok += ta[i].ok;
        }
        CHECK(ok == 80, "threads: %d of 80 signatures verified", ok);
    }

    /* Group commit: with one request in flight per key, 16 threads must share requests, and
     * every caller must still get a signature over its own message. */
    if (pks[0] != NULL) {
        struct vtp_batch_stats before, after;
        int ok = sign_in_threads("batch.conf",
                                 "batching = true\nbatch_concurrency = 1\nbatch_max_items = 5\n",
                                 ids[0], pks[0], 16, 20, false, &before, &after);

        CHECK(ok == 320, "batched threads: %d of 320 signatures verified", ok);
        CHECK(after.items - before.items == 320, "%lu items went through the queues",
              after.items - before.items);
        CHECK(after.requests - before.requests < 320,
              "320 signatures took %lu requests: nothing was batched",
              after.requests - before.requests);
        CHECK(after.max_batch <= 5, "a batch of %lu items exceeds batch_max_items",
              after.max_batch);
        printf("group commit: 320 signatures in %lu requests, largest batch %lu\n",
               after.requests - before.requests, after.max_batch);
        group_commit_at_the_cap(ids[0], pks[0]);
        /* 64 callers at once with four requests in flight per key: afterwards no request slot
         * may be left taken (a slot once leaked when two requests returned before the waiter
         * the first promoted had run: the key then had one slot fewer for good). */
        ok = sign_in_threads("batch-64.conf", "batching = true\nbatch_concurrency = 4\n", ids[0],
                             pks[0], 64, 10, true, &before, &after);
        CHECK(ok == 640, "64 threads, batch_concurrency 4: %d of 640 signatures verified", ok);
        CHECK(after.in_flight == 0 && after.waiting == 0,
              "64 threads, batch_concurrency 4: %lu request slot(s) still in flight, %lu waiting",
              after.in_flight, after.waiting);
        printf("group commit, 64 threads, 4 in flight: 640 signatures in %lu requests, largest "
               "batch %lu, %lu slots in flight afterwards\n",
               after.requests - before.requests, after.max_batch, after.in_flight);
        /* back to the configuration of the run */
        CHECK_RV(f->C_Finalize(NULL), CKR_OK);
        REQUIRE_RV(f->C_Initialize(NULL), CKR_OK);
        REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s),
                   CKR_OK);
        for (size_t i = 0; i < nspecs; i++) {
            CK_OBJECT_CLASS c2 = CKO_PRIVATE_KEY;
            CK_ATTRIBUTE t2[] = {{CKA_CLASS, &c2, sizeof(c2)}, {CKA_ID, ids[i], 6}};
            find(s, t2, 2, &privs[i], 1);
        }
    }

    /* Rotation, certificates, label changes (re-initializes the module). */
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);
    info_texts_whole();
    search_shows_key_once();
    recreated_key_invalidates_handles();
    usage_and_transit_flags();
    concurrent_generations_indexed();
    kv_label_like_encoded_name();
    lifecycle_checks(ids[0], labels[0], pks[0]);
    REQUIRE_RV(f->C_Initialize(NULL), CKR_OK);
    REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s),
               CKR_OK);
    for (size_t i = 0; i < nspecs; i++) {
        CK_OBJECT_CLASS c3 = CKO_PRIVATE_KEY;
        CK_ATTRIBUTE t3[] = {{CKA_CLASS, &c3, sizeof(c3)}, {CKA_ID, ids[i], 6}};
        find(s, t3, 2, &privs[i], 1);
    }

    /* fork(): the child must initialize again before it may use the module. Another thread
     * of the parent signs throughout, so the fork happens with requests in flight. Not in an
     * ASan build: GCC 12's ASan runtime has no fork handler for its allocator, so a child
     * forked while that thread allocates can block at its first malloc (2 runs in 15 hung in
     * the child right after its first requests, in and outside the module); there the fork
     * happens with the module idle. The default and TSan builds fork during signing. */
    {
#if defined(__SANITIZE_ADDRESS__)
        const bool sign_across_fork = false;
#else
        const bool sign_across_fork = true;
#endif
        pthread_t signer;
        CK_OBJECT_CLASS pubc = CKO_PUBLIC_KEY;
        CK_ATTRIBUTE tq[] = {{CKA_CLASS, &pubc, sizeof(pubc)}, {CKA_ID, ids[0], 6}};
        CK_OBJECT_HANDLE cur_pub = 0;
        EVP_PKEY *cur = find(s, tq, 2, &cur_pub, 1) == 1 ? public_key(s, cur_pub) : NULL;
        struct thread_arg bg = {privs[0], cur, 0, 40, 99, NULL};
        pid_t child;
        CHECK(cur != NULL, "current public key of the rotated key");
        if (cur != NULL && sign_across_fork)
            pthread_create(&signer, NULL, sign_thread, &bg);
        usleep(20 * 1000);
        child = fork();
        if (child == 0) {
            CK_ULONG c = 8;
            CK_SESSION_HANDLE cs;
            CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
            unsigned char sig[64];
            CK_ULONG len = sizeof(sig);
            int bad = 0;
            bad |= f->C_GetSlotList(CK_TRUE, slots, &c) != CKR_CRYPTOKI_NOT_INITIALIZED;
            bad |= f->C_Initialize(NULL) != CKR_OK;
            bad |= f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &cs) != CKR_OK;
            CK_OBJECT_CLASS pc = CKO_PRIVATE_KEY;
            CK_ATTRIBUTE t[] = {{CKA_CLASS, &pc, sizeof(pc)}, {CKA_ID, ids[0], 6}};
            bad |= find(cs, NULL, 0, found, 16) != 2 * nspecs;
            bad |= find(cs, t, 2, found, 16) != 1;
            bad |= f->C_SignInit(cs, &m, found[0]) != CKR_OK;
            bad |= f->C_Sign(cs, (CK_BYTE_PTR)message, sizeof(message), sig, &len) != CKR_OK;
            bad |= f->C_Finalize(NULL) != CKR_OK;
            _exit(bad ? 1 : 0);
        }
        int status = 0;
        waitpid(child, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "forked child status %d", status);
        CHECK_RV(f->C_GetSessionInfo(s, &si), CKR_OK); /* the parent is unaffected */
        if (cur != NULL && sign_across_fork) {
            pthread_join(signer, NULL);
            CHECK(bg.ok == 40, "parent thread signing across the fork: %d of 40 verified", bg.ok);
        }
        EVP_PKEY_free(cur);
    }

    /* CKA_ID and CKA_LABEL survive unloading the module. */
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);
    CHECK_RV(f->C_GetSessionInfo(s, &si), CKR_CRYPTOKI_NOT_INITIALIZED);
    CHECK_RV(f->C_Initialize(NULL), CKR_OK);
    CHECK_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s), CKR_OK);
    for (size_t i = 0; i < nspecs; i++) {
        CK_OBJECT_CLASS pc = CKO_PRIVATE_KEY;
        unsigned char lab[64];
        CK_ATTRIBUTE t[] = {{CKA_CLASS, &pc, sizeof(pc)}, {CKA_ID, ids[i], 6}};
        CK_ATTRIBUTE l = {CKA_LABEL, lab, sizeof(lab)};
        CHECK(find(s, t, 2, found, 16) == 1, "after reload: %s not found by id", specs[i].what);
        CHECK_RV(f->C_GetAttributeValue(s, found[0], &l, 1), CKR_OK);
        CHECK(l.ulValueLen == strlen(labels[i]) && memcmp(lab, labels[i], l.ulValueLen) == 0,
              "after reload: label of %s", specs[i].what);
        privs[i] = found[0];
    }

    /* Destroying one half deletes the Transit key; destroying the other half then still
     * succeeds once (crypto11 and SPIRE destroy both before regenerating). */
    for (size_t i = 0; i < nspecs; i++) {
        CK_OBJECT_CLASS pc = CKO_PUBLIC_KEY;
        CK_ATTRIBUTE t[] = {{CKA_ID, ids[i], 6}};
        CK_ATTRIBUTE tp[] = {{CKA_CLASS, &pc, sizeof(pc)}, {CKA_ID, ids[i], 6}};
        CK_OBJECT_HANDLE pub = 0;
        CHECK(find(s, tp, 2, &pub, 1) == 1, "%s: public half found", specs[i].what);
        CHECK_RV(f->C_DestroyObject(s, privs[i]), CKR_OK);
        CHECK(find(s, t, 1, found, 16) == 0, "%s still found after destroy", specs[i].what);
        CHECK_RV(f->C_DestroyObject(s, pub), CKR_OK);
        CHECK_RV(f->C_DestroyObject(s, pub), CKR_OBJECT_HANDLE_INVALID);
        CHECK_RV(f->C_DestroyObject(s, privs[i]), CKR_OBJECT_HANDLE_INVALID);
        EVP_PKEY_free(pks[i]);
    }
    CHECK_RV(f->C_CloseSession(s), CKR_OK);
    CHECK_RV(f->C_CloseSession(s), CKR_SESSION_HANDLE_INVALID);
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);
    CHECK_RV(f->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
    return p11t_summary("test-module");
}
