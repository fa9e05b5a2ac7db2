/* find.c - C_FindObjects*: a search matches the template against one snapshot of the slot's
 * cache and keeps the handles in the session; a search by CKA_ID or CKA_LABEL loads only the
 * keys that can match. */
#include "common.h"

#include <stdlib.h>

#include "attr.h"
#include "cache.h"
#include "find.h"
#include "object.h"
#include "slot.h"

CK_RV vtp_find_init(struct vtp_session *s, const CK_ATTRIBUTE *tmpl, CK_ULONG count)
{
    struct vtp_find *f = vtp_session_find(s);
    struct vtp_slot *slot = vtp_session_slot(s);
    struct vtp_snapshot *snap = NULL;
    const CK_ATTRIBUTE *by;
    bool logged_in;
    CK_RV rv = CKR_OK;

    if (f->active)
        return CKR_OPERATION_ACTIVE;
    if (vtp_slot_login_required(slot) && !vtp_slot_is_logged_in(slot)) {
        /* auth = pin: without the PIN there is no token to ask Vault with: nothing to show */
        f->found = NULL;
        f->n_found = f->pos = 0;
        f->active = true;
        return CKR_OK;
    }
    /* A search by CKA_ID or CKA_LABEL loads only the keys that can match; any other search
     * needs every key of the slot. */
    by = vtp_attr_find(tmpl, count, CKA_ID);
    if (by == NULL)
        by = vtp_attr_find(tmpl, count, CKA_LABEL);
    if (by != NULL && by->pValue == NULL && by->ulValueLen != 0)
        return CKR_ARGUMENTS_BAD;
    rv = vtp_cache_get(vtp_slot_cache(slot), true, by == NULL, &snap);
    if (rv == CKR_OK && by != NULL && !snap->complete) {
        rv = vtp_cache_resolve(vtp_slot_cache(slot), by->type, by->pValue, by->ulValueLen);
        vtp_snapshot_unref(snap);
        snap = NULL;
        if (rv == CKR_OK)
            rv = vtp_cache_get(vtp_slot_cache(slot), false, false, &snap);
    }
    if (rv != CKR_OK)
        goto out;
    logged_in = vtp_slot_is_logged_in(slot);
    f->found = malloc((snap->n * 2 + snap->n_certs + 1) * sizeof(*f->found));
    if (f->found == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    f->n_found = f->pos = 0;
    for (size_t i = 0; i < snap->n; i++) {
        struct vtp_key *k = snap->keys[i];
        if ((!k->private_is_private || logged_in) &&
            vtp_attr_match(k, CKO_PRIVATE_KEY, tmpl, count))
            f->found[f->n_found++] = k->priv_handle;
        if (vtp_attr_match(k, CKO_PUBLIC_KEY, tmpl, count))
            f->found[f->n_found++] = k->pub_handle;
    }
    for (size_t i = 0; i < snap->n_certs; i++) {
        struct vtp_obj o = {CKO_CERTIFICATE, NULL, snap->certs[i]};
        if (vtp_obj_match(&o, tmpl, count))
            f->found[f->n_found++] = snap->certs[i]->handle;
    }
    f->active = true;
    VTP_LOG_DEBUG("%zu of %zu objects match %lu attribute(s)", f->n_found,
                  snap->n * 2 + snap->n_certs, count);
out:
    vtp_snapshot_unref(snap);
    return rv;
}

CK_RV vtp_find_next(struct vtp_session *s, CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *count)
{
    struct vtp_find *f = vtp_session_find(s);
    CK_ULONG n = 0;

    if (!f->active)
        return CKR_OPERATION_NOT_INITIALIZED;
    while (n < max && f->pos < f->n_found)
        out[n++] = f->found[f->pos++];
    *count = n;
    return CKR_OK;
}

CK_RV vtp_find_final(struct vtp_session *s)
{
    struct vtp_find *f = vtp_session_find(s);
    CK_RV rv = f->active ? CKR_OK : CKR_OPERATION_NOT_INITIALIZED;

    vtp_find_reset(f);
    return rv;
}
