/* fake-transit.c - an in-process Transit for deterministic tests (see fake-transit.h). */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "fake-transit.h"
#include "vault/transit.h"

struct fkey {
    char *name;
    EVP_PKEY *pkey;
    unsigned char *spki;
    size_t spki_len;
    struct fkey *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static struct fkey *keys;
static bool gate_closed;
static unsigned tickets; /* requests let through the closed gate */
static bool lists_held;  /* LIST answers wait (after the names are taken) */
static unsigned lists_waiting;
static CK_RV sign_rv = CKR_OK;
static unsigned at_gate, in_sign, max_in_sign;
static unsigned long sign_requests, sign_items;

static struct fkey *find_locked(const char *name)
{
    for (struct fkey *k = keys; k != NULL; k = k->next)
        if (strcmp(k->name, name) == 0)
            return k;
    return NULL;
}

bool fake_transit_add_ec_key(const char *name)
{
    struct fkey *k = calloc(1, sizeof(*k));
    unsigned char *p = NULL;
    int len;

    if (k == NULL)
        return false;
    k->name = strdup(name);
    k->pkey = EVP_EC_gen("P-256");
    if (k->name == NULL || k->pkey == NULL || (len = i2d_PUBKEY(k->pkey, &p)) <= 0) {
        free(k->name);
        EVP_PKEY_free(k->pkey);
        free(k);
        return false;
    }
    k->spki = p;
    k->spki_len = (size_t)len;
    pthread_mutex_lock(&lock);
    k->next = keys;
    keys = k;
    pthread_mutex_unlock(&lock);
    return true;
}

static CK_RV f_list_keys(const struct vtp_transit *t, char ***names, size_t *n)
{
    size_t count = 0, i = 0;
    char **v;

    (void)t;
    pthread_mutex_lock(&lock);
    for (struct fkey *k = keys; k != NULL; k = k->next)
        count++;
    v = calloc(count + 1, sizeof(*v));
    for (struct fkey *k = keys; v != NULL && k != NULL; k = k->next)
        v[i++] = strdup(k->name);
    /* a slow answer: the names as they were when asked */
    lists_waiting++;
    pthread_cond_broadcast(&changed);
    while (lists_held)
        pthread_cond_wait(&changed, &lock);
    lists_waiting--;
    pthread_mutex_unlock(&lock);
    if (v == NULL)
        return CKR_HOST_MEMORY;
    *names = v;
    *n = i;
    return CKR_OK;
}

static CK_RV f_read_key(const struct vtp_transit *t, const char *name, struct vtp_transit_key **out)
{
    struct vtp_transit_key *tk;
    struct fkey *k;
    CK_RV rv = VTP_ERR_KEY_MISSING;

    (void)t;
    pthread_mutex_lock(&lock);
    k = find_locked(name);
    if (k != NULL) {
        rv = CKR_HOST_MEMORY;
        tk = calloc(1, sizeof(*tk));
        if (tk != NULL) {
            tk->name = strdup(name);
            tk->type = strdup("ecdsa-p256");
            tk->spki = malloc(k->spki_len);
            tk->latest_version = 1;
            tk->supports_signing = true;
            if (tk->name != NULL && tk->type != NULL && tk->spki != NULL) {
                memcpy(tk->spki, k->spki, k->spki_len);
                tk->spki_len = k->spki_len;
                *out = tk;
                rv = CKR_OK;
            } else {
                vtp_transit_key_free(tk);
            }
        }
    }
    pthread_mutex_unlock(&lock);
    return rv;
}

static CK_RV f_create_key(const struct vtp_transit *t, const char *name, const char *type,
                          struct vtp_transit_key **out)
{
    if (strcmp(type, "ecdsa-p256") != 0)
        return CKR_MECHANISM_INVALID;
    pthread_mutex_lock(&lock);
    bool exists = find_locked(name) != NULL;
    pthread_mutex_unlock(&lock);
    if (!exists && !fake_transit_add_ec_key(name))
        return CKR_HOST_MEMORY;
    return f_read_key(t, name, out);
}

/* Takes the key out of the list and frees it; false if there is none of that name. */
static bool remove_key(const char *name)
{
    struct fkey **pp, *k = NULL;

    pthread_mutex_lock(&lock);
    for (pp = &keys; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, name) == 0) {
            k = *pp;
            *pp = k->next;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    if (k == NULL)
        return false;
    free(k->name);
    EVP_PKEY_free(k->pkey);
    OPENSSL_free(k->spki);
    free(k);
    return true;
}

bool fake_transit_remove_key(const char *name)
{
    return remove_key(name);
}

static CK_RV f_delete_key(const struct vtp_transit *t, const char *name)
{
    (void)t;
    return remove_key(name) ? CKR_OK : VTP_ERR_KEY_MISSING;
}

/* ECDSA over the digest (or over SHA-256 of the message), DER, as Transit answers. */
static CK_RV sign_one(EVP_PKEY *pkey, const struct vtp_sign_params *p, struct vtp_sign_item *it)
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    const unsigned char *in = it->input;
    size_t in_len = it->input_len, len = 0;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pkey, NULL);
    CK_RV rv = CKR_FUNCTION_FAILED;

    if (!p->prehashed) {
        SHA256(it->input, it->input_len, digest);
        in = digest;
        in_len = sizeof(digest);
    }
    if (ctx != NULL && EVP_PKEY_sign_init(ctx) == 1 &&
        EVP_PKEY_sign(ctx, NULL, &len, in, in_len) == 1 && (it->sig = malloc(len)) != NULL &&
        EVP_PKEY_sign(ctx, it->sig, &len, in, in_len) == 1) {
        it->sig_len = len;
        rv = CKR_OK;
    } else {
        free(it->sig);
        it->sig = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    it->rv = rv;
    return rv;
}

static CK_RV f_sign(const struct vtp_transit *t, const char *name, unsigned long version,
                    const struct vtp_sign_params *p, struct vtp_sign_item *items, size_t n)
{
    struct fkey *k;
    CK_RV rv;

    (void)t;
    (void)version;
    pthread_mutex_lock(&lock);
    in_sign++;
    if (in_sign > max_in_sign)
        max_in_sign = in_sign;
    at_gate++;
    pthread_cond_broadcast(&changed);
    while (gate_closed && tickets == 0)
        pthread_cond_wait(&changed, &lock);
    if (gate_closed)
        tickets--;
    at_gate--;
    rv = sign_rv;
    k = find_locked(name);
    if (rv == CKR_OK && k == NULL)
        rv = VTP_ERR_KEY_MISSING; /* 400 "signing key not found" */
    if (rv == CKR_OK)
        EVP_PKEY_up_ref(k->pkey);
    sign_requests++;
    sign_items += n;
    pthread_mutex_unlock(&lock);
    for (size_t i = 0; rv == CKR_OK && i < n; i++)
        sign_one(k->pkey, p, &items[i]);
    if (rv == CKR_OK)
        EVP_PKEY_free(k->pkey);
    pthread_mutex_lock(&lock);
    in_sign--;
    pthread_mutex_unlock(&lock);
    return rv;
}

static CK_RV f_decrypt(const struct vtp_transit *t, const char *name, unsigned long version,
                       const unsigned char *ct, size_t ct_len, unsigned char **pt, size_t *pt_len)
{
    (void)t, (void)name, (void)version, (void)ct, (void)ct_len, (void)pt, (void)pt_len;
    return CKR_FUNCTION_FAILED;
}

static CK_RV f_random(const struct vtp_transit *t, unsigned char *out, size_t len)
{
    (void)t;
    return RAND_bytes(out, (int)len) == 1 ? CKR_OK : CKR_FUNCTION_FAILED;
}

/* No KV: every path is absent, writes are refused (as a policy would). */
static CK_RV f_kv_read(const struct vtp_transit *t, const char *path, json_t **data)
{
    (void)t, (void)path;
    *data = NULL;
    return CKR_OK;
}

static CK_RV f_kv_write(const struct vtp_transit *t, const char *path, json_t *data, long cas)
{
    (void)t, (void)path, (void)data, (void)cas;
    return VTP_ERR_DENIED;
}

static CK_RV f_kv_delete(const struct vtp_transit *t, const char *path)
{
    (void)t, (void)path;
    return CKR_OK;
}

static CK_RV f_kv_list(const struct vtp_transit *t, const char *path, char ***names, size_t *n)
{
    (void)t, (void)path;
    *names = NULL;
    *n = 0;
    return CKR_OK;
}

static const struct vtp_transit_ops fake_ops = {
    .list_keys = f_list_keys,
    .read_key = f_read_key,
    .create_key = f_create_key,
    .delete_key = f_delete_key,
    .sign = f_sign,
    .decrypt = f_decrypt,
    .random = f_random,
    .kv_read = f_kv_read,
    .kv_write = f_kv_write,
    .kv_delete = f_kv_delete,
    .kv_list = f_kv_list,
};

void fake_transit_install(void)
{
    pthread_mutex_lock(&lock);
    gate_closed = false;
    tickets = 0;
    lists_held = false;
    sign_rv = CKR_OK;
    at_gate = in_sign = max_in_sign = 0;
    sign_requests = sign_items = 0;
    pthread_mutex_unlock(&lock);
    vtp_transit_set_ops(&fake_ops);
}

void fake_transit_uninstall(void)
{
    vtp_transit_set_ops(NULL);
    while (keys != NULL)
        f_delete_key(NULL, keys->name);
}

void fake_transit_gate_close(void)
{
    pthread_mutex_lock(&lock);
    gate_closed = true;
    pthread_mutex_unlock(&lock);
}

void fake_transit_gate_release(unsigned n)
{
    pthread_mutex_lock(&lock);
    tickets += n;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

EVP_PKEY *fake_transit_key(const char *name)
{
    EVP_PKEY *pk = NULL;
    struct fkey *k;

    pthread_mutex_lock(&lock);
    k = find_locked(name);
    if (k != NULL && EVP_PKEY_up_ref(k->pkey) == 1)
        pk = k->pkey;
    pthread_mutex_unlock(&lock);
    return pk;
}

void fake_transit_gate_open(void)
{
    pthread_mutex_lock(&lock);
    gate_closed = false;
    tickets = 0;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

/* Waits (up to timeout_ms) until *count (guarded by lock) is at least n. */
static bool wait_count(const unsigned *count, unsigned n, long timeout_ms)
{
    struct timespec until;
    bool ok;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&lock);
    while (*count < n)
        if (pthread_cond_timedwait(&changed, &lock, &until) == ETIMEDOUT)
            break;
    ok = *count >= n;
    pthread_mutex_unlock(&lock);
    return ok;
}

bool fake_transit_wait_at_gate(unsigned n, long timeout_ms)
{
    return wait_count(&at_gate, n, timeout_ms);
}

void fake_transit_hold_lists(bool hold)
{
    pthread_mutex_lock(&lock);
    lists_held = hold;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

bool fake_transit_wait_lists(unsigned n, long timeout_ms)
{
    return wait_count(&lists_waiting, n, timeout_ms);
}

void fake_transit_fail_signs(CK_RV rv)
{
    pthread_mutex_lock(&lock);
    sign_rv = rv;
    pthread_mutex_unlock(&lock);
}

void fake_transit_stats(struct fake_transit_stats *out)
{
    pthread_mutex_lock(&lock);
    out->sign_requests = sign_requests;
    out->sign_items = sign_items;
    out->at_gate = at_gate;
    out->max_in_sign = max_in_sign;
    pthread_mutex_unlock(&lock);
}
