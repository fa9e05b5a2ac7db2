/* mech.c - the key type and mechanism table. */
#include "common.h"

#include <stdatomic.h>
#include <string.h>

#include "mech.h"

static const unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const unsigned char oid_p521[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};
static const unsigned char oid_ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};

#define EC_TYPE(t, bits, siglen, oid, names)                                                       \
    {t, VTP_KIND_EC, CKK_EC, CKM_EC_KEY_PAIR_GEN, bits, siglen, oid, sizeof(oid), names}
#define RSA_TYPE(t, bits) {t, VTP_KIND_RSA, CKK_RSA, CKM_RSA_PKCS_KEY_PAIR_GEN, bits, bits / 8, NULL, 0, NULL}

static const struct vtp_keytype keytypes[] = {
    EC_TYPE("ecdsa-p256", 256, 64, oid_p256, "prime256v1|secp256r1|P-256|nistp256"),
    EC_TYPE("ecdsa-p384", 384, 96, oid_p384, "secp384r1|prime384v1|P-384|nistp384"),
    EC_TYPE("ecdsa-p521", 521, 132, oid_p521, "secp521r1|prime521v1|P-521|nistp521"),
    RSA_TYPE("rsa-2048", 2048),
    RSA_TYPE("rsa-3072", 3072),
    RSA_TYPE("rsa-4096", 4096),
    {"ed25519", VTP_KIND_ED25519, CKK_EC_EDWARDS, CKM_EC_EDWARDS_KEY_PAIR_GEN, 255, 64, oid_ed25519,
     sizeof(oid_ed25519), "edwards25519|ed25519|Ed25519"},
};

const struct vtp_keytype *vtp_keytype_by_transit(const char *transit_type)
{
    if (transit_type == NULL)
        return NULL;
    for (size_t i = 0; i < VTP_ARRAY_SIZE(keytypes); i++)
        if (strcmp(keytypes[i].transit_type, transit_type) == 0)
            return &keytypes[i];
    return NULL;
}

static bool name_in_list(const char *list, const unsigned char *name, size_t len)
{
    const char *p = list;
    while (p != NULL && *p != '\0') {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && strncasecmp(p, (const char *)name, n) == 0)
            return true;
        p = bar ? bar + 1 : NULL;
    }
    return false;
}

const struct vtp_keytype *vtp_keytype_by_ec_params(enum vtp_key_kind kind,
                                                   const unsigned char *der, size_t len)
{
    if (der == NULL || len < 2)
        return NULL;
    for (size_t i = 0; i < VTP_ARRAY_SIZE(keytypes); i++) {
        const struct vtp_keytype *kt = &keytypes[i];
        if (kt->kind != kind || kt->ec_params == NULL)
            continue;
        if (len == kt->ec_params_len && memcmp(der, kt->ec_params, len) == 0)
            return kt;
        /* PrintableString (0x13) or UTF8String (0x0c) curve name, short form length. */
        if ((der[0] == 0x13 || der[0] == 0x0c) && der[1] < 0x80 && (size_t)der[1] + 2 == len &&
            name_in_list(kt->curve_names, der + 2, der[1]))
            return kt;
    }
    return NULL;
}

const struct vtp_keytype *vtp_keytype_by_rsa_bits(unsigned long bits)
{
    for (size_t i = 0; i < VTP_ARRAY_SIZE(keytypes); i++)
        if (keytypes[i].kind == VTP_KIND_RSA && keytypes[i].bits == bits)
            return &keytypes[i];
    return NULL;
}

#define SV (CKF_SIGN | CKF_VERIFY)
#define ECF (CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS)

static const struct vtp_mech mechs[] = {
    /* key generation */
    {CKM_EC_KEY_PAIR_GEN, VTP_KIND_EC, CKF_GENERATE_KEY_PAIR | ECF, VTP_INPUT_NONE, NULL, NULL,
     NULL, false},
    {CKM_RSA_PKCS_KEY_PAIR_GEN, VTP_KIND_RSA, CKF_GENERATE_KEY_PAIR, VTP_INPUT_NONE, NULL, NULL,
     NULL, false},
    {CKM_EC_EDWARDS_KEY_PAIR_GEN, VTP_KIND_ED25519, CKF_GENERATE_KEY_PAIR, VTP_INPUT_NONE, NULL,
     NULL, NULL, false},
    /* ECDSA */
    {CKM_ECDSA, VTP_KIND_EC, SV | ECF, VTP_INPUT_DIGEST, NULL, NULL, NULL, false},
    {CKM_ECDSA_SHA1, VTP_KIND_EC, SV | ECF, VTP_INPUT_HASH, "SHA1", "sha1", NULL, false},
    {CKM_ECDSA_SHA224, VTP_KIND_EC, SV | ECF, VTP_INPUT_HASH, "SHA224", "sha2-224", NULL, false},
    {CKM_ECDSA_SHA256, VTP_KIND_EC, SV | ECF, VTP_INPUT_HASH, "SHA256", "sha2-256", NULL, false},
    {CKM_ECDSA_SHA384, VTP_KIND_EC, SV | ECF, VTP_INPUT_HASH, "SHA384", "sha2-384", NULL, false},
    {CKM_ECDSA_SHA512, VTP_KIND_EC, SV | ECF, VTP_INPUT_HASH, "SHA512", "sha2-512", NULL, false},
    /* RSA PKCS#1 v1.5 */
    {CKM_RSA_PKCS, VTP_KIND_RSA, SV, VTP_INPUT_DIGESTINFO, NULL, "none", "pkcs1v15", false},
    {CKM_SHA1_RSA_PKCS, VTP_KIND_RSA, SV, VTP_INPUT_HASH, "SHA1", "sha1", "pkcs1v15", false},
    {CKM_SHA224_RSA_PKCS, VTP_KIND_RSA, SV, VTP_INPUT_HASH, "SHA224", "sha2-224", "pkcs1v15",
     false},
    {CKM_SHA256_RSA_PKCS, VTP_KIND_RSA, SV, VTP_INPUT_HASH, "SHA256", "sha2-256", "pkcs1v15",
     false},
    {CKM_SHA384_RSA_PKCS, VTP_KIND_RSA, SV, VTP_INPUT_HASH, "SHA384", "sha2-384", "pkcs1v15",
     false},
    {CKM_SHA512_RSA_PKCS, VTP_KIND_RSA, SV, VTP_INPUT_HASH, "SHA512", "sha2-512", "pkcs1v15",
     false},
    /* RSA PSS: the hash comes from CK_RSA_PKCS_PSS_PARAMS for CKM_RSA_PKCS_PSS */
    {CKM_RSA_PKCS_PSS, VTP_KIND_RSA, SV, VTP_INPUT_DIGEST, NULL, NULL, "pss", true},
    {CKM_SHA1_RSA_PKCS_PSS, VTP_KIND_RSA, SV, VTP_INPUT_HASH, "SHA1", "sha1", "pss", true},
    {CKM_SHA224_RSA_PKCS_PSS, VTP_KIND_RSA, SV, VTP_INPUT_HASH, "SHA224", "sha2-224", "pss", true},
    {CKM_SHA256_RSA_PKCS_PSS, VTP_KIND_RSA, SV, VTP_INPUT_HASH, "SHA256", "sha2-256", "pss", true},
    {CKM_SHA384_RSA_PKCS_PSS, VTP_KIND_RSA, SV, VTP_INPUT_HASH, "SHA384", "sha2-384", "pss", true},
    {CKM_SHA512_RSA_PKCS_PSS, VTP_KIND_RSA, SV, VTP_INPUT_HASH, "SHA512", "sha2-512", "pss", true},
    /* Ed25519 (pure) */
    {CKM_EDDSA, VTP_KIND_ED25519, SV, VTP_INPUT_MESSAGE, NULL, NULL, NULL, false},
    /* RSA-OAEP: SHA-256, MGF1-SHA-256, no label, as Transit does it */
    {CKM_RSA_PKCS_OAEP, VTP_KIND_RSA, CKF_ENCRYPT | CKF_DECRYPT, VTP_INPUT_NONE, "SHA256", NULL,
     NULL, false},
    /* digests, computed here */
    {CKM_SHA_1, 0, CKF_DIGEST, VTP_INPUT_NONE, "SHA1", NULL, NULL, false},
    {CKM_SHA224, 0, CKF_DIGEST, VTP_INPUT_NONE, "SHA224", NULL, NULL, false},
    {CKM_SHA256, 0, CKF_DIGEST, VTP_INPUT_NONE, "SHA256", NULL, NULL, false},
    {CKM_SHA384, 0, CKF_DIGEST, VTP_INPUT_NONE, "SHA384", NULL, NULL, false},
    {CKM_SHA512, 0, CKF_DIGEST, VTP_INPUT_NONE, "SHA512", NULL, NULL, false},
};

const struct vtp_mech *vtp_mech_lookup(CK_MECHANISM_TYPE type)
{
    for (size_t i = 0; i < VTP_ARRAY_SIZE(mechs); i++)
        if (mechs[i].type == type)
            return &mechs[i];
    return NULL;
}

const struct vtp_mech *vtp_mech_at(size_t i)
{
    return i < VTP_ARRAY_SIZE(mechs) ? &mechs[i] : NULL;
}

size_t vtp_mech_count(void)
{
    return VTP_ARRAY_SIZE(mechs);
}

void vtp_mech_info(const struct vtp_mech *m, CK_MECHANISM_INFO *info)
{
    memset(info, 0, sizeof(*info));
    info->flags = m->flags;
    switch (m->kind) {
    case VTP_KIND_EC:
        info->ulMinKeySize = 256;
        info->ulMaxKeySize = 521;
        break;
    case VTP_KIND_RSA:
        info->ulMinKeySize = 2048;
        info->ulMaxKeySize = 4096;
        break;
    case VTP_KIND_ED25519:
        info->ulMinKeySize = 255;
        info->ulMaxKeySize = 255;
        break;
    default:
        break; /* digests: no key */
    }
    if (m->kind != 0)
        info->flags |= CKF_HW; /* the private-key operation runs in Vault, not here */
}

static const struct {
    const char *md;
    const char *transit;
    CK_MECHANISM_TYPE hash;
    CK_RSA_PKCS_MGF_TYPE mgf;
} hashes[] = {
    {"SHA1", "sha1", CKM_SHA_1, CKG_MGF1_SHA1},
    {"SHA224", "sha2-224", CKM_SHA224, CKG_MGF1_SHA224},
    {"SHA256", "sha2-256", CKM_SHA256, CKG_MGF1_SHA256},
    {"SHA384", "sha2-384", CKM_SHA384, CKG_MGF1_SHA384},
    {"SHA512", "sha2-512", CKM_SHA512, CKG_MGF1_SHA512},
};

const char *vtp_mech_transit_hash_for_md(const char *md_name)
{
    for (size_t i = 0; md_name != NULL && i < VTP_ARRAY_SIZE(hashes); i++)
        if (strcmp(hashes[i].md, md_name) == 0)
            return hashes[i].transit;
    return NULL;
}

const char *vtp_mech_md_for_hash(CK_MECHANISM_TYPE hash)
{
    for (size_t i = 0; i < VTP_ARRAY_SIZE(hashes); i++)
        if (hashes[i].hash == hash)
            return hashes[i].md;
    return NULL;
}

const char *vtp_mech_md_for_mgf(CK_RSA_PKCS_MGF_TYPE mgf)
{
    for (size_t i = 0; i < VTP_ARRAY_SIZE(hashes); i++)
        if (hashes[i].mgf == mgf)
            return hashes[i].md;
    return NULL;
}

bool vtp_mech_allowed_for(const struct vtp_mech *m, enum vtp_key_kind kind)
{
    return m->kind == kind &&
           (m->flags & (CKF_SIGN | CKF_VERIFY | CKF_ENCRYPT | CKF_DECRYPT)) != 0;
}

/* The digests of the mechanism table; a name missing here is fetched on each call. */
static const char *const md_names[] = {"SHA1",     "SHA224",   "SHA256",   "SHA384",
                                       "SHA512",   "SHA3-224", "SHA3-256", "SHA3-384",
                                       "SHA3-512"};
static _Atomic(EVP_MD *) mds[VTP_ARRAY_SIZE(md_names)];

const EVP_MD *vtp_md(const char *md_name)
{
    EVP_MD *md, *none = NULL;
    size_t i;

    if (md_name == NULL)
        return NULL;
    for (i = 0; i < VTP_ARRAY_SIZE(md_names); i++)
        if (strcmp(md_names[i], md_name) == 0)
            break;
    if (i == VTP_ARRAY_SIZE(md_names))
        return EVP_get_digestbyname(md_name);
    md = atomic_load(&mds[i]);
    if (md != NULL)
        return md;
    md = EVP_MD_fetch(NULL, md_name, NULL);
    if (md == NULL)
        return NULL;
    if (!atomic_compare_exchange_strong(&mds[i], &none, md)) {
        EVP_MD_free(md); /* another thread was first */
        return none;
    }
    return md;
}

void vtp_md_clear(void)
{
    for (size_t i = 0; i < VTP_ARRAY_SIZE(md_names); i++)
        EVP_MD_free(atomic_exchange(&mds[i], NULL));
}
