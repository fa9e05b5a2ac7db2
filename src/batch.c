/* batch.c - group commit of concurrent signatures. */
#include "common.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "util.h"
#include "vault/http.h"

/* One caller's place in a queue. Each waiter sleeps on its own condition variable, so a
 * returning request wakes exactly the callers it carried and the next leader, not every
 * thread queued on the key. */
struct waiter {
    struct vtp_sign_item *item;
    struct waiter *next;
    bool done;
    bool leader;   /* promoted: holds a request slot and sends the waiting items */
    bool taken;    /* off the queue in a leader's request: wait for it, whatever the time */
    int64_t start; /* when the caller arrived (vtp_now_ms) */
    pthread_cond_t cond; /* on CLOCK_MONOTONIC: a wall-clock step times out no one */
};

/* The requests of one key, version and parameter set. */
struct queue {
    const struct vtp_transit *t;
    char *name;
    unsigned long version;
    struct vtp_sign_params p; /* strings point to the mechanism table, which is static */
    size_t in_flight;
    struct waiter *head, *tail; /* waiting, in arrival order */
    struct queue *next;
};

/* Idle queues are kept (no allocation per signature for a lone caller), up to this many. */
#define MAX_QUEUES 256

static void queue_drop_locked(struct queue *q);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct queue *queues;
static size_t n_queues;
static struct vtp_batch_conf conf = {true, 200, 4, 30000};
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
        for (const struct waiter *w = q->head; w != NULL; w = w->next)
            out->waiting++;
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

/* Sends items (with the lock released) and records the results. */
static void send_locked(struct queue *q, struct vtp_sign_item **items, size_t n)
{
    struct vtp_sign_item *arr = NULL, one;

    stat_requests++;
    stat_items += n;
    if (n > stat_max)
        stat_max = n;
    pthread_mutex_unlock(&lock);
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
    pthread_mutex_lock(&lock);
}

/* After a request returned: hand its slot to the first waiter that has none, or give the slot
 * back. A waiter promoted by an earlier return that has not run yet keeps the slot it got;
 * promoting it again would make two slots one (and leak the other). */
static void hand_over_locked(struct queue *q)
{
    for (struct waiter *w = q->head; w != NULL; w = w->next) {
        if (!w->leader) {
            w->leader = true;
            pthread_cond_signal(&w->cond);
            return; /* in_flight stays: the new leader uses this request slot */
        }
    }
    q->in_flight--;
    if (q->in_flight == 0 && n_queues > MAX_QUEUES)
        queue_drop_locked(q);
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
            return;
        }
    }
}

/* The leader's request: the leader's own item first, then the waiters behind it that have no
 * slot of their own, in arrival order, up to max. Other promoted leaders stay queued: each
 * sends its own request with its own slot. */
static size_t take_locked(struct queue *q, struct waiter *leader, struct vtp_sign_item **items,
                          struct waiter **ws, size_t max)
{
    struct waiter *w, *next;
    size_t n = 0;

    unlink_locked(q, leader);
    ws[n] = leader;
    items[n++] = leader->item;
    for (w = q->head; w != NULL && n < max; w = next) {
        next = w->next;
        if (w->leader)
            continue;
        unlink_locked(q, w);
        w->taken = true;
        ws[n] = w;
        items[n++] = w->item;
    }
    return n;
}

CK_RV vtp_batch_sign(const struct vtp_transit *t, const char *name, unsigned long version,
                     const struct vtp_sign_params *p, bool batchable,
                     struct vtp_sign_item *item)
{
    struct vtp_sign_item *items[VTP_TRANSIT_MAX_BATCH];
    struct waiter me = {item, NULL, false, false, false, vtp_now_ms(), PTHREAD_COND_INITIALIZER};
    pthread_condattr_t attr;
    struct waiter *ws[VTP_TRANSIT_MAX_BATCH];
    struct queue *q;
    struct timespec until;
    size_t n, max;

    pthread_mutex_lock(&lock);
    if (!conf.enabled || !batchable) {
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
    if (q->in_flight < conf.concurrency) {
        /* A free request slot: go now, alone. */
        q->in_flight++;
        send_locked(q, &item, 1);
        hand_over_locked(q);
        pthread_mutex_unlock(&lock);
        return CKR_OK;
    }
    /* Wait for a returning request to hand over, or for a leader to carry this item. */
    if (pthread_condattr_init(&attr) != 0 ||
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&me.cond, &attr) != 0) {
        pthread_mutex_unlock(&lock);
        return CKR_HOST_MEMORY;
    }
    pthread_condattr_destroy(&attr);
    if (q->tail != NULL)
        q->tail->next = &me;
    else
        q->head = &me;
    q->tail = &me;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += conf.timeout_ms / 1000;
    until.tv_nsec += (conf.timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (!me.done && !me.leader) {
        if (me.taken) {
            /* A leader's request carries this item and will write its result here: wait for
             * it (it ends at the leader's deadline, which comes before this caller's). */
            pthread_cond_wait(&me.cond, &lock);
            continue;
        }
        if (pthread_cond_timedwait(&me.cond, &lock, &until) == ETIMEDOUT && !me.done &&
            !me.leader && !me.taken) {
            /* Still waiting after a whole deadline (the requests ahead are that slow): give
             * up rather than start a request of its own that would double it. */
            unlink_locked(q, &me);
            pthread_mutex_unlock(&lock);
            VTP_LOG_ERR("signature with %s waited %ld ms for a request slot", name,
                        conf.timeout_ms);
            pthread_cond_destroy(&me.cond);
            item->rv = CKR_DEVICE_ERROR;
            return CKR_OK;
        }
    }
    if (me.done) {
        pthread_mutex_unlock(&lock);
        pthread_cond_destroy(&me.cond);
        return CKR_OK;
    }
    /* Leader (this item is at the head): carry everyone waiting, up to the cap. */
    max = learned_max != 0 && learned_max < conf.max_items ? learned_max : conf.max_items;
    n = take_locked(q, &me, items, ws, max);
    /* The leader is the oldest waiter: the request ends when its operation's time is up. */
    vtp_http_call_deadline(me.start + conf.timeout_ms);
    send_locked(q, items, n);
    vtp_http_call_deadline(0);
    for (size_t i = 0; i < n; i++) {
        ws[i]->done = true;
        if (ws[i] != &me)
            pthread_cond_signal(&ws[i]->cond);
    }
    hand_over_locked(q); /* may free q: nothing touches it after this */
    pthread_mutex_unlock(&lock);
    pthread_cond_destroy(&me.cond);
    return CKR_OK;
}
