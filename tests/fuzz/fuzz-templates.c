/* fuzz-templates.c - attribute templates through the PKCS#11 entry points.
 *
 * The module is loaded in-process (C_GetFunctionList) over the fake Transit of
 * tests/lib/fake-transit.c with its in-memory KV v2. Per input: C_Initialize with two slots
 * ("kv": KV metadata, certificates and an index; "plain": key prefix "p-", no KV,
 * allow_destroy = false), one existing key in each, three sessions (RW and RO on "kv", RW on
 * "plain"); then up to 48 operations decoded from the input, each a byte and its arguments:
 *   C_GenerateKeyPair, C_CreateObject, C_FindObjectsInit/C_FindObjects/C_FindObjectsFinal,
 *   C_GetAttributeValue (buffers of fuzzed sizes), every attribute of an object by the two-call
 *   rules, C_SetAttributeValue, C_DestroyObject, C_CopyObject/C_GetObjectSize, and C_Finalize +
 *   C_Initialize (what was stored in KV must come back).
 * Templates are decoded from the input (fuzz_tmpl): attribute types from a list of known ones
 * or raw, values as CK_BBOOL, CK_ULONG, bytes, NULL with a length, curve parameters, a DER
 * certificate (whole or cut), RSA sizes, a CKA_ID/CKA_LABEL value seen earlier, or text that
 * names a key, looks like an encoded name or is UTF-8 at its edges. Every value
 * is a malloc'ed block of its exact length, so ASan sees any read or write past it.
 * Properties: every entry point returns a code of its PKCS#11 list, and never
 * CKR_HOST_MEMORY, CKR_GENERAL_ERROR or CKR_FUNCTION_FAILED (nothing runs out of memory here, and
 * the fake fails nothing); objects made with a non-empty CKA_LABEL/CKA_ID show it, and so do
 * objects after C_SetAttributeValue; a new certificate shows its CKA_VALUE; a destroyed object's
 * handle is invalid; a search returns each handle once, only objects that match its template, and
 * no Transit key twice (two objects of one class with the same EC/Edwards public key); after
 * re-initialisation a search by the CKA_ID of a key made in the KV slot finds exactly its two
 * objects; in the KV slot, a key shows the same usage and flags as a twin generated from the same
 * templates with a plain label and ID. VTP_FUZZ_STRICT_TEMPLATES=1 also requires that a generated
 * key shows every CK_BBOOL its template asked for (issue 10, defect 3). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "../lib/fake-transit.h"
#include "errmap.h"
#include "vault/transit.h"
#include "fuzz.h"

#define MAX_OPS 48
#define MAX_HANDLES 64
#define MAX_SEEN 16
#define N_SESSIONS 3

static CK_FUNCTION_LIST_PTR p11;
static char config_arg[300];
static bool strict_templates;

/* Canned values the decoder can pick: curve parameters and certificates made at start. */
static const unsigned char oid_p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};
static const unsigned char oid_p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
static const unsigned char oid_p521[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};
static const unsigned char oid_ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
static const unsigned char name_p256[] = "\x13\x0aprime256v1";
static const unsigned char name_ed25519[] = "\x13\x07"
                                            "ed25519";
static const unsigned char oid_secp256k1[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a};
static const struct {
    const unsigned char *p;
    size_t len;
} ec_params[] = {
    {oid_p256, sizeof(oid_p256)},           {oid_p384, sizeof(oid_p384)},
    {oid_p521, sizeof(oid_p521)},           {oid_ed25519, sizeof(oid_ed25519)},
    {name_p256, sizeof(name_p256) - 1},     {name_ed25519, sizeof(name_ed25519) - 1},
    {oid_secp256k1, sizeof(oid_secp256k1)},
};
static unsigned char *certs[2];
static size_t cert_lens[2];

static const CK_ULONG ulongs[] = {
    CKO_DATA,
    CKO_CERTIFICATE,
    CKO_PUBLIC_KEY,
    CKO_PRIVATE_KEY,
    CKO_SECRET_KEY,
    CKK_RSA,
    CKK_EC,
    CKK_EC_EDWARDS,
    CKK_AES,
    CKC_X_509,
    CKC_X_509_ATTR_CERT,
    CKM_EC_KEY_PAIR_GEN,
    CKM_RSA_PKCS_KEY_PAIR_GEN,
    CKM_EC_EDWARDS_KEY_PAIR_GEN,
    2048,
    3072,
    4096,
    0,
    CK_UNAVAILABLE_INFORMATION,
};

/* The state of one run. */
struct run {
    struct fz in;
    CK_SESSION_HANDLE sess[N_SESSIONS];
    CK_OBJECT_HANDLE handles[MAX_HANDLES];
    size_t n_handles;
    /* CKA_ID and CKA_LABEL values seen, to search by and set again */
    struct {
        unsigned char *p;
        size_t len;
    } seen[MAX_SEEN];
    size_t n_seen;
    /* IDs of keys made in the "kv" slot (checked after re-initialisation) */
    unsigned char *kv_ids[8];
    size_t kv_id_lens[8];
    size_t n_kv_ids;
};

/* A decoded template: entries and the blocks they point to. */
struct tmpl {
    CK_ATTRIBUTE a[10];
    CK_ULONG n;
};

static void tmpl_free(struct tmpl *t)
{
    for (CK_ULONG i = 0; i < t->n; i++)
        free(t->a[i].pValue);
    t->n = 0;
}

/* The entry of that type if the template has exactly one (with two, which one counts is not
 * defined: C_SetAttributeValue takes the last, C_GenerateKeyPair and C_CreateObject the first). */
static const CK_ATTRIBUTE *tmpl_find(const struct tmpl *t, CK_ATTRIBUTE_TYPE type)
{
    const CK_ATTRIBUTE *found = NULL;

    for (CK_ULONG i = 0; i < t->n; i++) {
        if (t->a[i].type == type) {
            if (found != NULL)
                return NULL;
            found = &t->a[i];
        }
    }
    return found;
}

/* Every entry point's result is one of the codes PKCS#11 lists for it (src/errmap.c), and none
 * that says something went wrong inside: nothing runs out of memory here, and the boundary turns
 * a code a function may not return into CKR_FUNCTION_FAILED, which nothing the fake does calls
 * for. */
#define RV_OK(name, rv)                                                                            \
    do {                                                                                           \
        CK_RV rv_ok_ = (rv);                                                                       \
        FUZZ_CHECK(rv_ok_ != CKR_HOST_MEMORY && rv_ok_ != CKR_GENERAL_ERROR &&                     \
                       rv_ok_ != CKR_FUNCTION_FAILED,                                              \
                   "%s returned %s", name, vtp_rv_name(rv_ok_));                                   \
        FUZZ_CHECK(vtp_errmap_allowed((name) + 2, rv_ok_), "%s may not return %s", name,           \
                   vtp_rv_name(rv_ok_));                                                           \
    } while (0)

static void remember_handle(struct run *r, CK_OBJECT_HANDLE h)
{
    for (size_t i = 0; i < r->n_handles; i++)
        if (r->handles[i] == h)
            return;
    if (r->n_handles < MAX_HANDLES)
        r->handles[r->n_handles++] = h;
}

static void remember_value(struct run *r, const void *p, size_t len)
{
    if (r->n_seen == MAX_SEEN || len > 256)
        return;
    r->seen[r->n_seen].p = fz_dup(p, len);
    r->seen[r->n_seen].len = len;
    r->n_seen++;
}

static CK_ATTRIBUTE_TYPE pick_type(struct run *r)
{
    uint8_t b = fz_u8(&r->in);

    if (b < 240)
        return fuzz_attr_types[b % FUZZ_N_ATTR_TYPES];
    return (CK_ATTRIBUTE_TYPE)fz_u32(&r->in);
}

static void set_value(CK_ATTRIBUTE *a, const void *p, size_t len)
{
    a->pValue = fz_dup(p, len);
    a->ulValueLen = len;
}

/* One attribute value of a fuzzed kind. */
static void pick_value(struct run *r, CK_ATTRIBUTE *a)
{
    uint8_t kind = fz_u8(&r->in) % 9, b;
    CK_ULONG ul;
    size_t len;
    const uint8_t *p;

    switch (kind) {
    case 0: {
        CK_BBOOL v = fz_u8(&r->in);
        v = v < 128 ? (v & 1) : v; /* mostly TRUE/FALSE, sometimes another byte */
        set_value(a, &v, sizeof(v));
        break;
    }
    case 1:
        b = fz_u8(&r->in);
        ul = b < 200 ? ulongs[b % (sizeof(ulongs) / sizeof(ulongs[0]))] : (CK_ULONG)fz_u64(&r->in);
        set_value(a, &ul, sizeof(ul));
        break;
    case 2:
        p = fz_bytes(&r->in, fz_u8(&r->in) % 48, &len);
        set_value(a, p, len);
        break;
    case 3:
        /* NULL with a length: 0, small, or huge */
        b = fz_u8(&r->in);
        a->pValue = NULL;
        a->ulValueLen = b < 128 ? 0 : b < 250 ? b : (CK_ULONG)-1;
        break;
    case 4:
        b = fz_u8(&r->in);
        set_value(a, ec_params[b % (sizeof(ec_params) / sizeof(ec_params[0]))].p,
                  ec_params[b % (sizeof(ec_params) / sizeof(ec_params[0]))].len);
        break;
    case 5:
        /* a certificate, whole (mostly) or cut */
        b = fz_u8(&r->in);
        len = cert_lens[b & 1];
        if (b >= 192)
            len = len * (b - 192) / 64;
        set_value(a, certs[b & 1], len);
        break;
    case 6:
        b = fz_u8(&r->in);
        if (b & 1) {
            static const unsigned char f4[] = {0x00, 0x01, 0x00, 0x01};
            set_value(a, f4 + (b >> 7), sizeof(f4) - (b >> 7));
        } else {
            static const CK_ULONG bits[] = {2048, 3072, 4096, 1024};
            set_value(a, &bits[(b >> 1) % 4], sizeof(CK_ULONG));
        }
        break;
    case 8: {
        /* text that names keys, looks like an encoded name, or is UTF-8 at its edges */
        static const struct {
            const char *p;
            size_t len;
        } texts[] = {
            {"existing", 8},
            {"p-existing", 10},
            {"web.p11-0123abcd.u001.i0a", 25},
            {"p11-0123abcd", 12},
            {"\xc3\xa9t\xc3\xa9", 5},
            {"\xed\xa0\x80", 3},     /* a surrogate */
            {"\xf4\x8f\xbf\xbf", 4}, /* U+10FFFF */
            {"\xf4\x90\x80\x80", 4}, /* above U+10FFFF */
            {"\xe0\x80\x80", 3},     /* overlong */
            {"\xc0\x80", 2},         /* overlong NUL */
            {"a\0b", 3},
            {"", 0},
        };
        char big[300];
        b = fz_u8(&r->in);
        if (b >= 240) {
            /* around the 256-byte limits of labels and IDs */
            memset(big, 'a', sizeof(big));
            set_value(a, big, 250 + (b - 240));
        } else {
            set_value(a, texts[b % (sizeof(texts) / sizeof(texts[0]))].p,
                      texts[b % (sizeof(texts) / sizeof(texts[0]))].len);
        }
        break;
    }
    default:
        b = fz_u8(&r->in);
        if (r->n_seen > 0)
            set_value(a, r->seen[b % r->n_seen].p, r->seen[b % r->n_seen].len);
        else
            set_value(a, "fuzz", 4);
        break;
    }
}

static void decode_tmpl(struct run *r, struct tmpl *t, CK_ULONG max)
{
    CK_ULONG n = fz_u8(&r->in) % (max + 1);

    t->n = 0;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_ATTRIBUTE *a = &t->a[t->n++];
        a->type = pick_type(r);
        pick_value(r, a);
    }
}

static CK_SESSION_HANDLE pick_session(struct run *r)
{
    uint8_t b = fz_u8(&r->in);

    return b == 255 ? (CK_SESSION_HANDLE)0xdead : r->sess[b % N_SESSIONS];
}

static CK_OBJECT_HANDLE pick_handle(struct run *r)
{
    uint8_t b = fz_u8(&r->in);

    if (b < 240 && r->n_handles > 0)
        return r->handles[b % r->n_handles];
    return b == 255 ? (CK_OBJECT_HANDLE)fz_u32(&r->in) : (CK_OBJECT_HANDLE)(b & 0x0f);
}

/* --- reading objects back ----------------------------------------------------------------- */

struct obj_ref {
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE h;
};

static CK_RV get_attrs(void *ctx, CK_ATTRIBUTE *tmpl, CK_ULONG count)
{
    struct obj_ref *o = ctx;
    CK_RV rv = p11->C_GetAttributeValue(o->s, o->h, tmpl, count);

    RV_OK("C_GetAttributeValue", rv);
    return rv;
}

/* The value of one attribute of a valid object (malloc'ed), or NULL if it has none. */
static void *attr_of(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, CK_ULONG *len)
{
    struct obj_ref o = {s, h};

    return fuzz_attr_value(get_attrs, &o, type, len);
}

static bool object_exists(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
    CK_OBJECT_CLASS cls;
    CK_ATTRIBUTE a = {CKA_CLASS, &cls, sizeof(cls)};
    CK_RV rv = p11->C_GetAttributeValue(s, h, &a, 1);

    RV_OK("C_GetAttributeValue", rv);
    return rv == CKR_OK;
}

/* The object shows value (len bytes) for type. */
static void check_shows(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
                        const void *value, CK_ULONG len, const char *after)
{
    CK_ULONG got_len = 0;
    void *got = attr_of(s, h, type, &got_len);

    FUZZ_CHECK(got != NULL, "%s: object %lu has no %s", after, h, vtp_attr_name(type));
    FUZZ_CHECK(fuzz_same(got, got_len, value, len),
               "%s: object %lu shows %s of %lu bytes '%.*s', not the %lu bytes '%.*s' asked for",
               after, h, vtp_attr_name(type), got_len, (int)got_len, (char *)got, len, (int)len,
               (const char *)value);
    free(got);
}

/* --- operations --------------------------------------------------------------------------- */

/* Attributes whose value is a CK_BBOOL. */
static bool is_bool(CK_ATTRIBUTE_TYPE t)
{
    static const CK_ATTRIBUTE_TYPE bools[] = {
        CKA_TOKEN,
        CKA_PRIVATE,
        CKA_MODIFIABLE,
        CKA_COPYABLE,
        CKA_DESTROYABLE,
        CKA_SENSITIVE,
        CKA_EXTRACTABLE,
        CKA_ENCRYPT,
        CKA_DECRYPT,
        CKA_WRAP,
        CKA_UNWRAP,
        CKA_SIGN,
        CKA_SIGN_RECOVER,
        CKA_VERIFY,
        CKA_VERIFY_RECOVER,
        CKA_DERIVE,
        CKA_LOCAL,
        CKA_NEVER_EXTRACTABLE,
        CKA_ALWAYS_SENSITIVE,
        CKA_ALWAYS_AUTHENTICATE,
        CKA_WRAP_WITH_TRUSTED,
        CKA_TRUSTED,
    };

    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++)
        if (bools[i] == t)
            return true;
    return false;
}

/* In the KV slot, what a key can do does not depend on its label: a twin generated from the
 * same templates with a plain CKA_LABEL and CKA_ID ("twin") shows the same usage and flags. */
static void check_twin(struct run *r, CK_MECHANISM *mech, struct tmpl *pub, struct tmpl *priv,
                       CK_OBJECT_HANDLE hpub, CK_OBJECT_HANDLE hpriv)
{
    static const CK_ATTRIBUTE_TYPE flags[] = {
        CKA_SIGN,
        CKA_VERIFY,
        CKA_ENCRYPT,
        CKA_DECRYPT,
        CKA_WRAP,
        CKA_UNWRAP,
        CKA_DERIVE,
        CKA_SIGN_RECOVER,
        CKA_VERIFY_RECOVER,
        CKA_EXTRACTABLE,
        CKA_SENSITIVE,
        CKA_MODIFIABLE,
        CKA_DESTROYABLE,
        CKA_PRIVATE,
        CKA_LOCAL,
        CKA_NEVER_EXTRACTABLE,
        CKA_ALWAYS_SENSITIVE,
        CKA_ALLOWED_MECHANISMS,
    };
    struct tmpl *t[2] = {pub, priv};
    CK_OBJECT_HANDLE tpub = 0, tpriv = 0;
    bool named = false;
    CK_RV rv;

    /* give the twin a plain label and ID where the templates had any */
    for (int k = 0; k < 2; k++) {
        for (CK_ULONG i = 0; i < t[k]->n; i++) {
            if (t[k]->a[i].type == CKA_LABEL || t[k]->a[i].type == CKA_ID) {
                free(t[k]->a[i].pValue);
                set_value(&t[k]->a[i], "twin", 4);
                named = true;
            }
        }
    }
    if (!named)
        return;
    rv = p11->C_GenerateKeyPair(r->sess[0], mech, pub->a, pub->n, priv->a, priv->n, &tpub, &tpriv);
    RV_OK("C_GenerateKeyPair", rv);
    if (rv != CKR_OK)
        return;
    remember_handle(r, tpub);
    remember_handle(r, tpriv);
    for (int half = 0; half < 2; half++) {
        for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
            CK_ULONG la = 0, lb = 0;
            void *a = attr_of(r->sess[0], half ? hpriv : hpub, flags[i], &la);
            void *b = attr_of(r->sess[0], half ? tpriv : tpub, flags[i], &lb);
            FUZZ_CHECK((a == NULL) == (b == NULL) && (a == NULL || fuzz_same(a, la, b, lb)),
                       "the %s key shows another %s than its twin from the same templates with "
                       "a plain label and ID",
                       half ? "private" : "public", vtp_attr_name(flags[i]));
            free(a);
            free(b);
        }
    }
}

static void op_generate(struct run *r)
{
    CK_SESSION_HANDLE s = pick_session(r);
    uint8_t m = fz_u8(&r->in) % 5;
    CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    unsigned char param[4] = {0};
    struct tmpl pub, priv;
    CK_OBJECT_HANDLE hpub = 0, hpriv = 0;
    const CK_ATTRIBUTE *a;
    CK_RV rv;

    if (m == 1)
        mech.mechanism = CKM_EC_EDWARDS_KEY_PAIR_GEN;
    else if (m == 2)
        mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
    else if (m == 3)
        mech.mechanism = fz_u32(&r->in);
    else if (m == 4)
        mech = (CK_MECHANISM){CKM_EC_KEY_PAIR_GEN, param, sizeof(param)};
    decode_tmpl(r, &pub, 8);
    decode_tmpl(r, &priv, 8);
    rv = p11->C_GenerateKeyPair(s, &mech, pub.a, pub.n, priv.a, priv.n, &hpub, &hpriv);
    RV_OK("C_GenerateKeyPair", rv);
    if (rv == CKR_OK) {
        CK_OBJECT_CLASS cls;
        CK_ULONG len;
        void *v;
        FUZZ_CHECK(hpub != 0 && hpriv != 0 && hpub != hpriv, "handles %lu %lu", hpub, hpriv);
        remember_handle(r, hpub);
        remember_handle(r, hpriv);
        cls = CKO_PUBLIC_KEY;
        check_shows(s, hpub, CKA_CLASS, &cls, sizeof(cls), "C_GenerateKeyPair");
        cls = CKO_PRIVATE_KEY;
        check_shows(s, hpriv, CKA_CLASS, &cls, sizeof(cls), "C_GenerateKeyPair");
        for (int half = 0; half < 2; half++) {
            CK_OBJECT_HANDLE h = half ? hpriv : hpub;
            a = tmpl_find(&pub, CKA_LABEL) ? tmpl_find(&pub, CKA_LABEL)
                                           : tmpl_find(&priv, CKA_LABEL);
            if (a != NULL && a->ulValueLen > 0)
                check_shows(s, h, CKA_LABEL, a->pValue, a->ulValueLen, "C_GenerateKeyPair");
            a = tmpl_find(&pub, CKA_ID) ? tmpl_find(&pub, CKA_ID) : tmpl_find(&priv, CKA_ID);
            if (a != NULL && a->ulValueLen > 0)
                check_shows(s, h, CKA_ID, a->pValue, a->ulValueLen, "C_GenerateKeyPair");
            for (CK_ULONG i = 0; strict_templates && i < (half ? priv.n : pub.n); i++) {
                const CK_ATTRIBUTE *t = half ? &priv.a[i] : &pub.a[i];
                CK_BBOOL want;
                /* CKA_PRIVATE = TRUE is accepted with auth = token and shows FALSE (README) */
                if (t->ulValueLen != sizeof(CK_BBOOL) || t->pValue == NULL || !is_bool(t->type) ||
                    t->type == CKA_PRIVATE)
                    continue;
                want = *(CK_BBOOL *)t->pValue ? CK_TRUE : CK_FALSE;
                v = attr_of(s, h, t->type, &len);
                if (v != NULL && len == sizeof(CK_BBOOL))
                    FUZZ_CHECK(*(CK_BBOOL *)v == want,
                               "C_GenerateKeyPair: %s = %s asked for, the %s key shows %s",
                               vtp_attr_name(t->type), want ? "TRUE" : "FALSE",
                               half ? "private" : "public", want ? "FALSE" : "TRUE");
                free(v);
            }
        }
        v = attr_of(s, hpub, CKA_ID, &len);
        if (v != NULL) {
            remember_value(r, v, len);
            if (s == r->sess[0] && r->n_kv_ids < 8 && len > 0) {
                r->kv_ids[r->n_kv_ids] = fz_dup(v, len);
                r->kv_id_lens[r->n_kv_ids++] = len;
            }
        }
        free(v);
        if (s == r->sess[0])
            check_twin(r, &mech, &pub, &priv, hpub, hpriv);
    }
    tmpl_free(&pub);
    tmpl_free(&priv);
}

static void op_create(struct run *r)
{
    CK_SESSION_HANDLE s = pick_session(r);
    struct tmpl t;
    CK_OBJECT_HANDLE h = 0;
    const CK_ATTRIBUTE *a;
    CK_RV rv;

    decode_tmpl(r, &t, 9);
    rv = p11->C_CreateObject(s, t.a, t.n, &h);
    RV_OK("C_CreateObject", rv);
    if (rv == CKR_OK) {
        CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
        remember_handle(r, h);
        check_shows(s, h, CKA_CLASS, &cls, sizeof(cls), "C_CreateObject");
        bool has_value = false;
        for (CK_ULONG i = 0; i < t.n; i++)
            has_value = has_value || t.a[i].type == CKA_VALUE;
        FUZZ_CHECK(has_value, "C_CreateObject without CKA_VALUE succeeded");
        if ((a = tmpl_find(&t, CKA_VALUE)) != NULL)
            check_shows(s, h, CKA_VALUE, a->pValue, a->ulValueLen, "C_CreateObject");
        if ((a = tmpl_find(&t, CKA_LABEL)) != NULL && a->ulValueLen > 0)
            check_shows(s, h, CKA_LABEL, a->pValue, a->ulValueLen, "C_CreateObject");
        if ((a = tmpl_find(&t, CKA_ID)) != NULL && a->ulValueLen > 0) {
            check_shows(s, h, CKA_ID, a->pValue, a->ulValueLen, "C_CreateObject");
            remember_value(r, a->pValue, a->ulValueLen);
        }
    }
    tmpl_free(&t);
}

/* C_FindObjects* with tmpl; the handles found (malloc'ed) or NULL if the search failed. */
static CK_OBJECT_HANDLE *find(CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG count,
                              CK_ULONG chunk, CK_ULONG *n_found)
{
    CK_OBJECT_HANDLE *found = NULL;
    CK_ULONG n = 0, got;
    CK_RV rv = p11->C_FindObjectsInit(s, tmpl, count);

    RV_OK("C_FindObjectsInit", rv);
    if (rv != CKR_OK)
        return NULL;
    for (;;) {
        CK_OBJECT_HANDLE *more = realloc(found, (n + chunk) * sizeof(*found));
        if (more == NULL)
            abort();
        found = more;
        got = 0;
        rv = p11->C_FindObjects(s, found + n, chunk, &got);
        RV_OK("C_FindObjects", rv);
        FUZZ_CHECK(rv == CKR_OK && got <= chunk, "C_FindObjects: %s, %lu of %lu", vtp_rv_name(rv),
                   got, chunk);
        n += got;
        if (got == 0 || n > 4096)
            break;
    }
    rv = p11->C_FindObjectsFinal(s);
    FUZZ_CHECK(rv == CKR_OK, "C_FindObjectsFinal: %s", vtp_rv_name(rv));
    *n_found = n;
    return found;
}

/* Each handle once; each object matches the template; no Transit key shown twice. */
static void check_found(struct run *r, CK_SESSION_HANDLE s, const struct tmpl *t,
                        const CK_OBJECT_HANDLE *found, CK_ULONG n)
{
    void *pki[64] = {NULL};
    CK_ULONG pki_len[64], cls_of[64];

    for (CK_ULONG i = 0; i < n; i++) {
        CK_ULONG len = 0;
        for (CK_ULONG j = 0; j < i; j++)
            FUZZ_CHECK(found[i] != found[j], "search returned handle %lu twice", found[i]);
        remember_handle(r, found[i]);
        for (CK_ULONG k = 0; k < t->n; k++) {
            const CK_ATTRIBUTE *a = &t->a[k];
            void *v = attr_of(s, found[i], a->type, &len);
            FUZZ_CHECK(v != NULL && fuzz_same(v, len, a->pValue, a->ulValueLen),
                       "search returned object %lu whose %s does not match", found[i],
                       vtp_attr_name(a->type));
            free(v);
        }
        if (i < 64) {
            CK_ULONG l = 0;
            void *kt = attr_of(s, found[i], CKA_KEY_TYPE, &l);
            void *c = attr_of(s, found[i], CKA_CLASS, &l);
            FUZZ_CHECK(c != NULL, "search returned object %lu without CKA_CLASS", found[i]);
            cls_of[i] = *(CK_ULONG *)c;
            /* the fake's RSA keys of one size share a key pair: only EC and Edwards count */
            if (kt != NULL && *(CK_ULONG *)kt != CKK_RSA)
                pki[i] = attr_of(s, found[i], CKA_PUBLIC_KEY_INFO, &pki_len[i]);
            free(kt);
            free(c);
            for (CK_ULONG j = 0; pki[i] != NULL && j < i; j++)
                FUZZ_CHECK(pki[j] == NULL || cls_of[j] != cls_of[i] ||
                               !fuzz_same(pki[i], pki_len[i], pki[j], pki_len[j]),
                           "search returned objects %lu and %lu: one Transit key twice", found[j],
                           found[i]);
        }
    }
    for (CK_ULONG i = 0; i < n && i < 64; i++)
        free(pki[i]);
}

static void op_find(struct run *r)
{
    CK_SESSION_HANDLE s = pick_session(r);
    CK_ULONG chunk = fz_u8(&r->in) % 5 + 1, n = 0;
    struct tmpl t;
    CK_OBJECT_HANDLE *found;

    decode_tmpl(r, &t, 4);
    found = find(s, t.a, t.n, chunk, &n);
    if (found != NULL) {
        bool readable = true;
        for (CK_ULONG i = 0; i < t.n; i++)
            readable = readable && (t.a[i].pValue != NULL || t.a[i].ulValueLen == 0);
        if (readable)
            check_found(r, s, &t, found, n);
    }
    free(found);
    tmpl_free(&t);
}

/* C_GetAttributeValue with buffers of fuzzed sizes: the module writes inside them only. */
static void op_get(struct run *r)
{
    static const CK_ULONG sizes[] = {0, 1, 2, 3, 8, 16, 32, 65, 128, 300, 1024};
    CK_SESSION_HANDLE s = pick_session(r);
    CK_OBJECT_HANDLE h = pick_handle(r);
    CK_ATTRIBUTE t[6];
    CK_ULONG n = fz_u8(&r->in) % 7;
    CK_RV rv;

    for (CK_ULONG i = 0; i < n; i++) {
        uint8_t b = fz_u8(&r->in);
        t[i].type = pick_type(r);
        t[i].ulValueLen = sizes[b % (sizeof(sizes) / sizeof(sizes[0]))];
        t[i].pValue = b >= 200 ? NULL : fz_dup("", t[i].ulValueLen);
    }
    rv = p11->C_GetAttributeValue(s, h, t, n);
    RV_OK("C_GetAttributeValue", rv);
    for (CK_ULONG i = 0; i < n; i++) {
        if (rv == CKR_OK)
            FUZZ_CHECK(t[i].ulValueLen != CK_UNAVAILABLE_INFORMATION,
                       "CKR_OK with entry %lu "
                       "unavailable",
                       i);
        if ((rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL || rv == CKR_ATTRIBUTE_SENSITIVE ||
             rv == CKR_ATTRIBUTE_TYPE_INVALID) &&
            t[i].ulValueLen != CK_UNAVAILABLE_INFORMATION && t[i].pValue != NULL &&
            (t[i].type == CKA_ID || t[i].type == CKA_LABEL))
            remember_value(r, t[i].pValue, t[i].ulValueLen);
        free(t[i].pValue);
    }
}

static void op_all_attrs(struct run *r)
{
    struct obj_ref o = {pick_session(r), pick_handle(r)};

    if (object_exists(o.s, o.h))
        fuzz_check_attrs(get_attrs, &o);
}

static void op_set(struct run *r)
{
    CK_SESSION_HANDLE s = pick_session(r);
    CK_OBJECT_HANDLE h = pick_handle(r);
    struct tmpl t;
    const CK_ATTRIBUTE *a;
    CK_RV rv;

    decode_tmpl(r, &t, 3);
    rv = p11->C_SetAttributeValue(s, h, t.a, t.n);
    RV_OK("C_SetAttributeValue", rv);
    if (rv == CKR_OK) {
        /* an empty value (NULL or not) is a value too, but only the strict mode asks for it */
        if ((a = tmpl_find(&t, CKA_LABEL)) != NULL && (a->ulValueLen > 0 || strict_templates))
            check_shows(s, h, CKA_LABEL, a->pValue, a->ulValueLen, "C_SetAttributeValue");
        if ((a = tmpl_find(&t, CKA_ID)) != NULL && (a->ulValueLen > 0 || strict_templates)) {
            check_shows(s, h, CKA_ID, a->pValue, a->ulValueLen, "C_SetAttributeValue");
            remember_value(r, a->pValue, a->ulValueLen);
        }
    }
    tmpl_free(&t);
}

static void op_destroy(struct run *r)
{
    CK_SESSION_HANDLE s = pick_session(r);
    CK_OBJECT_HANDLE h = pick_handle(r);
    CK_RV rv = p11->C_DestroyObject(s, h);

    RV_OK("C_DestroyObject", rv);
    if (rv == CKR_OK)
        FUZZ_CHECK(!object_exists(s, h), "object %lu still there after C_DestroyObject", h);
}

static void op_misc(struct run *r)
{
    CK_SESSION_HANDLE s = pick_session(r);
    CK_OBJECT_HANDLE h = pick_handle(r), copy = 0;
    CK_ULONG size = 0;
    struct tmpl t;
    CK_RV rv;

    decode_tmpl(r, &t, 2);
    rv = p11->C_CopyObject(s, h, t.a, t.n, &copy);
    RV_OK("C_CopyObject", rv);
    FUZZ_CHECK(rv != CKR_OK, "C_CopyObject succeeded");
    rv = p11->C_GetObjectSize(s, h, &size);
    RV_OK("C_GetObjectSize", rv);
    tmpl_free(&t);
}

/* --- one run ------------------------------------------------------------------------------ */

static void open_sessions(struct run *r)
{
    static const struct {
        CK_SLOT_ID slot;
        CK_FLAGS flags;
    } want[N_SESSIONS] = {
        {0, CKF_SERIAL_SESSION | CKF_RW_SESSION},
        {0, CKF_SERIAL_SESSION},
        {1, CKF_SERIAL_SESSION | CKF_RW_SESSION},
    };

    for (int i = 0; i < N_SESSIONS; i++) {
        CK_RV rv = p11->C_OpenSession(want[i].slot, want[i].flags, NULL, NULL, &r->sess[i]);
        FUZZ_CHECK(rv == CKR_OK, "C_OpenSession: %s", vtp_rv_name(rv));
    }
}

static void initialize(void)
{
    CK_C_INITIALIZE_ARGS a = {NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, config_arg};
    CK_RV rv = p11->C_Initialize(&a);

    FUZZ_CHECK(rv == CKR_OK, "C_Initialize: %s", vtp_rv_name(rv));
}

/* What the KV slot shows of its EC and Edwards keys (RSA keys of one size share a public key in
 * the fake): class, public key, label and ID of each object, for a comparison across
 * re-initialisation. */
struct shown {
    CK_ULONG cls;
    void *pki, *label, *id;
    CK_ULONG pki_len, label_len, id_len;
};

static size_t snapshot_kv_slot(struct run *r, struct shown *out, size_t max)
{
    CK_ULONG n = 0;
    CK_OBJECT_HANDLE *found = find(r->sess[0], NULL, 0, 16, &n);
    size_t count = 0;

    for (CK_ULONG i = 0; found != NULL && i < n && count < max; i++) {
        CK_ULONG len = 0;
        CK_ULONG *cls = attr_of(r->sess[0], found[i], CKA_CLASS, &len);
        CK_ULONG *kt = attr_of(r->sess[0], found[i], CKA_KEY_TYPE, &len);
        struct shown *o = &out[count];
        if (cls != NULL && kt != NULL && *kt != CKK_RSA) {
            o->cls = *cls;
            o->pki = attr_of(r->sess[0], found[i], CKA_PUBLIC_KEY_INFO, &o->pki_len);
            o->label = attr_of(r->sess[0], found[i], CKA_LABEL, &o->label_len);
            o->id = attr_of(r->sess[0], found[i], CKA_ID, &o->id_len);
            FUZZ_CHECK(o->pki != NULL && o->label != NULL && o->id != NULL,
                       "key object %lu lacks an attribute", found[i]);
            count++;
        }
        free(cls);
        free(kt);
    }
    free(found);
    return count;
}

static void free_shown(struct shown *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].pki);
        free(v[i].label);
        free(v[i].id);
    }
}

/* C_Finalize and C_Initialize. Each key made in the KV slot with a CKA_ID (and still there) is
 * then found by it as many times as a private as a public key (the halves come together, none
 * twice); and when the next input bit says so, every key object the KV slot showed before shows
 * the same label and ID after (all of it was stored in KV). */
static void op_reinit(struct run *r)
{
    static struct shown before[64], after[64];
    size_t n_before = 0, n_after = 0;
    bool compare = fz_u8(&r->in) & 1;
    CK_RV rv;

    if (compare)
        n_before = snapshot_kv_slot(r, before, 64);
    rv = p11->C_Finalize(NULL);
    FUZZ_CHECK(rv == CKR_OK, "C_Finalize: %s", vtp_rv_name(rv));
    initialize();
    r->n_handles = 0;
    open_sessions(r);
    for (size_t i = 0; i < r->n_kv_ids; i++) {
        CK_ATTRIBUTE t = {CKA_ID, r->kv_ids[i], r->kv_id_lens[i]};
        CK_ULONG n = 0, n_priv = 0, n_pub = 0;
        CK_OBJECT_HANDLE *found = find(r->sess[0], &t, 1, 8, &n);
        for (CK_ULONG j = 0; found != NULL && j < n; j++) {
            CK_ULONG len;
            CK_ULONG *cls = attr_of(r->sess[0], found[j], CKA_CLASS, &len);
            FUZZ_CHECK(cls != NULL, "search returned object %lu without CKA_CLASS", found[j]);
            n_priv += *cls == CKO_PRIVATE_KEY;
            n_pub += *cls == CKO_PUBLIC_KEY;
            free(cls);
            remember_handle(r, found[j]);
        }
        free(found);
        FUZZ_CHECK(n_priv == n_pub,
                   "after re-initialisation, a search by CKA_ID finds %lu "
                   "private and %lu public keys",
                   n_priv, n_pub);
    }
    if (!compare)
        return;
    n_after = snapshot_kv_slot(r, after, 64);
    /* (after may show more: keys the other slot made after this slot's cache was loaded, which
     * it would show only after its cache_ttl) */
    for (size_t i = 0; i < n_before; i++) {
        const struct shown *b = &before[i], *a = NULL;
        for (size_t j = 0; j < n_after && a == NULL; j++)
            if (after[j].cls == b->cls &&
                fuzz_same(after[j].pki, after[j].pki_len, b->pki, b->pki_len))
                a = &after[j];
        FUZZ_CHECK(a != NULL, "a key object is gone after re-initialisation");
        FUZZ_CHECK(fuzz_same(a->label, a->label_len, b->label, b->label_len),
                   "a key's CKA_LABEL was '%.*s' (%lu bytes), after re-initialisation '%.*s'",
                   (int)b->label_len, (char *)b->label, b->label_len, (int)a->label_len,
                   (char *)a->label);
        FUZZ_CHECK(fuzz_same(a->id, a->id_len, b->id, b->id_len),
                   "a key's CKA_ID was %lu bytes, after re-initialisation %lu bytes (or others)",
                   b->id_len, a->id_len);
    }
    free_shown(before, n_before);
    free_shown(after, n_after);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run r;
    CK_RV rv;

    memset(&r, 0, sizeof(r));
    r.in = (struct fz){data, size};
    fake_transit_install();
    fake_transit_enable_kv(true);
    if (!fake_transit_add_key("existing", "ecdsa-p256") ||
        !fake_transit_add_key("p-existing", "ed25519"))
        abort();
    initialize();
    open_sessions(&r);
    for (int i = 0; i < MAX_OPS && r.in.n > 0; i++) {
        switch (fz_u8(&r.in) % 10) {
        case 0:
            op_generate(&r);
            break;
        case 1:
            op_create(&r);
            break;
        case 2:
            op_find(&r);
            break;
        case 3:
            op_get(&r);
            break;
        case 4:
            op_all_attrs(&r);
            break;
        case 5:
            op_set(&r);
            break;
        case 6:
            op_destroy(&r);
            break;
        case 7:
            op_misc(&r);
            break;
        case 8:
            op_reinit(&r);
            break;
        default:
            op_find(&r);
            break;
        }
    }
    rv = p11->C_Finalize(NULL);
    FUZZ_CHECK(rv == CKR_OK, "C_Finalize: %s", vtp_rv_name(rv));
    fake_transit_uninstall();
    for (size_t i = 0; i < r.n_seen; i++)
        free(r.seen[i].p);
    for (size_t i = 0; i < r.n_kv_ids; i++)
        free(r.kv_ids[i]);
    return 0;
}

/* --- setup -------------------------------------------------------------------------------- */

static unsigned char *make_cert(const char *cn, size_t *len)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    unsigned char *der = NULL, *copy;
    int n;

    if (pk == NULL || x == NULL || name == NULL ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                   0) != 1 ||
        X509_set_version(x, 2) != 1 || ASN1_INTEGER_set(X509_get_serialNumber(x), 1) != 1 ||
        X509_set_subject_name(x, name) != 1 || X509_set_issuer_name(x, name) != 1 ||
        X509_gmtime_adj(X509_getm_notBefore(x), 0) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 86400) == NULL || X509_set_pubkey(x, pk) != 1 ||
        X509_sign(x, pk, EVP_sha256()) <= 0 || (n = i2d_X509(x, &der)) <= 0)
        abort();
    copy = fz_dup(der, (size_t)n);
    *len = (size_t)n;
    OPENSSL_free(der);
    X509_NAME_free(name);
    X509_free(x);
    EVP_PKEY_free(pk);
    return copy;
}

static char config_path[64];

static void remove_config(void)
{
    unlink(config_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FILE *f;
    int fd;
    const char *strict = getenv("VTP_FUZZ_STRICT_TEMPLATES");

    (void)argc, (void)argv;
    strict_templates = strict != NULL && strcmp(strict, "1") == 0;
    fuzz_setup_log();
    certs[0] = make_cert("fuzz one", &cert_lens[0]);
    certs[1] = make_cert("fuzz two", &cert_lens[1]);
    snprintf(config_path, sizeof(config_path), "/tmp/vtp-fuzz-templates.XXXXXX");
    fd = mkstemp(config_path);
    if (fd < 0 || (f = fdopen(fd, "w")) == NULL)
        abort();
    /* Vault is a closed port: the fake answers every Transit and KV call. */
    fprintf(f, "[vault]\naddress = http://127.0.0.1:9\nauth = token\ntimeout = 5\n"
               "[slot kv]\nmount = transit\nlabel = kv\nkv_mount = secret\n"
               "[slot plain]\nmount = transit\nlabel = plain\nkey_prefix = p-\n"
               "allow_destroy = false\n");
    if (fclose(f) != 0)
        abort();
    atexit(remove_config);
    snprintf(config_arg, sizeof(config_arg), "config=%s", config_path);
    setenv("VAULT_TOKEN", "fake-token", 1);
    unsetenv("VAULT_ADDR");
    unsetenv("VAULT_TRANSIT_PKCS11_CONFIG");
    if (C_GetFunctionList(&p11) != CKR_OK)
        abort();
    /* The fake's RSA pairs are made once per size: make them now, outside any input's time. */
    fake_transit_install();
    if (!fake_transit_add_key("rsa-2048", "rsa-2048") ||
        !fake_transit_add_key("rsa-3072", "rsa-3072") ||
        !fake_transit_add_key("rsa-4096", "rsa-4096"))
        abort();
    fake_transit_uninstall();
    return 0;
}
