/* p11bench.h - shared pieces of the p11bench signing benchmark (tests/bench/).
 *
 * p11bench.c      options, threads, timing, latency histogram, text and JSON output
 * bench-p11.c     any PKCS#11 module through dlopen + C_GetFunctionList
 * bench-http.c    the same signatures as plain Transit HTTP requests (libcurl)
 * bench-crypto.c  mechanisms, inputs, base64, local verification with OpenSSL
 */
#ifndef P11BENCH_H
#define P11BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

#ifndef CKK_EC_EDWARDS
#define CKK_EC_EDWARDS 0x40UL
#endif
#ifndef CKM_EDDSA
#define CKM_EDDSA 0x1057UL
#endif

#define BENCH_MAX_SIG 1024 /* RSA-8192 */
#define BENCH_MAX_BATCH 240 /* --batch: what OpenBao's default JSON limits let through */
#define BENCH_MAX_MSG 4096
#define BENCH_ERR_LEN 256

enum bench_kind { BENCH_KIND_EC, BENCH_KIND_RSA, BENCH_KIND_ED25519 };

/* What the PKCS#11 mechanism takes as its input. */
enum bench_input {
    BENCH_IN_HASH,       /* the message; the mechanism hashes it (CKM_ECDSA_SHA256 ...) */
    BENCH_IN_DIGEST,     /* the SHA-256 digest (CKM_ECDSA, CKM_RSA_PKCS_PSS) */
    BENCH_IN_DIGESTINFO, /* DER DigestInfo of SHA-256 || digest (CKM_RSA_PKCS) */
    BENCH_IN_MESSAGE,    /* the message itself, never hashed (CKM_EDDSA) */
};

struct bench_mech {
    const char *name;
    CK_MECHANISM_TYPE type;
    const char *ckm_name;
    enum bench_kind kind;
    enum bench_input input;
    bool pss;                   /* CK_RSA_PKCS_PSS_PARAMS: SHA-256, MGF1-SHA-256, salt 32 */
    const char *transit_hash;   /* hash_algorithm for Transit, NULL: not sent */
    const char *transit_sigalg; /* signature_algorithm for Transit, NULL: not sent */
};

#define BENCH_PSS_SALT 32

const struct bench_mech *bench_mech_lookup(const char *name);
const char *bench_mech_names(void);
const char *bench_kind_name(enum bench_kind kind);

/* One signing input: the message and what each path sends for it. */
struct bench_msg {
    unsigned char msg[BENCH_MAX_MSG];
    size_t msg_len;
    unsigned char digest[32];
    unsigned char p11_in[BENCH_MAX_MSG]; /* what C_Sign gets */
    size_t p11_in_len;
    const unsigned char *http_in; /* what Transit gets as `input` (prehashed unless eddsa) */
    size_t http_in_len;
};

/* Fills msg->msg with msg_len bytes from seed and counter and derives the rest. */
void bench_msg_make(struct bench_msg *m, const struct bench_mech *mech, size_t msg_len,
                    uint64_t seed, uint64_t counter);

/* Returns 1 when sig is a valid signature of m under pub, 0 when it is not. der_ecdsa: the
 * ECDSA signature is DER (Transit asn1) rather than PKCS#11's r||s. */
int bench_verify(EVP_PKEY *pub, const struct bench_mech *mech, const struct bench_msg *m,
                 const unsigned char *sig, size_t sig_len, bool der_ecdsa);

/* Checks that pub is of the kind the mechanism needs; writes a message to err otherwise. */
int bench_check_pub_kind(EVP_PKEY *pub, const struct bench_mech *mech, char *err, size_t errlen);

/* Standard base64 with padding. Encode writes a NUL-terminated string of
 * 4 * ((len + 2) / 3) characters; decode returns the byte count or -1. */
void bench_b64_encode(const unsigned char *in, size_t len, char *out);
long bench_b64_decode(const char *in, size_t in_len, unsigned char *out, size_t out_size);

/* --- options --- */
struct bench_opts {
    const char *module;
    const char *label;
    const char *token;
    const char *pin;
    bool login;
    bool have_slot;
    CK_SLOT_ID slot;
    const struct bench_mech *mech;
    unsigned threads;
    double seconds;
    double warmup;
    unsigned long verify_every; /* 0: off */
    size_t msg_len;
    bool json;
    bool direct_http;
    const char *mount;
    const char *key;
    unsigned batch; /* --direct-http: signatures per request (batch_input when > 1) */
    bool connections; /* --connections gave the thread count (a direct-HTTP schedule) */
};

/* --- PKCS#11 module (bench-p11.c) --- */
struct bench_p11;

/* Loads and initializes the module, finds the slot and the private key, logs in when asked.
 * *pub gets the public key for --verify (NULL when it cannot be had and verify is off). */
int bench_p11_setup(const struct bench_opts *o, struct bench_p11 **out, EVP_PKEY **pub, char *desc,
                    size_t desc_len);
int bench_p11_thread_open(struct bench_p11 *p, CK_SESSION_HANDLE *sess, char *err, size_t errlen);
CK_RV bench_p11_sign(struct bench_p11 *p, CK_SESSION_HANDLE sess, const struct bench_msg *m,
                     unsigned char *sig, size_t *sig_len);
void bench_p11_thread_close(struct bench_p11 *p, CK_SESSION_HANDLE sess);
void bench_p11_teardown(struct bench_p11 *p);
const char *bench_ckr_name(CK_RV rv);

/* --- direct Transit HTTP (bench-http.c) --- */
struct bench_http;
struct bench_http_thread;

int bench_http_setup(const struct bench_opts *o, struct bench_http **out, EVP_PKEY **pub,
                     char *desc, size_t desc_len);
int bench_http_thread_open(struct bench_http *h, struct bench_http_thread **out, char *err,
                           size_t errlen);
/* Returns 0 and the raw signature (DER for ECDSA) or -1 with a message in err. */
int bench_http_sign(struct bench_http_thread *t, const struct bench_msg *m, unsigned char *sig,
                    size_t *sig_len, char *err, size_t errlen);
void bench_http_thread_close(struct bench_http_thread *t);
void bench_http_teardown(struct bench_http *h);

#endif /* P11BENCH_H */
