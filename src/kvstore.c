/* kvstore.c - where the module keeps CKA_ID, CKA_LABEL and certificates: the KV v2 layout
 * (see kvstore.h), and the key names that carry an ID and label when there is no KV. */
#include "common.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>

#include "kvstore.h"
#include "util.h"

char *vtp_kv_meta_path(const struct vtp_transit *t, const char *name)
{
    return vtp_join3(t->mount, "/", name);
}

char *vtp_kv_meta_dir(const struct vtp_transit *t)
{
    return strdup(t->mount);
}

char *vtp_kv_cert_path(const struct vtp_transit *t, const char *name)
{
    char *dir = vtp_join3("certs/", t->mount, "/");
    char *p = dir ? vtp_join3(dir, "", name) : NULL;

    free(dir);
    return p;
}

char *vtp_kv_cert_dir(const struct vtp_transit *t)
{
    return vtp_join3("certs/", t->mount, "");
}

json_t *vtp_kv_meta_new(const CK_ATTRIBUTE *id, const CK_ATTRIBUTE *label, long usage)
{
    json_t *data = json_object();
    char *hex = NULL;
    bool ok = data != NULL && json_object_set_new(data, "format", json_integer(VTP_KV_FORMAT)) == 0;

    if (ok && id != NULL) {
        hex = vtp_hex_encode(id->pValue, id->ulValueLen);
        ok = hex != NULL && json_object_set_new(data, "id", json_string(hex)) == 0;
    }
    if (ok && label != NULL)
        ok = json_object_set_new(data, "label",
                                 json_stringn(label->ulValueLen ? label->pValue : "",
                                              label->ulValueLen)) == 0;
    if (ok && usage >= 0)
        ok = json_object_set_new(data, "usage", json_integer(usage)) == 0;
    free(hex);
    if (!ok) {
        json_decref(data);
        data = NULL;
    }
    return data;
}

bool vtp_kv_meta_fields(const json_t *meta, const char **hex_id, const char **label,
                        long *usage)
{
    json_int_t format;
    const json_t *u;

    *hex_id = NULL;
    *label = NULL;
    *usage = -1;
    if (!json_is_object(meta))
        return false;
    format = json_integer_value(json_object_get(meta, "format"));
    if (format > VTP_KV_FORMAT)
        VTP_LOG_DEBUG("KV entry of format %lld: reading the fields of format %d",
                      (long long)format, VTP_KV_FORMAT);
    *hex_id = json_string_value(json_object_get(meta, "id"));
    *label = json_string_value(json_object_get(meta, "label"));
    u = json_object_get(meta, "usage");
    if (json_is_integer(u) && json_integer_value(u) >= 0 && json_integer_value(u) <= VTP_USE_ALL)
        *usage = (long)json_integer_value(u);
    return true;
}

char *vtp_kv_index_path(const struct vtp_transit *t, CK_ATTRIBUTE_TYPE type, const void *value,
                        size_t len)
{
    char *hex = vtp_hex_encode(value, len), *dir, *p = NULL;

    if (hex == NULL)
        return NULL;
    dir = vtp_join3(t->mount, type == CKA_LABEL ? "/index/label/" : "/index/id/", "");
    if (dir != NULL)
        p = vtp_join3(dir, len > 0 ? hex : "-", "");
    free(dir);
    free(hex);
    return p;
}

CK_RV vtp_kv_index(const struct vtp_transit *t, CK_ATTRIBUTE_TYPE type, const void *value,
                   size_t len, const char *name, bool add)
{
    char *dir, *path = NULL;
    json_t *data = NULL;
    CK_RV rv = CKR_HOST_MEMORY;

    if (vtp_kv_mount(t) == NULL)
        return CKR_OK;
    dir = vtp_kv_index_path(t, type, value, len);
    path = dir != NULL ? vtp_join3(dir, "/", name) : NULL;
    if (path == NULL)
        goto out;
    if (!add) {
        rv = vtp_kv_delete(t, path);
        goto out;
    }
    /* one entry per key, made with check-and-set 0: concurrent generations never lose each
     * other's entries (one document for all would need a read-modify-write) */
    data = json_pack("{s:i,s:s}", "format", VTP_KV_FORMAT, "key", name);
    if (data == NULL)
        goto out;
    rv = vtp_kv_write(t, path, data, 0);
    if (rv == VTP_ERR_CAS_MISMATCH)
        rv = CKR_OK; /* there already */
out:
    if (rv != CKR_OK)
        VTP_LOG_WARN("index of %s for key %s not updated: %s",
                     type == CKA_LABEL ? "labels" : "IDs", name, vtp_rv_name(rv));
    json_decref(data);
    free(dir);
    free(path);
    return rv;
}

static bool json_b64(const json_t *data, const char *key, unsigned char **out, size_t *len)
{
    const char *s = json_string_value(json_object_get(data, key));
    return s != NULL && vtp_b64_decode(s, strlen(s), out, len);
}

CK_RV vtp_cert_from_json(const json_t *data, const char *kv_name, struct vtp_cert **out)
{
    unsigned char *der = NULL, *id = NULL;
    size_t der_len = 0, id_len = 0;
    const char *hex = json_string_value(json_object_get(data, "id"));
    const char *label = json_string_value(json_object_get(data, "label"));
    CK_ATTRIBUTE tmpl[3];
    unsigned char *parts[3] = {NULL, NULL, NULL};
    size_t lens[3] = {0, 0, 0};
    static const char *const names[3] = {"subject", "issuer", "serial"};
    static const CK_ATTRIBUTE_TYPE types[3] = {CKA_SUBJECT, CKA_ISSUER, CKA_SERIAL_NUMBER};
    CK_ULONG n = 0;
    CK_RV rv = CKR_DEVICE_ERROR;

    if (!json_b64(data, "value", &der, &der_len)) {
        VTP_LOG_WARN("certificate %s in KV has no base64 value", kv_name);
        goto out;
    }
    if (hex != NULL && !vtp_hex_decode(hex, &id, &id_len)) {
        VTP_LOG_WARN("certificate %s in KV: id is not hex", kv_name);
        goto out;
    }
    for (int i = 0; i < 3; i++)
        if (json_b64(data, names[i], &parts[i], &lens[i]))
            tmpl[n++] = (CK_ATTRIBUTE){types[i], parts[i], (CK_ULONG)lens[i]};
    rv = vtp_cert_build(der, der_len, id, id_len, label, label ? strlen(label) : 0, tmpl, n, out);
    if (rv == CKR_OK) {
        (*out)->kv_name = strdup(kv_name);
        if ((*out)->kv_name == NULL) {
            vtp_cert_unref(*out);
            rv = CKR_HOST_MEMORY;
        }
    }
out:
    for (int i = 0; i < 3; i++)
        free(parts[i]);
    free(der);
    free(id);
    return rv;
}

json_t *vtp_cert_to_json(const struct vtp_cert *c)
{
    json_t *o = json_object();
    char *hex = vtp_hex_encode(c->id, c->id_len);

    if (o == NULL || hex == NULL || vtp_json_set_b64(o, "value", c->value, c->value_len) != 0 ||
        json_object_set_new(o, "id", json_string(hex)) != 0 ||
        json_object_set_new(o, "label", json_string(c->label)) != 0 ||
        vtp_json_set_b64(o, "subject", c->subject, c->subject_len) != 0 ||
        vtp_json_set_b64(o, "issuer", c->issuer, c->issuer_len) != 0 ||
        vtp_json_set_b64(o, "serial", c->serial, c->serial_len) != 0) {
        json_decref(o);
        o = NULL;
    }
    free(hex);
    return o;
}

/* CKA_LABEL: UTF-8 (RFC 2279) without NUL, since it is kept as a string in KV v2. */
CK_RV vtp_label_check(const CK_ATTRIBUTE *a)
{
    const unsigned char *p = a->pValue;
    size_t i = 0, n = a->ulValueLen;

    /* Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF,
     * which is what a JSON string can hold */
    while (i < n) {
        unsigned char c = p[i];
        size_t extra;
        unsigned char lo = 0x80, hi = 0xbf; /* the range of the second byte */
        if (c == 0) {
            goto bad;
        } else if (c < 0x80) {
            extra = 0;
        } else if (c >= 0xc2 && c <= 0xdf) {
            extra = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            extra = 2;
            lo = c == 0xe0 ? 0xa0 : 0x80;
            hi = c == 0xed ? 0x9f : 0xbf;
        } else if (c >= 0xf0 && c <= 0xf4) {
            extra = 3;
            lo = c == 0xf0 ? 0x90 : 0x80;
            hi = c == 0xf4 ? 0x8f : 0xbf;
        } else {
            goto bad;
        }
        if (extra > n - i - 1)
            goto bad;
        if (extra > 0 && (p[i + 1] < lo || p[i + 1] > hi))
            goto bad;
        for (size_t k = 2; k <= extra; k++)
            if ((p[i + k] & 0xc0) != 0x80)
                goto bad;
        i += extra + 1;
    }
    return CKR_OK;
bad:
    VTP_LOG_INFO("CKA_LABEL is not UTF-8 text without NUL characters");
    return CKR_ATTRIBUTE_VALUE_INVALID;
}

/* ---------------------------------------------------------------------------------------- */
/* Without KV: the name */

#define NAME_MARK "p11-" /* before the random hex: names others made rarely have it */

static bool word_char(int c)
{
    return isalnum(c) || c == '_';
}

/* A label that is a Transit name part as it is. */
static bool label_fits_name(const unsigned char *p, size_t n)
{
    if (n == 0 || n > 128 || !word_char(p[0]) || !word_char(p[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!word_char(p[i]) && p[i] != '-' && p[i] != '.')
            return false;
    return true;
}

CK_RV vtp_name_encode(const char *prefix, const CK_ATTRIBUTE *label, const CK_ATTRIBUTE *id,
                      long usage, char **out)
{
    char utag[8] = "";
    bool has_label = label != NULL && label->ulValueLen > 0;
    size_t llen = has_label ? label->ulValueLen : 0;
    bool id_in_name = id != NULL && !(has_label && id->ulValueLen == llen &&
                                      memcmp(id->pValue, label->pValue, llen) == 0);
    char *hex = NULL, *name;
    unsigned char rnd[4];
    size_t n;

    *out = NULL;
    if (label != NULL && label->ulValueLen == 0) {
        VTP_LOG_INFO("without a KV store an empty CKA_LABEL cannot be kept (the Transit key "
                     "name carries the label); set kv_mount to keep it, or give none");
        return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    if (has_label && !label_fits_name(label->pValue, llen)) {
        VTP_LOG_INFO("without a KV store, CKA_LABEL \"%.*s\" cannot be kept: it is kept in "
                     "the Transit key name, which allows letters, digits, '_', '-' and '.' "
                     "(first and last a letter, digit or '_'); set kv_mount to keep any label",
                     (int)(llen > 64 ? 64 : llen), (const char *)label->pValue);
        return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    if (id_in_name && id->ulValueLen > 0 &&
        (hex = vtp_hex_encode(id->pValue, id->ulValueLen)) == NULL)
        return CKR_HOST_MEMORY;
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        free(hex);
        return CKR_FUNCTION_FAILED;
    }
    if (usage >= 0)
        snprintf(utag, sizeof(utag), ".u%03lx", (unsigned long)usage & VTP_USE_ALL);
    n = strlen(prefix) + llen + (hex ? strlen(hex) : 0) + 40;
    name = malloc(n);
    if (name == NULL) {
        free(hex);
        return CKR_HOST_MEMORY;
    }
    snprintf(name, n, "%s%.*s%s" NAME_MARK "%02x%02x%02x%02x%s%s%s", prefix, (int)llen,
             has_label ? (const char *)label->pValue : "", has_label ? "." : "", rnd[0], rnd[1],
             rnd[2], rnd[3], utag, id_in_name ? ".i" : "", hex ? hex : "");
    free(hex);
    *out = name;
    return CKR_OK;
}

static bool is_hex(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)p[i]) || isupper((unsigned char)p[i]))
            return false;
    return true;
}

bool vtp_name_decode(const char *shortname, size_t *label_len, unsigned char **id,
                     size_t *id_len, long *usage)
{
    const size_t mark = strlen(NAME_MARK) + 8; /* "p11-" and 8 hex */
    size_t n = strlen(shortname), end = n, llen;
    const char *hex_id = NULL;
    long u = -1;

    *id = NULL;
    *id_len = 0;
    *usage = -1;
    /* from the end: an optional ".i<hex>", then an optional ".u<3 hex>" */
    for (size_t i = n; i >= 2; i--) {
        if (shortname[i - 2] == '.' && shortname[i - 1] == 'i') {
            if ((n - i) % 2 == 0 && is_hex(shortname + i, n - i)) {
                hex_id = shortname + i;
                end = i - 2;
            }
            break;
        }
        if (!isxdigit((unsigned char)shortname[i - 1]))
            break;
    }
    if (end >= 5 && shortname[end - 5] == '.' && shortname[end - 4] == 'u' &&
        is_hex(shortname + end - 3, 3)) {
        u = strtol(shortname + end - 3, NULL, 16);
        if (u > VTP_USE_ALL)
            return false;
        end -= 5;
    }
    /* then "<label>.p11-<8 hex>", or "p11-<8 hex>" alone (no label given: it is the label) */
    if (end < mark || strncmp(shortname + end - mark, NAME_MARK, strlen(NAME_MARK)) != 0 ||
        !is_hex(shortname + end - 8, 8))
        return false;
    if (end == mark)
        llen = end;
    else if (end > mark + 1 && shortname[end - mark - 1] == '.')
        llen = end - mark - 1;
    else
        return false;
    if (hex_id != NULL && *hex_id == '\0') {
        if ((*id = malloc(1)) == NULL) /* an empty ID */
            return false;
    } else if (hex_id != NULL) {
        if (!vtp_hex_decode(hex_id, id, id_len))
            return false;
    } else {
        /* the ID is the label */
        if ((*id = malloc(llen)) == NULL)
            return false;
        memcpy(*id, shortname, llen);
        *id_len = llen;
    }
    *label_len = llen;
    *usage = u;
    return true;
}
