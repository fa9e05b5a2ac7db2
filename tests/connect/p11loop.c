/* p11loop - signs again and again in one process, so that a test sees the module renew its
 * Vault token, log in again after expiry or revocation, or re-read a token file while one
 * application keeps running.
 *
 *   p11loop [-n COUNT] [-i INTERVAL_MS] [-w FILE] [-a] [-t THREADS]
 *
 * Loads $VTP_MODULE (dlopen), initialises it, opens a session on the first slot with a token,
 * logs in with $VTP_P11_PIN when that is set, takes the first EC private key and its public
 * key (same CKA_ID), then COUNT times: signs a SHA-256 digest with CKM_ECDSA and verifies the
 * signature with C_Verify. Prints one line per signature. With -w, after each signature it
 * waits until FILE exists (then deletes it) before going on: the shell test changes something
 * in Vault between two signatures. With -a, a failed signature is reported but the loop goes
 * on (the exit status still says whether all succeeded). With -t, THREADS threads (each with
 * its own session) sign COUNT times each and only failures and a summary are printed.
 * Exit status: 0 if every signature was made and verified, 1 otherwise, 99 on setup errors.
 */
#include <dlfcn.h>
#include <pthread.h>
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

struct worker {
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE priv, pub;
    long count, interval;
    const char *wait_file;
    bool go_on, verbose;
    long ok, failed;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
    CK_BYTE digest[32], sig[256];
    CK_ULONG sig_len;
    double t0 = now_s();
    long i;
    CK_RV rv;

    for (i = 0; i < w->count; i++) {
        memset(digest, (int)(i & 0xff), sizeof(digest));
        digest[0] = 0x5a;
        sig_len = sizeof(sig);
        rv = p11->C_SignInit(w->s, &mech, w->priv);
        if (rv == CKR_OK)
            rv = p11->C_Sign(w->s, digest, sizeof(digest), sig, &sig_len);
        if (rv == CKR_OK) {
            rv = p11->C_VerifyInit(w->s, &mech, w->pub);
            if (rv == CKR_OK)
                rv = p11->C_Verify(w->s, digest, sizeof(digest), sig, sig_len);
            if (rv != CKR_OK)
                fprintf(stderr, "p11loop: verify %ld: %s\n", i + 1, rv_name(rv));
        }
        if (rv == CKR_OK) {
            w->ok++;
            if (w->verbose)
                printf("p11loop: %.1fs signature %ld/%ld: ok\n", now_s() - t0, i + 1, w->count);
        } else {
            w->failed++;
            printf("p11loop: %.1fs signature %ld/%ld: %s\n", now_s() - t0, i + 1, w->count,
                   rv_name(rv));
            if (!w->go_on)
                break;
        }
        fflush(stdout);
        if (w->wait_file != NULL && i + 1 < w->count) {
            while (access(w->wait_file, F_OK) != 0)
                sleep_ms(20);
            unlink(w->wait_file);
        }
        if (w->interval > 0 && i + 1 < w->count)
            sleep_ms(w->interval);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *module = getenv("VTP_MODULE"), *pin = getenv("VTP_P11_PIN");
    const char *wait_file = NULL;
    long count = 10, interval = 0, threads = 1, ok = 0, failed = 0;
    bool go_on = false;
    CK_C_GetFunctionList get_list;
    CK_SLOT_ID slots[16];
    CK_ULONG n_slots = 16, id_len;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE priv, pub;
    CK_BYTE id[256];
    CK_ATTRIBUTE id_attr = {CKA_ID, id, sizeof(id)};
    CK_C_INITIALIZE_ARGS init_args = {0};
    void *dl;
    int opt;
    CK_RV rv;

    while ((opt = getopt(argc, argv, "n:i:w:at:")) != -1) {
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
        case 't':
            threads = strtol(optarg, NULL, 10);
            if (threads < 1 || threads > 64) {
                fprintf(stderr, "p11loop: -t takes 1 to 64\n");
                return 99;
            }
            break;
        default:
            fprintf(stderr,
                    "usage: p11loop [-n COUNT] [-i INTERVAL_MS] [-w FILE] [-a] [-t THREADS]\n");
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
    init_args.flags = CKF_OS_LOCKING_OK;
    rv = p11->C_Initialize(&init_args);
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

    if (threads <= 1) {
        struct worker w = {s, priv, pub, count, interval, wait_file, go_on, true, 0, 0};

        work(&w);
        ok = w.ok;
        failed = w.failed;
    } else {
        pthread_t tids[64];
        struct worker ws[64];
        long n;

        for (n = 0; n < threads; n++) {
            ws[n] = (struct worker){0, priv, pub, count, interval, NULL, go_on, false, 0, 0};
            rv = p11->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, &ws[n].s);
            if (rv != CKR_OK) {
                fprintf(stderr, "p11loop: C_OpenSession: %s\n", rv_name(rv));
                return 99;
            }
            if (pthread_create(&tids[n], NULL, work, &ws[n]) != 0) {
                fprintf(stderr, "p11loop: pthread_create failed\n");
                return 99;
            }
        }
        for (n = 0; n < threads; n++) {
            pthread_join(tids[n], NULL);
            ok += ws[n].ok;
            failed += ws[n].failed;
        }
        count *= threads;
    }
    printf("p11loop: %ld ok, %ld failed\n", ok, failed);
    p11->C_CloseSession(s);
    p11->C_Finalize(NULL);
    return failed == 0 && ok == count ? 0 : 1;
}
