/* slot.h - slots and tokens made from the config (src/slot.c). */
#ifndef VTP_SLOT_H
#define VTP_SLOT_H

#include <pthread.h>
#include <stdbool.h>

#include "vtp-pkcs11.h"
#include "cfg.h"
#include "cache.h"
#include "vault/transit.h"

struct vtp_slot {
    CK_SLOT_ID id;
    const struct vtp_slot_conf *conf;
    const struct vtp_vault_conf *vault;
    struct vtp_transit transit;
    struct vtp_cache *cache;
    char serial[17];
    char label[33];
    pthread_mutex_t lock; /* guards the fields below */
    bool logged_in;
    CK_ULONG sessions;
    CK_ULONG rw_sessions;
};

CK_RV vtp_slots_create(const struct vtp_config *cfg, struct vtp_http *http);
void vtp_slots_destroy(void);
/* In a forked child: forget the parent's slots without freeing them. */
void vtp_slots_abandon(void);
CK_ULONG vtp_slots_count(void);
/* NULL if there is no such slot. Valid until vtp_slots_destroy. */
struct vtp_slot *vtp_slot_get(CK_SLOT_ID id);

void vtp_slot_info(const struct vtp_slot *s, CK_SLOT_INFO *info);
void vtp_slot_token_info(struct vtp_slot *s, CK_TOKEN_INFO *info);
bool vtp_slot_login_required(const struct vtp_slot *s);
bool vtp_slot_is_logged_in(struct vtp_slot *s);

/* Serial from address, namespace, mount and prefix (16 hex chars). */
void vtp_slot_serial(const char *address, const char *ns, const char *mount, const char *prefix,
                     char out[17]);

#endif /* VTP_SLOT_H */
