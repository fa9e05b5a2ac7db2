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

#include <jansson.h>

#include "fake-transit.h"
#include "vault/transit.h"

struct fkey {
    char *name;
    const char *type; /* one of key_types[] */
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

/* The KV v2 store, when on: paths relative to kv_prefix, each with its data object. */
struct fsecret {
    char *path;
    json_t *data;
    long version; /* of the latest write; a delete forgets the path and its versions */
    struct fsecret *next;
};
static bool kv_on;
static struct fsecret *secrets;

/* The Transit types the fake can make. RSA keys take long to generate: one pair per size is
 * made on first use and shared by every key of that size (their objects show the same modulus). */
static const struct {
    const char *type;
    const char *curve; /* EC group, or NULL */
    int bits;          /* RSA, or 0 */
} key_types[] = {
    {"ecdsa-p256", "P-256", 0}, {"ecdsa-p384", "P-384", 0}, {"ecdsa-p521", "P-521", 0},
    {"ed25519", NULL, 0},       {"rsa-2048", NULL, 2048},   {"rsa-3072", NULL, 3072},
    {"rsa-4096", NULL, 4096},
};
static EVP_PKEY *rsa_pool[sizeof(key_types) / sizeof(key_types[0])];
static pthread_mutex_t rsa_lock = PTHREAD_MUTEX_INITIALIZER;

/* A new key pair of a known type (a new reference), or NULL (unknown type, no memory). */
static EVP_PKEY *generate(const char *type, const char **canonical)
{
    EVP_PKEY *pk = NULL;
    size_t i;

    for (i = 0; i < sizeof(key_types) / sizeof(key_types[0]); i++)
        if (strcmp(key_types[i].type, type) == 0)
            break;
    if (i == sizeof(key_types) / sizeof(key_types[0]))
        return NULL;
    *canonical = key_types[i].type;
    if (key_types[i].curve != NULL)
        return EVP_EC_gen(key_types[i].curve);
    if (key_types[i].bits == 0)
        return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    pthread_mutex_lock(&rsa_lock);
    if (rsa_pool[i] == NULL)
        rsa_pool[i] = EVP_RSA_gen((unsigned)key_types[i].bits);
    if (rsa_pool[i] != NULL && EVP_PKEY_up_ref(rsa_pool[i]) == 1)
        pk = rsa_pool[i];
    pthread_mutex_unlock(&rsa_lock);
    return pk;
}

static struct fkey *find_locked(const char *name)
{
    for (struct fkey *k = keys; k != NULL; k = k->next)
        if (strcmp(k->name, name) == 0)
            return k;
    return NULL;
}

bool fake_transit_add_ec_key(const char *name)
{
    return fake_transit_add_key(name, "ecdsa-p256");
}

bool fake_transit_add_key(const char *name, const char *type)
{
    struct fkey *k = calloc(1, sizeof(*k));
    unsigned char *p = NULL;
    int len;

    if (k == NULL)
        return false;
    k->name = strdup(name);
    k->pkey = generate(type, &k->type);
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
            tk->type = strdup(k->type);
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
    bool known = false;

    for (size_t i = 0; i < sizeof(key_types) / sizeof(key_types[0]); i++)
        known = known || strcmp(key_types[i].type, type) == 0;
    if (!known)
        return CKR_MECHANISM_INVALID;
    pthread_mutex_lock(&lock);
    bool exists = find_locked(name) != NULL;
    pthread_mutex_unlock(&lock);
    if (!exists && !fake_transit_add_key(name, type))
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

/* KV off: every path is absent, writes are refused (as a policy would). On: an in-memory KV v2
 * (one store for every mount and prefix). */
static struct fsecret **secret_find_locked(const char *path)
{
    struct fsecret **pp;

    for (pp = &secrets; *pp != NULL; pp = &(*pp)->next)
        if (strcmp((*pp)->path, path) == 0)
            break;
    return pp;
}

static CK_RV f_kv_read(const struct vtp_transit *t, const char *path, json_t **data)
{
    struct fsecret *sec;
    CK_RV rv = CKR_OK;

    (void)t;
    *data = NULL;
    pthread_mutex_lock(&lock);
    sec = kv_on ? *secret_find_locked(path) : NULL;
    if (sec != NULL && (*data = json_deep_copy(sec->data)) == NULL)
        rv = CKR_HOST_MEMORY;
    pthread_mutex_unlock(&lock);
    return rv;
}

static CK_RV f_kv_write(const struct vtp_transit *t, const char *path, json_t *data, long cas)
{
    struct fsecret **pp, *sec = NULL;
    json_t *copy;
    CK_RV rv = CKR_OK;

    (void)t;
    if (!kv_on)
        return VTP_ERR_DENIED;
    if (!json_is_object(data) || (copy = json_deep_copy(data)) == NULL)
        return CKR_HOST_MEMORY;
    pthread_mutex_lock(&lock);
    pp = secret_find_locked(path);
    /* check-and-set: 0 = only a new path, N = only over version N */
    if (cas >= 0 && (*pp != NULL ? (*pp)->version : 0) != cas) {
        rv = VTP_ERR_CAS_MISMATCH;
    } else if (*pp != NULL) {
        json_decref((*pp)->data);
        (*pp)->data = copy;
        (*pp)->version++;
        copy = NULL;
    } else if ((sec = calloc(1, sizeof(*sec))) != NULL && (sec->path = strdup(path)) != NULL) {
        sec->data = copy;
        sec->version = 1;
        copy = NULL;
        *pp = sec;
    } else {
        free(sec);
        rv = CKR_HOST_MEMORY;
    }
    pthread_mutex_unlock(&lock);
    json_decref(copy);
    return rv;
}

static CK_RV f_kv_delete(const struct vtp_transit *t, const char *path)
{
    struct fsecret **pp, *sec = NULL;

    (void)t;
    pthread_mutex_lock(&lock);
    pp = secret_find_locked(path);
    if (kv_on && *pp != NULL) {
        sec = *pp;
        *pp = sec->next;
    }
    pthread_mutex_unlock(&lock);
    if (sec != NULL) {
        json_decref(sec->data);
        free(sec->path);
        free(sec);
    }
    return CKR_OK;
}

/* The names right under path, as KV v2 lists them: "name", and "dir/" once per folder. */
static CK_RV f_kv_list(const struct vtp_transit *t, const char *path, char ***names, size_t *n)
{
    size_t plen = strlen(path), count = 0, cap = 0;
    char **v = NULL;
    CK_RV rv = CKR_OK;

    (void)t;
    while (plen > 0 && path[plen - 1] == '/')
        plen--;
    pthread_mutex_lock(&lock);
    for (struct fsecret *sec = kv_on ? secrets : NULL; sec != NULL && rv == CKR_OK;
         sec = sec->next) {
        const char *rest = sec->path, *slash;
        size_t len;
        bool dup = false;
        if (plen > 0) {
            if (strncmp(sec->path, path, plen) != 0 || sec->path[plen] != '/')
                continue;
            rest = sec->path + plen + 1;
        }
        slash = strchr(rest, '/');
        len = slash != NULL ? (size_t)(slash - rest) + 1 : strlen(rest);
        for (size_t i = 0; i < count && !dup; i++)
            dup = strlen(v[i]) == len && strncmp(v[i], rest, len) == 0;
        if (dup)
            continue;
        if (count + 1 >= cap) {
            char **nv = realloc(v, (cap = cap * 2 + 8) * sizeof(*v));
            if (nv == NULL) {
                rv = CKR_HOST_MEMORY;
                break;
            }
            v = nv;
        }
        if ((v[count] = strndup(rest, len)) == NULL)
            rv = CKR_HOST_MEMORY;
        else
            count++;
    }
    pthread_mutex_unlock(&lock);
    if (rv != CKR_OK) {
        vtp_strv_free(v, count);
        return rv;
    }
    *names = v;
    *n = count;
    return CKR_OK;
}

/* kv_mount = auto: any mount is KV v2 while the KV is on. */
static CK_RV f_kv_probe(const struct vtp_transit *t, const char *mount, bool *usable)
{
    (void)t, (void)mount;
    pthread_mutex_lock(&lock);
    *usable = kv_on;
    pthread_mutex_unlock(&lock);
    return CKR_OK;
}

static void kv_clear(void)
{
    struct fsecret *sec;

    pthread_mutex_lock(&lock);
    while ((sec = secrets) != NULL) {
        secrets = sec->next;
        json_decref(sec->data);
        free(sec->path);
        free(sec);
    }
    pthread_mutex_unlock(&lock);
}

void fake_transit_enable_kv(bool on)
{
    pthread_mutex_lock(&lock);
    kv_on = on;
    pthread_mutex_unlock(&lock);
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
    .kv_probe = f_kv_probe,
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
    kv_on = false;
    pthread_mutex_unlock(&lock);
    vtp_transit_set_ops(&fake_ops);
}

void fake_transit_uninstall(void)
{
    vtp_transit_set_ops(NULL);
    while (keys != NULL)
        f_delete_key(NULL, keys->name);
    kv_clear();
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
