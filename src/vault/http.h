/* http.h - libcurl client for Vault/OpenBao (src/vault/http.c).
 *
 * One struct vtp_http per [vault] section: the ordered server addresses, TLS settings, the
 * current client token and a pool of reusable CURL easy handles (keep-alive; a handle is used by
 * one thread at a time; CURLOPT_NOSIGNAL). No lock is held during a transfer.
 */
#ifndef VTP_HTTP_H
#define VTP_HTTP_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "vtp-pkcs11.h"
#include "cfg.h"

/* Responses larger than this are refused (CKR_DEVICE_ERROR). */
#define VTP_HTTP_MAX_RESPONSE (8u * 1024u * 1024u)

struct vtp_http;

struct vtp_http_req {
    const char *method;     /* "GET", "POST", "PUT", "DELETE", "LIST" */
    const char *path;       /* below /v1/, e.g. "transit/keys/k1"; caller escapes segments */
    const char *namespace_; /* X-Vault-Namespace, or NULL */
    const json_t *body;     /* JSON body, or NULL for none */
    const char *raw_body;   /* or the body already serialised (the sign hot path) */
    bool no_token;          /* do not send X-Vault-Token (login endpoints) */
    /* For a 2xx answer: reads the body before it is parsed; when it returns true the body is
     * not parsed (resp->json stays NULL, resp->scanned is true). The sign hot path, where
     * parsing the answer with jansson cost more than the rest of the client's work. */
    bool (*scan)(const char *body, size_t len, void *arg);
    void *scan_arg;
};

struct vtp_http_resp {
    long status;  /* final HTTP status */
    json_t *json; /* parsed body (NULL for an empty body, e.g. 204, or a scanned one) */
    bool scanned; /* req->scan took the body */
};

/* Statistics (module counter, exposed in the debug log and to tests). */
struct vtp_http_stats {
    unsigned long requests;  /* HTTP requests sent, retries included */
    unsigned long failures;  /* transport failures */
    unsigned long retries;
};

CK_RV vtp_http_new(const struct vtp_vault_conf *conf, struct vtp_http **out);
void vtp_http_free(struct vtp_http *h);

/* Sets (or clears, with NULL) the client token; the old one is wiped. Thread-safe. */
CK_RV vtp_http_set_token(struct vtp_http *h, const char *token);
bool vtp_http_has_token(struct vtp_http *h);

/* Sends one request and returns CKR_OK once a final HTTP response arrived, whatever its status
 * (the caller classifies it: vtp_transit_classify). Transport failures, 429, 502, 503 and 504 are
 * retried against the next address with exponential backoff and jitter until the configured
 * deadline; 307 redirects are followed keeping method and body. CKR_DEVICE_ERROR when no server
 * answered in time, CKR_HOST_MEMORY on allocation failure. resp->json must be released with
 * vtp_http_resp_clear. */
CK_RV vtp_http_request(struct vtp_http *h, const struct vtp_http_req *req,
                       struct vtp_http_resp *resp);
void vtp_http_resp_clear(struct vtp_http_resp *resp);

/* Hooks of the auth layer (src/vault/auth.c). Requests a hook makes do not run the hooks. */
struct vtp_http_auth_hooks {
    /* Before each request that sends a token: renew it, re-read a token file... (cheap when
     * nothing is due). */
    void (*before)(void *arg);
    /* After Vault refused the token as invalid (CKR_USER_NOT_LOGGED_IN): log in again;
     * CKR_OK means the request is repeated once with the new token. */
    CK_RV (*relogin)(void *arg);
    void *arg;
};
/* The application passed CKF_LIBRARY_CANT_CREATE_OS_THREADS: health checks of failed
 * addresses are not run in threads of their own (requests simply try them again). */
void vtp_http_set_no_threads(struct vtp_http *h, bool no_threads);
/* The requests this thread makes from now on must end by deadline_ms (vtp_now_ms() clock), not
 * timeout after each one starts: a signature that waited in a batch queue has used part of its
 * time already. 0 goes back to one timeout per request. */
void vtp_http_call_deadline(int64_t deadline_ms);
/* Set once after vtp_http_new, before the first request. */
void vtp_http_set_auth_hooks(struct vtp_http *h, const struct vtp_http_auth_hooks *hooks);

void vtp_http_get_stats(struct vtp_http *h, struct vtp_http_stats *out);

/* The first entry of "errors" (or ""), for log lines; points into body. */
const char *vtp_vault_error_text(const json_t *body);
/* Does any entry of body's "errors" contain needle? body may be NULL or not an object. */
bool vtp_vault_error_contains(const json_t *body, const char *needle);
/* Did Vault refuse the request's token (invalid, expired, revoked, or none sent)? A 403 whose
 * errors say "invalid token" (Vault) or are exactly "permission denied" (OpenBao; a policy
 * denial is multierror-wrapped on both), or Vault's 400 "missing client token". */
bool vtp_http_token_refused(long status, const json_t *body);
/* Is this final answer one of a server that cannot serve now (what vtp_http_request retries
 * until its deadline): no answer (0), a redirect not followed, 412, 429, 5xx other than 500, a
 * 500 "node not active"? */
bool vtp_http_unavailable(long status, const json_t *body);

/* vault-transit-pkcs11-check: the number of addresses, and one unauthenticated GET of path
 * (sys/health, sys/seal-status) on address i (0-based, config order) alone, within
 * connect_timeout, with no retry and no redirect followed. CKR_OK with the answer, whatever its
 * status; CKR_DEVICE_ERROR with *transport_error (a static text: "Couldn't connect to server")
 * when none came. */
size_t vtp_http_n_addresses(const struct vtp_http *h);
CK_RV vtp_http_probe(struct vtp_http *h, size_t i, const char *path, struct vtp_http_resp *resp,
                     const char **transport_error);

/* Escapes one path segment (key names are [\w.-] already; this is belt and braces). */
char *vtp_http_escape(const char *segment);

/* Called after fork() in the child: forget handles without touching the parent's sockets. */
void vtp_http_forget(struct vtp_http *h);

#endif /* VTP_HTTP_H */
