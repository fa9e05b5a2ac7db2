/* test-mech.c - the key type and mechanism table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "common.h"
#include "keygen.h"
#include "mech.h"

static void test_keytypes(void **state)
{
    static const char *usable[] = {"ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa-2048",
                                   "rsa-3072",   "rsa-4096",   "ed25519"};
    static const char *unusable[] = {"aes256-gcm96", "aes128-gcm96", "chacha20-poly1305", "hmac",
                                     "managed_key", "ecdsa-p257", "", "RSA-2048"};
    (void)state;
    for (size_t i = 0; i < VTP_ARRAY_SIZE(usable); i++)
        assert_non_null(vtp_keytype_by_transit(usable[i]));
    for (size_t i = 0; i < VTP_ARRAY_SIZE(unusable); i++)
        assert_null(vtp_keytype_by_transit(unusable[i]));
    assert_null(vtp_keytype_by_transit(NULL));
    assert_int_equal(vtp_keytype_by_transit("ecdsa-p521")->sig_len, 132);
    assert_int_equal(vtp_keytype_by_transit("rsa-3072")->sig_len, 384);
    assert_int_equal(vtp_keytype_by_transit("ed25519")->ckk, CKK_EC_EDWARDS);
}

static void test_curves(void **state)
{
    static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    static const unsigned char p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
    static const unsigned char k256[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a};
    static const unsigned char ed[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
    static const unsigned char name[] = {0x13, 0x09, 's', 'e', 'c', 'p', '3', '8', '4', 'r', '1'};
    static const unsigned char edname[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd',
                                           's',  '2',  '5', '5', '1', '9'};
    static const unsigned char badlen[] = {0x13, 0x20, 'P', '-', '2', '5', '6'};
    (void)state;
    assert_string_equal(vtp_keytype_by_ec_params(VTP_KIND_EC, p256, sizeof(p256))->transit_type,
                        "ecdsa-p256");
    assert_string_equal(vtp_keytype_by_ec_params(VTP_KIND_EC, p384, sizeof(p384))->transit_type,
                        "ecdsa-p384");
    assert_string_equal(vtp_keytype_by_ec_params(VTP_KIND_EC, name, sizeof(name))->transit_type,
                        "ecdsa-p384");
    assert_null(vtp_keytype_by_ec_params(VTP_KIND_EC, k256, sizeof(k256)));
    assert_null(vtp_keytype_by_ec_params(VTP_KIND_EC, ed, sizeof(ed)));
    assert_null(vtp_keytype_by_ec_params(VTP_KIND_EC, p256, sizeof(p256) - 1));
    assert_null(vtp_keytype_by_ec_params(VTP_KIND_EC, badlen, sizeof(badlen)));
    assert_null(vtp_keytype_by_ec_params(VTP_KIND_EC, NULL, 0));
    assert_string_equal(vtp_keytype_by_ec_params(VTP_KIND_ED25519, ed, sizeof(ed))->transit_type,
                        "ed25519");
    assert_string_equal(
        vtp_keytype_by_ec_params(VTP_KIND_ED25519, edname, sizeof(edname))->transit_type,
        "ed25519");
    assert_non_null(vtp_keytype_by_rsa_bits(4096));
    assert_null(vtp_keytype_by_rsa_bits(1024));
    assert_null(vtp_keytype_by_rsa_bits(2047));
}

static void test_mechanisms(void **state)
{
    const struct vtp_mech *m;
    CK_MECHANISM_INFO info;
    (void)state;

    m = vtp_mech_lookup(CKM_RSA_PKCS);
    assert_non_null(m);
    assert_string_equal(m->transit_hash, "none");
    assert_string_equal(m->transit_sigalg, "pkcs1v15");
    assert_int_equal(m->input, VTP_INPUT_DIGESTINFO);
    m = vtp_mech_lookup(CKM_SHA384_RSA_PKCS_PSS);
    assert_true(m->pss);
    assert_string_equal(m->transit_hash, "sha2-384");
    assert_string_equal(m->md_name, "SHA384");
    m = vtp_mech_lookup(CKM_ECDSA);
    assert_int_equal(m->input, VTP_INPUT_DIGEST);
    assert_null(m->transit_hash);
    assert_null(vtp_mech_lookup(CKM_DSA));
    assert_null(vtp_mech_lookup(CKM_AES_GCM));
    /* every hashing mechanism names a digest OpenSSL has and a Transit hash */
    for (size_t i = 0; i < vtp_mech_count(); i++) {
        m = vtp_mech_at(i);
        if (m->input == VTP_INPUT_HASH) {
            assert_non_null(EVP_get_digestbyname(m->md_name));
            assert_string_equal(vtp_mech_transit_hash_for_md(m->md_name), m->transit_hash);
        }
        vtp_mech_info(m, &info);
        assert_true(info.ulMinKeySize <= info.ulMaxKeySize);
        assert_true(info.flags & (CKF_SIGN | CKF_GENERATE_KEY_PAIR | CKF_DECRYPT | CKF_DIGEST));
        /* what runs in Vault is flagged CKF_HW; local digests are not */
        assert_int_equal((info.flags & CKF_HW) != 0, m->kind != 0);
    }
    assert_null(vtp_mech_at(vtp_mech_count()));
    vtp_mech_info(vtp_mech_lookup(CKM_SHA256_RSA_PKCS), &info);
    assert_int_equal(info.ulMinKeySize, 2048);
    assert_int_equal(info.ulMaxKeySize, 4096);
    assert_true(info.flags & CKF_VERIFY);
    assert_string_equal(vtp_mech_md_for_mgf(CKG_MGF1_SHA512), "SHA512");
    assert_null(vtp_mech_md_for_mgf(0x1234));
    assert_string_equal(vtp_mech_md_for_hash(CKM_SHA224), "SHA224");
    assert_true(vtp_mech_allowed_for(vtp_mech_lookup(CKM_EDDSA), VTP_KIND_ED25519));
    assert_true(vtp_mech_allowed_for(vtp_mech_lookup(CKM_RSA_PKCS_OAEP), VTP_KIND_RSA));
    assert_false(vtp_mech_allowed_for(vtp_mech_lookup(CKM_SHA256), VTP_KIND_RSA));
    vtp_mech_info(vtp_mech_lookup(CKM_SHA256), &info);
    assert_int_equal(info.flags, CKF_DIGEST);
    assert_int_equal(info.ulMaxKeySize, 0);
    assert_false(vtp_mech_allowed_for(vtp_mech_lookup(CKM_EDDSA), VTP_KIND_EC));
    assert_false(vtp_mech_allowed_for(vtp_mech_lookup(CKM_EC_KEY_PAIR_GEN), VTP_KIND_EC));
}

static void test_names_from_labels(void **state)
{
    char *n;
    (void)state;
    n = vtp_keygen_name_from_label("p-", (const unsigned char *)"SPIRE CA key", 12);
    assert_string_equal(n, "p-SPIRE-CA-key");
    free(n);
    n = vtp_keygen_name_from_label("", (const unsigned char *)"-x.y_z-", 7);
    assert_string_equal(n, "x.y_z"); /* starts and ends with a word character */
    free(n);
    n = vtp_keygen_name_from_label("", (const unsigned char *)"a\xc3\xa9!b..", 7);
    assert_string_equal(n, "ab");
    free(n);
    n = vtp_keygen_name_from_label("k-", (const unsigned char *)"\xff\xfe", 2);
    assert_null(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keytypes),
        cmocka_unit_test(test_curves),
        cmocka_unit_test(test_mechanisms),
        cmocka_unit_test(test_names_from_labels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
