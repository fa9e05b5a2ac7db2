/* p11bench - signing throughput and latency of a PKCS#11 module, or of plain Transit HTTP.
 *
 *   p11bench --module PATH --label LABEL [--mech M] [--threads N] [--seconds S] ...
 *   p11bench --direct-http --key NAME [--mount transit] [--mech M] ...   (VAULT_ADDR/VAULT_TOKEN)
 *
 * Every thread has its own session (or its own CURL handle) and signs in a loop; the main thread
 * only keeps time. An operation counts when it succeeded and completed inside the measurement
 * window (after --warmup). Latencies go into a per-thread log-linear histogram (no locks in the
 * loop) that is merged when the threads are done. Exit status: 0 when every call succeeded and
 * every checked signature verified, 1 when the run had errors, wrong signatures or no
 * operations at all, 2 on a usage or setup error.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sys/resource.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "p11bench.h"

/* Histogram: values below 2^SUB_BITS ns are exact; above, each power of two is split into
 * 2^(SUB_BITS-1) buckets, so a bucket is at most 1/128 (0.8%) of its value wide. */
#define SUB_BITS 8
#define SUB_COUNT (1u << SUB_BITS)
#define HALF_COUNT (SUB_COUNT / 2)
#define HIST_BUCKETS (SUB_COUNT + (64 - SUB_BITS) * HALF_COUNT)

/* A thread that gets only errors stops the run after this many in a row. */
#define MAX_ERRORS_IN_A_ROW 200

enum phase { PHASE_SETUP, PHASE_WARMUP, PHASE_MEASURE, PHASE_STOP };

struct stats {
    uint64_t *hist;
    uint64_t ops, errors, verified, wrong;
    uint64_t sum_ns, min_ns, max_ns;
};

struct worker {
    pthread_t tid;
    unsigned idx;
    struct bench *b;
    int setup_failed;
    CK_SESSION_HANDLE sess;
    struct bench_http_thread *http;
    struct stats st;
    char first_err[BENCH_ERR_LEN];
    struct bench_msg msg;
    unsigned char sig[BENCH_MAX_SIG];
};

struct bench {
    struct bench_opts o;
    struct bench_p11 *p11;
    struct bench_http *http;
    EVP_PKEY *pub;
    _Atomic unsigned ready; /* threads done with their setup */
    _Atomic int phase;
    _Atomic int aborted;
    uint64_t seed;
    char desc[1400];
};

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void nap(void)
{
    struct timespec ts = {0, 1000000};

    nanosleep(&ts, NULL);
}

static unsigned hist_index(uint64_t v)
{
    unsigned msb, shift;

    if (v < SUB_COUNT)
        return (unsigned)v;
    msb = 63u - (unsigned)__builtin_clzll(v);
    shift = msb - (SUB_BITS - 1);
    return SUB_COUNT + (shift - 1) * HALF_COUNT + (unsigned)((v >> shift) - HALF_COUNT);
}

/* The middle of a bucket. */
static uint64_t hist_value(unsigned idx)
{
    unsigned shift;
    uint64_t m;

    if (idx < SUB_COUNT)
        return idx;
    shift = (idx - SUB_COUNT) / HALF_COUNT + 1;
    m = (idx - SUB_COUNT) % HALF_COUNT + HALF_COUNT;
    return (m << shift) + (1ULL << shift) / 2;
}

static void record(struct stats *st, uint64_t ns)
{
    st->hist[hist_index(ns)]++;
    st->ops++;
    st->sum_ns += ns;
    if (ns < st->min_ns)
        st->min_ns = ns;
    if (ns > st->max_ns)
        st->max_ns = ns;
}

/* The latency (ns) below which a fraction q of the operations finished. */
static uint64_t percentile(const struct stats *st, double q)
{
    uint64_t rank, seen = 0, v;
    unsigned i;

    if (st->ops == 0)
        return 0;
    rank = (uint64_t)ceil(q * (double)st->ops);
    if (rank < 1)
        rank = 1;
    for (i = 0; i < HIST_BUCKETS; i++) {
        seen += st->hist[i];
        if (seen >= rank) {
            v = hist_value(i);
            if (v < st->min_ns)
                v = st->min_ns;
            if (v > st->max_ns)
                v = st->max_ns;
            return v;
        }
    }
    return st->max_ns;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct bench *b = w->b;
    const struct bench_mech *mech = b->o.mech;
    uint64_t counter = 0, in_a_row = 0, t0, t1, seed = b->seed ^ ((uint64_t)w->idx << 48);
    size_t sig_len = 0;
    char err[BENCH_ERR_LEN];
    int ph, ok;
    CK_RV rv;

    if (b->p11 != NULL)
        w->setup_failed =
            bench_p11_thread_open(b->p11, &w->sess, w->first_err, sizeof(w->first_err));
    else
        w->setup_failed =
            bench_http_thread_open(b->http, &w->http, w->first_err, sizeof(w->first_err));
    atomic_fetch_add(&b->ready, 1);
    if (w->setup_failed)
        return NULL;
    /* the main thread checks every setup and then starts the clock */
    while (atomic_load_explicit(&b->phase, memory_order_acquire) == PHASE_SETUP)
        nap();

    while ((ph = atomic_load_explicit(&b->phase, memory_order_relaxed)) != PHASE_STOP) {
        bench_msg_make(&w->msg, mech, b->o.msg_len, seed, counter++);
        err[0] = '\0';
        t0 = now_ns();
        if (b->p11 != NULL) {
            rv = bench_p11_sign(b->p11, w->sess, &w->msg, w->sig, &sig_len);
            ok = rv == CKR_OK;
            if (!ok)
                snprintf(err, sizeof(err), "C_SignInit/C_Sign: %s (0x%lx)", bench_ckr_name(rv),
                         (unsigned long)rv);
        } else {
            ok = bench_http_sign(w->http, &w->msg, w->sig, &sig_len, err, sizeof(err)) == 0;
        }
        t1 = now_ns();
        ph = atomic_load_explicit(&b->phase, memory_order_relaxed);
        if (!ok) {
            w->st.errors++;
            if (w->first_err[0] == '\0')
                snprintf(w->first_err, sizeof(w->first_err), "%s", err);
            if (++in_a_row >= MAX_ERRORS_IN_A_ROW) {
                atomic_store(&b->aborted, 1);
                break;
            }
            continue;
        }
        in_a_row = 0;
        if (ph != PHASE_MEASURE)
            continue;
        record(&w->st, t1 - t0);
        if (b->o.verify_every > 0 && w->st.ops % b->o.verify_every == 0) {
            w->st.verified++;
            if (!bench_verify(b->pub, mech, &w->msg, w->sig, sig_len, b->http != NULL))
                w->st.wrong++;
        }
    }
    return NULL;
}

/* Sleeps until the monotonic deadline or an abort. */
static void wait_until(struct bench *b, uint64_t deadline)
{
    struct timespec ts;
    uint64_t now, step;

    while (!atomic_load(&b->aborted) && (now = now_ns()) < deadline) {
        step = deadline - now;
        if (step > 50000000ULL)
            step = 50000000ULL;
        ts.tv_sec = (time_t)(step / 1000000000ULL);
        ts.tv_nsec = (long)(step % 1000000000ULL);
        nanosleep(&ts, NULL);
    }
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: p11bench --module PATH --label LABEL [options]\n"
            "       p11bench --direct-http --key NAME [--mount MOUNT] [options]\n"
            "\n"
            "  --module PATH     PKCS#11 module to dlopen (any: this one, softhsm2, ...)\n"
            "  --label LABEL     CKA_LABEL of the private key to sign with\n"
            "  --slot ID         use this slot (default: the first initialized token that has\n"
            "                    the key)\n"
            "  --token LABEL     only tokens with this label\n"
            "  --login           C_Login as CKU_USER (no PIN: protected authentication path)\n"
            "  --pin PIN         C_Login with this PIN (implies --login)\n"
            "  --mech NAME       %s\n"
            "                    (default ecdsa-sha256)\n"
            "  --threads N       signing threads, one session each (default 1)\n"
            "  --seconds S       measured duration (default 10)\n"
            "  --warmup S        unmeasured warm-up before it (default 1)\n"
            "  --data-size N     message bytes per signature (default 64)\n"
            "  --verify N        verify every Nth signature with OpenSSL (0: off, default)\n"
            "  --json            print one JSON object instead of text\n"
            "  --direct-http     sign with plain Transit HTTP requests (libcurl) instead of a\n"
            "                    module: VAULT_ADDR, VAULT_TOKEN (VAULT_CACERT, VAULT_CAPATH,\n"
            "                    VAULT_CLIENT_CERT, VAULT_CLIENT_KEY, VAULT_NAMESPACE)\n"
            "  --mount MOUNT     Transit mount for --direct-http (default transit)\n"
            "  --key NAME        Transit key name for --direct-http\n"
            "  --batch N         --direct-http: N signatures per request as batch_input (the\n"
            "                    message N times, each with a reference; default 1: a plain\n"
            "                    request). Counts N operations per request; latency is per\n"
            "                    request. Measures what Transit itself does with batches.\n"
            "  --connections N   --direct-http: N keep-alive connections, each a thread that\n"
            "                    sends its next request as soon as the last returns (the same\n"
            "                    as --threads N); --connections 2 --batch 8 keeps 16\n"
            "                    signatures outstanding as two concurrent batches of 8\n"
            "\n"
            "Besides throughput and latency, every run reports what the signing cost this\n"
            "process (the module is in it) during the measured window: CPU microseconds\n"
            "(user + system) and context switches (voluntary + involuntary) per signature.\n"
            "\n"
            "Exit status: 0 all good, 1 errors or wrong signatures or no operations, 2 usage or\n"
            "setup error.\n",
            bench_mech_names());
}

static int parse_double(const char *opt, const char *s, double min, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= min) || v > 1e6) {
        fprintf(stderr, "p11bench: %s: '%s' is not a number >= %g\n", opt, s, min);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_ulong(const char *opt, const char *s, unsigned long min, unsigned long max,
                       unsigned long *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || *s == '-' || v < min || v > max) {
        fprintf(stderr, "p11bench: %s: '%s' is not a whole number in [%lu, %lu]\n", opt, s, min,
                max);
        return -1;
    }
    *out = v;
    return 0;
}

enum {
    OPT_MODULE = 256,
    OPT_LABEL,
    OPT_SLOT,
    OPT_TOKEN,
    OPT_LOGIN,
    OPT_PIN,
    OPT_MECH,
    OPT_THREADS,
    OPT_SECONDS,
    OPT_WARMUP,
    OPT_DATA_SIZE,
    OPT_VERIFY,
    OPT_JSON,
    OPT_DIRECT,
    OPT_MOUNT,
    OPT_KEY,
    OPT_BATCH,
    OPT_CONNECTIONS,
    OPT_HELP,
};

static int parse_args(int argc, char **argv, struct bench_opts *o)
{
    static const struct option longopts[] = {
        {"module", required_argument, NULL, OPT_MODULE},
        {"label", required_argument, NULL, OPT_LABEL},
        {"slot", required_argument, NULL, OPT_SLOT},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"login", no_argument, NULL, OPT_LOGIN},
        {"pin", required_argument, NULL, OPT_PIN},
        {"mech", required_argument, NULL, OPT_MECH},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"seconds", required_argument, NULL, OPT_SECONDS},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"data-size", required_argument, NULL, OPT_DATA_SIZE},
        {"verify", required_argument, NULL, OPT_VERIFY},
        {"json", no_argument, NULL, OPT_JSON},
        {"direct-http", no_argument, NULL, OPT_DIRECT},
        {"mount", required_argument, NULL, OPT_MOUNT},
        {"key", required_argument, NULL, OPT_KEY},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"connections", required_argument, NULL, OPT_CONNECTIONS},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    unsigned long v;
    int c;

    memset(o, 0, sizeof(*o));
    o->mech = bench_mech_lookup("ecdsa-sha256");
    o->threads = 1;
    o->seconds = 10;
    o->warmup = 1;
    o->msg_len = 64;
    o->mount = "transit";
    o->batch = 1;

    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_MODULE:
            o->module = optarg;
            break;
        case OPT_LABEL:
            o->label = optarg;
            break;
        case OPT_SLOT:
            if (parse_ulong("--slot", optarg, 0, (unsigned long)-1, &v) != 0)
                return -1;
            o->slot = v;
            o->have_slot = true;
            break;
        case OPT_TOKEN:
            o->token = optarg;
            break;
        case OPT_LOGIN:
            o->login = true;
            break;
        case OPT_PIN:
            o->pin = optarg;
            o->login = true;
            break;
        case OPT_MECH:
            o->mech = bench_mech_lookup(optarg);
            if (o->mech == NULL) {
                fprintf(stderr, "p11bench: unknown --mech '%s'; one of: %s\n", optarg,
                        bench_mech_names());
                return -1;
            }
            break;
        case OPT_THREADS:
            if (parse_ulong("--threads", optarg, 1, 4096, &v) != 0)
                return -1;
            o->threads = (unsigned)v;
            break;
        case OPT_SECONDS:
            if (parse_double("--seconds", optarg, 0.01, &o->seconds) != 0)
                return -1;
            break;
        case OPT_WARMUP:
            if (parse_double("--warmup", optarg, 0, &o->warmup) != 0)
                return -1;
            break;
        case OPT_DATA_SIZE:
            if (parse_ulong("--data-size", optarg, 1, BENCH_MAX_MSG, &v) != 0)
                return -1;
            o->msg_len = v;
            break;
        case OPT_VERIFY:
            if (parse_ulong("--verify", optarg, 0, (unsigned long)-1, &v) != 0)
                return -1;
            o->verify_every = v;
            break;
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_DIRECT:
            o->direct_http = true;
            break;
        case OPT_MOUNT:
            o->mount = optarg;
            break;
        case OPT_KEY:
            o->key = optarg;
            break;
        case OPT_CONNECTIONS:
            if (parse_ulong("--connections", optarg, 1, 4096, &v) != 0)
                return -1;
            o->threads = (unsigned)v;
            o->connections = true;
            break;
        case OPT_BATCH:
            if (parse_ulong("--batch", optarg, 1, BENCH_MAX_BATCH, &v) != 0)
                return -1;
            o->batch = (unsigned)v;
            break;
        case OPT_HELP:
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "p11bench: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (o->direct_http) {
        if (o->module != NULL || o->label != NULL || o->login || o->have_slot || o->token) {
            fprintf(stderr, "p11bench: --direct-http talks to Vault, not to a module: drop "
                            "--module/--label/--slot/--token/--login/--pin\n");
            return -1;
        }
        if (o->key == NULL) {
            fprintf(stderr, "p11bench: --direct-http needs --key NAME\n");
            return -1;
        }
        if (o->mech->kind == BENCH_KIND_ED25519 && o->msg_len > 3 * 1024) {
            fprintf(stderr, "p11bench: --data-size too large for one request body\n");
            return -1;
        }
    } else {
        if (o->module == NULL || o->label == NULL) {
            fprintf(stderr, "p11bench: need --module PATH and --label LABEL (or --direct-http "
                            "--key NAME)\n");
            usage(stderr);
            return -1;
        }
        if (o->key != NULL) {
            fprintf(stderr, "p11bench: --key is for --direct-http; a module key is picked by "
                            "--label\n");
            return -1;
        }
        if (o->connections) {
            fprintf(stderr, "p11bench: --connections is for --direct-http; a module has "
                            "--threads\n");
            return -1;
        }
        if (o->batch != 1) {
            fprintf(stderr, "p11bench: --batch is for --direct-http; the module batches by "
                            "itself\n");
            return -1;
        }
    }
    return 0;
}

/* What this process spent between two getrusage() calls. */
struct cost {
    double cpu_us;    /* user + system */
    double ctx_switches; /* voluntary + involuntary */
    double involuntary;  /* of them: preempted while it could run */
};

static double tv_us(const struct timeval *tv)
{
    return (double)tv->tv_sec * 1e6 + (double)tv->tv_usec;
}

static struct cost cost_between(const struct rusage *a, const struct rusage *b)
{
    struct cost c;

    c.cpu_us = tv_us(&b->ru_utime) - tv_us(&a->ru_utime) + tv_us(&b->ru_stime) -
               tv_us(&a->ru_stime);
    c.involuntary = (double)(b->ru_nivcsw - a->ru_nivcsw);
    c.ctx_switches = (double)(b->ru_nvcsw - a->ru_nvcsw) + c.involuntary;
    return c;
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static void print_text(const struct bench *b, const struct stats *t, double elapsed,
                       const struct cost *cost, const char *first_err)
{
    uint64_t sigs = t->ops * b->o.batch;
    const struct bench_opts *o = &b->o;

    printf("p11bench: %s\n", b->desc);
    printf("  mechanism %s (%s), %u thread%s, %.1f s measured after %.1f s warm-up, %zu-byte "
           "messages\n",
           o->mech->name, o->mech->ckm_name, o->threads, o->threads == 1 ? "" : "s", elapsed,
           o->warmup, o->msg_len);
    printf("  ops: %" PRIu64 " in %.3f s = %.1f ops/s\n", t->ops * o->batch, elapsed,
           elapsed > 0 ? (double)(t->ops * o->batch) / elapsed : 0.0);
    if (o->batch > 1)
        printf("  %" PRIu64 " requests of %u signatures; latency is per request\n", t->ops,
               o->batch);
    if (t->ops > 0)
        printf("  latency ms: p50 %.3f  p90 %.3f  p99 %.3f  (min %.3f  mean %.3f  max %.3f)\n",
               ms(percentile(t, 0.50)), ms(percentile(t, 0.90)), ms(percentile(t, 0.99)),
               ms(t->min_ns), ms(t->sum_ns) / (double)t->ops, ms(t->max_ns));
    if (sigs > 0)
        printf("  client cost per signature: %.1f us CPU, %.2f context switches\n",
               cost->cpu_us / (double)sigs, cost->ctx_switches / (double)sigs);
    if (first_err != NULL)
        printf("  errors: %" PRIu64 " (first: %s)\n", t->errors, first_err);
    else
        printf("  errors: %" PRIu64 "\n", t->errors);
    if (o->verify_every > 0)
        printf("  verified: %" PRIu64 " (every %lu), wrong: %" PRIu64 "\n", t->verified,
               o->verify_every, t->wrong);
}

static int print_json(const struct bench *b, const struct stats *t, double elapsed,
                      const struct cost *cost, const char *first_err)
{
    const struct bench_opts *o = &b->o;
    double sigs = (double)(t->ops * o->batch);
    json_t *root, *lat, *client;
    char *s;

    lat = json_pack("{s:f,s:f,s:f,s:f,s:f,s:f}", "min", ms(t->min_ns), "mean",
                    t->ops ? ms(t->sum_ns) / (double)t->ops : 0.0, "p50", ms(percentile(t, 0.5)),
                    "p90", ms(percentile(t, 0.9)), "p99", ms(percentile(t, 0.99)), "max",
                    ms(t->max_ns));
    client = json_pack("{s:f,s:f,s:f,s:f,s:f,s:f}", "cpu_us", cost->cpu_us, "ctx_switches",
                       cost->ctx_switches, "involuntary", cost->involuntary, "cpu_us_per_sig",
                       sigs > 0 ? cost->cpu_us / sigs : 0.0, "ctx_switches_per_sig",
                       sigs > 0 ? cost->ctx_switches / sigs : 0.0, "involuntary_per_sig",
                       sigs > 0 ? cost->involuntary / sigs : 0.0);
    root =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:f,s:f,s:I,s:I,s:f,s:I,s:s?,s:I,s:I,s:I,s:o,s:I,"
                  "s:I,s:I,s:o}",
                  "tool", "p11bench", "mode", o->direct_http ? "direct-http" : "module", "target", b->desc,
                  "key", o->direct_http ? o->key : o->label, "mech", o->mech->name, "threads",
                  (json_int_t)o->threads, "seconds", elapsed, "warmup", o->warmup, "data_size",
                  (json_int_t)o->msg_len, "ops", (json_int_t)(t->ops * o->batch), "ops_per_sec",
                  elapsed > 0 ? (double)(t->ops * o->batch) / elapsed : 0.0, "errors",
                  (json_int_t)t->errors,
                  "first_error", first_err, "verify_every", (json_int_t)o->verify_every, "verified",
                  (json_int_t)t->verified, "wrong", (json_int_t)t->wrong, "latency_ms", lat,
                  "requests", (json_int_t)t->ops, "batch", (json_int_t)o->batch, "outstanding",
                  (json_int_t)o->threads * (json_int_t)o->batch, "client", client);
    if (root == NULL) {
        fprintf(stderr, "p11bench: cannot build the JSON result\n");
        return -1;
    }
    s = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(8));
    json_decref(root);
    if (s == NULL)
        return -1;
    printf("%s\n", s);
    free(s);
    return 0;
}

int main(int argc, char **argv)
{
    struct bench b;
    struct worker *w = NULL;
    struct stats total = {0};
    const char *first_err = NULL;
    uint64_t t_measure = 0, t_stop = 0, start;
    struct rusage ru_measure, ru_stop;
    struct cost cost = {0, 0, 0};
    double elapsed;
    unsigned i, j, setup_failed = 0;
    int rc = 2;

    memset(&b, 0, sizeof(b));
    if (parse_args(argc, argv, &b.o) != 0)
        return 2;
    if (RAND_bytes((unsigned char *)&b.seed, sizeof(b.seed)) != 1)
        b.seed = now_ns() ^ ((uint64_t)getpid() << 32);

    if (b.o.direct_http) {
        if (bench_http_setup(&b.o, &b.http, &b.pub, b.desc, sizeof(b.desc)) != 0)
            return 2;
    } else {
        if (bench_p11_setup(&b.o, &b.p11, &b.pub, b.desc, sizeof(b.desc)) != 0)
            return 2;
    }
    if (b.o.verify_every > 0 && b.pub == NULL) {
        fprintf(stderr, "p11bench: --verify: no public key\n");
        goto out;
    }

    w = calloc(b.o.threads, sizeof(*w));
    total.hist = calloc(HIST_BUCKETS, sizeof(uint64_t));
    if (w == NULL || total.hist == NULL) {
        fprintf(stderr, "p11bench: out of memory\n");
        goto out;
    }
    for (i = 0; i < b.o.threads; i++) {
        w[i].st.hist = calloc(HIST_BUCKETS, sizeof(uint64_t));
        if (w[i].st.hist == NULL) {
            fprintf(stderr, "p11bench: out of memory\n");
            goto out;
        }
        w[i].st.min_ns = UINT64_MAX;
        w[i].idx = i;
        w[i].b = &b;
    }
    atomic_store(&b.phase, PHASE_SETUP);
    for (i = 0; i < b.o.threads; i++) {
        int e = pthread_create(&w[i].tid, NULL, worker_main, &w[i]);

        if (e != 0) {
            fprintf(stderr, "p11bench: pthread_create: %s\n", strerror(e));
            atomic_store(&b.phase, PHASE_STOP);
            for (j = 0; j < i; j++)
                pthread_join(w[j].tid, NULL);
            goto out;
        }
    }
    while (atomic_load(&b.ready) < b.o.threads)
        nap();
    for (i = 0; i < b.o.threads; i++) {
        if (w[i].setup_failed) {
            if (setup_failed++ == 0)
                fprintf(stderr, "p11bench: thread %u: %s\n", i, w[i].first_err);
        }
    }
    start = now_ns();
    if (setup_failed) {
        fprintf(stderr, "p11bench: %u of %u threads could not start\n", setup_failed, b.o.threads);
        atomic_store(&b.phase, PHASE_STOP);
    } else {
        atomic_store_explicit(&b.phase, PHASE_WARMUP, memory_order_release);
        wait_until(&b, start + (uint64_t)(b.o.warmup * 1e9));
        t_measure = now_ns();
        getrusage(RUSAGE_SELF, &ru_measure);
        atomic_store(&b.phase, PHASE_MEASURE);
        wait_until(&b, t_measure + (uint64_t)(b.o.seconds * 1e9));
        t_stop = now_ns();
        getrusage(RUSAGE_SELF, &ru_stop);
        cost = cost_between(&ru_measure, &ru_stop);
        atomic_store(&b.phase, PHASE_STOP);
    }
    for (i = 0; i < b.o.threads; i++)
        pthread_join(w[i].tid, NULL);
    if (setup_failed)
        goto out;
    if (atomic_load(&b.aborted))
        fprintf(stderr, "p11bench: stopped early: a thread got %d errors in a row\n",
                MAX_ERRORS_IN_A_ROW);

    total.min_ns = UINT64_MAX;
    for (i = 0; i < b.o.threads; i++) {
        const struct stats *s = &w[i].st;

        for (j = 0; j < HIST_BUCKETS; j++)
            total.hist[j] += s->hist[j];
        total.ops += s->ops;
        total.errors += s->errors;
        total.verified += s->verified;
        total.wrong += s->wrong;
        total.sum_ns += s->sum_ns;
        if (s->min_ns < total.min_ns)
            total.min_ns = s->min_ns;
        if (s->max_ns > total.max_ns)
            total.max_ns = s->max_ns;
        if (first_err == NULL && w[i].first_err[0] != '\0')
            first_err = w[i].first_err;
    }
    if (total.ops == 0)
        total.min_ns = 0;
    elapsed = (double)(t_stop - t_measure) / 1e9;
    if (b.o.json) {
        if (print_json(&b, &total, elapsed, &cost, first_err) != 0)
            goto out;
    } else {
        print_text(&b, &total, elapsed, &cost, first_err);
    }
    if (fflush(stdout) != 0) {
        perror("p11bench: stdout");
        goto out;
    }
    if (total.ops == 0)
        fprintf(stderr, "p11bench: no successful signature in the measured window\n");
    if (total.wrong > 0)
        fprintf(stderr, "p11bench: %" PRIu64 " of %" PRIu64 " checked signatures are WRONG\n",
                total.wrong, total.verified);
    if (total.errors > 0)
        fprintf(stderr, "p11bench: %" PRIu64 " signing calls failed; first: %s\n", total.errors,
                first_err != NULL ? first_err : "?");
    rc = (total.ops == 0 || total.wrong > 0 || total.errors > 0) ? 1 : 0;
out:
    if (w != NULL) {
        for (i = 0; i < b.o.threads; i++) {
            if (!w[i].setup_failed && w[i].http != NULL)
                bench_http_thread_close(w[i].http);
            else if (!w[i].setup_failed && b.p11 != NULL && w[i].sess != CK_INVALID_HANDLE)
                bench_p11_thread_close(b.p11, w[i].sess);
            free(w[i].st.hist);
        }
        free(w);
    }
    free(total.hist);
    EVP_PKEY_free(b.pub);
    bench_p11_teardown(b.p11);
    bench_http_teardown(b.http);
    return rc;
}
