/* auth.c - obtaining and keeping a Vault client token.
 *
 * Methods: token (conf->token, already merged with VAULT_TOKEN by config.c), token_file (read
 * and trimmed; re-read on relogin so an agent can rotate it), pin (the C_Login PIN is the
 * token, checked with lookup-self), approle, kubernetes and cert (POST auth/<mount>/login).
 *
 * Every secret (token, secret_id, JWT, the JSON that carried them) is wiped after use with
 * OPENSSL_cleanse / vtp_free_secret and is never logged. Token renewal will hang off
 * struct login_result (lease and renewability are already parsed).
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

#include "util.h"
#include "vault/auth.h"

#define MAX_SECRET_FILE (64u * 1024u)
#define DEFAULT_K8S_JWT "/var/run/secrets/kubernetes.io/serviceaccount/token"

/* One relogin at a time: several threads seeing 403 together should not all log in. */
static pthread_mutex_t relogin_lock = PTHREAD_MUTEX_INITIALIZER;

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
 * vtp_free_secret. */
static CK_RV read_secret_file(const char *path, char **out)
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
    if (st.st_mode & S_IROTH)
        VTP_LOG_WARN("secret file %s is readable by others", path);
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
    const char *m = conf->auth_mount != NULL && conf->auth_mount[0] != '\0' ? conf->auth_mount
                                                                              : def_mount;
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
    vrv = vtp_vault_rv(resp.status, resp.json);
    if (vrv != CKR_OK) {
        /* login error texts name no secret ("invalid role or secret ID", "permission denied") */
        VTP_LOG_ERR("%s login at %s refused: HTTP %ld \"%s\"", method_name(conf->auth), path,
                    resp.status, vtp_vault_error_text(resp.json));
        rv = vrv == CKR_DEVICE_ERROR || vrv == CKR_HOST_MEMORY ? vrv : CKR_USER_NOT_LOGGED_IN;
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
        rv = read_secret_file(conf->secret_id_file, &secret_id);
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
    if (secret_id != NULL &&
        json_object_set_new(body, "secret_id", json_string(secret_id)) != 0)
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
    rv = read_secret_file(jwt_file, &jwt);
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

/* Gets a fresh token for the configured method (not for token/pin). */
static CK_RV obtain(struct vtp_http *h, const struct vtp_vault_conf *conf,
                    struct login_result *out)
{
    switch (conf->auth) {
    case VTP_AUTH_TOKEN_FILE:
        if (conf->token_file == NULL) {
            VTP_LOG_ERR("auth = token_file needs token_file");
            return CKR_ARGUMENTS_BAD;
        }
        return read_secret_file(conf->token_file, &out->token);
    case VTP_AUTH_APPROLE:
        return login_approle(h, conf, out);
    case VTP_AUTH_KUBERNETES:
        return login_kubernetes(h, conf, out);
    case VTP_AUTH_CERT:
        return login_cert(h, conf, out);
    case VTP_AUTH_TOKEN:
    case VTP_AUTH_PIN:
        break;
    }
    return CKR_USER_NOT_LOGGED_IN;
}

CK_RV vtp_auth_start(struct vtp_http *h, const struct vtp_vault_conf *conf)
{
    struct login_result r = {0};
    CK_RV rv = CKR_OK;

    VTP_RETURN_VAL_IF_FAIL(h != NULL && conf != NULL, CKR_ARGUMENTS_BAD);

    switch (conf->auth) {
    case VTP_AUTH_TOKEN:
        if (conf->token == NULL || conf->token[0] == '\0') {
            VTP_LOG_INFO("auth = token but no token (token = / VAULT_TOKEN) is set");
            goto out;
        }
        rv = vtp_http_set_token(h, conf->token);
        goto out;
    case VTP_AUTH_PIN:
        goto out; /* C_Login brings the token */
    case VTP_AUTH_TOKEN_FILE:
    case VTP_AUTH_APPROLE:
    case VTP_AUTH_KUBERNETES:
    case VTP_AUTH_CERT:
        break;
    }
    rv = obtain(h, conf, &r);
    if (rv == CKR_HOST_MEMORY)
        goto out;
    if (rv != CKR_OK) {
        /* stay usable offline: the first request reports it, relogin tries again */
        VTP_LOG_WARN("auth = %s: no token yet (%s)", method_name(conf->auth), vtp_rv_name(rv));
        rv = CKR_OK;
        goto out;
    }
    rv = vtp_http_set_token(h, r.token);
out:
    login_result_clear(&r);
    return rv;
}

CK_RV vtp_auth_login_pin(struct vtp_http *h, const struct vtp_vault_conf *conf,
                         const unsigned char *pin, size_t pin_len)
{
    struct vtp_http_req req = {0};
    struct vtp_http_resp resp = {0};
    char *token = NULL;
    size_t len = pin_len;
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
    rv = vtp_http_set_token(h, token);
    if (rv != CKR_OK)
        goto out;

    req.method = "GET";
    req.path = "auth/token/lookup-self";
    req.namespace_ = conf->namespace_;
    rv = vtp_http_request(h, &req, &resp);
    if (rv != CKR_OK)
        goto fail;
    /* the lookup-self answer holds the token in data.id */
    if (json_is_object(resp.json))
        json_wipe_member(json_object_get(resp.json, "data"), "id");
    vrv = vtp_vault_rv(resp.status, resp.json);
    switch (vrv) {
    case CKR_OK:
        rv = CKR_OK;
        break;
    case CKR_ACTION_PROHIBITED:
        /* Vault checked the token and then its policy refused lookup-self: the token is
         * real, its policy is narrow. Accept it. */
        VTP_LOG_WARN("token accepted but its policy denies auth/token/lookup-self");
        rv = CKR_OK;
        break;
    case CKR_USER_NOT_LOGGED_IN: /* invalid token (403), or none (Vault 400) */
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
    vtp_http_set_token(h, NULL);
out:
    vtp_http_resp_clear(&resp);
    vtp_free_secret(token);
    return rv;
}

CK_RV vtp_auth_relogin(struct vtp_http *h, const struct vtp_vault_conf *conf)
{
    struct login_result r = {0};
    CK_RV rv;

    VTP_RETURN_VAL_IF_FAIL(h != NULL && conf != NULL, CKR_ARGUMENTS_BAD);

    if (conf->auth == VTP_AUTH_TOKEN || conf->auth == VTP_AUTH_PIN) {
        VTP_LOG_INFO("auth = %s: the token was refused and cannot be renewed here",
                     method_name(conf->auth));
        return CKR_USER_NOT_LOGGED_IN;
    }
    pthread_mutex_lock(&relogin_lock);
    rv = obtain(h, conf, &r);
    if (rv == CKR_OK)
        rv = vtp_http_set_token(h, r.token);
    pthread_mutex_unlock(&relogin_lock);
    if (rv == CKR_OK)
        VTP_LOG_INFO("auth = %s: new token in place", method_name(conf->auth));
    else
        VTP_LOG_WARN("auth = %s: relogin failed (%s)", method_name(conf->auth), vtp_rv_name(rv));
    login_result_clear(&r);
    return rv;
}
