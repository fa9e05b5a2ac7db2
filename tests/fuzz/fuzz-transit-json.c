/* fuzz-transit-json.c - what the module builds from JSON that Vault (or its own cache file)
 * gives it: src/vault/transit.c's parsers and the objects src/object.c and src/cache.c make of
 * their results.
 *
 * The first byte picks the target; the rest is JSON (parsed as http.c parses an answer):
 *  'k' a read-key answer's data: vtp_transit_parse_key; a key with a public key then goes
 *      through vtp_key_build (the JSON may also be [data, meta, prefix]: the KV metadata
 *      {"id","label"} and the slot's key prefix), whose objects' attributes must follow the
 *      two-call rules and show the stored label and ID, and through vtp_key_relabel;
 *  's' a sign answer's data: two more digits give the number of items (0..8) and the key
 *      version (0..3) for vtp_transit_parse_sign_results; each item ends with a signature or an
 *      error, never both, and every result sits at the item its reference names;
 *  'c' a certificate's KV data: vtp_cert_from_json, then the checks of fuzz_check_cert;
 *  'o' the on-disk copy of a slot's cache (cache_dir), read as the cache reads it when Vault
 *      cannot be reached (every Transit call fails here), with a read-only certificate file
 *      configured too: every key and certificate the snapshot shows must be found by its
 *      handles;
 *  'a' a whole sign answer's body, after the same two digits (1..8 items): what the hot path's
 *      scanner (vtp_transit_scan_sign_answer) reads must be what jansson and
 *      vtp_transit_read_sign_answer read, and a scan that gives up leaves the items alone.
 * Any other first byte picks one of them by its value modulo 5. */
#define _GNU_SOURCE 1 /* memfd_create */
#include "config.h"

#include <sys/mman.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cache.h"
#include "object.h"
#include "vault/transit.h"
#include "fuzz.h"

static char cert_file[64];

/* --- 'k' ---------------------------------------------------------------------------------- */

static void check_key(struct vtp_key *k, const struct vtp_transit_key *tk, const json_t *meta)
{
    struct vtp_obj priv = {CKO_PRIVATE_KEY, k, NULL}, pub = {CKO_PUBLIC_KEY, k, NULL};
    const char *label = json_string_value(json_object_get(meta, "label"));
    struct vtp_key *r = NULL;
    CK_ULONG len = 0;
    char *v;
    CK_RV rv;

    FUZZ_CHECK(strcmp(k->name, tk->name) == 0 && k->version == tk->latest_version, "name/version");
    FUZZ_CHECK(k->pub_handle == k->priv_handle + 1, "handles");
    fuzz_check_attrs(fuzz_obj_get, &priv);
    fuzz_check_attrs(fuzz_obj_get, &pub);
    v = fuzz_attr_value(fuzz_obj_get, &priv, CKA_LABEL, &len);
    FUZZ_CHECK(v != NULL, "no CKA_LABEL");
    if (label != NULL)
        FUZZ_CHECK(fuzz_same(v, len, label, strlen(label)), "CKA_LABEL is not the stored label");
    free(v);
    v = fuzz_attr_value(fuzz_obj_get, &pub, CKA_ID, &len);
    FUZZ_CHECK(v != NULL && len > 0, "no CKA_ID");
    free(v);

    rv = vtp_key_relabel(k, (const unsigned char *)"\x01\x02", 2, "relabelled", 10, &r);
    FUZZ_CHECK(rv == CKR_OK, "relabel: 0x%lx", rv);
    FUZZ_CHECK(r->priv_handle == k->priv_handle &&
                   fuzz_same(r->spki, r->spki_len, k->spki, k->spki_len),
               "relabel changed the key");
    FUZZ_CHECK(strcmp(r->label, "relabelled") == 0 && fuzz_same(r->id, r->id_len, "\x01\x02", 2),
               "relabel did not relabel");
    priv.key = r;
    fuzz_check_attrs(fuzz_obj_get, &priv);
    vtp_key_unref(r);
}

static void fuzz_key(const json_t *root)
{
    const json_t *data = root, *meta = NULL;
    const char *prefix = "";
    struct vtp_transit_key *tk = NULL;
    struct vtp_key *k = NULL;
    CK_RV rv;

    if (json_is_array(root)) {
        data = json_array_get(root, 0);
        meta = json_array_get(root, 1);
        if (json_is_string(json_array_get(root, 2)))
            prefix = json_string_value(json_array_get(root, 2));
    }
    rv = vtp_transit_parse_key(data, &tk);
    FUZZ_CHECK(rv == CKR_OK || rv == CKR_DEVICE_ERROR, "parse_key: 0x%lx", rv);
    if (rv != CKR_OK)
        return;
    FUZZ_CHECK(strcmp(tk->name, json_string_value(json_object_get(data, "name"))) == 0 &&
                   strcmp(tk->type, json_string_value(json_object_get(data, "type"))) == 0,
               "name or type");
    FUZZ_CHECK((tk->spki == NULL) == (tk->spki_len == 0), "spki %p %zu", (void *)tk->spki,
               tk->spki_len);
    rv = vtp_key_build(tk, meta, prefix, &k);
    FUZZ_CHECK(rv == CKR_OK || rv == CKR_KEY_TYPE_INCONSISTENT ||
                   (rv == CKR_ARGUMENTS_BAD && tk->name[0] == '\0'),
               "key_build: 0x%lx", rv);
    if (rv == CKR_OK) {
        check_key(k, tk, meta);
        vtp_key_unref(k);
    }
    vtp_transit_key_free(tk);
}

/* --- 's' ---------------------------------------------------------------------------------- */

static void fuzz_sign(const json_t *data, size_t n, unsigned long version)
{
    struct vtp_sign_item *items = calloc(n > 0 ? n : 1, sizeof(*items));
    const json_t *results = json_object_get(data, "batch_results"), *r;
    size_t i;
    CK_RV rv;

    if (items == NULL)
        abort();
    for (i = 0; i < n; i++)
        items[i] = (struct vtp_sign_item){NULL, 0, NULL, 0, CKR_GENERAL_ERROR};
    rv = vtp_transit_parse_sign_results(data, version, items, n);
    FUZZ_CHECK(rv == CKR_OK || rv == CKR_DEVICE_ERROR, "parse_sign_results: 0x%lx", rv);
    for (i = 0; i < n; i++) {
        if (rv != CKR_OK || items[i].rv != CKR_OK)
            FUZZ_CHECK(items[i].rv != CKR_OK, "item %zu", i);
        if (items[i].rv == CKR_OK)
            FUZZ_CHECK(items[i].sig != NULL && items[i].sig_len > 0,
                       "item %zu succeeded without a signature", i);
        FUZZ_CHECK(items[i].rv != CKR_GENERAL_ERROR, "item %zu left unset", i);
    }
    /* A signature lands at the item its reference names (the first result for it counts). */
    bool taken[9] = {false};
    json_array_foreach(results, i, r)
    {
        const char *ref = json_string_value(json_object_get(r, "reference"));
        const char *sig = json_string_value(json_object_get(r, "signature"));
        char *end;
        unsigned long idx;
        if (rv != CKR_OK || ref == NULL || sig == NULL || ref[0] < '0' || ref[0] > '9')
            continue;
        idx = strtoul(ref, &end, 10);
        if (*end != '\0' || idx >= n || taken[idx])
            continue;
        taken[idx] = true;
        if (items[idx].rv != CKR_OK)
            continue;
        FUZZ_CHECK(strncmp(sig, "vault:v", 7) == 0, "item %lu: signature '%s'", idx, sig);
    }
    for (i = 0; i < n; i++)
        free(items[i].sig); /* as sign.c does, whatever the item's result */
    free(items);
}

/* --- 'a' ---------------------------------------------------------------------------------- */

/* The sign answer's scanner against jansson: when the scanner reads a body, jansson parses it
 * too and reading that gives every item the same signature; when it gives up, the items are
 * as they were. */
static void fuzz_answer(const char *body, size_t len, size_t n, unsigned long version)
{
    struct vtp_sign_item fast[8], full[8];
    json_error_t err;
    json_t *root;
    size_t i;
    CK_RV rv;

    for (i = 0; i < n; i++)
        fast[i] = full[i] = (struct vtp_sign_item){NULL, 0, NULL, 0, CKR_GENERAL_ERROR};
    if (!vtp_transit_scan_sign_answer(body, len, version, fast, n)) {
        for (i = 0; i < n; i++)
            FUZZ_CHECK(fast[i].sig == NULL && fast[i].rv == CKR_GENERAL_ERROR,
                       "item %zu changed by a scan that gave up", i);
        return;
    }
    root = json_loadb(body, len, 0, &err);
    FUZZ_CHECK(root != NULL, "the scanner read what jansson refuses: %s", err.text);
    rv = vtp_transit_read_sign_answer(root, version, full, n);
    FUZZ_CHECK(rv == CKR_OK, "read_sign_answer: 0x%lx", rv);
    for (i = 0; i < n; i++) {
        FUZZ_CHECK(fast[i].rv == CKR_OK && full[i].rv == CKR_OK, "item %zu: 0x%lx vs 0x%lx", i,
                   fast[i].rv, full[i].rv);
        FUZZ_CHECK(fast[i].sig_len == full[i].sig_len &&
                       memcmp(fast[i].sig, full[i].sig, fast[i].sig_len) == 0,
                   "item %zu: the scanner read another signature", i);
        free(fast[i].sig);
        free(full[i].sig);
    }
    json_decref(root);
}

/* --- 'c' ---------------------------------------------------------------------------------- */

static void fuzz_cert(const json_t *data)
{
    struct vtp_cert *c = NULL;
    CK_RV rv = vtp_cert_from_json(data, "kv-name", &c);

    FUZZ_CHECK(rv == CKR_OK || rv == CKR_DEVICE_ERROR || rv == CKR_ATTRIBUTE_VALUE_INVALID,
               "cert_from_json: 0x%lx", rv);
    if (rv != CKR_OK)
        return;
    FUZZ_CHECK(c->kv_name != NULL && strcmp(c->kv_name, "kv-name") == 0, "kv_name");
    fuzz_check_cert(c);
    vtp_cert_unref(c);
}

/* --- 'o' ---------------------------------------------------------------------------------- */

/* Vault is down: every Transit and KV call fails. */
static CK_RV down_list(const struct vtp_transit *t, char ***names, size_t *n)
{
    (void)t, (void)names, (void)n;
    return CKR_DEVICE_ERROR;
}
static CK_RV down_read(const struct vtp_transit *t, const char *name, struct vtp_transit_key **out)
{
    (void)t, (void)name, (void)out;
    return CKR_DEVICE_ERROR;
}
static CK_RV down_kv_read(const struct vtp_transit *t, const char *path, json_t **data)
{
    (void)t, (void)path, (void)data;
    return CKR_DEVICE_ERROR;
}
static CK_RV down_kv_list(const struct vtp_transit *t, const char *path, char ***names, size_t *n)
{
    (void)t, (void)path, (void)names, (void)n;
    return CKR_DEVICE_ERROR;
}
static const struct vtp_transit_ops down_ops = {
    .list_keys = down_list,
    .read_key = down_read,
    .kv_read = down_kv_read,
    .kv_list = down_kv_list,
};

static void fuzz_offline(const uint8_t *json, size_t len, bool with_kv)
{
    const struct vtp_transit t = {.mount = "transit",
                                  .kv_mount = with_kv ? "secret" : NULL,
                                  .kv_prefix = "vault-transit-pkcs11"};
    struct vtp_cache_conf conf = {.transit = &t,
                                  .key_prefix = "",
                                  .ttl_ms = 60000,
                                  .allow_destroy = true,
                                  .cert_files = cert_file};
    struct vtp_cache *c = NULL;
    struct vtp_snapshot *s = NULL;
    char path[64];
    int fd = memfd_create("fuzz-cache", MFD_CLOEXEC);
    CK_RV rv;

    if (fd < 0 || (len > 0 && write(fd, json, len) != (ssize_t)len))
        abort();
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    conf.disk_path = path;
    vtp_transit_set_ops(&down_ops);
    FUZZ_CHECK(vtp_cache_new(&conf, &c) == CKR_OK, "cache_new");
    rv = vtp_cache_get(c, true, true, &s);
    FUZZ_CHECK(rv == CKR_OK || rv == CKR_DEVICE_ERROR, "offline cache_get: 0x%lx", rv);
    if (rv == CKR_OK) {
        for (size_t i = 0; i < s->n; i++) {
            struct vtp_obj o;
            struct vtp_key *k = s->keys[i];
            FUZZ_CHECK(i == 0 || s->keys[i - 1]->priv_handle < k->priv_handle,
                       "keys not sorted by handle");
            for (int half = 0; half < 2; half++) {
                CK_OBJECT_HANDLE h = half ? k->pub_handle : k->priv_handle;
                rv = vtp_cache_lookup_obj(c, h, &o);
                FUZZ_CHECK(rv == CKR_OK && o.key == k, "key %s: handle %lu not found: 0x%lx",
                           k->name, h, rv);
                fuzz_check_attrs(fuzz_obj_get, &o);
                vtp_obj_release(&o);
            }
        }
        for (size_t i = 0; i < s->n_certs; i++) {
            struct vtp_obj o;
            rv = vtp_cache_lookup_obj(c, s->certs[i]->handle, &o);
            FUZZ_CHECK(rv == CKR_OK && o.cert == s->certs[i],
                       "certificate %zu of %zu (%s, handle %lu) not found by its handle: 0x%lx", i,
                       s->n_certs, s->certs[i]->read_only ? "file" : "KV", s->certs[i]->handle, rv);
            vtp_obj_release(&o);
        }
        vtp_snapshot_unref(s);
    }
    vtp_cache_free(c);
    vtp_transit_set_ops(NULL);
    close(fd);
}

/* --- setup -------------------------------------------------------------------------------- */

/* A read-only certificate file for the 'o' target: a self-signed P-256 certificate made now. */
static void make_cert_file(void)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    FILE *f;
    int fd;

    snprintf(cert_file, sizeof(cert_file), "/tmp/vtp-fuzz-cert.XXXXXX");
    fd = mkstemp(cert_file);
    if (pk == NULL || x == NULL || name == NULL || fd < 0 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"fuzz", -1, -1,
                                   0) != 1 ||
        X509_set_version(x, 2) != 1 || ASN1_INTEGER_set(X509_get_serialNumber(x), 7) != 1 ||
        X509_set_subject_name(x, name) != 1 || X509_set_issuer_name(x, name) != 1 ||
        X509_gmtime_adj(X509_getm_notBefore(x), 0) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 86400) == NULL || X509_set_pubkey(x, pk) != 1 ||
        X509_sign(x, pk, EVP_sha256()) <= 0 || (f = fdopen(fd, "w")) == NULL ||
        PEM_write_X509(f, x) != 1 || fclose(f) != 0)
        abort();
    X509_NAME_free(name);
    X509_free(x);
    EVP_PKEY_free(pk);
}

static void remove_cert_file(void)
{
    unlink(cert_file);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_setup_log();
    make_cert_file();
    atexit(remove_cert_file);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t err;
    json_t *root;
    int target;
    size_t n = 0;
    unsigned long version = 0;

    if (size == 0)
        return 0;
    target = data[0] == 'k'   ? 0
             : data[0] == 's' ? 1
             : data[0] == 'c' ? 2
             : data[0] == 'o' ? 3
             : data[0] == 'a' ? 4
                              : data[0] % 5;
    data++;
    size--;
    if (target == 1 || target == 4) {
        if (size < 2)
            return 0;
        n = (uint8_t)(data[0] - '0') % 9; /* "31": 3 items, version 1 */
        if (target == 4 && n == 0)
            n = 1;
        version = (uint8_t)(data[1] - '0') % 4;
        data += 2;
        size -= 2;
    }
    if (target == 3) {
        /* the cache reads the file itself; with KV or without (read-only certificates only) */
        fuzz_offline(data, size, size % 2 == 0);
        return 0;
    }
    if (target == 4) {
        fuzz_answer((const char *)data, size, n, version);
        return 0;
    }
    root = json_loadb((const char *)data, size, 0, &err);
    if (root == NULL)
        return 0;
    switch (target) {
    case 0:
        fuzz_key(root);
        break;
    case 1:
        fuzz_sign(root, n, version);
        break;
    case 2:
        fuzz_cert(root);
        break;
    }
    json_decref(root);
    return 0;
}
