/* cache.c - per-slot snapshots of the keys a slot shows. */
#include "common.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "util.h"

struct vtp_cache {
    struct vtp_cache_conf conf;
    char *prefix;
    pthread_mutex_t lock;         /* guards cur; never held across I/O */
    pthread_mutex_t refresh_lock; /* serializes loads; readers with a snapshot never wait on it */
    struct vtp_snapshot *cur;
};

static struct vtp_snapshot *snapshot_new(size_t cap)
{
    struct vtp_snapshot *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->refs = 1;
    s->keys = calloc(cap > 0 ? cap : 1, sizeof(*s->keys));
    if (s->keys == NULL) {
        free(s);
        return NULL;
    }
    return s;
}

void vtp_snapshot_unref(struct vtp_snapshot *s)
{
    if (s == NULL || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (size_t i = 0; i < s->n; i++)
        vtp_key_unref(s->keys[i]);
    free(s->keys);
    free(s);
}

static int cmp_handle(const void *a, const void *b)
{
    const struct vtp_key *x = *(struct vtp_key *const *)a, *y = *(struct vtp_key *const *)b;
    return x->priv_handle < y->priv_handle ? -1 : x->priv_handle > y->priv_handle;
}

static int cmp_name(const void *a, const void *b)
{
    const struct vtp_key *x = *(struct vtp_key *const *)a, *y = *(struct vtp_key *const *)b;
    return strcmp(x->name, y->name);
}

CK_RV vtp_cache_new(const struct vtp_cache_conf *conf, struct vtp_cache **out)
{
    struct vtp_cache *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return CKR_HOST_MEMORY;
    c->conf = *conf;
    c->prefix = strdup(conf->key_prefix ? conf->key_prefix : "");
    if (c->prefix == NULL) {
        free(c);
        return CKR_HOST_MEMORY;
    }
    c->conf.key_prefix = c->prefix;
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->refresh_lock, NULL);
    *out = c;
    return CKR_OK;
}

void vtp_cache_free(struct vtp_cache *c)
{
    if (c == NULL)
        return;
    vtp_snapshot_unref(c->cur);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->refresh_lock);
    free(c->prefix);
    free(c);
}

char *vtp_cache_meta_path(const struct vtp_transit *t, const char *name)
{
    size_t n = strlen(t->mount) + strlen(name) + 2;
    char *p = malloc(n);

    if (p != NULL)
        snprintf(p, n, "%s/%s", t->mount, name);
    return p;
}

CK_RV vtp_cache_load_key(struct vtp_cache *c, const char *name, struct vtp_key **out)
{
    const struct vtp_transit *t = c->conf.transit;
    struct vtp_transit_key *tk = NULL;
    json_t *meta = NULL;
    char *path = NULL;
    CK_RV rv;

    rv = vtp_transit_read_key(t, name, &tk);
    if (rv != CKR_OK)
        goto out;
    if (vtp_keytype_by_transit(tk->type) == NULL) {
        VTP_LOG_DEBUG("key %s: type %s is not an asymmetric signing type, skipped", name,
                      tk->type ? tk->type : "?");
        rv = CKR_KEY_TYPE_INCONSISTENT;
        goto out;
    }
    if (t->kv_mount != NULL) {
        path = vtp_cache_meta_path(t, name);
        if (path == NULL) {
            rv = CKR_HOST_MEMORY;
            goto out;
        }
        rv = vtp_kv_read(t, path, &meta);
        if (rv != CKR_OK) {
            VTP_LOG_WARN("key %s: metadata in KV %s could not be read (%s)", name, t->kv_mount,
                         vtp_rv_name(rv));
            goto out;
        }
    }
    rv = vtp_key_build(tk, meta, c->prefix, out);
    if (rv == CKR_OK)
        (*out)->private_is_private = c->conf.private_is_private;
out:
    json_decref(meta);
    free(path);
    vtp_transit_key_free(tk);
    return rv;
}

/* Gives keys that were already known (same name and version) their old handles. */
static void keep_handles(struct vtp_snapshot *old, struct vtp_snapshot *s)
{
    struct vtp_key **by_name;

    if (old == NULL || old->n == 0)
        return;
    by_name = malloc(old->n * sizeof(*by_name));
    if (by_name == NULL)
        return; /* new handles are still correct, only less stable */
    memcpy(by_name, old->keys, old->n * sizeof(*by_name));
    qsort(by_name, old->n, sizeof(*by_name), cmp_name);
    for (size_t i = 0; i < s->n; i++) {
        struct vtp_key **hit =
            bsearch(&s->keys[i], by_name, old->n, sizeof(*by_name), cmp_name);
        if (hit != NULL && (*hit)->version == s->keys[i]->version) {
            s->keys[i]->priv_handle = (*hit)->priv_handle;
            s->keys[i]->pub_handle = (*hit)->pub_handle;
        }
    }
    free(by_name);
}

static struct vtp_snapshot *current_ref(struct vtp_cache *c)
{
    struct vtp_snapshot *s;

    pthread_mutex_lock(&c->lock);
    s = c->cur;
    if (s != NULL)
        __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&c->lock);
    return s;
}

static void publish(struct vtp_cache *c, struct vtp_snapshot *s)
{
    struct vtp_snapshot *old;

    qsort(s->keys, s->n, sizeof(*s->keys), cmp_handle);
    pthread_mutex_lock(&c->lock);
    old = c->cur;
    c->cur = s;
    pthread_mutex_unlock(&c->lock);
    vtp_snapshot_unref(old);
}

/* Called with refresh_lock held. */
static CK_RV load_locked(struct vtp_cache *c)
{
    const struct vtp_transit *t = c->conf.transit;
    size_t plen = strlen(c->prefix), n = 0;
    struct vtp_snapshot *s = NULL, *old = NULL;
    char **names = NULL;
    int64_t start = vtp_now_ms();
    CK_RV rv;

    rv = vtp_transit_list_keys(t, &names, &n);
    if (rv != CKR_OK)
        goto out;
    s = snapshot_new(n);
    if (s == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct vtp_key *k = NULL;
        if (strncmp(names[i], c->prefix, plen) != 0)
            continue;
        rv = vtp_cache_load_key(c, names[i], &k);
        if (rv == CKR_KEY_TYPE_INCONSISTENT || rv == CKR_OBJECT_HANDLE_INVALID ||
            rv == CKR_KEY_HANDLE_INVALID)
            continue; /* not a usable type, or deleted since the list */
        if (rv != CKR_OK)
            goto out;
        s->keys[s->n++] = k;
    }
    old = current_ref(c);
    keep_handles(old, s);
    s->loaded_ms = vtp_now_ms();
    VTP_LOG_INFO("mount %s prefix '%s': %zu usable keys of %zu listed, loaded in %lld ms",
                 t->mount, c->prefix, s->n, n, (long long)(s->loaded_ms - start));
    publish(c, s);
    s = NULL;
    rv = CKR_OK;
out:
    vtp_snapshot_unref(old);
    vtp_snapshot_unref(s);
    vtp_strv_free(names, n);
    return rv;
}

CK_RV vtp_cache_refresh(struct vtp_cache *c)
{
    CK_RV rv;

    pthread_mutex_lock(&c->refresh_lock);
    rv = load_locked(c);
    pthread_mutex_unlock(&c->refresh_lock);
    return rv;
}

CK_RV vtp_cache_get(struct vtp_cache *c, bool refresh_if_stale, struct vtp_snapshot **out)
{
    struct vtp_snapshot *s = current_ref(c);
    CK_RV rv;

    if (s != NULL) {
        if (!refresh_if_stale || vtp_now_ms() - s->loaded_ms < c->conf.ttl_ms) {
            *out = s;
            return CKR_OK;
        }
        /* Stale: one caller reloads, the others go on with what is there. */
        if (pthread_mutex_trylock(&c->refresh_lock) == 0) {
            rv = load_locked(c);
            pthread_mutex_unlock(&c->refresh_lock);
            if (rv != CKR_OK) {
                VTP_LOG_WARN("refresh of mount %s failed (%s); using the keys known before",
                             c->conf.transit->mount, vtp_rv_name(rv));
                /* try again after another TTL rather than on every call */
                s->loaded_ms = vtp_now_ms();
            } else {
                vtp_snapshot_unref(s);
                s = current_ref(c);
            }
        }
        *out = s;
        return CKR_OK;
    }
    pthread_mutex_lock(&c->refresh_lock);
    s = current_ref(c); /* another thread may have loaded it meanwhile */
    rv = s != NULL ? CKR_OK : load_locked(c);
    pthread_mutex_unlock(&c->refresh_lock);
    if (rv != CKR_OK)
        return rv;
    if (s == NULL)
        s = current_ref(c);
    if (s == NULL)
        return CKR_GENERAL_ERROR;
    *out = s;
    return CKR_OK;
}

CK_RV vtp_cache_lookup(struct vtp_cache *c, CK_OBJECT_HANDLE h, struct vtp_key **key,
                       CK_OBJECT_CLASS *cls)
{
    struct vtp_snapshot *s = current_ref(c);
    size_t lo = 0, hi;
    CK_RV rv = CKR_OBJECT_HANDLE_INVALID;

    if (s == NULL)
        return CKR_OBJECT_HANDLE_INVALID;
    hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        struct vtp_key *k = s->keys[mid];
        if (h == k->priv_handle || h == k->pub_handle) {
            *key = vtp_key_ref(k);
            *cls = h == k->priv_handle ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY;
            rv = CKR_OK;
            break;
        }
        if (h < k->priv_handle)
            hi = mid;
        else
            lo = mid + 1;
    }
    vtp_snapshot_unref(s);
    return rv;
}

/* Copy-on-write change of the current snapshot: drop `drop` (by name, may be NULL), add `add`. */
static CK_RV modify(struct vtp_cache *c, const char *drop, struct vtp_key *add)
{
    struct vtp_snapshot *old, *s;

    pthread_mutex_lock(&c->refresh_lock); /* no reload may race this change */
    old = current_ref(c);
    s = snapshot_new((old ? old->n : 0) + 1);
    if (s == NULL) {
        pthread_mutex_unlock(&c->refresh_lock);
        vtp_snapshot_unref(old);
        return CKR_HOST_MEMORY;
    }
    for (size_t i = 0; old != NULL && i < old->n; i++) {
        if (drop != NULL && strcmp(old->keys[i]->name, drop) == 0)
            continue;
        s->keys[s->n++] = vtp_key_ref(old->keys[i]);
    }
    if (add != NULL)
        s->keys[s->n++] = vtp_key_ref(add);
    s->loaded_ms = old ? old->loaded_ms : 0; /* never loaded: the next search loads all */
    publish(c, s);
    pthread_mutex_unlock(&c->refresh_lock);
    vtp_snapshot_unref(old);
    return CKR_OK;
}

CK_RV vtp_cache_put(struct vtp_cache *c, struct vtp_key *k)
{
    return modify(c, k->name, k);
}

CK_RV vtp_cache_remove(struct vtp_cache *c, const char *name)
{
    return modify(c, name, NULL);
}

bool vtp_cache_has_name(struct vtp_cache *c, const char *name)
{
    struct vtp_snapshot *s = current_ref(c);
    bool found = false;

    for (size_t i = 0; s != NULL && i < s->n && !found; i++)
        found = strcmp(s->keys[i]->name, name) == 0;
    vtp_snapshot_unref(s);
    return found;
}
