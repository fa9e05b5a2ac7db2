/* fuzz.h - what the libFuzzer harnesses of tests/fuzz share: a reader that takes values from
 * the fuzz input, the check that stops a run when a property breaks, and the setup that turns
 * the module's debug log on (into /dev/null) so that its lines are formatted from fuzzed data
 * too. A harness is one LLVMFuzzerTestOneInput; libFuzzer brings main(). */
#ifndef VTP_FUZZ_H
#define VTP_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attr.h"
#include "kvstore.h"
#include "log.h"
#include "object.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken property is a crash: libFuzzer keeps the input (crash-*) and check-fuzz fails. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FUZZ PROPERTY FAILED %s:%d: %s: ", __FILE__, __LINE__, #cond);        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The input, consumed from the front; once it is used up every value reads as zero. */
struct fz {
    const uint8_t *p;
    size_t n;
};

static inline uint8_t fz_u8(struct fz *f)
{
    uint8_t v = 0;

    if (f->n > 0) {
        v = *f->p++;
        f->n--;
    }
    return v;
}

static inline uint32_t fz_u32(struct fz *f)
{
    uint32_t v = 0;

    for (int i = 0; i < 4; i++)
        v = v << 8 | fz_u8(f);
    return v;
}

static inline uint64_t fz_u64(struct fz *f)
{
    return (uint64_t)fz_u32(f) << 32 | fz_u32(f);
}

/* Up to max bytes (fewer at the end of the input); *len says how many. Points into the input. */
static inline const uint8_t *fz_bytes(struct fz *f, size_t max, size_t *len)
{
    const uint8_t *p = f->p;

    *len = max < f->n ? max : f->n;
    f->p += *len;
    f->n -= *len;
    return p;
}

/* A malloc'ed copy of len bytes (ASan sees every read past its end), never NULL for len 0. */
static inline void *fz_dup(const void *p, size_t len)
{
    void *c = malloc(len > 0 ? len : 1);

    if (c == NULL)
        abort();
    if (len > 0)
        memcpy(c, p, len);
    return c;
}

/* The same as a NUL-terminated string (cut at the first NUL of the input). */
static inline char *fz_strdup(const void *p, size_t len)
{
    char *c = malloc(len + 1);

    if (c == NULL)
        abort();
    if (len > 0)
        memcpy(c, p, len);
    c[len] = '\0';
    return c;
}

/* Debug logging into /dev/null unless VAULT_TRANSIT_PKCS11_DEBUG is set already (set it to
 * "level:4,file:/dev/stderr" to read what a reproducer does). */
static inline void fuzz_setup_log(void)
{
    setenv("VAULT_TRANSIT_PKCS11_DEBUG", "level:4,file:/dev/null", 0);
    vtp_log_init();
}

/* Attribute types worth asking any object for: those the module knows and some it does not. */
static const CK_ATTRIBUTE_TYPE fuzz_attr_types[] = {
    CKA_CLASS,
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_LABEL,
    CKA_APPLICATION,
    CKA_VALUE,
    CKA_OBJECT_ID,
    CKA_CERTIFICATE_TYPE,
    CKA_ISSUER,
    CKA_SERIAL_NUMBER,
    CKA_TRUSTED,
    CKA_CERTIFICATE_CATEGORY,
    CKA_JAVA_MIDP_SECURITY_DOMAIN,
    CKA_URL,
    CKA_HASH_OF_SUBJECT_PUBLIC_KEY,
    CKA_HASH_OF_ISSUER_PUBLIC_KEY,
    CKA_CHECK_VALUE,
    CKA_KEY_TYPE,
    CKA_SUBJECT,
    CKA_ID,
    CKA_SENSITIVE,
    CKA_ENCRYPT,
    CKA_DECRYPT,
    CKA_WRAP,
    CKA_UNWRAP,
    CKA_SIGN,
    CKA_SIGN_RECOVER,
    CKA_VERIFY,
    CKA_VERIFY_RECOVER,
    CKA_DERIVE,
    CKA_START_DATE,
    CKA_END_DATE,
    CKA_MODULUS,
    CKA_MODULUS_BITS,
    CKA_PUBLIC_EXPONENT,
    CKA_PRIVATE_EXPONENT,
    CKA_PRIME_1,
    CKA_PRIME_2,
    CKA_EXPONENT_1,
    CKA_EXPONENT_2,
    CKA_COEFFICIENT,
    CKA_PUBLIC_KEY_INFO,
    CKA_VALUE_LEN,
    CKA_EXTRACTABLE,
    CKA_LOCAL,
    CKA_NEVER_EXTRACTABLE,
    CKA_ALWAYS_SENSITIVE,
    CKA_KEY_GEN_MECHANISM,
    CKA_MODIFIABLE,
    CKA_COPYABLE,
    CKA_DESTROYABLE,
    CKA_EC_PARAMS,
    CKA_EC_POINT,
    CKA_ALWAYS_AUTHENTICATE,
    CKA_WRAP_WITH_TRUSTED,
    CKA_ALLOWED_MECHANISMS,
    CKA_VENDOR_DEFINED,
    0x7fffffffUL,
    (CK_ATTRIBUTE_TYPE)-1,
};
#define FUZZ_N_ATTR_TYPES (sizeof(fuzz_attr_types) / sizeof(fuzz_attr_types[0]))

/* C_GetAttributeValue, or vtp_obj_attr_get, on one object. */
typedef CK_RV (*fuzz_get_fn)(void *ctx, CK_ATTRIBUTE *tmpl, CK_ULONG count);

/* The value of one attribute (malloc'ed, *len bytes), or NULL if the object has none. The
 * two-call convention is checked on the way: the length a query gives is what a fetch into a
 * buffer of exactly that size fills, and one byte less is CKR_BUFFER_TOO_SMALL. */
static inline void *fuzz_attr_value(fuzz_get_fn get, void *ctx, CK_ATTRIBUTE_TYPE type,
                                    CK_ULONG *len)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    CK_RV rv = get(ctx, &a, 1);
    void *buf;

    FUZZ_CHECK(rv == CKR_OK || rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID,
               "length of %s: 0x%lx", vtp_attr_name(type), rv);
    if (rv != CKR_OK) {
        FUZZ_CHECK(a.ulValueLen == CK_UNAVAILABLE_INFORMATION, "%s: 0x%lx with length %lu",
                   vtp_attr_name(type), rv, a.ulValueLen);
        return NULL;
    }
    FUZZ_CHECK(a.ulValueLen < (1UL << 20), "%s: length %lu", vtp_attr_name(type), a.ulValueLen);
    *len = a.ulValueLen;
    buf = malloc(*len > 0 ? *len : 1);
    if (buf == NULL)
        abort();
    a.pValue = buf;
    rv = get(ctx, &a, 1);
    FUZZ_CHECK(rv == CKR_OK && a.ulValueLen == *len, "%s: fetch of %lu bytes: 0x%lx, %lu",
               vtp_attr_name(type), *len, rv, a.ulValueLen);
    if (*len > 0) {
        void *small = malloc(*len - 1 > 0 ? *len - 1 : 1);
        if (small == NULL)
            abort();
        a = (CK_ATTRIBUTE){type, small, *len - 1};
        rv = get(ctx, &a, 1);
        FUZZ_CHECK(rv == CKR_BUFFER_TOO_SMALL && a.ulValueLen == CK_UNAVAILABLE_INFORMATION,
                   "%s: fetch into %lu bytes: 0x%lx, %lu", vtp_attr_name(type), *len - 1, rv,
                   a.ulValueLen);
        free(small);
    }
    return buf;
}

/* Every attribute of fuzz_attr_types one by one, then all in one template: each entry gets
 * the length it got alone, and the call returns OK only if each entry was OK. */
static inline void fuzz_check_attrs(fuzz_get_fn get, void *ctx)
{
    CK_ATTRIBUTE all[FUZZ_N_ATTR_TYPES];
    CK_ULONG lens[FUZZ_N_ATTR_TYPES];
    bool any_bad = false;
    CK_RV rv;

    for (size_t i = 0; i < FUZZ_N_ATTR_TYPES; i++) {
        void *v = fuzz_attr_value(get, ctx, fuzz_attr_types[i], &lens[i]);
        if (v == NULL) {
            lens[i] = CK_UNAVAILABLE_INFORMATION;
            any_bad = true;
        }
        free(v);
        all[i] = (CK_ATTRIBUTE){fuzz_attr_types[i], NULL, 0};
    }
    rv = get(ctx, all, FUZZ_N_ATTR_TYPES);
    FUZZ_CHECK((rv == CKR_OK) == !any_bad, "template of all attributes: 0x%lx", rv);
    for (size_t i = 0; i < FUZZ_N_ATTR_TYPES; i++)
        FUZZ_CHECK(all[i].ulValueLen == lens[i], "%s: %lu in a template, %lu alone",
                   vtp_attr_name(all[i].type), all[i].ulValueLen, lens[i]);
}

static inline bool fuzz_same(const void *a, size_t al, const void *b, size_t bl)
{
    return al == bl && (al == 0 || memcmp(a, b, al) == 0);
}

static inline void fuzz_check_same_cert(const struct vtp_cert *a, const struct vtp_cert *b,
                                        const char *how)
{
    FUZZ_CHECK(fuzz_same(a->value, a->value_len, b->value, b->value_len), "%s: value", how);
    FUZZ_CHECK(fuzz_same(a->id, a->id_len, b->id, b->id_len), "%s: id", how);
    FUZZ_CHECK(strcmp(a->label, b->label) == 0, "%s: label '%s' / '%s'", how, a->label, b->label);
    FUZZ_CHECK(fuzz_same(a->subject, a->subject_len, b->subject, b->subject_len), "%s: subject",
               how);
    FUZZ_CHECK(fuzz_same(a->issuer, a->issuer_len, b->issuer, b->issuer_len), "%s: issuer", how);
    FUZZ_CHECK(fuzz_same(a->serial, a->serial_len, b->serial, b->serial_len), "%s: serial", how);
    FUZZ_CHECK(fuzz_same(a->spki, a->spki_len, b->spki, b->spki_len), "%s: spki", how);
    FUZZ_CHECK(memcmp(a->check_value, b->check_value, 3) == 0, "%s: check value", how);
}

/* vtp_obj_attr_get as a fuzz_get_fn. */
static inline CK_RV fuzz_obj_get(void *ctx, CK_ATTRIBUTE *tmpl, CK_ULONG count)
{
    return vtp_obj_attr_get(ctx, tmpl, count);
}

/* A certificate that built: its attributes follow the rules; its KV form reads back as the same
 * certificate (unless the label is not UTF-8, which JSON cannot carry: then it has no KV form),
 * and so does a relabel that changes nothing. */
static inline void fuzz_check_cert(struct vtp_cert *c)
{
    struct vtp_obj o = {CKO_CERTIFICATE, NULL, c};
    struct vtp_cert *back = NULL, *same_c = NULL;
    json_t *j = vtp_cert_to_json(c);
    CK_RV rv;

    FUZZ_CHECK(c->value_len > 0 && c->spki_len > 0, "empty parts");
    fuzz_check_attrs(fuzz_obj_get, &o);
    if (j != NULL) {
        rv = vtp_cert_from_json(j, "fuzz", &back);
        FUZZ_CHECK(rv == CKR_OK, "the KV form of a certificate does not read back: 0x%lx", rv);
        fuzz_check_same_cert(c, back, "KV round trip");
        FUZZ_CHECK(strcmp(back->kv_name, "fuzz") == 0, "kv_name");
        vtp_cert_unref(back);
        json_decref(j);
    }
    rv = vtp_cert_relabel(c, NULL, 0, NULL, 0, &same_c);
    FUZZ_CHECK(rv == CKR_OK, "relabel: 0x%lx", rv);
    fuzz_check_same_cert(c, same_c, "relabel");
    FUZZ_CHECK(same_c->handle == c->handle, "relabel changed the handle");
    vtp_cert_unref(same_c);
}

#endif /* VTP_FUZZ_H */
