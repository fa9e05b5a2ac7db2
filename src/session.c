/* session.c - the session table. */
#include "common.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "session.h"

struct vtp_session {
    CK_SESSION_HANDLE handle;
    struct vtp_slot *slot;
    CK_FLAGS flags;
    int refs; /* atomic; the table holds one */
    bool closed;
    pthread_mutex_t lock; /* serializes calls on this session; may be held across I/O */
    struct vtp_find find;
    struct vtp_op ops[VTP_OP_DIGEST + 1];
};

struct vtp_slot *vtp_session_slot(const struct vtp_session *s)
{
    return s->slot;
}

CK_FLAGS vtp_session_flags(const struct vtp_session *s)
{
    return s->flags;
}

struct vtp_op *vtp_session_op(struct vtp_session *s, enum vtp_op_kind kind)
{
    return &s->ops[kind];
}

struct vtp_find *vtp_session_find(struct vtp_session *s)
{
    return &s->find;
}

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vtp_session **table;
static size_t table_len, table_cap;
static CK_SESSION_HANDLE next_handle = 1;

CK_RV vtp_sessions_init(void)
{
    pthread_mutex_lock(&table_lock);
    table = NULL;
    table_len = table_cap = 0;
    pthread_mutex_unlock(&table_lock);
    return CKR_OK;
}

void vtp_op_reset(struct vtp_op *op)
{
    vtp_key_unref(op->key);
    EVP_MD_CTX_free(op->md);
    free(op->buf);
    if (op->result != NULL)
        OPENSSL_clear_free(op->result, op->result_len);
    memset(op, 0, sizeof(*op));
}

void vtp_find_reset(struct vtp_find *f)
{
    free(f->found);
    memset(f, 0, sizeof(*f));
}

static void session_free(struct vtp_session *s)
{
    for (size_t i = 0; i < VTP_ARRAY_SIZE(s->ops); i++)
        vtp_op_reset(&s->ops[i]);
    vtp_find_reset(&s->find);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static void session_unref(struct vtp_session *s)
{
    if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
        session_free(s);
}

static void count_session(struct vtp_slot *slot, CK_FLAGS flags, int delta)
{
    vtp_slot_session_count(slot, flags, delta);
}

CK_RV vtp_session_open(struct vtp_slot *slot, CK_FLAGS flags, CK_SESSION_HANDLE *out)
{
    struct vtp_session *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return CKR_HOST_MEMORY;
    s->slot = slot;
    s->flags = flags;
    s->refs = 1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_lock(&table_lock);
    if (table_len == table_cap) {
        size_t cap = table_cap ? table_cap * 2 : 16;
        struct vtp_session **t = realloc(table, cap * sizeof(*t));
        if (t == NULL) {
            pthread_mutex_unlock(&table_lock);
            session_free(s);
            return CKR_HOST_MEMORY;
        }
        table = t;
        table_cap = cap;
    }
    count_session(slot, flags, 1); /* before it is visible: a close may follow at once */
    s->handle = next_handle++;
    table[table_len++] = s;
    *out = s->handle; /* copied under the lock: another thread may close and free it */
    pthread_mutex_unlock(&table_lock);
    return CKR_OK;
}

/* Removes h from the table; returns the session (the table's reference) or NULL. */
static struct vtp_session *take_locked(CK_SESSION_HANDLE h)
{
    for (size_t i = 0; i < table_len; i++) {
        if (table[i]->handle == h) {
            struct vtp_session *s = table[i];
            table[i] = table[--table_len];
            return s;
        }
    }
    return NULL;
}

static void retire(struct vtp_session *s)
{
    count_session(s->slot, s->flags, -1);
    __atomic_store_n(&s->closed, true, __ATOMIC_RELEASE);
    session_unref(s);
}

CK_RV vtp_session_close(CK_SESSION_HANDLE h)
{
    struct vtp_session *s;

    pthread_mutex_lock(&table_lock);
    s = take_locked(h);
    pthread_mutex_unlock(&table_lock);
    if (s == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    retire(s);
    return CKR_OK;
}

void vtp_session_close_all(struct vtp_slot *slot)
{
    for (;;) {
        struct vtp_session *s = NULL;
        pthread_mutex_lock(&table_lock);
        for (size_t i = 0; i < table_len; i++) {
            if (table[i]->slot == slot) {
                s = take_locked(table[i]->handle);
                break;
            }
        }
        pthread_mutex_unlock(&table_lock);
        if (s == NULL)
            break;
        retire(s);
    }
    /* the last session's close logged the slot out (vtp_slot_session_count) */
}

void vtp_sessions_finalize(void)
{
    pthread_mutex_lock(&table_lock);
    for (size_t i = 0; i < table_len; i++)
        session_unref(table[i]);
    free(table);
    table = NULL;
    table_len = table_cap = 0;
    pthread_mutex_unlock(&table_lock);
}

CK_RV vtp_session_acquire(CK_SESSION_HANDLE h, struct vtp_session **out)
{
    struct vtp_session *s = NULL;

    pthread_mutex_lock(&table_lock);
    for (size_t i = 0; i < table_len; i++) {
        if (table[i]->handle == h) {
            s = table[i];
            __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
            break;
        }
    }
    pthread_mutex_unlock(&table_lock);
    if (s == NULL)
        return CKR_SESSION_HANDLE_INVALID;
    pthread_mutex_lock(&s->lock);
    if (__atomic_load_n(&s->closed, __ATOMIC_ACQUIRE)) {
        pthread_mutex_unlock(&s->lock);
        session_unref(s);
        return CKR_SESSION_CLOSED;
    }
    *out = s;
    return CKR_OK;
}

void vtp_session_release(struct vtp_session *s)
{
    pthread_mutex_unlock(&s->lock);
    session_unref(s);
}

CK_STATE vtp_session_state(struct vtp_session *s)
{
    bool user = vtp_slot_is_logged_in(s->slot);

    if (s->flags & CKF_RW_SESSION)
        return user ? CKS_RW_USER_FUNCTIONS : CKS_RW_PUBLIC_SESSION;
    return user ? CKS_RO_USER_FUNCTIONS : CKS_RO_PUBLIC_SESSION;
}

bool vtp_session_any_ro(struct vtp_slot *slot)
{
    return vtp_slot_any_ro_session(slot);
}

void vtp_sessions_atfork_child(void)
{
    /* Another thread of the parent may have held the lock at fork(): start over, leaking the
     * parent's table rather than touching it. */
    pthread_mutex_init(&table_lock, NULL);
    table = NULL;
    table_len = table_cap = 0;
}
