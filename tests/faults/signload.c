/* signload.c - signing load generator for the fault tests (tests/faults/).
 *
 * Loads a PKCS#11 module by path (dlopen, as any application would), finds one EC private key
 * by label and has N threads, each with its own session, sign random messages with
 * CKM_ECDSA_SHA256 until a duration passes or a stop file appears. Every signature is checked
 * with OpenSSL against the key's CKA_PUBLIC_KEY_INFO: a CKR_OK whose signature does not verify
 * is "wrong" and must never happen.
 *
 * It prints attempted / succeeded / failed / wrong, failures per CK_RV, the longest single
 * C_SignInit + C_Sign, and the recovery time: from the fault's end (wall-clock milliseconds
 * written into a file by the scenario script) to the end of the first successful call begun
 * after it, and the longest time without any successful call (max_success_gap_ms).
 *
 * After a failed call a thread pauses PAUSE_MS (10) before the next, as an application would.
 *
 * Exit status: 0 all good; 1 usage or setup error; 2 a wrong signature or a call longer than
 * the deadline + 1 s; 3 no success after the fault ended (never recovered).
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "vtp-pkcs11.h"

#define MAX_THREADS 256
#define VTP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SLACK_MS 1000 /* a call may outlive the deadline by at most this */

struct event {
    int64_t end_ms; /* wall clock, when the call returned */
    int64_t dur_ms;
    CK_RV rv; /* CKR_OK and verified, or the failure */
};

struct worker {
    pthread_t tid;
    int index;
    struct event *ev;
    size_t n_ev, cap_ev;
    unsigned long wrong;
    CK_RV fatal; /* session could not be opened */
};

static CK_FUNCTION_LIST_PTR f;
static CK_SLOT_ID slot;
static CK_OBJECT_HANDLE key;
static EVP_PKEY *pub;
static int64_t run_until_ms;
static const char *stop_file;
static const char *ready_file;
static atomic_int n_ready;
static atomic_bool stopping;
static int n_threads = 8;
static long fail_pause_ms = 10;

static int64_t real_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *rv_name(CK_RV rv)
{
    static __thread char buf[32];

    switch (rv) {
#define N(x)                                                                                       \
    case x:                                                                                        \
        return #x
        N(CKR_OK);
        N(CKR_HOST_MEMORY);
        N(CKR_GENERAL_ERROR);
        N(CKR_FUNCTION_FAILED);
        N(CKR_ARGUMENTS_BAD);
        N(CKR_DEVICE_ERROR);
        N(CKR_DEVICE_MEMORY);
        N(CKR_DEVICE_REMOVED);
        N(CKR_FUNCTION_CANCELED);
        N(CKR_KEY_HANDLE_INVALID);
        N(CKR_OBJECT_HANDLE_INVALID);
        N(CKR_OPERATION_ACTIVE);
        N(CKR_OPERATION_NOT_INITIALIZED);
        N(CKR_SESSION_HANDLE_INVALID);
        N(CKR_TOKEN_NOT_PRESENT);
        N(CKR_USER_NOT_LOGGED_IN);
        N(CKR_ACTION_PROHIBITED);
        N(CKR_DATA_LEN_RANGE);
        N(CKR_MECHANISM_INVALID);
        N(CKR_BUFFER_TOO_SMALL);
        N(CKR_CRYPTOKI_NOT_INITIALIZED);
#undef N
    default:
        snprintf(buf, sizeof(buf), "CKR_0x%lx", (unsigned long)rv);
        return buf;
    }
}

static bool read_ms_file(const char *path, int64_t *out)
{
    FILE *fp;
    long long v;
    bool ok;

    if (path == NULL || (fp = fopen(path, "r")) == NULL)
        return false;
    ok = fscanf(fp, "%lld", &v) == 1;
    fclose(fp);
    if (ok)
        *out = v;
    return ok;
}

static bool touch(const char *path)
{
    FILE *fp = fopen(path, "w");

    if (fp == NULL)
        return false;
    fputs("ready\n", fp);
    return fclose(fp) == 0;
}

/* r || s (PKCS#11) against SHA-256(msg) with OpenSSL. */
static bool verify(const unsigned char *msg, size_t msg_len, const unsigned char *sig,
                   size_t sig_len)
{
    EVP_MD_CTX *ctx = NULL;
    ECDSA_SIG *es = NULL;
    BIGNUM *r = NULL, *s = NULL;
    unsigned char *der = NULL;
    int der_len;
    bool ok = false;

    if (sig_len == 0 || sig_len % 2 != 0 || sig_len > 132)
        return false;
    es = ECDSA_SIG_new();
    r = BN_bin2bn(sig, (int)sig_len / 2, NULL);
    s = BN_bin2bn(sig + sig_len / 2, (int)sig_len / 2, NULL);
    if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1)
        goto out;
    r = s = NULL;
    der_len = i2d_ECDSA_SIG(es, &der);
    if (der_len <= 0)
        goto out;
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub) != 1)
        goto out;
    ok = EVP_DigestVerify(ctx, der, (size_t)der_len, msg, msg_len) == 1;
out:
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return ok;
}

static bool should_stop(void)
{
    if (atomic_load(&stopping))
        return true;
    if (real_ms() >= run_until_ms || (stop_file != NULL && access(stop_file, F_OK) == 0)) {
        atomic_store(&stopping, true);
        return true;
    }
    return false;
}

static void record(struct worker *w, int64_t end, int64_t dur, CK_RV rv)
{
    if (w->n_ev == w->cap_ev) {
        size_t cap = w->cap_ev ? w->cap_ev * 2 : 4096;
        struct event *n = realloc(w->ev, cap * sizeof(*n));

        if (n == NULL) {
            fprintf(stderr, "signload: out of memory\n");
            exit(1);
        }
        w->ev = n;
        w->cap_ev = cap;
    }
    w->ev[w->n_ev++] = (struct event){end, dur, rv};
}

static void *work(void *arg)
{
    struct worker *w = arg;
    CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
    CK_SESSION_HANDLE s;
    unsigned char msg[48], sig[256];
    bool first = true;
    CK_RV rv;

    rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
    if (rv != CKR_OK) {
        w->fatal = rv;
        return NULL;
    }
    while (!should_stop()) {
        CK_ULONG sig_len = sizeof(sig);
        int64_t t0 = mono_ms(), t1;

        if (RAND_bytes(msg, sizeof(msg)) != 1)
            memset(msg, w->index, sizeof(msg));
        rv = f->C_SignInit(s, &m, key);
        if (rv == CKR_OK)
            rv = f->C_Sign(s, msg, sizeof(msg), sig, &sig_len);
        t1 = mono_ms();
        if (rv == CKR_OK && !verify(msg, sizeof(msg), sig, sig_len)) {
            w->wrong++;
            fprintf(stderr, "signload: thread %d: WRONG signature (CKR_OK, %lu bytes)\n", w->index,
                    (unsigned long)sig_len);
        }
        record(w, real_ms(), t1 - t0, rv);
        if (rv != CKR_OK && fail_pause_ms > 0) {
            /* as an application would: do not spin on a module that fails fast */
            struct timespec ts = {fail_pause_ms / 1000, (fail_pause_ms % 1000) * 1000000L};

            nanosleep(&ts, NULL);
        }
        if (rv == CKR_OK && first) {
            first = false;
            if (atomic_fetch_add(&n_ready, 1) + 1 == n_threads && ready_file != NULL)
                touch(ready_file);
        }
    }
    f->C_CloseSession(s);
    return NULL;
}

static CK_RV find_key(const char *label)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = CKK_EC;
    CK_ATTRIBUTE t[3] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)}};
    CK_ULONG nt = 2, found = 0;
    CK_SESSION_HANDLE s;
    unsigned char spki[1024];
    CK_ATTRIBUTE a = {CKA_PUBLIC_KEY_INFO, spki, sizeof(spki)};
    const unsigned char *p = spki;
    CK_RV rv;

    if (label != NULL)
        t[nt++] = (CK_ATTRIBUTE){CKA_LABEL, (void *)label, strlen(label)};
    rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
    if (rv != CKR_OK)
        return rv;
    rv = f->C_FindObjectsInit(s, t, nt);
    if (rv == CKR_OK) {
        rv = f->C_FindObjects(s, &key, 1, &found);
        f->C_FindObjectsFinal(s);
    }
    if (rv == CKR_OK && found != 1) {
        fprintf(stderr, "signload: no EC private key%s%s\n", label ? " labelled " : "",
                label ? label : "");
        rv = CKR_KEY_HANDLE_INVALID;
    }
    if (rv == CKR_OK)
        rv = f->C_GetAttributeValue(s, key, &a, 1);
    if (rv == CKR_OK) {
        pub = d2i_PUBKEY(NULL, &p, (long)a.ulValueLen);
        if (pub == NULL) {
            fprintf(stderr, "signload: CKA_PUBLIC_KEY_INFO does not parse\n");
            rv = CKR_FUNCTION_FAILED;
        }
    }
    f->C_CloseSession(s);
    return rv;
}

static int cmp_end(const void *a, const void *b)
{
    const struct event *x = a, *y = b;

    return (x->end_ms > y->end_ms) - (x->end_ms < y->end_ms);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: signload -m MODULE [-l LABEL] [-t THREADS] [-d SECONDS] [-s STOP_FILE]\n"
            "                [-r READY_FILE] [-e FAULT_END_FILE] [-T DEADLINE_MS] [-b PAUSE_MS]\n");
    exit(1);
}

int main(int argc, char **argv)
{
    CK_C_INITIALIZE_ARGS init = {NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL};
    CK_C_GetFunctionList get_list;
    CK_SLOT_ID slots[16];
    CK_ULONG n_slots = 16;
    const char *module = NULL, *label = NULL, *end_file = NULL;
    long deadline_ms = 0;
    double seconds = 10;
    struct worker *w;
    struct event *all;
    unsigned long attempted = 0, ok = 0, failed = 0, wrong = 0;
    int64_t t_start, max_dur = 0, fault_end = 0, recovery = -1, max_gap = 0, last_ok = 0;
    int64_t last_fail_after = -1;
    size_t total = 0, k;
    struct {
        CK_RV rv;
        unsigned long n;
    } per_rv[32];
    size_t n_per_rv = 0;
    void *dl;
    int opt, rc = 0, i;
    CK_RV rv;

    while ((opt = getopt(argc, argv, "m:l:t:d:s:r:e:T:b:")) != -1) {
        switch (opt) {
        case 'm':
            module = optarg;
            break;
        case 'l':
            label = optarg;
            break;
        case 't':
            n_threads = atoi(optarg);
            break;
        case 'd':
            seconds = atof(optarg);
            break;
        case 's':
            stop_file = optarg;
            break;
        case 'r':
            ready_file = optarg;
            break;
        case 'e':
            end_file = optarg;
            break;
        case 'T':
            deadline_ms = atol(optarg);
            break;
        case 'b':
            fail_pause_ms = atol(optarg);
            break;
        default:
            usage();
        }
    }
    if (module == NULL || n_threads < 1 || n_threads > MAX_THREADS || seconds <= 0)
        usage();

    dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        fprintf(stderr, "signload: dlopen %s: %s\n", module, dlerror());
        return 1;
    }
    *(void **)&get_list = dlsym(dl, "C_GetFunctionList");
    if (get_list == NULL || get_list(&f) != CKR_OK) {
        fprintf(stderr, "signload: no usable C_GetFunctionList in %s\n", module);
        return 1;
    }
    rv = f->C_Initialize(&init);
    if (rv == CKR_OK)
        rv = f->C_GetSlotList(CK_TRUE, slots, &n_slots);
    if (rv == CKR_OK && n_slots == 0)
        rv = CKR_TOKEN_NOT_PRESENT;
    if (rv != CKR_OK) {
        fprintf(stderr, "signload: C_Initialize/C_GetSlotList: %s\n", rv_name(rv));
        return 1;
    }
    slot = slots[0];
    rv = find_key(label);
    if (rv != CKR_OK) {
        fprintf(stderr, "signload: finding the key: %s\n", rv_name(rv));
        return 1;
    }

    w = calloc((size_t)n_threads, sizeof(*w));
    if (w == NULL)
        return 1;
    t_start = real_ms();
    run_until_ms = t_start + (int64_t)(seconds * 1000);
    for (i = 0; i < n_threads; i++) {
        w[i].index = i;
        if (pthread_create(&w[i].tid, NULL, work, &w[i]) != 0) {
            fprintf(stderr, "signload: pthread_create failed\n");
            return 1;
        }
    }
    for (i = 0; i < n_threads; i++)
        pthread_join(w[i].tid, NULL);
    f->C_Finalize(NULL);

    for (i = 0; i < n_threads; i++) {
        if (w[i].fatal != CKR_OK) {
            fprintf(stderr, "signload: thread %d: C_OpenSession: %s\n", i, rv_name(w[i].fatal));
            rc = 1;
        }
        total += w[i].n_ev;
        wrong += w[i].wrong;
    }
    all = malloc((total + 1) * sizeof(*all));
    if (all == NULL)
        return 1;
    for (i = 0, k = 0; i < n_threads; i++) {
        memcpy(all + k, w[i].ev, w[i].n_ev * sizeof(*all));
        k += w[i].n_ev;
    }
    qsort(all, total, sizeof(*all), cmp_end);
    read_ms_file(end_file, &fault_end);

    last_ok = t_start;
    for (k = 0; k < total; k++) {
        const struct event *e = &all[k];

        attempted++;
        if (e->dur_ms > max_dur)
            max_dur = e->dur_ms;
        if (e->rv == CKR_OK) {
            ok++;
            if (e->end_ms - last_ok > max_gap)
                max_gap = e->end_ms - last_ok;
            last_ok = e->end_ms;
            /* the first call begun after the fault ended that succeeded */
            if (fault_end != 0 && recovery < 0 && e->end_ms - e->dur_ms >= fault_end)
                recovery = e->end_ms - fault_end;
        } else {
            size_t j;

            failed++;
            if (fault_end != 0 && e->end_ms >= fault_end)
                last_fail_after = e->end_ms - fault_end;
            for (j = 0; j < n_per_rv && per_rv[j].rv != e->rv; j++)
                ;
            if (j == n_per_rv) {
                if (n_per_rv == VTP_ARRAY_LEN(per_rv))
                    continue; /* counted in failed only */
                per_rv[j].rv = e->rv;
                per_rv[j].n = 0;
                n_per_rv++;
            }
            per_rv[j].n++;
        }
    }

    printf("signload: threads=%d run_ms=%lld deadline_ms=%ld\n", n_threads,
           (long long)(real_ms() - t_start), deadline_ms);
    printf("signload: attempted=%lu succeeded=%lu failed=%lu wrong=%lu\n", attempted, ok, failed,
           wrong);
    printf("signload: failures:");
    if (n_per_rv == 0)
        printf(" none");
    for (k = 0; k < n_per_rv; k++)
        printf(" %s=%lu", rv_name(per_rv[k].rv), per_rv[k].n);
    printf("\n");
    printf("signload: max_call_ms=%lld max_success_gap_ms=%lld\n", (long long)max_dur,
           (long long)max_gap);
    if (end_file != NULL) {
        if (fault_end == 0) {
            printf("signload: recovery_ms=unknown (no fault end in %s)\n", end_file);
            rc = rc ? rc : 3;
        } else if (recovery < 0) {
            printf("signload: recovery_ms=never (no success after the fault ended)\n");
            rc = 3;
        } else {
            printf("signload: recovery_ms=%lld last_failure_after_fault_end_ms=%lld\n",
                   (long long)recovery, (long long)last_fail_after);
        }
    }
    if (wrong > 0) {
        printf("signload: ERROR: %lu wrong signatures\n", wrong);
        rc = 2;
    }
    if (deadline_ms > 0 && max_dur > deadline_ms + SLACK_MS) {
        printf("signload: ERROR: a call took %lld ms, more than the deadline %ld ms + %d ms\n",
               (long long)max_dur, deadline_ms, SLACK_MS);
        rc = 2;
    }
    if (ok == 0) {
        printf("signload: ERROR: no signature succeeded\n");
        rc = rc ? rc : 3;
    }
    for (i = 0; i < n_threads; i++)
        free(w[i].ev);
    free(w);
    free(all);
    EVP_PKEY_free(pub);
    return rc;
}
