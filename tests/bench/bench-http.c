/* bench-http.c - p11bench --direct-http: the same signatures as plain Transit requests.
 *
 * This is the baseline a hand-written Transit client gets (SPIRE's Vault KeyManager, for one):
 * one POST /v1/<mount>/sign/<key> per signature, one keep-alive connection (CURL handle) per
 * thread, with the parameters the module sends: the SHA-256 digest as a prehashed input,
 * hash_algorithm, signature_algorithm, salt_length for PSS, marshaling_algorithm asn1 and the
 * key version. With --batch N, each request carries the message N times in batch_input (each
 * with a reference): what Transit itself makes of a batch, with no module in the way.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/pem.h>

#include "p11bench.h"

#define RESP_MAX (1024 * 1024)

struct bench_http {
    char *url;
    struct curl_slist *hdrs;
    char *token_hdr;
    const char *cacert, *capath, *client_cert, *client_key;
    char params[512]; /* the request body after "input" */
    unsigned batch;   /* signatures per request */
    bool curl_ready;
};

struct buf {
    char *p;
    size_t len, cap;
};

struct bench_http_thread {
    struct bench_http *h;
    CURL *c;
    char *body;
    size_t body_size;
    struct buf resp;
    char curl_err[CURL_ERROR_SIZE];
};

static size_t on_write(char *data, size_t size, size_t nmemb, void *user)
{
    struct buf *b = user;
    size_t n = size * nmemb;

    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *np;

        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > RESP_MAX)
            return 0; /* curl reports CURLE_WRITE_ERROR */
        np = realloc(b->p, cap);
        if (np == NULL)
            return 0;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

/* The length of a response body for a message: at most max, without the trailing newline. */
static int shown(const struct buf *b, int max)
{
    size_t n = b->len;

    while (n > 0 && (b->p[n - 1] == '\n' || b->p[n - 1] == '\r'))
        n--;
    return n > (size_t)max ? max : (int)n;
}

static CURL *new_handle(struct bench_http *h, const char *url, struct buf *resp, char *errbuf)
{
    CURL *c = curl_easy_init();

    if (c == NULL)
        return NULL;
    if (curl_easy_setopt(c, CURLOPT_URL, url) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h->hdrs) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write) != CURLE_OK ||
        curl_easy_setopt(c, CURLOPT_WRITEDATA, resp) != CURLE_OK ||
        (h->cacert != NULL && curl_easy_setopt(c, CURLOPT_CAINFO, h->cacert) != CURLE_OK) ||
        (h->capath != NULL && curl_easy_setopt(c, CURLOPT_CAPATH, h->capath) != CURLE_OK) ||
        (h->client_cert != NULL &&
         curl_easy_setopt(c, CURLOPT_SSLCERT, h->client_cert) != CURLE_OK) ||
        (h->client_key != NULL && curl_easy_setopt(c, CURLOPT_SSLKEY, h->client_key) != CURLE_OK)) {
        curl_easy_cleanup(c);
        return NULL;
    }
    return c;
}

static char *concat(const char *a, const char *b, const char *c, const char *d, const char *e)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + strlen(d) + strlen(e) + 1;
    char *s = malloc(n);

    if (s != NULL)
        snprintf(s, n, "%s%s%s%s%s", a, b, c, d, e);
    return s;
}

/* GET /v1/<mount>/keys/<key>: type, latest version and public key. */
static int read_key(struct bench_http *h, const char *addr, const struct bench_opts *o,
                    unsigned long *version, EVP_PKEY **pub)
{
    char errbuf[CURL_ERROR_SIZE] = "", vbuf[32];
    struct buf resp = {0};
    json_t *root = NULL, *data, *ver;
    const char *type, *pem;
    char *url = concat(addr, "/v1/", o->mount, "/keys/", o->key);
    CURL *c = NULL;
    long code = 0;
    CURLcode cr;
    int ok = -1;
    bool type_ok;

    if (url == NULL || (c = new_handle(h, url, &resp, errbuf)) == NULL) {
        fprintf(stderr, "p11bench: cannot set up a libcurl handle\n");
        goto out;
    }
    cr = curl_easy_perform(c);
    if (cr != CURLE_OK) {
        fprintf(stderr, "p11bench: GET %s: %s\n", url, errbuf[0] ? errbuf : curl_easy_strerror(cr));
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) {
        fprintf(stderr, "p11bench: GET %s: HTTP %ld: %.*s\n", url, code, shown(&resp, 300),
                resp.p != NULL ? resp.p : "");
        goto out;
    }
    root = json_loadb(resp.p, resp.len, 0, NULL);
    data = json_object_get(root, "data");
    type = json_string_value(json_object_get(data, "type"));
    ver = json_object_get(data, "latest_version");
    if (type == NULL || !json_is_integer(ver) || json_integer_value(ver) < 1) {
        fprintf(stderr, "p11bench: GET %s: no type or latest_version in the answer\n", url);
        goto out;
    }
    switch (o->mech->kind) {
    case BENCH_KIND_EC:
        type_ok = strncmp(type, "ecdsa-", 6) == 0;
        break;
    case BENCH_KIND_RSA:
        type_ok = strncmp(type, "rsa-", 4) == 0;
        break;
    default:
        type_ok = strcmp(type, "ed25519") == 0;
        break;
    }
    if (!type_ok) {
        fprintf(stderr, "p11bench: Transit key %s is %s; %s needs an %s key\n", o->key, type,
                o->mech->name, bench_kind_name(o->mech->kind));
        goto out;
    }
    *version = (unsigned long)json_integer_value(ver);
    *pub = NULL;
    if (o->verify_every > 0) {
        snprintf(vbuf, sizeof(vbuf), "%lu", *version);
        pem = json_string_value(
            json_object_get(json_object_get(json_object_get(data, "keys"), vbuf), "public_key"));
        if (pem == NULL) {
            fprintf(stderr, "p11bench: Transit key %s v%lu has no public_key\n", o->key, *version);
            goto out;
        }
        if (o->mech->kind == BENCH_KIND_ED25519) {
            unsigned char raw[64];
            long n = bench_b64_decode(pem, strlen(pem), raw, sizeof(raw));

            if (n == 32)
                *pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, 32);
        } else {
            BIO *bio = BIO_new_mem_buf(pem, -1);

            if (bio != NULL)
                *pub = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
            BIO_free(bio);
        }
        if (*pub == NULL) {
            fprintf(stderr, "p11bench: cannot parse the public key of Transit key %s\n", o->key);
            goto out;
        }
    }
    ok = 0;
out:
    json_decref(root);
    curl_easy_cleanup(c);
    free(resp.p);
    free(url);
    return ok;
}

int bench_http_setup(const struct bench_opts *o, struct bench_http **out, EVP_PKEY **pub,
                     char *desc, size_t desc_len)
{
    const char *addr_env = getenv("VAULT_ADDR"), *token = getenv("VAULT_TOKEN");
    const char *ns = getenv("VAULT_NAMESPACE");
    const struct bench_mech *m = o->mech;
    struct bench_http *h = NULL;
    struct curl_slist *l;
    unsigned long version = 0;
    char addr[1024], *ns_hdr = NULL;
    size_t alen;
    int n;

    if (addr_env == NULL || *addr_env == '\0' || token == NULL || *token == '\0') {
        fprintf(stderr, "p11bench: --direct-http needs VAULT_ADDR and VAULT_TOKEN\n");
        return -1;
    }
    if (o->key == NULL) {
        fprintf(stderr, "p11bench: --direct-http needs --key NAME (the Transit key name)\n");
        return -1;
    }
    alen = strlen(addr_env);
    while (alen > 0 && addr_env[alen - 1] == '/')
        alen--;
    if (alen >= sizeof(addr)) {
        fprintf(stderr, "p11bench: VAULT_ADDR is too long\n");
        return -1;
    }
    memcpy(addr, addr_env, alen);
    addr[alen] = '\0';

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "p11bench: curl_global_init failed\n");
        return -1;
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL)
        goto oom;
    h->curl_ready = true;
    h->cacert = getenv("VAULT_CACERT");
    h->capath = getenv("VAULT_CAPATH");
    h->client_cert = getenv("VAULT_CLIENT_CERT");
    h->client_key = getenv("VAULT_CLIENT_KEY");
    h->token_hdr = concat("X-Vault-Token: ", token, "", "", "");
    if (h->token_hdr == NULL)
        goto oom;
    if ((l = curl_slist_append(NULL, h->token_hdr)) == NULL)
        goto oom;
    h->hdrs = l;
    if ((l = curl_slist_append(h->hdrs, "Content-Type: application/json")) == NULL)
        goto oom;
    h->hdrs = l;
    if ((l = curl_slist_append(h->hdrs, "Expect:")) == NULL)
        goto oom;
    h->hdrs = l;
    if (ns != NULL && *ns != '\0') {
        ns_hdr = concat("X-Vault-Namespace: ", ns, "", "", "");
        if (ns_hdr == NULL || (l = curl_slist_append(h->hdrs, ns_hdr)) == NULL)
            goto oom;
        h->hdrs = l;
        free(ns_hdr);
        ns_hdr = NULL;
    }
    h->batch = o->batch > 0 ? o->batch : 1;
    h->url = concat(addr, "/v1/", o->mount, "/sign/", o->key);
    if (h->url == NULL)
        goto oom;

    if (read_key(h, addr, o, &version, pub) != 0)
        goto fail;

    n = snprintf(
        h->params, sizeof(h->params),
        "%s%s%s%s%s%s%s%s,\"marshaling_algorithm\":"
        "\"asn1\",\"key_version\":%lu}",
        m->input != BENCH_IN_MESSAGE ? ",\"prehashed\":true" : "",
        m->transit_hash != NULL ? ",\"hash_algorithm\":\"" : "",
        m->transit_hash != NULL ? m->transit_hash : "", m->transit_hash != NULL ? "\"" : "",
        m->transit_sigalg != NULL ? ",\"signature_algorithm\":\"" : "",
        m->transit_sigalg != NULL ? m->transit_sigalg : "", m->transit_sigalg != NULL ? "\"" : "",
        m->pss ? ",\"salt_length\":\""
                 "32"
                 "\""
               : "",
        version);
    if (n < 0 || (size_t)n >= sizeof(h->params))
        goto oom;
    if (h->batch > 1)
        snprintf(desc, desc_len,
                 "direct HTTP POST %s (v%lu), batch_input of %u signatures per request, one "
                 "keep-alive connection per thread",
                 h->url, version, h->batch);
    else
        snprintf(desc, desc_len,
                 "direct HTTP POST %s (v%lu), one keep-alive connection per thread", h->url,
                 version);
    *out = h;
    return 0;
oom:
    fprintf(stderr, "p11bench: out of memory\n");
fail:
    free(ns_hdr);
    if (h != NULL)
        bench_http_teardown(h);
    else
        curl_global_cleanup();
    if (*pub != NULL) {
        EVP_PKEY_free(*pub);
        *pub = NULL;
    }
    return -1;
}

int bench_http_thread_open(struct bench_http *h, struct bench_http_thread **out, char *err,
                           size_t errlen)
{
    struct bench_http_thread *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    t->h = h;
    /* per item: {"input":"<b64>","reference":"<n>"}, */
    t->body_size = h->batch * (4 * ((BENCH_MAX_MSG + 2) / 3) + 48) + sizeof(h->params) + 32;
    t->body = malloc(t->body_size);
    t->c = new_handle(h, h->url, &t->resp, t->curl_err);
    if (t->body == NULL || t->c == NULL || curl_easy_setopt(t->c, CURLOPT_POST, 1L) != CURLE_OK) {
        snprintf(err, errlen, "cannot set up a libcurl handle");
        bench_http_thread_close(t);
        return -1;
    }
    *out = t;
    return 0;
}

int bench_http_sign(struct bench_http_thread *t, const struct bench_msg *m, unsigned char *sig,
                    size_t *sig_len, char *err, size_t errlen)
{
    static const char head[] = "{\"input\":\"";
    json_t *root = NULL, *results = NULL;
    const char *s, *b64;
    size_t off = sizeof(head) - 1, plen = strlen(t->h->params), b64_len;
    long code = 0, n;
    CURLcode cr;
    int rc = -1;

    if (t->h->batch == 1) {
        memcpy(t->body, head, off);
        bench_b64_encode(m->http_in, m->http_in_len, t->body + off);
        off += strlen(t->body + off);
        t->body[off++] = '"';
    } else {
        /* the same input N times: Transit signs each item on its own (ECDSA and PSS are
         * randomised, so the signatures still differ) */
        size_t first = (size_t)sprintf(t->body, "{\"batch_input\":[{\"input\":\"");

        bench_b64_encode(m->http_in, m->http_in_len, t->body + first);
        b64_len = strlen(t->body + first);
        off = first + b64_len;
        off += (size_t)sprintf(t->body + off, "\",\"reference\":\"0\"}");
        for (unsigned i = 1; i < t->h->batch; i++) {
            off += (size_t)sprintf(t->body + off, ",{\"input\":\"");
            memcpy(t->body + off, t->body + first, b64_len);
            off += b64_len;
            off += (size_t)sprintf(t->body + off, "\",\"reference\":\"%u\"}", i);
        }
        t->body[off++] = ']';
    }
    memcpy(t->body + off, t->h->params, plen + 1);
    off += plen;

    t->resp.len = 0;
    t->curl_err[0] = '\0';
    if (curl_easy_setopt(t->c, CURLOPT_POSTFIELDS, t->body) != CURLE_OK ||
        curl_easy_setopt(t->c, CURLOPT_POSTFIELDSIZE, (long)off) != CURLE_OK) {
        snprintf(err, errlen, "curl_easy_setopt failed");
        return -1;
    }
    cr = curl_easy_perform(t->c);
    if (cr != CURLE_OK) {
        snprintf(err, errlen, "POST %s: %s", t->h->url,
                 t->curl_err[0] ? t->curl_err : curl_easy_strerror(cr));
        return -1;
    }
    curl_easy_getinfo(t->c, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) {
        snprintf(err, errlen, "HTTP %ld: %.*s", code, shown(&t->resp, 200),
                 t->resp.p != NULL ? t->resp.p : "");
        return -1;
    }
    root = json_loadb(t->resp.p, t->resp.len, 0, NULL);
    if (t->h->batch > 1) {
        /* every item must have a signature; the first one is the one verified */
        results = json_object_get(json_object_get(root, "data"), "batch_results");
        if (json_array_size(results) != t->h->batch) {
            snprintf(err, errlen, "HTTP 200 with %zu batch results for %u items: %.*s",
                     json_array_size(results), t->h->batch, shown(&t->resp, 200), t->resp.p);
            goto out;
        }
        for (size_t i = 0; i < t->h->batch; i++) {
            const json_t *r = json_array_get(results, i);
            if (json_string_value(json_object_get(r, "signature")) == NULL) {
                snprintf(err, errlen, "batch item %zu has no signature: %.200s", i,
                         json_string_value(json_object_get(r, "error")) != NULL
                             ? json_string_value(json_object_get(r, "error"))
                             : "(no error either)");
                goto out;
            }
        }
        s = json_string_value(json_object_get(json_array_get(results, 0), "signature"));
    } else {
        s = json_string_value(json_object_get(json_object_get(root, "data"), "signature"));
    }
    if (s == NULL || strncmp(s, "vault:v", 7) != 0 || (b64 = strchr(s + 7, ':')) == NULL) {
        snprintf(err, errlen, "HTTP 200 without a vault:vN: signature: %.*s", shown(&t->resp, 200),
                 t->resp.p);
        goto out;
    }
    b64++;
    n = bench_b64_decode(b64, strlen(b64), sig, BENCH_MAX_SIG);
    if (n <= 0) {
        snprintf(err, errlen, "signature is not base64: %.100s", s);
        goto out;
    }
    *sig_len = (size_t)n;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

void bench_http_thread_close(struct bench_http_thread *t)
{
    if (t == NULL)
        return;
    curl_easy_cleanup(t->c);
    free(t->body);
    free(t->resp.p);
    free(t);
}

void bench_http_teardown(struct bench_http *h)
{
    if (h == NULL)
        return;
    curl_slist_free_all(h->hdrs);
    if (h->token_hdr != NULL)
        OPENSSL_cleanse(h->token_hdr, strlen(h->token_hdr));
    free(h->token_hdr);
    free(h->url);
    if (h->curl_ready)
        curl_global_cleanup();
    free(h);
}
