/* keygen.c - key pairs created in and destroyed from Transit, from standard templates. */
#include "common.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>

#include "attr.h"
#include "cache.h"
#include "kvstore.h"
#include "edit.h"
#include "keygen.h"
#include "util.h"

#define MAX_LABEL 256
#define MAX_ID 256


/* What a template pair asks for, once checked. */
struct gen_req {
    const struct vtp_keytype *kt;
    const CK_ATTRIBUTE *label;
    const CK_ATTRIBUTE *id;
    unsigned usage; /* VTP_USE_*: the type's default changed by the templates */
};

/* What the slot makes of a new key, for the prototype the templates are checked against. */
struct gen_slot {
    bool destroyable;   /* allow_destroy */
    bool modifiable;    /* a KV store keeps label and ID changes */
    bool login_private; /* auth = pin: private keys need a login */
};

/* Usage attributes (CKA_SIGN, ...) and CKA_PRIVATE of the private key: what the pair will do,
 * from the type's default and both templates. */
static CK_RV collect_usage(const CK_ATTRIBUTE *t, CK_ULONG n, bool pub, const struct gen_slot *gs,
                           unsigned *usage)
{
    for (CK_ULONG i = 0; i < n; i++) {
        const CK_ATTRIBUTE *a = &t[i];
        unsigned bit = vtp_usage_bit(a->type, pub);
        if (bit == 0 && !(a->type == CKA_PRIVATE && !pub))
            continue;
        if (a->pValue == NULL || a->ulValueLen != sizeof(CK_BBOOL)) {
            VTP_LOG_INFO("%s: value must be one CK_BBOOL", vtp_attr_name(a->type));
            return CKR_ATTRIBUTE_VALUE_INVALID;
        }
        if (a->type == CKA_PRIVATE) {
            /* TRUE is accepted as it is: with auth = token the slot has no login, and hiding
             * such keys until one would hide every key pkcs11-tool makes from a later
             * --sign without --login (docs/internals.md) */
            if (*(CK_BBOOL *)a->pValue == CK_FALSE && gs->login_private) {
                VTP_LOG_INFO("CKA_PRIVATE = FALSE: with auth = pin every private key needs a "
                             "login");
                return CKR_ATTRIBUTE_VALUE_INVALID;
            }
        } else if (*(CK_BBOOL *)a->pValue != CK_FALSE) {
            *usage |= bit;
        } else {
            *usage &= ~bit;
        }
    }
    return CKR_OK;
}

/* Every attribute of a template against the key as it will be (attr.c's one table). */
static CK_RV check_template(const CK_ATTRIBUTE *t, CK_ULONG n, const struct vtp_obj *proto)
{
    bool pub = proto->cls == CKO_PUBLIC_KEY, kept;

    for (CK_ULONG i = 0; i < n; i++) {
        const CK_ATTRIBUTE *a = &t[i];
        CK_RV rv;
        if (a->type == CKA_TOKEN) {
            if (a->pValue == NULL || a->ulValueLen != sizeof(CK_BBOOL))
                return CKR_ATTRIBUTE_VALUE_INVALID;
            if (*(CK_BBOOL *)a->pValue == CK_FALSE) {
                VTP_LOG_INFO("CKA_TOKEN = FALSE in the %s key template asks for a session key: "
                             "session keys are not supported, Transit keys are token objects",
                             pub ? "public" : "private");
                return CKR_TEMPLATE_INCONSISTENT;
            }
            continue;
        }
        rv = vtp_attr_given(proto, a, &kept);
        if (rv != CKR_OK)
            return rv;
    }
    return CKR_OK;
}

/* The same attribute in both templates must agree. */
static CK_RV pick_same(const CK_ATTRIBUTE *pt, CK_ULONG pn, const CK_ATTRIBUTE *vt, CK_ULONG vn,
                       CK_ATTRIBUTE_TYPE type, size_t max, const CK_ATTRIBUTE **out)
{
    const CK_ATTRIBUTE *a = vtp_attr_find(pt, pn, type), *b = vtp_attr_find(vt, vn, type);

    if (a != NULL && b != NULL &&
        (a->ulValueLen != b->ulValueLen ||
         (a->ulValueLen > 0 && memcmp(a->pValue, b->pValue, a->ulValueLen) != 0))) {
        VTP_LOG_INFO("%s differs between the public and private templates",
                     vtp_attr_name(type));
        return CKR_TEMPLATE_INCONSISTENT;
    }
    *out = a != NULL ? a : b;
    if (*out != NULL && (*out)->ulValueLen > max) {
        VTP_LOG_INFO("%s longer than %zu bytes", vtp_attr_name(type), max);
        return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    return CKR_OK;
}

static CK_RV parse_request(CK_MECHANISM_PTR m, const CK_ATTRIBUTE *pt, CK_ULONG pn,
                           const CK_ATTRIBUTE *vt, CK_ULONG vn, const struct gen_slot *gs,
                           struct gen_req *req)
{
    struct vtp_key proto_key = {0};
    struct vtp_obj proto = {CKO_PUBLIC_KEY, &proto_key, NULL};
    const CK_ATTRIBUTE *a;
    CK_RV rv;

    memset(req, 0, sizeof(*req));
    if (m->pParameter != NULL || m->ulParameterLen != 0)
        return CKR_MECHANISM_PARAM_INVALID;
    for (CK_ULONG i = 0; i < pn + vn; i++) {
        const CK_ATTRIBUTE *t = i < pn ? &pt[i] : &vt[i - pn];
        if (t->pValue == NULL && t->ulValueLen != 0) {
            VTP_LOG_INFO("%s: NULL value of %lu bytes", vtp_attr_name(t->type), t->ulValueLen);
            return CKR_ATTRIBUTE_VALUE_INVALID;
        }
    }
    switch (m->mechanism) {
    case CKM_EC_KEY_PAIR_GEN:
    case CKM_EC_EDWARDS_KEY_PAIR_GEN: {
        enum vtp_key_kind kind =
            m->mechanism == CKM_EC_KEY_PAIR_GEN ? VTP_KIND_EC : VTP_KIND_ED25519;
        a = vtp_attr_find(pt, pn, CKA_EC_PARAMS);
        if (a == NULL) {
            VTP_LOG_INFO("CKA_EC_PARAMS missing from the public key template");
            return CKR_TEMPLATE_INCOMPLETE;
        }
        /* DER: an OID (06) or a curve name (13 PrintableString, 0c UTF8String), short form */
        if (a->ulValueLen < 3 || a->ulValueLen > 127 ||
            (((const unsigned char *)a->pValue)[0] != 0x06 &&
             ((const unsigned char *)a->pValue)[0] != 0x13 &&
             ((const unsigned char *)a->pValue)[0] != 0x0c) ||
            ((const unsigned char *)a->pValue)[1] + 2UL != a->ulValueLen) {
            VTP_LOG_INFO("CKA_EC_PARAMS is not a DER OID or curve name");
            return CKR_ATTRIBUTE_VALUE_INVALID;
        }
        req->kt = vtp_keytype_by_ec_params(kind, a->pValue, a->ulValueLen);
        if (req->kt == NULL) {
            VTP_LOG_INFO("CKA_EC_PARAMS names a curve Transit does not have");
            return CKR_CURVE_NOT_SUPPORTED;
        }
        break;
    }
    case CKM_RSA_PKCS_KEY_PAIR_GEN: {
        CK_ULONG bits = 0;
        bool present = false;
        rv = vtp_attr_ulong(pt, pn, CKA_MODULUS_BITS, &present, &bits);
        if (rv != CKR_OK)
            return rv;
        if (!present) {
            VTP_LOG_INFO("CKA_MODULUS_BITS missing from the public key template");
            return CKR_TEMPLATE_INCOMPLETE;
        }
        req->kt = vtp_keytype_by_rsa_bits(bits);
        if (req->kt == NULL) {
            VTP_LOG_INFO("Transit has RSA keys of 2048, 3072 and 4096 bits, not %lu", bits);
            return CKR_ATTRIBUTE_VALUE_INVALID;
        }
        a = vtp_attr_find(pt, pn, CKA_PUBLIC_EXPONENT);
        if (a != NULL) {
            /* Only 65537 (leading zero bytes allowed). */
            static const unsigned char f4[] = {0x01, 0x00, 0x01};
            const unsigned char *e = a->pValue;
            size_t len = a->ulValueLen;
            while (len > 0 && e != NULL && *e == 0) {
                e++;
                len--;
            }
            if (len != sizeof(f4) || memcmp(e, f4, len) != 0) {
                VTP_LOG_INFO("Transit RSA keys have public exponent 65537 only");
                return CKR_ATTRIBUTE_VALUE_INVALID;
            }
        }
        break;
    }
    default:
        VTP_LOG_INFO("%s is not a key pair generation mechanism", vtp_mech_name(m->mechanism));
        return CKR_MECHANISM_INVALID;
    }
    req->usage = vtp_usage_default(req->kt);
    rv = collect_usage(pt, pn, true, gs, &req->usage);
    if (rv == CKR_OK)
        rv = collect_usage(vt, vn, false, gs, &req->usage);
    /* the key as it will be: what each template says must be what its object shows */
    proto_key.kt = req->kt;
    proto_key.usage = req->usage;
    proto_key.destroyable = gs->destroyable;
    proto_key.modifiable = gs->modifiable;
    proto_key.private_is_private = gs->login_private;
    if (rv == CKR_OK)
        rv = check_template(pt, pn, &proto);
    proto.cls = CKO_PRIVATE_KEY;
    if (rv == CKR_OK)
        rv = check_template(vt, vn, &proto);
    if (rv == CKR_OK)
        rv = pick_same(pt, pn, vt, vn, CKA_LABEL, MAX_LABEL, &req->label);
    if (rv == CKR_OK && req->label != NULL)
        rv = vtp_label_check(req->label);
    if (rv == CKR_OK)
        rv = pick_same(pt, pn, vt, vn, CKA_ID, MAX_ID, &req->id);
    if (rv == CKR_OK && vtp_attr_find(vt, vn, CKA_TOKEN) == NULL) {
        /* A session key (CKA_TOKEN defaults to FALSE) would have to vanish with its session;
         * a Transit key outlives the process, so session keys are refused, not made. */
        VTP_LOG_INFO("the private key template has no CKA_TOKEN, which asks for a session key: "
                     "session keys are not supported, Transit keys are token objects; give "
                     "CKA_TOKEN = TRUE (Java SunPKCS11: attributes(generate, *, *) = "
                     "{ CKA_TOKEN = true })");
        rv = CKR_TEMPLATE_INCONSISTENT;
    }
    return rv;
}

static bool word_char(int c)
{
    return isalnum(c) || c == '_';
}

char *vtp_keygen_name_from_label(const char *prefix, const unsigned char *label, size_t len)
{
    size_t plen = strlen(prefix), n = 0;
    char *name = malloc(plen + len + 1);

    if (name == NULL)
        return NULL;
    memcpy(name, prefix, plen);
    for (size_t i = 0; i < len && n < 128; i++) {
        int c = label[i];
        if (plen == 0 && n == 0 && !word_char(c))
            continue; /* a name starts with a word character */
        if (word_char(c) || c == '-' || c == '.')
            name[plen + n++] = (char)c;
        else if (c == ' ' || c == '/' || c == ':')
            name[plen + n++] = '-';
    }
    name[plen + n] = '\0';
    /* Transit names start and end with a word character. */
    while (n > 0 && !word_char((unsigned char)name[plen + n - 1]))
        name[plen + --n] = '\0';
    if (n == 0) {
        free(name);
        return NULL;
    }
    return name;
}

/* Is a Transit key of that name absent? CKR_OK if so, CKR_ATTRIBUTE_VALUE_INVALID if taken. */
static CK_RV transit_name_free(const struct vtp_transit *t, const char *name)
{
    struct vtp_transit_key *tk = NULL;
    CK_RV rv = vtp_transit_read_key(t, name, &tk);

    vtp_transit_key_free(tk);
    if (rv == VTP_ERR_KEY_MISSING)
        return CKR_OK;
    return rv == CKR_OK ? CKR_ATTRIBUTE_VALUE_INVALID : rv;
}

/* The name of a new key, claimed so that no other generation gets it. With KV: from the label
 * if possible (else "key-<random hex>"), claimed by writing its KV entry (*meta) with
 * check-and-set 0, which fails when another generation claimed it first. Without KV: a name
 * that carries the label and ID and ends in random hex (vtp_name_encode). Either way nothing
 * is in Transit yet, so what cannot be stored fails before a key is made. */
static CK_RV choose_name(struct vtp_session *s, const struct gen_req *req, char **out,
                         json_t **meta)
{
    const struct vtp_transit *t = vtp_slot_transit(vtp_session_slot(s));
    const char *prefix = vtp_slot_conf(vtp_session_slot(s))->key_prefix
                             ? vtp_slot_conf(vtp_session_slot(s))->key_prefix
                             : "";
    bool kv = vtp_kv_mount(t) != NULL;
    long usage = req->usage == vtp_usage_default(req->kt) ? -1 : (long)req->usage;
    char *base = NULL, *name = NULL, *path = NULL;
    CK_RV rv = CKR_FUNCTION_FAILED;

    *out = NULL;
    *meta = NULL;
    if (kv && (req->id != NULL || req->label != NULL || usage >= 0) &&
        (*meta = vtp_kv_meta_new(req->id, req->label, usage)) == NULL)
        return CKR_HOST_MEMORY;
    if (kv && req->label != NULL && req->label->ulValueLen > 0)
        base = vtp_keygen_name_from_label(prefix, req->label->pValue, req->label->ulValueLen);
    for (int attempt = 0; attempt < 8; attempt++) {
        unsigned char rnd[4];
        size_t n;
        if (!kv) {
            rv = vtp_name_encode(prefix, req->label, req->id, usage, &name);
            if (rv != CKR_OK)
                break;
        } else {
            if (RAND_bytes(rnd, sizeof(rnd)) != 1)
                break;
            n = (base ? strlen(base) : strlen(prefix)) + 16;
            name = malloc(n);
            if (name == NULL) {
                rv = CKR_HOST_MEMORY;
                break;
            }
            if (base != NULL && attempt == 0)
                snprintf(name, n, "%s", base);
            else if (base != NULL)
                snprintf(name, n, "%s-%02x%02x%02x%02x", base, rnd[0], rnd[1], rnd[2], rnd[3]);
            else
                snprintf(name, n, "%skey-%02x%02x%02x%02x", prefix, rnd[0], rnd[1], rnd[2],
                         rnd[3]);
        }
        /* Transit's create returns an existing key unchanged: the name must be free there */
        rv = transit_name_free(t, name);
        if (rv == CKR_OK && *meta != NULL) {
            path = vtp_kv_meta_path(t, name);
            rv = path != NULL ? vtp_kv_write(t, path, *meta, 0) : CKR_HOST_MEMORY;
            free(path);
            path = NULL;
            if (rv == VTP_ERR_CAS_MISMATCH)
                rv = CKR_ATTRIBUTE_VALUE_INVALID; /* another generation claimed it first */
            if (rv != CKR_OK && rv != CKR_ATTRIBUTE_VALUE_INVALID)
                VTP_LOG_ERR("the KV entry of new key %s (its CKA_ID and CKA_LABEL) could not be "
                            "written to %s: %s; no key was made. The token needs create and "
                            "update on %s/data/%s/%s/*, or set kv_mount to another KV v2 mount",
                            name, vtp_kv_mount(t), vtp_rv_name(rv), vtp_kv_mount(t),
                            t->kv_prefix, t->mount);
        }
        if (rv == CKR_OK) {
            *out = name;
            free(base);
            return CKR_OK;
        }
        free(name);
        name = NULL;
        if (rv != CKR_ATTRIBUTE_VALUE_INVALID)
            break;
        VTP_LOG_DEBUG("key name taken, trying another");
        rv = CKR_FUNCTION_FAILED;
    }
    free(base);
    json_decref(*meta);
    *meta = NULL;
    return rv;
}

/* Adds (or drops) the index entries of a new key's CKA_ID and CKA_LABEL. */
static CK_RV index_key(const struct vtp_transit *t, const struct gen_req *req, const char *name,
                       bool add)
{
    CK_RV rv = CKR_OK, rv2 = CKR_OK;

    if (req->id != NULL)
        rv = vtp_kv_index(t, CKA_ID, req->id->pValue, req->id->ulValueLen, name, add);
    if (req->label != NULL)
        rv2 = vtp_kv_index(t, CKA_LABEL, req->label->pValue, req->label->ulValueLen, name, add);
    return rv != CKR_OK ? rv : rv2;
}

/* Drops the KV entry choose_name wrote when no key came of it. */
static void unclaim(const struct vtp_transit *t, const char *name)
{
    char *path = vtp_kv_meta_path(t, name);

    if (path == NULL || vtp_kv_delete(t, path) != CKR_OK)
        VTP_LOG_WARN("the KV entry of %s could not be removed", name);
    free(path);
}

CK_RV vtp_keygen_pair(struct vtp_session *s, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pub_tmpl,
                      CK_ULONG pub_count, CK_ATTRIBUTE_PTR priv_tmpl, CK_ULONG priv_count,
                      CK_OBJECT_HANDLE_PTR pub, CK_OBJECT_HANDLE_PTR priv)
{
    struct vtp_slot *slot = vtp_session_slot(s);
    const struct vtp_transit *t = vtp_slot_transit(slot);
    struct vtp_transit_key *tk = NULL;
    struct vtp_key *k = NULL;
    struct gen_req req;
    struct gen_slot gs;
    char *name = NULL;
    json_t *meta = NULL;
    CK_RV rv;

    VTP_RETURN_VAL_IF_FAIL(mech != NULL && pub != NULL && priv != NULL, CKR_ARGUMENTS_BAD);
    VTP_RETURN_VAL_IF_FAIL(pub_tmpl != NULL || pub_count == 0, CKR_ARGUMENTS_BAD);
    VTP_RETURN_VAL_IF_FAIL(priv_tmpl != NULL || priv_count == 0, CKR_ARGUMENTS_BAD);
    if (vtp_attr_find(pub_tmpl, pub_count, CKA_MODIFIABLE) != NULL ||
        vtp_attr_find(priv_tmpl, priv_count, CKA_MODIFIABLE) != NULL)
        (void)vtp_kv_settle(t); /* CKA_MODIFIABLE is TRUE where a KV store keeps changes */
    gs.destroyable = vtp_slot_conf(slot)->allow_destroy;
    gs.modifiable = vtp_kv_mount(t) != NULL;
    gs.login_private = vtp_slot_login_required(slot);
    rv = parse_request(mech, pub_tmpl, pub_count, priv_tmpl, priv_count, &gs, &req);
    if (rv != CKR_OK)
        return rv;
    if (!(vtp_session_flags(s) & CKF_RW_SESSION))
        return CKR_SESSION_READ_ONLY;
    if (vtp_slot_login_required(slot) && !vtp_slot_is_logged_in(slot))
        return CKR_USER_NOT_LOGGED_IN;
    rv = vtp_kv_settle(t);
    if (rv != CKR_OK)
        return rv;
    rv = choose_name(s, &req, &name, &meta);
    if (rv != CKR_OK)
        goto out;
    /* the index lets a search by CKA_ID or CKA_LABEL find this key without reading all; it is
     * written before the key is made, like the claim */
    if (meta != NULL && (rv = index_key(t, &req, name, true)) != CKR_OK) {
        (void)index_key(t, &req, name, false);
        unclaim(t, name);
        goto out;
    }
    rv = vtp_transit_create_key(t, name, req.kt->transit_type, &tk);
    if (rv == CKR_OK && (tk->type == NULL || strcmp(tk->type, req.kt->transit_type) != 0)) {
        /* made by someone else between our read and our create: not ours to delete */
        VTP_LOG_ERR("Transit key %s exists with type %s", name, tk->type ? tk->type : "?");
        rv = CKR_FUNCTION_FAILED;
    } else if (rv != CKR_OK) {
        VTP_LOG_ERR("creating Transit key %s (%s) failed: %s", name, req.kt->transit_type,
                    vtp_rv_name(rv));
    }
    if (rv != CKR_OK) {
        if (meta != NULL) {
            (void)index_key(t, &req, name, false);
            unclaim(t, name);
        }
        goto out;
    }
    rv = vtp_key_build(tk, meta, vtp_slot_conf(slot)->key_prefix, &k);
    if (rv != CKR_OK)
        goto out;
    vtp_cache_finish_key(vtp_slot_cache(slot), k);
    rv = vtp_cache_put(vtp_slot_cache(slot), k);
    if (rv != CKR_OK)
        goto out;
    VTP_LOG_INFO("created Transit key %s (%s), objects %lu/%lu", name, req.kt->transit_type,
                 k->pub_handle, k->priv_handle);
    *pub = k->pub_handle;
    *priv = k->priv_handle;
out:
    vtp_key_unref(k);
    json_decref(meta);
    vtp_transit_key_free(tk);
    free(name);
    return rv;
}

CK_RV vtp_keygen_destroy(struct vtp_session *s, CK_OBJECT_HANDLE h)
{
    struct vtp_slot *slot = vtp_session_slot(s);
    struct vtp_obj o = {0};
    struct vtp_key *k = NULL;
    char *path = NULL;
    CK_RV rv;

    rv = vtp_cache_lookup_obj(vtp_slot_cache(slot), h, &o);
    if (rv != CKR_OK) {
        if (vtp_cache_take_destroyed(vtp_slot_cache(slot), h))
            return CKR_OK; /* its pair was destroyed already, and with it this object */
        return rv;
    }
    if (!(vtp_session_flags(s) & CKF_RW_SESSION)) {
        vtp_obj_release(&o);
        return CKR_SESSION_READ_ONLY;
    }
    if (o.cert != NULL) {
        /* C_DestroyObject's list has no CKR_USER_NOT_LOGGED_IN */
        rv = vtp_slot_login_required(slot) && !vtp_slot_is_logged_in(slot)
                 ? CKR_ACTION_PROHIBITED
                 : vtp_edit_destroy_cert(s, o.cert);
        vtp_obj_release(&o);
        return rv;
    }
    k = o.key;
    if (!vtp_slot_conf(slot)->allow_destroy) {
        VTP_LOG_INFO("slot %s: allow_destroy = false, key %s kept", vtp_slot_conf(slot)->name,
                     k->name);
        rv = CKR_ACTION_PROHIBITED;
        goto out;
    }
    if (vtp_slot_login_required(slot) && !vtp_slot_is_logged_in(slot)) {
        VTP_LOG_INFO("slot %s: destroying a key needs a login", vtp_slot_conf(slot)->name);
        rv = CKR_ACTION_PROHIBITED; /* C_DestroyObject's list has no CKR_USER_NOT_LOGGED_IN */
        goto out;
    }
    /* Destroying either half deletes the Transit key, and so both objects. */
    rv = vtp_transit_delete_key(vtp_slot_transit(slot), k->name);
    if (rv == VTP_ERR_KEY_MISSING)
        rv = CKR_OK; /* already gone */
    if (rv != CKR_OK) {
        VTP_LOG_ERR("deleting Transit key %s failed: %s", k->name, vtp_rv_name(rv));
        goto out;
    }
    if (vtp_kv_mount(vtp_slot_transit(slot)) != NULL) {
        path = vtp_kv_meta_path(vtp_slot_transit(slot), k->name);
        if (path == NULL || vtp_kv_delete(vtp_slot_transit(slot), path) != CKR_OK)
            VTP_LOG_WARN("key %s deleted; its KV metadata could not be removed", k->name);
        if (k->id_stored) {
            (void)vtp_kv_index(vtp_slot_transit(slot), CKA_ID, k->id, k->id_len, k->name, false);
            (void)vtp_kv_index(vtp_slot_transit(slot), CKA_LABEL, k->label, strlen(k->label),
                                  k->name, false);
        }
    }
    rv = vtp_cache_remove(vtp_slot_cache(slot), k->name);
    vtp_cache_note_destroyed(vtp_slot_cache(slot),
                             h == k->priv_handle ? k->pub_handle : k->priv_handle);
    VTP_LOG_INFO("deleted Transit key %s (objects %lu and %lu)", k->name, k->priv_handle,
                 k->pub_handle);
out:
    free(path);
    vtp_key_unref(k);
    return rv;
}

