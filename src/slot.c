/* slot.c - slots and tokens: one per [slot] section of the config. */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <openssl/evp.h>

#include "slot.h"
#include "vault/auth.h"
#include "util.h"

struct vtp_slot {
    CK_SLOT_ID id;
    const struct vtp_slot_conf *conf;
    const struct vtp_vault_conf *vault;
    struct vtp_transit transit;
    struct vtp_kv_auto kv_auto; /* kv_mount = auto (transit.kv_auto points here) */
    struct vtp_cache *cache;
    char serial[17];
    char label[33];
    /* auth = pin: the slot's own HTTP client, which holds the token its C_Login gave, so each
     * slot's login is its own Vault identity (transit.http points to it); else NULL and
     * transit.http is the module's client. */
    struct vtp_http *own_http;
    pthread_mutex_t login_lock; /* one C_Login of the slot at a time (held across the lookup) */
    pthread_mutex_t lock;       /* guards the fields below */
    bool logged_in;
    CK_ULONG sessions;
    CK_ULONG rw_sessions;
};

CK_SLOT_ID vtp_slot_id(const struct vtp_slot *s)
{
    return s->id;
}

const struct vtp_slot_conf *vtp_slot_conf(const struct vtp_slot *s)
{
    return s->conf;
}

const struct vtp_transit *vtp_slot_transit(const struct vtp_slot *s)
{
    return &s->transit;
}

struct vtp_cache *vtp_slot_cache(const struct vtp_slot *s)
{
    return s->cache;
}

struct vtp_slots {
    struct vtp_slot *v;
    CK_ULONG n;
};

void vtp_slot_serial(const char *address, const char *ns, const char *mount, const char *prefix,
                     char out[17])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const char *parts[4] = {address ? address : "", ns ? ns : "", mount ? mount : "",
                            prefix ? prefix : ""};
    bool ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;

    for (int i = 0; ok && i < 4; i++)
        ok = EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]) + 1) == 1; /* NUL separates */
    ok = ok && EVP_DigestFinal_ex(ctx, md, &md_len) == 1;
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02X", ok ? md[i] : 0);
}

static void slot_release(struct vtp_slot *s)
{
    vtp_cache_free(s->cache);
    if (s->own_http != NULL) {
        vtp_auth_stop(s->own_http);
        vtp_http_free(s->own_http);
    }
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->login_lock);
    pthread_mutex_destroy(&s->kv_auto.lock);
}

/* auth = pin: a client of the slot's own, so that its token is its own. */
static CK_RV own_client(const struct vtp_config *cfg, bool no_threads, struct vtp_slot *s)
{
    CK_RV rv = vtp_http_new(&cfg->vault, &s->own_http);

    if (rv != CKR_OK)
        return rv;
    if (no_threads)
        vtp_http_set_no_threads(s->own_http, true);
    rv = vtp_auth_start(s->own_http, &cfg->vault);
    if (rv != CKR_OK) {
        vtp_http_free(s->own_http);
        s->own_http = NULL;
        return rv;
    }
    s->transit.http = s->own_http;
    return CKR_OK;
}

CK_RV vtp_slots_create(const struct vtp_config *cfg, struct vtp_http *http, bool no_threads,
                       struct vtp_slots **out)
{
    struct vtp_slots *all = calloc(1, sizeof(*all));

    if (all == NULL)
        return CKR_HOST_MEMORY;
    if (cfg->cache_dir != NULL && mkdir(cfg->cache_dir, 0700) != 0 && errno != EEXIST)
        VTP_LOG_WARN("cache_dir %s cannot be created: %s; no offline copy", cfg->cache_dir,
                     strerror(errno));
    struct vtp_slot *v = calloc(cfg->n_slots, sizeof(*v));
    CK_RV rv = CKR_OK;
    size_t i;

    if (v == NULL) {
        free(all);
        return CKR_HOST_MEMORY;
    }
    for (i = 0; i < cfg->n_slots; i++) {
        const struct vtp_slot_conf *sc = &cfg->slots[i];
        struct vtp_slot *s = &v[i];
        const char *ns = sc->namespace_ ? sc->namespace_ : cfg->vault.namespace_;
        struct vtp_cache_conf cc;
        char disk[4096];

        s->id = (CK_SLOT_ID)i;
        s->conf = sc;
        s->vault = &cfg->vault;
        s->transit.http = http;
        s->transit.namespace_ = ns;
        s->transit.mount = sc->mount;
        s->transit.kv_mount = sc->kv_auto ? NULL : sc->kv_mount;
        s->transit.kv_prefix = sc->kv_prefix;
        pthread_mutex_init(&s->kv_auto.lock, NULL);
        atomic_init(&s->kv_auto.state, VTP_KV_UNSETTLED);
        s->kv_auto.mount = sc->kv_mount;
        s->transit.kv_auto = sc->kv_auto ? &s->kv_auto : NULL;
        vtp_slot_serial(cfg->vault.n_addresses ? cfg->vault.addresses[0] : "", ns, sc->mount,
                        sc->key_prefix, s->serial);
        snprintf(s->label, sizeof(s->label), "%s", sc->label ? sc->label : sc->mount);
        pthread_mutex_init(&s->lock, NULL);
        pthread_mutex_init(&s->login_lock, NULL);
        if (cfg->vault.auth == VTP_AUTH_PIN) {
            rv = own_client(cfg, no_threads, s);
            if (rv != CKR_OK) {
                pthread_mutex_destroy(&s->lock);
                pthread_mutex_destroy(&s->login_lock);
                pthread_mutex_destroy(&s->kv_auto.lock);
                break;
            }
        }
        cc.transit = &s->transit;
        cc.key_prefix = sc->key_prefix;
        cc.ttl_ms = sc->cache_ttl_ms > 0 ? sc->cache_ttl_ms : 60000;
        cc.private_is_private = cfg->vault.auth == VTP_AUTH_PIN;
        cc.allow_destroy = sc->allow_destroy;
        cc.cert_files = sc->certificates;
        cc.disk_path = NULL;
        if (cfg->cache_dir != NULL) {
            /* Named by what the slot is in Vault, not by address: the copy still matches
             * when the module fails over to, or is pointed at, another server. */
            char id[17];
            vtp_slot_serial(sc->kv_mount && !sc->kv_auto ? sc->kv_mount : "", ns, sc->mount,
                            sc->key_prefix, id);
            snprintf(disk, sizeof(disk), "%s/slot-%s.json", cfg->cache_dir, id);
            cc.disk_path = disk;
        }
        rv = vtp_cache_new(&cc, &s->cache);
        if (rv != CKR_OK) {
            s->cache = NULL;
            slot_release(s);
            break;
        }
    }
    if (rv != CKR_OK) {
        for (size_t j = 0; j < i; j++)
            slot_release(&v[j]);
        free(v);
        free(all);
        return rv;
    }
    all->v = v;
    all->n = cfg->n_slots;
    *out = all;
    return CKR_OK;
}

void vtp_slots_destroy(struct vtp_slots *all)
{
    if (all == NULL)
        return;
    for (CK_ULONG i = 0; i < all->n; i++)
        slot_release(&all->v[i]);
    free(all->v);
    free(all);
}

void vtp_slots_abandon(struct vtp_slots *all)
{
    /* the slots' own clients hold the parent's connections: forgotten, as the module's is */
    for (CK_ULONG i = 0; all != NULL && i < all->n; i++)
        if (all->v[i].own_http != NULL)
            vtp_http_forget(all->v[i].own_http);
}

CK_ULONG vtp_slots_count(const struct vtp_slots *all)
{
    return all->n;
}

struct vtp_slot *vtp_slots_get(struct vtp_slots *all, CK_SLOT_ID id)
{
    return id < all->n ? &all->v[id] : NULL;
}

void vtp_slot_info(const struct vtp_slot *s, CK_SLOT_INFO *info)
{
    char desc[160];

    memset(info, 0, sizeof(*info));
    /* 64 bytes: with a long mount, the slot name (32 bytes at most) alone, rather than cut */
    snprintf(desc, sizeof(desc), "Vault Transit %s (slot %s)", s->conf->mount, s->conf->name);
    if (strlen(desc) > sizeof(info->slotDescription))
        snprintf(desc, sizeof(desc), "Vault Transit slot %s", s->conf->name);
    vtp_pad_copy(info->slotDescription, sizeof(info->slotDescription), desc);
    vtp_pad_copy(info->manufacturerID, sizeof(info->manufacturerID), "vault-transit-pkcs11");
    info->flags = CKF_TOKEN_PRESENT | CKF_HW_SLOT;
    info->hardwareVersion.major = 1;
    info->firmwareVersion.major = 0;
    info->firmwareVersion.minor = 1;
}

bool vtp_slot_login_required(const struct vtp_slot *s)
{
    return s->vault->auth == VTP_AUTH_PIN;
}

bool vtp_slot_is_logged_in(struct vtp_slot *s)
{
    bool v;

    pthread_mutex_lock(&s->lock);
    v = s->logged_in;
    pthread_mutex_unlock(&s->lock);
    return v;
}

void vtp_slot_token_info(struct vtp_slot *s, CK_TOKEN_INFO *info)
{
    memset(info, 0, sizeof(*info));
    vtp_pad_copy(info->label, sizeof(info->label), s->label);
    vtp_pad_copy(info->manufacturerID, sizeof(info->manufacturerID), "vault-transit-pkcs11");
    vtp_pad_copy(info->model, sizeof(info->model), "Vault Transit");
    vtp_pad_copy(info->serialNumber, sizeof(info->serialNumber), s->serial);
    info->flags = CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED | CKF_RNG;
    if (vtp_slot_login_required(s))
        info->flags |= CKF_LOGIN_REQUIRED;
    pthread_mutex_lock(&s->lock);
    info->ulSessionCount = s->sessions;
    info->ulRwSessionCount = s->rw_sessions;
    pthread_mutex_unlock(&s->lock);
    info->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
    info->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
    /* With auth=pin the PIN is a Vault token; otherwise any PIN is accepted. */
    info->ulMaxPinLen = 4096;
    info->ulMinPinLen = vtp_slot_login_required(s) ? 1 : 0;
    info->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
    info->hardwareVersion.major = 1;
    info->firmwareVersion.minor = 1;
}

CK_RV vtp_slot_login(struct vtp_slot *s, const CK_UTF8CHAR *pin, CK_ULONG len)
{
    CK_RV rv = CKR_OK;

    pthread_mutex_lock(&s->login_lock);
    if (vtp_slot_is_logged_in(s)) {
        rv = CKR_USER_ALREADY_LOGGED_IN;
        goto out;
    }
    if (vtp_slot_login_required(s)) {
        /* This slot's client only: a wrong PIN here leaves every other slot's token alone. */
        rv = vtp_auth_login_pin(s->transit.http, s->vault, pin, len);
        if (rv != CKR_OK)
            goto out;
    } else {
        VTP_LOG_DEBUG("auth is not pin: the PIN is not used, Vault's token decides");
    }
    pthread_mutex_lock(&s->lock);
    s->logged_in = true;
    pthread_mutex_unlock(&s->lock);
out:
    pthread_mutex_unlock(&s->login_lock);
    return rv;
}

/* Clears the login; the caller drops the token (outside s->lock). */
static bool logout_locked(struct vtp_slot *s)
{
    bool was = s->logged_in;

    s->logged_in = false;
    return was;
}

static void drop_token(struct vtp_slot *s)
{
    if (vtp_slot_login_required(s))
        vtp_auth_logout(s->transit.http); /* auth = pin: the token was the PIN; forget it */
}

CK_RV vtp_slot_logout(struct vtp_slot *s)
{
    bool was;

    pthread_mutex_lock(&s->login_lock);
    pthread_mutex_lock(&s->lock);
    was = logout_locked(s);
    pthread_mutex_unlock(&s->lock);
    if (was)
        drop_token(s);
    pthread_mutex_unlock(&s->login_lock);
    return was ? CKR_OK : CKR_USER_NOT_LOGGED_IN;
}

bool vtp_slot_any_ro_session(struct vtp_slot *s)
{
    bool ro;

    pthread_mutex_lock(&s->lock);
    ro = s->sessions > s->rw_sessions;
    pthread_mutex_unlock(&s->lock);
    return ro;
}

void vtp_slot_session_count(struct vtp_slot *s, CK_FLAGS flags, int delta)
{
    bool dropped = false;

    /* Closing a session may log out: then login_lock, so that a C_Login on another session
     * cannot install a token between the logout here and the drop of the old one. Opening one
     * never logs out, and must not wait for a C_Login's request to Vault (the caller holds
     * the session table's lock). */
    if (delta < 0)
        pthread_mutex_lock(&s->login_lock);
    pthread_mutex_lock(&s->lock);
    s->sessions += delta;
    if (flags & CKF_RW_SESSION)
        s->rw_sessions += delta;
    if (s->sessions == 0)
        dropped = logout_locked(s); /* closing the last session logs the user out */
    pthread_mutex_unlock(&s->lock);
    if (dropped)
        drop_token(s);
    if (delta < 0)
        pthread_mutex_unlock(&s->login_lock);
}

void vtp_slots_add_http_stats(const struct vtp_slots *all, struct vtp_http_stats *acc)
{
    for (CK_ULONG i = 0; i < all->n; i++) {
        struct vtp_http_stats st;

        if (all->v[i].own_http == NULL)
            continue;
        vtp_http_get_stats(all->v[i].own_http, &st);
        acc->requests += st.requests;
        acc->failures += st.failures;
        acc->retries += st.retries;
    }
}
