/* fake-transit.h - an in-process Transit behind the module's operations table (the seam in
 * src/vault/transit.h), for deterministic tests of races and lifetimes that timing against a
 * real server cannot reach: a test holds signatures at a gate, counts them, and injects errors.
 * Keys are real (OpenSSL): signatures verify against the public keys the module shows. Like the
 * real operations it answers what Vault would mean with the internal error kinds of
 * src/vault/errkind.h (a missing key is VTP_ERR_KEY_MISSING). It adds to the real-OpenBao
 * tests; it replaces none. */
#ifndef VTP_FAKE_TRANSIT_H
#define VTP_FAKE_TRANSIT_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

#include "vtp-pkcs11.h"

/* Installs the fake (empty, gate open) in place of the real operations; uninstall restores
 * them and forgets the keys. */
void fake_transit_install(void);
void fake_transit_uninstall(void);

/* Adds an ecdsa-p256 key with this name, version 1; its key pair (a new reference). */
bool fake_transit_add_ec_key(const char *name);
EVP_PKEY *fake_transit_key(const char *name);
/* Deletes a key behind the module's back, as another Vault client would; false if absent. */
bool fake_transit_remove_key(const char *name);

/* Adds a key of a Transit type: ecdsa-p256/p384/p521, ed25519 or rsa-2048/3072/4096 (the RSA
 * keys of one size share one key pair, made once per process). C_GenerateKeyPair makes these
 * types too. Signing works with the EC keys. */
bool fake_transit_add_key(const char *name, const char *type);

/* KV v2 (off after install: every path absent, writes refused, kv_mount = auto finds none): on,
 * an in-memory store shared by every kv_mount, with check-and-set versions, emptied by
 * uninstall. */
void fake_transit_enable_kv(bool on);

/* The gate: while closed, every sign request waits at it (holding its items). */
void fake_transit_gate_close(void);
void fake_transit_gate_open(void);
/* Lets exactly n sign requests through the closed gate (those waiting first). */
void fake_transit_gate_release(unsigned n);
/* Waits (up to timeout_ms) until at least n sign requests wait at the gate; false on timeout. */
bool fake_transit_wait_at_gate(unsigned n, long timeout_ms);

/* While held, LIST of the keys waits before it answers (with the names as they were when it
 * was asked): a slow refresh. wait_lists: until n LIST requests wait (false on timeout). */
void fake_transit_hold_lists(bool hold);
bool fake_transit_wait_lists(unsigned n, long timeout_ms);

/* The answer of every later sign request: CKR_OK (sign), or an error for the whole request (an
 * internal error kind, vault/errkind.h, as the real Transit layer returns). */
void fake_transit_fail_signs(CK_RV rv);

struct fake_transit_stats {
    unsigned long sign_requests; /* sign requests answered */
    unsigned long sign_items;    /* signatures in them */
    unsigned at_gate;            /* sign requests waiting at the gate now */
    unsigned max_in_sign;        /* most sign requests under way at once */
};
void fake_transit_stats(struct fake_transit_stats *out);

#endif /* VTP_FAKE_TRANSIT_H */
