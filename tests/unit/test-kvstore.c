/* test-kvstore.c - key names that carry label, ID and usage without KV (src/kvstore.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common.h"
#include "kvstore.h"

/* encode, then decode what follows the prefix */
static char *round_trip(const char *prefix, const char *label, const void *id, size_t id_len,
                        long usage, size_t *llen, unsigned char **id_out, size_t *id_out_len,
                        long *u)
{
    CK_ATTRIBUTE l = {CKA_LABEL, (void *)label, label ? strlen(label) : 0};
    CK_ATTRIBUTE i = {CKA_ID, (void *)id, id_len};
    char *name = NULL;

    assert_int_equal(vtp_name_encode(prefix, label ? &l : NULL, id ? &i : NULL, usage, &name),
                     CKR_OK);
    assert_non_null(name);
    assert_int_equal(strncmp(name, prefix, strlen(prefix)), 0);
    assert_true(vtp_name_decode(name + strlen(prefix), llen, id_out, id_out_len, u));
    return name;
}

static void test_round_trips(void **state)
{
    static const unsigned char id[] = {0x0a, 0x0b};
    unsigned char *got = NULL;
    size_t llen = 0, glen = 0;
    long u = 0;
    char *name;

    (void)state;
    name = round_trip("pfx-", "demo-ec", id, sizeof(id), -1, &llen, &got, &glen, &u);
    assert_int_equal(llen, 7);
    assert_memory_equal(name + 4, "demo-ec", 7);
    assert_int_equal(glen, 2);
    assert_memory_equal(got, id, 2);
    assert_int_equal(u, -1);
    free(name);
    free(got);
    /* an ID equal to the label is not repeated; usage is kept */
    name = round_trip("", "a.b_c", "a.b_c", 5, 0x231, &llen, &got, &glen, &u);
    assert_null(strstr(name, ".i"));
    assert_int_equal(llen, 5);
    assert_int_equal(glen, 5);
    assert_memory_equal(got, "a.b_c", 5);
    assert_int_equal(u, 0x231);
    free(name);
    free(got);
    /* no label: the name's start is the label; an empty ID stays empty */
    name = round_trip("", NULL, "", 0, -1, &llen, &got, &glen, &u);
    assert_int_equal(llen, strlen("p11-") + 8);
    assert_int_equal(glen, 0);
    assert_non_null(got);
    free(name);
    free(got);
    /* two generations never get the same name */
    {
        CK_ATTRIBUTE l = {CKA_LABEL, "same", 4};
        char *a = NULL, *b = NULL;
        assert_int_equal(vtp_name_encode("", &l, NULL, -1, &a), CKR_OK);
        assert_int_equal(vtp_name_encode("", &l, NULL, -1, &b), CKR_OK);
        assert_string_not_equal(a, b);
        free(a);
        free(b);
    }
}

static void test_refused(void **state)
{
    CK_ATTRIBUTE empty = {CKA_LABEL, NULL, 0}, space = {CKA_LABEL, "has space", 9},
                 dash = {CKA_LABEL, "-lead", 5};
    char *name = NULL;

    (void)state;
    assert_int_equal(vtp_name_encode("", &empty, NULL, -1, &name), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(vtp_name_encode("", &space, NULL, -1, &name), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_int_equal(vtp_name_encode("", &dash, NULL, -1, &name), CKR_ATTRIBUTE_VALUE_INVALID);
    assert_null(name);
}

/* Names others made are theirs: nothing is read into them (a trailing ".u000" made a key that
 * could not sign; "release.k20240101" lost its name as its label). */
static void test_foreign_names(void **state)
{
    static const char *const foreign[] = {
        "release.k20240101", "some-signing-key.u000", "p11-1234567", "a.p11-1234567g",
        "x.p11-1234abcd.u999", "ap11-1234abcd", ".p11-1234abcd", "key-1a2b3c4d.i0a0b",
        "plain", "", "a.p11-1234ABCD",
    };
    (void)state;
    for (size_t i = 0; i < VTP_ARRAY_SIZE(foreign); i++) {
        unsigned char *id = (unsigned char *)"x";
        size_t llen = 99, id_len = 99;
        long u = 7;
        if (vtp_name_decode(foreign[i], &llen, &id, &id_len, &u))
            fail_msg("%s decoded as a name the module made", foreign[i]);
        assert_int_equal(u, -1);
        assert_null(id);
    }
}

/* Labels are kept as JSON strings: well-formed UTF-8 only (the fuzzer found surrogates,
 * overlong forms and code points above U+10FFFF passing, then failing as CKR_HOST_MEMORY). */
static void test_label_utf8(void **state)
{
    static const char *const good[] = {"plain", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                       "\xc3\xa9t\xc3\xa9", "\xed\x9f\xbf", "\xf4\x8f\xbf\xbf"};
    static const char *const bad[] = {"\xed\xa0\x80", "\xe0\x80\x80", "\xf4\x90\x80\x80",
                                      "\xf5\x80\x80\x80", "\xc0\xaf", "\xc1\xbf",
                                      "\xf0\x80\x80\x80", "\xe2\x82", "\x80", "a\xff"};
    (void)state;
    for (size_t i = 0; i < VTP_ARRAY_SIZE(good); i++) {
        CK_ATTRIBUTE a = {CKA_LABEL, (void *)good[i], strlen(good[i])};
        json_t *m = vtp_kv_meta_new(NULL, &a, -1);
        assert_int_equal(vtp_label_check(&a), CKR_OK);
        assert_non_null(m); /* and JSON can hold it */
        json_decref(m);
    }
    for (size_t i = 0; i < VTP_ARRAY_SIZE(bad); i++) {
        CK_ATTRIBUTE a = {CKA_LABEL, (void *)bad[i], strlen(bad[i])};
        if (vtp_label_check(&a) != CKR_ATTRIBUTE_VALUE_INVALID)
            fail_msg("label %zu accepted", i);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_foreign_names),
        cmocka_unit_test(test_label_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
