/* auth.c - obtaining and keeping a Vault client token.
 *
 * Methods: token (conf->token, already merged with VAULT_TOKEN by config.c), token_file (a Vault
 * Agent sink: re-read when it changes), pin (the C_Login PIN is the token, checked with
 * lookup-self), approle, kubernetes and cert (POST auth/<mount>/login).
 *
 * Keeping the token alive happens in two hooks that vtp_auth_start registers with http.c:
 *  - `before` runs before every request that sends a token and is cheap when nothing is due.
 *    approle/kubernetes/cert log in there the first time (so C_Initialize stays offline);
 *    token_file is stat'ed at most once a second and re-read when its device, inode, size or
 *    mtime changed; a token whose lease is unknown is looked up once (lookup-self: ttl,
 *    renewable; ttl 0 means it never expires); when less than a third of the lease is left the
 *    token is renewed (renew-self) if renewable, else approle/kubernetes/cert log in again and
 *    token_file is re-read. One thread does this at a time; the others go on with the current
 *    token. Failures back off (1 s doubling to 30 s).
 *  - `relogin` runs when Vault refused the token as invalid: approle/kubernetes/cert log in
 *    again, token_file is re-read (a new token only if the file holds a different one), one
 *    login at a time; a thread whose request carried an older token than the one now in place
 *    just retries. token and pin cannot get a new token: CKR_USER_NOT_LOGGED_IN.
 *
 * Locks: login_lock (held across a login request or a file re-read, so several threads seeing
 * 403 together log in once) is taken before lock (short, never across a request). Neither is a
 * table lock: other requests keep flowing while a login is under way.
 *
 * Every secret (token, secret_id, JWT, the JSON that carried them, lookup and renew answers) is
 * wiped after use with OPENSSL_cleanse / vtp_free_secret and is never logged.
 */
#include "common.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "util.h"
#include "vault/auth.h"
#include "vault/transit.h"

#define MAX_SECRET_FILE (64u * 1024u)
#define DEFAULT_K8S_JWT "/var/run/secrets/kubernetes.io/serviceaccount/token"

struct login_result {
    char *token; /* secret */
    long lease_s;
    bool renewable;
};

static void login_result_clear(struct login_result *r)
{
    vtp_free_secret(r->token);
    r->token = NULL;
    r->lease_s = 0;
    r->renewable = false;
}

static const char *method_name(enum vtp_auth_method m)
{
    switch (m) {
    case VTP_AUTH_TOKEN:
        return "token";
    case VTP_AUTH_TOKEN_FILE:
        return "token_file";
    case VTP_AUTH_PIN:
        return "pin";
    case VTP_AUTH_APPROLE:
        return "approle";
    case VTP_AUTH_KUBERNETES:
        return "kubernetes";
    case VTP_AUTH_CERT:
        return "cert";
    }
    return "?";
}

/* Wipes the bytes of a JSON string value in place (jansson frees without wiping). */
static void json_wipe_string(json_t *s)
{
    const char *v;

    if (!json_is_string(s))
        return;
    v = json_string_value(s);
    if (v != NULL)
        OPENSSL_cleanse((void *)v, json_string_length(s));
}

static void json_wipe_member(json_t *obj, const char *key)
{
    if (json_is_object(obj))
        json_wipe_string(json_object_get(obj, key));
}

/* Reads a small secret file and trims surrounding whitespace. *out is wiped/freed with
 * vtp_free_secret. st_out (may be NULL) receives the fstat of the file that was read. holds
 * names the secret for the log. A file group or others may write is refused as a config file
 * holding a secret is (vtp_config_check_secret_mode); *refused (may be NULL) says so. */
static CK_RV read_secret_file(const char *path, const char *holds, char **out, struct stat *st_out,
                              bool *refused)
{
    struct stat st;
    char *buf = NULL, *start, *res;
    size_t len = 0, cap = MAX_SECRET_FILE + 1;
    ssize_t n;
    int fd = -1;
    CK_RV rv = CKR_GENERAL_ERROR;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        VTP_LOG_ERR("cannot open %s: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        VTP_LOG_ERR("%s is not a regular file", path);
        goto out;
    }
    rv = vtp_config_check_secret_mode(path, st.st_mode, holds);
    if (rv != CKR_OK) {
        if (refused != NULL)
            *refused = true;
        goto out;
    }
    rv = CKR_GENERAL_ERROR;
    buf = malloc(cap);
    if (buf == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    for (;;) {
        n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            VTP_LOG_ERR("cannot read %s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len >= cap) {
            VTP_LOG_ERR("%s is larger than %u bytes", path, MAX_SECRET_FILE);
            goto out;
        }
    }
    buf[len] = '\0';
    start = buf;
    while (*start != '\0' && isspace((unsigned char)*start))
        start++;
    while (len > (size_t)(start - buf) && isspace((unsigned char)buf[len - 1]))
        buf[--len] = '\0';
    if (*start == '\0') {
        VTP_LOG_ERR("%s is empty", path);
        goto out;
    }
    res = strdup(start);
    if (res == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    *out = res;
    if (st_out != NULL)
        *st_out = st;
    rv = CKR_OK;
out:
    if (buf != NULL)
        OPENSSL_clear_free(buf, cap);
    if (fd >= 0)
        close(fd);
    return rv;
}

/* Reads the "auth" object of a login answer. */
static CK_RV parse_auth(json_t *body, struct login_result *out)
{
    json_t *auth, *tok;
    const char *s;
    char *copy;

    auth = json_is_object(body) ? json_object_get(body, "auth") : NULL;
    tok = json_is_object(auth) ? json_object_get(auth, "client_token") : NULL;
    s = json_string_value(tok);
    if (s == NULL || s[0] == '\0') {
        VTP_LOG_ERR("login answer carries no auth.client_token");
        return CKR_DEVICE_ERROR;
    }
    copy = strdup(s);
    json_wipe_string(tok);
    if (copy == NULL)
        return CKR_HOST_MEMORY;
    out->token = copy;
    out->lease_s = (long)json_integer_value(json_object_get(auth, "lease_duration"));
    out->renewable = json_is_true(json_object_get(auth, "renewable"));
    return CKR_OK;
}

/* POST auth/<mount>/login with body (may be NULL), without a token. Maps a refusal to
 * CKR_USER_NOT_LOGGED_IN (the token could not be had), no answer to CKR_DEVICE_ERROR. */
static CK_RV login(struct vtp_http *h, const struct vtp_vault_conf *conf, const char *def_mount,
                   const json_t *body, struct login_result *out)
{
    struct vtp_http_req req = {0};
    struct vtp_http_resp resp = {0};
    char *mount = NULL, *path = NULL;
    const char *m =
        conf->auth_mount != NULL && conf->auth_mount[0] != '\0' ? conf->auth_mount : def_mount;
    size_t len;
    CK_RV rv = CKR_HOST_MEMORY, vrv;

    /* the mount may be nested ("team/approle"); strip slashes at the ends */
    while (*m == '/')
        m++;
    mount = strdup(m);
    if (mount == NULL)
        goto out;
    len = strlen(mount);
    while (len > 0 && mount[len - 1] == '/')
        mount[--len] = '\0';
    path = malloc(strlen("auth//login") + len + 1);
    if (path == NULL)
        goto out;
    snprintf(path, strlen("auth//login") + len + 1, "auth/%s/login", mount);

    req.method = "POST";
    req.path = path;
    req.namespace_ = conf->namespace_;
    req.body = body;
    req.no_token = true;
    rv = vtp_http_request(h, &req, &resp);
    if (rv != CKR_OK) {
        VTP_LOG_ERR("%s login at %s: no answer (%s)", method_name(conf->auth), path,
                    vtp_rv_name(rv));
        goto out;
    }
    vrv = vtp_transit_classify(resp.status, resp.json);
    if (vrv != CKR_OK) {
        /* login error texts name no secret ("invalid role or secret ID", "permission denied") */
        VTP_LOG_ERR("%s login at %s refused: HTTP %ld \"%s\"", method_name(conf->auth), path,
                    resp.status, vtp_vault_error_text(resp.json));
        rv = vrv == VTP_ERR_UNAVAILABLE || vrv == VTP_ERR_MISCONFIGURED ? CKR_DEVICE_ERROR
                                                                        : CKR_USER_NOT_LOGGED_IN;
        goto out;
    }
    rv = parse_auth(resp.json, out);
    if (rv == CKR_OK)
        VTP_LOG_INFO("%s login at %s: token with lease %ld s%s", method_name(conf->auth), path,
                     out->lease_s, out->renewable ? ", renewable" : "");
out:
    vtp_http_resp_clear(&resp);
    free(mount);
    free(path);
    return rv;
}

static CK_RV login_approle(struct vtp_http *h, const struct vtp_vault_conf *conf,
                           struct login_result *out)
{
    char *secret_id = NULL;
    json_t *body = NULL;
    CK_RV rv = CKR_HOST_MEMORY;

    if (conf->role_id == NULL) {
        VTP_LOG_ERR("auth = approle needs role_id");
        return CKR_ARGUMENTS_BAD;
    }
    if (conf->secret_id_file != NULL) {
        rv = read_secret_file(conf->secret_id_file, "an AppRole secret_id", &secret_id, NULL, NULL);
        if (rv != CKR_OK)
            goto out;
    } else if (conf->secret_id != NULL) {
        secret_id = strdup(conf->secret_id);
        if (secret_id == NULL)
            goto out;
    }
    rv = CKR_HOST_MEMORY;
    body = json_object();
    if (body == NULL || json_object_set_new(body, "role_id", json_string(conf->role_id)) != 0)
        goto out;
    /* secret_id may be absent when the role has bind_secret_id=false */
    if (secret_id != NULL && json_object_set_new(body, "secret_id", json_string(secret_id)) != 0)
        goto out;
    rv = login(h, conf, "approle", body, out);
out:
    if (body != NULL) {
        json_wipe_member(body, "secret_id");
        json_decref(body);
    }
    vtp_free_secret(secret_id);
    return rv;
}

static CK_RV login_kubernetes(struct vtp_http *h, const struct vtp_vault_conf *conf,
                              struct login_result *out)
{
    const char *jwt_file = conf->jwt_file != NULL ? conf->jwt_file : DEFAULT_K8S_JWT;
    char *jwt = NULL;
    json_t *body = NULL;
    CK_RV rv;

    if (conf->role == NULL) {
        VTP_LOG_ERR("auth = kubernetes needs role");
        return CKR_ARGUMENTS_BAD;
    }
    rv = read_secret_file(jwt_file, "a Kubernetes service-account token", &jwt, NULL, NULL);
    if (rv != CKR_OK)
        goto out;
    rv = CKR_HOST_MEMORY;
    body = json_object();
    if (body == NULL || json_object_set_new(body, "role", json_string(conf->role)) != 0 ||
        json_object_set_new(body, "jwt", json_string(jwt)) != 0)
        goto out;
    rv = login(h, conf, "kubernetes", body, out);
out:
    if (body != NULL) {
        json_wipe_member(body, "jwt");
        json_decref(body);
    }
    vtp_free_secret(jwt);
    return rv;
}

/* The client certificate itself is presented by http.c (client_cert / client_key). */
static CK_RV login_cert(struct vtp_http *h, const struct vtp_vault_conf *conf,
                        struct login_result *out)
{
    json_t *body = NULL;
    CK_RV rv = CKR_HOST_MEMORY;

    if (conf->client_cert == NULL)
        VTP_LOG_WARN("auth = cert without client_cert: the login will most likely fail");
    if (conf->role != NULL) {
        body = json_object();
        if (body == NULL || json_object_set_new(body, "name", json_string(conf->role)) != 0)
            goto out;
    }
    rv = login(h, conf, "cert", body, out);
out:
    json_decref(body);
    return rv;
}

/* Logs in with the configured method (approle, kubernetes, cert). */
static CK_RV obtain(struct vtp_http *h, const struct vtp_vault_conf *conf, struct login_result *out)
{
    switch (conf->auth) {
    case VTP_AUTH_APPROLE:
        return login_approle(h, conf, out);
    case VTP_AUTH_KUBERNETES:
        return login_kubernetes(h, conf, out);
    case VTP_AUTH_CERT:
        return login_cert(h, conf, out);
    case VTP_AUTH_TOKEN:
    case VTP_AUTH_TOKEN_FILE:
    case VTP_AUTH_PIN:
        break;
    }
    return CKR_USER_NOT_LOGGED_IN;
}

/* ---------------------------------------------------------------------------------------- */
/* Keeping the token: per-connection state and the http.c hooks */

#define FILE_CHECK_MS 1000 /* token_file: stat at most this often */
#define RETRY_MIN_MS 1000  /* first back-off after a failed lookup/renew/login */
#define RETRY_MAX_MS 30000
#define RELOGIN_QUIET_MS 1000 /* a failed login is not repeated sooner by `relogin` */

struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

struct auth_state {
    struct auth_state *next; /* all states, under states_lock */
    struct vtp_http *h;
    const struct vtp_vault_conf *conf;

    pthread_mutex_t login_lock; /* one login or file re-read at a time; taken before lock */
    pthread_mutex_t lock;       /* everything below; never held across a request */
    unsigned long gen;          /* bumped whenever a token is put in place (or cleared) */
    bool have_token;
    bool busy;           /* a thread is doing maintenance in `before` */
    pthread_cond_t idle; /* signalled when busy goes false */
    bool lease_known;    /* from a login answer or lookup-self */
    int64_t expire_ms;   /* monotonic; 0 = never expires */
    int64_t lease_ms;    /* the last grant or renewal: "a third left" is a third of this */
    bool renewable;
    bool expiry_warned;
    int64_t next_try_ms; /* no lookup/renew/login before this, after a failure */
    int64_t backoff_ms;
    int64_t login_failed_ms; /* when the last login failed, 0 if it did not */
    CK_RV login_failed_rv;
    /* token_file */
    int64_t next_stat_ms;
    bool file_known;
    bool file_refused; /* token_file was refused for its mode (login_lock) */
    struct file_id file;
    unsigned char file_digest[32]; /* SHA-256 of the token read last */
};

static pthread_mutex_t states_lock = PTHREAD_MUTEX_INITIALIZER;
static struct auth_state *states;

/* The state and token generation the calling thread's current request started with (set by
 * `before`, read by `relogin` of the same request). */
static __thread struct auth_state *tls_state;
static __thread unsigned long tls_gen;

/* In a fork child (from the module's one atfork handler) the parent's states may be locked by
 * threads that do not exist here: forget them (the module is initialised afresh in the child). */
void vtp_auth_atfork_child(void)
{
    pthread_mutex_init(&states_lock, NULL);
    states = NULL;
    tls_state = NULL;
}

static bool method_logs_in(enum vtp_auth_method m)
{
    return m == VTP_AUTH_APPROLE || m == VTP_AUTH_KUBERNETES || m == VTP_AUTH_CERT;
}

static struct auth_state *state_get(struct vtp_http *h)
{
    struct auth_state *st;

    pthread_mutex_lock(&states_lock);
    for (st = states; st != NULL && st->h != h; st = st->next)
        ;
    pthread_mutex_unlock(&states_lock);
    return st;
}

static void retry_later_locked(struct auth_state *st, int64_t now)
{
    st->backoff_ms = st->backoff_ms == 0 ? RETRY_MIN_MS : st->backoff_ms * 2;
    if (st->backoff_ms > RETRY_MAX_MS)
        st->backoff_ms = RETRY_MAX_MS;
    st->next_try_ms = now + st->backoff_ms;
}

static void retry_reset_locked(struct auth_state *st)
{
    st->backoff_ms = 0;
    st->next_try_ms = 0;
}

static void lease_set_locked(struct auth_state *st, long lease_s, bool renewable, int64_t now)
{
    st->lease_known = true;
    st->expire_ms = lease_s > 0 ? now + (int64_t)lease_s * 1000 : 0;
    st->lease_ms = lease_s > 0 ? (int64_t)lease_s * 1000 : 0;
    st->renewable = renewable && lease_s > 0;
    st->expiry_warned = false;
}

/* Puts token in place (NULL clears it). lease: what a login answered, or NULL when unknown
 * (looked up lazily). now: when the request that produced it started. */
static CK_RV install_token(struct auth_state *st, const char *token,
                           const struct login_result *lease, int64_t now)
{
    CK_RV rv;

    pthread_mutex_lock(&st->lock);
    rv = vtp_http_set_token(st->h, token);
    if (rv == CKR_OK) {
        st->gen++;
        st->have_token = token != NULL && token[0] != '\0';
        st->lease_known = false;
        if (lease != NULL)
            lease_set_locked(st, lease->lease_s, lease->renewable, now);
        retry_reset_locked(st);
    }
    pthread_mutex_unlock(&st->lock);
    return rv;
}

static void file_id_of(const struct stat *sb, struct file_id *id)
{
    memset(id, 0, sizeof(*id));
    id->dev = sb->st_dev;
    id->ino = sb->st_ino;
    id->size = sb->st_size;
    id->mtime = sb->st_mtim;
}

static bool file_id_equal(const struct file_id *a, const struct file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* token_file: reads the file and puts its token in place when it differs from the one read
 * last (*changed). Caller holds login_lock. */
static CK_RV token_file_reread(struct auth_state *st, bool *changed)
{
    const char *path = st->conf->token_file;
    unsigned char digest[32];
    unsigned int dlen = 0;
    struct stat sb;
    struct file_id id;
    char *token = NULL;
    bool same;
    int64_t now = vtp_now_ms();
    CK_RV rv;

    *changed = false;
    if (path == NULL) {
        VTP_LOG_ERR("auth = token_file needs token_file");
        return CKR_ARGUMENTS_BAD;
    }
    st->file_refused = false;
    rv = read_secret_file(path, "a Vault token", &token, &sb, &st->file_refused);
    if (rv != CKR_OK)
        return rv;
    if (EVP_Digest(token, strlen(token), digest, &dlen, EVP_sha256(), NULL) != 1 ||
        dlen != sizeof(digest)) {
        rv = CKR_GENERAL_ERROR;
        goto out;
    }
    file_id_of(&sb, &id);
    pthread_mutex_lock(&st->lock);
    same = st->file_known && CRYPTO_memcmp(digest, st->file_digest, sizeof(digest)) == 0;
    st->file = id;
    st->file_known = true;
    memcpy(st->file_digest, digest, sizeof(digest));
    pthread_mutex_unlock(&st->lock);
    if (!same) {
        rv = install_token(st, token, NULL, now);
        if (rv == CKR_OK) {
            *changed = true;
            VTP_LOG_INFO("token_file %s: new token in place", path);
        }
    }
out:
    OPENSSL_cleanse(digest, sizeof(digest));
    vtp_free_secret(token);
    return rv;
}

/* Gets a new token: logs in (approle, kubernetes, cert) or re-reads the token file (which
 * counts only when it holds a different token). Caller holds login_lock. */
static CK_RV do_login(struct auth_state *st)
{
    struct login_result r = {0};
    int64_t now = vtp_now_ms();
    bool changed = false;
    CK_RV rv;

    if (st->conf->auth == VTP_AUTH_TOKEN_FILE) {
        rv = token_file_reread(st, &changed);
        if (rv == CKR_OK && !changed) {
            VTP_LOG_INFO("token_file %s still holds the same token", st->conf->token_file);
            rv = CKR_USER_NOT_LOGGED_IN;
        }
    } else {
        rv = obtain(st->h, st->conf, &r);
        if (rv == CKR_OK)
            rv = install_token(st, r.token, &r, now);
        login_result_clear(&r);
    }
    pthread_mutex_lock(&st->lock);
    if (rv == CKR_OK) {
        st->login_failed_ms = 0;
    } else {
        st->login_failed_ms = now != 0 ? now : 1;
        st->login_failed_rv = rv;
        retry_later_locked(st, now);
    }
    pthread_mutex_unlock(&st->lock);
    if (rv == CKR_OK)
        VTP_LOG_INFO("auth = %s: new token in place", method_name(st->conf->auth));
    else
        VTP_LOG_WARN("auth = %s: no new token (%s)", method_name(st->conf->auth), vtp_rv_name(rv));
    return rv;
}

/* Records a lookup-self "data" object for the token of generation gen. Caller holds lock. */
static void lookup_record_locked(struct auth_state *st, const json_t *data, int64_t now)
{
    long ttl = (long)json_integer_value(json_object_get(data, "ttl"));
    long creation = (long)json_integer_value(json_object_get(data, "creation_ttl"));
    bool renewable = json_is_true(json_object_get(data, "renewable"));

    lease_set_locked(st, ttl, renewable, now);
    /* "a third left" is a third of the whole grant, not of what remains */
    if (ttl > 0 && creation > ttl)
        st->lease_ms = (int64_t)creation * 1000;
    retry_reset_locked(st);
    if (ttl > 0)
        VTP_LOG_INFO("token: %ld s left of %ld s%s", ttl, creation > ttl ? creation : ttl,
                     st->renewable ? ", renewable" : ", not renewable");
    else
        VTP_LOG_INFO("token: never expires");
}

/* lookup-self for the token of generation gen (inside `before`: no hooks run). */
static void do_lookup(struct auth_state *st, unsigned long gen)
{
    struct vtp_http_req req = {0};
    struct vtp_http_resp resp = {0};
    int64_t now = vtp_now_ms();
    json_t *data = NULL;
    CK_RV rv, vrv = CKR_DEVICE_ERROR;

    req.method = "GET";
    req.path = "auth/token/lookup-self";
    req.namespace_ = st->conf->namespace_;
    rv = vtp_http_request(st->h, &req, &resp);
    if (rv == CKR_OK) {
        data = json_is_object(resp.json) ? json_object_get(resp.json, "data") : NULL;
        json_wipe_member(data, "id"); /* the token itself */
        vrv = vtp_transit_classify(resp.status, resp.json);
    }
    pthread_mutex_lock(&st->lock);
    if (st->gen != gen) {
        /* another token was put in place meanwhile: this answer is about the old one */
    } else if (rv == CKR_OK && vrv == CKR_OK && json_is_object(data)) {
        lookup_record_locked(st, data, now);
    } else if (rv == CKR_OK && vrv == VTP_ERR_DENIED) {
        VTP_LOG_WARN("the token's policy denies auth/token/lookup-self: its expiry is unknown, "
                     "it will not be renewed");
        lease_set_locked(st, 0, false, now);
    } else {
        if (rv == CKR_OK)
            VTP_LOG_WARN("auth/token/lookup-self -> HTTP %ld \"%s\"", resp.status,
                         vtp_vault_error_text(resp.json));
        else
            VTP_LOG_WARN("auth/token/lookup-self: no answer (%s)", vtp_rv_name(rv));
        retry_later_locked(st, now);
    }
    pthread_mutex_unlock(&st->lock);
    vtp_http_resp_clear(&resp);
}

/* renew-self for the token of generation gen (inside `before`). */
static void do_renew(struct auth_state *st, unsigned long gen)
{
    struct vtp_http_req req = {0};
    struct vtp_http_resp resp = {0};
    int64_t now = vtp_now_ms(), old_expire, full;
    json_t *auth = NULL;
    long lease;
    bool renewable;
    CK_RV rv, vrv = CKR_DEVICE_ERROR;

    req.method = "POST";
    req.path = "auth/token/renew-self";
    req.namespace_ = st->conf->namespace_;
    rv = vtp_http_request(st->h, &req, &resp);
    if (rv == CKR_OK) {
        auth = json_is_object(resp.json) ? json_object_get(resp.json, "auth") : NULL;
        json_wipe_member(auth, "client_token");
        vrv = vtp_transit_classify(resp.status, resp.json);
    }
    pthread_mutex_lock(&st->lock);
    if (st->gen != gen) {
        /* a new token is in place already */
    } else if (rv == CKR_OK && vrv == CKR_OK && json_is_object(auth)) {
        lease = (long)json_integer_value(json_object_get(auth, "lease_duration"));
        renewable = json_is_true(json_object_get(auth, "renewable"));
        old_expire = st->expire_ms;
        full = st->lease_ms;
        if (lease > 0 && now + (int64_t)lease * 1000 > old_expire + 500 &&
            (int64_t)lease * 1000 >= full) {
            lease_set_locked(st, lease, renewable, now);
            retry_reset_locked(st);
            VTP_LOG_INFO("token renewed: lease %ld s%s", lease,
                         renewable ? "" : " (no longer renewable)");
        } else {
            /* Shorter than the last grant: the token's max TTL capped it, and a further renewal
             * would gain nothing. Keep the full lease as the measure, so that approle,
             * kubernetes and cert log in again when a third of it is left. */
            st->expire_ms = lease > 0 ? now + (int64_t)lease * 1000 : now;
            st->renewable = false;
            retry_reset_locked(st);
            VTP_LOG_INFO("token renewal capped by its max TTL: %ld s left%s", lease,
                         method_logs_in(st->conf->auth) ? ", will log in again" : "");
        }
    } else if (rv == CKR_OK) {
        VTP_LOG_WARN("auth/token/renew-self -> HTTP %ld \"%s\"", resp.status,
                     vtp_vault_error_text(resp.json));
        st->renewable = false;
        if (vrv == VTP_ERR_TOKEN_INVALID)
            st->expire_ms = now; /* gone: the next request logs in again where it can */
    } else {
        VTP_LOG_WARN("auth/token/renew-self: no answer (%s)", vtp_rv_name(rv));
        retry_later_locked(st, now);
    }
    pthread_mutex_unlock(&st->lock);
    vtp_http_resp_clear(&resp);
}

enum due { DUE_NOTHING, DUE_LOGIN, DUE_LOOKUP, DUE_RENEW };

static enum due due_locked(struct auth_state *st, int64_t now)
{
    enum vtp_auth_method m = st->conf->auth;
    bool can_refresh = method_logs_in(m) || m == VTP_AUTH_TOKEN_FILE;
    int64_t left;

    if (now < st->next_try_ms)
        return DUE_NOTHING;
    if (!st->have_token)
        return method_logs_in(m) ? DUE_LOGIN : DUE_NOTHING;
    if (!st->lease_known)
        return DUE_LOOKUP;
    if (st->expire_ms == 0)
        return DUE_NOTHING;
    left = st->expire_ms - now;
    if (left >= st->lease_ms / 3)
        return DUE_NOTHING;
    if (st->renewable && left > 0)
        return DUE_RENEW;
    if (can_refresh)
        return DUE_LOGIN;
    if (!st->expiry_warned) {
        st->expiry_warned = true;
        VTP_LOG_WARN("auth = %s: the token expires in %lld s and cannot be renewed", method_name(m),
                     (long long)(left > 0 ? left / 1000 : 0));
    }
    return DUE_NOTHING;
}

/* token_file: stat it; re-read when it changed. Caller claimed busy. */
static void token_file_check(struct auth_state *st)
{
    struct stat sb;
    struct file_id id;
    bool changed, same;

    if (st->conf->token_file == NULL || stat(st->conf->token_file, &sb) != 0)
        return; /* a missing file keeps the current token; relogin reports it */
    file_id_of(&sb, &id);
    pthread_mutex_lock(&st->lock);
    same = st->file_known && file_id_equal(&id, &st->file);
    pthread_mutex_unlock(&st->lock);
    if (same)
        return;
    pthread_mutex_lock(&st->login_lock);
    if (token_file_reread(st, &changed) != CKR_OK)
        VTP_LOG_WARN("token_file %s changed but could not be read", st->conf->token_file);
    pthread_mutex_unlock(&st->login_lock);
}

static void hook_before(void *arg)
{
    struct auth_state *st = arg;
    int64_t now = vtp_now_ms();
    bool check_file = false;
    unsigned long gen;
    enum due what;

    pthread_mutex_lock(&st->lock);
    tls_state = st;
    /* No token at all and another thread is logging in: wait for it rather than send none. */
    while (st->busy && !st->have_token && method_logs_in(st->conf->auth))
        pthread_cond_wait(&st->idle, &st->lock);
    if (st->busy) {
        tls_gen = st->gen;
        pthread_mutex_unlock(&st->lock);
        return; /* another thread is at it: go on with the current token */
    }
    if (st->conf->auth == VTP_AUTH_TOKEN_FILE && now >= st->next_stat_ms) {
        check_file = true;
        st->next_stat_ms = now + FILE_CHECK_MS;
    }
    what = due_locked(st, now);
    if (!check_file && what == DUE_NOTHING) {
        tls_gen = st->gen;
        pthread_mutex_unlock(&st->lock);
        return;
    }
    st->busy = true;
    pthread_mutex_unlock(&st->lock);

    if (check_file) {
        token_file_check(st);
        pthread_mutex_lock(&st->lock);
        what = due_locked(st, vtp_now_ms());
        pthread_mutex_unlock(&st->lock);
    }
    pthread_mutex_lock(&st->lock);
    gen = st->gen;
    pthread_mutex_unlock(&st->lock);
    switch (what) {
    case DUE_LOGIN:
        pthread_mutex_lock(&st->login_lock);
        pthread_mutex_lock(&st->lock);
        if (st->gen == gen) {
            pthread_mutex_unlock(&st->lock);
            (void)do_login(st);
        } else {
            pthread_mutex_unlock(&st->lock); /* a relogin put a token in place meanwhile */
        }
        pthread_mutex_unlock(&st->login_lock);
        break;
    case DUE_LOOKUP:
        do_lookup(st, gen);
        break;
    case DUE_RENEW:
        do_renew(st, gen);
        break;
    case DUE_NOTHING:
        break;
    }
    pthread_mutex_lock(&st->lock);
    st->busy = false;
    tls_gen = st->gen;
    pthread_cond_broadcast(&st->idle);
    pthread_mutex_unlock(&st->lock);
}

static CK_RV hook_relogin(void *arg)
{
    struct auth_state *st = arg;
    enum vtp_auth_method m = st->conf->auth;
    int64_t now;
    CK_RV rv;

    if (!method_logs_in(m) && m != VTP_AUTH_TOKEN_FILE) {
        VTP_LOG_INFO("auth = %s: the token was refused and no other can be had here",
                     method_name(m));
        return CKR_USER_NOT_LOGGED_IN;
    }
    pthread_mutex_lock(&st->login_lock);
    now = vtp_now_ms();
    pthread_mutex_lock(&st->lock);
    if (tls_state == st && tls_gen != st->gen && st->have_token) {
        rv = CKR_OK; /* this request carried an older token: retry with the current one */
    } else if (st->login_failed_ms != 0 && now - st->login_failed_ms < RELOGIN_QUIET_MS) {
        rv = st->login_failed_rv; /* a login just failed: do not hammer the server */
    } else {
        rv = CKR_GENERAL_ERROR; /* log in below */
    }
    pthread_mutex_unlock(&st->lock);
    if (rv == CKR_GENERAL_ERROR)
        rv = do_login(st);
    pthread_mutex_unlock(&st->login_lock);
    return rv;
}

static void state_free(struct auth_state *st)
{
    if (st == NULL)
        return;
    pthread_cond_destroy(&st->idle);
    pthread_mutex_destroy(&st->lock);
    pthread_mutex_destroy(&st->login_lock);
    OPENSSL_cleanse(st->file_digest, sizeof(st->file_digest));
    free(st);
}

/* ---------------------------------------------------------------------------------------- */

/* C_Initialize: a secret file the first login will read, already there but writable by group or
 * others, fails now rather than at the first request. One not there yet is read when needed. */
static CK_RV secret_file_mode_at_start(const char *path, const char *holds)
{
    struct stat sb;

    if (path == NULL || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return CKR_OK;
    return vtp_config_check_secret_mode(path, sb.st_mode, holds);
}

CK_RV vtp_auth_start(struct vtp_http *h, const struct vtp_vault_conf *conf)
{
    struct vtp_http_auth_hooks hooks;
    struct auth_state *st, **pp;
    bool changed;
    CK_RV rv = CKR_OK;

    VTP_RETURN_VAL_IF_FAIL(h != NULL && conf != NULL, CKR_ARGUMENTS_BAD);

    st = calloc(1, sizeof(*st));
    if (st == NULL)
        return CKR_HOST_MEMORY;
    st->h = h;
    st->conf = conf;
    if (pthread_mutex_init(&st->lock, NULL) != 0) {
        free(st);
        return CKR_GENERAL_ERROR;
    }
    if (pthread_mutex_init(&st->login_lock, NULL) != 0) {
        pthread_mutex_destroy(&st->lock);
        free(st);
        return CKR_GENERAL_ERROR;
    }
    if (pthread_cond_init(&st->idle, NULL) != 0) {
        pthread_mutex_destroy(&st->login_lock);
        pthread_mutex_destroy(&st->lock);
        free(st);
        return CKR_GENERAL_ERROR;
    }

    switch (conf->auth) {
    case VTP_AUTH_TOKEN:
        if (conf->token == NULL || conf->token[0] == '\0')
            VTP_LOG_INFO("auth = token but no token (token = / VAULT_TOKEN) is set");
        else
            rv = install_token(st, conf->token, NULL, vtp_now_ms());
        break;
    case VTP_AUTH_PIN:
        break; /* C_Login brings the token */
    case VTP_AUTH_TOKEN_FILE:
        /* a local read: C_Initialize stays offline. A file not there yet (a Vault Agent has
         * yet to write it) is read later; one group or others may write fails here. */
        rv = token_file_reread(st, &changed);
        if (rv != CKR_OK && rv != CKR_HOST_MEMORY && !st->file_refused) {
            VTP_LOG_WARN("auth = token_file: no token yet (%s)", vtp_rv_name(rv));
            rv = CKR_OK;
        }
        st->next_stat_ms = vtp_now_ms() + FILE_CHECK_MS;
        break;
    case VTP_AUTH_APPROLE:
        if (conf->role_id == NULL)
            VTP_LOG_ERR("auth = approle needs role_id");
        rv = secret_file_mode_at_start(conf->secret_id_file, "an AppRole secret_id");
        break; /* the first request logs in */
    case VTP_AUTH_KUBERNETES:
        if (conf->role == NULL)
            VTP_LOG_ERR("auth = kubernetes needs role");
        rv = secret_file_mode_at_start(conf->jwt_file != NULL ? conf->jwt_file : DEFAULT_K8S_JWT,
                                       "a Kubernetes service-account token");
        break;
    case VTP_AUTH_CERT:
        break;
    }
    if (rv != CKR_OK) {
        state_free(st);
        return rv;
    }

    pthread_mutex_lock(&states_lock);
    /* an entry for this address belongs to a vtp_http freed without vtp_auth_stop */
    for (pp = &states; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->h == h) {
            struct auth_state *old = *pp;
            *pp = old->next;
            state_free(old);
            break;
        }
    }
    st->next = states;
    states = st;
    pthread_mutex_unlock(&states_lock);

    hooks.before = hook_before;
    hooks.relogin = hook_relogin;
    hooks.arg = st;
    vtp_http_set_auth_hooks(h, &hooks);
    VTP_LOG_DEBUG("auth = %s%s", method_name(conf->auth),
                  method_logs_in(conf->auth) ? ": logging in with the first request" : "");
    return CKR_OK;
}

void vtp_auth_stop(struct vtp_http *h)
{
    struct auth_state *st = NULL, **pp;

    if (h == NULL)
        return;
    pthread_mutex_lock(&states_lock);
    for (pp = &states; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->h == h) {
            st = *pp;
            *pp = st->next;
            break;
        }
    }
    pthread_mutex_unlock(&states_lock);
    state_free(st);
}

CK_RV vtp_auth_login_pin(struct vtp_http *h, const struct vtp_vault_conf *conf,
                         const unsigned char *pin, size_t pin_len)
{
    struct vtp_http_req req = {0};
    struct vtp_http_resp resp = {0};
    struct auth_state *st;
    json_t *data = NULL;
    char *token = NULL;
    size_t len = pin_len;
    unsigned long gen = 0;
    int64_t now;
    CK_RV rv, vrv;

    VTP_RETURN_VAL_IF_FAIL(h != NULL && conf != NULL, CKR_ARGUMENTS_BAD);
    VTP_RETURN_VAL_IF_FAIL(pin != NULL || pin_len == 0, CKR_ARGUMENTS_BAD);

    while (len > 0 && isspace(pin[len - 1]))
        len--;
    if (len == 0 || memchr(pin, '\0', len) != NULL)
        return CKR_PIN_INCORRECT;
    token = malloc(len + 1);
    if (token == NULL)
        return CKR_HOST_MEMORY;
    memcpy(token, pin, len);
    token[len] = '\0';

    st = state_get(h);
    now = vtp_now_ms();
    if (st != NULL) {
        /* lease "known, never expires" until the lookup below says more, so that `before`
         * does not look it up a second time */
        struct login_result provisional = {0};

        rv = install_token(st, token, &provisional, now);
        pthread_mutex_lock(&st->lock);
        gen = st->gen;
        pthread_mutex_unlock(&st->lock);
    } else {
        rv = vtp_http_set_token(h, token);
    }
    if (rv != CKR_OK)
        goto out;

    req.method = "GET";
    req.path = "auth/token/lookup-self";
    req.namespace_ = conf->namespace_;
    rv = vtp_http_request(h, &req, &resp);
    if (rv != CKR_OK)
        goto fail;
    /* the lookup-self answer holds the token in data.id */
    data = json_is_object(resp.json) ? json_object_get(resp.json, "data") : NULL;
    json_wipe_member(data, "id");
    vrv = vtp_transit_classify(resp.status, resp.json);
    switch (vrv) {
    case CKR_OK:
        rv = CKR_OK;
        if (st != NULL && json_is_object(data)) {
            pthread_mutex_lock(&st->lock);
            if (st->gen == gen)
                lookup_record_locked(st, data, now);
            pthread_mutex_unlock(&st->lock);
        }
        break;
    case VTP_ERR_DENIED:
        /* Vault checked the token and then its policy refused lookup-self: the token is
         * real, its policy is narrow. Accept it. */
        VTP_LOG_WARN("token accepted but its policy denies auth/token/lookup-self");
        rv = CKR_OK;
        break;
    case VTP_ERR_TOKEN_INVALID: /* invalid token (403), or none (Vault 400) */
        VTP_LOG_INFO("Vault refused the PIN as a token: HTTP %ld", resp.status);
        rv = CKR_PIN_INCORRECT;
        break;
    default:
        VTP_LOG_ERR("auth/token/lookup-self -> HTTP %ld \"%s\"", resp.status,
                    vtp_vault_error_text(resp.json));
        rv = vrv;
        break;
    }
    if (rv == CKR_OK)
        goto out;
fail:
    if (st != NULL)
        install_token(st, NULL, NULL, now);
    else
        vtp_http_set_token(h, NULL);
out:
    vtp_http_resp_clear(&resp);
    vtp_free_secret(token);
    return rv;
}

void vtp_auth_logout(struct vtp_http *h)
{
    struct auth_state *st;

    if (h == NULL)
        return;
    st = state_get(h);
    if (st == NULL || st->conf->auth != VTP_AUTH_PIN)
        return;
    if (install_token(st, NULL, NULL, vtp_now_ms()) == CKR_OK)
        VTP_LOG_INFO("auth = pin: token dropped");
}

CK_RV vtp_auth_relogin(struct vtp_http *h, const struct vtp_vault_conf *conf)
{
    struct auth_state *st;

    VTP_RETURN_VAL_IF_FAIL(h != NULL && conf != NULL, CKR_ARGUMENTS_BAD);

    st = state_get(h);
    if (st == NULL) {
        VTP_LOG_DEBUG("vtp_auth_start was not called for this connection");
        return CKR_USER_NOT_LOGGED_IN;
    }
    tls_state = NULL; /* an explicit call: always try */
    return hook_relogin(st);
}
