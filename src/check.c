/* check.c - vault-transit-pkcs11-check: reads the configuration as the module does and says,
 * step by step, what will and will not work, and why.
 *
 * It links the module's convenience library, so every step is the module's own code: the
 * config file is found (vtp_config_locate_source) and read (vtp_config_load) as C_Initialize
 * does, the HTTP client, the authentication and the slots are made as there, the keys are
 * loaded by the slot's cache as C_FindObjects would see them. What the module would log (its
 * warnings and errors) is caught (vtp_log_set_capture) and shown under the step that caused it.
 *
 * The report is one JSON document; the text output is rendered from it (--json prints it as it
 * is), so both always say the same. Steps:
 *   config   which file (and how it was chosen), which environment variables
 *   servers  each address alone: reachable, sealed, standby, Vault or OpenBao, version
 *   auth     method, token type, TTL, renewability and policies (auth/token/lookup-self)
 *   slots    per slot: the capabilities the token has on every path the module uses
 *            (sys/capabilities-self), the operations they allow with the policy stanza that
 *            would allow what is missing, the KV mount, the keys with their PKCS#11 URIs, and
 *            one signature with the first key
 * Exit status: 0 when every slot can sign, 1 when one cannot (or no server or token works),
 * 2 when the configuration cannot be loaded or the command line is wrong.
 *
 * Never printed: the token, secret_id, JWT or PIN (lookup-self's "id" is wiped on arrival).
 */
#include "common.h"

#include <getopt.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "cache.h"
#include "cfg.h"
#include "kvstore.h"
#include "slot.h"
#include "util.h"
#include "vault/auth.h"
#include "vault/http.h"
#include "vault/transit.h"

#define EXIT_CANNOT_SIGN 1
#define EXIT_CONFIG 2
#define PROBE_KEY "vtp-check" /* a key name under the prefix, for paths of keys not yet made */
#define MAX_PIN 4096

static const char *str_member(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* --- what the module logs, caught under the current step ---------------------------------- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *log_target; /* an array: the current step's "log" */

static void on_log(int level, const char *msg, void *arg)
{
    (void)arg;
    const json_t *v;
    size_t i;
    bool seen = false;

    pthread_mutex_lock(&log_lock);
    json_array_foreach(log_target, i, v) seen = seen || strcmp(str_member(v, "message"), msg) == 0;
    if (log_target != NULL && !seen)
        json_array_append_new(log_target, json_pack("{s:s,s:s}", "level",
                                                    level <= VTP_LOG_ERROR ? "error" : "warning",
                                                    "message", msg));
    pthread_mutex_unlock(&log_lock);
}

/* Makes step["log"] the array the module's lines go to. */
static void log_into(json_t *step)
{
    json_t *a = json_array();

    json_object_set_new(step, "log", a);
    pthread_mutex_lock(&log_lock);
    log_target = a;
    pthread_mutex_unlock(&log_lock);
}

static void log_stop(void)
{
    pthread_mutex_lock(&log_lock);
    log_target = NULL;
    pthread_mutex_unlock(&log_lock);
}

/* --- small helpers ------------------------------------------------------------------------ */

static void add_problem(json_t *step, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* step["problems"] gets one more sentence: something that stops the module. */
static void add_problem(json_t *step, const char *fmt, ...)
{
    json_t *a = json_object_get(step, "problems");
    char buf[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (a == NULL) {
        a = json_array();
        json_object_set_new(step, "problems", a);
    }
    json_array_append_new(a, json_string(buf));
}

/* What a Vault answer kind means, in words (errkind.h's table). */
static const char *kind_text(CK_RV rv)
{
#define KIND_TEXT_(name, text)                                                                     \
    if (rv == VTP_ERR(name))                                                                       \
        return text;
    VTP_ERR_KINDS(KIND_TEXT_)
#undef KIND_TEXT_
    return vtp_rv_name(rv);
}

/* pkcs11:token=<label>;id=<id>;type=<type> (RFC 7512): the label percent-encoded as a path
 * segment is, every byte of the ID as %XX (as p11-kit writes it). */
static json_t *pkcs11_uri(const char *token, const unsigned char *id, size_t id_len,
                          const char *type)
{
    char uri[1024], *label = vtp_http_escape(token);
    size_t o;
    json_t *out = NULL;

    if (label == NULL)
        return json_null();
    o = (size_t)snprintf(uri, sizeof(uri), "pkcs11:token=%s;id=", label);
    for (size_t i = 0; i < id_len && o + 4 < sizeof(uri); i++)
        o += (size_t)snprintf(uri + o, sizeof(uri) - o, "%%%02X", id[i]);
    if (o + strlen(";type=") + strlen(type) < sizeof(uri)) {
        snprintf(uri + o, sizeof(uri) - o, ";type=%s", type);
        out = json_string(uri);
    }
    free(label);
    return out != NULL ? out : json_null();
}

/* --- step 1: configuration ---------------------------------------------------------------- */

static const char *const source_names[] = {
    [VTP_CONFIG_FROM_RESERVED] = "--config (as C_Initialize's pReserved \"config=PATH\")",
    [VTP_CONFIG_FROM_ENV] = "$" VTP_CONFIG_ENV,
    [VTP_CONFIG_FROM_DEFAULT] = "the compiled-in default",
};

static json_t *check_config(const char *option, struct vtp_config **cfg_out)
{
    json_t *step = json_object(), *env = json_array();
    enum vtp_config_source source;
    char *reserved = option != NULL ? vtp_join3("config=", option, "") : NULL;
    char *path = vtp_config_locate_source(reserved, &source);
    CK_RV rv;

    log_into(step);
    json_object_set_new(step, "path", json_string(path ? path : ""));
    json_object_set_new(step, "chosen_by", json_string(source_names[source]));
    json_object_set_new(step, "default_path", json_string(VTP_DEFAULT_CONFIG_PATH));
    for (const struct vtp_config_env *e = vtp_config_env_vars; e->name != NULL; e++) {
        const char *v = getenv(e->name);
        if (v == NULL || *v == '\0')
            continue;
        json_array_append_new(env, e->secret ? json_pack("{s:s,s:b}", "name", e->name, "set", 1)
                                             : json_pack("{s:s,s:s}", "name", e->name, "value", v));
    }
    json_object_set_new(step, "environment", env);
    rv = path != NULL ? vtp_config_load(path, cfg_out) : CKR_HOST_MEMORY;
    json_object_set_new(step, "read", json_boolean(rv == CKR_OK && (*cfg_out)->path != NULL));
    if (rv != CKR_OK)
        add_problem(step, "the configuration cannot be loaded (%s): C_Initialize fails with %s",
                    path ? path : "?", vtp_rv_name(rv));
    log_stop();
    free(reserved);
    free(path);
    return step;
}

/* --- step 2: servers ---------------------------------------------------------------------- */

/* Vault CE/Enterprise says "enterprise" in sys/health and "build_date" in sys/seal-status;
 * OpenBao has neither ("commit_date" instead). */
static const char *server_kind(const json_t *health, const json_t *seal)
{
    const json_t *ent = json_object_get(health, "enterprise");

    if (json_is_true(ent))
        return "Vault Enterprise";
    if (ent != NULL || json_object_get(seal, "build_date") != NULL)
        return "Vault";
    if (json_object_get(seal, "commit_date") != NULL || json_object_get(health, "version"))
        return "OpenBao";
    return "unknown";
}

static const char *health_state(long status, const json_t *health)
{
    switch (status) {
    case 200:
        return "active";
    case 429:
        return "standby (forwards requests to the active node)";
    case 472:
        return "disaster-recovery secondary (cannot serve)";
    case 473:
        return "performance standby";
    case 501:
        return "not initialized";
    case 503:
        return json_is_true(json_object_get(health, "sealed")) ? "sealed" : "unavailable (503)";
    default:
        return "unexpected answer to sys/health";
    }
}

static json_t *check_server(struct vtp_http *h, size_t i, const char *address, bool *usable)
{
    struct vtp_http_resp health = {0}, seal = {0};
    json_t *s = json_pack("{s:s}", "address", address);
    const char *err = NULL, *kind, *date;
    CK_RV rv;

    rv = vtp_http_probe(h, i, "sys/health", &health, &err);
    if (rv != CKR_OK) {
        json_object_set_new(s, "reachable", json_false());
        json_object_set_new(s, "error", json_string(err ? err : vtp_rv_name(rv)));
        add_problem(s, "%s cannot be reached: %s", address, err ? err : vtp_rv_name(rv));
        goto out;
    }
    json_object_set_new(s, "reachable", json_true());
    json_object_set_new(s, "http_status", json_integer(health.status));
    (void)vtp_http_probe(h, i, "sys/seal-status", &seal, &err);
    kind = server_kind(health.json, seal.json);
    json_object_set_new(s, "kind", json_string(kind));
    if (str_member(health.json, "version") || str_member(seal.json, "version"))
        json_object_set_new(s, "version",
                            json_string(str_member(seal.json, "version")
                                            ? str_member(seal.json, "version")
                                            : str_member(health.json, "version")));
    date = str_member(seal.json, "build_date") ? str_member(seal.json, "build_date")
                                               : str_member(seal.json, "commit_date");
    if (date != NULL)
        json_object_set_new(s, "build_date", json_string(date));
    json_object_set_new(s, "initialized",
                        json_boolean(!json_is_false(json_object_get(health.json, "initialized"))));
    json_object_set_new(s, "sealed",
                        json_boolean(json_is_true(json_object_get(health.json, "sealed")) ||
                                     json_is_true(json_object_get(seal.json, "sealed"))));
    json_object_set_new(s, "standby",
                        json_boolean(json_is_true(json_object_get(health.json, "standby"))));
    json_object_set_new(s, "state", json_string(health_state(health.status, health.json)));
    if (health.status == 200 || health.status == 429 || health.status == 473)
        *usable = true;
    else
        add_problem(s, "%s is %s: the module does not use it", address,
                    health_state(health.status, health.json));
out:
    vtp_http_resp_clear(&health);
    vtp_http_resp_clear(&seal);
    return s;
}

static json_t *check_servers(const struct vtp_config *cfg, struct vtp_http *h, bool *any)
{
    json_t *list = json_array();

    for (size_t i = 0; i < vtp_http_n_addresses(h); i++) {
        bool usable = false;
        json_array_append_new(list, check_server(h, i, cfg->vault.addresses[i], &usable));
        *any = *any || usable;
    }
    return list;
}

/* --- step 3: authentication --------------------------------------------------------------- */

static const char *method_name(enum vtp_auth_method m)
{
    static const char *const names[] = {
        [VTP_AUTH_TOKEN] = "token",
        [VTP_AUTH_TOKEN_FILE] = "token_file",
        [VTP_AUTH_PIN] = "pin",
        [VTP_AUTH_APPROLE] = "approle",
        [VTP_AUTH_KUBERNETES] = "kubernetes",
        [VTP_AUTH_CERT] = "cert",
    };
    return (size_t)m < VTP_ARRAY_SIZE(names) ? names[m] : "?";
}

/* Where the method's secret comes from (the place, never the secret). */
static json_t *auth_source(const struct vtp_vault_conf *v)
{
    const char *tok = getenv("VAULT_TOKEN");

    switch (v->auth) {
    case VTP_AUTH_TOKEN:
        if (tok != NULL && *tok != '\0')
            return json_string("$VAULT_TOKEN");
        return json_string(v->token != NULL ? "token = in the config file" : "none set");
    case VTP_AUTH_TOKEN_FILE:
        return json_pack("{s:s}", "token_file", v->token_file);
    case VTP_AUTH_PIN:
        return json_string("the PIN given to C_Login (--pin-stdin)");
    case VTP_AUTH_APPROLE:
        return json_pack("{s:s,s:s}", "auth_mount", v->auth_mount, "secret_id",
                         v->secret_id_file ? v->secret_id_file : "secret_id = in the config file");
    case VTP_AUTH_KUBERNETES:
        return json_pack("{s:s,s:s?,s:s?}", "auth_mount", v->auth_mount, "role", v->role,
                         "jwt_file", v->jwt_file);
    case VTP_AUTH_CERT:
        return json_pack("{s:s,s:s?}", "auth_mount", v->auth_mount, "client_cert", v->client_cert);
    }
    return json_null();
}

/* The lookup-self fields worth showing: never "id" (the token) nor the accessor. */
static json_t *token_facts(json_t *data)
{
    static const char *const keep[] = {
        "display_name", "type",      "policies",    "identity_policies", "ttl",
        "creation_ttl", "renewable", "expire_time", "explicit_max_ttl",  "period",
        "num_uses",     "orphan",    "path",        "namespace_path"};
    json_t *facts = json_object();

    for (size_t i = 0; i < VTP_ARRAY_SIZE(keep); i++) {
        json_t *v = json_object_get(data, keep[i]);
        if (v != NULL)
            json_object_set(facts, keep[i], v);
    }
    return facts;
}

static json_t *check_auth(const struct vtp_config *cfg, struct vtp_http *h, bool *ok)
{
    struct vtp_http_req req = {0};
    struct vtp_http_resp resp = {0};
    json_t *step = json_pack("{s:s,s:o}", "method", method_name(cfg->vault.auth), "source",
                             auth_source(&cfg->vault));
    json_t *data;
    const json_t *ttl;
    CK_RV rv, vrv;

    log_into(step);
    req.method = "GET";
    req.path = "auth/token/lookup-self";
    req.namespace_ = cfg->vault.namespace_;
    rv = vtp_http_request(h, &req, &resp);
    data = json_object_get(resp.json, "data");
    if (json_is_string(json_object_get(data, "id"))) {
        json_t *id = json_object_get(data, "id");
        OPENSSL_cleanse((char *)json_string_value(id), json_string_length(id));
        json_object_del(data, "id");
    }
    vrv = rv == CKR_OK ? vtp_transit_classify(resp.status, resp.json) : VTP_ERR_UNAVAILABLE;
    *ok = vrv == CKR_OK || vrv == VTP_ERR_DENIED;
    json_object_set_new(step, "ok", json_boolean(*ok));
    if (vrv == CKR_OK) {
        json_object_set_new(step, "token", token_facts(data));
        ttl = json_object_get(data, "ttl");
        if (json_integer_value(ttl) > 0 && !json_is_true(json_object_get(data, "renewable")) &&
            (cfg->vault.auth == VTP_AUTH_TOKEN || cfg->vault.auth == VTP_AUTH_PIN))
            add_problem(step,
                        "the token expires in %lld s and cannot be renewed: the module stops "
                        "working then (use a periodic or renewable token, or approle)",
                        (long long)json_integer_value(ttl));
    } else if (vrv == VTP_ERR_DENIED) {
        json_object_set_new(step, "note",
                            json_string("the token works but its policy denies "
                                        "auth/token/lookup-self, so its TTL is unknown to the "
                                        "module; add: path \"auth/token/lookup-self\" { "
                                        "capabilities = [\"read\"] }"));
    } else {
        add_problem(step, "Vault did not accept the %s authentication: %s",
                    method_name(cfg->vault.auth), kind_text(vrv));
        if (resp.status)
            json_object_set_new(step, "http_status", json_integer(resp.status));
        if (vtp_vault_error_text(resp.json)[0] != '\0')
            json_object_set_new(step, "vault_error", json_string(vtp_vault_error_text(resp.json)));
    }
    log_stop();
    vtp_http_resp_clear(&resp);
    return step;
}

/* --- step 4: slots ------------------------------------------------------------------------ */

/* One thing an operation needs: a capability (any of caps) on a path the module uses, probed
 * at path, granted by a policy stanza on pattern. */
struct need {
    const char *op;
    char *path;
    char *alt; /* a LIST is checked as "<path>/" too: Vault matches either */
    const char *caps[2];
    char *pattern;
};

struct needs {
    struct need v[64];
    size_t n;
    bool oom;
};

static void need(struct needs *ns, const char *op, char *path, const char *cap, char *pattern)
{
    char *alt = path != NULL && strcmp(cap, "list") == 0 ? vtp_join3(path, "/", "") : NULL;

    if (path == NULL || pattern == NULL || ns->n >= VTP_ARRAY_SIZE(ns->v) ||
        (alt == NULL && strcmp(cap, "list") == 0)) {
        ns->oom = true;
        free(path);
        free(alt);
        free(pattern);
        return;
    }
    ns->v[ns->n++] = (struct need){op, path, alt, {cap, NULL}, pattern};
}

/* Do the capabilities grant what nd needs? */
static bool granted(const struct need *nd, const json_t *caps)
{
    return vtp_caps_have(json_object_get(caps, nd->path), nd->caps) ||
           (nd->alt != NULL && vtp_caps_have(json_object_get(caps, nd->alt), nd->caps));
}

static void needs_free(struct needs *ns)
{
    for (size_t i = 0; i < ns->n; i++) {
        free(ns->v[i].path);
        free(ns->v[i].alt);
        free(ns->v[i].pattern);
    }
}

/* "<mount>/<what>/<prefix>*": a policy path that covers every key of the slot (a Vault glob
 * ends a path, so it covers a key's sub-paths such as keys/<key>/config too). Key prefixes
 * are of characters that need no escaping. */
static char *key_glob(const struct vtp_transit *t, const char *what, const char *prefix)
{
    char *dir = vtp_transit_path(t, what, NULL, NULL), *p = NULL, *star;

    star = vtp_join3("/", prefix, "*");
    if (dir != NULL && star != NULL)
        p = vtp_join3(dir, star, "");
    free(dir);
    free(star);
    return p;
}

static const char *const ops_all[] = {"list",     "sign",    "decrypt",
                                      "generate", "destroy", "certificates"};

/* What each operation needs of Transit: a capability on <mount>/<what>[/<key>[/<suffix>]],
 * granted by a stanza on that path (keyed: "<mount>/<what>/<prefix>*"). op NULL: every
 * operation (each starts from the key list, as C_FindObjects does). */
static const struct transit_rule {
    const char *op, *what, *suffix, *cap;
    bool keyed;
} transit_rules[] = {
    {NULL, "keys", NULL, "list", false},
    {NULL, "keys", NULL, "read", true},
    {"sign", "sign", NULL, "update", true},
    {"decrypt", "decrypt", NULL, "update", true},
    /* POST <mount>/keys/<name> is an update: Transit has no existence check */
    {"generate", "keys", NULL, "update", true},
    {"destroy", "keys", "config", "update", true},
    {"destroy", "keys", NULL, "delete", true},
};

/* The same in the KV v2 mount, under <kv_prefix>: rel and pattern index the paths below. A key's
 * entry is claimed with check-and-set 0 before its key is made: a create. */
enum { KV_ENTRY, KV_DIR, KV_CERT, KV_CERT_DIR, KV_DIR_ALL, KV_CERT_DIR_ALL, KV_N };
static const struct kv_rule {
    const char *op, *kind, *cap;
    int rel, pattern;
} kv_rules[] = {
    {NULL, "metadata", "list", KV_DIR, KV_DIR},
    {NULL, "data", "read", KV_ENTRY, KV_DIR_ALL},
    {NULL, "metadata", "list", KV_CERT_DIR, KV_CERT_DIR},
    {"generate", "data", "create", KV_ENTRY, KV_DIR_ALL},
    {"destroy", "metadata", "delete", KV_ENTRY, KV_DIR_ALL},
    {"certificates", "data", "create", KV_CERT, KV_CERT_DIR_ALL},
    {"certificates", "data", "update", KV_CERT, KV_CERT_DIR_ALL},
    {"certificates", "data", "read", KV_CERT, KV_CERT_DIR_ALL},
    {"certificates", "metadata", "delete", KV_CERT, KV_CERT_DIR_ALL},
};

/* Every path the module uses for the slot, by operation. key: a key of the slot (for per-key
 * policies), or a name under the prefix. kv: the KV v2 mount in use, or NULL. */
static void slot_needs(const struct vtp_transit *t, const char *prefix, const char *key,
                       const char *kv, struct needs *ns)
{
    char *rel[KV_N] = {vtp_kv_meta_path(t, key), vtp_kv_meta_dir(t), vtp_kv_cert_path(t, PROBE_KEY),
                       vtp_kv_cert_dir(t)};

    rel[KV_DIR_ALL] = rel[KV_DIR] ? vtp_join3(rel[KV_DIR], "/*", "") : NULL;
    rel[KV_CERT_DIR_ALL] = rel[KV_CERT_DIR] ? vtp_join3(rel[KV_CERT_DIR], "/*", "") : NULL;
    for (size_t o = 0; o < VTP_ARRAY_SIZE(ops_all); o++) {
        for (size_t i = 0; i < VTP_ARRAY_SIZE(transit_rules); i++) {
            const struct transit_rule *r = &transit_rules[i];
            if (r->op != NULL && strcmp(r->op, ops_all[o]) != 0)
                continue;
            need(ns, ops_all[o], vtp_transit_path(t, r->what, r->keyed ? key : NULL, r->suffix),
                 r->cap,
                 r->keyed ? key_glob(t, r->what, prefix)
                          : vtp_transit_path(t, r->what, NULL, NULL));
        }
        for (size_t i = 0; kv != NULL && i < VTP_ARRAY_SIZE(kv_rules); i++) {
            const struct kv_rule *r = &kv_rules[i];
            if (r->op != NULL && strcmp(r->op, ops_all[o]) != 0)
                continue;
            need(ns, ops_all[o], vtp_kv_path_in(t, kv, r->kind, rel[r->rel]), r->cap,
                 vtp_kv_path_in(t, kv, r->kind, rel[r->pattern]));
        }
    }
    for (size_t i = 0; i < KV_N; i++)
        free(rel[i]);
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Adds s to the n names unless it is there; returns the new count. */
static size_t add_name(const char **names, size_t n, size_t cap, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0)
            return n;
    if (n < cap)
        names[n++] = s;
    return n;
}

/* The stanza that gives what is missing on pattern, keeping what the token has there now (a
 * more specific path in a new policy replaces, for the paths it matches, what a broader one
 * gave): path "<pattern>" { capabilities = ["..."] } */
static json_t *stanza(const struct needs *ns, const json_t *caps, const char *op,
                      const char *pattern)
{
    const char *names[16];
    size_t n = 0;
    char buf[1024];

    for (size_t i = 0; i < ns->n; i++) {
        const struct need *nd = &ns->v[i];
        const json_t *have = json_object_get(caps, nd->path), *c;
        size_t j;

        if (strcmp(nd->pattern, pattern) != 0)
            continue;
        json_array_foreach(have, j, c)
        {
            const char *s = json_string_value(c);
            if (s != NULL && strcmp(s, "deny") != 0)
                n = add_name(names, n, VTP_ARRAY_SIZE(names), s);
        }
        if (strcmp(nd->op, op) == 0 && !granted(nd, caps))
            n = add_name(names, n, VTP_ARRAY_SIZE(names), nd->caps[0]);
    }
    qsort(names, n, sizeof(*names), cmp_cstr);
    snprintf(buf, sizeof(buf), "path \"%s\" { capabilities = [", pattern);
    for (size_t i = 0; i < n; i++)
        snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s\"%s\"", i ? ", " : "", names[i]);
    snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "] }");
    return json_string(buf);
}

/* operations[op] = {allowed, missing: [{path, capability, policy}]} from the capabilities. */
static json_t *judge_ops(const struct needs *ns, const json_t *caps)
{
    json_t *out = json_object();

    for (size_t o = 0; o < VTP_ARRAY_SIZE(ops_all); o++) {
        json_t *missing = json_array();
        for (size_t i = 0; i < ns->n; i++) {
            const struct need *nd = &ns->v[i];
            if (strcmp(nd->op, ops_all[o]) != 0 || granted(nd, caps))
                continue;
            json_array_append_new(missing, json_pack("{s:s,s:s,s:o}", "path", nd->path,
                                                     "capability", nd->caps[0], "policy",
                                                     stanza(ns, caps, ops_all[o], nd->pattern)));
        }
        json_object_set_new(
            out, ops_all[o],
            json_pack("{s:b,s:o}", "allowed", json_array_size(missing) == 0, "missing", missing));
    }
    return out;
}

/* Sets operations[op] to not allowed with a reason that is not a capability. */
static void op_refused(json_t *ops, const char *op, const char *reason)
{
    json_t *o = json_object_get(ops, op);

    if (o == NULL) {
        o = json_object();
        json_object_set_new(ops, op, o);
    }
    json_object_set_new(o, "allowed", json_false());
    json_object_set_new(o, "reason", json_string(reason));
}

static void check_kv(const struct vtp_slot_conf *sc, const struct vtp_transit *t, json_t *slot)
{
    json_t *kv = json_pack("{s:s?,s:b,s:s}", "mount", sc->kv_mount, "auto", sc->kv_auto, "prefix",
                           sc->kv_prefix);
    char *type = NULL, *version = NULL;
    CK_RV rv, vrv = CKR_OK;

    json_object_set_new(slot, "kv", kv);
    if (sc->kv_mount == NULL) {
        json_object_set_new(kv, "used", json_false());
        json_object_set_new(kv, "note",
                            json_string("no kv_mount: CKA_ID and CKA_LABEL live in "
                                        "the Transit key names; no certificates"));
        return;
    }
    rv = vtp_vault_mount_info(t, sc->kv_mount, &type, &version, &vrv);
    if (rv == CKR_OK && vrv == CKR_OK) {
        json_object_set_new(kv, "type", json_string(type ? type : "?"));
        if (version != NULL)
            json_object_set_new(kv, "version", json_string(version));
    } else {
        json_object_set_new(kv, "type_error", json_string(kind_text(rv != CKR_OK ? rv : vrv)));
    }
    rv = vtp_kv_settle(t);
    json_object_set_new(kv, "used", json_boolean(vtp_kv_mount(t) != NULL));
    if (rv != CKR_OK)
        add_problem(slot, "KV mount %s/ could not be checked: %s", sc->kv_mount, kind_text(rv));
    else if (sc->kv_auto && vtp_kv_mount(t) == NULL)
        json_object_set_new(kv, "note",
                            json_string("kv_mount = auto: this token may not keep entries "
                                        "there, so CKA_ID and CKA_LABEL live in the Transit "
                                        "key names and certificates cannot be stored"));
    else if (!sc->kv_auto && (type == NULL || strcmp(type, "kv") != 0 || version == NULL ||
                              strcmp(version, "2") != 0))
        add_problem(slot, "kv_mount %s/ is not a KV version 2 mount this token can see",
                    sc->kv_mount);
    free(type);
    free(version);
}

/* One signature with the slot's first key that allows signing: the proof. */
static json_t *sign_test(const struct vtp_transit *t, const struct vtp_key *k)
{
    unsigned char digest[32] = {0};
    struct vtp_sign_params p = {NULL, false, NULL, -1};
    struct vtp_sign_item item = {digest, sizeof(digest), NULL, 0, CKR_OK};
    CK_RV rv;

    if (k->kt->kind != VTP_KIND_ED25519) {
        p.hash_algorithm = "sha2-256";
        p.prehashed = true;
        p.signature_algorithm = k->kt->kind == VTP_KIND_RSA ? "pkcs1v15" : NULL;
    }
    rv = vtp_transit_sign(t, k->name, k->version, &p, &item, 1);
    if (rv == CKR_OK)
        rv = item.rv;
    free(item.sig);
    return rv == CKR_OK
               ? json_pack("{s:s,s:i,s:b}", "key", k->name, "version", (int)k->version, "ok", 1)
               : json_pack("{s:s,s:i,s:b,s:s}", "key", k->name, "version", (int)k->version, "ok", 0,
                           "error", kind_text(rv));
}

static void list_keys(struct vtp_slot *s, json_t *slot, bool *can_sign)
{
    const struct vtp_transit *t = vtp_slot_transit(s);
    const char *token = vtp_slot_conf(s)->label;
    struct vtp_snapshot *snap = NULL;
    json_t *keys = json_array(), *certs = json_array();
    const struct vtp_key *signer = NULL;
    CK_RV rv;

    json_object_set_new(slot, "keys", keys);
    json_object_set_new(slot, "certificates", certs);
    rv = vtp_cache_refresh(vtp_slot_cache(s));
    if (rv == CKR_OK)
        rv = vtp_cache_get(vtp_slot_cache(s), false, true, &snap);
    if (rv != CKR_OK) {
        add_problem(slot, "the keys cannot be listed: %s", kind_text(rv));
        *can_sign = false;
        return;
    }
    for (size_t i = 0; i < snap->n; i++) {
        const struct vtp_key *k = snap->keys[i];
        char *hex = vtp_hex_encode(k->id, k->id_len);
        json_array_append_new(
            keys, json_pack("{s:s,s:s,s:i,s:s,s:s,s:b,s:b,s:o,s:o}", "name", k->name, "type",
                            k->kt->transit_type, "version", (int)k->version, "label",
                            k->label ? k->label : "", "id", hex ? hex : "", "id_in_kv",
                            k->id_stored, "sign", (k->usage & VTP_USE_SIGN) != 0, "uri",
                            pkcs11_uri(token, k->id, k->id_len, "private"), "public_uri",
                            pkcs11_uri(token, k->id, k->id_len, "public")));
        free(hex);
        if (signer == NULL && (k->usage & VTP_USE_SIGN))
            signer = k;
    }
    for (size_t i = 0; i < snap->n_certs; i++) {
        const struct vtp_cert *c = snap->certs[i];
        json_array_append_new(certs, json_pack("{s:s,s:b,s:o}", "label", c->label ? c->label : "",
                                               "read_only", c->read_only, "uri",
                                               pkcs11_uri(token, c->id, c->id_len, "cert")));
    }
    if (signer != NULL) {
        json_t *st = sign_test(t, signer);
        if (!json_is_true(json_object_get(st, "ok"))) {
            add_problem(slot, "signing with %s failed: %s", signer->name, str_member(st, "error"));
            *can_sign = false;
        }
        json_object_set_new(slot, "sign_test", st);
    } else {
        json_object_set_new(slot, "note",
                            json_string("no key of this slot can sign yet: make one (e.g. "
                                        "pkcs11-tool --keypairgen) to use it"));
    }
    vtp_snapshot_unref(snap);
}

static json_t *check_slot(struct vtp_slot *s, bool *can_sign)
{
    const struct vtp_slot_conf *sc = vtp_slot_conf(s);
    const struct vtp_transit *t = vtp_slot_transit(s);
    struct needs ns = {0};
    const char *paths[2 * VTP_ARRAY_SIZE(ns.v)];
    size_t n_paths = 0;
    json_t *slot = json_pack("{s:s,s:s,s:s,s:s,s:s?,s:b}", "name", sc->name, "token_label",
                             sc->label, "mount", sc->mount, "key_prefix", sc->key_prefix,
                             "namespace", t->namespace_, "allow_destroy", sc->allow_destroy);
    json_t *caps = NULL, *ops, *keys;
    const char *key;
    char *probe = vtp_join3(sc->key_prefix, PROBE_KEY, "");
    char *type = NULL, *version = NULL;
    CK_RV rv, vrv = CKR_OK;

    log_into(slot);
    *can_sign = true;
    rv = vtp_vault_mount_info(t, sc->mount, &type, &version, &vrv);
    if (rv == CKR_OK && vrv == CKR_OK && (type == NULL || strcmp(type, "transit") != 0))
        add_problem(slot, "mount %s/ is of type %s, not transit", sc->mount, type ? type : "?");
    else if (rv == CKR_OK && (vrv == VTP_ERR_MISCONFIGURED || vrv == VTP_ERR_DENIED))
        add_problem(slot,
                    "mount %s/ (namespace %s) does not exist, or no policy of the token grants "
                    "a path in it",
                    sc->mount, t->namespace_ ? t->namespace_ : "root");
    check_kv(sc, t, slot);
    list_keys(s, slot, can_sign);

    /* per-key policies: ask about a key the slot has, else a name under the prefix */
    keys = json_object_get(slot, "keys");
    key = json_array_size(keys) > 0 ? str_member(json_array_get(keys, 0), "name") : probe;
    slot_needs(t, sc->key_prefix, key ? key : "", vtp_kv_mount(t), &ns);
    for (size_t i = 0; i < ns.n; i++) {
        paths[n_paths++] = ns.v[i].path;
        if (ns.v[i].alt != NULL)
            paths[n_paths++] = ns.v[i].alt;
    }
    rv = ns.oom ? CKR_HOST_MEMORY : vtp_vault_capabilities(t, paths, n_paths, &caps, &vrv);
    if (rv == CKR_OK && vrv == CKR_OK) {
        json_t *byp = json_object();
        for (size_t i = 0; i < n_paths; i++) {
            json_t *c = json_object_get(caps, paths[i]);
            json_object_set_new(byp, paths[i], c != NULL ? json_incref(c) : json_array());
        }
        json_object_set_new(slot, "capabilities", byp);
        ops = judge_ops(&ns, caps);
        if (!json_is_true(json_object_get(json_object_get(ops, "sign"), "allowed"))) {
            add_problem(slot, "the token may not sign with the keys of this slot");
            *can_sign = false;
        }
    } else {
        ops = json_object();
        add_problem(slot,
                    "sys/capabilities-self cannot be asked (%s): what the token may do is "
                    "unknown; Vault's default policy allows it, or add: path "
                    "\"sys/capabilities-self\" { capabilities = [\"update\"] }",
                    kind_text(rv != CKR_OK ? rv : vrv));
    }
    if (!sc->allow_destroy)
        op_refused(ops, "destroy", "allow_destroy = false in the slot's configuration");
    if (vtp_kv_mount(t) == NULL)
        op_refused(ops, "certificates",
                   "no KV v2 mount in use: certificates are kept in KV (set kv_mount)");
    json_object_set_new(slot, "operations", ops);
    json_object_set_new(slot, "can_sign", json_boolean(*can_sign));
    log_stop();
    json_decref(caps);
    needs_free(&ns);
    free(probe);
    free(type);
    free(version);
    return slot;
}

/* --- text output -------------------------------------------------------------------------- */

static void print_lines(const json_t *step, const char *member, const char *tag)
{
    const json_t *v;
    size_t i;

    json_array_foreach(json_object_get(step, member), i, v)
    {
        if (json_is_string(v))
            printf("    %s: %s\n", tag, json_string_value(v));
        else
            printf("    %s (%s): %s\n", tag, str_member(v, "level"), str_member(v, "message"));
    }
}

/* What the module would log at this step, then what stops it. */
static void print_step_tail(const json_t *step)
{
    print_lines(step, "log", "module");
    print_lines(step, "problems", "PROBLEM");
}

static void print_config(const json_t *c)
{
    const json_t *e;
    size_t i;

    printf("Configuration\n");
    printf("    file: %s (chosen by %s)%s\n", str_member(c, "path"), str_member(c, "chosen_by"),
           json_is_true(json_object_get(c, "read")) ? "" : ": no such file, defaults apply");
    if (json_array_size(json_object_get(c, "environment")) == 0)
        printf("    environment: no VAULT_* variable set\n");
    json_array_foreach(json_object_get(c, "environment"), i, e)
    {
        if (str_member(e, "value") != NULL)
            printf("    environment: %s=%s\n", str_member(e, "name"), str_member(e, "value"));
        else
            printf("    environment: %s is set (not shown)\n", str_member(e, "name"));
    }
    print_step_tail(c);
}

static void print_servers(const json_t *servers)
{
    const json_t *s;
    size_t i;

    printf("Servers\n");
    json_array_foreach(servers, i, s)
    {
        if (!json_is_true(json_object_get(s, "reachable"))) {
            printf("    %s: NOT reachable: %s\n", str_member(s, "address"), str_member(s, "error"));
            print_step_tail(s);
            continue;
        }
        printf("    %s: %s %s%s%s, %s\n", str_member(s, "address"), str_member(s, "kind"),
               str_member(s, "version") ? str_member(s, "version") : "(version unknown)",
               str_member(s, "build_date") ? " built " : "",
               str_member(s, "build_date") ? str_member(s, "build_date") : "",
               str_member(s, "state"));
        print_step_tail(s);
    }
}

static void print_auth(const json_t *a)
{
    const json_t *tok = json_object_get(a, "token"), *src = json_object_get(a, "source"), *p;
    size_t i;

    printf("Authentication\n");
    printf("    method: %s", str_member(a, "method"));
    if (json_is_string(src)) {
        printf(" (%s)", json_string_value(src));
    } else {
        const char *k, *sep = " (";
        json_object_foreach((json_t *)src, k, p)
        {
            printf("%s%s %s", sep, k, json_is_string(p) ? json_string_value(p) : "-");
            sep = ", ";
        }
        printf("%s", strcmp(sep, ", ") == 0 ? ")" : "");
    }
    printf("\n");
    if (tok != NULL) {
        long long ttl = json_integer_value(json_object_get(tok, "ttl"));
        printf("    token: %s, %s%s, ", str_member(tok, "type") ? str_member(tok, "type") : "?",
               str_member(tok, "display_name") ? "name " : "",
               str_member(tok, "display_name") ? str_member(tok, "display_name") : "");
        if (ttl == 0)
            printf("no expiry");
        else
            printf("TTL %lldh%02lldm%02llds", ttl / 3600, ttl / 60 % 60, ttl % 60);
        printf(", %s\n",
               json_is_true(json_object_get(tok, "renewable")) ? "renewable" : "not renewable");
        printf("    policies:");
        json_array_foreach(json_object_get(tok, "policies"), i, p)
            printf(" %s", json_string_value(p));
        json_array_foreach(json_object_get(tok, "identity_policies"), i, p)
            printf(" %s (identity)", json_string_value(p));
        printf("\n");
    }
    if (str_member(a, "note"))
        printf("    note: %s\n", str_member(a, "note"));
    if (str_member(a, "vault_error"))
        printf("    Vault said: %s\n", str_member(a, "vault_error"));
    print_step_tail(a);
}

static void print_ops(const json_t *ops)
{
    const char *const *order = ops_all;

    for (size_t o = 0; o < VTP_ARRAY_SIZE(ops_all); o++) {
        const json_t *op = json_object_get(ops, order[o]), *m;
        json_t *seen = json_array();
        size_t i;

        if (op == NULL) {
            printf("    %-13s unknown\n", order[o]);
            json_decref(seen);
            continue;
        }
        if (json_is_true(json_object_get(op, "allowed"))) {
            printf("    %-13s allowed\n", order[o]);
            json_decref(seen);
            continue;
        }
        printf("    %-13s NOT allowed", order[o]);
        if (str_member(op, "reason"))
            printf(": %s", str_member(op, "reason"));
        printf("\n");
        json_array_foreach(json_object_get(op, "missing"), i, m)
            printf("        the token lacks \"%s\" on %s\n", str_member(m, "capability"),
                   str_member(m, "path"));
        json_array_foreach(json_object_get(op, "missing"), i, m)
        {
            const char *pol = str_member(m, "policy");
            bool dup = false;
            size_t j;
            const json_t *s;
            json_array_foreach(seen, j, s) dup = dup || strcmp(json_string_value(s), pol) == 0;
            if (dup)
                continue;
            json_array_append_new(seen, json_string(pol));
            printf("        to allow it, add to a policy: %s\n", pol);
        }
        json_decref(seen);
    }
}

static void print_slot(const json_t *s)
{
    const json_t *kv = json_object_get(s, "kv"), *k;
    size_t i;

    printf("Slot %s (token \"%s\", mount %s/, key prefix \"%s\"%s%s)\n", str_member(s, "name"),
           str_member(s, "token_label"), str_member(s, "mount"), str_member(s, "key_prefix"),
           str_member(s, "namespace") ? ", namespace " : "",
           str_member(s, "namespace") ? str_member(s, "namespace") : "");
    if (str_member(kv, "mount") == NULL)
        printf("    KV: none\n");
    else
        printf("    KV: %s/ (%s%s%s%s), %s\n", str_member(kv, "mount"),
               json_is_true(json_object_get(kv, "auto")) ? "kv_mount = auto, " : "",
               str_member(kv, "type") ? str_member(kv, "type") : "type unknown",
               str_member(kv, "version") ? " version " : "",
               str_member(kv, "version") ? str_member(kv, "version") : "",
               json_is_true(json_object_get(kv, "used")) ? "used" : "NOT used");
    if (str_member(kv, "type_error"))
        printf("    KV: the mount's type cannot be read: %s\n", str_member(kv, "type_error"));
    if (str_member(kv, "note"))
        printf("    KV note: %s\n", str_member(kv, "note"));
    printf("  operations:\n");
    print_ops(json_object_get(s, "operations"));
    printf("  keys: %zu\n", json_array_size(json_object_get(s, "keys")));
    json_array_foreach(json_object_get(s, "keys"), i, k)
        printf("    %s (%s v%lld, label \"%s\")\n        %s\n", str_member(k, "name"),
               str_member(k, "type"), json_integer_value(json_object_get(k, "version")),
               str_member(k, "label"), str_member(k, "uri"));
    json_array_foreach(json_object_get(s, "certificates"), i, k) printf(
        "    certificate \"%s\"\n        %s\n", str_member(k, "label"), str_member(k, "uri"));
    k = json_object_get(s, "sign_test");
    if (k != NULL)
        printf("  sign test with %s v%lld: %s%s\n", str_member(k, "key"),
               json_integer_value(json_object_get(k, "version")),
               json_is_true(json_object_get(k, "ok")) ? "ok" : "FAILED: ",
               json_is_true(json_object_get(k, "ok")) ? "" : str_member(k, "error"));
    if (str_member(s, "note"))
        printf("  note: %s\n", str_member(s, "note"));
    print_step_tail(s);
}

static void print_report(const json_t *r)
{
    const json_t *v;
    size_t i;

    print_config(json_object_get(r, "config"));
    if (json_object_get(r, "servers") != NULL)
        print_servers(json_object_get(r, "servers"));
    if (json_object_get(r, "auth") != NULL)
        print_auth(json_object_get(r, "auth"));
    json_array_foreach(json_object_get(r, "slots"), i, v) print_slot(v);
    printf("Result: %s\n", str_member(r, "summary"));
}

/* --- main --------------------------------------------------------------------------------- */

static char *read_pin(void)
{
    char *pin = OPENSSL_zalloc(MAX_PIN);
    size_t n;

    if (pin == NULL || fgets(pin, MAX_PIN, stdin) == NULL) {
        OPENSSL_free(pin);
        return NULL;
    }
    n = strcspn(pin, "\r\n");
    pin[n] = '\0';
    return pin;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: vault-transit-pkcs11-check [--config PATH] [--json] [--pin-stdin]\n"
               "Reads the vault-transit-pkcs11 configuration as the module does and says what "
               "will work.\n"
               "  --config PATH  the config file (as C_Initialize's pReserved \"config=PATH\")\n"
               "  --json         one JSON document on standard output\n"
               "  --pin-stdin    auth = pin: read the PIN (the Vault token) from standard input\n"
               "Exit status: 0 every slot can sign, 1 one cannot, 2 configuration or usage "
               "error.\n");
}

struct run {
    json_t *report;
    struct vtp_config *cfg;
    struct vtp_http *http;
    struct vtp_slots *slots;
    char *pin;
};

/* The servers, the authentication and the slots, once the configuration is loaded. */
static int run_checks(struct run *r)
{
    struct vtp_config *cfg = r->cfg;
    json_t *slots;
    bool reachable = false, auth_ok = false, all = true;
    struct vtp_http *auth_http;
    CK_RV rv;

    /* the check leaves no offline copy behind (cache_dir): it only reads */
    free(cfg->cache_dir);
    cfg->cache_dir = NULL;
    if (vtp_http_new(&cfg->vault, &r->http) != CKR_OK ||
        vtp_auth_start(r->http, &cfg->vault) != CKR_OK ||
        vtp_slots_create(cfg, r->http, false, &r->slots) != CKR_OK) {
        json_object_set_new(r->report, "summary", json_string("the module cannot start"));
        return EXIT_CANNOT_SIGN;
    }
    json_object_set_new(r->report, "servers", check_servers(cfg, r->http, &reachable));
    if (!reachable) {
        json_object_set_new(r->report, "summary",
                            json_string("no server can be used: nothing else was checked"));
        return EXIT_CANNOT_SIGN;
    }
    auth_http = r->http;
    if (cfg->vault.auth == VTP_AUTH_PIN) {
        if (r->pin == NULL) {
            json_object_set_new(r->report, "summary",
                                json_string("auth = pin: the PIN is the Vault token; give it "
                                            "with --pin-stdin to check what it may do"));
            return EXIT_CANNOT_SIGN;
        }
        for (CK_ULONG i = 0; i < vtp_slots_count(r->slots); i++) {
            rv = vtp_slot_login(vtp_slots_get(r->slots, i), (const CK_UTF8CHAR *)r->pin,
                                (CK_ULONG)strlen(r->pin));
            if (rv != CKR_OK)
                break;
        }
        auth_http = vtp_slot_transit(vtp_slots_get(r->slots, 0))->http;
    }
    json_object_set_new(r->report, "auth", check_auth(cfg, auth_http, &auth_ok));
    if (!auth_ok) {
        json_object_set_new(r->report, "summary",
                            json_string("the authentication failed: nothing else was checked"));
        return EXIT_CANNOT_SIGN;
    }
    slots = json_array();
    json_object_set_new(r->report, "slots", slots);
    for (CK_ULONG i = 0; i < vtp_slots_count(r->slots); i++) {
        bool can = false;
        json_array_append_new(slots, check_slot(vtp_slots_get(r->slots, i), &can));
        all = all && can;
    }
    json_object_set_new(r->report, "summary",
                        json_string(all ? "every slot can sign" : "a slot cannot sign"));
    return all ? 0 : EXIT_CANNOT_SIGN;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},
        {"pin-stdin", no_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct run r = {0};
    const char *config = NULL;
    bool json = false, pin = false;
    int c, status;

    while ((c = getopt_long(argc, argv, "c:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'p':
            pin = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_CONFIG;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return EXIT_CONFIG;
    }
    if (pin && (r.pin = read_pin()) == NULL) {
        fprintf(stderr, "vault-transit-pkcs11-check: --pin-stdin: no PIN on standard input\n");
        return EXIT_CONFIG;
    }
    vtp_log_set_capture(VTP_LOG_WARNING, on_log, NULL);
    r.report = json_pack("{s:s}", "version", PACKAGE_VERSION);
    json_object_set_new(r.report, "config", check_config(config, &r.cfg));
    if (r.cfg == NULL) {
        json_object_set_new(r.report, "summary", json_string("the configuration cannot be loaded"));
        status = EXIT_CONFIG;
    } else {
        status = run_checks(&r);
    }
    json_object_set_new(r.report, "exit_status", json_integer(status));
    json_object_set_new(r.report, "ok", json_boolean(status == 0));
    vtp_log_set_capture(VTP_LOG_OFF, NULL, NULL);
    if (json)
        json_dumpf(r.report, stdout, JSON_INDENT(2));
    else
        print_report(r.report);
    if (json)
        printf("\n");
    vtp_slots_destroy(r.slots);
    if (r.http != NULL)
        vtp_auth_stop(r.http);
    vtp_http_free(r.http);
    vtp_config_free(r.cfg);
    json_decref(r.report);
    if (r.pin != NULL)
        OPENSSL_clear_free(r.pin, MAX_PIN);
    return status;
}
