/* batch.c - group commit of concurrent signatures. */
#define _GNU_SOURCE 1 /* sem_clockwait: a semaphore wait on CLOCK_MONOTONIC */
#include "common.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "util.h"
#include "vault/http.h"

/* One caller's place in a queue. A caller sleeps on its own semaphore, posted once: by a
 * returning request that makes it the next leader (under the lock), or by the leader whose
 * request carried its item (after the lock is released: the caller reads its result without
 * the lock, so a batch of n wakes n callers that take no lock on the way out). */
enum waiter_state {
    W_WAITING, /* queued */
    W_LEADER,  /* promoted: holds a request slot and sends the waiting items */
    W_TAKEN,   /* off the queue in a leader's request: waits for it, whatever the time */
    W_DONE,    /* its item has its result */
};

struct waiter {
    struct vtp_sign_item *item;
    struct waiter *next;
    _Atomic int state;
    int64_t start_us; /* when the caller arrived (monotonic) */
    sem_t sem;
};

/* The requests of one key, version and parameter set. */
struct queue {
    const struct vtp_transit *t;
    char *name;
    unsigned long version;
    struct vtp_sign_params p; /* strings point to the mechanism table, which is static */
    size_t in_flight;           /* requests under way */
    size_t waiting;             /* callers queued (W_WAITING) */
    size_t inside;              /* callers between arrival and result */
    size_t peak, peak_prev;     /* most callers inside in this window and the one before */
    int64_t window_us;          /* when this window started */
    int64_t request_us;         /* average duration of a request (moving average) */
    struct waiter *head, *tail; /* waiting, in arrival order */
    struct queue *next;
};

/* Idle queues are kept (no allocation per signature for a lone caller), up to this many. */
#define MAX_QUEUES 256

static void queue_drop_locked(struct queue *q);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct queue *queues;
static size_t n_queues;
static struct vtp_batch_conf conf = {true, 200, 2, true, 30000};
/* The largest batch the server took after it refused a bigger one as too large (a listener
 * with lower JSON limits than the defaults); 0 while none was refused. */
static size_t learned_max;
static unsigned long stat_requests, stat_items, stat_max, stat_splits;

void vtp_batch_configure(const struct vtp_batch_conf *c)
{
    pthread_mutex_lock(&lock);
    conf = *c;
    stat_requests = stat_items = stat_max = stat_splits = 0; /* counted from C_Initialize */
    learned_max = 0;
    if (conf.max_items == 0 || conf.max_items > VTP_TRANSIT_MAX_BATCH)
        conf.max_items = VTP_TRANSIT_MAX_BATCH;
    if (conf.concurrency == 0)
        conf.concurrency = 1;
    if (conf.timeout_ms <= 0)
        conf.timeout_ms = 30000;
    pthread_mutex_unlock(&lock);
}

void vtp_batch_atfork_child(void)
{
    pthread_mutex_init(&lock, NULL);
    queues = NULL; /* owned by the parent's threads; leaked on purpose */
    n_queues = 0;
}

/* C_Finalize, after every call has left: every queue is idle. The queues point to slots'
 * Transit settings, which are about to be freed, so all go (a later C_Initialize may put new
 * settings at the same address). */
void vtp_batch_clear(void)
{
    struct queue *q, *next;

    pthread_mutex_lock(&lock);
    for (q = queues; q != NULL; q = next) {
        next = q->next;
        if (q->in_flight != 0 || q->head != NULL)
            VTP_LOG_ERR("batch queue of %s still has %zu request(s) in flight at C_Finalize",
                        q->name, q->in_flight);
        queue_drop_locked(q);
    }
    pthread_mutex_unlock(&lock);
}

void vtp_batch_get_stats(struct vtp_batch_stats *out)
{
    pthread_mutex_lock(&lock);
    out->requests = stat_requests;
    out->items = stat_items;
    out->max_batch = stat_max;
    out->splits = stat_splits;
    out->in_flight = out->waiting = 0;
    for (const struct queue *q = queues; q != NULL; q = q->next) {
        out->in_flight += q->in_flight;
        out->waiting += q->waiting;
    }
    pthread_mutex_unlock(&lock);
}

static bool str_eq(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool same(const struct queue *q, const struct vtp_transit *t, const char *name,
                 unsigned long version, const struct vtp_sign_params *p)
{
    return q->t == t && q->version == version && strcmp(q->name, name) == 0 &&
           q->p.prehashed == p->prehashed && q->p.salt_length == p->salt_length &&
           str_eq(q->p.hash_algorithm, p->hash_algorithm) &&
           str_eq(q->p.signature_algorithm, p->signature_algorithm);
}

static struct queue *queue_get_locked(const struct vtp_transit *t, const char *name,
                                      unsigned long version, const struct vtp_sign_params *p)
{
    struct queue *q;

    for (q = queues; q != NULL; q = q->next)
        if (same(q, t, name, version, p))
            return q;
    q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NULL;
    q->name = strdup(name);
    if (q->name == NULL) {
        free(q);
        return NULL;
    }
    q->t = t;
    q->version = version;
    q->p = *p;
    q->next = queues;
    queues = q;
    n_queues++;
    return q;
}

static void queue_drop_locked(struct queue *q)
{
    struct queue **pp;

    for (pp = &queues; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == q) {
            *pp = q->next;
            break;
        }
    }
    free(q->name);
    free(q);
    n_queues--;
}

/* Signs arr[0..n-1] in one request; when the server refuses a batch as too large
 * (VTP_ERR_TOO_LARGE: HTTP 413, OpenBao's "refused JSON input due to high complexity" for a
 * listener whose max_request_json_strings is below the default, HashiCorp Vault's JSON limits),
 * signs each half on its own and remembers the smaller size for later batches. Every item ends
 * with its own rv. */
static void sign_items(struct queue *q, struct vtp_sign_item *arr, size_t n)
{
    CK_RV rv = vtp_transit_sign(q->t, q->name, q->version, &q->p, arr, n);

    if (rv == VTP_ERR_TOO_LARGE && n > 1) {
        size_t half = n / 2;
        bool first = false;

        pthread_mutex_lock(&lock);
        stat_splits++;
        if (learned_max == 0 || learned_max > half) {
            first = learned_max == 0;
            learned_max = half;
        }
        pthread_mutex_unlock(&lock);
        if (first)
            VTP_LOG_WARN("Vault refused a batch of %zu signatures with %s as too large (its "
                         "JSON limits are below the defaults); sending at most %zu per request "
                         "from now on (lower [module] batch_max_items to avoid the retries)",
                         n, q->name, half);
        else
            VTP_LOG_DEBUG("batch of %zu signatures with %s refused as too large; halving", n,
                          q->name);
        sign_items(q, arr, half);
        sign_items(q, arr + half, n - half);
        return;
    }
    if (rv == CKR_OK)
        return; /* each item has its own rv */
    for (size_t i = 0; i < n; i++) {
        arr[i].rv = rv;
        free(arr[i].sig);
        arr[i].sig = NULL;
        arr[i].sig_len = 0;
    }
}

/* How many callers sign with this queue's key at once: the most that were inside at the same
 * time in the last one or two windows of WINDOW_US (a caller between two signatures is not
 * inside, so the count of the moment dips each time a batch returns). */
#define WINDOW_US 250000

static size_t callers_locked(struct queue *q, int64_t now)
{
    if (now - q->window_us >= WINDOW_US) {
        q->peak_prev = now - q->window_us >= 2 * WINDOW_US ? 0 : q->peak;
        q->peak = q->inside;
        q->window_us = now;
    }
    if (q->inside > q->peak)
        q->peak = q->inside;
    return q->peak > q->peak_prev ? q->peak : q->peak_prev;
}

/* The batch a request should carry: the callers spread evenly over the request slots, so
 * that the requests in flight carry about the same number each (Transit signs the items of
 * one request one after another on one core; equal cohorts keep the server's cores busy).
 * With at most two callers a slot, each caller sends its own request instead: a cohort of two
 * signed no faster than two plain requests and took twice as long (4 threads, 2 slots: 7.0k
 * signatures/s at p50 0.47 ms against 7.3k at 0.22 ms), since its two callers must both come
 * back before it leaves; from four a cohort wins (8 threads: 11.7k against 7.2k). */
static size_t cohort_locked(struct queue *q, int64_t now)
{
    size_t callers = callers_locked(q, now);

    return callers <= 2 * conf.concurrency ? 1
                                           : (callers + conf.concurrency - 1) / conf.concurrency;
}

/* Requests in flight at once: batch_concurrency, or one per caller when they go alone. */
static size_t slots_locked(struct queue *q, int64_t now)
{
    return cohort_locked(q, now) == 1 ? 2 * conf.concurrency : conf.concurrency;
}

/* How long the oldest waiter waits for its cohort to fill while a request slot is free:
 * half a request, within [GATHER_MIN_US, GATHER_MAX_US]. Callers of a cohort that just
 * returned come back one after another; going out with the first of them would send a
 * request of one beside a full one. */
#define GATHER_MIN_US 50
#define GATHER_MAX_US 2000

static int64_t gather_us(const struct queue *q)
{
    int64_t g = q->request_us / 2;

    return g < GATHER_MIN_US ? GATHER_MIN_US : g > GATHER_MAX_US ? GATHER_MAX_US : g;
}

/* Whether the waiting callers should go now: a request slot is free and either nothing is in
 * flight (the server is idle), or a cohort's worth is waiting, or the oldest has waited for
 * its cohort long enough. */
static bool ready_locked(struct queue *q, int64_t now)
{
    if (q->waiting == 0 || q->in_flight >= slots_locked(q, now))
        return false;
    return q->in_flight == 0 || q->waiting >= cohort_locked(q, now) ||
           now - q->head->start_us >= gather_us(q);
}

/* Sends items (with the lock released) and records the results. */
static void send_locked(struct queue *q, struct vtp_sign_item **items, size_t n)
{
    struct vtp_sign_item *arr = NULL, one;
    int64_t t0;

    stat_requests++;
    stat_items += n;
    if (n > stat_max)
        stat_max = n;
    pthread_mutex_unlock(&lock);
    t0 = vtp_now_us();
    if (n == 1) {
        one = *items[0];
        arr = &one;
    } else {
        arr = calloc(n, sizeof(*arr));
    }
    if (arr == NULL) {
        for (size_t i = 0; i < n; i++)
            items[i]->rv = CKR_HOST_MEMORY;
    } else {
        for (size_t i = 0; n > 1 && i < n; i++)
            arr[i] = *items[i];
        sign_items(q, arr, n);
        for (size_t i = 0; i < n; i++)
            *items[i] = arr[i];
        if (n > 1)
            VTP_LOG_DEBUG("batch of %zu signatures with %s v%lu: first item %s", n, q->name,
                          q->version, vtp_rv_name(arr[0].rv));
        if (arr != &one)
            free(arr);
    }
    t0 = vtp_now_us() - t0;
    pthread_mutex_lock(&lock);
    /* moving average over about 8 requests */
    q->request_us = q->request_us == 0 ? t0 : q->request_us + (t0 - q->request_us) / 8;
}

static void unlink_locked(struct queue *q, struct waiter *w)
{
    struct waiter **pp, *prev = NULL;

    for (pp = &q->head; *pp != NULL; prev = *pp, pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            if (q->tail == w)
                q->tail = prev;
            w->next = NULL;
            q->waiting--;
            return;
        }
    }
}

/* w leaves the queue to lead a request, with a request slot of its own. */
static void lead_locked(struct queue *q, struct waiter *w)
{
    unlink_locked(q, w);
    q->in_flight++;
    atomic_store(&w->state, W_LEADER);
}

/* The oldest waiter leads the next request. The post is made under the lock: the promoted
 * waiter may time out at the same moment and must find itself promoted. */
static void promote_head_locked(struct queue *q)
{
    struct waiter *w = q->head;

    lead_locked(q, w);
    sem_post(&w->sem);
}

/* A request returned and its n callers are leaving: give its slot to the oldest waiter when
 * the waiting callers should go now (it takes the others along), or give the slot back; a
 * waiter left queued either fills its cohort, is taken by the next return, or leads when it
 * has waited long enough. */
static void request_done_locked(struct queue *q, size_t n)
{
    q->inside -= n;
    q->in_flight--;
    if (ready_locked(q, vtp_now_us())) {
        promote_head_locked(q); /* the slot goes to the new leader */
        return;
    }
    if (q->in_flight == 0 && q->inside == 0 && n_queues > MAX_QUEUES)
        queue_drop_locked(q);
}

/* The leader's request: the leader's own item first, then the waiters, in arrival order, up
 * to max. */
static size_t take_locked(struct queue *q, struct waiter *leader, struct vtp_sign_item **items,
                          struct waiter **ws, size_t max)
{
    struct waiter *w;
    size_t n = 0;

    ws[n] = leader;
    items[n++] = leader->item;
    while ((w = q->head) != NULL && n < max) {
        unlink_locked(q, w);
        atomic_store(&w->state, W_TAKEN);
        ws[n] = w;
        items[n++] = w->item;
    }
    return n;
}

/* Semaphore waits on CLOCK_REALTIME, converted from the monotonic deadline at each wait: where
 * sem_clockwait is missing (glibc before 2.30, musl) and under ThreadSanitizer (below). */
#if defined(__SANITIZE_THREAD__) || !defined(HAVE_SEM_CLOCKWAIT)
#define VTP_REALTIME_WAIT 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VTP_REALTIME_WAIT 1
#endif
#endif

/* Sleeps until the semaphore is posted or the monotonic time until_us: 0, or ETIMEDOUT. */
static int sleep_until(struct waiter *w, int64_t until_us)
{
    struct timespec ts;
    int rc;

    do {
#ifdef VTP_REALTIME_WAIT
        /* ThreadSanitizer intercepts sem_timedwait but not sem_clockwait: without its
         * interceptor it would see no order between a post and the wait, and could not run a
         * signal handler in the waiting thread until it next took a lock. In that build the
         * deadline is on CLOCK_REALTIME, converted from the monotonic one at each wait. */
        int64_t left = until_us - vtp_now_us(), at;

        clock_gettime(CLOCK_REALTIME, &ts);
        at = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 + (left > 0 ? left : 0);
        ts.tv_sec = (time_t)(at / 1000000);
        ts.tv_nsec = (long)(at % 1000000) * 1000;
        rc = sem_timedwait(&w->sem, &ts);
#else
        ts.tv_sec = (time_t)(until_us / 1000000);
        ts.tv_nsec = (long)(until_us % 1000000) * 1000;
        rc = sem_clockwait(&w->sem, CLOCK_MONOTONIC, &ts);
#endif
        if (rc != 0 && errno == ETIMEDOUT)
            return ETIMEDOUT;
        /* EINTR: a signal handler ran; wait on */
    } while (rc != 0);
    return 0;
}

CK_RV vtp_batch_sign(const struct vtp_transit *t, const char *name, unsigned long version,
                     const struct vtp_sign_params *p, bool rsa, struct vtp_sign_item *item)
{
    struct vtp_sign_item *items[VTP_TRANSIT_MAX_BATCH];
    struct waiter me = {.item = item, .state = W_WAITING};
    struct waiter *ws[VTP_TRANSIT_MAX_BATCH];
    struct queue *q;
    int64_t now, deadline_us, oldest;
    size_t n, max;

    pthread_mutex_lock(&lock);
    if (!conf.enabled || (rsa && !conf.rsa)) {
        stat_requests++; /* a request of its own: counted as a batch of one */
        stat_items++;
        if (stat_max == 0)
            stat_max = 1;
        pthread_mutex_unlock(&lock);
        return vtp_transit_sign(t, name, version, p, item, 1);
    }
    q = queue_get_locked(t, name, version, p);
    if (q == NULL) {
        pthread_mutex_unlock(&lock);
        return CKR_HOST_MEMORY;
    }
    now = vtp_now_us();
    q->inside++;
    if (q->head == NULL && (q->in_flight == 0 || (cohort_locked(q, now) == 1 &&
                                                  q->in_flight < slots_locked(q, now)))) {
        /* Idle, or a slot free and few enough callers for one each: go now, alone, as a plain
         * sign request. */
        q->in_flight++;
        send_locked(q, &item, 1);
        request_done_locked(q, 1);
        pthread_mutex_unlock(&lock);
        return CKR_OK;
    }
    if (sem_init(&me.sem, 0, 0) != 0) {
        q->inside--;
        pthread_mutex_unlock(&lock);
        return CKR_HOST_MEMORY;
    }
    me.start_us = now;
    deadline_us = now + (int64_t)conf.timeout_ms * 1000;
    if (q->tail != NULL)
        q->tail->next = &me;
    else
        q->head = &me;
    q->tail = &me;
    q->waiting++;
    if (ready_locked(q, now)) {
        /* This arrival completes a cohort (or finds the server idle): lead it at once. */
        lead_locked(q, &me);
    }
    while (atomic_load(&me.state) == W_WAITING) {
        /* The oldest waiter also wakes when it has waited long enough for its cohort; when
         * every slot is taken then, the next request to return makes it the leader. */
        int64_t until = deadline_us, gathered = me.start_us + gather_us(q);

        if (q->head == &me && gathered > now && gathered < until)
            until = gathered;
        pthread_mutex_unlock(&lock);
        if (sleep_until(&me, until) == 0) {
            if (atomic_load(&me.state) == W_DONE) {
                sem_destroy(&me.sem);
                return CKR_OK; /* carried; the leader has done the accounting */
            }
            pthread_mutex_lock(&lock); /* promoted: the post was made under the lock */
            break;
        }
        pthread_mutex_lock(&lock);
        if (atomic_load(&me.state) != W_WAITING)
            break; /* promoted or taken just now */
        now = vtp_now_us();
        if (q->head == &me && ready_locked(q, now)) {
            lead_locked(q, &me);
            break;
        }
        if (now >= deadline_us) {
            /* Still waiting after a whole deadline (the requests ahead are that slow): give
             * up rather than start a request of its own that would double it. */
            unlink_locked(q, &me);
            q->inside--;
            pthread_mutex_unlock(&lock);
            VTP_LOG_ERR("signature with %s waited %ld ms for a request slot", name,
                        conf.timeout_ms);
            sem_destroy(&me.sem);
            item->rv = CKR_DEVICE_ERROR;
            return CKR_OK;
        }
    }
    if (atomic_load(&me.state) != W_LEADER) {
        /* Taken: a leader's request carries this item and posts once, when it is done (the
         * post may not have come yet even if the state says so): wait for it, whatever the
         * time (it ends at the leader's deadline, which comes before this caller's). */
        pthread_mutex_unlock(&lock);
        while (sem_wait(&me.sem) != 0 && errno == EINTR)
            ;
        sem_destroy(&me.sem);
        return CKR_OK;
    }
    /* Leader (in_flight counts its slot): carry everyone waiting, up to the cap. */
    max = learned_max != 0 && learned_max < conf.max_items ? learned_max : conf.max_items;
    n = take_locked(q, &me, items, ws, max);
    oldest = me.start_us;
    for (size_t i = 1; i < n; i++)
        if (ws[i]->start_us < oldest)
            oldest = ws[i]->start_us;
    /* Left behind by the cap: they may go at once in a slot of their own (the new head's
     * gather timer was not armed: it was not the head when it went to sleep). */
    if (ready_locked(q, vtp_now_us()))
        promote_head_locked(q);
    /* The request ends when the operation of the oldest caller it carries is out of time (a
     * carried caller waits for it whatever its own deadline). */
    vtp_http_call_deadline(oldest / 1000 + conf.timeout_ms);
    send_locked(q, items, n);
    vtp_http_call_deadline(0);
    request_done_locked(q, n); /* may free q: nothing touches it after this */
    pthread_mutex_unlock(&lock);
    for (size_t i = 1; i < n; i++) {
        atomic_store(&ws[i]->state, W_DONE);
        sem_post(&ws[i]->sem);
    }
    sem_destroy(&me.sem);
    return CKR_OK;
}
