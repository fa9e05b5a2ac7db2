/* p11loop - signs again and again in one process, so that a test sees the module renew its
 * Vault token, log in again after expiry or revocation, or re-read a token file while one
 * application keeps running.
 *
 *   p11loop [-n COUNT] [-i INTERVAL_MS] [-w FILE] [-a]
 *
 * Loads $VTP_MODULE (dlopen), initialises it, opens a session on the first slot with a token,
 * logs in with $VTP_P11_PIN when that is set, takes the first EC private key and its public
 * key (same CKA_ID), then COUNT times: signs a SHA-256 digest with CKM_ECDSA and verifies the
 * signature with C_Verify. Prints one line per signature. With -w, after each signature it
 * waits until FILE exists (then deletes it) before going on: the shell test changes something
 * in Vault between two signatures. With -a, a failed signature is reported but the loop goes
 * on (the exit status still says whether all succeeded).
 * Exit status: 0 if every signature was made and verified, 1 otherwise, 99 on setup errors.
 */
#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vtp-pkcs11.h"

static CK_FUNCTION_LIST_PTR p11;

static const char *rv_name(CK_RV rv)
{
    static char buf[32];

    switch (rv) {
    case CKR_OK:
        return "CKR_OK";
    case CKR_GENERAL_ERROR:
        return "CKR_GENERAL_ERROR";
    case CKR_DEVICE_ERROR:
        return "CKR_DEVICE_ERROR";
    case CKR_USER_NOT_LOGGED_IN:
        return "CKR_USER_NOT_LOGGED_IN";
    case CKR_PIN_INCORRECT:
        return "CKR_PIN_INCORRECT";
    case CKR_ACTION_PROHIBITED:
        return "CKR_ACTION_PROHIBITED";
    case CKR_KEY_HANDLE_INVALID:
        return "CKR_KEY_HANDLE_INVALID";
    case CKR_FUNCTION_FAILED:
        return "CKR_FUNCTION_FAILED";
    default:
        snprintf(buf, sizeof(buf), "CKR_0x%08lx", (unsigned long)rv);
        return buf;
    }
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0)
        ;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int find_key(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const CK_BYTE *id, CK_ULONG id_len,
                    CK_OBJECT_HANDLE *out)
{
    CK_KEY_TYPE kt = CKK_EC;
    CK_ATTRIBUTE tmpl[3] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &kt, sizeof(kt)},
        {CKA_ID, (void *)id, id_len},
    };
    CK_ULONG n = 0;
    CK_RV rv;

    rv = p11->C_FindObjectsInit(s, tmpl, id != NULL ? 3 : 2);
    if (rv != CKR_OK) {
        fprintf(stderr, "p11loop: C_FindObjectsInit: %s\n", rv_name(rv));
        return -1;
    }
    rv = p11->C_FindObjects(s, out, 1, &n);
    p11->C_FindObjectsFinal(s);
    if (rv != CKR_OK || n != 1) {
        fprintf(stderr, "p11loop: no EC %s key found (%s)\n",
                cls == CKO_PRIVATE_KEY ? "private" : "public", rv_name(rv));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *module = getenv("VTP_MODULE"), *pin = getenv("VTP_P11_PIN");
    const char *wait_file = NULL;
    long count = 10, interval = 0, i, ok = 0, failed = 0;
    bool go_on = false;
    CK_C_GetFunctionList get_list;
    CK_SLOT_ID slots[16];
    CK_ULONG n_slots = 16, sig_len, id_len;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE priv, pub;
    CK_BYTE id[256], digest[32], sig[256];
    CK_ATTRIBUTE id_attr = {CKA_ID, id, sizeof(id)};
    CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
    double t0;
    void *dl;
    int opt;
    CK_RV rv;

    while ((opt = getopt(argc, argv, "n:i:w:a")) != -1) {
        switch (opt) {
        case 'n':
            count = strtol(optarg, NULL, 10);
            break;
        case 'i':
            interval = strtol(optarg, NULL, 10);
            break;
        case 'w':
            wait_file = optarg;
            break;
        case 'a':
            go_on = true;
            break;
        default:
            fprintf(stderr, "usage: p11loop [-n COUNT] [-i INTERVAL_MS] [-w FILE] [-a]\n");
            return 99;
        }
    }
    if (module == NULL) {
        fprintf(stderr, "p11loop: VTP_MODULE is not set\n");
        return 99;
    }
    dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        fprintf(stderr, "p11loop: dlopen %s: %s\n", module, dlerror());
        return 99;
    }
    get_list = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
    if (get_list == NULL || get_list(&p11) != CKR_OK) {
        fprintf(stderr, "p11loop: no C_GetFunctionList in %s\n", module);
        return 99;
    }
    rv = p11->C_Initialize(NULL);
    if (rv != CKR_OK) {
        fprintf(stderr, "p11loop: C_Initialize: %s\n", rv_name(rv));
        return 99;
    }
    rv = p11->C_GetSlotList(CK_TRUE, slots, &n_slots);
    if (rv != CKR_OK || n_slots == 0) {
        fprintf(stderr, "p11loop: C_GetSlotList: %s, %lu slots\n", rv_name(rv), n_slots);
        return 99;
    }
    rv = p11->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, &s);
    if (rv != CKR_OK) {
        fprintf(stderr, "p11loop: C_OpenSession: %s\n", rv_name(rv));
        return 99;
    }
    if (pin != NULL) {
        rv = p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
        if (rv != CKR_OK) {
            fprintf(stderr, "p11loop: C_Login: %s\n", rv_name(rv));
            return 99;
        }
    }
    if (find_key(s, CKO_PRIVATE_KEY, NULL, 0, &priv) != 0)
        return 99;
    rv = p11->C_GetAttributeValue(s, priv, &id_attr, 1);
    if (rv != CKR_OK) {
        fprintf(stderr, "p11loop: CKA_ID: %s\n", rv_name(rv));
        return 99;
    }
    id_len = id_attr.ulValueLen;
    if (find_key(s, CKO_PUBLIC_KEY, id, id_len, &pub) != 0)
        return 99;

    t0 = now_s();
    for (i = 0; i < count; i++) {
        memset(digest, (int)(i & 0xff), sizeof(digest));
        digest[0] = 0x5a;
        sig_len = sizeof(sig);
        rv = p11->C_SignInit(s, &mech, priv);
        if (rv == CKR_OK)
            rv = p11->C_Sign(s, digest, sizeof(digest), sig, &sig_len);
        if (rv == CKR_OK) {
            rv = p11->C_VerifyInit(s, &mech, pub);
            if (rv == CKR_OK)
                rv = p11->C_Verify(s, digest, sizeof(digest), sig, sig_len);
            if (rv != CKR_OK)
                fprintf(stderr, "p11loop: verify %ld: %s\n", i + 1, rv_name(rv));
        }
        if (rv == CKR_OK) {
            ok++;
            printf("p11loop: %.1fs signature %ld/%ld: ok\n", now_s() - t0, i + 1, count);
        } else {
            failed++;
            printf("p11loop: %.1fs signature %ld/%ld: %s\n", now_s() - t0, i + 1, count,
                   rv_name(rv));
            if (!go_on)
                break;
        }
        fflush(stdout);
        if (wait_file != NULL && i + 1 < count) {
            while (access(wait_file, F_OK) != 0)
                sleep_ms(20);
            unlink(wait_file);
        }
        if (interval > 0 && i + 1 < count)
            sleep_ms(interval);
    }
    printf("p11loop: %ld ok, %ld failed\n", ok, failed);
    p11->C_CloseSession(s);
    p11->C_Finalize(NULL);
    return failed == 0 && ok == count ? 0 : 1;
}
