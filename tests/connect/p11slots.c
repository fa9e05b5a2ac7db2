/* p11slots - two slots with auth = pin in one process: each slot's login is its own Vault
 * identity (issue 9, defect 4).
 *
 *   VTP_MODULE=... VAULT_TRANSIT_PKCS11_CONFIG=... PIN_A=... PIN_B=... p11slots
 *
 * The config has two slots, A (slot 0) and B (slot 1), each with one EC key; PIN_A may sign
 * only with A's keys and PIN_B only with B's (tests/connect/pin-slots.sh sets that up).
 *  1. log in to A; sign with A's key;
 *  2. a wrong PIN on B: CKR_PIN_INCORRECT, and A is still logged in and still signs;
 *  3. the right PIN on B: both sign, each with its own token (A with B's token would be
 *     refused by Vault);
 *  4. C_CloseAllSessions(A): a new session of A is not logged in, A's keys cannot sign,
 *     C_GenerateRandom on A does not use the dropped token; B still signs.
 * Exit status: 0 all checks passed, 1 a check failed, 99 setup error. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vtp-pkcs11.h"

static CK_FUNCTION_LIST_PTR p11;
static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            printf("ok: ");                                                                        \
        } else {                                                                                   \
            failures++;                                                                            \
            printf("FAIL: ");                                                                      \
        }                                                                                          \
        printf(__VA_ARGS__);                                                                       \
        putchar('\n');                                                                             \
    } while (0)

static CK_OBJECT_HANDLE find_key(CK_SESSION_HANDLE s)
{
    CK_OBJECT_CLASS c = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c, sizeof(c)}};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_ULONG n = 0;

    if (p11->C_FindObjectsInit(s, t, 1) != CKR_OK)
        return CK_INVALID_HANDLE;
    if (p11->C_FindObjects(s, &h, 1, &n) != CKR_OK || n != 1)
        h = CK_INVALID_HANDLE;
    p11->C_FindObjectsFinal(s);
    return h;
}

static CK_RV sign(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key)
{
    CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
    unsigned char digest[32] = {1, 2, 3}, sig[128];
    CK_ULONG len = sizeof(sig);
    CK_RV rv = p11->C_SignInit(s, &m, key);

    return rv == CKR_OK ? p11->C_Sign(s, digest, sizeof(digest), sig, &len) : rv;
}

static CK_RV login(CK_SESSION_HANDLE s, const char *pin)
{
    return p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)strlen(pin));
}

static CK_STATE state(CK_SESSION_HANDLE s)
{
    CK_SESSION_INFO info;

    return p11->C_GetSessionInfo(s, &info) == CKR_OK ? info.state : (CK_STATE)-1;
}

int main(void)
{
    const char *module = getenv("VTP_MODULE"), *pin_a = getenv("PIN_A"), *pin_b = getenv("PIN_B");
    CK_C_GetFunctionList get;
    CK_SESSION_HANDLE a, b, a2;
    CK_OBJECT_HANDLE ka, kb;
    unsigned char rnd[16];
    CK_RV rv;
    void *dl;

    if (module == NULL || pin_a == NULL || pin_b == NULL) {
        fprintf(stderr, "p11slots: set VTP_MODULE, PIN_A and PIN_B\n");
        return 99;
    }
    dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL || (*(void **)&get = dlsym(dl, "C_GetFunctionList")) == NULL ||
        get(&p11) != CKR_OK || p11->C_Initialize(NULL) != CKR_OK ||
        p11->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &a) != CKR_OK ||
        p11->C_OpenSession(1, CKF_SERIAL_SESSION, NULL, NULL, &b) != CKR_OK) {
        fprintf(stderr, "p11slots: cannot load %s or open sessions on slots 0 and 1\n", module);
        return 99;
    }

    CHECK(login(a, pin_a) == CKR_OK, "A: C_Login with A's token");
    ka = find_key(a);
    CHECK(ka != CK_INVALID_HANDLE && sign(a, ka) == CKR_OK, "A: signs");

    rv = login(b, "hvs.not-a-token");
    CHECK(rv == CKR_PIN_INCORRECT, "B: a wrong PIN gives CKR_PIN_INCORRECT (got 0x%lx)",
          (unsigned long)rv);
    CHECK(state(a) == CKS_RO_USER_FUNCTIONS, "A: still logged in after B's wrong PIN");
    rv = sign(a, ka);
    CHECK(rv == CKR_OK, "A: still signs after B's wrong PIN (got 0x%lx)", (unsigned long)rv);

    CHECK(login(b, pin_b) == CKR_OK, "B: C_Login with B's token");
    kb = find_key(b);
    rv = sign(b, kb);
    CHECK(kb != CK_INVALID_HANDLE && rv == CKR_OK, "B: signs (got 0x%lx)", (unsigned long)rv);
    rv = sign(a, ka);
    CHECK(rv == CKR_OK, "A: signs with its own token after B's login (got 0x%lx)",
          (unsigned long)rv);

    CHECK(p11->C_CloseAllSessions(0) == CKR_OK, "A: C_CloseAllSessions");
    CHECK(p11->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &a2) == CKR_OK &&
              state(a2) == CKS_RO_PUBLIC_SESSION,
          "A: a new session is not logged in");
    CHECK(find_key(a2) == CK_INVALID_HANDLE, "A: private keys are hidden again");
    rv = sign(a2, ka);
    CHECK(rv != CKR_OK, "A: the old key handle cannot sign (got 0x%lx)", (unsigned long)rv);
    rv = p11->C_GenerateRandom(a2, rnd, sizeof(rnd));
    CHECK(rv == CKR_USER_NOT_LOGGED_IN,
          "A: C_GenerateRandom after the logout uses no token (got 0x%lx)", (unsigned long)rv);
    rv = sign(b, kb);
    CHECK(rv == CKR_OK, "B: still signs after A's logout (got 0x%lx)", (unsigned long)rv);
    CHECK(p11->C_GenerateRandom(b, rnd, sizeof(rnd)) == CKR_OK, "B: C_GenerateRandom works");

    p11->C_Finalize(NULL);
    printf("p11slots: %s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
