/* test-lifetime.c - races and lifetimes that timing against a real server cannot reach,
 * driven deterministically through the fake Transit behind the seam (tests/lib/fake-transit.c):
 *
 *  - batch-slot-leak: two requests return while the waiter the first one promoted is held
 *    (a signal handler keeps its thread from running): the second must not promote it again,
 *    and afterwards no request slot is in flight (issue 9, defect 1);
 *  - batch-taken-timeout: a queued caller that a leader took into its request waits for that
 *    request even past its own deadline, and gets its signature (defect 2);
 *  - batch-cohorts: with batch_concurrency 2, four callers each send their own request; with
 *    six, the next two wait while both slots are taken, and when a slot frees they go out
 *    together beside the request still held (their cohort of three unfilled after the gather
 *    time) instead of waiting for it (issue 11);
 *  - finalize-in-flight: C_Finalize while a C_Sign is inside the module waits for it; calls
 *    made meanwhile fail with CKR_CRYPTOKI_NOT_INITIALIZED (defect 3);
 *  - reinit-under-load: 8 threads sign (and read slot and token info) while the module is
 *    finalised and initialised 20 times: every signature verifies, no call waits for a request
 *    slot, no slot stays in flight, and no call inside crashes while C_Finalize waits for it;
 *  - refresh-writers: while a cache refresh waits for a slow LIST, C_GenerateKeyPair,
 *    C_DestroyObject and a search by label finish at once; the refreshed snapshot keeps the key
 *    made meanwhile (same handle) and not the one destroyed (defect 5);
 *  - health-threads: an HTTP client whose addresses do not answer starts health check threads;
 *    once it is freed no thread of the module is left (they are joined, not detached).
 * No Vault is needed: the module's address is a closed port and every Transit call is the
 * fake's. */
#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "../lib/fake-transit.h"
#include "../module/p11test.h"
#include "batch.h"
#include "util.h"
#include "vault/http.h"
#include "vault/transit.h"

static int64_t now_ms(void)
{
    return vtp_now_ms();
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* --- vtp_batch_sign directly --- */

static const struct vtp_transit transit = {NULL, NULL, "transit", NULL, NULL, NULL};
static const struct vtp_sign_params ecdsa = {"sha2-256", true, NULL, -1};

struct caller {
    pthread_t th;
    const char *key;
    unsigned char digest[32];
    struct vtp_sign_item item;
    CK_RV rv;
    volatile bool returned;
};

static void *caller_main(void *arg)
{
    struct caller *c = arg;

    c->item = (struct vtp_sign_item){c->digest, sizeof(c->digest), NULL, 0, CKR_GENERAL_ERROR};
    c->rv = vtp_batch_sign(&transit, c->key, 1, &ecdsa, false, &c->item);
    __atomic_store_n(&c->returned, true, __ATOMIC_SEQ_CST);
    return NULL;
}

static void start_caller(struct caller *c, const char *key, int i)
{
    memset(c, 0, sizeof(*c));
    c->key = key;
    SHA256((const unsigned char *)&i, sizeof(i), c->digest);
    REQUIRE_RV(pthread_create(&c->th, NULL, caller_main, c) == 0 ? CKR_OK : CKR_GENERAL_ERROR,
               CKR_OK);
}

static bool verifies(EVP_PKEY *pk, const unsigned char *digest, const unsigned char *sig,
                     size_t len)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pk, NULL);
    bool ok = ctx != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
              EVP_PKEY_verify(ctx, sig, len, digest, 32) == 1;

    EVP_PKEY_CTX_free(ctx);
    return ok;
}

static void finish_caller(struct caller *c, EVP_PKEY *pk, const char *what)
{
    pthread_join(c->th, NULL);
    CHECK(c->rv == CKR_OK && c->item.rv == CKR_OK, "%s: vtp_batch_sign %s, item %s", what,
          vtp_rv_name(c->rv), vtp_rv_name(c->item.rv));
    if (c->item.rv == CKR_OK)
        CHECK(verifies(pk, c->digest, c->item.sig, c->item.sig_len),
              "%s: the signature does not verify", what);
    free(c->item.sig);
}

static bool wait_for(bool (*cond)(unsigned long), unsigned long arg, long timeout_ms)
{
    int64_t until = now_ms() + timeout_ms;

    while (!cond(arg)) {
        if (now_ms() > until)
            return false;
        sleep_ms(1);
    }
    return true;
}

static bool waiting_is(unsigned long n)
{
    struct vtp_batch_stats st;

    vtp_batch_get_stats(&st);
    return st.waiting == n;
}

/* A thread held in a signal handler cannot take the batch lock when it is woken. */
static int hold_pipe[2], resume_pipe[2];

static void hold_handler(int sig)
{
    char b = 0;

    (void)sig;
    (void)!write(hold_pipe[1], &b, 1);
    (void)!read(resume_pipe[0], &b, 1);
}

static void batch_slot_leak(EVP_PKEY *pk)
{
    struct caller c[3];
    struct vtp_batch_stats st;
    char b = 0;

    /* batch_concurrency 1: two callers send a request each, the third queues */
    vtp_batch_configure(&(struct vtp_batch_conf){true, 200, 1, false, 5000});
    fake_transit_gate_close();
    start_caller(&c[0], "k", 0);
    REQUIRE_RV(fake_transit_wait_at_gate(1, 5000) ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    start_caller(&c[1], "k", 1);
    REQUIRE_RV(fake_transit_wait_at_gate(2, 5000) ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    start_caller(&c[2], "k", 2); /* both slots are taken: it queues */
    REQUIRE_RV(wait_for(waiting_is, 1, 5000) ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    /* Hold the queued caller's thread, then let both requests return: each hands its slot
     * over while the promoted caller cannot run yet. */
    REQUIRE_RV(pthread_kill(c[2].th, SIGUSR1) == 0 ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    REQUIRE_RV(read(hold_pipe[0], &b, 1) == 1 ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    fake_transit_gate_open();
    finish_caller(&c[0], pk, "first in flight");
    finish_caller(&c[1], pk, "second in flight");
    REQUIRE_RV(write(resume_pipe[1], &b, 1) == 1 ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    finish_caller(&c[2], pk, "queued");
    vtp_batch_get_stats(&st);
    CHECK(st.in_flight == 0,
          "batch-slot-leak: %lu request slot(s) in flight after every caller returned",
          st.in_flight);
    printf("batch-slot-leak: %lu slots in flight afterwards\n", st.in_flight);
}

/* Key k2: a queue of its own. */
static void batch_taken_timeout(EVP_PKEY *pk)
{
    struct caller c[4];
    struct vtp_batch_stats st;
    int64_t t0;

    vtp_batch_configure(&(struct vtp_batch_conf){true, 200, 1, false, 300}); /* 300 ms deadline */
    fake_transit_gate_close();
    start_caller(&c[0], "k2", 10); /* two callers: a request each */
    REQUIRE_RV(fake_transit_wait_at_gate(1, 5000) ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    start_caller(&c[1], "k2", 11);
    REQUIRE_RV(fake_transit_wait_at_gate(2, 5000) ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    start_caller(&c[2], "k2", 12); /* four: one slot, both taken: these two queue */
    start_caller(&c[3], "k2", 13);
    REQUIRE_RV(wait_for(waiting_is, 2, 5000) ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    t0 = now_ms();
    /* Both requests return; the third caller leads a batch of itself and the fourth, which
     * waits at the gate well past the fourth caller's deadline. */
    fake_transit_gate_release(2);
    REQUIRE_RV(fake_transit_wait_at_gate(1, 5000) ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    sleep_ms(700);
    CHECK(!__atomic_load_n(&c[3].returned, __ATOMIC_SEQ_CST),
          "batch-taken-timeout: a caller carried in a leader's request returned after %lld ms "
          "while the request was still under way",
          (long long)(now_ms() - t0));
    fake_transit_gate_open();
    finish_caller(&c[0], pk, "lone");
    finish_caller(&c[1], pk, "lone");
    finish_caller(&c[2], pk, "leader");
    finish_caller(&c[3], pk, "carried");
    vtp_batch_get_stats(&st);
    CHECK(st.in_flight == 0 && st.waiting == 0, "batch-taken-timeout: %lu in flight, %lu waiting",
          st.in_flight, st.waiting);
}

static unsigned long requests_now(void)
{
    struct vtp_batch_stats st;

    vtp_batch_get_stats(&st);
    return st.requests;
}

static bool has_returned(const struct caller *c)
{
    return __atomic_load_n(&c->returned, __ATOMIC_SEQ_CST);
}

static bool returned_count_is(struct caller *c, size_t n, size_t want)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++)
        k += has_returned(&c[i]);
    return k == want;
}

/* Until want of c[0..n-1] returned. */
static bool wait_returned(struct caller *c, size_t n, size_t want, long timeout_ms)
{
    int64_t until = now_ms() + timeout_ms;

    while (!returned_count_is(c, n, want)) {
        if (now_ms() > until)
            return false;
        sleep_ms(1);
    }
    return true;
}

/* Key k3: a queue of its own. */
static void batch_cohorts(EVP_PKEY *pk)
{
    struct caller c[6];
    struct vtp_batch_stats st;
    unsigned long before;
    unsigned i;

    vtp_batch_configure(&(struct vtp_batch_conf){true, 200, 2, false, 5000});
    before = requests_now();
    fake_transit_gate_close();
    /* Up to two callers a slot (4) each send their own request at once. */
    for (i = 0; i < 4; i++) {
        start_caller(&c[i], "k3", 20 + (int)i);
        CHECK(fake_transit_wait_at_gate(i + 1, 5000),
              "batch-cohorts: caller %u of 4 did not go out alone", i + 1);
    }
    /* Six callers: cohorts of three, two slots, both taken: the next two wait. */
    start_caller(&c[4], "k3", 24);
    start_caller(&c[5], "k3", 25);
    REQUIRE_RV(wait_for(waiting_is, 2, 5000) ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    /* Two requests return (the gate lets one go at a time, not a chosen one): two still in
     * flight, no slot free, they wait on. */
    fake_transit_gate_release(1);
    REQUIRE_RV(wait_returned(c, 4, 1, 5000) ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    fake_transit_gate_release(1);
    REQUIRE_RV(wait_returned(c, 4, 2, 5000) ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    vtp_batch_get_stats(&st);
    CHECK(st.waiting == 2, "batch-cohorts: %lu waiting with no slot free (2 expected)",
          st.waiting);
    /* A third returns: a slot is free and the two have waited longer than the gather time
     * for a third: they go out together, beside the request still held. */
    fake_transit_gate_release(1);
    REQUIRE_RV(wait_returned(c, 4, 3, 5000) ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    CHECK(fake_transit_wait_at_gate(2, 2000),
          "batch-cohorts: the waiting callers did not go out beside the request in flight");
    vtp_batch_get_stats(&st);
    CHECK(st.waiting == 0 && st.in_flight == 2 && st.max_batch >= 2,
          "batch-cohorts: %lu waiting, %lu in flight, largest batch %lu", st.waiting,
          st.in_flight, st.max_batch);
    fake_transit_gate_open();
    for (i = 0; i < 6; i++)
        finish_caller(&c[i], pk, "batch-cohorts");
    vtp_batch_get_stats(&st);
    CHECK(st.requests - before == 5 && st.in_flight == 0 && st.waiting == 0,
          "batch-cohorts: %lu requests (5 expected), %lu in flight, %lu waiting",
          st.requests - before, st.in_flight, st.waiting);
    printf("batch-cohorts: 6 signatures in %lu requests\n", st.requests - before);
}

/* --- the whole module through its function list --- */

static CK_FUNCTION_LIST_PTR f;
static char config_arg[600];

static CK_RV init_module(void)
{
    CK_C_INITIALIZE_ARGS a = {NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, config_arg};
    return f->C_Initialize(&a);
}

static CK_RV open_and_find(CK_SESSION_HANDLE *s, CK_OBJECT_HANDLE *key)
{
    CK_OBJECT_CLASS c = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c, sizeof(c)}, {CKA_LABEL, "k", 1}};
    CK_ULONG n = 0;
    CK_RV rv = f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, s);

    if (rv != CKR_OK)
        return rv;
    if ((rv = f->C_FindObjectsInit(*s, t, 2)) == CKR_OK) {
        rv = f->C_FindObjects(*s, key, 1, &n);
        f->C_FindObjectsFinal(*s);
    }
    if (rv == CKR_OK && n != 1)
        rv = CKR_OBJECT_HANDLE_INVALID;
    return rv;
}

static CK_RV sign_digest(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, const unsigned char *digest,
                         unsigned char *sig, CK_ULONG *len)
{
    CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
    CK_RV rv = f->C_SignInit(s, &m, key);

    return rv == CKR_OK ? f->C_Sign(s, (CK_BYTE_PTR)digest, 32, sig, len) : rv;
}

/* The module gives r||s; OpenSSL verifies DER. */
static bool verifies_raw(EVP_PKEY *pk, const unsigned char *digest, const unsigned char *rs,
                         CK_ULONG len)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    unsigned char *der = NULL;
    int der_len;
    bool ok = false;

    if (es != NULL && len == 64 &&
        ECDSA_SIG_set0(es, BN_bin2bn(rs, 32, NULL), BN_bin2bn(rs + 32, 32, NULL)) == 1 &&
        (der_len = i2d_ECDSA_SIG(es, &der)) > 0)
        ok = verifies(pk, digest, der, (size_t)der_len);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    return ok;
}

struct signer {
    pthread_t th;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE key;
    int id;
    CK_RV rv;
    CK_ULONG len;
    unsigned char digest[32], sig[128];
    volatile bool returned;
};

static void *signer_main(void *arg)
{
    struct signer *g = arg;

    g->len = sizeof(g->sig);
    g->rv = sign_digest(g->s, g->key, g->digest, g->sig, &g->len);
    __atomic_store_n(&g->returned, true, __ATOMIC_SEQ_CST);
    return NULL;
}

struct finalizer {
    pthread_t th;
    CK_RV rv;
    volatile bool returned;
};

static void *finalizer_main(void *arg)
{
    struct finalizer *z = arg;

    z->rv = f->C_Finalize(NULL);
    __atomic_store_n(&z->returned, true, __ATOMIC_SEQ_CST);
    return NULL;
}

static void finalize_in_flight(EVP_PKEY *pk)
{
    struct signer g = {0};
    struct finalizer z = {0};
    CK_ULONG n = 0;

    REQUIRE_RV(init_module(), CKR_OK);
    REQUIRE_RV(open_and_find(&g.s, &g.key), CKR_OK);
    SHA256((const unsigned char *)"finalize", 8, g.digest);
    fake_transit_gate_close();
    REQUIRE_RV(pthread_create(&g.th, NULL, signer_main, &g) == 0 ? CKR_OK : CKR_GENERAL_ERROR,
               CKR_OK);
    REQUIRE_RV(fake_transit_wait_at_gate(1, 5000) ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    REQUIRE_RV(pthread_create(&z.th, NULL, finalizer_main, &z) == 0 ? CKR_OK : CKR_GENERAL_ERROR,
               CKR_OK);
    sleep_ms(300);
    CHECK(!__atomic_load_n(&z.returned, __ATOMIC_SEQ_CST),
          "finalize-in-flight: C_Finalize returned (%s) while a C_Sign was inside the module",
          vtp_rv_name(z.rv));
    CHECK_RV(f->C_GetSlotList(CK_FALSE, NULL, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
    fake_transit_gate_open();
    pthread_join(g.th, NULL);
    pthread_join(z.th, NULL);
    CHECK(g.rv == CKR_OK && verifies_raw(pk, g.digest, g.sig, g.len),
          "finalize-in-flight: the C_Sign in flight gave %s or a signature that does not verify",
          vtp_rv_name(g.rv));
    CHECK_RV(z.rv, CKR_OK);
}

/* --- finalize and initialize under load --- */

static volatile bool load_stop;
static unsigned long load_ok, load_bad, load_slow;
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static EVP_PKEY *load_pk;

static void *load_main(void *arg)
{
    int id = (int)(intptr_t)arg;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE key = 0;
    unsigned char digest[32], sig[128];

    for (int i = 0; !__atomic_load_n(&load_stop, __ATOMIC_SEQ_CST); i++) {
        CK_ULONG len = sizeof(sig);
        int64_t t0 = now_ms();
        CK_RV rv;
        int v[2] = {id, i};

        {
            /* calls that read the module's slots right after counting themselves in (a
             * C_Finalize that took the module away before waiting crashed them) */
            CK_SLOT_INFO si;
            CK_TOKEN_INFO ti;
            CK_ULONG n = 0;
            (void)f->C_GetSlotInfo(0, &si);
            (void)f->C_GetTokenInfo(0, &ti);
            (void)f->C_GetSlotList(CK_TRUE, NULL, &n);
        }
        if (s == CK_INVALID_HANDLE && open_and_find(&s, &key) != CKR_OK) {
            s = CK_INVALID_HANDLE;
            sleep_ms(1);
            continue;
        }
        SHA256((const unsigned char *)v, sizeof(v), digest);
        rv = sign_digest(s, key, digest, sig, &len);
        pthread_mutex_lock(&load_lock);
        if (now_ms() - t0 > 2000)
            load_slow++;
        if (rv == CKR_OK) {
            if (verifies_raw(load_pk, digest, sig, len))
                load_ok++;
            else
                load_bad++;
        }
        pthread_mutex_unlock(&load_lock);
        if (rv != CKR_OK)
            s = CK_INVALID_HANDLE; /* finalised under us: open again once initialised */
    }
    return NULL;
}

static void reinit_under_load(EVP_PKEY *pk)
{
    enum { THREADS = 8 };
    pthread_t th[THREADS];
    struct vtp_batch_stats st;

    load_pk = pk;
    REQUIRE_RV(init_module(), CKR_OK);
    for (int i = 0; i < THREADS; i++)
        REQUIRE_RV(pthread_create(&th[i], NULL, load_main, (void *)(intptr_t)i) == 0
                       ? CKR_OK
                       : CKR_GENERAL_ERROR,
                   CKR_OK);
    for (int round = 0; round < 20; round++) {
        sleep_ms(round < 3 ? 200 : 20);
        CHECK_RV(f->C_Finalize(NULL), CKR_OK);
        vtp_batch_get_stats(&st);
        CHECK(st.in_flight == 0 && st.waiting == 0,
              "reinit-under-load: after C_Finalize %lu slot(s) in flight, %lu waiting",
              st.in_flight, st.waiting);
        sleep_ms(20);
        REQUIRE_RV(init_module(), CKR_OK);
    }
    sleep_ms(200);
    __atomic_store_n(&load_stop, true, __ATOMIC_SEQ_CST);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);
    CHECK(load_ok > 0 && load_bad == 0, "reinit-under-load: %lu signatures verified, %lu did not",
          load_ok, load_bad);
    CHECK(load_slow == 0, "reinit-under-load: %lu calls took over 2 s (waited for a slot)",
          load_slow);
    printf("reinit-under-load: %lu signatures verified across 20 finalize/initialize rounds\n",
           load_ok);
}

/* --- a refresh that holds nothing writers need --- */

static char config_ttl[600];

struct finder {
    pthread_t th;
    CK_SESSION_HANDLE s;
    CK_RV rv;
    volatile bool returned;
};

static void *finder_main(void *arg)
{
    struct finder *fd = arg;
    CK_OBJECT_CLASS c = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c, sizeof(c)}};
    CK_OBJECT_HANDLE h[8];
    CK_ULONG n = 0;

    fd->rv = f->C_FindObjectsInit(fd->s, t, 1);
    if (fd->rv == CKR_OK) {
        fd->rv = f->C_FindObjects(fd->s, h, 8, &n);
        f->C_FindObjectsFinal(fd->s);
    }
    __atomic_store_n(&fd->returned, true, __ATOMIC_SEQ_CST);
    return NULL;
}

struct maker {
    pthread_t th;
    CK_SESSION_HANDLE s;
    CK_RV rv, drv;
    CK_OBJECT_HANDLE pub, priv, pub2, priv2;
    volatile bool returned;
};

static CK_RV make_key(CK_SESSION_HANDLE s, const char *label, CK_OBJECT_HANDLE *pub,
                      CK_OBJECT_HANDLE *priv)
{
    static const unsigned char p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
    CK_BBOOL yes = CK_TRUE;
    CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pt[] = {{CKA_EC_PARAMS, (void *)p256, sizeof(p256)},
                         {CKA_TOKEN, &yes, sizeof(yes)},
                         {CKA_LABEL, (void *)label, strlen(label)}};
    CK_ATTRIBUTE vt[] = {{CKA_TOKEN, &yes, sizeof(yes)},
                         {CKA_SIGN, &yes, sizeof(yes)},
                         {CKA_LABEL, (void *)label, strlen(label)}};

    return f->C_GenerateKeyPair(s, &m, pt, 3, vt, 3, pub, priv);
}

/* Makes "made", makes "gone" and destroys it, all while the refresh waits. */
static void *maker_main(void *arg)
{
    struct maker *mk = arg;

    mk->rv = make_key(mk->s, "made", &mk->pub, &mk->priv);
    if (mk->rv == CKR_OK)
        mk->rv = make_key(mk->s, "gone", &mk->pub2, &mk->priv2);
    if (mk->rv == CKR_OK)
        mk->drv = f->C_DestroyObject(mk->s, mk->priv2);
    __atomic_store_n(&mk->returned, true, __ATOMIC_SEQ_CST);
    return NULL;
}

static CK_ULONG find_by_label(CK_SESSION_HANDLE s, const char *label, CK_OBJECT_HANDLE *h)
{
    CK_OBJECT_CLASS c = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &c, sizeof(c)}, {CKA_LABEL, (void *)label, strlen(label)}};
    CK_OBJECT_HANDLE hs[4];
    CK_ULONG n = 0;

    if (f->C_FindObjectsInit(s, t, 2) != CKR_OK)
        return 0;
    f->C_FindObjects(s, hs, 4, &n);
    f->C_FindObjectsFinal(s);
    if (n > 0 && h != NULL)
        *h = hs[0];
    return n;
}

static void refresh_writers(void)
{
    CK_C_INITIALIZE_ARGS a = {NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, config_ttl};
    struct finder fd = {0};
    struct maker mk = {0};
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h = 0;
    int64_t t0;

    REQUIRE_RV(f->C_Initialize(&a), CKR_OK);
    REQUIRE_RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s), CKR_OK);
    REQUIRE_RV(f->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &fd.s), CKR_OK);
    mk.s = s;
    CHECK(find_by_label(s, "k", NULL) == 1, "refresh-writers: key k not found");
    /* The snapshot goes stale (cache_ttl = 1s); the next search refreshes, and its LIST hangs. */
    fake_transit_hold_lists(true);
    sleep_ms(1100);
    REQUIRE_RV(pthread_create(&fd.th, NULL, finder_main, &fd) == 0 ? CKR_OK : CKR_GENERAL_ERROR,
               CKR_OK);
    REQUIRE_RV(fake_transit_wait_lists(1, 5000) ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    t0 = now_ms();
    REQUIRE_RV(pthread_create(&mk.th, NULL, maker_main, &mk) == 0 ? CKR_OK : CKR_GENERAL_ERROR,
               CKR_OK);
    for (int i = 0; i < 2000 && !__atomic_load_n(&mk.returned, __ATOMIC_SEQ_CST); i++)
        sleep_ms(1);
    CHECK(__atomic_load_n(&mk.returned, __ATOMIC_SEQ_CST),
          "refresh-writers: C_GenerateKeyPair/C_DestroyObject still waiting after %lld ms for a "
          "refresh that waits for Vault",
          (long long)(now_ms() - t0));
    CHECK(!__atomic_load_n(&fd.returned, __ATOMIC_SEQ_CST),
          "refresh-writers: the refreshing search did not wait for its LIST");
    fake_transit_hold_lists(false);
    pthread_join(mk.th, NULL);
    pthread_join(fd.th, NULL);
    CHECK(mk.rv == CKR_OK && mk.drv == CKR_OK, "refresh-writers: keygen %s, destroy %s",
          vtp_rv_name(mk.rv), vtp_rv_name(mk.drv));
    CHECK_RV(fd.rv, CKR_OK);
    /* The refresh listed the keys before "made" existed and while "gone" did: what it
     * published must still show the first (with the handle the caller got) and not the second. */
    CHECK(find_by_label(s, "made", &h) == 1 && h == mk.priv,
          "refresh-writers: after the refresh, the key made meanwhile is missing or has another "
          "handle");
    CHECK(find_by_label(s, "gone", NULL) == 0,
          "refresh-writers: after the refresh, the key destroyed meanwhile is back");
    CHECK_RV(f->C_Finalize(NULL), CKR_OK);
}

static int count_threads(void)
{
    char path[64];
    int n = 0;

    DIR *d;
    struct dirent *e;

    snprintf(path, sizeof(path), "/proc/%d/task", (int)getpid());
    d = opendir(path);
    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* A listener that accepts connections (the kernel does, from its backlog) and never answers:
 * a server that hangs. */
static int hanging_listener(int *port)
{
    struct sockaddr_in a = {0};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

static void health_threads(void)
{
    struct vtp_vault_conf vc = {0};
    struct vtp_http *h = NULL;
    struct vtp_http_resp resp = {0};
    struct vtp_http_req req = {"GET", "auth/token/lookup-self", NULL, NULL, NULL, true, NULL, NULL};
    char addr[64];
    int port = 0, fd = hanging_listener(&port), before = count_threads(), during;

    REQUIRE_RV(fd >= 0 ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    snprintf(addr, sizeof(addr), "http://127.0.0.1:%d", port);
    vc.addresses[0] = addr;
    vc.n_addresses = 1;
    vc.timeout_ms = 1000;
    vc.connect_timeout_ms = 500;
    REQUIRE_RV(vtp_http_new(&vc, &h), CKR_OK);
    /* The first request spends its deadline and declares an outage; one 250 ms later starts a
     * health check thread, which waits for the hanging server. */
    CHECK(vtp_http_request(h, &req, &resp) != CKR_OK, "health-threads: a hanging server answered");
    vtp_http_resp_clear(&resp);
    sleep_ms(300);
    CHECK(vtp_http_request(h, &req, &resp) != CKR_OK, "health-threads: a hanging server answered");
    vtp_http_resp_clear(&resp);
    during = count_threads();
    CHECK(during > before, "health-threads: no health check thread was started");
    vtp_http_free(h);
    CHECK(count_threads() == before,
          "health-threads: %d thread(s) before, %d with a health check, %d after the client was "
          "freed",
          before, during, count_threads());
    close(fd);
}

int main(void)
{
    struct sigaction sa;
    EVP_PKEY *pk, *pk2, *pk3;
    char dir[] = "/tmp/vtp-lifetime.XXXXXX", path[300], path2[300];
    FILE *fp;

    setvbuf(stdout, NULL, _IONBF, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = hold_handler;
    sigemptyset(&sa.sa_mask);
    REQUIRE_RV(pipe(hold_pipe) == 0 && pipe(resume_pipe) == 0 && sigaction(SIGUSR1, &sa, NULL) == 0
                   ? CKR_OK
                   : CKR_GENERAL_ERROR,
               CKR_OK);
    fake_transit_install();
    REQUIRE_RV(fake_transit_add_ec_key("k") ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    pk = fake_transit_key("k");
    REQUIRE_RV(fake_transit_add_ec_key("k2") ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    pk2 = fake_transit_key("k2");
    REQUIRE_RV(fake_transit_add_ec_key("k3") ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    pk3 = fake_transit_key("k3");

    batch_slot_leak(pk);
    batch_taken_timeout(pk2);
    batch_cohorts(pk3);

    /* The module: a config whose Vault is a closed port (the fake answers every Transit call). */
    REQUIRE_RV(mkdtemp(dir) != NULL ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    snprintf(path, sizeof(path), "%s/fake.conf", dir);
    fp = fopen(path, "w");
    REQUIRE_RV(fp != NULL ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    fprintf(fp, "[vault]\naddress = http://127.0.0.1:9\nauth = token\ntimeout = 5\n"
                "[module]\nbatch_concurrency = 2\n[slot fake]\nmount = transit\nlabel = fake\n");
    fclose(fp);
    snprintf(config_arg, sizeof(config_arg), "config=%s", path);
    snprintf(path2, sizeof(path2), "%s/fake-ttl.conf", dir);
    fp = fopen(path2, "w");
    REQUIRE_RV(fp != NULL ? CKR_OK : CKR_GENERAL_ERROR, CKR_OK);
    fprintf(fp, "[vault]\naddress = http://127.0.0.1:9\nauth = token\ntimeout = 5\n"
                "[slot fake]\nmount = transit\nlabel = fake\ncache_ttl = 1s\n");
    fclose(fp);
    snprintf(config_ttl, sizeof(config_ttl), "config=%s", path2);
    setenv("VAULT_TOKEN", "fake-token", 1);
    unsetenv("VAULT_ADDR");
    REQUIRE_RV(C_GetFunctionList(&f), CKR_OK);

    finalize_in_flight(pk);
    reinit_under_load(pk);
    refresh_writers();
    health_threads();

    unlink(path);
    unlink(path2);
    rmdir(dir);
    EVP_PKEY_free(pk);
    EVP_PKEY_free(pk2);
    EVP_PKEY_free(pk3);
    fake_transit_uninstall();
    return p11t_summary("test-lifetime");
}
