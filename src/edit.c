/* edit.c - objects made and changed other than by key generation: C_CreateObject (X.509
 * certificates, kept in KV v2) and C_SetAttributeValue (CKA_LABEL and CKA_ID of keys and
 * certificates), and the destruction of certificates. What a template may give comes from
 * attr.c's one table; where it is kept, from kvstore.c. */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>

#include "attr.h"
#include "cache.h"
#include "edit.h"
#include "kvstore.h"
#include "util.h"

#define MAX_LABEL 256
#define MAX_ID 256


static CK_RV need_kv(struct vtp_slot *slot, const char *what)
{
    CK_RV rv = vtp_kv_settle(vtp_slot_transit(slot));

    if (rv != CKR_OK || vtp_kv_mount(vtp_slot_transit(slot)) != NULL)
        return rv;
    VTP_LOG_INFO("slot %s has no KV store: %s cannot be stored (set kv_mount to a KV v2 mount "
                 "the token may write)",
                 vtp_slot_conf(slot)->name, what);
    return CKR_TOKEN_WRITE_PROTECTED;
}

/* CKA_CLASS and CKA_CERTIFICATE_TYPE say what is made: an X.509 certificate only. */
static CK_RV check_cert_kind(const CK_ATTRIBUTE *t, CK_ULONG n)
{
    for (CK_ULONG i = 0; i < n; i++) {
        const CK_ATTRIBUTE *a = &t[i];
        CK_ULONG ul;
        if (a->type != CKA_CLASS && a->type != CKA_CERTIFICATE_TYPE)
            continue;
        if (a->pValue == NULL || a->ulValueLen != sizeof(CK_ULONG))
            return CKR_ATTRIBUTE_VALUE_INVALID;
        memcpy(&ul, a->pValue, sizeof(ul));
        if (ul != (a->type == CKA_CLASS ? CKO_CERTIFICATE : CKC_X_509)) {
            VTP_LOG_INFO("%s 0x%lx: only X.509 certificates can be created",
                         vtp_attr_name(a->type), ul);
            return CKR_ATTRIBUTE_VALUE_INVALID;
        }
    }
    return CKR_OK;
}

/* Every attribute against the certificate they make (attr.c's one table). */
static CK_RV check_cert_template(const CK_ATTRIBUTE *t, CK_ULONG n, const struct vtp_cert *cert)
{
    const struct vtp_obj proto = {CKO_CERTIFICATE, NULL, (struct vtp_cert *)cert};
    bool kept;

    for (CK_ULONG i = 0; i < n; i++) {
        CK_RV rv = vtp_attr_given(&proto, &t[i], &kept);
        if (rv != CKR_OK)
            return rv;
    }
    return CKR_OK;
}

CK_RV vtp_object_create(struct vtp_session *s, CK_ATTRIBUTE_PTR tmpl, CK_ULONG count,
                        CK_OBJECT_HANDLE_PTR out)
{
    struct vtp_slot *slot = vtp_session_slot(s);
    const CK_ATTRIBUTE *cls, *value, *id, *label;
    const char *prefix = vtp_slot_conf(slot)->key_prefix ? vtp_slot_conf(slot)->key_prefix : "";
    struct vtp_cert *cert = NULL;
    char *name = NULL, *path = NULL;
    json_t *data = NULL;
    unsigned char rnd[6];
    size_t n;
    CK_RV rv;

    VTP_RETURN_VAL_IF_FAIL(out != NULL && (tmpl != NULL || count == 0), CKR_ARGUMENTS_BAD);
    cls = vtp_attr_find(tmpl, count, CKA_CLASS);
    value = vtp_attr_find(tmpl, count, CKA_VALUE);
    if (cls != NULL && cls->pValue != NULL && cls->ulValueLen == sizeof(CK_OBJECT_CLASS)) {
        CK_OBJECT_CLASS c;
        memcpy(&c, cls->pValue, sizeof(c));
        if (c == CKO_PRIVATE_KEY || c == CKO_PUBLIC_KEY || c == CKO_SECRET_KEY) {
            VTP_LOG_INFO("C_CreateObject of a %s key: key import is not supported; keys are "
                         "made in Transit with C_GenerateKeyPair",
                         c == CKO_PRIVATE_KEY ? "private" : c == CKO_PUBLIC_KEY ? "public"
                                                                                 : "secret");
            return CKR_ATTRIBUTE_VALUE_INVALID;
        }
    }
    if (cls == NULL || value == NULL || value->ulValueLen == 0) {
        VTP_LOG_INFO("C_CreateObject needs CKA_CLASS and CKA_VALUE");
        return CKR_TEMPLATE_INCOMPLETE;
    }
    rv = check_cert_kind(tmpl, count);
    if (rv != CKR_OK)
        return rv;
    {
        const CK_ATTRIBUTE *tok = vtp_attr_find(tmpl, count, CKA_TOKEN);
        if (tok == NULL || (tok->pValue != NULL && tok->ulValueLen == sizeof(CK_BBOOL) &&
                            *(CK_BBOOL *)tok->pValue == CK_FALSE)) {
            /* CKA_TOKEN defaults to FALSE: a session object, which would have to vanish with
             * its session; certificates are kept in Vault, so they are token objects */
            VTP_LOG_INFO("C_CreateObject without CKA_TOKEN = TRUE asks for a session object: "
                         "not supported, certificates are token objects");
            return CKR_TEMPLATE_INCONSISTENT;
        }
    }
    for (CK_ULONG i = 0; i < count; i++) {
        if (tmpl[i].pValue == NULL && tmpl[i].ulValueLen != 0) {
            VTP_LOG_INFO("%s: NULL value of %lu bytes", vtp_attr_name(tmpl[i].type),
                         tmpl[i].ulValueLen);
            return CKR_ATTRIBUTE_VALUE_INVALID;
        }
    }
    id = vtp_attr_find(tmpl, count, CKA_ID);
    label = vtp_attr_find(tmpl, count, CKA_LABEL);
    if (label != NULL && (rv = vtp_label_check(label)) != CKR_OK)
        return rv;
    rv = vtp_cert_build(value->pValue, value->ulValueLen, id ? id->pValue : NULL,
                        id ? id->ulValueLen : 0, label ? label->pValue : NULL,
                        label ? label->ulValueLen : 0, tmpl, count, &cert);
    if (rv != CKR_OK)
        return rv;
    rv = check_cert_template(tmpl, count, cert);
    if (rv == CKR_OK && !(vtp_session_flags(s) & CKF_RW_SESSION))
        rv = CKR_SESSION_READ_ONLY;
    if (rv == CKR_OK && vtp_slot_login_required(slot) && !vtp_slot_is_logged_in(slot))
        rv = CKR_USER_NOT_LOGGED_IN;
    if (rv == CKR_OK)
        rv = need_kv(slot, "certificates");
    if (rv != CKR_OK)
        goto out;
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        rv = CKR_FUNCTION_FAILED;
        goto out;
    }
    n = strlen(prefix) + 32;
    name = malloc(n);
    if (name == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    snprintf(name, n, "%scert-%02x%02x%02x%02x%02x%02x", prefix, rnd[0], rnd[1], rnd[2], rnd[3],
             rnd[4], rnd[5]);
    cert->kv_name = strdup(name);
    path = vtp_kv_cert_path(vtp_slot_transit(slot), name);
    data = vtp_cert_to_json(cert);
    if (cert->kv_name == NULL || path == NULL || data == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    rv = vtp_kv_write(vtp_slot_transit(slot), path, data, -1);
    if (rv != CKR_OK) {
        VTP_LOG_ERR("storing certificate %s in KV %s failed: %s", name,
                    vtp_kv_mount(vtp_slot_transit(slot)), vtp_rv_name(rv));
        goto out;
    }
    rv = vtp_cache_put_cert(vtp_slot_cache(slot), cert);
    if (rv != CKR_OK)
        goto out;
    VTP_LOG_INFO("stored certificate %s, object %lu", name, cert->handle);
    *out = cert->handle;
out:
    json_decref(data);
    free(path);
    free(name);
    vtp_cert_unref(cert);
    return rv;
}

CK_RV vtp_edit_destroy_cert(struct vtp_session *s, struct vtp_cert *cert)
{
    struct vtp_slot *slot = vtp_session_slot(s);
    char *path;
    CK_RV rv;

    if (cert->read_only) {
        VTP_LOG_INFO("certificate from %s is read-only", cert->kv_name);
        return CKR_ACTION_PROHIBITED;
    }
    path = vtp_kv_cert_path(vtp_slot_transit(slot), cert->kv_name);
    if (path == NULL)
        return CKR_HOST_MEMORY;
    rv = vtp_kv_delete(vtp_slot_transit(slot), path);
    free(path);
    if (rv != CKR_OK) {
        VTP_LOG_ERR("deleting certificate %s from KV failed: %s", cert->kv_name,
                    vtp_rv_name(rv));
        return rv;
    }
    return vtp_cache_remove_cert(vtp_slot_cache(slot), cert->handle);
}

CK_RV vtp_object_set(struct vtp_session *s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR tmpl,
                     CK_ULONG count)
{
    struct vtp_slot *slot = vtp_session_slot(s);
    const CK_ATTRIBUTE *id = NULL, *label = NULL;
    const void *id_v, *label_v;
    struct vtp_obj o = {0};
    struct vtp_key *nk = NULL;
    struct vtp_cert *nc = NULL;
    json_t *data = NULL;
    char *path = NULL, *hex = NULL;
    CK_RV rv;

    VTP_RETURN_VAL_IF_FAIL(tmpl != NULL || count == 0, CKR_ARGUMENTS_BAD);
    rv = vtp_cache_lookup_obj(vtp_slot_cache(slot), h, &o);
    if (rv != CKR_OK)
        return rv;
    for (CK_ULONG i = 0; i < count; i++) {
        if (tmpl[i].type == CKA_LABEL) {
            label = &tmpl[i];
        } else if (tmpl[i].type == CKA_ID) {
            id = &tmpl[i];
        } else {
            /* an attribute the object has is read-only; one it does not have is invalid */
            CK_ATTRIBUTE probe = {tmpl[i].type, NULL, 0};
            rv = vtp_obj_attr_get(&o, &probe, 1);
            rv = rv == CKR_ATTRIBUTE_TYPE_INVALID ? rv : CKR_ATTRIBUTE_READ_ONLY;
            VTP_LOG_INFO("%s cannot be changed", vtp_attr_name(tmpl[i].type));
            goto out;
        }
        if (tmpl[i].pValue == NULL && tmpl[i].ulValueLen != 0) {
            rv = CKR_ATTRIBUTE_VALUE_INVALID;
            goto out;
        }
        if (tmpl[i].ulValueLen > (tmpl[i].type == CKA_LABEL ? MAX_LABEL : MAX_ID)) {
            rv = CKR_ATTRIBUTE_VALUE_INVALID;
            goto out;
        }
    }
    if (label != NULL && (rv = vtp_label_check(label)) != CKR_OK)
        goto out;
    if (!(vtp_session_flags(s) & CKF_RW_SESSION)) {
        rv = CKR_SESSION_READ_ONLY;
        goto out;
    }
    if (o.cert != NULL && o.cert->read_only) {
        rv = CKR_ACTION_PROHIBITED;
        goto out;
    }
    if (vtp_slot_login_required(slot) && !vtp_slot_is_logged_in(slot)) {
        rv = CKR_USER_NOT_LOGGED_IN;
        goto out;
    }
    rv = need_kv(slot, "CKA_LABEL and CKA_ID");
    if (rv != CKR_OK)
        goto out;
    /* given but empty ({NULL, 0}) is an empty value, not "unchanged" */
    id_v = id == NULL ? NULL : id->pValue != NULL ? id->pValue : (const void *)"";
    label_v = label == NULL ? NULL : label->pValue != NULL ? label->pValue : (const void *)"";
    if (o.key != NULL) {
        rv = vtp_key_relabel(o.key, id_v, id ? id->ulValueLen : 0, label_v,
                             label ? label->ulValueLen : 0, &nk);
        if (rv != CKR_OK)
            goto out;
        CK_ATTRIBUTE nid = {CKA_ID, nk->id, nk->id_len};
        CK_ATTRIBUTE nlabel = {CKA_LABEL, nk->label, strlen(nk->label)};
        data = vtp_kv_meta_new(&nid, &nlabel,
                               nk->usage == vtp_usage_default(nk->kt) ? -1 : (long)nk->usage);
        path = vtp_kv_meta_path(vtp_slot_transit(slot), nk->name);
        if (data == NULL || path == NULL) {
            rv = CKR_HOST_MEMORY;
            goto out;
        }
    } else {
        rv = vtp_cert_relabel(o.cert, id_v, id ? id->ulValueLen : 0, label_v,
                              label ? label->ulValueLen : 0, &nc);
        if (rv != CKR_OK)
            goto out;
        data = vtp_cert_to_json(nc);
        path = vtp_kv_cert_path(vtp_slot_transit(slot), nc->kv_name);
        if (data == NULL || path == NULL) {
            rv = CKR_HOST_MEMORY;
            goto out;
        }
    }
    rv = vtp_kv_write(vtp_slot_transit(slot), path, data, -1);
    if (rv != CKR_OK) {
        VTP_LOG_ERR("storing the new label/id in KV failed: %s", vtp_rv_name(rv));
        goto out;
    }
    if (nk != NULL) {
        const struct vtp_key *ok = o.key;
        if (ok->id_stored) {
            (void)vtp_kv_index(vtp_slot_transit(slot), CKA_ID, ok->id, ok->id_len, ok->name,
                                  false);
            (void)vtp_kv_index(vtp_slot_transit(slot), CKA_LABEL, ok->label, strlen(ok->label),
                                  ok->name, false);
        }
        (void)vtp_kv_index(vtp_slot_transit(slot), CKA_ID, nk->id, nk->id_len, nk->name, true);
        (void)vtp_kv_index(vtp_slot_transit(slot), CKA_LABEL, nk->label, strlen(nk->label),
                              nk->name, true);
    }
    rv = nk != NULL ? vtp_cache_put(vtp_slot_cache(slot), nk)
                    : vtp_cache_put_cert(vtp_slot_cache(slot), nc);
out:
    json_decref(data);
    free(path);
    free(hex);
    vtp_key_unref(nk);
    vtp_cert_unref(nc);
    vtp_obj_release(&o);
    return rv;
}
