/* test-badinput.c - every entry point with bad input, each answer checked against the CK_RV
 * PKCS#11 v2.40 requires ("bad input gets the right CK_RV; never a crash, an abort or a leak").
 *
 * Runs under tests/lib/run-test (a private OpenBao dev server, a slot with a unique key_prefix
 * and a kv_mount). Cases that might take the process down (garbage key templates and
 * certificates) run in a forked child that initializes the module again, so one crash is
 * reported as one failed check and the rest of the run goes on.
 */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "p11test.h"

/* exported by the module (src/module.c); older pkcs11.h headers do not declare them */
CK_RV C_GetInterfaceList(CK_INTERFACE_PTR list, CK_ULONG_PTR count);
CK_RV C_GetInterface(CK_UTF8CHAR_PTR name, CK_VERSION_PTR version, CK_INTERFACE_PTR_PTR iface,
                     CK_FLAGS flags);

/* The result is one of several codes the spec allows. */
#define CHECK_RV2(expr, a, b)                                                                      \
    do {                                                                                           \
        CK_RV g2_ = (expr);                                                                        \
        CHECK(g2_ == (CK_RV)(a) || g2_ == (CK_RV)(b), "%s returned %s, expected %s or %s", #expr,  \
              vtp_rv_name(g2_), vtp_rv_name(a), vtp_rv_name(b));                                   \
    } while (0)
#define CHECK_RV3(expr, a, b, c)                                                                   \
    do {                                                                                           \
        CK_RV g3_ = (expr);                                                                        \
        CHECK(g3_ == (CK_RV)(a) || g3_ == (CK_RV)(b) || g3_ == (CK_RV)(c),                         \
              "%s returned %s, expected %s, %s or %s", #expr, vtp_rv_name(g3_), vtp_rv_name(a),    \
              vtp_rv_name(b), vtp_rv_name(c));                                                     \
    } while (0)

#define BAD_SLOT ((CK_SLOT_ID)0x7fff1234)
#define BAD_SESSION ((CK_SESSION_HANDLE)0x7fff1234)
#define BAD_OBJECT ((CK_OBJECT_HANDLE)0x7fff1234)
#define BAD_MECH ((CK_MECHANISM_TYPE)0x7fff1234)
#define BAD_ATTR ((CK_ATTRIBUTE_TYPE)0x7fff1234)
#define RW (CKF_SERIAL_SESSION | CKF_RW_SESSION)

static CK_FUNCTION_LIST_PTR f;
static CK_SLOT_ID slot;
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

static const unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char oid_secp256k1[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a};
static const unsigned char name_ed25519[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd', 's',
                                             '2', '5', '5', '1', '9'};
static const unsigned char message[] = "vault-transit-pkcs11 bad input test message";

/* ---------------------------------------------------------------------------------------- */
/* helpers */

static CK_RV gen_ec(CK_SESSION_HANDLE s, const char *label, CK_OBJECT_HANDLE *pub,
                    CK_OBJECT_HANDLE *priv)
{
    CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)},
                         {CKA_LABEL, (void *)label, strlen(label)}};
    CK_ATTRIBUTE vt[] = {{CKA_SIGN, &yes, sizeof(yes)},
                         {CKA_LABEL, (void *)label, strlen(label)},
                         {CKA_TOKEN, &yes, sizeof(yes)}};
    return f->C_GenerateKeyPair(s, &m, pt, 2, vt, 3, pub, priv);
}

static CK_RV gen_ed(CK_SESSION_HANDLE s, const char *label, CK_OBJECT_HANDLE *pub,
                    CK_OBJECT_HANDLE *priv)
{
    CK_MECHANISM m = {CKM_EC_EDWARDS_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, (void *)name_ed25519, sizeof(name_ed25519)},
                         {CKA_LABEL, (void *)label, strlen(label)}};
    CK_ATTRIBUTE vt[] = {{CKA_TOKEN, &yes, sizeof(yes)}};
    return f->C_GenerateKeyPair(s, &m, pt, 2, vt, 1, pub, priv);
}

static CK_RV gen_rsa(CK_SESSION_HANDLE s, const char *label, CK_OBJECT_HANDLE *pub,
                     CK_OBJECT_HANDLE *priv)
{
    CK_MECHANISM m = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
    CK_ULONG bits = 2048;
    CK_ATTRIBUTE pt[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)},
                         {CKA_LABEL, (void *)label, strlen(label)}};
    CK_ATTRIBUTE vt[] = {{CKA_TOKEN, &yes, sizeof(yes)}};
    return f->C_GenerateKeyPair(s, &m, pt, 2, vt, 1, pub, priv);
}

/* A self-signed P-256 certificate, DER. */
static unsigned char *make_cert(int *len)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *n;
    unsigned char *der = NULL;

    *len = 0;
    if (pk == NULL || x == NULL)
        goto out;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"badinput", -1, -1,
                               0);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, pk);
    if (X509_sign(x, pk, EVP_sha256()) <= 0)
        goto out;
    *len = i2d_X509(x, &der);
out:
    X509_free(x);
    EVP_PKEY_free(pk);
    return der;
}

static unsigned char *cert_der;
static int cert_len;

/* Runs fn in a forked child that initializes the module and opens a R/W session (logged in);
 * the parent has the module finalized. The child exits 0 when every check passed, 3 when one
 * failed; anything else is a crash: a signal, an AddressSanitizer/UBSan report (exit status 1)
 * or a LeakSanitizer report (exit status 23). */
typedef void (*iso_fn)(CK_SESSION_HANDLE s);

static void isolated(const char *name, iso_fn fn)
{
    pid_t pid;
    int status = 0;

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        CHECK(0, "fork for %s", name);
        return;
    }
    if (pid == 0) {
        CK_SESSION_HANDLE s;
        p11t_failures = 0;
        if (f->C_Initialize(NULL) != CKR_OK || f->C_OpenSession(slot, RW, NULL, NULL, &s) != CKR_OK)
            _exit(4);
        (void)f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4);
        fn(s);
        if (f->C_Finalize(NULL) != CKR_OK)
            p11t_failures++;
        fflush(stderr);
        exit(p11t_failures ? 3 : 0);
    }
    while (waitpid(pid, &status, 0) < 0)
        ;
    if (WIFSIGNALED(status))
        CHECK(0, "%s: the child CRASHED with signal %d", name, WTERMSIG(status));
    else if (WEXITSTATUS(status) == 3)
        CHECK(0, "%s: wrong CK_RV (see the FAIL lines above)", name);
    else if (WEXITSTATUS(status) == 4)
        CHECK(0, "%s: the child could not initialize the module", name);
    else if (WEXITSTATUS(status) == 23)
        CHECK(0, "%s: LeakSanitizer reported a leak (see above)", name);
    else
        CHECK(WEXITSTATUS(status) == 0,
              "%s: the child died with exit status %d (a sanitizer report?)", name,
              WEXITSTATUS(status));
}

/* ---------------------------------------------------------------------------------------- */
/* before C_Initialize: everything but the function list and interfaces says so */

static void before_initialize(void)
{
    const CK_RV NI = CKR_CRYPTOKI_NOT_INITIALIZED;
    CK_INFO info;
    CK_SLOT_ID slots[4];
    CK_ULONG n = 4, len = 16;
    CK_SLOT_INFO si;
    CK_TOKEN_INFO ti;
    CK_MECHANISM_TYPE mt[4];
    CK_MECHANISM_INFO mi;
    CK_SESSION_HANDLE h = 1;
    CK_SESSION_INFO ssi;
    CK_OBJECT_HANDLE o = 1;
    CK_ATTRIBUTE a = {CKA_CLASS, NULL, 0};
    CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
    unsigned char buf[64];
    CK_FUNCTION_LIST_PTR fl = NULL;

    CHECK_RV(C_GetFunctionList(NULL), CKR_ARGUMENTS_BAD);
    CHECK_RV(C_GetFunctionList(&fl), CKR_OK);
    CHECK(fl == f, "the function list is one table");
    CHECK_RV(f->C_GetFunctionList(NULL), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_Finalize(NULL), NI);
    CHECK_RV(f->C_GetInfo(&info), NI);
    CHECK_RV(f->C_GetInfo(NULL), NI);
    CHECK_RV(f->C_GetSlotList(CK_FALSE, slots, &n), NI);
    CHECK_RV(f->C_GetSlotList(CK_TRUE, NULL, &n), NI);
    CHECK_RV(f->C_GetSlotInfo(0, &si), NI);
    CHECK_RV(f->C_GetTokenInfo(0, &ti), NI);
    CHECK_RV(f->C_GetMechanismList(0, mt, &n), NI);
    CHECK_RV(f->C_GetMechanismInfo(0, CKM_ECDSA, &mi), NI);
    CHECK_RV(f->C_InitToken(0, (CK_UTF8CHAR_PTR) "1234", 4, buf), NI);
    CHECK_RV(f->C_InitPIN(h, (CK_UTF8CHAR_PTR) "1234", 4), NI);
    CHECK_RV(f->C_SetPIN(h, (CK_UTF8CHAR_PTR) "1234", 4, (CK_UTF8CHAR_PTR) "5678", 4), NI);
    CHECK_RV(f->C_OpenSession(0, RW, NULL, NULL, &h), NI);
    CHECK_RV(f->C_CloseSession(h), NI);
    CHECK_RV(f->C_CloseAllSessions(0), NI);
    CHECK_RV(f->C_GetSessionInfo(h, &ssi), NI);
    CHECK_RV(f->C_GetOperationState(h, buf, &len), NI);
    CHECK_RV(f->C_SetOperationState(h, buf, 16, 0, 0), NI);
    CHECK_RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), NI);
    CHECK_RV(f->C_Logout(h), NI);
    CHECK_RV(f->C_CreateObject(h, &a, 1, &o), NI);
    CHECK_RV(f->C_CopyObject(h, o, &a, 1, &o), NI);
    CHECK_RV(f->C_DestroyObject(h, o), NI);
    CHECK_RV(f->C_GetObjectSize(h, o, &len), NI);
    CHECK_RV(f->C_GetAttributeValue(h, o, &a, 1), NI);
    CHECK_RV(f->C_SetAttributeValue(h, o, &a, 1), NI);
    CHECK_RV(f->C_FindObjectsInit(h, &a, 1), NI);
    CHECK_RV(f->C_FindObjects(h, &o, 1, &n), NI);
    CHECK_RV(f->C_FindObjectsFinal(h), NI);
    CHECK_RV(f->C_EncryptInit(h, &m, o), NI);
    CHECK_RV(f->C_Encrypt(h, buf, 16, buf, &len), NI);
    CHECK_RV(f->C_EncryptUpdate(h, buf, 16, buf, &len), NI);
    CHECK_RV(f->C_EncryptFinal(h, buf, &len), NI);
    CHECK_RV(f->C_DecryptInit(h, &m, o), NI);
    CHECK_RV(f->C_Decrypt(h, buf, 16, buf, &len), NI);
    CHECK_RV(f->C_DecryptUpdate(h, buf, 16, buf, &len), NI);
    CHECK_RV(f->C_DecryptFinal(h, buf, &len), NI);
    CHECK_RV(f->C_DigestInit(h, &m), NI);
    CHECK_RV(f->C_Digest(h, buf, 16, buf, &len), NI);
    CHECK_RV(f->C_DigestUpdate(h, buf, 16), NI);
    CHECK_RV(f->C_DigestKey(h, o), NI);
    CHECK_RV(f->C_DigestFinal(h, buf, &len), NI);
    CHECK_RV(f->C_SignInit(h, &m, o), NI);
    CHECK_RV(f->C_Sign(h, buf, 16, buf, &len), NI);
    CHECK_RV(f->C_SignUpdate(h, buf, 16), NI);
    CHECK_RV(f->C_SignFinal(h, buf, &len), NI);
    CHECK_RV(f->C_SignRecoverInit(h, &m, o), NI);
    CHECK_RV(f->C_SignRecover(h, buf, 16, buf, &len), NI);
    CHECK_RV(f->C_VerifyInit(h, &m, o), NI);
    CHECK_RV(f->C_Verify(h, buf, 16, buf, 16), NI);
    CHECK_RV(f->C_VerifyUpdate(h, buf, 16), NI);
    CHECK_RV(f->C_VerifyFinal(h, buf, 16), NI);
    CHECK_RV(f->C_VerifyRecoverInit(h, &m, o), NI);
    CHECK_RV(f->C_VerifyRecover(h, buf, 16, buf, &len), NI);
    CHECK_RV(f->C_DigestEncryptUpdate(h, buf, 16, buf, &len), NI);
    CHECK_RV(f->C_DecryptDigestUpdate(h, buf, 16, buf, &len), NI);
    CHECK_RV(f->C_SignEncryptUpdate(h, buf, 16, buf, &len), NI);
    CHECK_RV(f->C_DecryptVerifyUpdate(h, buf, 16, buf, &len), NI);
    CHECK_RV(f->C_GenerateKey(h, &m, &a, 1, &o), NI);
    CHECK_RV(f->C_GenerateKeyPair(h, &m, &a, 1, &a, 1, &o, &o), NI);
    CHECK_RV(f->C_WrapKey(h, &m, o, o, buf, &len), NI);
    CHECK_RV(f->C_UnwrapKey(h, &m, o, buf, 16, &a, 1, &o), NI);
    CHECK_RV(f->C_DeriveKey(h, &m, o, &a, 1, &o), NI);
    CHECK_RV(f->C_SeedRandom(h, buf, 16), NI);
    CHECK_RV(f->C_GenerateRandom(h, buf, 16), NI);
    CHECK_RV(f->C_GetFunctionStatus(h), NI);
    CHECK_RV(f->C_CancelFunction(h), NI);
    CHECK_RV(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, slots, NULL), NI);
}

/* ---------------------------------------------------------------------------------------- */
/* C_Initialize / C_Finalize arguments */

static CK_RV mtx_create(CK_VOID_PTR_PTR m)
{
    *m = malloc(1);
    return *m ? CKR_OK : CKR_HOST_MEMORY;
}
static CK_RV mtx_destroy(CK_VOID_PTR m)
{
    free(m);
    return CKR_OK;
}
static CK_RV mtx_lock(CK_VOID_PTR m)
{
    (void)m;
    return CKR_OK;
}
static CK_RV mtx_unlock(CK_VOID_PTR m)
{
    (void)m;
    return CKR_OK;
}

static void initialize_args(void)
{
    CK_C_INITIALIZE_ARGS a;

    /* 5.4 C_Initialize: some but not all mutex functions: CKR_ARGUMENTS_BAD */
    a = (CK_C_INITIALIZE_ARGS){mtx_create, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL};
    CHECK_RV(f->C_Initialize(&a), CKR_ARGUMENTS_BAD);
    a = (CK_C_INITIALIZE_ARGS){mtx_create, mtx_destroy, mtx_lock, NULL, 0, NULL};
    CHECK_RV(f->C_Initialize(&a), CKR_ARGUMENTS_BAD);
    a = (CK_C_INITIALIZE_ARGS){NULL, NULL, NULL, mtx_unlock, CKF_OS_LOCKING_OK, NULL};
    CHECK_RV(f->C_Initialize(&a), CKR_ARGUMENTS_BAD);
    /* all four without CKF_OS_LOCKING_OK: the application's locks or CKR_CANT_LOCK */
    a = (CK_C_INITIALIZE_ARGS){mtx_create, mtx_destroy, mtx_lock, mtx_unlock, 0, NULL};
    CHECK_RV(f->C_Initialize(&a), CKR_CANT_LOCK);
    CHECK_RV(f->C_GetInfo(&(CK_INFO){0}), CKR_CRYPTOKI_NOT_INITIALIZED);
    /* all four with CKF_OS_LOCKING_OK: the library may use either */
    a = (CK_C_INITIALIZE_ARGS){mtx_create, mtx_destroy, mtx_lock, mtx_unlock, CKF_OS_LOCKING_OK,
                               NULL};
    CHECK_RV(f->C_Initialize(&a), CKR_OK);
    CHECK_RV(f->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);
    CHECK_RV(f->C_Finalize((CK_VOID_PTR)&a), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);
    CHECK_RV(f->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
    /* pReserved: NULL, or our "config=/path" string; anything else is refused without being
     * trusted (pkcs11test Init.InitArgsBadReserved passes (void *)1: it crashed the module) */
    {
        char good[600];
        const char *conf = getenv("VAULT_TRANSIT_PKCS11_CONFIG");
        a = (CK_C_INITIALIZE_ARGS){NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, (CK_VOID_PTR)1};
        CHECK_RV(f->C_Initialize(&a), CKR_ARGUMENTS_BAD);
        a.pReserved = (CK_VOID_PTR) "not a configuration";
        CHECK_RV(f->C_Initialize(&a), CKR_ARGUMENTS_BAD);
        CHECK_RV(f->C_GetInfo(&(CK_INFO){0}), CKR_CRYPTOKI_NOT_INITIALIZED);
        if (conf != NULL) {
            snprintf(good, sizeof(good), "config=%s", conf);
            a.pReserved = good;
            CHECK_RV(f->C_Initialize(&a), CKR_OK);
            CHECK_RV(f->C_Finalize(NULL), CKR_OK);
        }
    }
    a = (CK_C_INITIALIZE_ARGS){NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL};
    REQUIRE_RV(f->C_Initialize(&a), CKR_OK);
    CHECK_RV(f->C_Finalize((CK_VOID_PTR)1), CKR_ARGUMENTS_BAD);
}

/* ---------------------------------------------------------------------------------------- */
/* general-purpose, slot and token functions */

static void slot_token(void)
{
    CK_SLOT_ID slots[8];
    CK_ULONG n;
    CK_SLOT_INFO si;
    CK_TOKEN_INFO ti;
    CK_MECHANISM_TYPE mt[64];
    CK_MECHANISM_INFO mi;
    CK_FLAGS ev = 0;
    CK_SLOT_ID evs;

    CHECK_RV(f->C_GetInfo(NULL), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_GetSlotList(CK_TRUE, NULL, NULL), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_GetSlotList(CK_FALSE, slots, NULL), CKR_ARGUMENTS_BAD);
    n = 0;
    CHECK_RV(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_BUFFER_TOO_SMALL);
    CHECK(n >= 1, "C_GetSlotList BUFFER_TOO_SMALL sets the count (%lu)", n);
    n = 8;
    REQUIRE_RV(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
    slot = slots[0];
    CHECK_RV(f->C_GetSlotInfo(slot, NULL), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_GetSlotInfo(BAD_SLOT, &si), CKR_SLOT_ID_INVALID);
    CHECK_RV(f->C_GetSlotInfo((CK_SLOT_ID)-1, &si), CKR_SLOT_ID_INVALID);
    CHECK_RV(f->C_GetTokenInfo(slot, NULL), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_GetTokenInfo(BAD_SLOT, &ti), CKR_SLOT_ID_INVALID);
    CHECK_RV(f->C_GetTokenInfo(n, &ti), CKR_SLOT_ID_INVALID); /* one past the last */
    CHECK_RV(f->C_GetMechanismList(slot, mt, NULL), CKR_ARGUMENTS_BAD);
    n = 64;
    CHECK_RV(f->C_GetMechanismList(BAD_SLOT, mt, &n), CKR_SLOT_ID_INVALID);
    n = 1;
    CHECK_RV(f->C_GetMechanismList(slot, mt, &n), CKR_BUFFER_TOO_SMALL);
    CHECK(n > 1, "C_GetMechanismList BUFFER_TOO_SMALL sets the count (%lu)", n);
    CHECK_RV(f->C_GetMechanismInfo(slot, CKM_ECDSA, NULL), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_GetMechanismInfo(BAD_SLOT, CKM_ECDSA, &mi), CKR_SLOT_ID_INVALID);
    CHECK_RV(f->C_GetMechanismInfo(slot, BAD_MECH, &mi), CKR_MECHANISM_INVALID);
    CHECK_RV(f->C_GetMechanismInfo(slot, CKM_DES3_CBC, &mi), CKR_MECHANISM_INVALID);
    CHECK_RV2(f->C_InitToken(BAD_SLOT, (CK_UTF8CHAR_PTR) "1234", 4,
                             (CK_UTF8CHAR_PTR) "label                           "),
              CKR_SLOT_ID_INVALID, CKR_FUNCTION_NOT_SUPPORTED);
    CHECK_RV2(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &evs, NULL), CKR_NO_EVENT,
              CKR_FUNCTION_NOT_SUPPORTED);
    (void)ev;
}

/* ---------------------------------------------------------------------------------------- */
/* session handles */

static void session_handles(void)
{
    CK_SESSION_HANDLE h, closed;
    CK_SESSION_INFO si;
    CK_OBJECT_HANDLE o;
    CK_ULONG n, len;
    CK_ATTRIBUTE a = {CKA_CLASS, NULL, 0};
    CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
    CK_MECHANISM d = {CKM_SHA256, NULL, 0};
    unsigned char buf[64];
    const CK_SESSION_HANDLE bad[] = {0, BAD_SESSION, (CK_SESSION_HANDLE)-1, 0};

    CHECK_RV(f->C_OpenSession(slot, RW, NULL, NULL, NULL), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_OpenSession(BAD_SLOT, RW, NULL, NULL, &h), CKR_SLOT_ID_INVALID);
    CHECK_RV(f->C_OpenSession(slot, 0, NULL, NULL, &h), CKR_SESSION_PARALLEL_NOT_SUPPORTED);
    CHECK_RV(f->C_OpenSession(slot, CKF_RW_SESSION, NULL, NULL, &h),
             CKR_SESSION_PARALLEL_NOT_SUPPORTED);
    CHECK_RV(f->C_CloseAllSessions(BAD_SLOT), CKR_SLOT_ID_INVALID);
    CHECK_RV(f->C_CloseAllSessions((CK_SLOT_ID)-1), CKR_SLOT_ID_INVALID);

    REQUIRE_RV(f->C_OpenSession(slot, RW, NULL, NULL, &closed), CKR_OK);
    CHECK_RV(f->C_GetSessionInfo(closed, NULL), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_CloseSession(closed), CKR_OK);
    CHECK_RV(f->C_CloseSession(closed), CKR_SESSION_HANDLE_INVALID);

    /* sizeof(bad) - 1 entries and then the closed one */
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        h = i == sizeof(bad) / sizeof(bad[0]) - 1 ? closed : bad[i];
        n = 1;
        len = sizeof(buf);
        CHECK_RV(f->C_CloseSession(h), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_GetSessionInfo(h, &si), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4),
                 CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_Logout(h), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_CreateObject(h, &a, 1, &o), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_CopyObject(h, 1, NULL, 0, &o), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_DestroyObject(h, 1), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_GetObjectSize(h, 1, &len), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_GetAttributeValue(h, 1, &a, 1), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_SetAttributeValue(h, 1, &a, 1), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_FindObjectsInit(h, NULL, 0), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_FindObjects(h, &o, 1, &n), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_FindObjectsFinal(h), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_EncryptInit(h, &m, 1), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_Encrypt(h, buf, 16, buf, &len), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_DecryptInit(h, &m, 1), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_Decrypt(h, buf, 16, buf, &len), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_DigestInit(h, &d), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_Digest(h, buf, 16, buf, &len), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_DigestUpdate(h, buf, 16), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_DigestFinal(h, buf, &len), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_SignInit(h, &m, 1), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_Sign(h, buf, 16, buf, &len), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_SignUpdate(h, buf, 16), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_SignFinal(h, buf, &len), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_VerifyInit(h, &m, 1), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_Verify(h, buf, 16, buf, 64), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_VerifyUpdate(h, buf, 16), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_VerifyFinal(h, buf, 64), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_GenerateKeyPair(h, &m, NULL, 0, NULL, 0, &o, &o),
                 CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_GenerateRandom(h, buf, 16), CKR_SESSION_HANDLE_INVALID);
        /* functions the module does not offer check the session first (pkcs11test) */
        CHECK_RV(f->C_InitPIN(h, (CK_UTF8CHAR_PTR) "1234", 4), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_SetPIN(h, (CK_UTF8CHAR_PTR) "1", 1, (CK_UTF8CHAR_PTR) "2", 1),
                 CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_GetOperationState(h, NULL, &len), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_SeedRandom(h, buf, 16), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_DigestKey(h, 1), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV(f->C_GenerateKey(h, &m, NULL, 0, &o), CKR_SESSION_HANDLE_INVALID);
        CHECK_RV2(f->C_GetFunctionStatus(h), CKR_SESSION_HANDLE_INVALID, CKR_FUNCTION_NOT_PARALLEL);
        CHECK_RV2(f->C_CancelFunction(h), CKR_SESSION_HANDLE_INVALID, CKR_FUNCTION_NOT_PARALLEL);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* C_Login / C_Logout */

static void login(void)
{
    CK_SESSION_HANDLE rw, ro;

    REQUIRE_RV(f->C_OpenSession(slot, RW, NULL, NULL, &rw), CKR_OK);
    CHECK_RV(f->C_Login(rw, 42, (CK_UTF8CHAR_PTR) "1234", 4), CKR_USER_TYPE_INVALID);
    CHECK_RV(f->C_Login(rw, (CK_USER_TYPE)-1, (CK_UTF8CHAR_PTR) "1234", 4),
             CKR_USER_TYPE_INVALID);
    CHECK_RV(f->C_Login(rw, CKU_USER, NULL, 4), CKR_ARGUMENTS_BAD);
    /* no operation needs CKA_ALWAYS_AUTHENTICATE */
    CHECK_RV(f->C_Login(rw, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR) "1234", 4),
             CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_Logout(rw), CKR_USER_NOT_LOGGED_IN);
    REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro), CKR_OK);
    /* 5.6 C_Login: the SO cannot log in while a read-only session exists */
    CHECK_RV(f->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR) "1234", 4), CKR_SESSION_READ_ONLY_EXISTS);
    CHECK_RV(f->C_CloseSession(ro), CKR_OK);
    CHECK_RV(f->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), CKR_OK);
    CHECK_RV(f->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), CKR_USER_ALREADY_LOGGED_IN);
    /* 5.1 CKR_USER_ANOTHER_ALREADY_LOGGED_IN: the SO while the normal user is logged in */
    CHECK_RV(f->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR) "1234", 4),
             CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
    CHECK_RV(f->C_Logout(rw), CKR_OK);
    CHECK_RV(f->C_Logout(rw), CKR_USER_NOT_LOGGED_IN);
    CHECK_RV(f->C_CloseSession(rw), CKR_OK);
}

/* ---------------------------------------------------------------------------------------- */
/* objects: handles, attributes, searches */

static void attributes(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE pub, CK_OBJECT_HANDLE priv)
{
    CK_ULONG size = 0;
    CK_OBJECT_HANDLE o;
    CK_OBJECT_CLASS cls = 0;
    CK_KEY_TYPE kt = 0;
    unsigned char point[2], big[256], val[32];
    CK_ATTRIBUTE a1 = {CKA_CLASS, &cls, sizeof(cls)};

    CHECK_RV(f->C_GetObjectSize(s, priv, NULL), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_GetObjectSize(s, BAD_OBJECT, &size), CKR_OBJECT_HANDLE_INVALID);
    CHECK_RV(f->C_GetObjectSize(s, 0, &size), CKR_OBJECT_HANDLE_INVALID);
    CHECK_RV(f->C_CopyObject(s, BAD_OBJECT, NULL, 0, &o), CKR_OBJECT_HANDLE_INVALID);
    CHECK_RV(f->C_DestroyObject(s, BAD_OBJECT), CKR_OBJECT_HANDLE_INVALID);
    CHECK_RV(f->C_DestroyObject(s, 0), CKR_OBJECT_HANDLE_INVALID);
    CHECK_RV(f->C_GetAttributeValue(s, BAD_OBJECT, &a1, 1), CKR_OBJECT_HANDLE_INVALID);
    CHECK_RV(f->C_GetAttributeValue(s, 0, &a1, 1), CKR_OBJECT_HANDLE_INVALID);
    CHECK_RV(f->C_GetAttributeValue(s, priv, NULL, 2), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_SetAttributeValue(s, BAD_OBJECT, &a1, 1), CKR_OBJECT_HANDLE_INVALID);

    /* NULL pValue: lengths only */
    {
        CK_ATTRIBUTE t[] = {{CKA_LABEL, NULL, 999}, {CKA_EC_POINT, NULL, 0}, {CKA_CLASS, NULL, 0}};
        CHECK_RV(f->C_GetAttributeValue(s, pub, t, 3), CKR_OK);
        CHECK(t[0].ulValueLen != 999 && t[0].ulValueLen != CK_UNAVAILABLE_INFORMATION,
              "label length %lu", t[0].ulValueLen);
        CHECK(t[1].ulValueLen == 67, "EC point length %lu", t[1].ulValueLen);
        CHECK(t[2].ulValueLen == sizeof(CK_OBJECT_CLASS), "class length %lu", t[2].ulValueLen);
    }
    /* 5.7: a too small buffer: that entry CK_UNAVAILABLE_INFORMATION, the others filled */
    {
        CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)},
                            {CKA_EC_POINT, point, sizeof(point)},
                            {CKA_KEY_TYPE, &kt, sizeof(kt)}};
        cls = kt = 0xdead;
        CHECK_RV(f->C_GetAttributeValue(s, pub, t, 3), CKR_BUFFER_TOO_SMALL);
        CHECK(t[1].ulValueLen == CK_UNAVAILABLE_INFORMATION, "too small: ulValueLen %lu",
              t[1].ulValueLen);
        CHECK(cls == CKO_PUBLIC_KEY && t[0].ulValueLen == sizeof(cls), "class still filled");
        CHECK(kt == CKK_EC && t[2].ulValueLen == sizeof(kt), "key type still filled");
    }
    {
        CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, 3}}; /* shorter than a CK_ULONG */
        CHECK_RV(f->C_GetAttributeValue(s, pub, t, 1), CKR_BUFFER_TOO_SMALL);
        CHECK(t[0].ulValueLen == CK_UNAVAILABLE_INFORMATION, "short class buffer");
    }
    /* sensitive */
    {
        CK_ATTRIBUTE t[] = {{CKA_VALUE, val, sizeof(val)}, {CKA_CLASS, &cls, sizeof(cls)}};
        cls = 0xdead;
        CHECK_RV(f->C_GetAttributeValue(s, priv, t, 2), CKR_ATTRIBUTE_SENSITIVE);
        CHECK(t[0].ulValueLen == CK_UNAVAILABLE_INFORMATION, "sensitive: ulValueLen %lu",
              t[0].ulValueLen);
        CHECK(cls == CKO_PRIVATE_KEY, "class filled beside a sensitive attribute");
    }
    /* unknown type, and a type that does not belong to an EC key */
    {
        CK_ATTRIBUTE t[] = {{BAD_ATTR, big, sizeof(big)},
                            {CKA_MODULUS, big, sizeof(big)},
                            {CKA_CLASS, &cls, sizeof(cls)}};
        cls = 0xdead;
        CHECK_RV(f->C_GetAttributeValue(s, pub, t, 3), CKR_ATTRIBUTE_TYPE_INVALID);
        CHECK(t[0].ulValueLen == CK_UNAVAILABLE_INFORMATION &&
                  t[1].ulValueLen == CK_UNAVAILABLE_INFORMATION,
              "invalid types: ulValueLen %lu %lu", t[0].ulValueLen, t[1].ulValueLen);
        CHECK(cls == CKO_PUBLIC_KEY, "class filled beside invalid types");
    }
    /* all three at once: any of the three (5.7) */
    {
        CK_ATTRIBUTE t[] = {{CKA_VALUE, val, sizeof(val)},
                            {BAD_ATTR, NULL, 0},
                            {CKA_EC_POINT, point, 1},
                            {CKA_KEY_TYPE, &kt, sizeof(kt)}};
        kt = 0xdead;
        CHECK_RV3(f->C_GetAttributeValue(s, priv, t, 4), CKR_ATTRIBUTE_SENSITIVE,
                  CKR_ATTRIBUTE_TYPE_INVALID, CKR_BUFFER_TOO_SMALL);
        CHECK(t[0].ulValueLen == CK_UNAVAILABLE_INFORMATION &&
                  t[1].ulValueLen == CK_UNAVAILABLE_INFORMATION &&
                  t[2].ulValueLen == CK_UNAVAILABLE_INFORMATION,
              "mixed errors: %lu %lu %lu", t[0].ulValueLen, t[1].ulValueLen, t[2].ulValueLen);
        CHECK(kt == CKK_EC, "key type filled beside three errors");
    }
    CHECK_RV(f->C_GetAttributeValue(s, priv, NULL, 0), CKR_OK);

    /* C_SetAttributeValue */
    {
        CK_OBJECT_CLASS c2 = CKO_DATA;
        CK_ATTRIBUTE t1[] = {{CKA_CLASS, &c2, sizeof(c2)}};
        CK_ATTRIBUTE t2[] = {{BAD_ATTR, &c2, sizeof(c2)}};
        CK_ATTRIBUTE t3[] = {{CKA_LABEL, NULL, 5}};
        CK_ATTRIBUTE t4[] = {{CKA_SENSITIVE, &no, sizeof(no)}};
        CHECK_RV(f->C_SetAttributeValue(s, priv, NULL, 1), CKR_ARGUMENTS_BAD);
        CHECK_RV(f->C_SetAttributeValue(s, priv, t1, 1), CKR_ATTRIBUTE_READ_ONLY);
        /* 4.1.2 / 5.7: an attribute type that is not valid is CKR_ATTRIBUTE_TYPE_INVALID */
        CHECK_RV(f->C_SetAttributeValue(s, priv, t2, 1), CKR_ATTRIBUTE_TYPE_INVALID);
        CHECK_RV(f->C_SetAttributeValue(s, priv, t3, 1), CKR_ATTRIBUTE_VALUE_INVALID);
        /* CKA_SENSITIVE cannot go from TRUE to FALSE */
        CHECK_RV(f->C_SetAttributeValue(s, priv, t4, 1), CKR_ATTRIBUTE_READ_ONLY);
    }
    {
        size_t n = 1024 * 1024;
        unsigned char *huge = malloc(n);
        memset(huge, 'L', n);
        CK_ATTRIBUTE t[] = {{CKA_LABEL, huge, n}};
        CHECK_RV2(f->C_SetAttributeValue(s, priv, t, 1), CKR_ATTRIBUTE_VALUE_INVALID, CKR_OK);
        free(huge);
    }
    /* a label that is not UTF-8 (CKA_LABEL is an RFC 2279 string): refused or kept as given */
    {
        static const unsigned char lab[] = {'x', 0xff, 0xfe, 'y'};
        unsigned char got[16];
        CK_ATTRIBUTE t[] = {{CKA_LABEL, (void *)lab, sizeof(lab)}};
        CK_ATTRIBUTE g = {CKA_LABEL, got, sizeof(got)};
        CK_RV rv = f->C_SetAttributeValue(s, priv, t, 1);
        CHECK(rv == CKR_OK || rv == CKR_ATTRIBUTE_VALUE_INVALID,
              "C_SetAttributeValue(CKA_LABEL not UTF-8) returned %s, expected "
              "CKR_ATTRIBUTE_VALUE_INVALID or CKR_OK",
              vtp_rv_name(rv));
        if (rv == CKR_OK) {
            CHECK_RV(f->C_GetAttributeValue(s, priv, &g, 1), CKR_OK);
            CHECK(g.ulValueLen == sizeof(lab) && memcmp(got, lab, sizeof(lab)) == 0,
                  "non-UTF-8 label read back as %lu bytes", g.ulValueLen);
        }
    }
    /* a label with a NUL byte inside: refused, or kept whole */
    {
        static const unsigned char lab[] = {'a', 'b', 0, 'c', 'd'};
        unsigned char got[16];
        CK_ATTRIBUTE t[] = {{CKA_LABEL, (void *)lab, sizeof(lab)}};
        CK_ATTRIBUTE g = {CKA_LABEL, got, sizeof(got)};
        CK_RV rv = f->C_SetAttributeValue(s, priv, t, 1);
        CHECK(rv == CKR_OK || rv == CKR_ATTRIBUTE_VALUE_INVALID,
              "C_SetAttributeValue(CKA_LABEL with NUL) returned %s", vtp_rv_name(rv));
        if (rv == CKR_OK) {
            CHECK_RV(f->C_GetAttributeValue(s, priv, &g, 1), CKR_OK);
            CHECK(g.ulValueLen == sizeof(lab) && memcmp(got, lab, sizeof(lab)) == 0,
                  "label with a NUL inside read back as %lu bytes (%zu given)", g.ulValueLen,
                  sizeof(lab));
        }
    }
}

static void searches(CK_SESSION_HANDLE s)
{
    CK_OBJECT_HANDLE found[8];
    CK_ULONG n = 0;
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}};

    CHECK_RV(f->C_FindObjects(s, found, 8, &n), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_FindObjectsFinal(s), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_FindObjectsInit(s, NULL, 1), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_FindObjectsInit(s, t, 1), CKR_OK);
    CHECK_RV(f->C_FindObjectsInit(s, t, 1), CKR_OPERATION_ACTIVE);
    CHECK_RV(f->C_FindObjects(s, NULL, 8, &n), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_FindObjects(s, found, 8, NULL), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_FindObjects(s, found, 0, &n), CKR_OK);
    CHECK(n == 0, "max 0 found %lu", n);
    CHECK_RV(f->C_FindObjects(s, found, 8, &n), CKR_OK);
    CHECK_RV(f->C_FindObjectsFinal(s), CKR_OK);
    CHECK_RV(f->C_FindObjectsFinal(s), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_FindObjects(s, found, 8, &n), CKR_OPERATION_NOT_INITIALIZED);

    /* templates with NULL pValue and a length: refused the same way for every attribute */
    {
        CK_ATTRIBUTE bad[][1] = {{{CKA_LABEL, NULL, 5}},
                                 {{CKA_ID, NULL, 5}},
                                 {{CKA_CLASS, NULL, sizeof(CK_OBJECT_CLASS)}},
                                 {{CKA_EC_POINT, NULL, 67}}};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            CK_RV rv = f->C_FindObjectsInit(s, bad[i], 1);
            CHECK(rv == CKR_ARGUMENTS_BAD || rv == CKR_ATTRIBUTE_VALUE_INVALID,
                  "C_FindObjectsInit({%s, NULL, %lu}) returned %s, expected CKR_ARGUMENTS_BAD "
                  "or CKR_ATTRIBUTE_VALUE_INVALID",
                  i == 0 ? "CKA_LABEL" : i == 1 ? "CKA_ID" : i == 2 ? "CKA_CLASS" : "CKA_EC_POINT",
                  bad[i][0].ulValueLen, vtp_rv_name(rv));
            if (rv == CKR_OK)
                f->C_FindObjectsFinal(s);
        }
    }
    /* a 1 MB label to search for: no match, no crash */
    {
        size_t len = 1024 * 1024;
        unsigned char *huge = malloc(len);
        memset(huge, 'x', len);
        CK_ATTRIBUTE h[] = {{CKA_LABEL, huge, len}};
        CHECK_RV(f->C_FindObjectsInit(s, h, 1), CKR_OK);
        n = 99;
        CHECK_RV(f->C_FindObjects(s, found, 8, &n), CKR_OK);
        CHECK(n == 0, "1 MB label found %lu objects", n);
        CHECK_RV(f->C_FindObjectsFinal(s), CKR_OK);
        free(huge);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* sign / verify */

static void sign_verify(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE pub, CK_OBJECT_HANDLE priv,
                        CK_OBJECT_HANDLE edpub, CK_OBJECT_HANDLE edpriv)
{
    CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
    CK_MECHANISM raw = {CKM_ECDSA, NULL, 0};
    CK_MECHANISM ed = {CKM_EDDSA, NULL, 0};
    unsigned char sig[256], in[128];
    CK_ULONG len = sizeof(sig);
    const size_t big = 10 * 1024 * 1024;
    unsigned char *huge = malloc(big);
    CK_RV rv;

    memset(huge, 0x5a, big);
    memset(in, 0x11, sizeof(in));
    /* without Init */
    CHECK_RV(f->C_Sign(s, in, 32, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_SignUpdate(s, in, 32), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_SignFinal(s, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_Verify(s, in, 32, sig, 64), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_VerifyUpdate(s, in, 32), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_VerifyFinal(s, sig, 64), CKR_OPERATION_NOT_INITIALIZED);

    /* Init refusals */
    CHECK_RV(f->C_SignInit(s, NULL, priv), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_VerifyInit(s, NULL, pub), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_SignInit(s, &(CK_MECHANISM){BAD_MECH, NULL, 0}, priv), CKR_MECHANISM_INVALID);
    CHECK_RV(f->C_VerifyInit(s, &(CK_MECHANISM){BAD_MECH, NULL, 0}, pub), CKR_MECHANISM_INVALID);
    CHECK_RV(f->C_SignInit(s, &(CK_MECHANISM){CKM_SHA256, NULL, 0}, priv), CKR_MECHANISM_INVALID);
    CHECK_RV(f->C_SignInit(s, &(CK_MECHANISM){CKM_RSA_PKCS_OAEP, NULL, 0}, priv),
             CKR_MECHANISM_INVALID);
    CHECK_RV(f->C_SignInit(s, &(CK_MECHANISM){CKM_EC_KEY_PAIR_GEN, NULL, 0}, priv),
             CKR_MECHANISM_INVALID);
    CHECK_RV(f->C_SignInit(s, &(CK_MECHANISM){CKM_ECDSA, in, 4}, priv),
             CKR_MECHANISM_PARAM_INVALID);
    CHECK_RV(f->C_SignInit(s, &(CK_MECHANISM){CKM_ECDSA, NULL, 4}, priv),
             CKR_MECHANISM_PARAM_INVALID);
    CHECK_RV(f->C_VerifyInit(s, &(CK_MECHANISM){CKM_ECDSA_SHA256, in, 8}, pub),
             CKR_MECHANISM_PARAM_INVALID);
    CHECK_RV(f->C_SignInit(s, &m, BAD_OBJECT), CKR_KEY_HANDLE_INVALID);
    CHECK_RV(f->C_SignInit(s, &m, 0), CKR_KEY_HANDLE_INVALID);
    CHECK_RV(f->C_VerifyInit(s, &m, BAD_OBJECT), CKR_KEY_HANDLE_INVALID);
    CHECK_RV(f->C_SignInit(s, &m, pub), CKR_KEY_FUNCTION_NOT_PERMITTED);
    CHECK_RV(f->C_VerifyInit(s, &m, priv), CKR_KEY_FUNCTION_NOT_PERMITTED);
    CHECK_RV(f->C_SignInit(s, &(CK_MECHANISM){CKM_SHA256_RSA_PKCS, NULL, 0}, priv),
             CKR_KEY_TYPE_INCONSISTENT);
    CHECK_RV(f->C_SignInit(s, &ed, priv), CKR_KEY_TYPE_INCONSISTENT);

    /* double Init keeps the first operation, which still works */
    CHECK_RV(f->C_SignInit(s, &m, priv), CKR_OK);
    CHECK_RV(f->C_SignInit(s, &m, priv), CKR_OPERATION_ACTIVE);
    CHECK_RV(f->C_SignInit(s, &raw, priv), CKR_OPERATION_ACTIVE);
    len = 0;
    CHECK_RV(f->C_Sign(s, in, 32, NULL, &len), CKR_OK);
    CHECK(len == 64, "signature length %lu", len);
    len = 10;
    CHECK_RV(f->C_Sign(s, in, 32, sig, &len), CKR_BUFFER_TOO_SMALL);
    CHECK(len == 64, "BUFFER_TOO_SMALL gives the length (%lu)", len);
    len = sizeof(sig);
    CHECK_RV(f->C_Sign(s, in, 32, sig, &len), CKR_OK);
    CHECK_RV(f->C_Sign(s, in, 32, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_VerifyInit(s, &m, pub), CKR_OK);
    CHECK_RV(f->C_VerifyInit(s, &m, pub), CKR_OPERATION_ACTIVE);
    CHECK_RV(f->C_Verify(s, in, 32, sig, 64), CKR_OK);

    /* CKM_ECDSA: 0 and 65 bytes are not a hash */
    CHECK_RV(f->C_SignInit(s, &raw, priv), CKR_OK);
    len = sizeof(sig);
    CHECK_RV(f->C_Sign(s, in, 0, sig, &len), CKR_DATA_LEN_RANGE);
    CHECK_RV(f->C_Sign(s, in, 32, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_SignInit(s, &raw, priv), CKR_OK);
    CHECK_RV(f->C_Sign(s, in, 65, sig, &len), CKR_DATA_LEN_RANGE);
    CHECK_RV(f->C_Sign(s, in, 32, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_SignInit(s, &raw, priv), CKR_OK);
    CHECK_RV(f->C_Sign(s, huge, big, sig, &len), CKR_DATA_LEN_RANGE);
    CHECK_RV(f->C_VerifyInit(s, &raw, pub), CKR_OK);
    CHECK_RV(f->C_Verify(s, in, 65, sig, 64), CKR_DATA_LEN_RANGE);
    CHECK_RV(f->C_VerifyInit(s, &raw, pub), CKR_OK);
    CHECK_RV(f->C_Verify(s, in, 0, sig, 64), CKR_DATA_LEN_RANGE);

    /* NULL arguments */
    CHECK_RV(f->C_SignInit(s, &m, priv), CKR_OK);
    CHECK_RV(f->C_Sign(s, NULL, 32, sig, &len), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_Sign(s, in, 32, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_SignInit(s, &m, priv), CKR_OK);
    CHECK_RV(f->C_Sign(s, in, 32, sig, NULL), CKR_ARGUMENTS_BAD);
    /* 5.11 C_Sign: "always terminates the active signing operation unless it returns
     * CKR_BUFFER_TOO_SMALL or is a successful call to determine the length" */
    len = sizeof(sig);
    rv = f->C_Sign(s, in, 32, sig, &len);
    CHECK(rv == CKR_OPERATION_NOT_INITIALIZED,
          "C_Sign after C_Sign(pulSignatureLen NULL) -> ARGUMENTS_BAD returned %s, expected "
          "CKR_OPERATION_NOT_INITIALIZED (the failed call must end the operation)",
          vtp_rv_name(rv));
    if (rv == CKR_OPERATION_ACTIVE || rv == CKR_OK)
        (void)f->C_SignFinal(s, sig, &len);
    CHECK_RV(f->C_SignInit(s, &m, priv), CKR_OK);
    CHECK_RV(f->C_SignUpdate(s, NULL, 5), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_SignFinal(s, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_SignInit(s, &m, priv), CKR_OK);
    CHECK_RV(f->C_SignUpdate(s, in, 5), CKR_OK);
    CHECK_RV(f->C_SignFinal(s, sig, NULL), CKR_ARGUMENTS_BAD);
    len = sizeof(sig);
    rv = f->C_SignFinal(s, sig, &len);
    CHECK(rv == CKR_OPERATION_NOT_INITIALIZED,
          "C_SignFinal after C_SignFinal(pulSignatureLen NULL) -> ARGUMENTS_BAD returned %s, "
          "expected CKR_OPERATION_NOT_INITIALIZED (5.11: C_SignFinal always terminates)",
          vtp_rv_name(rv));
    CHECK_RV(f->C_VerifyInit(s, &m, pub), CKR_OK);
    CHECK_RV(f->C_Verify(s, in, 32, NULL, 64), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_Verify(s, in, 32, sig, 64), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_VerifyInit(s, &m, pub), CKR_OK);
    CHECK_RV(f->C_VerifyUpdate(s, NULL, 5), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_VerifyFinal(s, sig, 64), CKR_OPERATION_NOT_INITIALIZED);

    /* wrong signature lengths: CKR_SIGNATURE_LEN_RANGE, and the operation ends */
    {
        const CK_ULONG lens[] = {0, 1, 63, 65, 128, 4096};
        static unsigned char junk[4096];
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            CHECK_RV(f->C_VerifyInit(s, &m, pub), CKR_OK);
            rv = f->C_Verify(s, in, 32, junk, lens[i]);
            CHECK(rv == CKR_SIGNATURE_LEN_RANGE, "C_Verify with a %lu-byte signature: %s",
                  lens[i], vtp_rv_name(rv));
            CHECK_RV(f->C_Verify(s, in, 32, junk, 64), CKR_OPERATION_NOT_INITIALIZED);
            CHECK_RV(f->C_VerifyInit(s, &m, pub), CKR_OK);
            CHECK_RV(f->C_VerifyUpdate(s, in, 32), CKR_OK);
            rv = f->C_VerifyFinal(s, junk, lens[i]);
            CHECK(rv == CKR_SIGNATURE_LEN_RANGE, "C_VerifyFinal with a %lu-byte signature: %s",
                  lens[i], vtp_rv_name(rv));
            CHECK_RV(f->C_VerifyFinal(s, junk, 64), CKR_OPERATION_NOT_INITIALIZED);
        }
        CHECK_RV(f->C_VerifyInit(s, &m, pub), CKR_OK);
        CHECK_RV(f->C_Verify(s, in, 32, junk, 64), CKR_SIGNATURE_INVALID);
        CHECK_RV(f->C_VerifyInit(s, &ed, edpub), CKR_OK);
        CHECK_RV(f->C_Verify(s, in, 32, junk, 63), CKR_SIGNATURE_LEN_RANGE);
    }

    /* 10 MB: must work or be CKR_DATA_LEN_RANGE; a signature made must verify */
    CHECK_RV(f->C_SignInit(s, &m, priv), CKR_OK);
    for (size_t off = 0; off < big; off += 1024 * 1024) {
        rv = f->C_SignUpdate(s, huge + off, 1024 * 1024);
        if (rv != CKR_OK)
            break;
    }
    CHECK(rv == CKR_OK || rv == CKR_DATA_LEN_RANGE, "C_SignUpdate of 10 MB: %s",
          vtp_rv_name(rv));
    if (rv == CKR_OK) {
        len = sizeof(sig);
        CHECK_RV2(rv = f->C_SignFinal(s, sig, &len), CKR_OK, CKR_DATA_LEN_RANGE);
        if (rv == CKR_OK) {
            CHECK_RV(f->C_VerifyInit(s, &m, pub), CKR_OK);
            CHECK_RV(f->C_VerifyUpdate(s, huge, big / 2), CKR_OK);
            CHECK_RV(f->C_VerifyUpdate(s, huge + big / 2, big - big / 2), CKR_OK);
            CHECK_RV(f->C_VerifyFinal(s, sig, len), CKR_OK);
        }
    }
    CHECK_RV(f->C_SignInit(s, &m, priv), CKR_OK);
    len = sizeof(sig);
    CHECK_RV2(rv = f->C_Sign(s, huge, big, sig, &len), CKR_OK, CKR_DATA_LEN_RANGE);
    if (rv == CKR_OK) {
        CHECK_RV(f->C_VerifyInit(s, &m, pub), CKR_OK);
        CHECK_RV(f->C_Verify(s, huge, big, sig, len), CKR_OK);
    }
    /* Ed25519 signs the whole message in Vault */
    CHECK_RV(f->C_SignInit(s, &ed, edpriv), CKR_OK);
    len = sizeof(sig);
    CHECK_RV2(rv = f->C_Sign(s, huge, big, sig, &len), CKR_OK, CKR_DATA_LEN_RANGE);
    if (rv == CKR_OK) {
        CHECK_RV(f->C_VerifyInit(s, &ed, edpub), CKR_OK);
        CHECK_RV(f->C_Verify(s, huge, big, sig, len), CKR_OK);
    }
    CHECK_RV(f->C_SignInit(s, &ed, edpriv), CKR_OK);
    rv = CKR_OK;
    for (size_t off = 0; off < big && rv == CKR_OK; off += 1024 * 1024)
        rv = f->C_SignUpdate(s, huge + off, 1024 * 1024);
    CHECK(rv == CKR_OK || rv == CKR_DATA_LEN_RANGE, "Ed25519 C_SignUpdate of 10 MB: %s",
          vtp_rv_name(rv));
    if (rv == CKR_OK) {
        len = sizeof(sig);
        CHECK_RV2(f->C_SignFinal(s, sig, &len), CKR_OK, CKR_DATA_LEN_RANGE);
    }
    CHECK_RV(f->C_SignFinal(s, sig, &len), CKR_OPERATION_NOT_INITIALIZED);
    free(huge);
}

/* RSA: PSS and OAEP parameters, encryption and decryption */
static void rsa_params(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE pub, CK_OBJECT_HANDLE priv,
                       CK_OBJECT_HANDLE ecpub, CK_OBJECT_HANDLE ecpriv)
{
    CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 32};
    CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0};
    const CK_MECHANISM_TYPE pss_mechs[] = {CKM_RSA_PKCS_PSS, CKM_SHA256_RSA_PKCS_PSS};
    CK_MECHANISM om = {CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep)};
    unsigned char in[512], out[512];
    CK_ULONG len;
    CK_RV rv;

    memset(in, 0x01, sizeof(in));
    for (size_t i = 0; i < 2; i++) {
        CK_MECHANISM_TYPE t = pss_mechs[i];
        CHECK_RV(f->C_SignInit(s, &(CK_MECHANISM){t, NULL, 0}, priv), CKR_MECHANISM_PARAM_INVALID);
        CHECK_RV(f->C_SignInit(s, &(CK_MECHANISM){t, NULL, sizeof(pss)}, priv),
                 CKR_MECHANISM_PARAM_INVALID);
        CHECK_RV(f->C_SignInit(s, &(CK_MECHANISM){t, &pss, sizeof(pss) - 1}, priv),
                 CKR_MECHANISM_PARAM_INVALID);
        CHECK_RV(f->C_SignInit(s, &(CK_MECHANISM){t, &pss, sizeof(pss) + 8}, priv),
                 CKR_MECHANISM_PARAM_INVALID);
        CHECK_RV(f->C_VerifyInit(s, &(CK_MECHANISM){t, NULL, 0}, pub),
                 CKR_MECHANISM_PARAM_INVALID);
        CHECK_RV(f->C_VerifyInit(s, &(CK_MECHANISM){t, &pss, 4}, pub),
                 CKR_MECHANISM_PARAM_INVALID);
        CHECK_RV(f->C_SignInit(s, &(CK_MECHANISM){t, &(CK_RSA_PKCS_PSS_PARAMS){BAD_MECH, CKG_MGF1_SHA256, 32}, sizeof(pss)}, priv),
                 CKR_MECHANISM_PARAM_INVALID);
        CHECK_RV(f->C_SignInit(s, &(CK_MECHANISM){t, &(CK_RSA_PKCS_PSS_PARAMS){CKM_SHA256, 0x7fff, 32}, sizeof(pss)}, priv),
                 CKR_MECHANISM_PARAM_INVALID);
        CHECK_RV(f->C_SignInit(s, &(CK_MECHANISM){t, &(CK_RSA_PKCS_PSS_PARAMS){CKM_SHA256, CKG_MGF1_SHA256, 100000}, sizeof(pss)}, priv),
                 CKR_MECHANISM_PARAM_INVALID);
    }
    /* CKM_RSA_PKCS_PSS takes a digest of the hash in the parameters */
    CHECK_RV(f->C_SignInit(s, &(CK_MECHANISM){CKM_RSA_PKCS_PSS, &pss, sizeof(pss)}, priv), CKR_OK);
    len = sizeof(out);
    CHECK_RV(f->C_Sign(s, in, 20, out, &len), CKR_DATA_LEN_RANGE);
    /* CKM_RSA_PKCS: more than k - 11 bytes */
    CHECK_RV(f->C_SignInit(s, &(CK_MECHANISM){CKM_RSA_PKCS, NULL, 0}, priv), CKR_OK);
    len = sizeof(out);
    CHECK_RV(f->C_Sign(s, in, 246, out, &len), CKR_DATA_LEN_RANGE);
    CHECK_RV(f->C_VerifyInit(s, &(CK_MECHANISM){CKM_SHA256_RSA_PKCS, NULL, 0}, pub), CKR_OK);
    CHECK_RV(f->C_Verify(s, in, 32, out, 255), CKR_SIGNATURE_LEN_RANGE);

    /* OAEP */
    CHECK_RV(f->C_Encrypt(s, in, 16, out, &len), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_Decrypt(s, in, 256, out, &len), CKR_OPERATION_NOT_INITIALIZED);
    /* C_EncryptInit's list has no CKR_ARGUMENTS_BAD (pkcs11test takes either) */
    CHECK_RV(f->C_EncryptInit(s, NULL, pub), CKR_MECHANISM_INVALID);
    CHECK_RV(f->C_DecryptInit(s, NULL, priv), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_EncryptInit(s, &(CK_MECHANISM){BAD_MECH, NULL, 0}, pub), CKR_MECHANISM_INVALID);
    CHECK_RV(f->C_DecryptInit(s, &(CK_MECHANISM){CKM_ECDSA, NULL, 0}, priv),
             CKR_MECHANISM_INVALID);
    CHECK_RV(f->C_EncryptInit(s, &(CK_MECHANISM){CKM_RSA_PKCS_OAEP, NULL, 0}, pub),
             CKR_MECHANISM_PARAM_INVALID);
    CHECK_RV(f->C_EncryptInit(s, &(CK_MECHANISM){CKM_RSA_PKCS_OAEP, NULL, sizeof(oaep)}, pub),
             CKR_MECHANISM_PARAM_INVALID);
    CHECK_RV(f->C_EncryptInit(s, &(CK_MECHANISM){CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep) - 1}, pub),
             CKR_MECHANISM_PARAM_INVALID);
    CHECK_RV(f->C_DecryptInit(s, &(CK_MECHANISM){CKM_RSA_PKCS_OAEP, NULL, 0}, priv),
             CKR_MECHANISM_PARAM_INVALID);
    CHECK_RV(f->C_DecryptInit(s, &(CK_MECHANISM){CKM_RSA_PKCS_OAEP, &oaep, 3}, priv),
             CKR_MECHANISM_PARAM_INVALID);
    CHECK_RV(f->C_EncryptInit(s, &(CK_MECHANISM){CKM_RSA_PKCS_OAEP, &(CK_RSA_PKCS_OAEP_PARAMS){CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, in, 8}, sizeof(oaep)}, pub),
             CKR_MECHANISM_PARAM_INVALID);
    CHECK_RV(f->C_EncryptInit(s, &om, BAD_OBJECT), CKR_KEY_HANDLE_INVALID);
    CHECK_RV(f->C_DecryptInit(s, &om, BAD_OBJECT), CKR_KEY_HANDLE_INVALID);
    CHECK_RV(f->C_EncryptInit(s, &om, ecpub), CKR_KEY_TYPE_INCONSISTENT);
    CHECK_RV(f->C_DecryptInit(s, &om, ecpriv), CKR_KEY_TYPE_INCONSISTENT);
    CHECK_RV(f->C_EncryptInit(s, &om, priv), CKR_KEY_FUNCTION_NOT_PERMITTED);
    CHECK_RV(f->C_DecryptInit(s, &om, pub), CKR_KEY_FUNCTION_NOT_PERMITTED);

    CHECK_RV(f->C_EncryptInit(s, &om, pub), CKR_OK);
    CHECK_RV(f->C_EncryptInit(s, &om, pub), CKR_OPERATION_ACTIVE);
    len = sizeof(out);
    CHECK_RV(f->C_Encrypt(s, in, 300, out, &len), CKR_DATA_LEN_RANGE);
    CHECK_RV(f->C_Encrypt(s, in, 16, out, &len), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_EncryptInit(s, &om, pub), CKR_OK);
    len = 10;
    CHECK_RV(f->C_Encrypt(s, in, 16, out, &len), CKR_BUFFER_TOO_SMALL);
    CHECK(len == 256, "BUFFER_TOO_SMALL gives 256 (%lu)", len);
    CHECK_RV(f->C_Encrypt(s, in, 16, out, NULL), CKR_ARGUMENTS_BAD);
    /* 5.8 C_Encrypt: always terminates unless BUFFER_TOO_SMALL or a length question */
    len = sizeof(out);
    rv = f->C_Encrypt(s, in, 16, out, &len);
    CHECK(rv == CKR_OPERATION_NOT_INITIALIZED,
          "C_Encrypt after C_Encrypt(pulEncryptedDataLen NULL) -> ARGUMENTS_BAD returned %s, "
          "expected CKR_OPERATION_NOT_INITIALIZED",
          vtp_rv_name(rv));
    CHECK_RV(f->C_EncryptInit(s, &om, pub), CKR_OK);
    CHECK_RV(f->C_Encrypt(s, NULL, 16, out, &len), CKR_ARGUMENTS_BAD);
    rv = f->C_Encrypt(s, in, 16, out, &len);
    CHECK(rv == CKR_OPERATION_NOT_INITIALIZED,
          "C_Encrypt after C_Encrypt(pData NULL) -> ARGUMENTS_BAD returned %s, expected "
          "CKR_OPERATION_NOT_INITIALIZED",
          vtp_rv_name(rv));
    CHECK_RV(f->C_EncryptUpdate(s, in, 16, out, &len), CKR_FUNCTION_NOT_SUPPORTED);

    CHECK_RV(f->C_DecryptInit(s, &om, priv), CKR_OK);
    CHECK_RV(f->C_DecryptInit(s, &om, priv), CKR_OPERATION_ACTIVE);
    len = sizeof(out);
    CHECK_RV(f->C_Decrypt(s, in, 100, out, &len), CKR_ENCRYPTED_DATA_LEN_RANGE);
    CHECK_RV(f->C_Decrypt(s, in, 256, out, &len), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_DecryptInit(s, &om, priv), CKR_OK);
    CHECK_RV(f->C_Decrypt(s, in, 257, out, &len), CKR_ENCRYPTED_DATA_LEN_RANGE);
    CHECK_RV(f->C_DecryptInit(s, &om, priv), CKR_OK);
    len = sizeof(out);
    CHECK_RV(f->C_Decrypt(s, in, 256, out, &len), CKR_ENCRYPTED_DATA_INVALID);
    CHECK_RV(f->C_DecryptInit(s, &om, priv), CKR_OK);
    CHECK_RV(f->C_Decrypt(s, in, 256, out, NULL), CKR_ARGUMENTS_BAD);
    rv = f->C_Decrypt(s, in, 256, out, &len);
    CHECK(rv == CKR_OPERATION_NOT_INITIALIZED,
          "C_Decrypt after C_Decrypt(pulDataLen NULL) -> ARGUMENTS_BAD returned %s, expected "
          "CKR_OPERATION_NOT_INITIALIZED (5.9: C_Decrypt always terminates)",
          vtp_rv_name(rv));
    CHECK_RV(f->C_DecryptUpdate(s, in, 16, out, &len), CKR_FUNCTION_NOT_SUPPORTED);

    /* A retry after CKR_BUFFER_TOO_SMALL with another ciphertext decrypts that one: the
     * plaintext kept for the retry belongs to the first (it was returned for both). */
    {
        unsigned char ct1[256], ct2[256];
        CK_ULONG l1 = sizeof(ct1), l2 = sizeof(ct2);
        CHECK_RV(f->C_EncryptInit(s, &om, pub), CKR_OK);
        CHECK_RV(f->C_Encrypt(s, (CK_BYTE_PTR) "first secret", 12, ct1, &l1), CKR_OK);
        CHECK_RV(f->C_EncryptInit(s, &om, pub), CKR_OK);
        CHECK_RV(f->C_Encrypt(s, (CK_BYTE_PTR) "other text!!", 12, ct2, &l2), CKR_OK);
        CHECK_RV(f->C_DecryptInit(s, &om, priv), CKR_OK);
        len = 4;
        CHECK_RV(f->C_Decrypt(s, ct1, l1, out, &len), CKR_BUFFER_TOO_SMALL);
        len = sizeof(out);
        CHECK_RV(f->C_Decrypt(s, ct2, l2, out, &len), CKR_OK);
        CHECK(len == 12 && memcmp(out, "other text!!", 12) == 0,
              "C_Decrypt retried with another ciphertext returned the first one's plaintext");
    }
    /* sLen (CK_ULONG)-1, -2 and -3 are OpenSSL's salt length codes, which libp11's engine
     * passes through: -1 signs with the digest length (it used to reach Transit as "not sent",
     * which Transit reads as the largest salt), -2 and -3 with the largest. A verification
     * that names the exact length checks each signature. */
    {
        const CK_ULONG want[3] = {32, 256 - 2 - 32, 256 - 2 - 32};
        unsigned char digest[32], psig[256];
        memset(digest, 0x5a, sizeof(digest));
        for (CK_ULONG neg = 1; neg <= 3; neg++) {
            CK_RSA_PKCS_PSS_PARAMS code = {CKM_SHA256, CKG_MGF1_SHA256, (CK_ULONG)0 - neg};
            CK_RSA_PKCS_PSS_PARAMS exact = {CKM_SHA256, CKG_MGF1_SHA256, want[neg - 1]};
            CK_ULONG plen = sizeof(psig);
            CHECK_RV(f->C_SignInit(s, &(CK_MECHANISM){CKM_RSA_PKCS_PSS, &code, sizeof(code)}, priv),
                     CKR_OK);
            CHECK_RV(f->C_Sign(s, digest, sizeof(digest), psig, &plen), CKR_OK);
            CHECK_RV(f->C_VerifyInit(s, &(CK_MECHANISM){CKM_RSA_PKCS_PSS, &exact, sizeof(exact)},
                                     pub),
                     CKR_OK);
            rv = f->C_Verify(s, digest, sizeof(digest), psig, plen);
            CHECK(rv == CKR_OK, "PSS sLen (CK_ULONG)-%lu: the signature does not have a salt of %lu "
                                "bytes (%s)",
                  neg, want[neg - 1], vtp_rv_name(rv));
        }
        CK_RSA_PKCS_PSS_PARAMS big = {CKM_SHA256, CKG_MGF1_SHA256, (CK_ULONG)0 - 4};
        CHECK_RV(f->C_SignInit(s, &(CK_MECHANISM){CKM_RSA_PKCS_PSS, &big, sizeof(big)}, priv),
                 CKR_MECHANISM_PARAM_INVALID);
    }
}

static void digest_random(CK_SESSION_HANDLE s)
{
    CK_MECHANISM d = {CKM_SHA256, NULL, 0};
    unsigned char out[64], in[64];
    CK_ULONG len = sizeof(out);
    CK_RV rv;

    memset(in, 7, sizeof(in));
    CHECK_RV(f->C_Digest(s, in, 4, out, &len), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_DigestUpdate(s, in, 4), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_DigestFinal(s, out, &len), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_DigestInit(s, NULL), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_DigestInit(s, &(CK_MECHANISM){BAD_MECH, NULL, 0}), CKR_MECHANISM_INVALID);
    CHECK_RV(f->C_DigestInit(s, &(CK_MECHANISM){CKM_ECDSA_SHA256, NULL, 0}),
             CKR_MECHANISM_INVALID);
    CHECK_RV(f->C_DigestInit(s, &(CK_MECHANISM){CKM_SHA256, in, 4}), CKR_MECHANISM_PARAM_INVALID);
    CHECK_RV(f->C_DigestInit(s, &d), CKR_OK);
    CHECK_RV(f->C_DigestInit(s, &d), CKR_OPERATION_ACTIVE);
    len = 4;
    CHECK_RV(f->C_Digest(s, in, 4, out, &len), CKR_BUFFER_TOO_SMALL);
    CHECK(len == 32, "digest BUFFER_TOO_SMALL length %lu", len);
    CHECK_RV(f->C_Digest(s, in, 4, out, NULL), CKR_ARGUMENTS_BAD);
    /* 5.10 C_Digest: always terminates unless BUFFER_TOO_SMALL or a length question */
    len = sizeof(out);
    rv = f->C_Digest(s, in, 4, out, &len);
    CHECK(rv == CKR_OPERATION_NOT_INITIALIZED,
          "C_Digest after C_Digest(pulDigestLen NULL) -> ARGUMENTS_BAD returned %s, expected "
          "CKR_OPERATION_NOT_INITIALIZED",
          vtp_rv_name(rv));
    (void)f->C_DigestFinal(s, out, &len);
    CHECK_RV(f->C_DigestInit(s, &d), CKR_OK);
    CHECK_RV(f->C_DigestUpdate(s, NULL, 4), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_DigestFinal(s, out, &len), CKR_OPERATION_NOT_INITIALIZED);
    CHECK_RV(f->C_DigestInit(s, &d), CKR_OK);
    CHECK_RV(f->C_DigestUpdate(s, in, 4), CKR_OK);
    CHECK_RV(f->C_DigestFinal(s, out, NULL), CKR_ARGUMENTS_BAD);
    len = sizeof(out);
    rv = f->C_DigestFinal(s, out, &len);
    CHECK(rv == CKR_OPERATION_NOT_INITIALIZED,
          "C_DigestFinal after C_DigestFinal(pulDigestLen NULL) -> ARGUMENTS_BAD returned %s, "
          "expected CKR_OPERATION_NOT_INITIALIZED (5.10: C_DigestFinal always terminates)",
          vtp_rv_name(rv));
    CHECK_RV(f->C_DigestKey(s, 1), CKR_FUNCTION_NOT_SUPPORTED);

    CHECK_RV(f->C_GenerateRandom(s, NULL, 16), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_GenerateRandom(s, out, 0), CKR_OK);
    CHECK_RV(f->C_GenerateRandom(s, NULL, 0), CKR_OK);
    CHECK_RV3(f->C_SeedRandom(s, in, 4), CKR_RANDOM_SEED_NOT_SUPPORTED, CKR_FUNCTION_NOT_SUPPORTED,
              CKR_OK);
    CHECK_RV(f->C_GetFunctionStatus(s), CKR_FUNCTION_NOT_PARALLEL);
    CHECK_RV(f->C_CancelFunction(s), CKR_FUNCTION_NOT_PARALLEL);
}

/* ---------------------------------------------------------------------------------------- */
/* C_GenerateKeyPair with garbage templates (each in its own child) */

#define EC_MECH (&(CK_MECHANISM){CKM_EC_KEY_PAIR_GEN, NULL, 0})
#define RSA_MECH (&(CK_MECHANISM){CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0})
#define EC_PARAMS_OK {CKA_EC_PARAMS, (void *)oid_p256, sizeof(oid_p256)}

static CK_RV gen(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pt, CK_ULONG pn,
                 CK_ATTRIBUTE_PTR vt, CK_ULONG vn)
{
    CK_OBJECT_HANDLE pub = 0, priv = 0;
    return f->C_GenerateKeyPair(s, m, pt, pn, vt, vn, &pub, &priv);
}

#define EXPECT_VALUE_OR_INCONSISTENT(expr)                                                         \
    CHECK_RV2(expr, CKR_ATTRIBUTE_VALUE_INVALID, CKR_TEMPLATE_INCONSISTENT)

static void kg_ec_params_0(CK_SESSION_HANDLE s)
{
    CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, (void *)oid_p256, 0}};
    EXPECT_VALUE_OR_INCONSISTENT(gen(s, EC_MECH, pt, 1, NULL, 0));
}
static void kg_ec_params_1(CK_SESSION_HANDLE s)
{
    CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, (void *)oid_p256, 1}};
    EXPECT_VALUE_OR_INCONSISTENT(gen(s, EC_MECH, pt, 1, NULL, 0));
}
static void kg_ec_params_null(CK_SESSION_HANDLE s)
{
    CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, NULL, 10}};
    EXPECT_VALUE_OR_INCONSISTENT(gen(s, EC_MECH, pt, 1, NULL, 0));
}
static void kg_ec_params_junk(CK_SESSION_HANDLE s)
{
    static const unsigned char junk[][4] = {{0x13, 0x7f, 'a', 'b'}, {0x0c, 0x03, 'P', '-'},
                                            {0x06, 0x82, 0xff, 0xff}, {0x30, 0x00, 0, 0}};
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, (void *)junk[i], 4}};
        CHECK_RV3(gen(s, EC_MECH, pt, 1, NULL, 0), CKR_ATTRIBUTE_VALUE_INVALID,
                  CKR_TEMPLATE_INCONSISTENT, CKR_CURVE_NOT_SUPPORTED);
    }
    {
        size_t n = 1024 * 1024;
        unsigned char *huge = calloc(1, n);
        huge[0] = 0x06;
        CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, huge, n}};
        CHECK_RV3(gen(s, EC_MECH, pt, 1, NULL, 0), CKR_ATTRIBUTE_VALUE_INVALID,
                  CKR_TEMPLATE_INCONSISTENT, CKR_CURVE_NOT_SUPPORTED);
        free(huge);
    }
}
static void kg_ec_params_k1(CK_SESSION_HANDLE s)
{
    CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, (void *)oid_secp256k1, sizeof(oid_secp256k1)}};
    CHECK_RV(gen(s, EC_MECH, pt, 1, NULL, 0), CKR_CURVE_NOT_SUPPORTED);
}
static void kg_label_1mb(CK_SESSION_HANDLE s)
{
    size_t n = 1024 * 1024;
    unsigned char *huge = malloc(n);
    memset(huge, 'L', n);
    CK_ATTRIBUTE pt[] = {EC_PARAMS_OK, {CKA_LABEL, huge, n}};
    CK_ATTRIBUTE vt[] = {{CKA_LABEL, huge, n}};
    EXPECT_VALUE_OR_INCONSISTENT(gen(s, EC_MECH, pt, 2, vt, 1));
    EXPECT_VALUE_OR_INCONSISTENT(gen(s, EC_MECH, pt, 2, NULL, 0));
    CK_ATTRIBUTE it[] = {EC_PARAMS_OK, {CKA_ID, huge, n}};
    EXPECT_VALUE_OR_INCONSISTENT(gen(s, EC_MECH, it, 2, NULL, 0));
    free(huge);
}
static void kg_modulus_bits(CK_SESSION_HANDLE s)
{
    CK_ULONG bits = 2048;
    unsigned int bits32 = 2048;
    CK_ULONG small = 1024, odd = 2047;
    CK_ATTRIBUTE t1[] = {{CKA_MODULUS_BITS, &bits32, sizeof(bits32)}};
    CK_ATTRIBUTE t2[] = {{CKA_MODULUS_BITS, &bits, 1}};
    CK_ATTRIBUTE t3[] = {{CKA_MODULUS_BITS, NULL, sizeof(CK_ULONG)}};
    CK_ATTRIBUTE t4[] = {{CKA_MODULUS_BITS, &bits, 0}};
    CK_ATTRIBUTE t5[] = {{CKA_MODULUS_BITS, &small, sizeof(small)}};
    CK_ATTRIBUTE t6[] = {{CKA_MODULUS_BITS, &odd, sizeof(odd)}};
    CHECK_RV(gen(s, RSA_MECH, t1, 1, NULL, 0), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(gen(s, RSA_MECH, t2, 1, NULL, 0), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(gen(s, RSA_MECH, t3, 1, NULL, 0), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(gen(s, RSA_MECH, t4, 1, NULL, 0), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV2(gen(s, RSA_MECH, t5, 1, NULL, 0), CKR_ATTRIBUTE_VALUE_INVALID, CKR_KEY_SIZE_RANGE);
    CHECK_RV2(gen(s, RSA_MECH, t6, 1, NULL, 0), CKR_ATTRIBUTE_VALUE_INVALID, CKR_KEY_SIZE_RANGE);
    CHECK_RV(gen(s, RSA_MECH, NULL, 0, NULL, 0), CKR_TEMPLATE_INCOMPLETE);
}
static void kg_public_exponent(CK_SESSION_HANDLE s)
{
    CK_ULONG bits = 2048;
    static const unsigned char e3[] = {3}, zeros[] = {0, 0, 0, 0};
    CK_ATTRIBUTE t1[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)}, {CKA_PUBLIC_EXPONENT, (void *)e3, 1}};
    CK_ATTRIBUTE t2[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)},
                         {CKA_PUBLIC_EXPONENT, (void *)zeros, sizeof(zeros)}};
    CK_ATTRIBUTE t3[] = {{CKA_MODULUS_BITS, &bits, sizeof(bits)}, {CKA_PUBLIC_EXPONENT, NULL, 3}};
    CHECK_RV2(gen(s, RSA_MECH, t1, 2, NULL, 0), CKR_ATTRIBUTE_VALUE_INVALID,
              CKR_TEMPLATE_INCONSISTENT);
    CHECK_RV2(gen(s, RSA_MECH, t2, 2, NULL, 0), CKR_ATTRIBUTE_VALUE_INVALID,
              CKR_TEMPLATE_INCONSISTENT);
    /* NULL pValue with the length of 65537 */
    CHECK_RV(gen(s, RSA_MECH, t3, 2, NULL, 0), CKR_ATTRIBUTE_VALUE_INVALID);
}
static void kg_class_mismatch(CK_SESSION_HANDLE s)
{
    CK_OBJECT_CLASS privc = CKO_PRIVATE_KEY, pubc = CKO_PUBLIC_KEY, sec = CKO_SECRET_KEY;
    CK_KEY_TYPE rsa = CKK_RSA;
    CK_ATTRIBUTE t1[] = {EC_PARAMS_OK, {CKA_CLASS, &privc, sizeof(privc)}};
    CK_ATTRIBUTE v1[] = {{CKA_CLASS, &pubc, sizeof(pubc)}};
    CK_ATTRIBUTE v2[] = {{CKA_CLASS, &sec, sizeof(sec)}};
    CK_ATTRIBUTE t3[] = {EC_PARAMS_OK, {CKA_CLASS, &pubc, 2}};
    CK_ATTRIBUTE t4[] = {EC_PARAMS_OK, {CKA_KEY_TYPE, &rsa, sizeof(rsa)}};
    CK_ATTRIBUTE t5[] = {EC_PARAMS_OK, {CKA_CLASS, NULL, sizeof(pubc)}};
    CHECK_RV(gen(s, EC_MECH, t1, 2, NULL, 0), CKR_TEMPLATE_INCONSISTENT);
    CHECK_RV(gen(s, EC_MECH, t1, 1, v1, 1), CKR_TEMPLATE_INCONSISTENT);
    CHECK_RV(gen(s, EC_MECH, t1, 1, v2, 1), CKR_TEMPLATE_INCONSISTENT);
    CHECK_RV(gen(s, EC_MECH, t3, 2, NULL, 0), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(gen(s, EC_MECH, t4, 2, NULL, 0), CKR_TEMPLATE_INCONSISTENT);
    CHECK_RV(gen(s, EC_MECH, t5, 2, NULL, 0), CKR_ATTRIBUTE_VALUE_INVALID);
}
static void kg_bools(CK_SESSION_HANDLE s)
{
    CK_ULONG four = 1;
    CK_ATTRIBUTE t1[] = {EC_PARAMS_OK, {CKA_TOKEN, &no, sizeof(no)}};
    CK_ATTRIBUTE t2[] = {EC_PARAMS_OK, {CKA_TOKEN, NULL, 0}};
    CK_ATTRIBUTE v3[] = {{CKA_SENSITIVE, &four, sizeof(four)}};
    CK_ATTRIBUTE v4[] = {{CKA_EXTRACTABLE, &yes, sizeof(yes)}};
    CK_ATTRIBUTE t5[] = {EC_PARAMS_OK, {CKA_VERIFY, NULL, 1}};
    CHECK_RV2(gen(s, EC_MECH, t1, 2, NULL, 0), CKR_ATTRIBUTE_VALUE_INVALID,
              CKR_TEMPLATE_INCONSISTENT);
    CHECK_RV(gen(s, EC_MECH, t2, 2, NULL, 0), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(gen(s, EC_MECH, t1, 1, v3, 1), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV2(gen(s, EC_MECH, t1, 1, v4, 1), CKR_ATTRIBUTE_VALUE_INVALID,
              CKR_TEMPLATE_INCONSISTENT);
    CHECK_RV(gen(s, EC_MECH, t5, 2, NULL, 0), CKR_ATTRIBUTE_VALUE_INVALID);
}
static void kg_types(CK_SESSION_HANDLE s)
{
    CK_ULONG v = 1;
    CK_ATTRIBUTE t1[] = {EC_PARAMS_OK, {BAD_ATTR, &v, sizeof(v)}};
    CK_ATTRIBUTE v2[] = {{BAD_ATTR, NULL, 0}};
    CK_ATTRIBUTE v3[] = {{CKA_LOCAL, &yes, sizeof(yes)}};
    CK_ATTRIBUTE v4[] = {{CKA_KEY_GEN_MECHANISM, &v, sizeof(v)}};
    CHECK_RV(gen(s, EC_MECH, t1, 2, NULL, 0), CKR_ATTRIBUTE_TYPE_INVALID);
    CHECK_RV(gen(s, EC_MECH, t1, 1, v2, 1), CKR_ATTRIBUTE_TYPE_INVALID);
    /* 4.1.2: "a value for a read-only attribute" is CKR_ATTRIBUTE_READ_ONLY; CKA_LOCAL and
     * CKA_KEY_GEN_MECHANISM cannot be given (Table 25, footnotes 2, 4, 6) */
    CHECK_RV(gen(s, EC_MECH, t1, 1, v3, 1), CKR_ATTRIBUTE_READ_ONLY);
    CHECK_RV(gen(s, EC_MECH, t1, 1, v4, 1), CKR_ATTRIBUTE_READ_ONLY);
}
static void kg_label_mismatch(CK_SESSION_HANDLE s)
{
    CK_ATTRIBUTE t[] = {EC_PARAMS_OK, {CKA_LABEL, "one", 3}};
    CK_ATTRIBUTE v[] = {{CKA_LABEL, "two", 3}};
    CK_ATTRIBUTE v2[] = {{CKA_LABEL, "one", 2}};
    CK_ATTRIBUTE v3[] = {{CKA_LABEL, NULL, 3}};
    CHECK_RV(gen(s, EC_MECH, t, 2, v, 1), CKR_TEMPLATE_INCONSISTENT);
    CHECK_RV(gen(s, EC_MECH, t, 2, v2, 1), CKR_TEMPLATE_INCONSISTENT);
    CHECK_RV(gen(s, EC_MECH, t, 2, v3, 1), CKR_ATTRIBUTE_VALUE_INVALID);
}
/* An empty CKA_LABEL given as {NULL, 0} is an empty label (it was strndup(NULL, 0)). */
static void kg_label_null(CK_SESSION_HANDLE s)
{
    CK_OBJECT_HANDLE pub = 0, priv = 0;
    CK_ATTRIBUTE pt[] = {EC_PARAMS_OK, {CKA_LABEL, NULL, 0}};
    CK_ATTRIBUTE vt[] = {{CKA_LABEL, NULL, 0}, {CKA_TOKEN, &yes, sizeof(yes)}};
    CK_RV rv = f->C_GenerateKeyPair(s, EC_MECH, pt, 2, vt, 2, &pub, &priv);
    CHECK(rv == CKR_OK, "C_GenerateKeyPair with CKA_LABEL {NULL, 0} returned %s", vtp_rv_name(rv));
    if (rv == CKR_OK)
        CHECK_RV(f->C_DestroyObject(s, priv), CKR_OK);
}

static void kg_args(CK_SESSION_HANDLE s)
{
    CK_OBJECT_HANDLE pub, priv;
    CK_ATTRIBUTE t[] = {EC_PARAMS_OK};
    CHECK_RV(f->C_GenerateKeyPair(s, NULL, t, 1, NULL, 0, &pub, &priv), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_GenerateKeyPair(s, EC_MECH, t, 1, NULL, 0, NULL, &priv), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_GenerateKeyPair(s, EC_MECH, t, 1, NULL, 0, &pub, NULL), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_GenerateKeyPair(s, EC_MECH, NULL, 1, NULL, 0, &pub, &priv), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_GenerateKeyPair(s, EC_MECH, t, 1, NULL, 3, &pub, &priv), CKR_ARGUMENTS_BAD);
    CHECK_RV(gen(s, &(CK_MECHANISM){CKM_ECDSA, NULL, 0}, t, 1, NULL, 0), CKR_MECHANISM_INVALID);
    CHECK_RV(gen(s, &(CK_MECHANISM){BAD_MECH, NULL, 0}, t, 1, NULL, 0), CKR_MECHANISM_INVALID);
    CHECK_RV(gen(s, &(CK_MECHANISM){CKM_EC_KEY_PAIR_GEN, t, 4}, t, 1, NULL, 0),
             CKR_MECHANISM_PARAM_INVALID);
    CHECK_RV(gen(s, EC_MECH, NULL, 0, NULL, 0), CKR_TEMPLATE_INCOMPLETE);
    CHECK_RV(f->C_GenerateKey(s, EC_MECH, t, 1, &pub), CKR_FUNCTION_NOT_SUPPORTED);
}
/* CKA_LABEL is UTF-8 of any length the token takes: a label that is not UTF-8 is refused as a
 * value; a label with a NUL byte is kept whole or refused. Neither may read past the caller's
 * buffer (ASan) or come back as CKR_HOST_MEMORY. */
static void kg_label_bytes(CK_SESSION_HANDLE s)
{
    static const unsigned char notutf8[] = {'k', 0xff, 0xfe, 'z'};
    static const unsigned char withnul[] = {'a', 'b', 0, 'c', 'd', 'e', 'f', 'g', 'h', 'i',
                                            'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's'};
    const unsigned char *labs[] = {notutf8, withnul};
    const size_t lens[] = {sizeof(notutf8), sizeof(withnul)};
    for (int i = 0; i < 2; i++) {
        CK_OBJECT_HANDLE pub = 0, priv = 0;
        CK_ATTRIBUTE pt[] = {EC_PARAMS_OK, {CKA_LABEL, (void *)labs[i], lens[i]}};
        CK_ATTRIBUTE vt[] = {{CKA_TOKEN, &yes, sizeof(yes)}};
        CK_RV rv = f->C_GenerateKeyPair(s, EC_MECH, pt, 2, vt, 1, &pub, &priv);
        CHECK(rv == CKR_OK || rv == CKR_ATTRIBUTE_VALUE_INVALID,
              "C_GenerateKeyPair(CKA_LABEL %s) returned %s, expected CKR_OK or "
              "CKR_ATTRIBUTE_VALUE_INVALID",
              i == 0 ? "not UTF-8" : "with a NUL byte", vtp_rv_name(rv));
        if (rv == CKR_OK) {
            unsigned char got[64];
            CK_ATTRIBUTE g = {CKA_LABEL, got, sizeof(got)};
            CHECK_RV(f->C_GetAttributeValue(s, priv, &g, 1), CKR_OK);
            CHECK(g.ulValueLen == lens[i] && memcmp(got, labs[i], lens[i]) == 0,
                  "generated with a %zu-byte label %s, read back %lu bytes", lens[i],
                  i == 0 ? "(not UTF-8)" : "(with a NUL)", g.ulValueLen);
            CHECK_RV(f->C_DestroyObject(s, priv), CKR_OK);
        }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* C_CreateObject with garbage certificates (each in its own child) */

static CK_RV create(CK_SESSION_HANDLE s, const unsigned char *value, CK_ULONG len,
                    CK_ATTRIBUTE *extra, CK_ULONG n_extra, CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    CK_ATTRIBUTE t[8] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)},
                         {CKA_TOKEN, &yes, sizeof(yes)},
                         {CKA_VALUE, (void *)value, len}};
    CK_ULONG n = 4;
    CK_OBJECT_HANDLE h = 0;

    for (CK_ULONG i = 0; i < n_extra && n < 8; i++)
        t[n++] = extra[i];
    return f->C_CreateObject(s, t, n, out ? out : &h);
}

static void co_garbage_der(CK_SESSION_HANDLE s)
{
    static const unsigned char one[] = {0x30};
    static const unsigned char longlen[] = {0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x02, 0x01};
    static const unsigned char indef[] = {0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00};
    unsigned char rnd[300];
    unsigned char *trail = malloc((size_t)cert_len + 1);
    size_t bign = 2 * 1024 * 1024;
    unsigned char *big = malloc(bign);

    for (size_t i = 0; i < sizeof(rnd); i++)
        rnd[i] = (unsigned char)(i * 37 + 11);
    memcpy(trail, cert_der, (size_t)cert_len);
    trail[cert_len] = 0;
    memset(big, 0x30, bign);
    CHECK_RV(create(s, one, sizeof(one), NULL, 0, NULL), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(create(s, longlen, sizeof(longlen), NULL, 0, NULL), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(create(s, indef, sizeof(indef), NULL, 0, NULL), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(create(s, rnd, sizeof(rnd), NULL, 0, NULL), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(create(s, cert_der, (CK_ULONG)cert_len - 1, NULL, 0, NULL),
             CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(create(s, cert_der, (CK_ULONG)cert_len / 2, NULL, 0, NULL),
             CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(create(s, trail, (CK_ULONG)cert_len + 1, NULL, 0, NULL), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(create(s, big, bign, NULL, 0, NULL), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(create(s, NULL, 100, NULL, 0, NULL), CKR_ATTRIBUTE_VALUE_INVALID);
    free(trail);
    free(big);
}
static void co_garbage_attrs(CK_SESSION_HANDLE s)
{
    CK_OBJECT_CLASS data = CKO_DATA, cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE wtls = CKC_WTLS;
    CK_OBJECT_HANDLE o;
    CK_ULONG v = 1;
    CK_ATTRIBUTE e1[] = {{CKA_SUBJECT, NULL, 5}};
    CK_ATTRIBUTE e2[] = {{BAD_ATTR, &v, sizeof(v)}};
    CK_ATTRIBUTE e3[] = {{CKA_TOKEN, &no, sizeof(no)}};
    CK_ATTRIBUTE e4[] = {{CKA_LABEL, NULL, 7}};
    CK_ATTRIBUTE e5[] = {{CKA_ID, NULL, 7}};
    CK_ATTRIBUTE e6[] = {{CKA_PRIVATE, &yes, 4}};
    CK_ATTRIBUTE c1[] = {{CKA_CLASS, &data, sizeof(data)}, {CKA_VALUE, cert_der, cert_len}};
    CK_ATTRIBUTE c2[] = {{CKA_CLASS, &cls, 3}, {CKA_VALUE, cert_der, cert_len}};
    CK_ATTRIBUTE c3[] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_CERTIFICATE_TYPE, &wtls, sizeof(wtls)},
                         {CKA_VALUE, cert_der, cert_len}};
    CK_ATTRIBUTE c4[] = {{CKA_CLASS, &cls, sizeof(cls)}};
    CK_ATTRIBUTE c5[] = {{CKA_VALUE, cert_der, cert_len}};

    CHECK_RV(f->C_CreateObject(s, NULL, 2, &o), CKR_ARGUMENTS_BAD);
    CHECK_RV(f->C_CreateObject(s, c1, 2, NULL), CKR_ARGUMENTS_BAD);
    CHECK_RV2(f->C_CreateObject(s, c1, 2, &o), CKR_ATTRIBUTE_VALUE_INVALID,
              CKR_TEMPLATE_INCONSISTENT);
    CHECK_RV(f->C_CreateObject(s, c2, 2, &o), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV2(f->C_CreateObject(s, c3, 3, &o), CKR_ATTRIBUTE_VALUE_INVALID,
              CKR_TEMPLATE_INCONSISTENT);
    CHECK_RV(f->C_CreateObject(s, c4, 1, &o), CKR_TEMPLATE_INCOMPLETE);
    CHECK_RV(f->C_CreateObject(s, c5, 1, &o), CKR_TEMPLATE_INCOMPLETE);
    CHECK_RV(f->C_CreateObject(s, NULL, 0, &o), CKR_TEMPLATE_INCOMPLETE);
    CHECK_RV(create(s, cert_der, cert_len, e1, 1, NULL), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(create(s, cert_der, cert_len, e2, 1, NULL), CKR_ATTRIBUTE_TYPE_INVALID);
    CHECK_RV2(create(s, cert_der, cert_len, e3, 1, NULL), CKR_ATTRIBUTE_VALUE_INVALID,
              CKR_TEMPLATE_INCONSISTENT);
    CHECK_RV(create(s, cert_der, cert_len, e4, 1, NULL), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(create(s, cert_der, cert_len, e5, 1, NULL), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(create(s, cert_der, cert_len, e6, 1, NULL), CKR_ATTRIBUTE_VALUE_INVALID);
}
/* Attributes a template gives are honoured or refused, never dropped: a date, a narrower
 * CKA_ALLOWED_MECHANISMS, CKA_DESTROYABLE = FALSE (allow_destroy = true) and CKA_COPYABLE =
 * TRUE at generation, and a certificate's category or date. Before 2026-12-01 each was accepted
 * and the object showed something else. */
static void kg_not_dropped(CK_SESSION_HANDLE s)
{
    CK_DATE d = {{'2', '0', '3', '0'}, {'0', '1'}, {'0', '2'}};
    CK_MECHANISM_TYPE one = CKM_ECDSA;
    CK_ULONG cat = 2;
    CK_ATTRIBUTE tok = {CKA_TOKEN, &yes, sizeof(yes)};
    CK_ATTRIBUTE v1[] = {tok, {CKA_START_DATE, &d, sizeof(d)}};
    CK_ATTRIBUTE v2[] = {tok, {CKA_ALLOWED_MECHANISMS, &one, sizeof(one)}};
    CK_ATTRIBUTE v3[] = {tok, {CKA_DESTROYABLE, &no, sizeof(no)}};
    CK_ATTRIBUTE v4[] = {tok, {CKA_COPYABLE, &yes, sizeof(yes)}};
    CK_ATTRIBUTE v5[] = {tok, {CKA_START_DATE, NULL, 0}, {CKA_DESTROYABLE, &yes, sizeof(yes)}};
    CK_ATTRIBUTE t[] = {EC_PARAMS_OK};
    CK_ATTRIBUTE c1[] = {{CKA_CERTIFICATE_CATEGORY, &cat, sizeof(cat)}};
    CK_ATTRIBUTE c2[] = {{CKA_END_DATE, &d, sizeof(d)}};
    CK_OBJECT_HANDLE pub = 0, priv = 0;
    CK_RV rv;

    CHECK_RV(gen(s, EC_MECH, t, 1, v1, 2), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(gen(s, EC_MECH, t, 1, v2, 2), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(gen(s, EC_MECH, t, 1, v3, 2), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(gen(s, EC_MECH, t, 1, v4, 2), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(create(s, cert_der, cert_len, c1, 1, NULL), CKR_ATTRIBUTE_VALUE_INVALID);
    CHECK_RV(create(s, cert_der, cert_len, c2, 1, NULL), CKR_ATTRIBUTE_VALUE_INVALID);
    /* the values the key has are accepted */
    rv = f->C_GenerateKeyPair(s, EC_MECH, t, 1, v5, 3, &pub, &priv);
    CHECK(rv == CKR_OK, "C_GenerateKeyPair with an empty date and CKA_DESTROYABLE TRUE: %s",
          vtp_rv_name(rv));
    if (rv == CKR_OK)
        CHECK_RV(f->C_DestroyObject(s, priv), CKR_OK);
}
/* The same label rules as for keys; a good certificate works and its handle is no key. */
static void co_labels_and_use(CK_SESSION_HANDLE s)
{
    static const unsigned char notutf8[] = {'c', 0xff, 0xfe, 'z'};
    CK_ATTRIBUTE e1[] = {{CKA_LABEL, (void *)notutf8, sizeof(notutf8)}};
    CK_OBJECT_HANDLE o = 0;
    CK_RV rv = create(s, cert_der, cert_len, e1, 1, &o);
    CHECK(rv == CKR_OK || rv == CKR_ATTRIBUTE_VALUE_INVALID,
          "C_CreateObject(certificate, CKA_LABEL not UTF-8) returned %s, expected CKR_OK or "
          "CKR_ATTRIBUTE_VALUE_INVALID",
          vtp_rv_name(rv));
    if (rv == CKR_OK)
        CHECK_RV(f->C_DestroyObject(s, o), CKR_OK);
    {
        size_t n = 1024 * 1024;
        unsigned char *huge = malloc(n);
        memset(huge, 'L', n);
        CK_ATTRIBUTE e2[] = {{CKA_LABEL, huge, n}};
        rv = create(s, cert_der, cert_len, e2, 1, &o);
        CHECK(rv == CKR_OK || rv == CKR_ATTRIBUTE_VALUE_INVALID,
              "C_CreateObject(certificate, 1 MB CKA_LABEL) returned %s", vtp_rv_name(rv));
        if (rv == CKR_OK)
            CHECK_RV(f->C_DestroyObject(s, o), CKR_OK);
        free(huge);
    }
    REQUIRE_RV(create(s, cert_der, cert_len, NULL, 0, &o), CKR_OK);
    {
        CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
        CK_RSA_PKCS_OAEP_PARAMS op = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0};
        CK_MECHANISM om = {CKM_RSA_PKCS_OAEP, &op, sizeof(op)};
        unsigned char buf[8];
        CK_ATTRIBUTE a[] = {{CKA_MODULUS, buf, sizeof(buf)}, {CKA_VALUE, buf, 4}};
        CHECK_RV(f->C_SignInit(s, &m, o), CKR_KEY_HANDLE_INVALID);
        CHECK_RV(f->C_VerifyInit(s, &m, o), CKR_KEY_HANDLE_INVALID);
        CHECK_RV(f->C_EncryptInit(s, &om, o), CKR_KEY_HANDLE_INVALID);
        CHECK_RV3(f->C_GetAttributeValue(s, o, a, 2), CKR_ATTRIBUTE_TYPE_INVALID,
                  CKR_BUFFER_TOO_SMALL, CKR_BUFFER_TOO_SMALL);
        CHECK(a[0].ulValueLen == CK_UNAVAILABLE_INFORMATION &&
                  a[1].ulValueLen == CK_UNAVAILABLE_INFORMATION,
              "certificate attribute errors: %lu %lu", a[0].ulValueLen, a[1].ulValueLen);
    }
    CHECK_RV(f->C_DestroyObject(s, o), CKR_OK);
    CHECK_RV(f->C_DestroyObject(s, o), CKR_OBJECT_HANDLE_INVALID);
}

/* ---------------------------------------------------------------------------------------- */
/* read-only sessions cannot change token objects */

static void read_only(CK_OBJECT_HANDLE priv)
{
    CK_SESSION_HANDLE ro;
    CK_OBJECT_HANDLE o, pub2, priv2;
    CK_ATTRIBUTE l[] = {{CKA_LABEL, "ro", 2}};

    REQUIRE_RV(f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro), CKR_OK);
    CHECK_RV(create(ro, cert_der, cert_len, NULL, 0, &o), CKR_SESSION_READ_ONLY);
    CHECK_RV(f->C_DestroyObject(ro, priv), CKR_SESSION_READ_ONLY);
    CHECK_RV(f->C_SetAttributeValue(ro, priv, l, 1), CKR_SESSION_READ_ONLY);
    CHECK_RV(gen_ec(ro, "ro-key", &pub2, &priv2), CKR_SESSION_READ_ONLY);
    CHECK_RV(f->C_CloseSession(ro), CKR_OK);
}

/* ---------------------------------------------------------------------------------------- */
/* PKCS#11 3.0 interface discovery */

static void interfaces(void)
{
    CK_INTERFACE list[4];
    CK_INTERFACE_PTR ip = NULL;
    CK_ULONG n = 0;
    CK_VERSION v240 = {2, 40}, v30 = {3, 0}, v11 = {1, 1};

    CHECK_RV(C_GetInterfaceList(NULL, NULL), CKR_ARGUMENTS_BAD);
    CHECK_RV(C_GetInterfaceList(list, NULL), CKR_ARGUMENTS_BAD);
    CHECK_RV(C_GetInterfaceList(list, &n), CKR_BUFFER_TOO_SMALL);
    CHECK(n >= 1, "interface count %lu", n);
    n = 4;
    CHECK_RV(C_GetInterfaceList(list, &n), CKR_OK);
    CHECK_RV(C_GetInterface(NULL, NULL, NULL, 0), CKR_ARGUMENTS_BAD);
    CHECK_RV(C_GetInterface((CK_UTF8CHAR_PTR) "PKCS 11", NULL, NULL, 0), CKR_ARGUMENTS_BAD);
    CHECK_RV(C_GetInterface((CK_UTF8CHAR_PTR) "Vendor XYZ", NULL, &ip, 0), CKR_ARGUMENTS_BAD);
    CHECK_RV(C_GetInterface((CK_UTF8CHAR_PTR) "", NULL, &ip, 0), CKR_ARGUMENTS_BAD);
    CHECK_RV(C_GetInterface((CK_UTF8CHAR_PTR) "PKCS 11 ", NULL, &ip, 0), CKR_ARGUMENTS_BAD);
    CHECK_RV(C_GetInterface((CK_UTF8CHAR_PTR) "PKCS 11", &v11, &ip, 0), CKR_ARGUMENTS_BAD);
    CHECK_RV(C_GetInterface((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &ip, 0), CKR_ARGUMENTS_BAD);
    CHECK_RV(C_GetInterface((CK_UTF8CHAR_PTR) "PKCS 11", &v240, &ip, 0xff), CKR_ARGUMENTS_BAD);
    ip = NULL;
    CHECK_RV(C_GetInterface((CK_UTF8CHAR_PTR) "PKCS 11", &v240, &ip, 0), CKR_OK);
    CHECK(ip != NULL && ip->pFunctionList == (void *)f, "interface is the function list");
    ip = NULL;
    CHECK_RV(C_GetInterface(NULL, NULL, &ip, 0), CKR_OK);
    CHECK(ip != NULL, "default interface");
}

/* ---------------------------------------------------------------------------------------- */
/* threads against C_CloseAllSessions */

struct race_arg {
    CK_OBJECT_HANDLE priv;
    int rounds;
    int signed_ok, closed_seen, bad;
};

static int race_finished;

static bool gone(CK_RV rv)
{
    return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED;
}

static void *race_thread(void *p)
{
    struct race_arg *a = p;
    CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};

    for (int i = 0; i < a->rounds; i++) {
        CK_SESSION_HANDLE h;
        CK_SESSION_INFO si;
        unsigned char sig[64];
        CK_ULONG len = sizeof(sig);
        CK_RV rv = f->C_OpenSession(slot, RW, NULL, NULL, &h);
        if (rv != CKR_OK) {
            fprintf(stderr, "FAIL race: C_OpenSession returned %s\n", vtp_rv_name(rv));
            a->bad++;
            continue;
        }
        /* a few cheap calls first, so that C_CloseAllSessions often lands between them */
        for (int j = 0; j < 4; j++) {
            CK_OBJECT_HANDLE o[4];
            CK_ULONG n = 0;
            rv = f->C_GetSessionInfo(h, &si);
            if (rv == CKR_OK)
                rv = f->C_FindObjectsInit(h, NULL, 0);
            if (rv == CKR_OK)
                rv = f->C_FindObjects(h, o, 4, &n);
            if (rv == CKR_OK)
                rv = f->C_FindObjectsFinal(h);
            if (gone(rv)) {
                a->closed_seen++;
            } else if (rv != CKR_OK) {
                fprintf(stderr, "FAIL race: session call returned %s\n", vtp_rv_name(rv));
                a->bad++;
            }
        }
        rv = f->C_SignInit(h, &m, a->priv);
        if (rv == CKR_OK)
            rv = f->C_Sign(h, (CK_BYTE_PTR)message, sizeof(message), sig, &len);
        if (rv == CKR_OK) {
            a->signed_ok++;
        } else if (gone(rv)) {
            a->closed_seen++;
        } else {
            fprintf(stderr, "FAIL race: C_SignInit/C_Sign returned %s\n", vtp_rv_name(rv));
            a->bad++;
        }
        rv = f->C_CloseSession(h);
        if (rv != CKR_OK && !gone(rv)) {
            fprintf(stderr, "FAIL race: C_CloseSession returned %s\n", vtp_rv_name(rv));
            a->bad++;
        }
        rv = f->C_CloseSession(h);
        if (!gone(rv)) {
            fprintf(stderr, "FAIL race: second C_CloseSession returned %s\n", vtp_rv_name(rv));
            a->bad++;
        }
    }
    __atomic_add_fetch(&race_finished, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void close_all_race(CK_OBJECT_HANDLE priv)
{
    pthread_t th[8];
    struct race_arg ra[8];
    int done_threads = 0, calls = 0, ok = 0, closed = 0, bad = 0;

    for (int i = 0; i < 8; i++) {
        ra[i] = (struct race_arg){priv, 40, 0, 0, 0};
        pthread_create(&th[i], NULL, race_thread, &ra[i]);
    }
    /* close everything over and over while they work */
    while (__atomic_load_n(&race_finished, __ATOMIC_ACQUIRE) < 8) {
        CK_RV rv = f->C_CloseAllSessions(slot);
        calls++;
        if (rv != CKR_OK) {
            CHECK_RV(rv, CKR_OK);
            break;
        }
        usleep(200);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        done_threads++;
        ok += ra[i].signed_ok;
        closed += ra[i].closed_seen;
        bad += ra[i].bad;
    }
    p11t_checks += 8 * 40;
    p11t_failures += bad;
    CHECK(done_threads == 8, "threads joined");
    printf("close-all race: %d C_CloseAllSessions, %d signatures, %d calls on closed sessions, "
           "%d wrong answers\n",
           calls, ok, closed, bad);
    CHECK_RV(f->C_CloseAllSessions(slot), CKR_OK);
}

/* ---------------------------------------------------------------------------------------- */

int main(void)
{
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE ecpub = 0, ecpriv = 0, edpub = 0, edpriv = 0, rsapub = 0, rsapriv = 0;

    REQUIRE_RV(C_GetFunctionList(&f), CKR_OK);
    cert_der = make_cert(&cert_len);
    REQUIRE_RV(cert_der != NULL && cert_len > 0 ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);

    before_initialize();
    interfaces(); /* before C_Initialize: no module state needed */
    initialize_args();
    slot_token();
    session_handles();
    login();

    REQUIRE_RV(f->C_OpenSession(slot, RW, NULL, NULL, &s), CKR_OK);
    CHECK_RV(f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4), CKR_OK);
    REQUIRE_RV(gen_ec(s, "badinput-ec", &ecpub, &ecpriv), CKR_OK);
    REQUIRE_RV(gen_ed(s, "badinput-ed", &edpub, &edpriv), CKR_OK);
    REQUIRE_RV(gen_rsa(s, "badinput-rsa", &rsapub, &rsapriv), CKR_OK);

    attributes(s, ecpub, ecpriv);
    searches(s);
    sign_verify(s, ecpub, ecpriv, edpub, edpriv);
    rsa_params(s, rsapub, rsapriv, ecpub, ecpriv);
    digest_random(s);
    read_only(ecpriv);
    interfaces();

    close_all_race(ecpriv);

    /* the sessions are gone; the module still works */
    CHECK_RV(f->C_GetSessionInfo(s, &(CK_SESSION_INFO){0}), CKR_SESSION_HANDLE_INVALID);
    REQUIRE_RV(f->C_OpenSession(slot, RW, NULL, NULL, &s), CKR_OK);
    CHECK_RV(f->C_DestroyObject(s, ecpriv), CKR_OK);
    CHECK_RV(f->C_DestroyObject(s, edpriv), CKR_OK);
    CHECK_RV(f->C_DestroyObject(s, rsapriv), CKR_OK);
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);
    CHECK_RV(f->C_GetSessionInfo(s, &(CK_SESSION_INFO){0}), CKR_CRYPTOKI_NOT_INITIALIZED);

    /* garbage templates and certificates: each case in a child of its own,
     * forked while this process has the module finalized: the child exits normally, so a
     * leak in its case is reported by LeakSanitizer in sanitizer builds */
    isolated("C_GenerateKeyPair CKA_EC_PARAMS of 0 bytes", kg_ec_params_0);
    isolated("C_GenerateKeyPair CKA_EC_PARAMS of 1 byte", kg_ec_params_1);
    isolated("C_GenerateKeyPair CKA_EC_PARAMS NULL with a length", kg_ec_params_null);
    isolated("C_GenerateKeyPair CKA_EC_PARAMS junk DER", kg_ec_params_junk);
    isolated("C_GenerateKeyPair CKA_EC_PARAMS secp256k1", kg_ec_params_k1);
    isolated("C_GenerateKeyPair 1 MB CKA_LABEL / CKA_ID", kg_label_1mb);
    isolated("C_GenerateKeyPair CKA_MODULUS_BITS", kg_modulus_bits);
    isolated("C_GenerateKeyPair CKA_PUBLIC_EXPONENT", kg_public_exponent);
    isolated("C_GenerateKeyPair CKA_CLASS / CKA_KEY_TYPE mismatch", kg_class_mismatch);
    isolated("C_GenerateKeyPair boolean attributes", kg_bools);
    isolated("C_GenerateKeyPair attribute types", kg_types);
    isolated("C_GenerateKeyPair CKA_LABEL mismatch", kg_label_mismatch);
    isolated("C_GenerateKeyPair arguments", kg_args);
    isolated("C_GenerateKeyPair CKA_LABEL {NULL, 0}", kg_label_null);
    isolated("C_GenerateKeyPair and C_CreateObject: attributes honoured or refused",
             kg_not_dropped);
    isolated("C_GenerateKeyPair CKA_LABEL bytes", kg_label_bytes);
    isolated("C_CreateObject garbage DER", co_garbage_der);
    isolated("C_CreateObject garbage attributes", co_garbage_attrs);
    isolated("C_CreateObject labels and certificate handles", co_labels_and_use);

    OPENSSL_free(cert_der);
    return p11t_summary("test-badinput");
}
