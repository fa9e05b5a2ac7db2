/* cache.c - per-slot snapshots of the objects a slot shows. */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cache.h"
#include "kvstore.h"
#include "util.h"

#define MAX_RETIRED 1024 /* older key versions kept resolvable after rotations */

/* A change writers make to the current snapshot (a key made or destroyed, a certificate stored
 * or removed, keys a search loaded). While a load runs, changes are also kept in a journal and
 * applied again to the loaded snapshot before it is published: a load holds no lock that
 * writers need, and loses none of their changes. */
struct change {
    char *drop_key;
    struct vtp_key **add_keys;
    size_t n_add;
    CK_OBJECT_HANDLE drop_cert;
    struct vtp_cert *add_cert;
    char *memo;
    bool if_absent; /* keys a search loaded: added only where the key is listed and not loaded
                       (a key made, changed or destroyed meanwhile wins) */
    struct change *next;
};

struct vtp_cache {
    struct vtp_cache_conf conf;
    char *prefix;
    char *cert_files;
    char *disk_path;
    pthread_mutex_t lock;        /* guards cur; never held across I/O */
    pthread_mutex_t load_lock;   /* one load at a time (held across its requests; only loaders
                                    wait on it) */
    pthread_mutex_t change_lock; /* orders changes and the publishing of loads; never held
                                    across I/O */
    bool loading;                /* a load runs: changes go to the journal too */
    struct change *journal, **journal_tail;
    struct vtp_snapshot *cur;
    CK_OBJECT_HANDLE destroyed[64]; /* other halves of destroyed pairs (guarded by lock) */
    size_t n_destroyed;
};

static void journal_clear_locked(struct vtp_cache *c);
static struct vtp_snapshot *apply(const struct vtp_snapshot *old, const struct change *ch);

static struct vtp_snapshot *snapshot_new(size_t keys, size_t retired, size_t certs)
{
    struct vtp_snapshot *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->refs = 1;
    s->keys = calloc(keys + 1, sizeof(*s->keys));
    s->retired = calloc(retired + 1, sizeof(*s->retired));
    s->certs = calloc(certs + 1, sizeof(*s->certs));
    if (s->keys == NULL || s->retired == NULL || s->certs == NULL) {
        free(s->keys);
        free(s->retired);
        free(s->certs);
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
    for (size_t i = 0; i < s->n_retired; i++)
        vtp_key_unref(s->retired[i]);
    for (size_t i = 0; i < s->n_certs; i++)
        vtp_cert_unref(s->certs[i]);
    vtp_strv_free(s->names, s->n_names);
    vtp_strv_free(s->memo, s->n_memo);
    free(s->keys);
    free(s->retired);
    free(s->certs);
    free(s);
}

static char **strv_copy(char *const *v, size_t n, size_t extra)
{
    char **out = calloc(n + extra + 1, sizeof(*out));

    for (size_t i = 0; out != NULL && i < n; i++) {
        out[i] = strdup(v[i]);
        if (out[i] == NULL) {
            vtp_strv_free(out, i);
            return NULL;
        }
    }
    return out;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* names is sorted */
static bool has_name(const struct vtp_snapshot *s, const char *name)
{
    return s->n_names > 0 &&
           bsearch(&name, s->names, s->n_names, sizeof(*s->names), cmp_str) != NULL;
}

static bool key_loaded(const struct vtp_snapshot *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->keys[i]->name, name) == 0)
            return true;
    return false;
}

static int cmp_handle(const void *a, const void *b)
{
    const struct vtp_key *x = *(struct vtp_key *const *)a, *y = *(struct vtp_key *const *)b;
    return x->priv_handle < y->priv_handle ? -1 : x->priv_handle > y->priv_handle;
}

static int cmp_cert_handle(const void *a, const void *b)
{
    const struct vtp_cert *x = *(struct vtp_cert *const *)a, *y = *(struct vtp_cert *const *)b;
    return x->handle < y->handle ? -1 : x->handle > y->handle;
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
    c->cert_files = conf->cert_files ? strdup(conf->cert_files) : NULL;
    c->disk_path = conf->disk_path ? strdup(conf->disk_path) : NULL;
    if (c->prefix == NULL || (conf->cert_files && c->cert_files == NULL) ||
        (conf->disk_path && c->disk_path == NULL)) {
        free(c->prefix);
        free(c->cert_files);
        free(c->disk_path);
        free(c);
        return CKR_HOST_MEMORY;
    }
    c->conf.key_prefix = c->prefix;
    c->conf.cert_files = c->cert_files;
    c->conf.disk_path = c->disk_path;
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->load_lock, NULL);
    pthread_mutex_init(&c->change_lock, NULL);
    c->journal_tail = &c->journal;
    *out = c;
    return CKR_OK;
}

void vtp_cache_free(struct vtp_cache *c)
{
    if (c == NULL)
        return;
    vtp_snapshot_unref(c->cur);
    pthread_mutex_destroy(&c->lock);
    journal_clear_locked(c);
    pthread_mutex_destroy(&c->load_lock);
    pthread_mutex_destroy(&c->change_lock);
    free(c->prefix);
    free(c->cert_files);
    free(c->disk_path);
    free(c);
}

void vtp_cache_finish_key(struct vtp_cache *c, struct vtp_key *k)
{
    k->private_is_private = c->conf.private_is_private;
    k->destroyable = c->conf.allow_destroy;
    k->modifiable = vtp_kv_mount(c->conf.transit) != NULL;
}

static void finish_key(struct vtp_cache *c, struct vtp_key *k)
{
    vtp_cache_finish_key(c, k);
}

/* Loads one key; its KV metadata is read unless no_meta says there is none. */
static CK_RV load_key(struct vtp_cache *c, const char *name, bool no_meta, struct vtp_key **out);

CK_RV vtp_cache_load_key(struct vtp_cache *c, const char *name, struct vtp_key **out)
{
    return load_key(c, name, false, out);
}

static CK_RV load_key(struct vtp_cache *c, const char *name, bool no_meta, struct vtp_key **out)
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
    if (vtp_kv_mount(t) != NULL && !no_meta) {
        path = vtp_kv_meta_path(t, name);
        if (path == NULL) {
            rv = CKR_HOST_MEMORY;
            goto out;
        }
        rv = vtp_kv_read(t, path, &meta);
        if (rv != CKR_OK) {
            VTP_LOG_WARN("key %s: metadata in KV %s could not be read (%s)", name, vtp_kv_mount(t),
                         vtp_rv_name(rv));
            goto out;
        }
    }
    rv = vtp_key_build(tk, meta, c->prefix, out);
    if (rv == CKR_OK)
        finish_key(c, *out);
out:
    json_decref(meta);
    free(path);
    vtp_transit_key_free(tk);
    return rv;
}

/* Keys already known keep their handles; a rotated key's previous object is kept as retired
 * so that handles a client holds still sign with the version it was shown. */
/* Is the key now loaded under o's name the key o was made from, not another one deleted and
 * made again under that name? Its objects (handles) carry over only then: an old handle must
 * never sign with a new key (its signatures would not verify against the public key the caller
 * read). Same version: the same public key; any version: the same oldest version's creation
 * time, when Transit says it. */
static bool same_key(const struct vtp_key *o, const struct vtp_key *n)
{
    if (o->version == n->version &&
        (o->spki_len != n->spki_len || memcmp(o->spki, n->spki, o->spki_len) != 0))
        return false;
    if (o->birth != NULL && n->birth != NULL && strcmp(o->birth, n->birth) != 0)
        return false;
    return true;
}

static CK_RV carry_over(struct vtp_snapshot *old, struct vtp_snapshot *s)
{
    struct vtp_key **by_name;
    size_t n_old = old ? old->n : 0;

    if (n_old == 0)
        return CKR_OK;
    by_name = malloc(s->n * sizeof(*by_name) + 1);
    if (by_name == NULL)
        return CKR_HOST_MEMORY;
    memcpy(by_name, s->keys, s->n * sizeof(*by_name));
    qsort(by_name, s->n, sizeof(*by_name), cmp_name);
    for (size_t i = 0; i < n_old; i++) {
        struct vtp_key *o = old->keys[i];
        struct vtp_key **hit = s->n ? bsearch(&o, by_name, s->n, sizeof(*by_name), cmp_name)
                                    : NULL;
        if (hit == NULL || !same_key(o, *hit))
            continue; /* deleted (perhaps made again under the name: its objects are new) */
        if ((*hit)->version == o->version) {
            (*hit)->priv_handle = o->priv_handle;
            (*hit)->pub_handle = o->pub_handle;
        } else if (s->n_retired < MAX_RETIRED) {
            VTP_LOG_INFO("key %s rotated: v%lu -> v%lu; objects %lu/%lu keep signing with v%lu",
                         o->name, o->version, (*hit)->version, o->pub_handle, o->priv_handle,
                         o->version);
            s->retired[s->n_retired++] = vtp_key_ref(o);
        }
    }
    /* versions retired earlier stay while their key exists */
    for (size_t i = 0; old != NULL && i < old->n_retired && s->n_retired < MAX_RETIRED; i++) {
        struct vtp_key *o = old->retired[i];
        struct vtp_key **hit = s->n ? bsearch(&o, by_name, s->n, sizeof(*by_name), cmp_name)
                                    : NULL;
        if (hit != NULL && same_key(o, *hit))
            s->retired[s->n_retired++] = vtp_key_ref(o);
    }
    free(by_name);
    return CKR_OK;
}

static void carry_cert_handles(struct vtp_snapshot *old, struct vtp_snapshot *s)
{
    for (size_t i = 0; old != NULL && i < s->n_certs; i++) {
        struct vtp_cert *c = s->certs[i];
        for (size_t j = 0; j < old->n_certs; j++) {
            struct vtp_cert *o = old->certs[j];
            if (o->read_only == c->read_only && o->kv_name && c->kv_name &&
                strcmp(o->kv_name, c->kv_name) == 0) {
                c->handle = o->handle;
                break;
            }
        }
    }
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

static bool has_snapshot(struct vtp_cache *c)
{
    bool has;

    pthread_mutex_lock(&c->lock);
    has = c->cur != NULL;
    pthread_mutex_unlock(&c->lock);
    return has;
}

static void publish(struct vtp_cache *c, struct vtp_snapshot *s)
{
    struct vtp_snapshot *old;

    qsort(s->keys, s->n, sizeof(*s->keys), cmp_handle);
    qsort(s->retired, s->n_retired, sizeof(*s->retired), cmp_handle);
    qsort(s->certs, s->n_certs, sizeof(*s->certs), cmp_cert_handle);
    pthread_mutex_lock(&c->lock);
    old = c->cur;
    c->cur = s;
    pthread_mutex_unlock(&c->lock);
    vtp_snapshot_unref(old);
}

/* Read-only certificates from PEM files (certificates = a.pem, b.pem). */
static CK_RV load_cert_files(struct vtp_cache *c, struct vtp_cert ***out, size_t *n)
{
    char *list, *tok, *save = NULL;
    struct vtp_cert **v = NULL;
    size_t count = 0;
    CK_RV rv = CKR_OK;

    *out = NULL;
    *n = 0;
    if (c->cert_files == NULL)
        return CKR_OK;
    list = strdup(c->cert_files);
    if (list == NULL)
        return CKR_HOST_MEMORY;
    for (tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        FILE *f;
        X509 *x;
        while (*tok == ' ' || *tok == '\t')
            tok++;
        for (char *e = tok + strlen(tok); e > tok && (e[-1] == ' ' || e[-1] == '\t'); e--)
            e[-1] = '\0';
        if (*tok == '\0')
            continue;
        f = fopen(tok, "re");
        if (f == NULL) {
            VTP_LOG_ERR("certificate file %s cannot be opened", tok);
            continue;
        }
        while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
            unsigned char *der = NULL, *idb = NULL;
            size_t idl = 0;
            int len = i2d_X509(x, &der);
            const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(x);
            char label[64] = "";
            struct vtp_cert *cert = NULL, **nv;
            /* CKA_ID: the subject key identifier, as pkcs11-tool and p11-kit would pair it */
            if (skid != NULL) {
                idl = (size_t)ASN1_STRING_length(skid);
                idb = malloc(idl ? idl : 1);
                if (idb != NULL && idl)
                    memcpy(idb, ASN1_STRING_get0_data(skid), idl);
            }
            if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, label,
                                          sizeof(label)) < 0)
                label[0] = '\0';
            if (len > 0)
                rv = vtp_cert_build(der, (size_t)len, idb, idl, label, strlen(label), NULL, 0,
                                    &cert);
            OPENSSL_free(der);
            free(idb);
            X509_free(x);
            if (len <= 0 || rv != CKR_OK)
                continue;
            cert->read_only = true;
            cert->kv_name = vtp_join3(tok, "#", "");
            nv = realloc(v, (count + 1) * sizeof(*v));
            if (cert->kv_name == NULL || nv == NULL) {
                vtp_cert_unref(cert);
                rv = CKR_HOST_MEMORY;
                break;
            }
            v = nv;
            v[count++] = cert;
        }
        fclose(f);
        if (rv == CKR_HOST_MEMORY)
            break;
    }
    free(list);
    *out = v;
    *n = count;
    return rv == CKR_HOST_MEMORY ? rv : CKR_OK;
}

/* Certificates stored in KV under certs/<mount>/, filtered by the key prefix. */
static CK_RV load_kv_certs(struct vtp_cache *c, struct vtp_cert ***out, size_t *n)
{
    const struct vtp_transit *t = c->conf.transit;
    char **names = NULL, *dir = NULL;
    size_t count = 0, plen = strlen(c->prefix), got = 0;
    struct vtp_cert **v = NULL;
    CK_RV rv;

    *out = NULL;
    *n = 0;
    if (vtp_kv_mount(t) == NULL)
        return CKR_OK;
    dir = vtp_kv_cert_dir(t);
    if (dir == NULL)
        return CKR_HOST_MEMORY;
    rv = vtp_kv_list(t, dir, &names, &count);
    if (rv != CKR_OK)
        goto out;
    v = calloc(count + 1, sizeof(*v));
    if (v == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        json_t *data = NULL;
        char *path;
        size_t nl = strlen(names[i]);
        if (strncmp(names[i], c->prefix, plen) != 0 || (nl > 0 && names[i][nl - 1] == '/'))
            continue;
        path = vtp_kv_cert_path(t, names[i]);
        if (path == NULL) {
            rv = CKR_HOST_MEMORY;
            goto out;
        }
        rv = vtp_kv_read(t, path, &data);
        free(path);
        if (rv != CKR_OK)
            goto out;
        if (data != NULL && vtp_cert_from_json(data, names[i], &v[got]) == CKR_OK)
            got++;
        json_decref(data);
    }
    *out = v;
    *n = got;
    v = NULL;
    rv = CKR_OK;
out:
    for (size_t i = 0; v != NULL && i < got; i++)
        vtp_cert_unref(v[i]);
    free(v);
    vtp_strv_free(names, count);
    free(dir);
    return rv;
}

/* ---------------------------------------------------------------------------------------- */
/* On-disk copy: public data only (names, versions, public keys, labels, ids, certificates). */

static json_t *snapshot_to_json(const struct vtp_snapshot *s)
{
    json_t *root = json_object(), *keys = json_array(), *certs = json_array();
    bool ok = root && keys && certs;

    for (size_t i = 0; ok && i < s->n; i++) {
        const struct vtp_key *k = s->keys[i];
        json_t *o = json_object();
        char *hex = vtp_hex_encode(k->id, k->id_len);
        ok = o && hex && json_object_set_new(o, "name", json_string(k->name)) == 0 &&
             json_object_set_new(o, "type", json_string(k->kt->transit_type)) == 0 &&
             json_object_set_new(o, "version", json_integer((json_int_t)k->version)) == 0 &&
             vtp_json_set_b64(o, "spki", k->spki, k->spki_len) == 0 &&
             json_object_set_new(o, "id", json_string(hex)) == 0 &&
             json_object_set_new(o, "label", json_string(k->label)) == 0 &&
             json_object_set_new(o, "usage", json_integer(k->usage)) == 0 &&
             json_object_set_new(o, "exportable", json_boolean(k->exportable)) == 0 &&
             json_object_set_new(o, "imported", json_boolean(k->imported)) == 0 &&
             json_array_append_new(keys, o) == 0;
        if (!ok)
            json_decref(o);
        free(hex);
    }
    for (size_t i = 0; ok && i < s->n_certs; i++) {
        json_t *o;
        if (s->certs[i]->read_only)
            continue; /* file certificates are read from their files again */
        o = vtp_cert_to_json(s->certs[i]);
        ok = o && json_object_set_new(o, "kv_name", json_string(s->certs[i]->kv_name)) == 0 &&
             json_array_append_new(certs, o) == 0;
        if (!ok)
            json_decref(o);
    }
    if (ok && json_object_set_new(root, "format", json_integer(1)) == 0 &&
        json_object_set(root, "keys", keys) == 0 && json_object_set(root, "certs", certs) == 0) {
        json_decref(keys);
        json_decref(certs);
        return root;
    }
    json_decref(keys);
    json_decref(certs);
    json_decref(root);
    return NULL;
}

/* Written to a temporary file and renamed, mode 0600: readers never see half a file. */
static void disk_save(struct vtp_cache *c, const struct vtp_snapshot *s)
{
    json_t *j;
    char *tmp;

    if (c->disk_path == NULL)
        return;
    j = snapshot_to_json(s);
    tmp = vtp_join3(c->disk_path, ".tmp", "");
    if (j != NULL && tmp != NULL) {
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0 && json_dumpfd(j, fd, JSON_COMPACT) == 0 && fsync(fd) == 0 &&
            close(fd) == 0) {
            fd = -1;
            if (rename(tmp, c->disk_path) != 0)
                VTP_LOG_WARN("cache file %s: %s", c->disk_path, strerror(errno));
        } else {
            VTP_LOG_WARN("cache file %s cannot be written: %s", tmp, strerror(errno));
            unlink(tmp);
        }
        if (fd >= 0)
            close(fd);
    }
    free(tmp);
    json_decref(j);
}

/* A snapshot from the on-disk copy, or NULL. */
static struct vtp_snapshot *disk_load(struct vtp_cache *c)
{
    json_error_t err;
    json_t *root, *keys, *certs, *o;
    struct vtp_snapshot *s = NULL;
    struct vtp_cert **files = NULL;
    size_t i, n_files = 0;

    if (c->disk_path == NULL)
        return NULL;
    root = json_load_file(c->disk_path, 0, &err);
    if (root == NULL) {
        VTP_LOG_INFO("no usable cache file %s: %s", c->disk_path, err.text);
        return NULL;
    }
    keys = json_object_get(root, "keys");
    certs = json_object_get(root, "certs");
    if (!json_is_array(keys) || !json_is_array(certs) ||
        load_cert_files(c, &files, &n_files) != CKR_OK)
        goto out;
    s = snapshot_new(json_array_size(keys), 0, json_array_size(certs) + n_files);
    if (s == NULL)
        goto out;
    json_array_foreach(keys, i, o)
    {
        struct vtp_transit_key tk = {0};
        const char *spki = json_string_value(json_object_get(o, "spki"));
        json_t *meta = json_pack("{s:O?,s:O?,s:O?}", "id", json_object_get(o, "id"), "label",
                                 json_object_get(o, "label"), "usage",
                                 json_object_get(o, "usage"));
        struct vtp_key *k = NULL;
        tk.name = (char *)json_string_value(json_object_get(o, "name"));
        tk.type = (char *)json_string_value(json_object_get(o, "type"));
        tk.latest_version = (unsigned long)json_integer_value(json_object_get(o, "version"));
        tk.exportable = json_is_true(json_object_get(o, "exportable"));
        tk.imported = json_is_true(json_object_get(o, "imported"));
        if (tk.name != NULL && spki != NULL &&
            vtp_b64_decode(spki, strlen(spki), &tk.spki, &tk.spki_len) &&
            strncmp(tk.name, c->prefix, strlen(c->prefix)) == 0 &&
            vtp_key_build(&tk, meta, c->prefix, &k) == CKR_OK) {
            finish_key(c, k);
            s->keys[s->n++] = k;
        }
        free(tk.spki);
        json_decref(meta);
    }
    json_array_foreach(certs, i, o)
    {
        const char *kv_name = json_string_value(json_object_get(o, "kv_name"));
        if (kv_name != NULL && vtp_cert_from_json(o, kv_name, &s->certs[s->n_certs]) == CKR_OK)
            s->n_certs++;
    }
    for (i = 0; i < n_files; i++)
        s->certs[s->n_certs++] = files[i];
    n_files = 0;
    VTP_LOG_WARN("Vault unreachable: showing %zu keys and %zu certificates from %s", s->n,
                 s->n_certs, c->disk_path);
out:
    for (i = 0; i < n_files; i++)
        vtp_cert_unref(files[i]);
    free(files);
    json_decref(root);
    return s;
}

/* Starts journaling the changes writers make while this load runs. */
static void load_begin(struct vtp_cache *c)
{
    pthread_mutex_lock(&c->change_lock);
    c->loading = true;
    journal_clear_locked(c);
    pthread_mutex_unlock(&c->change_lock);
}

/* Publishes a loaded snapshot (NULL: the load failed) with the changes made meanwhile applied
 * again, and ends journaling. Returns the published snapshot (a new reference) or NULL. */
static struct vtp_snapshot *load_end(struct vtp_cache *c, struct vtp_snapshot *s)
{
    pthread_mutex_lock(&c->change_lock);
    for (const struct change *ch = c->journal; s != NULL && ch != NULL; ch = ch->next) {
        struct vtp_snapshot *next = apply(s, ch);
        vtp_snapshot_unref(s);
        s = next; /* NULL (no memory): nothing is published, the current snapshot stays */
    }
    if (s != NULL) {
        __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
        publish(c, s);
    }
    c->loading = false;
    journal_clear_locked(c);
    pthread_mutex_unlock(&c->change_lock);
    return s;
}

/* Called with load_lock held, no other lock: the requests run while writers and searches go
 * on with the current snapshot; their changes are applied again to the new one before it is
 * published. complete: load every key; else the key list and the keys the previous snapshot
 * had loaded (the working set). */
static CK_RV load_locked(struct vtp_cache *c, bool complete)
{
    const struct vtp_transit *t = c->conf.transit;
    size_t plen = strlen(c->prefix), n = 0, n_kv = 0, n_files = 0, n_mine = 0;
    struct vtp_snapshot *s = NULL, *old = NULL;
    struct vtp_cert **kv = NULL, **files = NULL;
    char **names = NULL, **meta = NULL;
    size_t n_meta = 0;
    int64_t start = vtp_now_ms();
    CK_RV rv;

    load_begin(c);
    rv = vtp_kv_settle(t); /* kv_mount = auto: is there KV to read? */
    if (rv == CKR_OK)
        rv = vtp_transit_list_keys(t, &names, &n);
    if (rv != CKR_OK)
        goto out;
    rv = load_kv_certs(c, &kv, &n_kv);
    if (rv != CKR_OK)
        goto out;
    rv = load_cert_files(c, &files, &n_files);
    if (rv != CKR_OK)
        goto out;
    old = current_ref(c);
    s = snapshot_new(n, (old ? old->n + old->n_retired : 0), n_kv + n_files);
    if (s == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    /* the names of this slot, sorted */
    for (size_t i = 0; i < n; i++) {
        if (strncmp(names[i], c->prefix, plen) == 0) {
            char *tmp = names[n_mine];
            names[n_mine++] = names[i];
            names[i] = tmp;
        }
    }
    if (n_mine > 0)
        qsort(names, n_mine, sizeof(*names), cmp_str);
    s->names = strv_copy(names, n_mine, 0);
    if (s->names == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    s->n_names = n_mine;
    s->complete = complete;
    /* Loading all: one LIST of the KV metadata says which keys have any, so keys without
     * cost one request, not two. */
    if (complete && vtp_kv_mount(t) != NULL) {
        char *dir = vtp_kv_meta_dir(t);
        rv = dir != NULL ? vtp_kv_list(t, dir, &meta, &n_meta) : CKR_HOST_MEMORY;
        free(dir);
        if (rv != CKR_OK)
            goto out;
        if (n_meta > 0)
            qsort(meta, n_meta, sizeof(*meta), cmp_str);
    }
    for (size_t i = 0; i < n_mine; i++) {
        struct vtp_key *k = NULL;
        bool no_meta = complete && (vtp_kv_mount(t) == NULL ||
                                    n_meta == 0 ||
                                    bsearch(&names[i], meta, n_meta, sizeof(*meta), cmp_str) ==
                                        NULL);
        if (!complete && (old == NULL || !key_loaded(old, names[i])))
            continue;
        rv = load_key(c, names[i], no_meta, &k);
        if (rv == CKR_KEY_TYPE_INCONSISTENT || rv == VTP_ERR_KEY_MISSING)
            continue; /* not a usable type, or deleted since the list */
        if (rv != CKR_OK)
            goto out;
        s->keys[s->n++] = k;
    }
    for (size_t i = 0; i < n_kv; i++)
        s->certs[s->n_certs++] = kv[i];
    for (size_t i = 0; i < n_files; i++)
        s->certs[s->n_certs++] = files[i];
    n_kv = n_files = 0;
    rv = carry_over(old, s);
    if (rv != CKR_OK)
        goto out;
    carry_cert_handles(old, s);
    s->loaded_ms = vtp_now_ms();
    VTP_LOG_INFO("mount %s prefix '%s': %zu keys listed, %zu loaded%s, %zu certificates, "
                 "in %lld ms",
                 t->mount, c->prefix, n_mine, s->n, complete ? " (all)" : "", s->n_certs,
                 (long long)(s->loaded_ms - start));
    {
        struct vtp_snapshot *pub = load_end(c, s);
        s = NULL;
        if (pub == NULL) {
            rv = CKR_HOST_MEMORY;
            goto out;
        }
        if (complete)
            disk_save(c, pub);
        vtp_snapshot_unref(pub);
    }
    rv = CKR_OK;
out:
    if (rv != CKR_OK) { /* load_begin ran: end the journal */
        pthread_mutex_lock(&c->change_lock);
        c->loading = false;
        journal_clear_locked(c);
        pthread_mutex_unlock(&c->change_lock);
    }
    for (size_t i = 0; i < n_kv; i++)
        vtp_cert_unref(kv[i]);
    for (size_t i = 0; i < n_files; i++)
        vtp_cert_unref(files[i]);
    free(kv);
    free(files);
    vtp_snapshot_unref(old);
    vtp_snapshot_unref(s);
    vtp_strv_free(names, n);
    vtp_strv_free(meta, n_meta);
    return rv;
}

CK_RV vtp_cache_refresh(struct vtp_cache *c)
{
    CK_RV rv;

    pthread_mutex_lock(&c->load_lock);
    rv = load_locked(c, true);
    pthread_mutex_unlock(&c->load_lock);
    return rv;
}

CK_RV vtp_cache_get(struct vtp_cache *c, bool refresh_if_stale, bool complete,
                    struct vtp_snapshot **out)
{
    struct vtp_snapshot *s = current_ref(c);
    CK_RV rv;

    if (s != NULL && (!complete || s->complete)) {
        if (!refresh_if_stale ||
            vtp_now_ms() - __atomic_load_n(&s->loaded_ms, __ATOMIC_RELAXED) < c->conf.ttl_ms) {
            *out = s;
            return CKR_OK;
        }
        /* Stale: one caller reloads, the others go on with what is there. */
        if (pthread_mutex_trylock(&c->load_lock) == 0) {
            rv = load_locked(c, complete);
            if (rv != CKR_OK) {
                VTP_LOG_WARN("refresh of mount %s failed (%s); using the objects known before",
                             c->conf.transit->mount, vtp_rv_name(rv));
                /* try again after another TTL rather than on every call (on the snapshot
                 * that is current now: a change may have published another meanwhile) */
                struct vtp_snapshot *cur = current_ref(c);
                if (cur != NULL)
                    __atomic_store_n(&cur->loaded_ms, vtp_now_ms(), __ATOMIC_RELAXED);
                vtp_snapshot_unref(cur);
            } else {
                vtp_snapshot_unref(s);
                s = current_ref(c);
            }
            pthread_mutex_unlock(&c->load_lock);
        }
        *out = s;
        return CKR_OK;
    }
    vtp_snapshot_unref(s);
    pthread_mutex_lock(&c->load_lock);
    s = current_ref(c); /* another thread may have loaded it meanwhile */
    if (s != NULL && complete && !s->complete) {
        vtp_snapshot_unref(s);
        s = NULL;
    }
    rv = s != NULL ? CKR_OK : load_locked(c, complete);
    if (rv != CKR_OK && rv != CKR_HOST_MEMORY && !has_snapshot(c)) {
        /* Offline: the last good copy lets searches, attributes and verification go on. Vault
         * is asked again after a few seconds rather than after a whole TTL. */
        struct vtp_snapshot *d = disk_load(c);
        if (d != NULL) {
            long retry = c->conf.ttl_ms < 5000 ? c->conf.ttl_ms : 5000;
            d->loaded_ms = vtp_now_ms() - c->conf.ttl_ms + retry;
            d->complete = true;
            publish(c, d);
            rv = CKR_OK;
        }
    }
    pthread_mutex_unlock(&c->load_lock);
    if (rv != CKR_OK)
        return rv;
    if (s == NULL)
        s = current_ref(c);
    if (s == NULL)
        return CKR_GENERAL_ERROR;
    *out = s;
    return CKR_OK;
}

static struct vtp_key *find_key(struct vtp_key **keys, size_t n, CK_OBJECT_HANDLE h)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        struct vtp_key *k = keys[mid];
        if (h == k->priv_handle || h == k->pub_handle)
            return k;
        if (h < k->priv_handle)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static struct vtp_cert *find_cert(struct vtp_cert **certs, size_t n, CK_OBJECT_HANDLE h)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (certs[mid]->handle == h)
            return certs[mid];
        if (h < certs[mid]->handle)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

CK_RV vtp_cache_lookup_obj(struct vtp_cache *c, CK_OBJECT_HANDLE h, struct vtp_obj *out)
{
    struct vtp_snapshot *s = current_ref(c);
    struct vtp_key *k;
    struct vtp_cert *cert;
    CK_RV rv = CKR_OBJECT_HANDLE_INVALID;

    if (s == NULL)
        return rv;
    k = find_key(s->keys, s->n, h);
    if (k == NULL)
        k = find_key(s->retired, s->n_retired, h);
    if (k != NULL) {
        out->key = vtp_key_ref(k);
        out->cert = NULL;
        out->cls = h == k->priv_handle ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY;
        rv = CKR_OK;
    } else if ((cert = find_cert(s->certs, s->n_certs, h)) != NULL) {
        out->key = NULL;
        out->cert = vtp_cert_ref(cert);
        out->cls = CKO_CERTIFICATE;
        rv = CKR_OK;
    }
    vtp_snapshot_unref(s);
    return rv;
}

CK_RV vtp_cache_lookup(struct vtp_cache *c, CK_OBJECT_HANDLE h, struct vtp_key **key,
                       CK_OBJECT_CLASS *cls)
{
    struct vtp_obj o;
    CK_RV rv = vtp_cache_lookup_obj(c, h, &o);

    if (rv != CKR_OK)
        return rv;
    if (o.key == NULL) {
        vtp_obj_release(&o);
        return CKR_OBJECT_HANDLE_INVALID;
    }
    *key = o.key;
    *cls = o.cls;
    return CKR_OK;
}

/* A new snapshot: old (may be NULL) with the change applied. Drops the key named drop_key (and
 * its retired versions) and the certificate with handle drop_cert, then adds the n_add keys of
 * add_keys (replacing keys of the same name), add_cert and the memo entry. NULL: no memory. */
static struct vtp_snapshot *apply(const struct vtp_snapshot *old, const struct change *ch)
{
    const char *drop_key = ch->drop_key;
    struct vtp_key **add_keys = ch->add_keys;
    size_t n_add = ch->n_add;
    struct vtp_snapshot *s;

    s = snapshot_new((old ? old->n : 0) + n_add, old ? old->n_retired : 0,
                     (old ? old->n_certs : 0) + 1);
    if (s == NULL)
        return NULL;
    s->names = strv_copy(old ? old->names : NULL, old ? old->n_names : 0, n_add);
    s->memo = strv_copy(old ? old->memo : NULL, old ? old->n_memo : 0, 1);
    if (s->names == NULL || s->memo == NULL) {
        vtp_snapshot_unref(s);
        return NULL;
    }
    s->n_names = old ? old->n_names : 0;
    s->n_memo = old ? old->n_memo : 0;
    s->complete = old ? old->complete : false;
    for (size_t i = 0; old != NULL && i < old->n; i++) {
        bool replaced = false;
        for (size_t j = 0; j < n_add && !replaced && !ch->if_absent; j++)
            replaced = strcmp(old->keys[i]->name, add_keys[j]->name) == 0;
        if (replaced || (drop_key != NULL && strcmp(old->keys[i]->name, drop_key) == 0))
            continue;
        s->keys[s->n++] = vtp_key_ref(old->keys[i]);
    }
    for (size_t i = 0; old != NULL && i < old->n_retired; i++) {
        if (drop_key != NULL && strcmp(old->retired[i]->name, drop_key) == 0 &&
            (n_add == 0 || strcmp(add_keys[0]->name, drop_key) != 0))
            continue; /* the key is gone: so are its old versions */
        s->retired[s->n_retired++] = vtp_key_ref(old->retired[i]);
    }
    for (size_t i = 0; old != NULL && i < old->n_certs; i++) {
        if (ch->drop_cert != 0 && old->certs[i]->handle == ch->drop_cert)
            continue;
        s->certs[s->n_certs++] = vtp_cert_ref(old->certs[i]);
    }
    for (size_t j = 0; j < n_add; j++) {
        bool twice = false;
        for (size_t i = 0; i < j && !twice; i++) /* one object per key name */
            twice = strcmp(add_keys[i]->name, add_keys[j]->name) == 0;
        if (twice)
            continue;
        if (ch->if_absent && (old == NULL || !has_name(old, add_keys[j]->name) ||
                              key_loaded(old, add_keys[j]->name)))
            continue; /* destroyed, or loaded (with its handles) by someone else meanwhile */
        s->keys[s->n++] = vtp_key_ref(add_keys[j]);
        if (!has_name(s, add_keys[j]->name)) {
            char *dup = strdup(add_keys[j]->name);
            if (dup == NULL)
                continue; /* only the list is short: the key is still shown */
            s->names[s->n_names++] = dup;
            qsort(s->names, s->n_names, sizeof(*s->names), cmp_str);
        }
    }
    if (drop_key != NULL && n_add == 0) {
        for (size_t i = 0; i < s->n_names; i++) {
            if (strcmp(s->names[i], drop_key) == 0) {
                free(s->names[i]);
                memmove(&s->names[i], &s->names[i + 1], (s->n_names - i - 1) * sizeof(char *));
                s->names[--s->n_names] = NULL;
                break;
            }
        }
    }
    if (ch->memo != NULL && (s->memo[s->n_memo] = strdup(ch->memo)) != NULL)
        s->n_memo++;
    if (ch->add_cert != NULL)
        s->certs[s->n_certs++] = vtp_cert_ref(ch->add_cert);
    s->loaded_ms = old ? old->loaded_ms : 0; /* never loaded: the next search loads all */
    return s;
}

static void change_free(struct change *ch)
{
    if (ch == NULL)
        return;
    for (size_t i = 0; i < ch->n_add; i++)
        vtp_key_unref(ch->add_keys[i]);
    free(ch->add_keys);
    if (ch->add_cert != NULL)
        vtp_cert_unref(ch->add_cert);
    free(ch->drop_key);
    free(ch->memo);
    free(ch);
}

static void journal_clear_locked(struct vtp_cache *c)
{
    struct change *ch, *next;

    for (ch = c->journal; ch != NULL; ch = next) {
        next = ch->next;
        change_free(ch);
    }
    c->journal = NULL;
    c->journal_tail = &c->journal;
}

/* A copy of ch for the journal (its own references). */
static struct change *change_copy(const struct change *ch)
{
    struct change *cp = calloc(1, sizeof(*cp));

    if (cp == NULL)
        return NULL;
    cp->drop_cert = ch->drop_cert;
    cp->if_absent = ch->if_absent;
    if ((ch->drop_key != NULL && (cp->drop_key = strdup(ch->drop_key)) == NULL) ||
        (ch->memo != NULL && (cp->memo = strdup(ch->memo)) == NULL) ||
        (ch->n_add > 0 && (cp->add_keys = calloc(ch->n_add, sizeof(*cp->add_keys))) == NULL)) {
        change_free(cp);
        return NULL;
    }
    for (size_t i = 0; i < ch->n_add; i++)
        cp->add_keys[cp->n_add++] = vtp_key_ref(ch->add_keys[i]);
    if (ch->add_cert != NULL)
        cp->add_cert = vtp_cert_ref(ch->add_cert);
    return cp;
}

/* Applies a change to the current snapshot; while a load runs, journals it for that load. */
static CK_RV modify(struct vtp_cache *c, const struct change *ch)
{
    struct vtp_snapshot *old, *s;
    struct change *cp = NULL;
    CK_RV rv = CKR_OK;

    pthread_mutex_lock(&c->change_lock);
    /* the journal's copy first: a change the running load would lose is not made at all */
    if (c->loading && (cp = change_copy(ch)) == NULL) {
        pthread_mutex_unlock(&c->change_lock);
        return CKR_HOST_MEMORY;
    }
    old = current_ref(c);
    s = apply(old, ch);
    if (s == NULL) {
        change_free(cp);
        rv = CKR_HOST_MEMORY;
    } else {
        publish(c, s);
        if (cp != NULL) {
            *c->journal_tail = cp;
            c->journal_tail = &cp->next;
        }
    }
    pthread_mutex_unlock(&c->change_lock);
    vtp_snapshot_unref(old);
    return rv;
}

static CK_RV modify_simple(struct vtp_cache *c, const char *drop_key, struct vtp_key *add_key,
                           CK_OBJECT_HANDLE drop_cert, struct vtp_cert *add_cert)
{
    struct vtp_key *keys[1] = {add_key};
    struct change ch = {(char *)drop_key, add_key ? keys : NULL, add_key ? 1 : 0, drop_cert,
                        add_cert, NULL, false, NULL};

    return modify(c, &ch);
}

/* ---------------------------------------------------------------------------------------- */
/* Searches by CKA_LABEL / CKA_ID without reading every key */

static bool memo_has(const struct vtp_snapshot *s, const char *m)
{
    for (size_t i = 0; i < s->n_memo; i++)
        if (strcmp(s->memo[i], m) == 0)
            return true;
    return false;
}

/* Adds key name to the candidates of a search unless it is there already or not listed. */
static void add_candidate(const struct vtp_snapshot *s, char **cand, size_t *n, size_t max,
                          const char *name)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(cand[i], name) == 0)
            return; /* the key named after the value may be in the index too */
    if (*n < max && has_name(s, name) && (cand[*n] = strdup(name)) != NULL)
        (*n)++;
}

CK_RV vtp_cache_resolve(struct vtp_cache *c, CK_ATTRIBUTE_TYPE type, const void *value,
                        size_t len)
{
    const struct vtp_transit *t = c->conf.transit;
    struct vtp_snapshot *s;
    struct vtp_key *loaded[64];
    size_t n_loaded = 0, n_cand = 0;
    char *memo = NULL, *hex = NULL, *cand[64];
    json_t *index = NULL;
    CK_RV rv = CKR_OK;

    hex = vtp_hex_encode(value, len);
    memo = hex ? vtp_join3(type == CKA_LABEL ? "l:" : "i:", hex, "") : NULL;
    if (memo == NULL) {
        free(hex);
        return CKR_HOST_MEMORY;
    }
    /* No lock across the requests below. The keys they load are added only where the key is
     * still listed and not loaded yet: a concurrent search, key generation, destruction or
     * label change keeps what it published (and the handles it gave out). */
    s = current_ref(c);
    if (s == NULL || s->complete || memo_has(s, memo))
        goto out;
    /* 1. The key whose name gives this value by default: <prefix><value>. */
    if (len > 0 && len < 200) {
        char *name = malloc(strlen(c->prefix) + len + 1);
        if (name == NULL) {
            rv = CKR_HOST_MEMORY;
            goto out;
        }
        memcpy(name, c->prefix, strlen(c->prefix));
        memcpy(name + strlen(c->prefix), value, len);
        name[strlen(c->prefix) + len] = '\0';
        if (strlen(name) == strlen(c->prefix) + len && has_name(s, name))
            cand[n_cand++] = name;
        else
            free(name);
    }
    /* 2. Keys made without KV whose names carry it (kvstore.h). */
    for (size_t i = 0; i < s->n_names && n_cand < VTP_ARRAY_SIZE(cand); i++) {
        const char *shortname = s->names[i] + strlen(c->prefix);
        unsigned char *id = NULL;
        size_t label_len = 0, id_len = 0;
        long usage;
        bool match;
        if (!vtp_name_decode(shortname, &label_len, &id, &id_len, &usage))
            continue;
        match = type == CKA_LABEL ? label_len == len && memcmp(shortname, value, len) == 0
                                  : id_len == len && (len == 0 || memcmp(id, value, len) == 0);
        free(id);
        if (match)
            add_candidate(s, cand, &n_cand, VTP_ARRAY_SIZE(cand), s->names[i]);
    }
    /* 3. The keys the KV index names for it: its entries, and the older one document. */
    if (vtp_kv_mount(t) != NULL) {
        char *path = vtp_kv_index_path(t, type, value, len), **entries = NULL;
        size_t n_entries = 0;
        const char *k;
        json_t *v;
        if (path == NULL) {
            rv = CKR_HOST_MEMORY;
            goto out;
        }
        rv = vtp_kv_list(t, path, &entries, &n_entries);
        if (rv == CKR_OK)
            rv = vtp_kv_read(t, path, &index);
        free(path);
        for (size_t i = 0; rv == CKR_OK && i < n_entries; i++)
            add_candidate(s, cand, &n_cand, VTP_ARRAY_SIZE(cand), entries[i]);
        vtp_strv_free(entries, n_entries);
        if (rv != CKR_OK)
            goto out;
        json_object_foreach(index, k, v)
        {
            add_candidate(s, cand, &n_cand, VTP_ARRAY_SIZE(cand), k);
        }
    }
    for (size_t i = 0; i < n_cand; i++) {
        struct vtp_key *k = NULL;
        CK_RV lrv;
        if (key_loaded(s, cand[i]))
            continue;
        lrv = vtp_cache_load_key(c, cand[i], &k);
        if (lrv == CKR_OK)
            loaded[n_loaded++] = k;
        else if (lrv != CKR_KEY_TYPE_INCONSISTENT && lrv != VTP_ERR_KEY_MISSING) {
            rv = lrv;
            goto out;
        }
    }
    {
        struct change ch = {NULL, loaded, n_loaded, 0, NULL, memo, true, NULL};
        rv = modify(c, &ch);
    }
    VTP_LOG_DEBUG("search by %s: %zu candidate keys, %zu loaded", vtp_attr_name(type), n_cand,
                  n_loaded);
out:
    for (size_t i = 0; i < n_loaded; i++)
        vtp_key_unref(loaded[i]);
    for (size_t i = 0; i < n_cand; i++)
        free(cand[i]);
    json_decref(index);
    vtp_snapshot_unref(s);
    free(memo);
    free(hex);
    return rv;
}

CK_RV vtp_cache_put(struct vtp_cache *c, struct vtp_key *k)
{
    return modify_simple(c, k->name, k, 0, NULL);
}

CK_RV vtp_cache_remove(struct vtp_cache *c, const char *name)
{
    return modify_simple(c, name, NULL, 0, NULL);
}

CK_RV vtp_cache_put_cert(struct vtp_cache *c, struct vtp_cert *cert)
{
    return modify_simple(c, NULL, NULL, cert->handle, cert);
}

CK_RV vtp_cache_remove_cert(struct vtp_cache *c, CK_OBJECT_HANDLE h)
{
    return modify_simple(c, NULL, NULL, h, NULL);
}

void vtp_cache_note_destroyed(struct vtp_cache *c, CK_OBJECT_HANDLE other_half)
{
    pthread_mutex_lock(&c->lock);
    if (c->n_destroyed == VTP_ARRAY_SIZE(c->destroyed)) {
        memmove(c->destroyed, c->destroyed + 1, sizeof(c->destroyed) - sizeof(c->destroyed[0]));
        c->n_destroyed--;
    }
    c->destroyed[c->n_destroyed++] = other_half;
    pthread_mutex_unlock(&c->lock);
}

bool vtp_cache_take_destroyed(struct vtp_cache *c, CK_OBJECT_HANDLE h)
{
    bool found = false;

    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->n_destroyed && !found; i++) {
        if (c->destroyed[i] == h) {
            c->destroyed[i] = c->destroyed[--c->n_destroyed];
            found = true;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return found;
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
