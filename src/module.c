/* module.c - the PKCS#11 entry points: argument checks and CK_RV at the boundary. */
#define _GNU_SOURCE 1 /* pipe2 */
#include "common.h"

#include <pthread.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/rand.h>

#include "attr.h"
#include "batch.h"
#include "cache.h"
#include "cfg.h"
#include "crypt.h"
#include "errmap.h"
#include "find.h"
#include "edit.h"
#include "keygen.h"
#include "mech.h"
#include "module.h"
#include "session.h"
#include "sign.h"
#include "slot.h"
#include "util.h"
#include "vault/auth.h"
#include "vault/http.h"

_Static_assert(VTP_MAX_BATCH_ITEMS == VTP_TRANSIT_MAX_BATCH,
               "the batch_max_items range must match what a sign request can carry");

#define VTP_EXPORT __attribute__((visibility("default")))

/* Everything one C_Initialize makes and its C_Finalize frees: one owner, one lifetime. The
 * session table (session.c), the batch queues (batch.c) and the auth states (auth.c) are
 * registries whose contents are made and cleared from here, at the same two points, and reset
 * from the one atfork handler below. */
struct vtp_module {
    pid_t pid; /* the process that initialised it: a fork child has none */
    struct vtp_config *config;
    struct vtp_http *http; /* the module's client (with auth = pin each slot has its own) */
    struct vtp_slots *slots;
};

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER; /* C_Initialize vs C_Finalize */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
/* The module's state, or NULL (atomic: entry points read it; init_lock orders the writers). A
 * call that counted itself in while it was set may use it until it leaves. */
static struct vtp_module *module;
/* Set by C_Finalize while it waits for the calls inside: new calls are refused, and the calls
 * inside still see module set (atomic). */
static int finalizing;
/* Entry points inside the module right now (see enter/leave): C_Finalize waits for them. */
static unsigned long calls_in_flight; /* atomic */
static _Thread_local bool this_thread_entered;

static CK_FUNCTION_LIST function_list;

/* After fork() the child must call C_Initialize again: everything the parent had is
 * forgotten (not freed: its locks may be held by threads that do not exist here). The module's
 * one atfork handler: every file's state is reset from here. */
static void atfork_child(void)
{
    struct vtp_module *m = __atomic_load_n(&module, __ATOMIC_ACQUIRE);

    pthread_mutex_init(&init_lock, NULL);
    /* Whatever the parent was doing (initialising, finalising, calls inside): none of its
     * threads is here, and the locks they held are made anew. */
    __atomic_store_n(&module, NULL, __ATOMIC_SEQ_CST);
    __atomic_store_n(&finalizing, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&calls_in_flight, 0, __ATOMIC_SEQ_CST);
    this_thread_entered = false;
    vtp_sessions_atfork_child();
    vtp_batch_atfork_child();
    if (m != NULL) {
        vtp_slots_abandon(m->slots);
        vtp_http_forget(m->http); /* m itself is leaked with the rest */
    }
    vtp_auth_atfork_child();
    vtp_log_reset();
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, atfork_child);
}

CK_RV vtp_module_check(void)
{
    struct vtp_module *m = __atomic_load_n(&module, __ATOMIC_SEQ_CST);

    if (m == NULL || __atomic_load_n(&finalizing, __ATOMIC_SEQ_CST) || m->pid != getpid())
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    return CKR_OK;
}

/* The slot of an entry point that has counted itself in (the module cannot go meanwhile). */
static struct vtp_slot *slot_get(CK_SLOT_ID id)
{
    return vtp_slots_get(__atomic_load_n(&module, __ATOMIC_ACQUIRE)->slots, id);
}

/* Every entry point but C_Initialize and C_Finalize: enter, then leave through done(). A call
 * counts itself in before it looks at the module's state; C_Finalize marks the module
 * uninitialised before it counts the calls inside, so each call either sees
 * CKR_CRYPTOKI_NOT_INITIALIZED or is waited for (sequentially consistent atomics). */
static CK_RV enter(void)
{
    CK_RV rv;

    if (this_thread_entered)
        return vtp_module_check(); /* counted in already (one count per call) */
    __atomic_add_fetch(&calls_in_flight, 1, __ATOMIC_SEQ_CST);
    rv = vtp_module_check();
    if (rv != CKR_OK) {
        __atomic_sub_fetch(&calls_in_flight, 1, __ATOMIC_SEQ_CST);
        return rv;
    }
    this_thread_entered = true;
    return CKR_OK;
}

static void leave(void)
{
    if (this_thread_entered) {
        this_thread_entered = false;
        __atomic_sub_fetch(&calls_in_flight, 1, __ATOMIC_SEQ_CST);
    }
}

/* C_Finalize: wait until the calls inside have left. Each is bounded by the operation
 * deadline (timeout), so this is too; a sleep of a millisecond between looks is no cost at a
 * finalize. */
static void wait_for_calls(void)
{
    const struct timespec ms = {0, 1000000L};
    int64_t start = vtp_now_ms();
    bool said = false;

    while (__atomic_load_n(&calls_in_flight, __ATOMIC_SEQ_CST) != 0) {
        if (!said && vtp_now_ms() - start >= 100) {
            VTP_LOG_INFO("C_Finalize: waiting for %lu call(s) still inside the module",
                         __atomic_load_n(&calls_in_flight, __ATOMIC_SEQ_CST));
            said = true;
        }
        nanosleep(&ms, NULL);
    }
}

/* Leaves an entry point and returns its result, said in the terms PKCS#11 allows that function
 * (an internal error kind of what Vault answered becomes one of its codes: src/errmap.c), and
 * logged. */
static CK_RV done(const char *func, CK_RV rv)
{
    leave();
    if (strncmp(func, "fn_", 3) == 0)
        func += 3; /* fn_Sign is C_Sign */
    if (rv != CKR_OK)
        rv = vtp_errmap_rv(func, rv);
    if (rv != CKR_OK && vtp_log_level() >= VTP_LOG_INFO)
        vtp_log_write(VTP_LOG_INFO, func, "-> %s", vtp_rv_name(rv));
    else if (vtp_log_level() >= VTP_LOG_DEBUG_LEVEL)
        vtp_log_write(VTP_LOG_DEBUG_LEVEL, func, "-> %s", vtp_rv_name(rv));
    return rv;
}
#define DONE(rv) done(__func__, (rv))

#define CHECK_INIT()                                                                               \
    do {                                                                                           \
        CK_RV check_rv_ = enter();                                                                 \
        if (check_rv_ != CKR_OK)                                                                   \
            return DONE(check_rv_);                                                                \
    } while (0)

/* Entry points of session-bound operations share this shape: IN_SESSION after the entry point's
 * own CHECK_INIT and argument checks, WITH_SESSION when there are none. */
#define IN_SESSION(h, expr)                                                                        \
    do {                                                                                           \
        struct vtp_session *s_;                                                                    \
        CK_RV rv_ = vtp_session_acquire((h), &s_);                                                 \
        if (rv_ != CKR_OK)                                                                         \
            return DONE(rv_);                                                                      \
        {                                                                                          \
            struct vtp_session *s = s_;                                                            \
            rv_ = (expr);                                                                          \
        }                                                                                          \
        vtp_session_release(s_);                                                                   \
        return DONE(rv_);                                                                          \
    } while (0)

#define WITH_SESSION(h, expr)                                                                      \
    do {                                                                                           \
        CHECK_INIT();                                                                              \
        IN_SESSION(h, expr);                                                                       \
    } while (0)

/* Entry points the module does not offer: initialised or not, they say so. Those that take a
 * session check the handle first (an invalid handle is CKR_SESSION_HANDLE_INVALID whatever the
 * function). */
#define UNSUPPORTED(name, params)                                                                  \
    static CK_RV fn_##name params                                                              \
    {                                                                                              \
        CHECK_INIT();                                                                              \
        return DONE(CKR_FUNCTION_NOT_SUPPORTED);                                                   \
    }
#define UNSUPPORTED_IN_SESSION(name, params)                                                       \
    static CK_RV fn_##name params                                                              \
    {                                                                                              \
        WITH_SESSION(h, ((void)s, CKR_FUNCTION_NOT_SUPPORTED));                                    \
    }

/* A copy of the NUL-terminated string at p (at most VTP_RESERVED_MAX bytes), read without
 * trusting p: each byte goes through a pipe first, and write() answers EFAULT for an address
 * the process cannot read instead of a SIGSEGV (it is allowed under every seccomp profile a
 * service manager applies, unlike process_vm_readv). One byte at a time: nothing past the
 * string's NUL is touched (a config string is short). NULL: unreadable or too long. */
#define VTP_RESERVED_MAX 4096
static char *copy_foreign_string(const void *p)
{
    char *buf = malloc(VTP_RESERVED_MAX);
    int fds[2] = {-1, -1};
    size_t i;

    if (buf == NULL || pipe2(fds, O_CLOEXEC) != 0)
        goto fail;
    for (i = 0; i < VTP_RESERVED_MAX; i++) {
        if (write(fds[1], (const char *)p + i, 1) != 1 || read(fds[0], buf + i, 1) != 1)
            goto fail;
        if (buf[i] == '\0') {
            close(fds[0]);
            close(fds[1]);
            return buf;
        }
    }
fail:
    if (fds[0] >= 0) {
        close(fds[0]);
        close(fds[1]);
    }
    free(buf);
    return NULL;
}

static CK_RV check_init_args(CK_C_INITIALIZE_ARGS_PTR a, char **reserved)
{
    bool any, all;

    *reserved = NULL;
    if (a == NULL)
        return CKR_OK;
    any = a->CreateMutex || a->DestroyMutex || a->LockMutex || a->UnlockMutex;
    all = a->CreateMutex && a->DestroyMutex && a->LockMutex && a->UnlockMutex;
    if (any && !all) {
        VTP_LOG_ERR("C_Initialize: mutex functions must be given all or none");
        return CKR_ARGUMENTS_BAD;
    }
    if (any && !(a->flags & CKF_OS_LOCKING_OK)) {
        VTP_LOG_ERR("C_Initialize: only OS locking is supported");
        return CKR_CANT_LOCK;
    }
    /* PKCS#11 reserves pReserved (NULL); p11-kit's x-init-reserved and our docs pass
     * "config=/path" here. Anything else is refused, and the pointer is not trusted. */
    if (a->pReserved != NULL) {
        char *copy = copy_foreign_string(a->pReserved), *path;
        path = copy != NULL ? vtp_config_locate_reserved(copy) : NULL;
        if (path == NULL) {
            VTP_LOG_ERR("C_Initialize: pReserved is neither NULL nor a \"config=/path\" string");
            free(copy);
            return CKR_ARGUMENTS_BAD;
        }
        free(path);
        *reserved = copy;
    }
    return CKR_OK;
}

static void module_free(struct vtp_module *m)
{
    if (m == NULL)
        return;
    vtp_slots_destroy(m->slots);
    if (m->http != NULL)
        vtp_auth_stop(m->http);
    vtp_http_free(m->http);
    vtp_config_free(m->config);
    free(m);
}

static CK_RV module_initialize(CK_VOID_PTR init_args)
{
    char *reserved = NULL;
    char *path = NULL;
    struct vtp_module *m = NULL;
    bool no_threads = init_args != NULL && (((CK_C_INITIALIZE_ARGS_PTR)init_args)->flags &
                                            CKF_LIBRARY_CANT_CREATE_OS_THREADS);
    bool sessions = false;
    CK_RV rv;

    pthread_once(&atfork_once, register_atfork);
    vtp_log_init();
    rv = check_init_args(init_args, &reserved);
    if (rv != CKR_OK)
        return rv;
    pthread_mutex_lock(&init_lock);
    if (vtp_module_check() == CKR_OK) {
        rv = CKR_CRYPTOKI_ALREADY_INITIALIZED;
        goto out;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    m->pid = getpid();
    path = vtp_config_locate(reserved);
    rv = vtp_config_load(path, &m->config);
    if (rv != CKR_OK) {
        VTP_LOG_ERR("configuration %s could not be loaded", path ? path : "(none)");
        goto out;
    }
    vtp_log_set_error_sink(m->config->log_errors);
    vtp_batch_configure(&(struct vtp_batch_conf){
        m->config->batching, (size_t)m->config->batch_max_items,
        (size_t)m->config->batch_concurrency, m->config->batch_rsa, m->config->vault.timeout_ms});
    rv = vtp_http_new(&m->config->vault, &m->http);
    if (rv != CKR_OK)
        goto out;
    if (no_threads)
        vtp_http_set_no_threads(m->http, true);
    rv = vtp_auth_start(m->http, &m->config->vault);
    if (rv != CKR_OK)
        goto out;
    rv = vtp_sessions_init();
    if (rv != CKR_OK)
        goto out;
    sessions = true;
    rv = vtp_slots_create(m->config, m->http, no_threads, &m->slots);
    if (rv != CKR_OK)
        goto out;
    VTP_LOG_INFO("initialized: %lu slot(s), config %s", vtp_slots_count(m->slots),
                 path ? path : "(none)");
    __atomic_store_n(&module, m, __ATOMIC_SEQ_CST);
    m = NULL;
out:
    if (m != NULL && sessions)
        vtp_sessions_finalize();
    pthread_mutex_unlock(&init_lock);
    module_free(m);
    free(path);
    free(reserved);
    return rv;
}

static CK_RV fn_Initialize(CK_VOID_PTR init_args)
{
    return done("Initialize", module_initialize(init_args));
}

CK_RV vtp_module_http_stats(struct vtp_http_stats *out)
{
    CK_RV rv = enter();

    if (rv == CKR_OK) {
        struct vtp_module *m = __atomic_load_n(&module, __ATOMIC_ACQUIRE);
        vtp_http_get_stats(m->http, out);
        vtp_slots_add_http_stats(m->slots, out);
        leave();
    }
    return rv;
}

static void log_stats(const struct vtp_module *m)
{
    struct vtp_http_stats hs;
    struct vtp_batch_stats bs;

    if (vtp_log_level() < VTP_LOG_INFO)
        return;
    vtp_http_get_stats(m->http, &hs);
    vtp_slots_add_http_stats(m->slots, &hs);
    vtp_batch_get_stats(&bs);
    VTP_LOG_INFO("HTTP requests: %lu (%lu retries, %lu transport failures); signatures: %lu in "
                 "%lu sign requests, largest batch %lu (%lu refused as too large and halved); "
                 "%lu request slot(s) in flight",
                 hs.requests, hs.retries, hs.failures, bs.items, bs.requests, bs.max_batch,
                 bs.splits, bs.in_flight);
}

static CK_RV fn_Finalize(CK_VOID_PTR reserved)
{
    CK_RV rv = CKR_OK;

    if (reserved != NULL)
        return DONE(CKR_ARGUMENTS_BAD);
    pthread_mutex_lock(&init_lock);
    rv = vtp_module_check();
    if (rv == CKR_OK) {
        struct vtp_module *m = __atomic_load_n(&module, __ATOMIC_SEQ_CST);
        /* New calls fail from here on; the ones inside finish first (their sessions, slots
         * and the HTTP client must outlive them, and they may still read module). */
        __atomic_store_n(&finalizing, 1, __ATOMIC_SEQ_CST);
        wait_for_calls();
        __atomic_store_n(&module, NULL, __ATOMIC_SEQ_CST);
        __atomic_store_n(&finalizing, 0, __ATOMIC_SEQ_CST);
        log_stats(m);
        vtp_sessions_finalize();
        vtp_batch_clear();
        vtp_md_clear();
        module_free(m);
    }
    pthread_mutex_unlock(&init_lock);
    return DONE(rv);
}

static CK_RV fn_GetInfo(CK_INFO_PTR info)
{
    CHECK_INIT();
    if (info == NULL)
        return DONE(CKR_ARGUMENTS_BAD);
    memset(info, 0, sizeof(*info));
    info->cryptokiVersion.major = 2;
    info->cryptokiVersion.minor = 40;
    vtp_pad_copy(info->manufacturerID, sizeof(info->manufacturerID), "vault-transit-pkcs11");
    /* 32 bytes, space-padded: p11-kit list-modules shows it whole */
    vtp_pad_copy(info->libraryDescription, sizeof(info->libraryDescription),
                 "Vault/OpenBao Transit PKCS#11");
    info->libraryVersion.major = 0;
    info->libraryVersion.minor = 1;
    return DONE(CKR_OK);
}

static CK_RV fn_GetSlotList(CK_BBOOL token_present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
    CK_ULONG n;

    CHECK_INIT();
    if (count == NULL)
        return DONE(CKR_ARGUMENTS_BAD);
    n = vtp_slots_count(__atomic_load_n(&module, __ATOMIC_ACQUIRE)->slots);
    if (list == NULL) {
        *count = n;
        return DONE(CKR_OK);
    }
    if (*count < n) {
        *count = n;
        return DONE(CKR_BUFFER_TOO_SMALL);
    }
    for (CK_ULONG i = 0; i < n; i++)
        list[i] = i;
    *count = n;
    return DONE(CKR_OK);
}

static CK_RV fn_GetSlotInfo(CK_SLOT_ID id, CK_SLOT_INFO_PTR info)
{
    struct vtp_slot *s;

    CHECK_INIT();
    if (info == NULL)
        return DONE(CKR_ARGUMENTS_BAD);
    s = slot_get(id);
    if (s == NULL)
        return DONE(CKR_SLOT_ID_INVALID);
    vtp_slot_info(s, info);
    return DONE(CKR_OK);
}

static CK_RV fn_GetTokenInfo(CK_SLOT_ID id, CK_TOKEN_INFO_PTR info)
{
    struct vtp_slot *s;

    CHECK_INIT();
    if (info == NULL)
        return DONE(CKR_ARGUMENTS_BAD);
    s = slot_get(id);
    if (s == NULL)
        return DONE(CKR_SLOT_ID_INVALID);
    vtp_slot_token_info(s, info);
    return DONE(CKR_OK);
}

static CK_RV fn_GetMechanismList(CK_SLOT_ID id, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count)
{
    CK_ULONG n = (CK_ULONG)vtp_mech_count();

    CHECK_INIT();
    if (count == NULL)
        return DONE(CKR_ARGUMENTS_BAD);
    if (slot_get(id) == NULL)
        return DONE(CKR_SLOT_ID_INVALID);
    if (list == NULL) {
        *count = n;
        return DONE(CKR_OK);
    }
    if (*count < n) {
        *count = n;
        return DONE(CKR_BUFFER_TOO_SMALL);
    }
    for (CK_ULONG i = 0; i < n; i++)
        list[i] = vtp_mech_at(i)->type;
    *count = n;
    return DONE(CKR_OK);
}

static CK_RV fn_GetMechanismInfo(CK_SLOT_ID id, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
    const struct vtp_mech *m;

    CHECK_INIT();
    if (info == NULL)
        return DONE(CKR_ARGUMENTS_BAD);
    if (slot_get(id) == NULL)
        return DONE(CKR_SLOT_ID_INVALID);
    m = vtp_mech_lookup(type);
    if (m == NULL)
        return DONE(CKR_MECHANISM_INVALID);
    vtp_mech_info(m, info);
    return DONE(CKR_OK);
}

UNSUPPORTED(InitToken, (CK_SLOT_ID id, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len,
                         CK_UTF8CHAR_PTR label))

UNSUPPORTED_IN_SESSION(InitPIN, (CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len))

UNSUPPORTED_IN_SESSION(SetPIN, (CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR old_pin, CK_ULONG old_len,
                      CK_UTF8CHAR_PTR new_pin, CK_ULONG new_len))

static CK_RV fn_OpenSession(CK_SLOT_ID id, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
                           CK_SESSION_HANDLE_PTR out)
{
    struct vtp_slot *s;

    CHECK_INIT();
    if (out == NULL)
        return DONE(CKR_ARGUMENTS_BAD);
    s = slot_get(id);
    if (s == NULL)
        return DONE(CKR_SLOT_ID_INVALID);
    if (!(flags & CKF_SERIAL_SESSION))
        return DONE(CKR_SESSION_PARALLEL_NOT_SUPPORTED);
    return DONE(vtp_session_open(s, flags, out));
}

static CK_RV fn_CloseSession(CK_SESSION_HANDLE h)
{
    CHECK_INIT();
    return DONE(vtp_session_close(h));
}

static CK_RV fn_CloseAllSessions(CK_SLOT_ID id)
{
    struct vtp_slot *s;

    CHECK_INIT();
    s = slot_get(id);
    if (s == NULL)
        return DONE(CKR_SLOT_ID_INVALID);
    vtp_session_close_all(s);
    return DONE(CKR_OK);
}

static CK_RV fn_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info)
{
    struct vtp_session *s;
    CK_RV rv;

    CHECK_INIT();
    if (info == NULL)
        return DONE(CKR_ARGUMENTS_BAD);
    rv = vtp_session_acquire(h, &s);
    if (rv != CKR_OK)
        return DONE(rv);
    info->slotID = vtp_slot_id(vtp_session_slot(s));
    info->flags = vtp_session_flags(s);
    info->state = vtp_session_state(s);
    info->ulDeviceError = 0;
    vtp_session_release(s);
    return DONE(CKR_OK);
}

UNSUPPORTED_IN_SESSION(GetOperationState, (CK_SESSION_HANDLE h, CK_BYTE_PTR state, CK_ULONG_PTR len))

UNSUPPORTED_IN_SESSION(SetOperationState, (CK_SESSION_HANDLE h, CK_BYTE_PTR state, CK_ULONG len,
                                 CK_OBJECT_HANDLE enc_key, CK_OBJECT_HANDLE auth_key))

static CK_RV fn_Login(CK_SESSION_HANDLE h, CK_USER_TYPE user, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
    struct vtp_session *s;
    struct vtp_slot *slot;
    CK_RV rv;

    CHECK_INIT();
    rv = vtp_session_acquire(h, &s);
    if (rv != CKR_OK)
        return DONE(rv);
    slot = vtp_session_slot(s);
    if (user == CKU_SO) {
        /* There is no security officer: Vault's operators hold that role. */
        rv = vtp_slot_is_logged_in(slot) ? CKR_USER_ANOTHER_ALREADY_LOGGED_IN
             : vtp_session_any_ro(slot)  ? CKR_SESSION_READ_ONLY_EXISTS
                                         : CKR_PIN_INCORRECT;
        goto out;
    }
    if (user != CKU_USER && user != CKU_CONTEXT_SPECIFIC) {
        rv = CKR_USER_TYPE_INVALID;
        goto out;
    }
    if (user == CKU_CONTEXT_SPECIFIC) {
        rv = CKR_OPERATION_NOT_INITIALIZED; /* no key needs CKA_ALWAYS_AUTHENTICATE */
        goto out;
    }
    if (pin == NULL && len != 0) {
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    rv = vtp_slot_login(slot, pin, len);
out:
    vtp_session_release(s);
    return DONE(rv);
}

static CK_RV fn_Logout(CK_SESSION_HANDLE h)
{
    struct vtp_session *s;
    CK_RV rv;

    CHECK_INIT();
    rv = vtp_session_acquire(h, &s);
    if (rv != CKR_OK)
        return DONE(rv);
    rv = vtp_slot_logout(vtp_session_slot(s));
    vtp_session_release(s);
    return DONE(rv);
}

static CK_RV fn_CreateObject(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR tmpl, CK_ULONG count,
                            CK_OBJECT_HANDLE_PTR obj)
{
    WITH_SESSION(h, vtp_object_create(s, tmpl, count, obj));
}

/* The object behind a handle, checking visibility (private objects need login). */
static CK_RV session_object(struct vtp_session *s, CK_OBJECT_HANDLE obj, struct vtp_obj *o)
{
    CK_RV rv = vtp_cache_lookup_obj(vtp_slot_cache(vtp_session_slot(s)), obj, o);

    if (rv != CKR_OK)
        return rv;
    if (o->cls == CKO_PRIVATE_KEY && o->key->private_is_private &&
        !vtp_slot_is_logged_in(vtp_session_slot(s))) {
        vtp_obj_release(o);
        return CKR_OBJECT_HANDLE_INVALID;
    }
    return CKR_OK;
}

static CK_RV fn_CopyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR tmpl,
                          CK_ULONG count, CK_OBJECT_HANDLE_PTR out)
{
    struct vtp_session *s;
    struct vtp_obj o;
    CK_RV rv;

    CHECK_INIT();
    rv = vtp_session_acquire(h, &s);
    if (rv != CKR_OK)
        return DONE(rv);
    rv = session_object(s, obj, &o);
    if (rv == CKR_OK) {
        vtp_obj_release(&o);
        rv = CKR_ACTION_PROHIBITED; /* CKA_COPYABLE is false */
    }
    vtp_session_release(s);
    return DONE(rv);
}

static CK_RV fn_DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj)
{
    struct vtp_session *s;
    CK_RV rv;

    CHECK_INIT();
    rv = vtp_session_acquire(h, &s);
    if (rv != CKR_OK)
        return DONE(rv);
    rv = vtp_keygen_destroy(s, obj);
    vtp_session_release(s);
    return DONE(rv);
}

static CK_RV fn_GetObjectSize(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ULONG_PTR size)
{
    struct vtp_session *s;
    struct vtp_obj o;
    CK_RV rv;

    CHECK_INIT();
    if (size == NULL)
        return DONE(CKR_ARGUMENTS_BAD);
    rv = vtp_session_acquire(h, &s);
    if (rv != CKR_OK)
        return DONE(rv);
    rv = session_object(s, obj, &o);
    if (rv == CKR_OK) {
        *size = CK_UNAVAILABLE_INFORMATION;
        vtp_obj_release(&o);
    }
    vtp_session_release(s);
    return DONE(rv);
}

static CK_RV fn_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR tmpl,
                                  CK_ULONG count)
{
    struct vtp_session *s;
    struct vtp_obj o;
    CK_RV rv;

    CHECK_INIT();
    if (tmpl == NULL && count != 0)
        return DONE(CKR_ARGUMENTS_BAD);
    rv = vtp_session_acquire(h, &s);
    if (rv != CKR_OK)
        return DONE(rv);
    rv = session_object(s, obj, &o);
    if (rv == CKR_OK) {
        rv = vtp_obj_attr_get(&o, tmpl, count);
        vtp_obj_release(&o);
    }
    vtp_session_release(s);
    return DONE(rv);
}

static CK_RV fn_SetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR tmpl,
                                 CK_ULONG count)
{
    WITH_SESSION(h, vtp_object_set(s, obj, tmpl, count));
}

static CK_RV fn_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR tmpl, CK_ULONG count)
{
    CHECK_INIT();
    if (tmpl == NULL && count != 0)
        return DONE(CKR_ARGUMENTS_BAD);
    for (CK_ULONG i = 0; i < count; i++)
        if (tmpl[i].pValue == NULL && tmpl[i].ulValueLen != 0)
            return DONE(CKR_ARGUMENTS_BAD);
    IN_SESSION(h, vtp_find_init(s, tmpl, count));
}

static CK_RV fn_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out, CK_ULONG max,
                           CK_ULONG_PTR count)
{
    CHECK_INIT();
    if ((out == NULL && max != 0) || count == NULL)
        return DONE(CKR_ARGUMENTS_BAD);
    IN_SESSION(h, vtp_find_next(s, out, max, count));
}

static CK_RV fn_FindObjectsFinal(CK_SESSION_HANDLE h)
{
    WITH_SESSION(h, vtp_find_final(s));
}

static CK_RV fn_EncryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
    WITH_SESSION(h, vtp_encrypt_init(s, m, key));
}

static CK_RV fn_Encrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                       CK_ULONG_PTR out_len)
{
    WITH_SESSION(h, vtp_encrypt(s, in, in_len, out, out_len));
}

UNSUPPORTED_IN_SESSION(EncryptUpdate, (CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len,
                             CK_BYTE_PTR out, CK_ULONG_PTR out_len))

UNSUPPORTED_IN_SESSION(EncryptFinal, (CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len))

static CK_RV fn_DecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
    WITH_SESSION(h, vtp_decrypt_init(s, m, key));
}

static CK_RV fn_Decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                       CK_ULONG_PTR out_len)
{
    WITH_SESSION(h, vtp_decrypt(s, in, in_len, out, out_len));
}

UNSUPPORTED_IN_SESSION(DecryptUpdate, (CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len,
                             CK_BYTE_PTR out, CK_ULONG_PTR out_len))

UNSUPPORTED_IN_SESSION(DecryptFinal, (CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len))

static CK_RV fn_DigestInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m)
{
    WITH_SESSION(h, vtp_digest_init(s, m));
}

static CK_RV fn_Digest(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                      CK_ULONG_PTR out_len)
{
    WITH_SESSION(h, vtp_digest(s, in, in_len, out, out_len));
}

static CK_RV fn_DigestUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len)
{
    WITH_SESSION(h, vtp_digest_update(s, in, in_len));
}

UNSUPPORTED_IN_SESSION(DigestKey, (CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key))

static CK_RV fn_DigestFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
    WITH_SESSION(h, vtp_digest_final(s, out, out_len));
}

static CK_RV fn_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
    WITH_SESSION(h, vtp_sign_init(s, m, key));
}

static CK_RV fn_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                    CK_ULONG_PTR sig_len)
{
    WITH_SESSION(h, vtp_sign(s, data, len, sig, sig_len));
}

static CK_RV fn_SignUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len)
{
    WITH_SESSION(h, vtp_sign_update(s, part, len));
}

static CK_RV fn_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
    WITH_SESSION(h, vtp_sign_final(s, sig, sig_len));
}

UNSUPPORTED_IN_SESSION(SignRecoverInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key))

UNSUPPORTED_IN_SESSION(SignRecover, (CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                           CK_ULONG_PTR sig_len))

static CK_RV fn_VerifyInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
    WITH_SESSION(h, vtp_verify_init(s, m, key));
}

static CK_RV fn_Verify(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                      CK_ULONG sig_len)
{
    WITH_SESSION(h, vtp_verify(s, data, len, sig, sig_len));
}

static CK_RV fn_VerifyUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR part, CK_ULONG len)
{
    WITH_SESSION(h, vtp_verify_update(s, part, len));
}

static CK_RV fn_VerifyFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG sig_len)
{
    WITH_SESSION(h, vtp_verify_final(s, sig, sig_len));
}

UNSUPPORTED_IN_SESSION(VerifyRecoverInit, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key))

UNSUPPORTED_IN_SESSION(VerifyRecover, (CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG sig_len,
                             CK_BYTE_PTR data, CK_ULONG_PTR data_len))

UNSUPPORTED_IN_SESSION(DigestEncryptUpdate, (CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len,
                                   CK_BYTE_PTR out, CK_ULONG_PTR out_len))

UNSUPPORTED_IN_SESSION(DecryptDigestUpdate, (CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len,
                                   CK_BYTE_PTR out, CK_ULONG_PTR out_len))

UNSUPPORTED_IN_SESSION(SignEncryptUpdate, (CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len,
                                 CK_BYTE_PTR out, CK_ULONG_PTR out_len))

UNSUPPORTED_IN_SESSION(DecryptVerifyUpdate, (CK_SESSION_HANDLE h, CK_BYTE_PTR in, CK_ULONG in_len,
                                   CK_BYTE_PTR out, CK_ULONG_PTR out_len))

UNSUPPORTED_IN_SESSION(GenerateKey, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR tmpl,
                           CK_ULONG count, CK_OBJECT_HANDLE_PTR key))

static CK_RV fn_GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pub_tmpl,
                               CK_ULONG pub_count, CK_ATTRIBUTE_PTR priv_tmpl,
                               CK_ULONG priv_count, CK_OBJECT_HANDLE_PTR pub,
                               CK_OBJECT_HANDLE_PTR priv)
{
    WITH_SESSION(h, vtp_keygen_pair(s, m, pub_tmpl, pub_count, priv_tmpl, priv_count, pub, priv));
}

UNSUPPORTED_IN_SESSION(WrapKey, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE wrapping,
                       CK_OBJECT_HANDLE key, CK_BYTE_PTR out, CK_ULONG_PTR out_len))

UNSUPPORTED_IN_SESSION(UnwrapKey, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE unwrapping,
                         CK_BYTE_PTR wrapped, CK_ULONG wrapped_len, CK_ATTRIBUTE_PTR tmpl,
                         CK_ULONG count, CK_OBJECT_HANDLE_PTR key))

UNSUPPORTED_IN_SESSION(DeriveKey, (CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE base,
                         CK_ATTRIBUTE_PTR tmpl, CK_ULONG count, CK_OBJECT_HANDLE_PTR key))

static CK_RV fn_SeedRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR seed, CK_ULONG len)
{
    WITH_SESSION(h, ((void)s, CKR_RANDOM_SEED_NOT_SUPPORTED));
}

static CK_RV fn_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG len)
{
    WITH_SESSION(h, vtp_random(s, out, len));
}

static CK_RV fn_GetFunctionStatus(CK_SESSION_HANDLE h)
{
    CHECK_INIT();
    return DONE(CKR_FUNCTION_NOT_PARALLEL);
}

static CK_RV fn_CancelFunction(CK_SESSION_HANDLE h)
{
    CHECK_INIT();
    return DONE(CKR_FUNCTION_NOT_PARALLEL);
}

UNSUPPORTED(WaitForSlotEvent, (CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR reserved))

VTP_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);

static CK_FUNCTION_LIST function_list = {
    .version = {CRYPTOKI_VERSION_MAJOR, CRYPTOKI_VERSION_MINOR},
    .C_Initialize = fn_Initialize,
    .C_Finalize = fn_Finalize,
    .C_GetInfo = fn_GetInfo,
    .C_GetFunctionList = C_GetFunctionList,
    .C_GetSlotList = fn_GetSlotList,
    .C_GetSlotInfo = fn_GetSlotInfo,
    .C_GetTokenInfo = fn_GetTokenInfo,
    .C_GetMechanismList = fn_GetMechanismList,
    .C_GetMechanismInfo = fn_GetMechanismInfo,
    .C_InitToken = fn_InitToken,
    .C_InitPIN = fn_InitPIN,
    .C_SetPIN = fn_SetPIN,
    .C_OpenSession = fn_OpenSession,
    .C_CloseSession = fn_CloseSession,
    .C_CloseAllSessions = fn_CloseAllSessions,
    .C_GetSessionInfo = fn_GetSessionInfo,
    .C_GetOperationState = fn_GetOperationState,
    .C_SetOperationState = fn_SetOperationState,
    .C_Login = fn_Login,
    .C_Logout = fn_Logout,
    .C_CreateObject = fn_CreateObject,
    .C_CopyObject = fn_CopyObject,
    .C_DestroyObject = fn_DestroyObject,
    .C_GetObjectSize = fn_GetObjectSize,
    .C_GetAttributeValue = fn_GetAttributeValue,
    .C_SetAttributeValue = fn_SetAttributeValue,
    .C_FindObjectsInit = fn_FindObjectsInit,
    .C_FindObjects = fn_FindObjects,
    .C_FindObjectsFinal = fn_FindObjectsFinal,
    .C_EncryptInit = fn_EncryptInit,
    .C_Encrypt = fn_Encrypt,
    .C_EncryptUpdate = fn_EncryptUpdate,
    .C_EncryptFinal = fn_EncryptFinal,
    .C_DecryptInit = fn_DecryptInit,
    .C_Decrypt = fn_Decrypt,
    .C_DecryptUpdate = fn_DecryptUpdate,
    .C_DecryptFinal = fn_DecryptFinal,
    .C_DigestInit = fn_DigestInit,
    .C_Digest = fn_Digest,
    .C_DigestUpdate = fn_DigestUpdate,
    .C_DigestKey = fn_DigestKey,
    .C_DigestFinal = fn_DigestFinal,
    .C_SignInit = fn_SignInit,
    .C_Sign = fn_Sign,
    .C_SignUpdate = fn_SignUpdate,
    .C_SignFinal = fn_SignFinal,
    .C_SignRecoverInit = fn_SignRecoverInit,
    .C_SignRecover = fn_SignRecover,
    .C_VerifyInit = fn_VerifyInit,
    .C_Verify = fn_Verify,
    .C_VerifyUpdate = fn_VerifyUpdate,
    .C_VerifyFinal = fn_VerifyFinal,
    .C_VerifyRecoverInit = fn_VerifyRecoverInit,
    .C_VerifyRecover = fn_VerifyRecover,
    .C_DigestEncryptUpdate = fn_DigestEncryptUpdate,
    .C_DecryptDigestUpdate = fn_DecryptDigestUpdate,
    .C_SignEncryptUpdate = fn_SignEncryptUpdate,
    .C_DecryptVerifyUpdate = fn_DecryptVerifyUpdate,
    .C_GenerateKey = fn_GenerateKey,
    .C_GenerateKeyPair = fn_GenerateKeyPair,
    .C_WrapKey = fn_WrapKey,
    .C_UnwrapKey = fn_UnwrapKey,
    .C_DeriveKey = fn_DeriveKey,
    .C_SeedRandom = fn_SeedRandom,
    .C_GenerateRandom = fn_GenerateRandom,
    .C_GetFunctionStatus = fn_GetFunctionStatus,
    .C_CancelFunction = fn_CancelFunction,
    .C_WaitForSlotEvent = fn_WaitForSlotEvent,
};

static CK_INTERFACE interfaces[] = {
    {(CK_CHAR *)"PKCS 11", &function_list, 0},
};

VTP_EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    if (list == NULL)
        return CKR_ARGUMENTS_BAD;
    *list = &function_list;
    return CKR_OK;
}

VTP_EXPORT CK_RV C_GetInterfaceList(CK_INTERFACE_PTR list, CK_ULONG_PTR count);
VTP_EXPORT CK_RV C_GetInterfaceList(CK_INTERFACE_PTR list, CK_ULONG_PTR count)
{
    CK_ULONG n = VTP_ARRAY_SIZE(interfaces);

    if (count == NULL)
        return CKR_ARGUMENTS_BAD;
    if (list == NULL) {
        *count = n;
        return CKR_OK;
    }
    if (*count < n) {
        *count = n;
        return CKR_BUFFER_TOO_SMALL;
    }
    memcpy(list, interfaces, sizeof(interfaces));
    *count = n;
    return CKR_OK;
}

VTP_EXPORT CK_RV C_GetInterface(CK_UTF8CHAR_PTR name, CK_VERSION_PTR version,
                                CK_INTERFACE_PTR_PTR iface, CK_FLAGS flags);
VTP_EXPORT CK_RV C_GetInterface(CK_UTF8CHAR_PTR name, CK_VERSION_PTR version,
                                CK_INTERFACE_PTR_PTR iface, CK_FLAGS flags)
{
    if (iface == NULL)
        return CKR_ARGUMENTS_BAD;
    if (name != NULL && strcmp((const char *)name, "PKCS 11") != 0)
        return CKR_ARGUMENTS_BAD;
    if (version != NULL && (version->major != function_list.version.major ||
                            version->minor != function_list.version.minor))
        return CKR_ARGUMENTS_BAD;
    if ((flags & interfaces[0].flags) != flags)
        return CKR_ARGUMENTS_BAD;
    *iface = &interfaces[0];
    return CKR_OK;
}
