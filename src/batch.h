/* batch.h - group commit of concurrent signatures into Transit batch_input (src/batch.c).
 *
 * Callers signing with the same key, version and parameters share requests: while fewer than
 * `concurrency` requests for that key are in flight a caller sends its own at once (no added
 * latency when idle); otherwise it waits, and when a request returns, the first waiter takes
 * every waiting item (up to `max_items`) along in one batch_input request. Each caller gets its
 * own item's result; no lock is held across the network.
 */
#ifndef VTP_BATCH_H
#define VTP_BATCH_H

#include <stdbool.h>

#include "vtp-pkcs11.h"
#include "vault/transit.h"

struct vtp_batch_conf {
    bool enabled;
    size_t max_items;
    size_t concurrency;
    bool rsa; /* RSA signatures in cohorts too (batch_rsa) */
    long timeout_ms; /* a caller waits in a queue at most this long (the operation deadline) */
};

void vtp_batch_configure(const struct vtp_batch_conf *conf);
/* In a forked child: forget queues the parent's threads own. */
void vtp_batch_atfork_child(void);
/* C_Finalize: drop the (idle) queues. */
void vtp_batch_clear(void);

/* Signs one item through the group-commit queues, or directly when batching is off or the key
 * is an RSA key and batch_rsa is off (see sign.c). */
CK_RV vtp_batch_sign(const struct vtp_transit *t, const char *name, unsigned long version,
                     const struct vtp_sign_params *p, bool rsa, struct vtp_sign_item *item);

struct vtp_batch_stats {
    unsigned long requests; /* sign requests sent */
    unsigned long items;    /* signatures they carried */
    unsigned long max_batch;
    unsigned long splits;   /* batches the server refused as too large, sent as halves */
    unsigned long in_flight; /* request slots taken now (0 whenever no signature is under way) */
    unsigned long waiting;   /* callers queued for a slot or a leader now */
};
void vtp_batch_get_stats(struct vtp_batch_stats *out);

#endif /* VTP_BATCH_H */
