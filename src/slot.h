/* slot.h - slots and tokens made from the config (src/slot.c). */
#ifndef VTP_SLOT_H
#define VTP_SLOT_H

#include <pthread.h>
#include <stdbool.h>

#include "vtp-pkcs11.h"
#include "cfg.h"
#include "cache.h"
#include "vault/transit.h"

/* A slot and its token; the body is private to slot.c. Valid from vtp_slots_create to
 * vtp_slots_destroy (C_Finalize, after every call has left). */
struct vtp_slot;
CK_SLOT_ID vtp_slot_id(const struct vtp_slot *s);
const struct vtp_slot_conf *vtp_slot_conf(const struct vtp_slot *s);
/* Where the slot's keys live, with the HTTP client (and so the Vault identity) it uses. */
const struct vtp_transit *vtp_slot_transit(const struct vtp_slot *s);
struct vtp_cache *vtp_slot_cache(const struct vtp_slot *s);

/* The slots of one initialisation (owned by the module's state, src/module.c).
 * no_threads: CKF_LIBRARY_CANT_CREATE_OS_THREADS, for the slots' own clients. */
struct vtp_slots;
CK_RV vtp_slots_create(const struct vtp_config *cfg, struct vtp_http *http, bool no_threads,
                       struct vtp_slots **out);
void vtp_slots_destroy(struct vtp_slots *v);
/* In a forked child: forget the parent's slots without freeing them. */
void vtp_slots_abandon(struct vtp_slots *v);
CK_ULONG vtp_slots_count(const struct vtp_slots *v);
/* NULL if there is no such slot. Valid until vtp_slots_destroy. */
struct vtp_slot *vtp_slots_get(struct vtp_slots *v, CK_SLOT_ID id);

void vtp_slot_info(const struct vtp_slot *s, CK_SLOT_INFO *info);
void vtp_slot_token_info(struct vtp_slot *s, CK_TOKEN_INFO *info);
bool vtp_slot_login_required(const struct vtp_slot *s);
bool vtp_slot_is_logged_in(struct vtp_slot *s);

/* The slot owns its login state. C_Login: with auth = pin the PIN is checked as a Vault token
 * and becomes this slot's token (no other slot's); a wrong PIN changes nothing. */
CK_RV vtp_slot_login(struct vtp_slot *s, const CK_UTF8CHAR *pin, CK_ULONG len);
/* C_Logout: CKR_USER_NOT_LOGGED_IN when not logged in; with auth = pin the token is dropped. */
CK_RV vtp_slot_logout(struct vtp_slot *s);
/* Is any read-only session of the slot open (for C_Login as SO)? */
bool vtp_slot_any_ro_session(struct vtp_slot *s);
/* A session of the slot opened (+1) or closed (-1); closing the last one logs out. */
void vtp_slot_session_count(struct vtp_slot *s, CK_FLAGS flags, int delta);
/* The slots' own HTTP clients' counts, added to *acc. */
void vtp_slots_add_http_stats(const struct vtp_slots *v, struct vtp_http_stats *acc);

/* Serial from address, namespace, mount and prefix (16 hex chars). */
void vtp_slot_serial(const char *address, const char *ns, const char *mount, const char *prefix,
                     char out[17]);

#endif /* VTP_SLOT_H */
