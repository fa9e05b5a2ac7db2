/* http.c - libcurl client for Vault/OpenBao.
 *
 * One struct vtp_http per [vault] section. It owns:
 *  - a copy of the ordered address list and the TLS settings;
 *  - the client token, guarded by a mutex; the "X-Vault-Token: ..." header is built per request
 *    and wiped (OPENSSL_cleanse) after the transfer;
 *  - a free list of CURL easy handles. A handle is taken from the list for one request and put
 *    back afterwards, so a handle is never used by two threads at once while its connection
 *    cache still gives keep-alive. No lock is held during curl_easy_perform.
 *
 * vtp_http_request() (docs/failover.md):
 *  - one deadline per call (timeout_ms), shared by the auth hooks' requests and the repeat after
 *    a re-login; each attempt's CURLOPT_TIMEOUT_MS is bounded by what is left of it (half of it
 *    while another address remains), so a server that hangs (SIGSTOP) cannot hold a call longer;
 *  - addresses in list order; one that gives a transport error, 502/503/504 or "node not active"
 *    is skipped until a health check (GET /v1/sys/health: 200 active or 429 standby) passes,
 *    at most every RECHECK_MS; the next address is tried at once, a backoff wait (50 ms doubling
 *    up to 1 s, equal jitter) only after a full round;
 *  - 412 and 429 retried on the same server with that backoff (once a request got only those
 *    for half its deadline, later ones try once until another answer comes); every other 4xx,
 *    and 5xx other than those above, is final and never retried;
 *  - 307/308 (HA standbys that do not forward) followed by hand, keeping method and body;
 *  - when a call found no usable server within its deadline (an outage), later calls fail at
 *    once with CKR_DEVICE_ERROR, without network I/O, while background health checks run every
 *    OUTAGE_RECHECK_MS; the first address that passes one ends the outage.
 *  POST sign is retried like everything else: signing twice is harmless.
 *
 * This layer reads an answer only as far as it needs to: the status for the retry rules above,
 * and whether Vault refused the token (vtp_http_token_refused: a 403 "invalid token" or a bare
 * "permission denied", when the auth hooks log in again once). What any other answer means is
 * classified once, beside the Transit calls (vtp_transit_classify in transit.c, docs/errors.md).
 */
#include "common.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "util.h"
#include "vault/http.h"

#define DEFAULT_TIMEOUT_MS 30000L
#define DEFAULT_CONNECT_TIMEOUT_MS 5000L
#define BACKOFF_START_MS 50
#define BACKOFF_CAP_MS 1000
#define RECHECK_MS 2000        /* a bad address gets a health check after this */
#define HEALTH_TIMEOUT_MS 1000 /* GET /v1/sys/health */
#define OUTAGE_RECHECK_MS 250  /* the same during an outage */
#define MAX_REDIRECTS 5
#define MAX_POOLED_HANDLES 32
#define TOKEN_HEADER "X-Vault-Token: "
#define NODE_NOT_ACTIVE "node not active" /* a 500 while an HA cluster has no leader */

struct pooled {
    CURL *curl;
    struct pooled *next;
};

struct vtp_http {
    bool no_threads; /* the application forbids the library's own threads */
    char *addresses[VTP_MAX_ADDRESSES];
    size_t n_addresses;
    char *ca_cert;
    char *ca_path;
    char *client_cert;
    char *client_key;
    char *tls_server_name;
    bool skip_verify;
    long timeout_ms;
    long connect_timeout_ms;

    pthread_mutex_t lock; /* token, pool */
    char *token;          /* secret */
    struct pooled *pool;
    size_t n_pooled;

    struct vtp_http_auth_hooks hooks; /* set once, before any request */

    /* per address: 0 usable, else failed and not used (unless all are) until a health check
     * after this time (vtp_now_ms) passes */
    atomic_llong bad_until[VTP_MAX_ADDRESSES];
    atomic_llong outage_since;    /* 0, or when a request found no usable server in its deadline */
    atomic_llong throttled_since; /* 0, or when a request got only 412/429 for half a deadline */
    atomic_bool checking[VTP_MAX_ADDRESSES]; /* a health check thread runs for it */
    atomic_int checkers;                     /* health check threads running */
    /* The last health check thread of each address, joined before the next one starts and
     * when the client is freed (C_Finalize returns only when none of the module's code runs
     * on another thread). Under checker_lock, which checker threads never take. */
    pthread_mutex_t checker_lock;
    pthread_t checker[VTP_MAX_ADDRESSES];
    bool checker_joinable[VTP_MAX_ADDRESSES];
    atomic_bool closing;
    atomic_ulong requests;
    atomic_ulong failures;
    atomic_ulong retries;
};

/* ---------------------------------------------------------------------------------------- */
/* global init */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
    const curl_version_info_data *info;

    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (global_rc != CURLE_OK) {
        VTP_LOG_ERR("curl_global_init failed: %s", curl_easy_strerror(global_rc));
        return;
    }
    info = curl_version_info(CURLVERSION_NOW);
#ifdef CURL_VERSION_THREADSAFE
    if (info == NULL || !(info->features & CURL_VERSION_THREADSAFE))
        VTP_LOG_WARN("libcurl %s is not built thread-safe (CURL_VERSION_THREADSAFE absent); "
                     "curl_global_init may race with other libcurl users",
                     info != NULL ? info->version : "?");
#else
    VTP_LOG_WARN("libcurl %s predates CURL_VERSION_THREADSAFE; curl_global_init may race with "
                 "other libcurl users",
                 info != NULL ? info->version : "?");
#endif
    /* curl_global_cleanup is never called: the process may use libcurl elsewhere, and the
     * once-control cannot be re-armed. */
}

/* ---------------------------------------------------------------------------------------- */
/* small helpers */

static void sleep_ms(int64_t ms)
{
    struct timespec ts;

    if (ms <= 0)
        return;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Equal jitter: a random wait in [backoff/2, backoff]. */
static int64_t jittered(int64_t backoff)
{
    unsigned int r = 0;

    if (backoff < 2)
        return backoff;
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        r = (unsigned int)vtp_now_ms();
    return backoff / 2 + (int64_t)(r % (unsigned int)(backoff / 2 + 1));
}

static char *str_concat(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = malloc(la + lb + lc + 1);

    if (s == NULL)
        return NULL;
    memcpy(s, a, la);
    memcpy(s + la, b, lb);
    memcpy(s + la + lb, c, lc);
    s[la + lb + lc] = '\0';
    return s;
}

/* Wipes every header string (one of them carries the token), then frees the list. */
static void headers_free(struct curl_slist *list)
{
    struct curl_slist *it;

    for (it = list; it != NULL; it = it->next) {
        if (it->data != NULL)
            OPENSSL_cleanse(it->data, strlen(it->data));
    }
    curl_slist_free_all(list);
}

static bool headers_add(struct curl_slist **list, const char *line)
{
    struct curl_slist *n = curl_slist_append(*list, line);

    if (n == NULL)
        return false;
    *list = n;
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* response body */

struct body {
    unsigned char *data;
    size_t len;
    size_t cap;
    bool too_large;
};

static void body_wipe(struct body *b)
{
    if (b->data != NULL)
        OPENSSL_clear_free(b->data, b->cap);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

/* Grows without realloc so that no copy of a (possibly secret) body is left unwiped. */
static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct body *b = userdata;
    size_t n = size * nmemb;
    size_t cap;
    unsigned char *nd;

    if (n == 0)
        return 0;
    if (n > VTP_HTTP_MAX_RESPONSE || b->len + n > VTP_HTTP_MAX_RESPONSE) {
        b->too_large = true;
        return 0;
    }
    if (b->len + n > b->cap) {
        cap = b->cap != 0 ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        if (cap > VTP_HTTP_MAX_RESPONSE)
            cap = VTP_HTTP_MAX_RESPONSE;
        nd = malloc(cap);
        if (nd == NULL)
            return 0;
        if (b->data != NULL) {
            memcpy(nd, b->data, b->len);
            OPENSSL_clear_free(b->data, b->cap);
        }
        b->data = nd;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    return n;
}

/* ---------------------------------------------------------------------------------------- */
/* handle pool */

static CURL *pool_take(struct vtp_http *h)
{
    struct pooled *p;
    CURL *c = NULL;

    pthread_mutex_lock(&h->lock);
    p = h->pool;
    if (p != NULL) {
        h->pool = p->next;
        h->n_pooled--;
    }
    pthread_mutex_unlock(&h->lock);

    if (p != NULL) {
        c = p->curl;
        free(p);
        return c;
    }
    return curl_easy_init();
}

static void pool_give(struct vtp_http *h, CURL *c)
{
    struct pooled *p;

    if (c == NULL)
        return;
    p = malloc(sizeof(*p));
    if (p == NULL) {
        curl_easy_cleanup(c);
        return;
    }
    p->curl = c;
    pthread_mutex_lock(&h->lock);
    if (h->n_pooled < MAX_POOLED_HANDLES) {
        p->next = h->pool;
        h->pool = p;
        h->n_pooled++;
        p = NULL;
    }
    pthread_mutex_unlock(&h->lock);
    if (p != NULL) {
        curl_easy_cleanup(c);
        free(p);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* construction */

static CK_RV dup_opt(const char *src, char **dst)
{
    *dst = NULL;
    if (src == NULL || src[0] == '\0')
        return CKR_OK;
    *dst = strdup(src);
    return *dst != NULL ? CKR_OK : CKR_HOST_MEMORY;
}

CK_RV vtp_http_new(const struct vtp_vault_conf *conf, struct vtp_http **out)
{
    struct vtp_http *h = NULL;
    CK_RV rv = CKR_HOST_MEMORY;
    size_t i;

    VTP_RETURN_VAL_IF_FAIL(conf != NULL, CKR_ARGUMENTS_BAD);
    VTP_RETURN_VAL_IF_FAIL(out != NULL, CKR_ARGUMENTS_BAD);
    VTP_RETURN_VAL_IF_FAIL(conf->n_addresses <= VTP_MAX_ADDRESSES, CKR_ARGUMENTS_BAD);

    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK)
        return CKR_GENERAL_ERROR;

    h = calloc(1, sizeof(*h));
    if (h == NULL)
        return CKR_HOST_MEMORY;
    if (pthread_mutex_init(&h->lock, NULL) != 0) {
        free(h);
        return CKR_CANT_LOCK;
    }
    if (pthread_mutex_init(&h->checker_lock, NULL) != 0) {
        pthread_mutex_destroy(&h->lock);
        free(h);
        return CKR_CANT_LOCK;
    }
    for (i = 0; i < VTP_MAX_ADDRESSES; i++) {
        atomic_init(&h->bad_until[i], 0);
        atomic_init(&h->checking[i], false);
    }
    atomic_init(&h->checkers, 0);
    atomic_init(&h->closing, false);
    atomic_init(&h->outage_since, 0);
    atomic_init(&h->throttled_since, 0);
    atomic_init(&h->requests, 0);
    atomic_init(&h->failures, 0);
    atomic_init(&h->retries, 0);

    for (i = 0; i < conf->n_addresses; i++) {
        size_t len;

        if (conf->addresses[i] == NULL || conf->addresses[i][0] == '\0')
            continue;
        h->addresses[h->n_addresses] = strdup(conf->addresses[i]);
        if (h->addresses[h->n_addresses] == NULL)
            goto out;
        /* "https://v:8200/" -> "https://v:8200" */
        len = strlen(h->addresses[h->n_addresses]);
        while (len > 0 && h->addresses[h->n_addresses][len - 1] == '/')
            h->addresses[h->n_addresses][--len] = '\0';
        h->n_addresses++;
    }
    if (dup_opt(conf->ca_cert, &h->ca_cert) != CKR_OK ||
        dup_opt(conf->ca_path, &h->ca_path) != CKR_OK ||
        dup_opt(conf->client_cert, &h->client_cert) != CKR_OK ||
        dup_opt(conf->client_key, &h->client_key) != CKR_OK ||
        dup_opt(conf->tls_server_name, &h->tls_server_name) != CKR_OK)
        goto out;
    h->skip_verify = conf->skip_verify;
    h->timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : DEFAULT_TIMEOUT_MS;
    h->connect_timeout_ms =
        conf->connect_timeout_ms > 0 ? conf->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;

    if (h->skip_verify)
        VTP_LOG_WARN("TLS verification is DISABLED (skip_verify / VAULT_SKIP_VERIFY): the Vault "
                     "server's identity is not checked");
    if (h->n_addresses == 0)
        VTP_LOG_WARN("no Vault address configured (address = / VAULT_ADDR)");

    *out = h;
    h = NULL;
    rv = CKR_OK;
out:
    if (h != NULL)
        vtp_http_free(h);
    return rv;
}

void vtp_http_free(struct vtp_http *h)
{
    struct pooled *p, *next;
    size_t i;

    if (h == NULL)
        return;
    /* Health check threads use h: no new one starts, and each running one ends within
     * HEALTH_TIMEOUT_MS. Every call has left the module, so no start_check runs now. */
    atomic_store(&h->closing, true);
    pthread_mutex_lock(&h->checker_lock);
    for (i = 0; i < VTP_MAX_ADDRESSES; i++) {
        if (h->checker_joinable[i]) {
            pthread_join(h->checker[i], NULL);
            h->checker_joinable[i] = false;
        }
    }
    pthread_mutex_unlock(&h->checker_lock);
    for (p = h->pool; p != NULL; p = next) {
        next = p->next;
        curl_easy_cleanup(p->curl);
        free(p);
    }
    vtp_free_secret(h->token);
    for (i = 0; i < h->n_addresses; i++)
        free(h->addresses[i]);
    free(h->ca_cert);
    free(h->ca_path);
    free(h->client_cert);
    free(h->client_key);
    free(h->tls_server_name);
    pthread_mutex_destroy(&h->lock);
    pthread_mutex_destroy(&h->checker_lock);
    free(h);
}

/* After fork() the child owns copies of the parent's sockets (and, for TLS, of its session
 * state). curl_easy_cleanup would close them and may send a TLS close_notify on a connection
 * the parent keeps using, breaking the parent. So the child forgets the handles and leaks them
 * on purpose. The lock may have been held by a thread that does not exist in the child: it is
 * re-created rather than taken. */
void vtp_http_forget(struct vtp_http *h)
{
    struct pooled *p, *next;

    if (h == NULL)
        return;
    for (p = h->pool; p != NULL; p = next) {
        next = p->next;
        free(p); /* the node only; p->curl is leaked deliberately */
    }
    h->pool = NULL;
    h->n_pooled = 0;
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->checker_lock, NULL);
    /* the health check threads, if any, are not in the child */
    for (size_t i = 0; i < VTP_MAX_ADDRESSES; i++) {
        atomic_store(&h->checking[i], false);
        h->checker_joinable[i] = false;
    }
    atomic_store(&h->checkers, 0);
}

CK_RV vtp_http_set_token(struct vtp_http *h, const char *token)
{
    char *copy = NULL;
    char *old;

    VTP_RETURN_VAL_IF_FAIL(h != NULL, CKR_ARGUMENTS_BAD);
    if (token != NULL && token[0] != '\0') {
        copy = strdup(token);
        if (copy == NULL)
            return CKR_HOST_MEMORY;
    }
    pthread_mutex_lock(&h->lock);
    old = h->token;
    h->token = copy;
    pthread_mutex_unlock(&h->lock);
    vtp_free_secret(old);
    return CKR_OK;
}

bool vtp_http_has_token(struct vtp_http *h)
{
    bool has;

    if (h == NULL)
        return false;
    pthread_mutex_lock(&h->lock);
    has = h->token != NULL;
    pthread_mutex_unlock(&h->lock);
    return has;
}

void vtp_http_get_stats(struct vtp_http *h, struct vtp_http_stats *out)
{
    if (h == NULL || out == NULL)
        return;
    out->requests = atomic_load(&h->requests);
    out->failures = atomic_load(&h->failures);
    out->retries = atomic_load(&h->retries);
}

void vtp_http_resp_clear(struct vtp_http_resp *resp)
{
    if (resp == NULL)
        return;
    if (resp->json != NULL)
        json_decref(resp->json);
    resp->json = NULL;
    resp->status = 0;
    resp->scanned = false;
}

char *vtp_http_escape(const char *segment)
{
    static const char hex[] = "0123456789ABCDEF";
    bool all_dots = true;
    size_t i, j, len;
    char *out;

    if (segment == NULL)
        return NULL;
    len = strlen(segment);
    for (i = 0; i < len; i++) {
        if (segment[i] != '.')
            all_dots = false;
    }
    out = malloc(len * 3 + 1);
    if (out == NULL)
        return NULL;
    for (i = 0, j = 0; i < len; i++) {
        unsigned char c = (unsigned char)segment[i];
        bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '_' || c == '~' || (c == '.' && !all_dots);

        if (plain) {
            out[j++] = (char)c;
        } else {
            /* "." and ".." are encoded so that no layer resolves them as dot-segments */
            out[j++] = '%';
            out[j++] = hex[c >> 4];
            out[j++] = hex[c & 15];
        }
    }
    out[j] = '\0';
    return out;
}

/* ---------------------------------------------------------------------------------------- */
/* one transfer */

struct attempt {
    CURLcode cc;
    long status;
    char *location; /* redirect target, malloc'ed */
};

#define SETOPT(c, opt, val)                                                                        \
    do {                                                                                           \
        CURLcode setopt_rc_ = curl_easy_setopt((c), (opt), (val));                                 \
        if (setopt_rc_ != CURLE_OK) {                                                              \
            VTP_LOG_ERR("curl_easy_setopt(%s) failed: %s", #opt, curl_easy_strerror(setopt_rc_));  \
            rv = setopt_rc_ == CURLE_OUT_OF_MEMORY ? CKR_HOST_MEMORY : CKR_GENERAL_ERROR;          \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/* With tls_server_name, the URL names that host (so SNI and certificate verification use it)
 * and CURLOPT_CONNECT_TO sends the connection to the configured address. Builds the URL and,
 * when needed, the connect-to entry. */
static CK_RV build_url(const struct vtp_http *h, const char *base, const char *path, char **url_out,
                       struct curl_slist **connect_to)
{
    CURLU *u = NULL;
    char *url = NULL, *entry = NULL;
    char *host = NULL, *port = NULL, *scheme = NULL, *named = NULL; /* curl_free */
    CK_RV rv = CKR_HOST_MEMORY;
    size_t n;

    url = str_concat(base, "/v1/", path);
    if (url == NULL)
        goto out;
    if (h->tls_server_name == NULL)
        goto done;
    u = curl_url();
    if (u == NULL)
        goto out;
    rv = CKR_GENERAL_ERROR;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
        VTP_LOG_ERR("cannot parse Vault address %s", base);
        goto out;
    }
    if (strcmp(scheme, "https") != 0)
        goto done; /* no TLS, no name to check */
    if (curl_url_set(u, CURLUPART_HOST, h->tls_server_name, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &named, 0) != CURLUE_OK) {
        VTP_LOG_ERR("invalid tls_server_name %s", h->tls_server_name);
        goto out;
    }
    /* "name:port:host:port": connections to name:port go to host:port */
    rv = CKR_HOST_MEMORY;
    n = strlen(h->tls_server_name) + strlen(port) * 2 + strlen(host) + 4;
    entry = malloc(n);
    if (entry == NULL)
        goto out;
    snprintf(entry, n, "%s:%s:%s:%s", h->tls_server_name, port, host, port);
    if (!headers_add(connect_to, entry))
        goto out;
    free(url);
    url = strdup(named);
    if (url == NULL)
        goto out;
done:
    *url_out = url;
    url = NULL;
    rv = CKR_OK;
out:
    curl_url_cleanup(u);
    free(url);
    free(entry);
    curl_free(host);
    curl_free(port);
    curl_free(scheme);
    curl_free(named);
    return rv;
}

static CK_RV perform(struct vtp_http *h, CURL *c, const char *method, const char *url,
                     struct curl_slist *headers, struct curl_slist *connect_to, const char *body,
                     size_t body_len, long timeout_ms, struct body *resp_body, struct attempt *a)
{
    CK_RV rv = CKR_OK;
    char *loc = NULL;

    curl_easy_reset(c); /* keeps live connections, DNS and TLS session caches */
    SETOPT(c, CURLOPT_URL, url);
    SETOPT(c, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    SETOPT(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SETOPT(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SETOPT(c, CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    SETOPT(c, CURLOPT_CONNECTTIMEOUT_MS,
           h->connect_timeout_ms < timeout_ms ? h->connect_timeout_ms : timeout_ms);
    SETOPT(c, CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(c, CURLOPT_USERAGENT, PACKAGE_NAME "/" PACKAGE_VERSION);
    SETOPT(c, CURLOPT_HTTPHEADER, headers);
    SETOPT(c, CURLOPT_WRITEFUNCTION, write_cb);
    SETOPT(c, CURLOPT_WRITEDATA, resp_body);
    if (connect_to != NULL)
        SETOPT(c, CURLOPT_CONNECT_TO, connect_to);

    if (h->ca_cert != NULL)
        SETOPT(c, CURLOPT_CAINFO, h->ca_cert);
    if (h->ca_path != NULL)
        SETOPT(c, CURLOPT_CAPATH, h->ca_path);
    if (h->client_cert != NULL)
        SETOPT(c, CURLOPT_SSLCERT, h->client_cert);
    if (h->client_key != NULL)
        SETOPT(c, CURLOPT_SSLKEY, h->client_key);
    if (h->skip_verify) {
        SETOPT(c, CURLOPT_SSL_VERIFYPEER, 0L);
        SETOPT(c, CURLOPT_SSL_VERIFYHOST, 0L);
    } else {
        SETOPT(c, CURLOPT_SSL_VERIFYPEER, 1L);
        SETOPT(c, CURLOPT_SSL_VERIFYHOST, 2L);
    }

    if (strcmp(method, "GET") == 0) {
        SETOPT(c, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
        SETOPT(c, CURLOPT_POST, 1L);
        SETOPT(c, CURLOPT_POSTFIELDS, body != NULL ? body : "");
        SETOPT(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        if (strcmp(method, "PUT") == 0)
            SETOPT(c, CURLOPT_CUSTOMREQUEST, "PUT");
    } else {
        /* DELETE, LIST: both products accept the LIST verb */
        SETOPT(c, CURLOPT_CUSTOMREQUEST, method);
        if (body != NULL) {
            SETOPT(c, CURLOPT_POSTFIELDS, body);
            SETOPT(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        }
    }

    a->cc = curl_easy_perform(c);
    a->status = 0;
    a->location = NULL;
    if (a->cc != CURLE_OK)
        goto out;
    if (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status) != CURLE_OK)
        a->status = 0;
    if ((a->status == 307 || a->status == 308) &&
        curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc != NULL) {
        a->location = strdup(loc);
        if (a->location == NULL)
            rv = CKR_HOST_MEMORY;
    }
out:
    return rv;
}

/* What an answer means for the retry loop. */
enum verdict {
    ANSWER_FINAL,       /* 2xx, or an error the caller maps (every other 4xx): never retried */
    ANSWER_RETRY,       /* 412, 429: the server is up but wants us to come back later */
    ANSWER_UNAVAILABLE, /* 502, 503 (sealed, standby without leader), 504, HA election 500 */
};

static bool body_contains(const struct body *b, const char *needle)
{
    size_t n = strlen(needle), i;

    if (b->data == NULL || b->len < n)
        return false;
    for (i = 0; i + n <= b->len; i++) {
        if (memcmp(b->data + i, needle, n) == 0)
            return true;
    }
    return false;
}

static enum verdict judge(long status, const struct body *b)
{
    if (status == 412 || status == 429)
        return ANSWER_RETRY;
    if (status == 502 || status == 503 || status == 504)
        return ANSWER_UNAVAILABLE;
    /* A standby while the cluster has no leader: "local node not active but active cluster
     * node not found" (500). Another node, or this one a moment later, will do. */
    if (status == 500 && body_contains(b, NODE_NOT_ACTIVE))
        return ANSWER_UNAVAILABLE;
    return ANSWER_FINAL;
}

/* Transport errors that another try against the same server will not fix. */
static bool permanent_error(CURLcode cc)
{
    switch (cc) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_FILESIZE_EXCEEDED:
        return true;
    default:
        return false;
    }
}

static CK_RV build_headers(struct vtp_http *h, const struct vtp_http_req *req,
                           struct curl_slist **out)
{
    struct curl_slist *list = NULL;
    char *line = NULL;
    size_t len = 0;
    CK_RV rv = CKR_HOST_MEMORY;

    if (!headers_add(&list, "X-Vault-Request: true") || !headers_add(&list, "Expect:"))
        goto out;
    if ((req->body != NULL || req->raw_body != NULL) && !headers_add(&list, "Content-Type: application/json"))
        goto out;
    if (req->namespace_ != NULL && req->namespace_[0] != '\0') {
        line = str_concat("X-Vault-Namespace: ", req->namespace_, "");
        if (line == NULL || !headers_add(&list, line))
            goto out;
        free(line);
        line = NULL;
    }
    if (!req->no_token) {
        pthread_mutex_lock(&h->lock);
        if (h->token != NULL) {
            len = strlen(TOKEN_HEADER) + strlen(h->token);
            line = str_concat(TOKEN_HEADER, h->token, "");
        }
        pthread_mutex_unlock(&h->lock);
        if (len != 0 && (line == NULL || !headers_add(&list, line)))
            goto out;
    }
    *out = list;
    list = NULL;
    rv = CKR_OK;
out:
    if (line != NULL)
        OPENSSL_clear_free(line, strlen(line));
    headers_free(list);
    return rv;
}

/* ---------------------------------------------------------------------------------------- */
/* address health */

static void mark_bad(struct vtp_http *h, size_t i, const char *why)
{
    long long until = (long long)(vtp_now_ms() + RECHECK_MS);

    if (atomic_exchange(&h->bad_until[i], until) == 0)
        VTP_LOG_WARN("%s is unavailable (%s): using the other addresses, health check in %d ms",
                     h->addresses[i], why, RECHECK_MS);
}

/* One GET of path (no token, no retry, no redirect followed) on address i within budget ms:
 * the attempt's result in *a (a->location freed) and the body in *rb. CKR_OK unless a local
 * failure (memory, a URL that does not parse) stopped it before the transfer. */
static CK_RV get_once(struct vtp_http *h, size_t i, const char *path, long budget, struct body *rb,
                      struct attempt *a)
{
    struct curl_slist *headers = NULL, *connect_to = NULL;
    char *url = NULL;
    CURL *c = NULL;
    CK_RV rv = CKR_HOST_MEMORY;

    a->cc = CURLE_FAILED_INIT;
    a->status = 0;
    a->location = NULL;
    if (!headers_add(&headers, "X-Vault-Request: true"))
        goto out;
    rv = build_url(h, h->addresses[i], path, &url, &connect_to);
    if (rv != CKR_OK)
        goto out;
    c = pool_take(h);
    rv = c != NULL ? perform(h, c, "GET", url, headers, connect_to, NULL, 0, budget, rb, a)
                   : CKR_HOST_MEMORY;
out:
    free(a->location);
    a->location = NULL;
    free(url);
    curl_slist_free_all(connect_to);
    curl_slist_free_all(headers);
    if (c != NULL) {
        if (rv == CKR_OK && a->cc == CURLE_OK)
            pool_give(h, c);
        else
            curl_easy_cleanup(c);
    }
    return rv;
}

/* GET /v1/sys/health on address i, within HEALTH_TIMEOUT_MS and the deadline. Usable: 200
 * (active), 429 (standby: forwards requests), 473 (Vault performance standby). Not usable:
 * 503 (sealed), 501 (not initialised), anything else, no answer. */
static bool health_ok(struct vtp_http *h, size_t i, int64_t deadline)
{
    struct body rb = {0};
    struct attempt a = {CURLE_FAILED_INIT, 0, NULL};
    int64_t t0 = vtp_now_ms();
    long budget = HEALTH_TIMEOUT_MS;
    bool ok = false;

    if (deadline - t0 < budget)
        budget = (long)(deadline - t0);
    if (budget <= 0 || get_once(h, i, "sys/health", budget, &rb, &a) != CKR_OK)
        goto out;
    ok = a.cc == CURLE_OK && (a.status == 200 || a.status == 429 || a.status == 473);
    if (a.cc != CURLE_OK)
        VTP_LOG_INFO("health check of %s: %s (%lld ms)", h->addresses[i], curl_easy_strerror(a.cc),
                     (long long)(vtp_now_ms() - t0));
    else
        VTP_LOG_INFO("health check of %s: HTTP %ld (%s, %lld ms)", h->addresses[i], a.status,
                     ok ? "usable" : "not usable", (long long)(vtp_now_ms() - t0));
out:
    body_wipe(&rb);
    return ok;
}

size_t vtp_http_n_addresses(const struct vtp_http *h)
{
    return h->n_addresses;
}

CK_RV vtp_http_probe(struct vtp_http *h, size_t i, const char *path, struct vtp_http_resp *resp,
                     const char **transport_error)
{
    struct body rb = {0};
    struct attempt a = {CURLE_FAILED_INIT, 0, NULL};
    json_error_t jerr;
    CK_RV rv;

    VTP_RETURN_VAL_IF_FAIL(h != NULL && i < h->n_addresses, CKR_ARGUMENTS_BAD);
    VTP_RETURN_VAL_IF_FAIL(path != NULL && resp != NULL && transport_error != NULL,
                           CKR_ARGUMENTS_BAD);
    pthread_once(&global_once, global_init);
    rv = get_once(h, i, path, h->connect_timeout_ms, &rb, &a);
    if (rv != CKR_OK)
        goto out;
    if (a.cc != CURLE_OK) {
        *transport_error = rb.too_large ? "response too large" : curl_easy_strerror(a.cc);
        rv = CKR_DEVICE_ERROR;
        goto out;
    }
    resp->status = a.status;
    resp->json = rb.len > 0 ? json_loadb((const char *)rb.data, rb.len, 0, &jerr) : NULL;
out:
    body_wipe(&rb);
    return rv;
}

struct check {
    struct vtp_http *h;
    size_t i;
};

/* A thread of its own: one health check of one address, so that no request waits for it. */
static void *checker_main(void *arg)
{
    struct check *ck = arg;
    struct vtp_http *h = ck->h;
    size_t i = ck->i;

    free(ck);
    if (health_ok(h, i, vtp_now_ms() + HEALTH_TIMEOUT_MS)) {
        long long since = atomic_load(&h->outage_since);

        atomic_store(&h->bad_until[i], 0);
        VTP_LOG_WARN("%s is usable again", h->addresses[i]);
        if (since != 0 && atomic_compare_exchange_strong(&h->outage_since, &since, 0))
            VTP_LOG_WARN("outage over after %lld ms", (long long)(vtp_now_ms() - since));
    } else {
        atomic_store(
            &h->bad_until[i],
            (long long)(vtp_now_ms() +
                        (atomic_load(&h->outage_since) != 0 ? OUTAGE_RECHECK_MS : RECHECK_MS)));
    }
    atomic_store(&h->checking[i], false);
    atomic_fetch_sub(&h->checkers, 1);
    return NULL;
}

static void start_check(struct vtp_http *h, size_t i)
{
    bool expected = false;
    struct check *ck;
    int rc = -1;

    if (atomic_load(&h->closing))
        return;
    if (h->no_threads) {
        /* CKF_LIBRARY_CANT_CREATE_OS_THREADS: no checker; the next request tries it again */
        atomic_store(&h->bad_until[i], 0);
        return;
    }
    if (!atomic_compare_exchange_strong(&h->checking[i], &expected, true))
        return;
    /* The previous checker of this address cleared checking[i] as its last step: it has
     * ended or is about to, so joining it costs no wait worth the name. */
    pthread_mutex_lock(&h->checker_lock);
    if (h->checker_joinable[i]) {
        pthread_join(h->checker[i], NULL);
        h->checker_joinable[i] = false;
    }
    atomic_fetch_add(&h->checkers, 1);
    ck = malloc(sizeof(*ck));
    if (ck != NULL) {
        ck->h = h;
        ck->i = i;
        rc = pthread_create(&h->checker[i], NULL, checker_main, ck);
        h->checker_joinable[i] = rc == 0;
    }
    pthread_mutex_unlock(&h->checker_lock);
    if (rc != 0) {
        free(ck);
        atomic_store(&h->bad_until[i], (long long)(vtp_now_ms() + RECHECK_MS));
        atomic_store(&h->checking[i], false);
        atomic_fetch_sub(&h->checkers, 1);
    }
}

/* The first usable address from 'from' on, in list order. An address marked bad is skipped; once
 * RECHECK_MS has passed, a background thread checks its health and, when it passes, the address
 * is used again (so the list order is restored after a failover), without any request waiting
 * for the check. With every address bad, 'from': requests keep trying them in turn. */
static size_t pick(struct vtp_http *h, size_t from)
{
    size_t k, n = h->n_addresses;

    for (k = 0; k < n; k++) {
        size_t i = (from + k) % n;
        long long until = atomic_load(&h->bad_until[i]);

        if (until == 0)
            return i;
        if (vtp_now_ms() >= until)
            start_check(h, i);
    }
    return from % n;
}

/* A usable answer from address i: it is good again, whatever its mark said. */
static void mark_good(struct vtp_http *h, size_t i)
{
    if (atomic_load(&h->bad_until[i]) != 0) {
        atomic_store(&h->bad_until[i], 0);
        VTP_LOG_WARN("%s answers again", h->addresses[i]);
    }
}

/* The time one attempt may take. With another address to turn to, a server that accepts the
 * connection and then hangs (SIGSTOP, a stuck proxy) gets half of what is left (at least
 * connect_timeout), so the next address still has time; otherwise all of it. */
static long attempt_budget(const struct vtp_http *h, int64_t remaining)
{
    int64_t half = remaining / 2;

    if (h->n_addresses < 2 || remaining <= h->connect_timeout_ms)
        return (long)remaining;
    return (long)(half > h->connect_timeout_ms ? half : h->connect_timeout_ms);
}

/* ---------------------------------------------------------------------------------------- */
/* the retry loop */

/* An outage: a request spent (at least half of) its deadline without a usable answer and every
 * address is marked bad. Requests then fail at once with CKR_DEVICE_ERROR instead of each
 * waiting out its own deadline (and, behind the batching of signatures, the deadline of the
 * request before it), while background health checks run every OUTAGE_RECHECK_MS; the first
 * address that passes one ends the outage. Returns whether a request may go to the network. */
static bool outage_admit(struct vtp_http *h)
{
    long long since = atomic_load(&h->outage_since);
    int64_t now;
    size_t i;

    if (since == 0)
        return true;
    now = vtp_now_ms();
    for (i = 0; i < h->n_addresses; i++) {
        long long until = atomic_load(&h->bad_until[i]);

        if (until == 0) { /* marked good by an answer: no outage any more */
            if (atomic_compare_exchange_strong(&h->outage_since, &since, 0))
                VTP_LOG_WARN("outage over after %lld ms", (long long)(now - since));
            return true;
        }
        if (now >= until)
            start_check(h, i);
    }
    return false;
}

static void outage_update(struct vtp_http *h, bool usable, int64_t spent)
{
    int64_t now = vtp_now_ms();
    long long since = atomic_load(&h->outage_since);
    size_t i;

    if (usable) {
        if (since != 0 && atomic_compare_exchange_strong(&h->outage_since, &since, 0))
            VTP_LOG_WARN("outage over after %lld ms", (long long)(now - since));
        return;
    }
    /* A request that only had a sliver of an operation's deadline proves nothing. */
    if (since != 0 || spent < h->timeout_ms / 2)
        return;
    for (i = 0; i < h->n_addresses; i++) {
        if (atomic_load(&h->bad_until[i]) == 0)
            return; /* another address still looks usable */
    }
    if (!atomic_compare_exchange_strong(&h->outage_since, &since, (long long)now))
        return;
    VTP_LOG_ERR("no Vault server usable within %lld ms: failing fast until a health check "
                "passes (every %d ms)",
                (long long)spent, OUTAGE_RECHECK_MS);
    for (i = 0; i < h->n_addresses; i++) {
        long long until = atomic_load(&h->bad_until[i]);

        if (until > now + OUTAGE_RECHECK_MS)
            atomic_compare_exchange_strong(&h->bad_until[i], &until,
                                           (long long)(now + OUTAGE_RECHECK_MS));
    }
}

/* Throttled: a request got nothing but 412/429 (a rate-limit quota, maybe with a
 * block_interval) for half of its deadline. Later requests then try once instead of retrying for
 * their whole deadline, so that callers queued behind them (the batching of signatures) are not
 * held for two deadlines and the server is not pressed further; the first answer other than
 * 412/429 ends it. */
static void throttle_update(struct vtp_http *h, enum verdict v, int64_t spent)
{
    long long since = atomic_load(&h->throttled_since);
    int64_t now = vtp_now_ms();

    if (v != ANSWER_RETRY) {
        if (since != 0 && atomic_compare_exchange_strong(&h->throttled_since, &since, 0))
            VTP_LOG_WARN("throttling over after %lld ms", (long long)(now - since));
    } else if (since == 0 && spent >= h->timeout_ms / 2 &&
               atomic_compare_exchange_strong(&h->throttled_since, &since, (long long)now)) {
        VTP_LOG_ERR("only 412/429 answers for %lld ms: one try per request until that ends",
                    (long long)spent);
    }
}

static CK_RV request_once(struct vtp_http *h, const struct vtp_http_req *req,
                          struct vtp_http_resp *resp, int64_t deadline)
{
    struct curl_slist *headers = NULL, *connect_to = NULL;
    struct body rb = {0};
    struct attempt a = {CURLE_OK, 0, NULL};
    char *body = NULL, *url = NULL, *redirect = NULL;
    size_t body_len = 0, idx, tried_permanent = 0, failed_in_round = 0;
    int64_t start, now, backoff = BACKOFF_START_MS, wait;
    enum verdict v = ANSWER_FINAL;
    int redirects = 0;
    bool answered = false, throttled = atomic_load(&h->throttled_since) != 0;
    json_t *json = NULL;
    json_error_t jerr;
    CURL *c = NULL;
    CK_RV rv;

    VTP_RETURN_VAL_IF_FAIL(h != NULL, CKR_ARGUMENTS_BAD);
    VTP_RETURN_VAL_IF_FAIL(req != NULL && req->method != NULL && req->path != NULL,
                           CKR_ARGUMENTS_BAD);
    VTP_RETURN_VAL_IF_FAIL(resp != NULL, CKR_ARGUMENTS_BAD);

    if (h->n_addresses == 0) {
        VTP_LOG_ERR("no Vault address configured");
        return CKR_DEVICE_ERROR;
    }
    if (!outage_admit(h)) {
        VTP_LOG_DEBUG("%s %s: no Vault server usable: failing fast", req->method, req->path);
        atomic_fetch_add(&h->failures, 1);
        return CKR_DEVICE_ERROR;
    }
    if (req->raw_body != NULL || req->body != NULL) {
        body = req->raw_body ? strdup(req->raw_body) : json_dumps(req->body, JSON_COMPACT);
        if (body == NULL) {
            rv = CKR_HOST_MEMORY;
            goto out;
        }
        body_len = strlen(body);
    }
    rv = build_headers(h, req, &headers);
    if (rv != CKR_OK)
        goto out;
    c = pool_take(h);
    if (c == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }

    start = vtp_now_ms();
    idx = pick(h, 0); /* the list order is the preference */

    for (;;) {
        int64_t t0 = vtp_now_ms();
        const char *target;

        now = t0;
        if (now >= deadline) {
            VTP_LOG_ERR("%s %s: no usable answer within the deadline (%lld ms)", req->method,
                        req->path, (long long)(now - start));
            break;
        }
        free(url);
        url = NULL;
        if (connect_to != NULL) {
            curl_slist_free_all(connect_to);
            connect_to = NULL;
        }
        if (redirect != NULL) {
            target = redirect;
        } else {
            rv = build_url(h, h->addresses[idx], req->path, &url, &connect_to);
            if (rv != CKR_OK)
                goto out;
            target = url;
        }
        body_wipe(&rb);
        rb.too_large = false;
        rv = perform(h, c, req->method, target, headers, connect_to, body, body_len,
                     attempt_budget(h, deadline - now), &rb, &a);
        if (rv != CKR_OK)
            goto out;
        atomic_fetch_add(&h->requests, 1);
        now = vtp_now_ms();

        if (a.cc != CURLE_OK) {
            atomic_fetch_add(&h->failures, 1);
            if (rb.too_large) {
                VTP_LOG_ERR("%s %s: response larger than %u bytes, refused", req->method, req->path,
                            VTP_HTTP_MAX_RESPONSE);
                rv = CKR_DEVICE_ERROR;
                goto out;
            }
            if (a.cc == CURLE_OUT_OF_MEMORY) {
                rv = CKR_HOST_MEMORY;
                goto out;
            }
            VTP_LOG_WARN("%s %s via %s: %s (%lld ms)", req->method, req->path,
                         redirect != NULL ? redirect : h->addresses[idx], curl_easy_strerror(a.cc),
                         (long long)(now - t0));
            answered = false;
            if (redirect == NULL)
                mark_bad(h, idx, curl_easy_strerror(a.cc));
            free(redirect); /* a dead redirect target: start over from the list */
            redirect = NULL;
            if (permanent_error(a.cc) && ++tried_permanent >= h->n_addresses)
                break;
            idx = pick(h, idx + 1);
            /* another address may well be up: try it at once; wait only after a full round */
            if (permanent_error(a.cc) || ++failed_in_round < h->n_addresses) {
                atomic_fetch_add(&h->retries, 1);
                continue;
            }
            failed_in_round = 0;
        } else {
            answered = true;
            VTP_LOG_DEBUG("%s %s -> %ld (%lld ms)", req->method, req->path, a.status,
                          (long long)(now - t0));
            if (a.location != NULL) {
                if (++redirects > MAX_REDIRECTS) {
                    VTP_LOG_ERR("%s %s: too many redirects", req->method, req->path);
                    break;
                }
                VTP_LOG_INFO("%s %s: %ld redirect, following it with the same method and body",
                             req->method, req->path, a.status);
                free(redirect);
                redirect = a.location;
                a.location = NULL;
                continue;
            }
            v = judge(a.status, &rb);
            if (v != ANSWER_UNAVAILABLE && redirect == NULL)
                mark_good(h, idx);
            if (v == ANSWER_FINAL)
                break;
            if (v == ANSWER_RETRY && throttled)
                break; /* one try while throttled: see throttle_update */
            if (v == ANSWER_UNAVAILABLE) {
                if (redirect == NULL)
                    mark_bad(h, idx, a.status == 503 ? "503, sealed or not active" : "HTTP error");
                free(redirect);
                redirect = NULL;
                idx = pick(h, idx + 1);
                if (++failed_in_round < h->n_addresses) {
                    atomic_fetch_add(&h->retries, 1);
                    continue;
                }
                failed_in_round = 0;
            }
        }

        /* back off and retry, within the deadline */
        now = vtp_now_ms();
        if (now >= deadline)
            break;
        wait = jittered(backoff);
        if (now + wait >= deadline)
            break; /* keep the last answer rather than sleep past the deadline */
        sleep_ms(wait);
        backoff = backoff * 2 > BACKOFF_CAP_MS ? BACKOFF_CAP_MS : backoff * 2;
        atomic_fetch_add(&h->retries, 1);
        if (!answered || v == ANSWER_UNAVAILABLE)
            idx = pick(h, idx); /* an address may have come back meanwhile */
    }

    outage_update(h, answered && v != ANSWER_UNAVAILABLE, vtp_now_ms() - start);
    if (answered)
        throttle_update(h, v, vtp_now_ms() - start);
    if (!answered) {
        rv = CKR_DEVICE_ERROR;
        goto out;
    }
    resp->scanned = rb.len > 0 && req->scan != NULL && a.status >= 200 && a.status < 300 &&
                    req->scan((const char *)rb.data, rb.len, req->scan_arg);
    if (rb.len > 0 && !resp->scanned) {
        json = json_loadb((const char *)rb.data, rb.len, 0, &jerr);
        if (json == NULL)
            VTP_LOG_WARN("%s %s -> %ld: body is not JSON (%s)", req->method, req->path, a.status,
                         jerr.text);
    }
    resp->status = a.status;
    resp->json = json;
    rv = CKR_OK;
out:
    free(a.location);
    free(redirect);
    free(url);
    curl_slist_free_all(connect_to);
    headers_free(headers);
    if (body != NULL)
        OPENSSL_clear_free(body, body_len);
    body_wipe(&rb);
    if (c != NULL) {
        if (rv == CKR_OK || answered)
            pool_give(h, c);
        else
            curl_easy_cleanup(c); /* a handle in an unknown state is not reused */
    }
    return rv;
}

/* Set while this thread runs an auth hook: requests made by the hook do not re-enter it. */
static __thread bool in_auth_hook;
/* The deadline of the outermost vtp_http_request on this thread (0: none). The auth hooks'
 * requests and the repeat after a re-login share it, so one call never outlives timeout. */
static __thread int64_t op_deadline;

void vtp_http_call_deadline(int64_t deadline_ms)
{
    op_deadline = deadline_ms;
}

void vtp_http_set_no_threads(struct vtp_http *h, bool no_threads)
{
    h->no_threads = no_threads;
}

void vtp_http_set_auth_hooks(struct vtp_http *h, const struct vtp_http_auth_hooks *hooks)
{
    h->hooks = *hooks;
}

CK_RV vtp_http_request(struct vtp_http *h, const struct vtp_http_req *req,
                       struct vtp_http_resp *resp)
{
    bool hooks = req != NULL && !req->no_token && h != NULL && !in_auth_hook;
    bool outer = op_deadline == 0;
    CK_RV rv;

    VTP_RETURN_VAL_IF_FAIL(h != NULL, CKR_ARGUMENTS_BAD);
    if (outer)
        op_deadline = vtp_now_ms() + h->timeout_ms;
    if (hooks && h->hooks.before != NULL) {
        in_auth_hook = true;
        h->hooks.before(h->hooks.arg);
        in_auth_hook = false;
    }
    rv = request_once(h, req, resp, op_deadline);
    if (rv != CKR_OK || !hooks || h->hooks.relogin == NULL || resp->status != 403 ||
        !vtp_http_token_refused(resp->status, resp->json))
        goto out;
    /* The token is no longer valid: log in again once and repeat the request. */
    VTP_LOG_WARN("%s %s: Vault refused the token; logging in again", req->method, req->path);
    in_auth_hook = true;
    rv = h->hooks.relogin(h->hooks.arg);
    in_auth_hook = false;
    if (rv != CKR_OK) {
        VTP_LOG_ERR("re-login failed: %s", vtp_rv_name(rv));
        rv = CKR_OK; /* the caller maps the original 403 */
        goto out;
    }
    vtp_http_resp_clear(resp);
    rv = request_once(h, req, resp, op_deadline);
out:
    if (outer)
        op_deadline = 0;
    return rv;
}

/* ---------------------------------------------------------------------------------------- */
/* What this layer itself reads in an answer: the errors envelope, a refused token, a server
 * that cannot serve now. What any other answer means is transit.c's business. */

const char *vtp_vault_error_text(const json_t *body)
{
    const json_t *errors, *first;
    const char *s;

    if (body == NULL || !json_is_object(body))
        return "";
    errors = json_object_get(body, "errors");
    if (!json_is_array(errors) || json_array_size(errors) == 0)
        return "";
    first = json_array_get(errors, 0);
    s = json_string_value(first);
    return s != NULL ? s : "";
}

bool vtp_vault_error_contains(const json_t *body, const char *needle)
{
    const json_t *errors, *e;
    size_t i;

    if (body == NULL || !json_is_object(body))
        return false;
    errors = json_object_get(body, "errors");
    if (!json_is_array(errors))
        return false;
    json_array_foreach(errors, i, e)
    {
        const char *s = json_string_value(e);

        if (s != NULL && strstr(s, needle) != NULL)
            return true;
    }
    return false;
}

/* OpenBao's invalid token: exactly {"errors":["permission denied"]}, not multierror-wrapped
 * (a policy denial is "1 error occurred:\n\t* permission denied\n\n" on both products). */
static bool bare_permission_denied(const json_t *body)
{
    const json_t *errors;

    if (body == NULL || !json_is_object(body))
        return false;
    errors = json_object_get(body, "errors");
    return json_is_array(errors) && json_array_size(errors) == 1 &&
           strcmp(vtp_vault_error_text(body), "permission denied") == 0;
}

bool vtp_http_token_refused(long status, const json_t *body)
{
    if (status == 400)
        return vtp_vault_error_contains(body, "missing client token"); /* Vault, no token */
    return status == 403 &&
           (vtp_vault_error_contains(body, "invalid token") || bare_permission_denied(body));
}

bool vtp_http_unavailable(long status, const json_t *body)
{
    if (status == 500)
        return vtp_vault_error_contains(body, NODE_NOT_ACTIVE);
    return status == 0 || (status >= 300 && status < 400) || status == 412 || status == 429 ||
           status > 500;
}
