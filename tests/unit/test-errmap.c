/* test-errmap.c - every row of the Vault/OpenBao answer -> CK_RV table (docs/errors.md).
 *
 * Bodies are the exact JSON real servers send (OpenBao 2.x dev server captures; Vault texts from
 * the HTTP reference), including both invalid-token formats and the multierror-wrapped policy
 * denial.
 */
#include "common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "errmap.h"
#include "vault/http.h"

struct row {
    const char *what;
    long status;
    const char *body; /* NULL: no body */
    CK_RV want;
};

static const struct row rows[] = {
    /* success, with and without a body */
    {"200 read key", 200, "{\"request_id\":\"x\",\"data\":{\"name\":\"k\"},\"warnings\":null}",
     CKR_OK},
    {"204 delete", 204, NULL, CKR_OK},

    /* 400: argument errors and what hides behind them */
    {"400 unknown key type", 400, "{\"errors\":[\"unknown key type foo\"]}\n", CKR_ARGUMENTS_BAD},
    {"400 invalid hash", 400, "{\"errors\":[\"invalid hash algorithm \\\"xyz\\\"\"]}",
     CKR_ARGUMENTS_BAD},
    {"400 none rule", 400,
     "{\"errors\":[\"hash_algorithm=none requires both prehashed=true and "
     "signature_algorithm=pkcs1v15\"]}",
     CKR_ARGUMENTS_BAD},
    {"400 sign missing key", 400, "{\"errors\":[\"signing key not found\"]}\n",
     CKR_KEY_HANDLE_INVALID},
    {"400 old Vault missing key", 400, "{\"errors\":[\"encryption key not found\"]}",
     CKR_KEY_HANDLE_INVALID},
    {"400 verify missing key", 400, "{\"errors\":[\"signature verification key not found\"]}",
     CKR_KEY_HANDLE_INVALID},
    {"400 config missing key", 400,
     "{\"errors\":[\"no existing key named nonexist-zz could be found\"]}\n",
     CKR_KEY_HANDLE_INVALID},
    {"400 delete missing key", 400,
     "{\"errors\":[\"error deleting policy nonexist-zz: could not delete key; not found\"]}\n",
     CKR_KEY_HANDLE_INVALID},
    {"400 rotate missing key", 400, "{\"errors\":[\"key not found\"]}\n", CKR_KEY_HANDLE_INVALID},
    {"400 deletion not allowed", 400,
     "{\"errors\":[\"error deleting policy k1: deletion is not allowed for this key\"]}\n",
     CKR_ACTION_PROHIBITED},
    {"400 message too long", 400,
     "{\"errors\":[\"crypto/rsa: message too long for RSA key size\"]}", CKR_DATA_LEN_RANGE},
    {"400 input must be hashed", 400, "{\"errors\":[\"crypto/rsa: input must be hashed message\"]}",
     CKR_DATA_LEN_RANGE},
    {"400 OpenBao JSON complexity", 400,
     "{\"errors\":[\"refused JSON input due to high complexity: exceeded maximum number of "
     "strings\"]}",
     CKR_DATA_LEN_RANGE},
    /* HashiCorp Vault's JSON limits (measured on 1.21.4 CE): HTTP 500, one text per limit */
    {"500 Vault JSON array limit", 500,
     "{\"errors\":[\"JSON array exceeds allowed element count\"]}\n", CKR_DATA_LEN_RANGE},
    {"500 Vault JSON object limit", 500,
     "{\"errors\":[\"JSON object exceeds allowed entry count\"]}\n", CKR_DATA_LEN_RANGE},
    {"500 Vault JSON token limit", 500,
     "{\"errors\":[\"JSON payload exceeds allowed token count\"]}\n", CKR_DATA_LEN_RANGE},
    {"500 Vault JSON string limit", 500,
     "{\"errors\":[\"JSON string value exceeds allowed length\"]}\n", CKR_DATA_LEN_RANGE},
    {"500 Vault JSON depth limit", 500,
     "{\"errors\":[\"JSON input exceeds allowed nesting depth\"]}\n", CKR_DATA_LEN_RANGE},
    {"400 salt length parse", 400, "{\"errors\":[\"salt length is invalid: -5\"]}",
     CKR_MECHANISM_PARAM_INVALID},
    {"400 Vault no token", 400, "{\"errors\":[\"missing client token\"]}",
     CKR_USER_NOT_LOGGED_IN},
    {"400 no body", 400, NULL, CKR_ARGUMENTS_BAD},

    /* 403: invalid token vs policy denial, both products */
    {"403 OpenBao invalid token", 403, "{\"errors\":[\"permission denied\"]}\n",
     CKR_USER_NOT_LOGGED_IN},
    {"403 Vault invalid token", 403,
     "{\"errors\":[\"2 errors occurred:\\n\\t* permission denied\\n\\t* invalid token\\n\\n\"]}\n",
     CKR_USER_NOT_LOGGED_IN},
    {"403 policy denial", 403,
     "{\"errors\":[\"1 error occurred:\\n\\t* permission denied\\n\\n\"]}\n",
     CKR_ACTION_PROHIBITED},
    {"403 no body", 403, NULL, CKR_ACTION_PROHIBITED},

    /* 404 */
    {"404 missing key", 404, "{\"errors\":[]}\n", CKR_KEY_HANDLE_INVALID},
    {"404 no mount", 404,
     "{\"errors\":[\"no handler for route \\\"nomount/keys/x\\\". route entry not found.\"]}\n",
     CKR_DEVICE_ERROR},
    {"404 OpenBao unknown namespace", 404, "{\"errors\":[\"namespace not found\"]}",
     CKR_DEVICE_ERROR},
    {"404 KV soft-deleted", 404,
     "{\"request_id\":\"a\",\"data\":{\"data\":null,\"metadata\":{\"created_time\":\"2026-11-23T04:"
     "42:49.829598414Z\",\"custom_metadata\":null,\"deletion_time\":\"2026-11-23T04:42:49."
     "847784766Z\",\"destroyed\":false,\"version\":1}},\"wrap_info\":null,\"warnings\":null,"
     "\"auth\":null}",
     CKR_KEY_HANDLE_INVALID},

    /* 405, 412, 413, 429 */
    {"405 unsupported operation", 405,
     "{\"errors\":[\"1 error occurred:\\n\\t* unsupported operation\\n\\n\"]}",
     CKR_FUNCTION_NOT_SUPPORTED},
    {"405 empty", 405, "{\"errors\":[]}\n", CKR_FUNCTION_NOT_SUPPORTED},
    {"412 after retries", 412, "{\"errors\":[]}", CKR_DEVICE_ERROR},
    {"413 body too large", 413, "{\"errors\":[\"http: request body too large\"]}",
     CKR_DATA_LEN_RANGE},
    {"429 rate limit", 429,
     "{\"errors\":[\"1 error occurred:\\n\\t* rate limit quota exceeded\\n\\n\"]}",
     CKR_DEVICE_ERROR},

    /* 500: errors of the signing primitive, single mode */
    {"500 message too long", 500,
     "{\"errors\":[\"1 error occurred:\\n\\t* crypto/rsa: message too long for RSA key "
     "size\\n\\n\"]}\n",
     CKR_DATA_LEN_RANGE},
    {"500 input must be hashed", 500,
     "{\"errors\":[\"1 error occurred:\\n\\t* crypto/rsa: input must be hashed message\\n\\n\"]}\n",
     CKR_DATA_LEN_RANGE},
    {"500 salt length", 500,
     "{\"errors\":[\"1 error occurred:\\n\\t* requested salt length 500 is invalid\\n\\n\"]}\n",
     CKR_MECHANISM_PARAM_INVALID},
    {"500 decryption error", 500,
     "{\"errors\":[\"1 error occurred:\\n\\t* failed to RSA decrypt the ciphertext: crypto/rsa: "
     "decryption error\\n\\n\"]}\n",
     CKR_ENCRYPTED_DATA_INVALID},
    {"500 bad key version", 500,
     "{\"errors\":[\"1 error occurred:\\n\\t* requested version for signing is higher than the "
     "latest key version\\n\\n\"]}",
     CKR_KEY_HANDLE_INVALID},
    {"500 no active node", 500,
     "{\"errors\":[\"local node not active but active cluster node not found\"]}",
     CKR_DEVICE_ERROR},
    {"500 other", 500,
     "{\"errors\":[\"1 error occurred:\\n\\t* failed to parse batch input: 'input' expected type "
     "'string', got unconvertible type 'float64'\\n\\n\"]}",
     CKR_FUNCTION_FAILED},

    /* unavailable after retries */
    {"502 bad gateway", 502, NULL, CKR_DEVICE_ERROR},
    {"503 sealed", 503, "{\"errors\":[\"Vault is sealed\"]}\n", CKR_DEVICE_ERROR},
    {"503 standby", 503, "{\"errors\":[\"node is not active\"]}", CKR_DEVICE_ERROR},
    {"504 gateway timeout", 504, NULL, CKR_DEVICE_ERROR},
    {"501 other 5xx", 501, "{\"errors\":[]}", CKR_DEVICE_ERROR},
    {"307 redirect not followed", 307, NULL, CKR_DEVICE_ERROR},
    {"no answer", 0, NULL, CKR_DEVICE_ERROR},

    /* anything else */
    {"401 unexpected", 401, "{\"errors\":[\"x\"]}", CKR_FUNCTION_FAILED},
    {"409 unexpected", 409, NULL, CKR_FUNCTION_FAILED},
};

static void test_table(void **state)
{
    size_t i;
    int bad = 0;

    (void)state;
    for (i = 0; i < VTP_ARRAY_SIZE(rows); i++) {
        json_t *body = NULL;
        json_error_t err;
        CK_RV got;

        if (rows[i].body != NULL) {
            body = json_loads(rows[i].body, 0, &err);
            if (body == NULL) {
                print_error("row \"%s\": bad test JSON: %s\n", rows[i].what, err.text);
                bad++;
                continue;
            }
        }
        got = vtp_vault_rv(rows[i].status, body);
        if (got != rows[i].want) {
            print_error("row \"%s\": got 0x%lx, want 0x%lx\n", rows[i].what, got, rows[i].want);
            bad++;
        }
        json_decref(body);
    }
    assert_int_equal(bad, 0);
}

static void test_non_json_body(void **state)
{
    json_t *arr = json_array();
    json_t *str = json_string("permission denied");

    (void)state;
    /* a proxy's HTML page is not parsed (NULL); strange JSON must not confuse the map */
    assert_int_equal(vtp_vault_rv(403, arr), CKR_ACTION_PROHIBITED);
    assert_int_equal(vtp_vault_rv(403, str), CKR_ACTION_PROHIBITED);
    assert_int_equal(vtp_vault_rv(404, arr), CKR_KEY_HANDLE_INVALID);
    json_decref(arr);
    json_decref(str);
}

struct item_row {
    const char *error;
    CK_RV want;
};

static const struct item_row item_rows[] = {
    {NULL, CKR_OK},
    {"", CKR_OK},
    {"missing input", CKR_ARGUMENTS_BAD},
    {"failed to parse item: missing input", CKR_ARGUMENTS_BAD},
    {"unable to decode input as base64: illegal base64 data at input byte 0", CKR_ARGUMENTS_BAD},
    {"unable to decode input: illegal base64 data at input byte 0", CKR_ARGUMENTS_BAD},
    {"requested salt length 500 is invalid", CKR_MECHANISM_PARAM_INVALID},
    {"crypto/rsa: message too long for RSA key size", CKR_DATA_LEN_RANGE},
    {"crypto/rsa: input must be hashed message", CKR_DATA_LEN_RANGE},
    {"crypto/rsa: input must be hashed with given hash", CKR_DATA_LEN_RANGE},
    {"requested version for signing is higher than the latest key version",
     CKR_KEY_HANDLE_INVALID},
    {"requested version for signing is less than the minimum encryption key version",
     CKR_KEY_HANDLE_INVALID},
    {"requested version for signing does not contain a private part", CKR_KEY_HANDLE_INVALID},
    {"crypto/rsa: unsupported hash function", CKR_FUNCTION_FAILED},
};

static void test_items(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < VTP_ARRAY_SIZE(item_rows); i++) {
        if (vtp_vault_item_rv(item_rows[i].error) != item_rows[i].want)
            fail_msg("item \"%s\"", item_rows[i].error != NULL ? item_rows[i].error : "(null)");
    }
}

/* ---------------------------------------------------------------------------------------- */
/* What each entry point may return (PKCS#11 v2.40 section 5), and what it returns for each
 * Vault answer above. */

/* Every function of CK_FUNCTION_LIST, in its order. */
static const char *const functions[] = {
    "Initialize",
    "Finalize",
    "GetInfo",
    "GetFunctionList",
    "GetSlotList",
    "GetSlotInfo",
    "GetTokenInfo",
    "GetMechanismList",
    "GetMechanismInfo",
    "InitToken",
    "InitPIN",
    "SetPIN",
    "OpenSession",
    "CloseSession",
    "CloseAllSessions",
    "GetSessionInfo",
    "GetOperationState",
    "SetOperationState",
    "Login",
    "Logout",
    "CreateObject",
    "CopyObject",
    "DestroyObject",
    "GetObjectSize",
    "GetAttributeValue",
    "SetAttributeValue",
    "FindObjectsInit",
    "FindObjects",
    "FindObjectsFinal",
    "EncryptInit",
    "Encrypt",
    "EncryptUpdate",
    "EncryptFinal",
    "DecryptInit",
    "Decrypt",
    "DecryptUpdate",
    "DecryptFinal",
    "DigestInit",
    "Digest",
    "DigestUpdate",
    "DigestKey",
    "DigestFinal",
    "SignInit",
    "Sign",
    "SignUpdate",
    "SignFinal",
    "SignRecoverInit",
    "SignRecover",
    "VerifyInit",
    "Verify",
    "VerifyUpdate",
    "VerifyFinal",
    "VerifyRecoverInit",
    "VerifyRecover",
    "DigestEncryptUpdate",
    "DecryptDigestUpdate",
    "SignEncryptUpdate",
    "DecryptVerifyUpdate",
    "GenerateKey",
    "GenerateKeyPair",
    "WrapKey",
    "UnwrapKey",
    "DeriveKey",
    "SeedRandom",
    "GenerateRandom",
    "GetFunctionStatus",
    "CancelFunction",
    "WaitForSlotEvent",
};

static void test_function_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < VTP_ARRAY_SIZE(functions); i++) {
        const char *fn = vtp_errmap_function(i);

        assert_non_null(fn);
        assert_string_equal(fn, functions[i]);
        /* the universal return values (section 5.1.1) */
        assert_true(vtp_errmap_allowed(fn, CKR_OK));
        assert_true(vtp_errmap_allowed(fn, CKR_GENERAL_ERROR));
        assert_true(vtp_errmap_allowed(fn, CKR_HOST_MEMORY));
        assert_true(vtp_errmap_allowed(fn, CKR_FUNCTION_FAILED));
        assert_true(vtp_errmap_allowed(fn, CKR_FUNCTION_NOT_SUPPORTED));
        if (strcmp(fn, "Initialize") != 0 && strcmp(fn, "GetFunctionList") != 0)
            assert_true(vtp_errmap_allowed(fn, CKR_CRYPTOKI_NOT_INITIALIZED));
        assert_false(vtp_errmap_allowed(fn, CKR_VENDOR_DEFINED));
    }
    assert_null(vtp_errmap_function(i));
    /* the lists of issue 10 #7 */
    assert_false(vtp_errmap_allowed("Sign", CKR_KEY_HANDLE_INVALID));
    assert_false(vtp_errmap_allowed("Sign", CKR_ACTION_PROHIBITED));
    assert_false(vtp_errmap_allowed("Sign", CKR_MECHANISM_PARAM_INVALID));
    assert_false(vtp_errmap_allowed("SignFinal", CKR_KEY_HANDLE_INVALID));
    assert_true(vtp_errmap_allowed("SignInit", CKR_MECHANISM_PARAM_INVALID));
    assert_true(vtp_errmap_allowed("DestroyObject", CKR_ACTION_PROHIBITED));
    assert_false(vtp_errmap_allowed("GenerateKeyPair", CKR_ACTION_PROHIBITED));
    assert_false(vtp_errmap_allowed("FindObjectsInit", CKR_USER_NOT_LOGGED_IN));
    assert_false(vtp_errmap_allowed("NoSuchFunction", CKR_GENERAL_ERROR));
}

/* The entry points that send requests to Vault (the others answer from the module's state). */
static const char *const vault_functions[] = {
    "Login",   "CreateObject", "DestroyObject", "SetAttributeValue", "FindObjectsInit",
    "Decrypt", "Sign",         "SignFinal",     "GenerateKeyPair",   "GenerateRandom",
};

/* What entry point fn returns when Vault answers status and body: the code the Transit layer
 * made of the answer, passed up unchanged. */
static CK_RV answer_rv(const char *fn, long status, const json_t *body)
{
    (void)fn;
    return vtp_vault_rv(status, body);
}

/* The same for one item of a batch answer. */
static CK_RV item_answer_rv(const char *fn, const char *error)
{
    (void)fn;
    return vtp_vault_item_rv(error);
}

/* Whatever Vault answers, each entry point that asks it returns a code its list allows, and never
 * CKR_ARGUMENTS_BAD: the caller's arguments are checked before anything is sent, so an answer
 * of the server cannot mean that they were wrong. */
static void test_answers_at_entry_points(void **state)
{
    size_t i, j;
    int bad = 0;

    (void)state;
    for (i = 0; i < VTP_ARRAY_SIZE(rows); i++) {
        json_t *body = rows[i].body != NULL ? json_loads(rows[i].body, 0, NULL) : NULL;

        for (j = 0; j < VTP_ARRAY_SIZE(vault_functions); j++) {
            const char *fn = vault_functions[j];
            CK_RV got = answer_rv(fn, rows[i].status, body);

            if (!vtp_errmap_allowed(fn, got) || got == CKR_ARGUMENTS_BAD) {
                if (bad++ < 60)
                    print_error("row \"%s\": C_%s returns 0x%lx\n", rows[i].what, fn, got);
            }
        }
        json_decref(body);
    }
    for (i = 0; i < VTP_ARRAY_SIZE(item_rows); i++) {
        static const char *const signers[] = {"Sign", "SignFinal"};

        for (j = 0; j < VTP_ARRAY_SIZE(signers); j++) {
            CK_RV got = item_answer_rv(signers[j], item_rows[i].error);

            if (!vtp_errmap_allowed(signers[j], got) || got == CKR_ARGUMENTS_BAD) {
                if (bad++ < 60)
                    print_error("item \"%s\": C_%s returns 0x%lx\n",
                                item_rows[i].error ? item_rows[i].error : "(null)", signers[j],
                                got);
            }
        }
    }
    if (bad > 0)
        print_error("%d Vault answers give an entry point a code outside its list\n", bad);
    assert_int_equal(bad, 0);
}

static void test_error_text(void **state)
{
    json_t *b;

    (void)state;
    assert_string_equal(vtp_vault_error_text(NULL), "");
    b = json_loads("{\"errors\":[]}", 0, NULL);
    assert_non_null(b);
    assert_string_equal(vtp_vault_error_text(b), "");
    json_decref(b);
    b = json_loads("{\"errors\":[\"signing key not found\",\"x\"]}", 0, NULL);
    assert_non_null(b);
    assert_string_equal(vtp_vault_error_text(b), "signing key not found");
    json_decref(b);
    b = json_loads("{\"errors\":[7]}", 0, NULL);
    assert_non_null(b);
    assert_string_equal(vtp_vault_error_text(b), "");
    json_decref(b);
}

static void test_escape(void **state)
{
    char *s;

    (void)state;
    s = vtp_http_escape("spire-key_1.v2~x");
    assert_string_equal(s, "spire-key_1.v2~x");
    free(s);
    s = vtp_http_escape("a b/c?d#e%");
    assert_string_equal(s, "a%20b%2Fc%3Fd%23e%25");
    free(s);
    s = vtp_http_escape("..");
    assert_string_equal(s, "%2E%2E");
    free(s);
    s = vtp_http_escape("");
    assert_string_equal(s, "");
    free(s);
    assert_null(vtp_http_escape(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_non_json_body),
        cmocka_unit_test(test_items),
        cmocka_unit_test(test_error_text),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_function_table),
        cmocka_unit_test(test_answers_at_entry_points),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
