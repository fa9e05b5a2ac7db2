/* test-util.c - base64, hex, PEM and small helpers (src/util.c); log names and output
 * (src/log.c). */
#include "common.h"
#include "util.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* RFC 4648 section 10. */
static const struct {
    const char *plain;
    const char *b64;
} rfc4648[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void assert_decodes(const char *in, const void *want, size_t want_len)
{
    unsigned char *out = NULL;
    size_t out_len = 0;

    assert_true(vtp_b64_decode(in, strlen(in), &out, &out_len));
    assert_int_equal(out_len, want_len);
    if (want_len > 0)
        assert_memory_equal(out, want, want_len);
    free(out);
}

static void assert_rejects(const char *in, size_t len)
{
    unsigned char *out = (unsigned char *)"untouched";
    size_t out_len = 12345;

    assert_false(vtp_b64_decode(in, len, &out, &out_len));
    /* Outputs are written only on success. */
    assert_string_equal((const char *)out, "untouched");
    assert_int_equal(out_len, 12345);
}

static void test_b64_vectors(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < VTP_ARRAY_SIZE(rfc4648); i++) {
        char *enc =
            vtp_b64_encode((const unsigned char *)rfc4648[i].plain, strlen(rfc4648[i].plain));
        char unpadded[16];
        size_t n;

        assert_non_null(enc);
        assert_string_equal(enc, rfc4648[i].b64);
        free(enc);

        assert_decodes(rfc4648[i].b64, rfc4648[i].plain, strlen(rfc4648[i].plain));
        /* Without padding. */
        n = strcspn(rfc4648[i].b64, "=");
        memcpy(unpadded, rfc4648[i].b64, n);
        unpadded[n] = '\0';
        assert_decodes(unpadded, rfc4648[i].plain, strlen(rfc4648[i].plain));
    }
}

static void to_url_safe(char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '+')
            *s = '-';
        else if (*s == '/')
            *s = '_';
    }
}

static void test_b64_round_trip(void **state)
{
    unsigned char data[300];
    size_t len, i;

    (void)state;
    for (i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 167 + 13);
    for (len = 0; len <= sizeof(data); len++) {
        char *enc = vtp_b64_encode(data, len);
        size_t n;
        assert_non_null(enc);
        assert_int_equal(strlen(enc), (len + 2) / 3 * 4);
        assert_decodes(enc, data, len);
        to_url_safe(enc);
        assert_decodes(enc, data, len);
        n = strlen(enc);
        while (n > 0 && enc[n - 1] == '=')
            enc[--n] = '\0';
        assert_decodes(enc, data, len);
        free(enc);
    }
}

static void test_b64_url_safe(void **state)
{
    static const unsigned char bytes[] = {0xfb, 0xff, 0xbf, 0xfb, 0xef};

    (void)state;
    assert_decodes("+/+/", bytes, 3);
    assert_decodes("-_-_", bytes, 3);
    assert_decodes("-_-_--8=", bytes, 5);
    assert_decodes("-_-_--8", bytes, 5);
}

static void test_b64_rejects(void **state)
{
    (void)state;
    assert_rejects("Z", 1); /* one digit cannot hold a byte */
    assert_rejects("Zm9vY", 5);
    assert_rejects("Zg=", 3);   /* partial padding */
    assert_rejects("Zg===", 5); /* too much padding */
    assert_rejects("Zm9v====", 8);
    assert_rejects("Zm8==", 5);
    assert_rejects("====", 4);
    assert_rejects("=", 1);
    assert_rejects("Zh==", 4); /* non-zero unused bits */
    assert_rejects("Zm9=", 4);
    assert_rejects("Zg==Zg==", 8); /* padding in the middle */
    assert_rejects("Z=g=", 4);
    assert_rejects("Zm 9v", 5); /* whitespace */
    assert_rejects("Zm9v\n", 5);
    assert_rejects(" Zm9v", 5);
    assert_rejects("Zm9v!", 5);
    assert_rejects("Zm.v", 4);
    assert_rejects("+_+_", 4);  /* both alphabets at once */
    assert_rejects("Zm\0v", 4); /* NUL inside the given length */
    assert_rejects("Zm9v\xc3\xa9", 6);
}

static void test_b64_length_param(void **state)
{
    unsigned char *out = NULL;
    size_t out_len = 0;

    (void)state;
    /* Only in_len characters are read. */
    assert_true(vtp_b64_decode("Zm9vYmFy", 4, &out, &out_len));
    assert_int_equal(out_len, 3);
    assert_memory_equal(out, "foo", 3);
    free(out);
    assert_true(vtp_b64_decode("", 0, &out, &out_len));
    assert_int_equal(out_len, 0);
    free(out);
    assert_false(vtp_b64_decode(NULL, 0, &out, &out_len));
}

static void test_hex(void **state)
{
    static const unsigned char bytes[] = {0x00, 0x01, 0xab, 0xcd, 0xef, 0xff};
    unsigned char *out = NULL;
    size_t out_len = 0;
    char *enc;

    (void)state;
    enc = vtp_hex_encode(bytes, sizeof(bytes));
    assert_non_null(enc);
    assert_string_equal(enc, "0001abcdefff");
    free(enc);
    enc = vtp_hex_encode(bytes, 0);
    assert_non_null(enc);
    assert_string_equal(enc, "");
    free(enc);

    assert_true(vtp_hex_decode("0001ABCDefFF", &out, &out_len));
    assert_int_equal(out_len, sizeof(bytes));
    assert_memory_equal(out, bytes, sizeof(bytes));
    free(out);
    assert_true(vtp_hex_decode("", &out, &out_len));
    assert_int_equal(out_len, 0);
    free(out);

    out = NULL;
    assert_false(vtp_hex_decode("abc", &out, &out_len));
    assert_false(vtp_hex_decode("0g", &out, &out_len));
    assert_false(vtp_hex_decode("0x00", &out, &out_len));
    assert_false(vtp_hex_decode(" 00", &out, &out_len));
    assert_null(out);
}

/* A P-256 SubjectPublicKeyInfo as Transit returns it. */
static const char transit_pem[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEvJ3m1Vt4T0g0dO5b1o1Qo3q0z4cS\n"
    "Yt4Ydm9kQ3lU3rG1qvqPqv4oBf2xq3y9xKXHd2cX2nZpS1vQ2oH9Q2F6cA==\n"
    "-----END PUBLIC KEY-----\n";

static void test_pem(void **state)
{
    unsigned char *der = NULL, *want = NULL;
    size_t der_len = 0, want_len = 0;
    char *text;
    const char *b64_start, *b64_end;
    char b64[200];
    size_t i, o = 0;

    (void)state;
    /* The expected DER is the base64 body decoded. */
    b64_start = strchr(transit_pem, '\n') + 1;
    b64_end = strstr(transit_pem, "-----END");
    for (i = 0; b64_start + i < b64_end; i++) {
        if (b64_start[i] != '\n')
            b64[o++] = b64_start[i];
    }
    b64[o] = '\0';
    assert_true(vtp_b64_decode(b64, o, &want, &want_len));
    assert_int_equal(want_len, 91);

    assert_true(vtp_pem_to_der(transit_pem, &der, &der_len));
    assert_int_equal(der_len, want_len);
    assert_memory_equal(der, want, want_len);
    free(der);

    /* Text before the block and a second block are ignored; any type is fine. */
    text = malloc(strlen(transit_pem) * 2 + 64);
    assert_non_null(text);
    strcpy(text, "Subject: whatever\n");
    strcat(text, transit_pem);
    strcat(text, "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n");
    assert_true(vtp_pem_to_der(text, &der, &der_len));
    assert_int_equal(der_len, want_len);
    assert_memory_equal(der, want, want_len);
    free(der);
    assert_true(vtp_pem_to_der("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
                               &der, &der_len));
    assert_int_equal(der_len, 2);
    assert_int_equal(der[0], 0x30);
    free(der);

    der = NULL;
    assert_false(vtp_pem_to_der("", &der, &der_len));
    assert_false(vtp_pem_to_der("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE", &der, &der_len));
    assert_false(vtp_pem_to_der("-----BEGIN PUBLIC KEY-----\nMFkw\n", &der, &der_len));
    assert_false(vtp_pem_to_der("-----BEGIN PUBLIC KEY-----\nMFkw\n-----END CERTIFICATE-----\n",
                                &der, &der_len));
    assert_null(der);
    free(text);
    free(want);
}

static void test_pad_copy(void **state)
{
    unsigned char buf[8];

    (void)state;
    memset(buf, 'x', sizeof(buf));
    vtp_pad_copy(buf, sizeof(buf), "abc");
    assert_memory_equal(buf, "abc     ", 8);
    vtp_pad_copy(buf, sizeof(buf), "abcdefgh");
    assert_memory_equal(buf, "abcdefgh", 8);
    vtp_pad_copy(buf, sizeof(buf), "abcdefghijk");
    assert_memory_equal(buf, "abcdefgh", 8);
    vtp_pad_copy(buf, sizeof(buf), "");
    assert_memory_equal(buf, "        ", 8);
    vtp_pad_copy(buf, sizeof(buf), NULL);
    assert_memory_equal(buf, "        ", 8);
}

static void test_small_helpers(void **state)
{
    int64_t a, b;
    char *s, *secret;

    (void)state;
    a = vtp_now_ms();
    b = vtp_now_ms();
    assert_true(a > 0);
    assert_true(b >= a);

    assert_null(vtp_strdup_or_null(NULL));
    s = vtp_strdup_or_null("x");
    assert_non_null(s);
    assert_string_equal(s, "x");
    free(s);

    secret = strdup("s.secret");
    assert_non_null(secret);
    vtp_free_secret(secret);
    vtp_free_secret(NULL);
}

static void test_names(void **state)
{
    const char *a;
    char copy[32];

    (void)state;
    assert_string_equal(vtp_rv_name(CKR_OK), "CKR_OK");
    assert_string_equal(vtp_rv_name(CKR_DEVICE_ERROR), "CKR_DEVICE_ERROR");
    assert_string_equal(vtp_rv_name(CKR_UNWRAPPING_KEY_HANDLE_INVALID),
                        "CKR_UNWRAPPING_KEY_HANDLE_INVALID");
    assert_string_equal(vtp_rv_name(CKR_FUNCTION_REJECTED), "CKR_FUNCTION_REJECTED");
    assert_string_equal(vtp_rv_name(CKR_VENDOR_DEFINED), "CKR_VENDOR_DEFINED");
    assert_string_equal(vtp_rv_name(0x201), "CKR_TOKEN_RESOURCE_EXCEEDED");
    a = vtp_rv_name(0x12345);
    assert_string_equal(a, "CKR_0x00012345");
    strcpy(copy, a);
    assert_string_equal(vtp_rv_name(0x80000001UL), "CKR_0x80000001");
    assert_string_equal(copy, "CKR_0x00012345");

    assert_string_equal(vtp_mech_name(CKM_RSA_PKCS), "CKM_RSA_PKCS");
    assert_string_equal(vtp_mech_name(CKM_ECDSA_SHA256), "CKM_ECDSA_SHA256");
    assert_string_equal(vtp_mech_name(CKM_EC_KEY_PAIR_GEN), "CKM_EC_KEY_PAIR_GEN");
    assert_string_equal(vtp_mech_name(CKM_EDDSA), "CKM_EDDSA");
    assert_string_equal(vtp_mech_name(CKM_RSA_PKCS_PSS), "CKM_RSA_PKCS_PSS");
    assert_string_equal(vtp_mech_name(0x7ffffff0UL), "unknown");

    assert_string_equal(vtp_attr_name(CKA_CLASS), "CKA_CLASS");
    assert_string_equal(vtp_attr_name(CKA_EC_PARAMS), "CKA_EC_PARAMS");
    assert_string_equal(vtp_attr_name(CKA_ALLOWED_MECHANISMS), "CKA_ALLOWED_MECHANISMS");
    assert_string_equal(vtp_attr_name(CKA_WRAP_TEMPLATE), "CKA_WRAP_TEMPLATE");
    assert_string_equal(vtp_attr_name(0x7ffffff0UL), "unknown");
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf;
    size_t n;

    if (f == NULL)
        return NULL;
    buf = calloc(1, 65536);
    if (buf != NULL) {
        n = fread(buf, 1, 65535, f);
        buf[n] = '\0';
    }
    fclose(f);
    return buf;
}

static void test_log_file(void **state)
{
    char dir[] = "/tmp/vtp-test-log-XXXXXX", path[64], env[128];
    struct stat st;
    char *text;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/log", dir);
    snprintf(env, sizeof(env), "level:3,file:%s", path);
    setenv("VAULT_TRANSIT_PKCS11_DEBUG", env, 1);
    vtp_log_reset();
    assert_int_equal(vtp_log_level(), VTP_LOG_INFO);

    VTP_LOG_INFO("first %d\nsecond", 42);
    VTP_LOG_DEBUG("not written");
    VTP_LOG_ERR("an error: %s", vtp_rv_name(CKR_DEVICE_ERROR));

    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    text = read_all(path);
    assert_non_null(text);
    assert_non_null(strstr(text, " INFO test_log_file: first 42 second\n"));
    assert_non_null(strstr(text, " ERROR test_log_file: an error: CKR_DEVICE_ERROR\n"));
    assert_null(strstr(text, "not written"));
    assert_non_null(strstr(text, "vault-transit-pkcs11["));
    assert_non_null(strstr(text, "Z vault-transit-pkcs11["));
    assert_true(text[4] == '-' && text[10] == 'T' && text[19] == '.');
    free(text);

    /* Off again after a reset without the variable; an error sink raises it to errors. */
    unsetenv("VAULT_TRANSIT_PKCS11_DEBUG");
    vtp_log_reset();
    assert_int_equal(vtp_log_level(), VTP_LOG_OFF);
    vtp_log_set_error_sink("syslog");
    assert_int_equal(vtp_log_level(), VTP_LOG_ERROR);
    vtp_log_set_error_sink(NULL);
    assert_int_equal(vtp_log_level(), VTP_LOG_OFF);

    setenv("VAULT_TRANSIT_PKCS11_DEBUG", "level:9", 1);
    vtp_log_reset();
    assert_int_equal(vtp_log_level(), VTP_LOG_DEBUG_LEVEL);
    setenv("VAULT_TRANSIT_PKCS11_DEBUG", "level:x", 1);
    vtp_log_reset();
    assert_int_equal(vtp_log_level(), VTP_LOG_OFF);
    unsetenv("VAULT_TRANSIT_PKCS11_DEBUG");
    vtp_log_reset();

    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64_vectors),
        cmocka_unit_test(test_b64_round_trip),
        cmocka_unit_test(test_b64_url_safe),
        cmocka_unit_test(test_b64_rejects),
        cmocka_unit_test(test_b64_length_param),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_pem),
        cmocka_unit_test(test_pad_copy),
        cmocka_unit_test(test_small_helpers),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_log_file),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
