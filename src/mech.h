/* mech.h - the one table of key types and mechanisms (src/mech.c).
 *
 * Every CKM_* the module offers maps here to the key type it needs, what the module does locally
 * (hashing, encoding) and the Transit parameters it sends. C_GetMechanismList/Info, C_SignInit,
 * C_VerifyInit and C_GenerateKeyPair all read this table and nothing else.
 */
#ifndef VTP_MECH_H
#define VTP_MECH_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/evp.h>

#include "vtp-pkcs11.h"

enum vtp_key_kind {
    VTP_KIND_EC = 1,
    VTP_KIND_RSA,
    VTP_KIND_ED25519,
};

/* One Transit asymmetric key type. */
struct vtp_keytype {
    const char *transit_type; /* "ecdsa-p256" */
    enum vtp_key_kind kind;
    CK_KEY_TYPE ckk;
    CK_MECHANISM_TYPE gen_mech;     /* CKA_KEY_GEN_MECHANISM */
    unsigned long bits;             /* curve or modulus size */
    size_t sig_len;                 /* PKCS#11 signature length in bytes */
    const unsigned char *ec_params; /* DER OID of the curve (EC and Edwards), else NULL */
    size_t ec_params_len;
    const char *curve_names; /* printable names accepted in CKA_EC_PARAMS, '|' separated */
};

/* Key types Transit has that the module can use; NULL for others (aes256-gcm96, hmac, ...). */
const struct vtp_keytype *vtp_keytype_by_transit(const char *transit_type);
/* From CKA_EC_PARAMS: a DER OID or a DER PrintableString curve name ("prime256v1", "P-256").
 * NULL if unknown. kind filters EC vs Edwards. */
const struct vtp_keytype *vtp_keytype_by_ec_params(enum vtp_key_kind kind,
                                                   const unsigned char *der, size_t len);
const struct vtp_keytype *vtp_keytype_by_rsa_bits(unsigned long bits);

/* How the module turns C_Sign input into a Transit request. */
enum vtp_input {
    VTP_INPUT_DIGEST = 1, /* caller passes a digest: CKM_ECDSA, CKM_RSA_PKCS_PSS */
    VTP_INPUT_DIGESTINFO, /* caller passes DigestInfo||digest: CKM_RSA_PKCS */
    VTP_INPUT_HASH,       /* module hashes the data locally: CKM_ECDSA_SHA256 ... */
    VTP_INPUT_MESSAGE,    /* the data itself is signed: CKM_EDDSA */
    VTP_INPUT_NONE,       /* not a signature mechanism: encryption, digest, key generation */
};

struct vtp_mech {
    CK_MECHANISM_TYPE type;
    enum vtp_key_kind kind; /* key kind it needs; 0 for key generation/digest */
    CK_FLAGS flags;         /* CKF_SIGN | CKF_VERIFY | CKF_GENERATE_KEY_PAIR ... */
    enum vtp_input input;
    const char *md_name; /* OpenSSL digest for VTP_INPUT_HASH (and PSS's hash), else NULL */
    const char *transit_hash; /* Transit hash_algorithm; NULL = leave Transit's default */
    const char *transit_sigalg; /* "pkcs1v15", "pss", NULL */
    bool pss;                   /* takes CK_RSA_PKCS_PSS_PARAMS */
};

const struct vtp_mech *vtp_mech_lookup(CK_MECHANISM_TYPE type);
/* All mechanisms, in table order. */
const struct vtp_mech *vtp_mech_at(size_t i);
size_t vtp_mech_count(void);
/* CK_MECHANISM_INFO with true key sizes (bits) for the mechanism. */
void vtp_mech_info(const struct vtp_mech *m, CK_MECHANISM_INFO *info);

/* Transit hash_algorithm name for an OpenSSL digest size / CKM_SHA* mechanism; NULL if none. */
const char *vtp_mech_transit_hash_for_md(const char *md_name);
/* Maps a CKM_SHA* hash mechanism to an OpenSSL digest name ("SHA256"); NULL if unknown. */
const char *vtp_mech_md_for_hash(CK_MECHANISM_TYPE hash);
/* Maps CKG_MGF1_SHA* to its OpenSSL digest name; NULL if unknown. */
const char *vtp_mech_md_for_mgf(CK_RSA_PKCS_MGF_TYPE mgf);

/* The OpenSSL digest of that name, fetched once and kept (a digest initialised from
 * EVP_get_digestbyname() is fetched again each time, on every signature's path); NULL if
 * unknown. Thread-safe. */
const EVP_MD *vtp_md(const char *md_name);
/* C_Finalize, once no call is inside: frees them. */
void vtp_md_clear(void);

/* Does a key of kind allow this mechanism (for CKA_ALLOWED_MECHANISMS)? */
bool vtp_mech_allowed_for(const struct vtp_mech *m, enum vtp_key_kind kind);

#endif /* VTP_MECH_H */
