/* transit.c - typed Transit and KV v2 requests and their JSON (jansson).
 *
 * Paths are built from escaped segments. Every answer is classified here, once
 * (vtp_transit_classify): CKR_OK, or the internal error kind of src/vault/errkind.h that says what
 * Vault or OpenBao meant (a key missing, a policy denial, a server unavailable, ...). This file is
 * the one place that knows their error texts; http.c reads only the status and whether the
 * token was refused. The typed calls return that kind (or a standard CK_RV for a local failure:
 * CKR_HOST_MEMORY, CKR_DEVICE_ERROR for an answer that does not parse); each entry point turns
 * the kind into a code PKCS#11 lets it return (src/errmap.c). The only local adjustments are the
 * ones the interface promises (absent KV data, a missing key on delete and empty lists are
 * success). docs/errors.md has the table; tests/unit/test-errmap.c tests every row.
 */
#include "common.h"

#include <stdatomic.h>

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <openssl/evp.h>

#include "kvstore.h"
#include "util.h"
#include "vault/errkind.h"
#include "vault/transit.h"

/* DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), followed by the 32-byte key. */
static const unsigned char ed25519_spki_prefix[] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                                    0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
#define ED25519_KEY_LEN 32

/* ---------------------------------------------------------------------------------------- */
/* paths */

/* Escapes each '/'-separated segment of p, dropping empty ones ("a//b/" -> "a/b"). */
static char *escape_segments(const char *p)
{
    char *out = NULL, *copy = NULL, *seg, *save = NULL, *esc;
    size_t len = 0, cap;

    if (p == NULL)
        return strdup("");
    copy = strdup(p);
    cap = strlen(p) * 3 + 1;
    out = malloc(cap);
    if (copy == NULL || out == NULL)
        goto fail;
    out[0] = '\0';
    for (seg = strtok_r(copy, "/", &save); seg != NULL; seg = strtok_r(NULL, "/", &save)) {
        size_t el;

        esc = vtp_http_escape(seg);
        if (esc == NULL)
            goto fail;
        el = strlen(esc);
        /* an escaped segment is at most 3x its length, so cap always suffices */
        if (len != 0)
            out[len++] = '/';
        memcpy(out + len, esc, el);
        len += el;
        out[len] = '\0';
        free(esc);
    }
    free(copy);
    return out;
fail:
    free(copy);
    free(out);
    return NULL;
}

/* Joins already-escaped parts with '/', skipping NULL and empty ones. NULL-terminated list. */
static char *join_path(const char *first, ...)
{
    va_list ap;
    const char *part;
    size_t len = 0;
    char *out;

    va_start(ap, first);
    for (part = first; part != NULL; part = va_arg(ap, const char *))
        len += strlen(part) + 1;
    va_end(ap);
    out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    out[0] = '\0';
    len = 0;
    va_start(ap, first);
    for (part = first; part != NULL; part = va_arg(ap, const char *)) {
        size_t pl = strlen(part);

        if (pl == 0)
            continue;
        if (len != 0)
            out[len++] = '/';
        memcpy(out + len, part, pl);
        len += pl;
        out[len] = '\0';
    }
    va_end(ap);
    return out;
}

/* "<mount>/<what>/<name>[/<suffix>]" with mount and name escaped. */
char *vtp_transit_path(const struct vtp_transit *t, const char *what, const char *name,
                       const char *suffix)
{
    char *mount = escape_segments(t->mount);
    char *ename = name != NULL ? vtp_http_escape(name) : strdup("");
    char *path = NULL;

    if (mount != NULL && ename != NULL)
        path = join_path(mount, what, ename, suffix != NULL ? suffix : "", (const char *)NULL);
    free(mount);
    free(ename);
    return path;
}

/* "<kv_mount>/<kind>/<kv_prefix>/<path>" */
char *vtp_kv_path_in(const struct vtp_transit *t, const char *kv_mount, const char *kind,
                     const char *path)
{
    char *mount = escape_segments(kv_mount);
    char *prefix = escape_segments(t->kv_prefix);
    char *rel = escape_segments(path);
    char *out = NULL;

    if (mount != NULL && prefix != NULL && rel != NULL)
        out = join_path(mount, kind, prefix, rel, (const char *)NULL);
    free(mount);
    free(prefix);
    free(rel);
    return out;
}

static char *kv_path(const struct vtp_transit *t, const char *kind, const char *path)
{
    const char *kv_mount = vtp_kv_mount(t);

    return kv_mount != NULL ? vtp_kv_path_in(t, kv_mount, kind, path) : NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* what an answer means (docs/errors.md) */

static bool contains(const json_t *body, const char *needle)
{
    return vtp_vault_error_contains(body, needle);
}

static bool any_contains(const json_t *body, const char *const *texts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (contains(body, texts[i]))
            return true;
    return false;
}

/* A key that does not exist: sign/encrypt (older Vault: "encryption key not found"), verify,
 * config, delete, rotate. */
static const char *const key_missing_texts[] = {
    "signing key not found",
    "encryption key not found",
    "signature verification key not found",
    "no existing key named",
    "could not delete key; not found",
    "key not found",
};

/* The input does not fit: RSA's message length, a digest of the wrong length (Go's texts). */
static const char *const too_long_texts[] = {
    "message too long",
    "input must be hashed",
};

/* A body the server refused as too large or too complex, whatever the status: OpenBao's JSON
 * limits (400), HashiCorp Vault's (answered with 500, shared/reference/vault-http-api.md
 * section 6). The batch layer sends such a batch again in halves. */
static const char *const too_large_texts[] = {
    /* OpenBao >= 2.4.1 */
    "refused JSON input due to high complexity",
    /* HashiCorp Vault >= 1.16.25/1.21.0 */
    "JSON array exceeds allowed element count",
    "JSON object exceeds allowed entry count",
    "JSON payload exceeds allowed token count",
    "JSON string value exceeds allowed length",
    "JSON input exceeds allowed nesting depth",
};

/* A key version that cannot be used any more: signing ("requested version for signing is higher
 * than the latest key version", "... less than the minimum encryption key version", "... does not
 * contain a private part"), decryption (below min_decryption_version, a version without a
 * private part). */
static const char *const version_texts[] = {
    "requested version for signing",
    "version is disallowed by policy",
    "key version does not have a private counterpart",
};

/* What a signing or decryption primitive said (single requests: 400 for the handler's checks,
 * 500 for the primitive's own errors), or CKR_OK if none of these. */
static CK_RV primitive_error(const json_t *body)
{
    if (any_contains(body, too_long_texts, VTP_ARRAY_SIZE(too_long_texts)))
        return VTP_ERR_MESSAGE_TOO_LONG;
    if (contains(body, "salt length"))
        return VTP_ERR_SALT_LENGTH;
    if (contains(body, "decryption error"))
        return VTP_ERR_DECRYPT_FAILED;
    if (any_contains(body, version_texts, VTP_ARRAY_SIZE(version_texts)))
        return VTP_ERR_VERSION_UNAVAILABLE;
    return CKR_OK;
}

CK_RV vtp_transit_classify(long status, const json_t *body)
{
    CK_RV kind;

    if (status >= 200 && status < 300)
        return CKR_OK;
    if (vtp_http_token_refused(status, body))
        return VTP_ERR_TOKEN_INVALID;
    if (vtp_http_unavailable(status, body))
        return VTP_ERR_UNAVAILABLE; /* what was left after vtp_http_request's retries */
    if (status == 413 ||
        (status >= 400 && any_contains(body, too_large_texts, VTP_ARRAY_SIZE(too_large_texts))))
        return VTP_ERR_TOO_LARGE;

    switch (status) {
    case 400:
        if (any_contains(body, key_missing_texts, VTP_ARRAY_SIZE(key_missing_texts)))
            return VTP_ERR_KEY_MISSING;
        if (contains(body, "deletion is not allowed"))
            return VTP_ERR_DELETION_NOT_ALLOWED;
        if (contains(body, "check-and-set parameter did not match"))
            return VTP_ERR_CAS_MISMATCH; /* KV v2 */
        kind = primitive_error(body);
        /* Any other refusal: the caller's arguments were checked before the request was sent,
         * so this is never the caller's mistake. */
        return kind != CKR_OK ? kind : VTP_ERR_REFUSED;
    case 403:
        /* a namespace on Vault CE */
        if (contains(body, "namespaces feature not enabled"))
            return VTP_ERR_MISCONFIGURED;
        return VTP_ERR_DENIED; /* a valid token whose policy lacks a capability */
    case 404:
        if (contains(body, "no handler for route") || contains(body, "namespace not found"))
            return VTP_ERR_MISCONFIGURED;
        return VTP_ERR_KEY_MISSING; /* {"errors":[]}: read of a missing key or secret */
    case 405:
        return VTP_ERR_MISCONFIGURED; /* a path that does not allow the operation (KV v1?) */
    case 500:
        kind = primitive_error(body);
        return kind != CKR_OK ? kind : VTP_ERR_FAILED;
    default:
        break;
    }
    return status >= 400 && status < 500 ? VTP_ERR_REFUSED : VTP_ERR_FAILED;
}

CK_RV vtp_transit_classify_item(const char *error)
{
    if (error == NULL || error[0] == '\0')
        return CKR_OK;
    if (strstr(error, "salt length") != NULL)
        return VTP_ERR_SALT_LENGTH;
    for (size_t i = 0; i < VTP_ARRAY_SIZE(too_long_texts); i++)
        if (strstr(error, too_long_texts[i]) != NULL)
            return VTP_ERR_MESSAGE_TOO_LONG;
    for (size_t i = 0; i < VTP_ARRAY_SIZE(version_texts); i++)
        if (strstr(error, version_texts[i]) != NULL)
            return VTP_ERR_VERSION_UNAVAILABLE;
    /* "missing input", "unable to decode input": the module's encoding, not the caller's */
    if (strstr(error, "missing input") != NULL || strstr(error, "unable to decode input") != NULL)
        return VTP_ERR_REFUSED;
    return VTP_ERR_FAILED;
}

/* ---------------------------------------------------------------------------------------- */
/* requests */

/* Sends one request. *rv_vault is what the answer means (vtp_transit_classify), logged with
 * Vault's words when not CKR_OK unless quiet_missing and the answer means "not found". The
 * return value is the transport result: no usable answer in time is VTP_ERR_UNAVAILABLE. */
static CK_RV call_raw(const struct vtp_transit *t, const char *method, const char *path,
                      const json_t *body, const char *raw_body, bool quiet_missing,
                      struct vtp_http_resp *resp, CK_RV *rv_vault,
                      bool (*scan)(const char *body, size_t len, void *arg), void *scan_arg)
{
    struct vtp_http_req req = {0};
    CK_RV rv;

    req.scan = scan;
    req.scan_arg = scan_arg;
    req.method = method;
    req.path = path;
    req.namespace_ = t->namespace_;
    req.body = body;
    req.raw_body = raw_body;
    resp->status = 0;
    resp->json = NULL;
    rv = vtp_http_request(t->http, &req, resp);
    if (rv != CKR_OK) {
        VTP_LOG_ERR("%s %s: %s", method, path, vtp_rv_name(rv));
        return rv == CKR_DEVICE_ERROR ? VTP_ERR_UNAVAILABLE : rv;
    }
    *rv_vault = vtp_transit_classify(resp->status, resp->json);
    if (*rv_vault != CKR_OK && !(quiet_missing && *rv_vault == VTP_ERR_KEY_MISSING))
        VTP_LOG_WARN("%s %s -> HTTP %ld \"%s\" -> %s", method, path, resp->status,
                     vtp_vault_error_text(resp->json), vtp_rv_name(*rv_vault));
    return CKR_OK;
}

static CK_RV call(const struct vtp_transit *t, const char *method, const char *path,
                  const json_t *body, bool quiet_missing, struct vtp_http_resp *resp,
                  CK_RV *rv_vault)
{
    return call_raw(t, method, path, body, NULL, quiet_missing, resp, rv_vault, NULL, NULL);
}

static const json_t *resp_data(const struct vtp_http_resp *resp)
{
    const json_t *data;

    if (resp->json == NULL || !json_is_object(resp->json))
        return NULL;
    data = json_object_get(resp->json, "data");
    return json_is_object(data) ? data : NULL;
}

/* data.keys (array of strings) -> a new string vector. */
static CK_RV parse_names(const json_t *data, char ***names, size_t *n)
{
    const json_t *keys, *k;
    char **v = NULL;
    size_t i, count = 0;
    CK_RV rv = CKR_DEVICE_ERROR;

    keys = data != NULL ? json_object_get(data, "keys") : NULL;
    if (!json_is_array(keys)) {
        VTP_LOG_ERR("list answer without a keys array");
        goto out;
    }
    v = calloc(json_array_size(keys) + 1, sizeof(*v));
    if (v == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    json_array_foreach(keys, i, k)
    {
        const char *s = json_string_value(k);

        if (s == NULL)
            continue;
        v[count] = strdup(s);
        if (v[count] == NULL) {
            rv = CKR_HOST_MEMORY;
            goto out;
        }
        count++;
    }
    *names = v;
    *n = count;
    v = NULL;
    rv = CKR_OK;
out:
    vtp_strv_free(v, count);
    return rv;
}

void vtp_strv_free(char **v, size_t n)
{
    size_t i;

    if (v == NULL)
        return;
    for (i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* ---------------------------------------------------------------------------------------- */
/* keys */

void vtp_transit_key_free(struct vtp_transit_key *k)
{
    if (k == NULL)
        return;
    free(k->name);
    free(k->type);
    free(k->spki);
    free(k->birth);
    free(k);
}

static bool get_ulong(const json_t *obj, const char *field, unsigned long *out)
{
    const json_t *v = json_object_get(obj, field);

    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (unsigned long)json_integer_value(v);
    return true;
}

static bool get_bool(const json_t *obj, const char *field)
{
    return json_is_true(json_object_get(obj, field));
}

static CK_RV ed25519_spki(const char *b64, unsigned char **out, size_t *out_len)
{
    unsigned char *raw = NULL, *spki = NULL;
    size_t raw_len = 0;
    CK_RV rv = CKR_DEVICE_ERROR;

    if (!vtp_b64_decode(b64, strlen(b64), &raw, &raw_len) || raw_len != ED25519_KEY_LEN) {
        VTP_LOG_ERR("Ed25519 public key is not base64 of 32 bytes");
        goto out;
    }
    spki = malloc(sizeof(ed25519_spki_prefix) + ED25519_KEY_LEN);
    if (spki == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    memcpy(spki, ed25519_spki_prefix, sizeof(ed25519_spki_prefix));
    memcpy(spki + sizeof(ed25519_spki_prefix), raw, ED25519_KEY_LEN);
    *out = spki;
    *out_len = sizeof(ed25519_spki_prefix) + ED25519_KEY_LEN;
    rv = CKR_OK;
out:
    free(raw);
    return rv;
}

CK_RV vtp_transit_parse_key(const json_t *data, struct vtp_transit_key **out)
{
    struct vtp_transit_key *k = NULL;
    const json_t *keys, *ver;
    const char *name, *type, *pub;
    char vstr[32];
    CK_RV rv = CKR_DEVICE_ERROR;

    VTP_RETURN_VAL_IF_FAIL(out != NULL, CKR_ARGUMENTS_BAD);
    if (!json_is_object(data)) {
        VTP_LOG_ERR("read-key answer has no data object");
        return CKR_DEVICE_ERROR;
    }
    name = json_string_value(json_object_get(data, "name"));
    type = json_string_value(json_object_get(data, "type"));
    if (name == NULL || type == NULL) {
        VTP_LOG_ERR("read-key answer lacks name or type");
        return CKR_DEVICE_ERROR;
    }
    k = calloc(1, sizeof(*k));
    if (k == NULL)
        return CKR_HOST_MEMORY;
    k->name = strdup(name);
    k->type = strdup(type);
    if (k->name == NULL || k->type == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    if (!get_ulong(data, "latest_version", &k->latest_version)) {
        VTP_LOG_ERR("key %s: no latest_version", name);
        goto out;
    }
    if (!get_ulong(data, "min_encryption_version", &k->min_encryption_version))
        k->min_encryption_version = 0;
    k->deletion_allowed = get_bool(data, "deletion_allowed");
    k->supports_signing = get_bool(data, "supports_signing");
    k->exportable = get_bool(data, "exportable");
    k->imported = get_bool(data, "imported_key");

    /* keys: version -> {public_key, ...} for asymmetric types, version -> int otherwise */
    keys = json_object_get(data, "keys");
    if (json_is_object(keys)) {
        const char *v, *birth = NULL;
        unsigned long lowest = 0;
        json_t *e;
        json_object_foreach((json_t *)keys, v, e)
        {
            char *end;
            unsigned long n = strtoul(v, &end, 10);
            const char *ct = json_string_value(json_object_get(e, "creation_time"));
            if (*end == '\0' && n > 0 && ct != NULL && (lowest == 0 || n < lowest)) {
                lowest = n;
                birth = ct;
            }
        }
        if (birth != NULL && (k->birth = strdup(birth)) == NULL) {
            rv = CKR_HOST_MEMORY;
            goto out;
        }
    }
    snprintf(vstr, sizeof(vstr), "%lu", k->latest_version);
    ver = json_is_object(keys) ? json_object_get(keys, vstr) : NULL;
    pub = json_is_object(ver) ? json_string_value(json_object_get(ver, "public_key")) : NULL;
    if (pub == NULL || pub[0] == '\0') {
        /* symmetric, hmac, derived Ed25519 without context, ...: no public key */
        rv = CKR_OK;
        goto done;
    }
    if (strcmp(type, "ed25519") == 0) {
        rv = ed25519_spki(pub, &k->spki, &k->spki_len);
        if (rv != CKR_OK)
            goto out;
    } else if (strncmp(pub, "-----BEGIN", 10) == 0) {
        if (!vtp_pem_to_der(pub, &k->spki, &k->spki_len)) {
            VTP_LOG_ERR("key %s: public key PEM does not decode", name);
            rv = CKR_DEVICE_ERROR;
            goto out;
        }
    } else {
        VTP_LOG_INFO("key %s of type %s: public key in an unknown format, ignored", name, type);
    }
    rv = CKR_OK;
done:
    *out = k;
    k = NULL;
out:
    vtp_transit_key_free(k);
    return rv;
}

/* LIST path: its names, or none (404) as success. */
static CK_RV list_names(const struct vtp_transit *t, const char *path, char ***names, size_t *n)
{
    struct vtp_http_resp resp = {0};
    CK_RV rv, vrv = CKR_OK;

    rv = call(t, "LIST", path, NULL, true, &resp, &vrv);
    if (rv != CKR_OK)
        goto out;
    if (vrv == VTP_ERR_KEY_MISSING) {
        /* 404 {"errors":[]}: nothing there */
        *names = NULL;
        *n = 0;
        goto out;
    }
    rv = vrv;
    if (rv == CKR_OK)
        rv = parse_names(resp_data(&resp), names, n);
out:
    vtp_http_resp_clear(&resp);
    return rv;
}

static CK_RV real_list_keys(const struct vtp_transit *t, char ***names, size_t *n)
{
    char *path;
    CK_RV rv;

    VTP_RETURN_VAL_IF_FAIL(t != NULL && t->mount != NULL, CKR_ARGUMENTS_BAD);
    VTP_RETURN_VAL_IF_FAIL(names != NULL && n != NULL, CKR_ARGUMENTS_BAD);
    path = vtp_transit_path(t, "keys", NULL, NULL);
    if (path == NULL)
        return CKR_HOST_MEMORY;
    rv = list_names(t, path, names, n);
    free(path);
    return rv;
}

static CK_RV real_read_key(const struct vtp_transit *t, const char *name,
                           struct vtp_transit_key **out)
{
    struct vtp_http_resp resp = {0};
    char *path = NULL;
    CK_RV rv, vrv = CKR_OK;

    VTP_RETURN_VAL_IF_FAIL(t != NULL && t->mount != NULL, CKR_ARGUMENTS_BAD);
    VTP_RETURN_VAL_IF_FAIL(name != NULL && out != NULL, CKR_ARGUMENTS_BAD);

    path = vtp_transit_path(t, "keys", name, NULL);
    if (path == NULL)
        return CKR_HOST_MEMORY;
    rv = call(t, "GET", path, NULL, true, &resp, &vrv);
    if (rv != CKR_OK)
        goto out;
    rv = vrv;
    if (rv != CKR_OK)
        goto out;
    rv = vtp_transit_parse_key(resp_data(&resp), out);
out:
    vtp_http_resp_clear(&resp);
    free(path);
    return rv;
}

static CK_RV real_create_key(const struct vtp_transit *t, const char *name, const char *type,
                             struct vtp_transit_key **out)
{
    struct vtp_http_resp resp = {0};
    json_t *body = NULL;
    char *path = NULL;
    const json_t *data;
    CK_RV rv = CKR_HOST_MEMORY, vrv = CKR_OK;

    VTP_RETURN_VAL_IF_FAIL(t != NULL && t->mount != NULL, CKR_ARGUMENTS_BAD);
    VTP_RETURN_VAL_IF_FAIL(name != NULL && type != NULL && out != NULL, CKR_ARGUMENTS_BAD);

    path = vtp_transit_path(t, "keys", name, NULL);
    body = json_object();
    if (path == NULL || body == NULL || json_object_set_new(body, "type", json_string(type)) != 0)
        goto out;
    rv = call(t, "POST", path, body, false, &resp, &vrv);
    if (rv != CKR_OK)
        goto out;
    rv = vrv;
    if (rv != CKR_OK)
        goto out;
    data = resp_data(&resp);
    if (data != NULL && json_object_get(data, "name") != NULL) {
        rv = vtp_transit_parse_key(data, out);
    } else {
        /* older Vault answers 204 No Content: read the key back */
        rv = vtp_transit_read_key(t, name, out);
    }
    if (rv == CKR_OK)
        VTP_LOG_INFO("created Transit key %s/%s (%s)", t->mount, name, type);
out:
    vtp_http_resp_clear(&resp);
    json_decref(body);
    free(path);
    return rv;
}

static CK_RV real_delete_key(const struct vtp_transit *t, const char *name)
{
    struct vtp_http_resp resp = {0};
    json_t *body = NULL;
    char *path = NULL, *cfg_path = NULL;
    CK_RV rv = CKR_HOST_MEMORY, vrv = CKR_OK;

    VTP_RETURN_VAL_IF_FAIL(t != NULL && t->mount != NULL, CKR_ARGUMENTS_BAD);
    VTP_RETURN_VAL_IF_FAIL(name != NULL, CKR_ARGUMENTS_BAD);

    path = vtp_transit_path(t, "keys", name, NULL);
    cfg_path = vtp_transit_path(t, "keys", name, "config");
    body = json_object();
    if (path == NULL || cfg_path == NULL || body == NULL ||
        json_object_set_new(body, "deletion_allowed", json_true()) != 0)
        goto out;
    rv = call(t, "POST", cfg_path, body, false, &resp, &vrv);
    if (rv != CKR_OK)
        goto out;
    rv = vrv;
    if (rv != CKR_OK)
        goto out;
    vtp_http_resp_clear(&resp);
    rv = call(t, "DELETE", path, NULL, false, &resp, &vrv);
    if (rv == CKR_OK)
        rv = vrv;
    if (rv == CKR_OK) {
        VTP_LOG_INFO("deleted Transit key %s/%s", t->mount, name);
    } else if (rv != VTP_ERR_KEY_MISSING) {
        /* A policy may allow the config change but not the delete: leave the key as it was
         * (keys this module makes never allow deletion otherwise). */
        CK_RV vrv2 = CKR_OK;
        vtp_http_resp_clear(&resp);
        if (json_object_set_new(body, "deletion_allowed", json_false()) == 0 &&
            call(t, "POST", cfg_path, body, false, &resp, &vrv2) == CKR_OK && vrv2 == CKR_OK)
            VTP_LOG_INFO("key %s/%s kept; deletion_allowed set back to false", t->mount, name);
    }
out:
    vtp_http_resp_clear(&resp);
    json_decref(body);
    free(path);
    free(cfg_path);
    return rv;
}

/* ---------------------------------------------------------------------------------------- */
/* sign */

/* "vault:v<N>:<b64>" -> N and the bytes. */
static CK_RV decode_signature(const char *s, unsigned long *version, unsigned char **sig,
                              size_t *sig_len)
{
    const char *p, *colon;
    char *end = NULL;
    unsigned long v;

    if (strncmp(s, "vault:v", 7) != 0)
        return CKR_DEVICE_ERROR;
    p = s + 7;
    colon = strchr(p, ':');
    if (colon == NULL || colon == p || *p < '0' || *p > '9')
        return CKR_DEVICE_ERROR;
    v = strtoul(p, &end, 10);
    if (end != colon)
        return CKR_DEVICE_ERROR;
    if (!vtp_b64_decode(colon + 1, strlen(colon + 1), sig, sig_len) || *sig_len == 0)
        return CKR_DEVICE_ERROR;
    *version = v;
    return CKR_OK;
}

/* "17" -> 17 if < n. */
static bool parse_reference(const char *ref, size_t n, size_t *idx)
{
    char *end = NULL;
    unsigned long v;

    if (ref == NULL || ref[0] < '0' || ref[0] > '9')
        return false;
    v = strtoul(ref, &end, 10);
    if (*end != '\0' || v >= n)
        return false;
    *idx = (size_t)v;
    return true;
}

static void items_reset(struct vtp_sign_item *items, size_t n, CK_RV rv)
{
    size_t i;

    for (i = 0; i < n; i++) {
        free(items[i].sig);
        items[i].sig = NULL;
        items[i].sig_len = 0;
        items[i].rv = rv;
    }
}

/* data of a single sign answer: {"signature": "vault:vN:...", "key_version": N} */
static CK_RV parse_single(const json_t *data, unsigned long version, struct vtp_sign_item *item)
{
    const char *sig = json_string_value(json_object_get(data, "signature"));
    unsigned long got = 0;

    item->sig = NULL;
    item->sig_len = 0;
    item->rv = CKR_DEVICE_ERROR;
    if (sig == NULL || decode_signature(sig, &got, &item->sig, &item->sig_len) != CKR_OK) {
        VTP_LOG_ERR("sign answer without a well-formed signature");
        return CKR_OK;
    }
    if (version != 0 && got != version) {
        VTP_LOG_ERR("signed with version %lu, asked for %lu", got, version);
        free(item->sig);
        item->sig = NULL;
        item->sig_len = 0;
        return CKR_OK;
    }
    item->rv = CKR_OK;
    return CKR_OK;
}

CK_RV vtp_transit_parse_sign_results(const json_t *data, unsigned long version,
                                     struct vtp_sign_item *items, size_t n)
{
    const json_t *results, *r;
    bool *seen = NULL;
    size_t i, idx;
    CK_RV rv = CKR_DEVICE_ERROR;

    VTP_RETURN_VAL_IF_FAIL(items != NULL || n == 0, CKR_ARGUMENTS_BAD);
    for (i = 0; i < n; i++) {
        items[i].sig = NULL;
        items[i].sig_len = 0;
        items[i].rv = CKR_FUNCTION_FAILED;
    }
    results = json_is_object(data) ? json_object_get(data, "batch_results") : NULL;
    if (!json_is_array(results)) {
        VTP_LOG_ERR("sign answer without batch_results");
        goto out;
    }
    seen = calloc(n + 1, sizeof(*seen));
    if (seen == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    json_array_foreach(results, i, r)
    {
        const char *ref = json_string_value(json_object_get(r, "reference"));
        const char *err = json_string_value(json_object_get(r, "error"));
        const char *sig = json_string_value(json_object_get(r, "signature"));
        unsigned long got = 0;

        if (!parse_reference(ref, n, &idx) || seen[idx]) {
            VTP_LOG_WARN("sign result %zu has an unknown or repeated reference", i);
            continue;
        }
        seen[idx] = true;
        if (err != NULL && err[0] != '\0') {
            items[idx].rv = vtp_transit_classify_item(err);
            VTP_LOG_WARN("sign item %zu: \"%s\" -> %s", idx, err, vtp_rv_name(items[idx].rv));
            continue;
        }
        if (sig == NULL) {
            VTP_LOG_ERR("sign item %zu: neither signature nor error", idx);
            continue;
        }
        if (decode_signature(sig, &got, &items[idx].sig, &items[idx].sig_len) != CKR_OK) {
            VTP_LOG_ERR("sign item %zu: malformed signature", idx);
            continue;
        }
        if (version != 0 && got != version) {
            VTP_LOG_ERR("sign item %zu: signed with version %lu, asked for %lu", idx, got,
                        version);
            free(items[idx].sig);
            items[idx].sig = NULL;
            items[idx].sig_len = 0;
            continue;
        }
        items[idx].rv = CKR_OK;
    }
    for (i = 0; i < n; i++) {
        if (!seen[i])
            VTP_LOG_ERR("sign item %zu: no result", i);
    }
    rv = CKR_OK;
out:
    if (rv != CKR_OK)
        items_reset(items, n, rv);
    free(seen);
    return rv;
}

/* --- The sign answer, read without building a JSON tree ---
 * A successful sign answer is scanned in place: the envelope's "data" object, its
 * "signature" (one item) or its "batch_results" (each "signature" and "reference"); every
 * other member is skipped, checked only for being well-formed JSON. Anything else (an item's
 * error, a string with escapes where a value is read, a missing or repeated reference, a
 * signature of another version, JSON that does not parse) gives up and leaves the items as they
 * were: the answer is then parsed with jansson and read by the code above, which logs what is
 * wrong with it. */

struct scan {
    const char *p, *end;
};

#define SCAN_MAX_DEPTH 32

static void scan_ws(struct scan *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool scan_char(struct scan *c, char ch)
{
    scan_ws(c);
    if (c->p >= c->end || *c->p != ch)
        return false;
    c->p++;
    return true;
}

/* A string of printable ASCII without escapes; *s and *len span its contents. Anything else
 * (an escape, a byte above 0x7f) gives up: jansson reads it. */
static bool scan_string(struct scan *c, const char **s, size_t *len)
{
    const char *q;

    if (!scan_char(c, '"'))
        return false;
    for (q = c->p; q < c->end && *q != '"'; q++)
        if ((unsigned char)*q < 0x20 || (unsigned char)*q > 0x7e || *q == '\\')
            return false;
    if (q >= c->end)
        return false;
    *s = c->p;
    *len = (size_t)(q - c->p);
    c->p = q + 1;
    return true;
}

static bool scan_digits(struct scan *c)
{
    const char *s = c->p;

    while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
        c->p++;
    return c->p > s;
}

/* -?(0|[1-9][0-9]*) of at most 18 digits: what an answer's envelope holds (lease_duration,
 * key_version). A fraction, an exponent or a longer integer gives up, to jansson, which
 * refuses what does not fit its long long or double. */
static bool scan_number(struct scan *c)
{
    const char *digits;

    if (c->p < c->end && *c->p == '-')
        c->p++;
    digits = c->p;
    if (c->p < c->end && *c->p == '0')
        c->p++;
    else if (!scan_digits(c))
        return false;
    if (c->p - digits > 18)
        return false;
    return c->p >= c->end || (*c->p != '.' && *c->p != 'e' && *c->p != 'E');
}

static bool scan_literal(struct scan *c, const char *word)
{
    size_t n = strlen(word);

    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
        return false;
    c->p += n;
    return true;
}

static bool scan_skip(struct scan *c, int depth);

/* An object's members, each handed to member() (which reads or skips its value), or an
 * array's elements to element(); with NULL the values are skipped. */
static bool scan_object(struct scan *c, int depth,
                        bool (*member)(struct scan *c, const char *k, size_t klen, void *arg),
                        void *arg)
{
    const char *k;
    size_t klen;

    if (depth > SCAN_MAX_DEPTH || !scan_char(c, '{'))
        return false;
    if (scan_char(c, '}'))
        return true;
    do {
        if (!scan_string(c, &k, &klen) || !scan_char(c, ':'))
            return false;
        if (member != NULL ? !member(c, k, klen, arg) : !scan_skip(c, depth + 1))
            return false;
    } while (scan_char(c, ','));
    return scan_char(c, '}');
}

static bool scan_array(struct scan *c, int depth, bool (*element)(struct scan *c, void *arg),
                       void *arg)
{
    if (depth > SCAN_MAX_DEPTH || !scan_char(c, '['))
        return false;
    if (scan_char(c, ']'))
        return true;
    do {
        if (element != NULL ? !element(c, arg) : !scan_skip(c, depth + 1))
            return false;
    } while (scan_char(c, ','));
    return scan_char(c, ']');
}

static bool scan_skip(struct scan *c, int depth)
{
    const char *s;
    size_t len;

    scan_ws(c);
    if (c->p >= c->end)
        return false;
    switch (*c->p) {
    case '{':
        return scan_object(c, depth, NULL, NULL);
    case '[':
        return scan_array(c, depth, NULL, NULL);
    case '"':
        return scan_string(c, &s, &len);
    case 't':
        return scan_literal(c, "true");
    case 'f':
        return scan_literal(c, "false");
    case 'n':
        return scan_literal(c, "null");
    default:
        return scan_number(c);
    }
}

static bool key_is(const char *k, size_t klen, const char *name)
{
    return klen == strlen(name) && memcmp(k, name, klen) == 0;
}

struct sign_scan {
    struct vtp_sign_item *items;
    size_t n;
    unsigned long version;
    bool batch;
    size_t seen; /* results read */
    /* the result being read */
    const char *r_sig, *r_ref;
    size_t r_sig_len, r_ref_len;
    bool r_error;
    struct {
        const char *p;
        size_t len;
    } sig[]; /* each item's "signature", n of them */
};

static bool result_member(struct scan *c, const char *k, size_t klen, void *arg)
{
    struct sign_scan *ss = arg;
    const char *v;
    size_t len;

    if (key_is(k, klen, "signature"))
        return scan_string(c, &ss->r_sig, &ss->r_sig_len);
    if (key_is(k, klen, "reference"))
        return scan_string(c, &ss->r_ref, &ss->r_ref_len);
    if (key_is(k, klen, "error")) {
        if (!scan_string(c, &v, &len))
            return false;
        ss->r_error = len > 0; /* an item refused: read by the full parser */
        return true;
    }
    return scan_skip(c, 3);
}

static bool result_element(struct scan *c, void *arg)
{
    struct sign_scan *ss = arg;
    size_t idx = 0;

    ss->r_sig = ss->r_ref = NULL;
    ss->r_error = false;
    if (!scan_object(c, 3, result_member, ss) || ss->r_error || ss->r_sig == NULL ||
        ss->r_ref == NULL || ss->r_ref_len == 0 || ss->r_ref_len > 3)
        return false;
    for (size_t i = 0; i < ss->r_ref_len; i++) {
        if (ss->r_ref[i] < '0' || ss->r_ref[i] > '9')
            return false;
        idx = idx * 10 + (size_t)(ss->r_ref[i] - '0');
    }
    if (idx >= ss->n || ss->sig[idx].p != NULL)
        return false;
    ss->sig[idx].p = ss->r_sig;
    ss->sig[idx].len = ss->r_sig_len;
    ss->seen++;
    return true;
}

static bool data_member(struct scan *c, const char *k, size_t klen, void *arg)
{
    struct sign_scan *ss = arg;

    if (!ss->batch && key_is(k, klen, "signature"))
        return scan_string(c, &ss->sig[0].p, &ss->sig[0].len);
    if (ss->batch && key_is(k, klen, "batch_results")) {
        /* a repeated member replaces the one before, as in jansson */
        memset(ss->sig, 0, ss->n * sizeof(ss->sig[0]));
        ss->seen = 0;
        return scan_array(c, 2, result_element, ss);
    }
    return scan_skip(c, 2);
}

static bool envelope_member(struct scan *c, const char *k, size_t klen, void *arg)
{
    struct sign_scan *ss = arg;

    if (key_is(k, klen, "data")) {
        memset(ss->sig, 0, ss->n * sizeof(ss->sig[0]));
        ss->seen = 0;
        return scan_object(c, 1, data_member, arg);
    }
    return scan_skip(c, 1);
}

/* "vault:v<version>:<base64>" of the length given -> the decoded signature. */
static bool scan_signature(const char *s, size_t len, unsigned long want, unsigned char **sig,
                           size_t *sig_len)
{
    unsigned long v = 0;
    size_t i = 7;

    if (len < 9 || memcmp(s, "vault:v", 7) != 0)
        return false;
    for (; i < len && s[i] >= '0' && s[i] <= '9' && i < 7 + 9; i++)
        v = v * 10 + (unsigned long)(s[i] - '0');
    if (i == 7 || i >= len || s[i] != ':' || (want != 0 && v != want))
        return false;
    if (!vtp_b64_decode(s + i + 1, len - i - 1, sig, sig_len))
        return false;
    if (*sig_len == 0) {
        free(*sig);
        *sig = NULL;
        return false;
    }
    return true;
}

bool vtp_transit_scan_sign_answer(const char *body, size_t len, unsigned long version,
                                  struct vtp_sign_item *items, size_t n)
{
    struct sign_scan *ss;
    struct scan c = {body, body + len};
    size_t i;
    bool ok = false;

    if (body == NULL || items == NULL || n == 0 || n > VTP_TRANSIT_MAX_BATCH)
        return false;
    ss = calloc(1, sizeof(*ss) + n * sizeof(ss->sig[0])); /* sized for this request */
    if (ss == NULL)
        return false;
    ss->items = items;
    ss->n = n;
    ss->version = version;
    ss->batch = n > 1;
    if (!scan_object(&c, 0, envelope_member, ss) || (scan_ws(&c), c.p != c.end))
        goto out;
    if (ss->batch ? ss->seen != n : ss->sig[0].p == NULL)
        goto out;
    for (i = 0; i < n; i++) {
        if (!scan_signature(ss->sig[i].p, ss->sig[i].len, version, &items[i].sig,
                            &items[i].sig_len))
            break;
    }
    if (i < n) {
        while (i-- > 0) {
            free(items[i].sig);
            items[i].sig = NULL;
            items[i].sig_len = 0;
        }
        goto out;
    }
    for (i = 0; i < n; i++)
        items[i].rv = CKR_OK;
    ok = true;
out:
    free(ss);
    return ok;
}

struct sign_answer {
    struct vtp_sign_item *items;
    size_t n;
    unsigned long version;
};

static bool scan_sign_answer(const char *body, size_t len, void *arg)
{
    const struct sign_answer *a = arg;

    return vtp_transit_scan_sign_answer(body, len, a->version, a->items, a->n);
}

CK_RV vtp_transit_read_sign_answer(const json_t *body, unsigned long version,
                                   struct vtp_sign_item *items, size_t n)
{
    const json_t *data = json_is_object(body) ? json_object_get(body, "data") : NULL;

    if (!json_is_object(data))
        data = NULL;
    if (n == 1)
        return parse_single(data, version, &items[0]);
    return vtp_transit_parse_sign_results(data, version, items, n);
}

/* A name from the mechanism table is put into JSON as it is: it must need no escaping. */
static bool json_safe(const char *v)
{
    return strpbrk(v, "\"\\") == NULL;
}

/* The sign request body, written directly: this is the hot path, and building it with jansson
 * cost more than the rest of the request. Every value is base64, a number, or a fixed name. */
static CK_RV build_sign_body(unsigned long version, const struct vtp_sign_params *p,
                             const struct vtp_sign_item *items, size_t n, char **out)
{
    size_t cap = 256, len = 0;
    char *buf;
    int w;

    for (size_t i = 0; i < n; i++)
        cap += 4 * ((items[i].input_len + 2) / 3) + 48;
    buf = malloc(cap);
    if (buf == NULL)
        return CKR_HOST_MEMORY;
    if (n == 1) {
        /* one signature: the plain request, exactly what a direct Transit client sends */
        len = (size_t)snprintf(buf, cap, "{\"input\":\"");
        len += (size_t)EVP_EncodeBlock((unsigned char *)buf + len, items[0].input,
                                       (int)items[0].input_len);
        w = snprintf(buf + len, cap - len, "\",\"marshaling_algorithm\":\"asn1\"");
    } else {
        len = (size_t)snprintf(buf, cap, "{\"batch_input\":[");
        for (size_t i = 0; i < n; i++) {
            len += (size_t)snprintf(buf + len, cap - len, "%s{\"input\":\"", i ? "," : "");
            len += (size_t)EVP_EncodeBlock((unsigned char *)buf + len, items[i].input,
                                           (int)items[i].input_len);
            /* all batch item values must be JSON strings */
            len += (size_t)snprintf(buf + len, cap - len, "\",\"reference\":\"%zu\"}", i);
        }
        w = snprintf(buf + len, cap - len, "],\"marshaling_algorithm\":\"asn1\"");
    }
    len += (size_t)w;
    if (version != 0)
        len += (size_t)snprintf(buf + len, cap - len, ",\"key_version\":%lu", version);
    if (p != NULL && p->hash_algorithm != NULL && json_safe(p->hash_algorithm))
        len += (size_t)snprintf(buf + len, cap - len, ",\"hash_algorithm\":\"%s\"",
                                p->hash_algorithm);
    if (p != NULL && p->prehashed)
        len += (size_t)snprintf(buf + len, cap - len, ",\"prehashed\":true");
    if (p != NULL && p->signature_algorithm != NULL && json_safe(p->signature_algorithm))
        len += (size_t)snprintf(buf + len, cap - len, ",\"signature_algorithm\":\"%s\"",
                                p->signature_algorithm);
    if (p != NULL && p->salt_length >= 0)
        len += (size_t)snprintf(buf + len, cap - len, ",\"salt_length\":\"%ld\"",
                                p->salt_length);
    if (len + 2 > cap) {
        free(buf);
        return CKR_GENERAL_ERROR; /* cannot happen: cap counts every part */
    }
    buf[len++] = '}';
    buf[len] = '\0';
    *out = buf;
    return CKR_OK;
}

static CK_RV real_sign(const struct vtp_transit *t, const char *name, unsigned long version,
                       const struct vtp_sign_params *p, struct vtp_sign_item *items, size_t n)
{
    struct vtp_http_resp resp = {0};
    struct sign_answer answer = {items, n, version};
    char *body = NULL;
    char *path = NULL;
    CK_RV rv, vrv = CKR_OK;

    VTP_RETURN_VAL_IF_FAIL(t != NULL && t->mount != NULL && name != NULL, CKR_ARGUMENTS_BAD);
    VTP_RETURN_VAL_IF_FAIL(items != NULL && n > 0 && n <= VTP_TRANSIT_MAX_BATCH,
                           CKR_ARGUMENTS_BAD);

    rv = build_sign_body(version, p, items, n, &body);
    if (rv != CKR_OK)
        goto out;
    path = vtp_transit_path(t, "sign", name, NULL);
    if (path == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    rv = call_raw(t, "POST", path, NULL, body, false, &resp, &vrv, scan_sign_answer, &answer);
    if (rv != CKR_OK || resp.scanned)
        goto out;
    if (n == 1 && vrv != CKR_OK) {
        /* single request: Vault's answer is the item's answer */
        items[0].rv = vrv;
        goto out;
    }
    rv = vrv;
    if (rv != CKR_OK)
        goto out;
    rv = vtp_transit_read_sign_answer(resp.json, version, items, n);
out:
    vtp_http_resp_clear(&resp);
    free(body);
    free(path);
    return rv;
}

/* ---------------------------------------------------------------------------------------- */
/* KV v2 */

static CK_RV real_kv_read(const struct vtp_transit *t, const char *path, json_t **data)
{
    struct vtp_http_resp resp = {0};
    const json_t *d, *secret;
    char *p = NULL;
    CK_RV rv, vrv = CKR_OK;

    VTP_RETURN_VAL_IF_FAIL(t != NULL && vtp_kv_mount(t) != NULL, CKR_ARGUMENTS_BAD);
    VTP_RETURN_VAL_IF_FAIL(path != NULL && data != NULL, CKR_ARGUMENTS_BAD);

    p = kv_path(t, "data", path);
    if (p == NULL)
        return CKR_HOST_MEMORY;
    rv = call(t, "GET", p, NULL, true, &resp, &vrv);
    if (rv != CKR_OK)
        goto out;
    if (vrv == VTP_ERR_KEY_MISSING) {
        /* 404: never written, or its latest version deleted/destroyed (then the body is a
         * full envelope with data.data null) */
        *data = NULL;
        goto out;
    }
    rv = vrv;
    if (rv != CKR_OK)
        goto out;
    d = resp_data(&resp);
    secret = d != NULL ? json_object_get(d, "data") : NULL;
    if (secret == NULL || json_is_null(secret)) {
        *data = NULL;
        goto out;
    }
    if (!json_is_object(secret)) {
        VTP_LOG_ERR("KV %s: data is not an object", p);
        rv = CKR_DEVICE_ERROR;
        goto out;
    }
    *data = json_incref((json_t *)secret);
out:
    vtp_http_resp_clear(&resp);
    free(p);
    return rv;
}

static CK_RV real_kv_write(const struct vtp_transit *t, const char *path, json_t *data,
                           long cas)
{
    struct vtp_http_resp resp = {0};
    json_t *body = NULL, *options = NULL;
    char *p = NULL;
    CK_RV rv = CKR_HOST_MEMORY, vrv = CKR_OK;

    VTP_RETURN_VAL_IF_FAIL(t != NULL && vtp_kv_mount(t) != NULL, CKR_ARGUMENTS_BAD);
    VTP_RETURN_VAL_IF_FAIL(path != NULL && json_is_object(data), CKR_ARGUMENTS_BAD);

    p = kv_path(t, "data", path);
    body = json_object();
    if (p == NULL || body == NULL || json_object_set(body, "data", data) != 0)
        goto out;
    if (cas >= 0 && ((options = json_object()) == NULL ||
                     json_object_set_new(options, "cas", json_integer(cas)) != 0 ||
                     json_object_set(body, "options", options) != 0))
        goto out;
    rv = call(t, "POST", p, body, false, &resp, &vrv);
    if (rv == CKR_OK)
        rv = vrv; /* VTP_ERR_CAS_MISMATCH when cas does not match (both products) */
out:
    vtp_http_resp_clear(&resp);
    json_decref(options);
    json_decref(body);
    free(p);
    return rv;
}

static CK_RV real_kv_delete(const struct vtp_transit *t, const char *path)
{
    struct vtp_http_resp resp = {0};
    char *p = NULL;
    CK_RV rv, vrv = CKR_OK;

    VTP_RETURN_VAL_IF_FAIL(t != NULL && vtp_kv_mount(t) != NULL, CKR_ARGUMENTS_BAD);
    VTP_RETURN_VAL_IF_FAIL(path != NULL, CKR_ARGUMENTS_BAD);

    p = kv_path(t, "metadata", path);
    if (p == NULL)
        return CKR_HOST_MEMORY;
    rv = call(t, "DELETE", p, NULL, true, &resp, &vrv);
    if (rv == CKR_OK)
        rv = vrv == VTP_ERR_KEY_MISSING ? CKR_OK : vrv;
    vtp_http_resp_clear(&resp);
    free(p);
    return rv;
}

static CK_RV real_kv_list(const struct vtp_transit *t, const char *path, char ***names, size_t *n)
{
    char *p;
    CK_RV rv;

    VTP_RETURN_VAL_IF_FAIL(t != NULL && vtp_kv_mount(t) != NULL, CKR_ARGUMENTS_BAD);
    VTP_RETURN_VAL_IF_FAIL(names != NULL && n != NULL, CKR_ARGUMENTS_BAD);
    p = kv_path(t, "metadata", path != NULL ? path : "");
    if (p == NULL)
        return CKR_HOST_MEMORY;
    rv = list_names(t, p, names, n);
    free(p);
    return rv;
}

/* Does caps (a capabilities list) hold one of want (NULL-terminated), or "root"? */
bool vtp_caps_have(const json_t *caps, const char *const *want)
{
    size_t i;
    const json_t *c;

    json_array_foreach(caps, i, c)
    {
        const char *v = json_string_value(c);
        if (v == NULL)
            continue;
        if (strcmp(v, "root") == 0)
            return true;
        for (const char *const *w = want; *w != NULL; w++)
            if (strcmp(v, *w) == 0)
                return true;
    }
    return false;
}

/* An answer that says nothing about what the token may do in KV: no usable server, a mount
 * or namespace missing, or a token the server did not take. */
static bool kv_ask_again(CK_RV kind)
{
    return kind == VTP_ERR_UNAVAILABLE || kind == VTP_ERR_MISCONFIGURED ||
           kind == VTP_ERR_TOKEN_INVALID;
}

/* May the token write entries under <kv_prefix>/<transit mount>/ and list them? From
 * sys/capabilities-self (in the default policy); if the token may not ask that, a LIST of the
 * directory decides (read access only). CKR_OK with *ok set, or an error to ask again later. */
static CK_RV kv_access(const struct vtp_transit *t, const char *mount, bool *ok)
{
    static const char *const write[] = {"create", "update", NULL};
    static const char *const read[] = {"read", NULL};
    static const char *const list[] = {"list", NULL};
    struct vtp_http_resp resp = {0};
    char *rel = vtp_kv_meta_dir(t), *entry = NULL, *dir = NULL, *entry_rel = NULL;
    json_t *caps = NULL;
    CK_RV rv = CKR_HOST_MEMORY, vrv = CKR_OK;

    *ok = false;
    entry_rel = rel != NULL ? vtp_join3(rel, "/", "vtp-probe") : NULL;
    entry = entry_rel != NULL ? vtp_kv_path_in(t, mount, "data", entry_rel) : NULL;
    dir = rel != NULL ? vtp_kv_path_in(t, mount, "metadata", rel) : NULL;
    if (entry == NULL || dir == NULL)
        goto out;
    rv = vtp_vault_capabilities(t, (const char *const[]){entry, dir}, 2, &caps, &vrv);
    if (rv != CKR_OK)
        goto out;
    if (vrv == CKR_OK) {
        *ok = vtp_caps_have(json_object_get(caps, entry), write) &&
              vtp_caps_have(json_object_get(caps, entry), read) &&
              vtp_caps_have(json_object_get(caps, dir), list);
        if (!*ok)
            VTP_LOG_INFO("KV: this token may not write and list %s/%s/%s/", mount, t->kv_prefix,
                         rel);
        goto out;
    }
    if (kv_ask_again(vrv)) {
        rv = vrv;
        goto out;
    }
    /* no capabilities-self for this token: can it list the directory? */
    rv = call(t, "LIST", dir, NULL, true, &resp, &vrv);
    if (rv != CKR_OK)
        goto out;
    if (vrv == CKR_OK || vrv == VTP_ERR_KEY_MISSING)
        *ok = true;
    else if (kv_ask_again(vrv))
        rv = vrv;
    else
        VTP_LOG_INFO("KV: this token may not list %s", dir);
out:
    vtp_http_resp_clear(&resp);
    json_decref(caps);
    free(rel);
    free(entry_rel);
    free(entry);
    free(dir);
    return rv;
}

CK_RV vtp_vault_capabilities(const struct vtp_transit *t, const char *const *paths, size_t n,
                             json_t **caps, CK_RV *rv_vault)
{
    struct vtp_http_resp resp = {0};
    json_t *body = json_object(), *list = json_array();
    const json_t *d;
    CK_RV rv = CKR_HOST_MEMORY;
    size_t i;

    *caps = NULL;
    if (body == NULL || list == NULL || json_object_set(body, "paths", list) != 0)
        goto out;
    for (i = 0; i < n; i++)
        if (json_array_append_new(list, json_string(paths[i])) != 0)
            goto out;
    rv = call(t, "POST", "sys/capabilities-self", body, false, &resp, rv_vault);
    if (rv != CKR_OK || *rv_vault != CKR_OK)
        goto out;
    /* the paths are in "data" (and, older servers, at the top level) */
    d = resp_data(&resp) != NULL ? resp_data(&resp) : resp.json;
    *caps = json_incref((json_t *)d);
out:
    vtp_http_resp_clear(&resp);
    json_decref(list);
    json_decref(body);
    return rv;
}

/* sys/internal/ui/mounts/<mount>: what a mount is, to any token that may use a path in it (the
 * Vault CLI asks it to tell KV v1 from v2). */
CK_RV vtp_vault_mount_info(const struct vtp_transit *t, const char *mount, char **type,
                           char **version, CK_RV *rv_vault)
{
    struct vtp_http_resp resp = {0};
    const json_t *d;
    const char *ty = NULL, *ver = NULL;
    char *m = escape_segments(mount), *p = NULL;
    CK_RV rv = CKR_HOST_MEMORY;

    *type = *version = NULL;
    p = m != NULL ? join_path("sys/internal/ui/mounts", m, (const char *)NULL) : NULL;
    if (p == NULL)
        goto out;
    rv = call(t, "GET", p, NULL, true, &resp, rv_vault);
    if (rv != CKR_OK || *rv_vault != CKR_OK)
        goto out;
    d = resp_data(&resp);
    if (d != NULL) {
        ty = json_string_value(json_object_get(d, "type"));
        ver = json_string_value(json_object_get(json_object_get(d, "options"), "version"));
    }
    *type = vtp_strdup_or_null(ty);
    *version = vtp_strdup_or_null(ver);
    if ((ty != NULL && *type == NULL) || (ver != NULL && *version == NULL)) {
        free(*type);
        *type = NULL;
        rv = CKR_HOST_MEMORY;
    }
out:
    vtp_http_resp_clear(&resp);
    free(m);
    free(p);
    return rv;
}

/* sys/internal/ui/mounts/<mount> says what a mount is to any token that may use a path in it
 * (the Vault CLI asks it to tell KV v1 from v2); then kv_access says whether this token may
 * keep entries there. "Not usable" is settled only on an answer that says so (a 403 for the
 * mount, not a mount, not KV v2, no access); a server that could not answer, or a token it
 * did not take, leaves it to be asked again. */
static CK_RV real_kv_probe(const struct vtp_transit *t, const char *mount, bool *usable)
{
    char *type = NULL, *version = NULL;
    CK_RV rv, vrv = CKR_OK;

    *usable = false;
    rv = vtp_vault_mount_info(t, mount, &type, &version, &vrv);
    if (rv != CKR_OK)
        goto out;
    if (kv_ask_again(vrv) || vrv == VTP_ERR_FAILED) {
        rv = vrv; /* no answer to go by: ask again later */
        goto out;
    }
    if (vrv != CKR_OK) {
        VTP_LOG_INFO("KV: %s/ is not a mount this token may use", mount);
    } else if (type == NULL || strcmp(type, "kv") != 0) {
        VTP_LOG_INFO("KV: %s/ is a mount of type %s", mount, type ? type : "?");
    } else if (version == NULL || strcmp(version, "2") != 0) {
        VTP_LOG_INFO("KV: %s/ is KV version %s", mount, version ? version : "1");
    } else {
        rv = kv_access(t, mount, usable);
    }
out:
    free(type);
    free(version);
    return rv;
}

const char *vtp_kv_mount(const struct vtp_transit *t)
{
    if (t->kv_mount != NULL)
        return t->kv_mount;
    if (t->kv_auto != NULL && atomic_load(&t->kv_auto->state) == VTP_KV_USED)
        return t->kv_auto->mount;
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Decrypt (RSA-OAEP) and random */

static CK_RV real_decrypt(const struct vtp_transit *t, const char *name, unsigned long version,
                          const unsigned char *ct, size_t ct_len, unsigned char **pt,
                          size_t *pt_len)
{
    struct vtp_http_resp resp = {0};
    json_t *body = NULL;
    char *path = NULL, *b64 = NULL, *wire = NULL;
    const char *plain;
    const json_t *data;
    size_t wire_len;
    CK_RV rv, vrv = CKR_OK;

    VTP_RETURN_VAL_IF_FAIL(t != NULL && name != NULL && ct != NULL && pt != NULL,
                           CKR_ARGUMENTS_BAD);
    b64 = vtp_b64_encode(ct, ct_len);
    wire_len = (b64 ? strlen(b64) : 0) + 32;
    wire = b64 ? malloc(wire_len) : NULL;
    path = vtp_transit_path(t, "decrypt", name, NULL);
    if (wire == NULL || path == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    snprintf(wire, wire_len, "vault:v%lu:%s", version, b64);
    body = json_pack("{s:s}", "ciphertext", wire);
    if (body == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    rv = call(t, "POST", path, body, false, &resp, &vrv);
    if (rv == CKR_OK)
        rv = vrv;
    if (rv != CKR_OK)
        goto out;
    data = resp_data(&resp);
    plain = data ? json_string_value(json_object_get(data, "plaintext")) : NULL;
    if (plain == NULL || !vtp_b64_decode(plain, strlen(plain), pt, pt_len)) {
        VTP_LOG_ERR("decrypt answer without a base64 plaintext");
        rv = CKR_DEVICE_ERROR;
    }
    /* the plaintext inside the response is wiped with it below */
    if (plain != NULL)
        OPENSSL_cleanse((void *)plain, strlen(plain));
out:
    vtp_http_resp_clear(&resp);
    json_decref(body);
    free(path);
    free(b64);
    free(wire);
    return rv;
}

static CK_RV real_random(const struct vtp_transit *t, unsigned char *out, size_t len)
{
    while (len > 0) {
        struct vtp_http_resp resp = {0};
        size_t chunk = len > 65536 ? 65536 : len, got = 0;
        unsigned char *raw = NULL;
        const json_t *data;
        const char *b64;
        json_t *body = json_pack("{s:I}", "bytes", (json_int_t)chunk);
        char *path = vtp_transit_path(t, "random", NULL, NULL);
        CK_RV rv = CKR_HOST_MEMORY, vrv = CKR_OK;

        if (body != NULL && path != NULL) {
            /* transit_path leaves a trailing '/' for an empty name */
            size_t pl = strlen(path);
            if (pl > 0 && path[pl - 1] == '/')
                path[pl - 1] = '\0';
            rv = call(t, "POST", path, body, false, &resp, &vrv);
            if (rv == CKR_OK)
                rv = vrv;
        }
        if (rv == CKR_OK) {
            data = resp_data(&resp);
            b64 = data ? json_string_value(json_object_get(data, "random_bytes")) : NULL;
            if (b64 == NULL || !vtp_b64_decode(b64, strlen(b64), &raw, &got) || got != chunk) {
                VTP_LOG_ERR("random answer without %zu base64 bytes", chunk);
                rv = CKR_DEVICE_ERROR;
            } else {
                memcpy(out, raw, chunk);
            }
        }
        if (raw != NULL)
            OPENSSL_clear_free(raw, got);
        vtp_http_resp_clear(&resp);
        json_decref(body);
        free(path);
        if (rv != CKR_OK)
            return rv;
        out += chunk;
        len -= chunk;
    }
    return CKR_OK;
}

/* The seam: the typed calls above go through one operations table, the real one unless a test
 * installed its fake (tests/lib/fake-transit.c). */
static const struct vtp_transit_ops real_ops = {
    .list_keys = real_list_keys,
    .read_key = real_read_key,
    .create_key = real_create_key,
    .delete_key = real_delete_key,
    .sign = real_sign,
    .decrypt = real_decrypt,
    .random = real_random,
    .kv_read = real_kv_read,
    .kv_write = real_kv_write,
    .kv_delete = real_kv_delete,
    .kv_list = real_kv_list,
    .kv_probe = real_kv_probe,
};
static const struct vtp_transit_ops *_Atomic ops_in_use = &real_ops;

const struct vtp_transit_ops *vtp_transit_real_ops(void)
{
    return &real_ops;
}

void vtp_transit_set_ops(const struct vtp_transit_ops *ops)
{
    atomic_store(&ops_in_use, ops != NULL ? ops : &real_ops);
}

#define OPS() atomic_load(&ops_in_use)

CK_RV vtp_transit_list_keys(const struct vtp_transit *t, char ***names, size_t *n)
{
    return OPS()->list_keys(t, names, n);
}

CK_RV vtp_transit_read_key(const struct vtp_transit *t, const char *name,
                           struct vtp_transit_key **out)
{
    return OPS()->read_key(t, name, out);
}

CK_RV vtp_transit_create_key(const struct vtp_transit *t, const char *name, const char *type,
                             struct vtp_transit_key **out)
{
    return OPS()->create_key(t, name, type, out);
}

CK_RV vtp_transit_delete_key(const struct vtp_transit *t, const char *name)
{
    return OPS()->delete_key(t, name);
}

CK_RV vtp_transit_sign(const struct vtp_transit *t, const char *name, unsigned long version,
                       const struct vtp_sign_params *p, struct vtp_sign_item *items, size_t n)
{
    return OPS()->sign(t, name, version, p, items, n);
}

CK_RV vtp_transit_decrypt(const struct vtp_transit *t, const char *name, unsigned long version,
                          const unsigned char *ct, size_t ct_len, unsigned char **pt,
                          size_t *pt_len)
{
    return OPS()->decrypt(t, name, version, ct, ct_len, pt, pt_len);
}

CK_RV vtp_transit_random(const struct vtp_transit *t, unsigned char *out, size_t len)
{
    return OPS()->random(t, out, len);
}

CK_RV vtp_kv_read(const struct vtp_transit *t, const char *path, json_t **data)
{
    return OPS()->kv_read(t, path, data);
}

CK_RV vtp_kv_write(const struct vtp_transit *t, const char *path, json_t *data, long cas)
{
    return OPS()->kv_write(t, path, data, cas);
}

CK_RV vtp_kv_delete(const struct vtp_transit *t, const char *path)
{
    return OPS()->kv_delete(t, path);
}

CK_RV vtp_kv_list(const struct vtp_transit *t, const char *path, char ***names, size_t *n)
{
    return OPS()->kv_list(t, path, names, n);
}

CK_RV vtp_kv_settle(const struct vtp_transit *t)
{
    struct vtp_kv_auto *a = t->kv_auto;
    const struct vtp_transit_ops *ops = OPS();
    bool usable = false;
    CK_RV rv = CKR_OK;

    if (a == NULL || atomic_load(&a->state) != VTP_KV_UNSETTLED)
        return CKR_OK;
    pthread_mutex_lock(&a->lock);
    if (atomic_load(&a->state) == VTP_KV_UNSETTLED) {
        if (ops->kv_probe != NULL)
            rv = ops->kv_probe(t, a->mount, &usable);
        if (rv == CKR_OK) {
            if (usable)
                VTP_LOG_INFO("kv_mount = auto: IDs, labels and certificates are kept in KV v2 "
                             "%s/%s", a->mount, t->kv_prefix);
            else
                VTP_LOG_INFO("kv_mount = auto: %s/ is not a KV v2 mount this token may use; "
                             "IDs and labels are kept in key names, certificates cannot be "
                             "stored (set kv_mount to a KV v2 mount to keep them)",
                             a->mount);
            atomic_store(&a->state, usable ? VTP_KV_USED : VTP_KV_UNUSED);
        } else {
            VTP_LOG_WARN("kv_mount = auto: could not ask Vault about %s/ (%s)", a->mount,
                         vtp_rv_name(rv));
        }
    }
    pthread_mutex_unlock(&a->lock);
    return rv;
}
