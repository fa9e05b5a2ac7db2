/* test-attr.c - C_GetAttributeValue and template matching rules on key objects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "common.h"
#include "attr.h"
#include "object.h"

static struct vtp_key *make_key(const char *type, const char *name, const json_t *meta)
{
    EVP_PKEY *pk = NULL;
    struct vtp_transit_key tk = {0};
    struct vtp_key *k = NULL;
    unsigned char *der = NULL;
    int len;

    if (strcmp(type, "ecdsa-p256") == 0)
        pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    else if (strcmp(type, "ed25519") == 0)
        pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    else
        pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    assert_non_null(pk);
    len = i2d_PUBKEY(pk, &der);
    assert_true(len > 0);
    tk.name = (char *)name;
    tk.type = (char *)type;
    tk.latest_version = 3;
    tk.spki = der;
    tk.spki_len = (size_t)len;
    assert_int_equal(vtp_key_build(&tk, meta, "pre-", &k), CKR_OK);
    OPENSSL_free(der);
    EVP_PKEY_free(pk);
    return k;
}

static void test_default_id_and_label(void **state)
{
    struct vtp_key *k = make_key("ecdsa-p256", "pre-web", NULL);
    (void)state;
    assert_string_equal(k->label, "web");
    assert_int_equal(k->id_len, 3);
    assert_memory_equal(k->id, "web", 3);
    assert_int_equal(k->version, 3);
    assert_int_equal(k->pub_handle, k->priv_handle + 1);
    vtp_key_unref(k);
}

static void test_meta(void **state)
{
    json_t *meta = json_pack("{s:s, s:s}", "id", "0a0b", "label", "my key");
    struct vtp_key *k = make_key("ed25519", "pre-x", meta);
    CK_BYTE id[2] = {0x0a, 0x0b};
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_ATTRIBUTE t[] = {{CKA_ID, id, 2}, {CKA_CLASS, &cls, sizeof(cls)}};
    CK_ATTRIBUTE lab = {CKA_LABEL, "my key", 6};
    CK_ATTRIBUTE other = {CKA_LABEL, "my ke", 5};
    (void)state;
    assert_true(vtp_attr_match(k, CKO_PUBLIC_KEY, t, 2));
    assert_false(vtp_attr_match(k, CKO_PRIVATE_KEY, t, 2));
    assert_true(vtp_attr_match(k, CKO_PRIVATE_KEY, &lab, 1));
    assert_false(vtp_attr_match(k, CKO_PRIVATE_KEY, &other, 1));
    assert_true(vtp_attr_match(k, CKO_PRIVATE_KEY, NULL, 0));
    json_decref(meta);
    vtp_key_unref(k);
}

static void test_get_rules(void **state)
{
    struct vtp_key *k = make_key("ecdsa-p256", "pre-web", NULL);
    CK_BBOOL sens = 0;
    unsigned char small[4], point[128];
    CK_ATTRIBUTE t[] = {
        {CKA_SENSITIVE, &sens, sizeof(sens)}, /* ok */
        {CKA_VALUE, small, sizeof(small)},     /* sensitive */
        {CKA_EC_POINT, small, sizeof(small)},  /* too small */
        {CKA_MODULUS, small, sizeof(small)},   /* not an EC attribute */
        {CKA_EC_POINT, NULL, 0},               /* length query */
    };
    CK_RV rv;
    (void)state;
    rv = vtp_attr_get(k, CKO_PRIVATE_KEY, t, 5);
    assert_true(rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_BUFFER_TOO_SMALL ||
                rv == CKR_ATTRIBUTE_TYPE_INVALID);
    assert_int_equal(sens, CK_TRUE);
    assert_int_equal(t[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_int_equal(t[2].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_int_equal(t[3].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_int_equal(t[4].ulValueLen, 67); /* 04 41 04 || X || Y */
    t[4].pValue = point;
    t[4].ulValueLen = sizeof(point);
    assert_int_equal(vtp_attr_get_one(k, CKO_PUBLIC_KEY, &t[4]), CKR_OK);
    assert_int_equal(point[0], 0x04);
    assert_int_equal(point[1], 65);
    assert_int_equal(point[2], 0x04);
    /* the public object has no CKA_SENSITIVE; the private one no CKA_VERIFY */
    t[0].ulValueLen = sizeof(sens);
    assert_int_equal(vtp_attr_get_one(k, CKO_PUBLIC_KEY, &t[0]), CKR_ATTRIBUTE_TYPE_INVALID);
    vtp_key_unref(k);
}

static void test_rsa_and_allowed(void **state)
{
    struct vtp_key *k = make_key("rsa-2048", "pre-r", NULL);
    CK_MECHANISM_TYPE mechs[64];
    CK_ULONG bits = 0;
    unsigned char e[8];
    CK_ATTRIBUTE t[] = {{CKA_ALLOWED_MECHANISMS, mechs, sizeof(mechs)},
                        {CKA_MODULUS_BITS, &bits, sizeof(bits)},
                        {CKA_PUBLIC_EXPONENT, e, sizeof(e)}};
    CK_ATTRIBUTE priv_exp = {CKA_PRIVATE_EXPONENT, NULL, 0};
    CK_ATTRIBUTE ecp = {CKA_EC_PARAMS, NULL, 0};
    bool has_pss = false, has_ecdsa = false;
    (void)state;
    assert_int_equal(vtp_attr_get(k, CKO_PUBLIC_KEY, t, 3), CKR_OK);
    assert_int_equal(bits, 2048);
    assert_int_equal(t[2].ulValueLen, 3);
    for (size_t i = 0; i < t[0].ulValueLen / sizeof(CK_MECHANISM_TYPE); i++) {
        has_pss |= mechs[i] == CKM_SHA256_RSA_PKCS_PSS;
        has_ecdsa |= mechs[i] == CKM_ECDSA;
    }
    assert_true(has_pss);
    assert_false(has_ecdsa);
    assert_int_equal(vtp_attr_get_one(k, CKO_PRIVATE_KEY, &priv_exp), CKR_ATTRIBUTE_SENSITIVE);
    assert_int_equal(vtp_attr_get_one(k, CKO_PRIVATE_KEY, &ecp), CKR_ATTRIBUTE_TYPE_INVALID);
    vtp_key_unref(k);
}

static void test_wrong_type_refused(void **state)
{
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    struct vtp_transit_key tk = {0};
    struct vtp_key *k = NULL;
    unsigned char *der = NULL;
    int len = i2d_PUBKEY(pk, &der);
    (void)state;
    tk.name = "pre-liar";
    tk.type = "ecdsa-p256"; /* but the key is P-384 */
    tk.latest_version = 1;
    tk.spki = der;
    tk.spki_len = (size_t)len;
    assert_int_equal(vtp_key_build(&tk, NULL, "pre-", &k), CKR_KEY_TYPE_INCONSISTENT);
    tk.type = "aes256-gcm96";
    assert_int_equal(vtp_key_build(&tk, NULL, "pre-", &k), CKR_KEY_TYPE_INCONSISTENT);
    assert_null(k);
    OPENSSL_free(der);
    EVP_PKEY_free(pk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_id_and_label), cmocka_unit_test(test_meta),
        cmocka_unit_test(test_get_rules),            cmocka_unit_test(test_rsa_and_allowed),
        cmocka_unit_test(test_wrong_type_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
