/* test-boundary.c - what the entry points return when Transit fails, driven through the fake
 * Transit behind the seam (tests/lib/fake-transit.c) and the module's function list:
 *
 *  - key-deleted: a key deleted in Vault behind the module (the module still shows it): C_Sign
 *    and C_SignFinal return a code PKCS#11 v2.40 lets them return (CKR_FUNCTION_FAILED), not
 *    CKR_KEY_HANDLE_INVALID (issue 10 #7);
 *  - answers: for each Vault answer to a sign request (an unclassified 400, a policy denial, a
 *    sealed server, a bad salt length, ...) the fake answers what the Transit layer makes of
 *    it; C_Sign and C_SignFinal return a code their lists allow, never CKR_ARGUMENTS_BAD (the
 *    caller's arguments were checked before anything was sent), and the one docs/errors.md
 *    names. The operation ends either way;
 *  - outside: a code of the module's own that C_Sign may not return (the fake answers
 *    CKR_KEY_HANDLE_INVALID, as the Transit layer did before the kinds) leaves the module as
 *    CKR_FUNCTION_FAILED.
 * No Vault is needed: the module's address is a closed port and every Transit call is the
 * fake's. */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "../lib/fake-transit.h"
#include "../module/p11test.h"
#include "errmap.h"
#include "vault/http.h"
#include "vault/transit.h"

static CK_FUNCTION_LIST_PTR f;

/* What the Transit layer's sign returns for this HTTP answer of Vault. */
static CK_RV seam_rv(long status, const char *body)
{
    json_t *j = body != NULL ? json_loads(body, 0, NULL) : NULL;
    CK_RV rv = vtp_transit_classify(status, j);

    json_decref(j);
    return rv;
}

static CK_OBJECT_HANDLE find_key(CK_SESSION_HANDLE s, const char *label)
{
    CK_OBJECT_CLASS c = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c, sizeof(c)}, {CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_ULONG n = 0;

    REQUIRE_RV(f->C_FindObjectsInit(s, t, 2), CKR_OK);
    REQUIRE_RV(f->C_FindObjects(s, &h, 1, &n), CKR_OK);
    REQUIRE_RV(f->C_FindObjectsFinal(s), CKR_OK);
    REQUIRE_RV(n == 1 ? CKR_OK : CKR_OBJECT_HANDLE_INVALID, CKR_OK);
    return h;
}

/* C_Sign over a digest (CKM_ECDSA), or C_SignUpdate + C_SignFinal over a message
 * (CKM_ECDSA_SHA256). */
static CK_RV sign(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, bool multipart)
{
    static unsigned char data[32] = {1, 2, 3};
    CK_MECHANISM m = {multipart ? CKM_ECDSA_SHA256 : CKM_ECDSA, NULL, 0};
    unsigned char sig[128];
    CK_ULONG len = sizeof(sig);
    CK_RV rv = f->C_SignInit(s, &m, key);

    if (rv != CKR_OK)
        return rv;
    if (!multipart)
        return f->C_Sign(s, data, sizeof(data), sig, &len);
    rv = f->C_SignUpdate(s, data, sizeof(data));
    return rv == CKR_OK ? f->C_SignFinal(s, sig, &len) : rv;
}

/* rv came from C_Sign or C_SignFinal: allowed there, not blaming the caller, the one wanted,
 * and the operation is over. */
static void check_sign_rv(CK_SESSION_HANDLE s, bool multipart, CK_RV rv, CK_RV want,
                          const char *what)
{
    const char *fn = multipart ? "SignFinal" : "Sign";
    unsigned char sig[128];
    CK_ULONG len = sizeof(sig);

    CHECK(vtp_errmap_allowed(fn, rv), "%s: C_%s returned %s, which PKCS#11 does not allow it", what,
          fn, vtp_rv_name(rv));
    CHECK(rv != CKR_ARGUMENTS_BAD, "%s: C_%s blames the caller's arguments", what, fn);
    CHECK(rv == want, "%s: C_%s returned %s, expected %s", what, fn, vtp_rv_name(rv),
          vtp_rv_name(want));
    CHECK_RV(f->C_Sign(s, sig, 32, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
}

static void key_deleted(void)
{
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE key;

    REQUIRE_RV(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
    key = find_key(s, "gone");
    CHECK_RV(sign(s, key, false), CKR_OK);
    /* another Vault client deletes the key; the module's cache still shows it */
    REQUIRE_RV(fake_transit_remove_key("gone") ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    for (int mp = 0; mp <= 1; mp++)
        check_sign_rv(s, mp, sign(s, key, mp), CKR_FUNCTION_FAILED, "key deleted in Vault");
    CHECK_RV(f->C_CloseSession(s), CKR_OK);
}

struct answer {
    const char *what;
    long status;
    const char *body;
    CK_RV want; /* what C_Sign and C_SignFinal return (docs/errors.md) */
};

static const struct answer answers[] = {
    {"unclassified 400", 400, "{\"errors\":[\"some refusal no one has classified yet\"]}",
     CKR_FUNCTION_FAILED},
    {"400 without a body", 400, NULL, CKR_FUNCTION_FAILED},
    {"Vault's 400 for a prehashed Ed25519 signature", 400,
     "{\"errors\":[\"failed to parse batch item: only Pure Ed25519 signatures supported, "
     "prehashed must be false\"]}",
     CKR_FUNCTION_FAILED},
    {"key deleted (400)", 400, "{\"errors\":[\"signing key not found\"]}", CKR_FUNCTION_FAILED},
    {"policy denial (403)", 403,
     "{\"errors\":[\"1 error occurred:\\n\\t* permission denied\\n\\n\"]}", CKR_FUNCTION_FAILED},
    {"OpenBao invalid token (403)", 403, "{\"errors\":[\"permission denied\"]}",
     CKR_USER_NOT_LOGGED_IN},
    {"salt length (400)", 400, "{\"errors\":[\"salt length is invalid: -5\"]}",
     CKR_FUNCTION_FAILED},
    {"salt length (500)", 500,
     "{\"errors\":[\"1 error occurred:\\n\\t* requested salt length 500 is invalid\\n\\n\"]}",
     CKR_FUNCTION_FAILED},
    {"version trimmed (500)", 500,
     "{\"errors\":[\"1 error occurred:\\n\\t* requested version for signing is less than the "
     "minimum encryption key version\\n\\n\"]}",
     CKR_FUNCTION_FAILED},
    {"message too long (400)", 400,
     "{\"errors\":[\"crypto/rsa: message too long for RSA key size\"]}", CKR_DATA_LEN_RANGE},
    {"Vault's JSON limit (500)", 500, "{\"errors\":[\"JSON array exceeds allowed element count\"]}",
     CKR_DATA_LEN_RANGE},
    {"mount missing (404)", 404,
     "{\"errors\":[\"no handler for route \\\"nomount/sign/k\\\". route entry not found.\"]}",
     CKR_DEVICE_ERROR},
    {"method not allowed (405)", 405, "{\"errors\":[]}", CKR_DEVICE_ERROR},
    {"sealed (503)", 503, "{\"errors\":[\"Vault is sealed\"]}", CKR_DEVICE_ERROR},
    {"rate limit (429)", 429,
     "{\"errors\":[\"1 error occurred:\\n\\t* rate limit quota exceeded\\n\\n\"]}",
     CKR_DEVICE_ERROR},
    {"unclassified 500", 500, "{\"errors\":[\"1 error occurred:\\n\\t* something broke\\n\\n\"]}",
     CKR_FUNCTION_FAILED},
};

static void sign_answers(void)
{
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE key;

    REQUIRE_RV(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
    key = find_key(s, "k");
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        fake_transit_fail_signs(seam_rv(answers[i].status, answers[i].body));
        for (int mp = 0; mp <= 1; mp++)
            check_sign_rv(s, mp, sign(s, key, mp), answers[i].want, answers[i].what);
    }
    /* a code outside C_Sign's list that is not a kind: the boundary replaces it */
    fake_transit_fail_signs(CKR_KEY_HANDLE_INVALID);
    for (int mp = 0; mp <= 1; mp++)
        check_sign_rv(s, mp, sign(s, key, mp), CKR_FUNCTION_FAILED,
                      "CKR_KEY_HANDLE_INVALID inside");
    fake_transit_fail_signs(CKR_OK);
    CHECK_RV(sign(s, key, false), CKR_OK);
    CHECK_RV(f->C_CloseSession(s), CKR_OK);
}

int main(void)
{
    char dir[] = "/tmp/vtp-boundary.XXXXXX", path[300], arg[320];
    CK_C_INITIALIZE_ARGS a = {NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, arg};
    FILE *fp;

    setvbuf(stdout, NULL, _IONBF, 0);
    fake_transit_install();
    REQUIRE_RV(fake_transit_add_ec_key("gone") && fake_transit_add_ec_key("k") ? CKR_OK
                                                                               : CKR_GENERAL_ERROR,
               CKR_OK);
    REQUIRE_RV(mkdtemp(dir) != NULL ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    snprintf(path, sizeof(path), "%s/fake.conf", dir);
    fp = fopen(path, "w");
    REQUIRE_RV(fp != NULL ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    fprintf(fp, "[vault]\naddress = http://127.0.0.1:9\nauth = token\ntimeout = 5\n"
                "[slot fake]\nmount = transit\nlabel = fake\n");
    fclose(fp);
    snprintf(arg, sizeof(arg), "config=%s", path);
    setenv("VAULT_TOKEN", "fake-token", 1);
    unsetenv("VAULT_ADDR");
    REQUIRE_RV(C_GetFunctionList(&f), CKR_OK);
    REQUIRE_RV(f->C_Initialize(&a), CKR_OK);

    key_deleted();
    sign_answers();

    CHECK_RV(f->C_Finalize(NULL), CKR_OK);
    unlink(path);
    rmdir(dir);
    fake_transit_uninstall();
    return p11t_summary("test-boundary");
}
