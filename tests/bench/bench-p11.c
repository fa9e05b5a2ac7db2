/* bench-p11.c - p11bench's PKCS#11 side: any module through dlopen + C_GetFunctionList. */
#include "config.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "p11bench.h"

struct bench_p11 {
    void *dl;
    CK_FUNCTION_LIST_PTR f;
    bool initialized;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE main_sess; /* kept open for the whole run: it holds the login */
    CK_OBJECT_HANDLE key;
    CK_RSA_PKCS_PSS_PARAMS pss;
    CK_MECHANISM mech;
};

const char *bench_ckr_name(CK_RV rv)
{
    static const struct {
        CK_RV rv;
        const char *name;
    } names[] = {
#define N(x) {x, #x}
        N(CKR_OK),
        N(CKR_CANCEL),
        N(CKR_HOST_MEMORY),
        N(CKR_SLOT_ID_INVALID),
        N(CKR_GENERAL_ERROR),
        N(CKR_FUNCTION_FAILED),
        N(CKR_ARGUMENTS_BAD),
        N(CKR_NO_EVENT),
        N(CKR_NEED_TO_CREATE_THREADS),
        N(CKR_CANT_LOCK),
        N(CKR_ATTRIBUTE_READ_ONLY),
        N(CKR_ATTRIBUTE_SENSITIVE),
        N(CKR_ATTRIBUTE_TYPE_INVALID),
        N(CKR_ATTRIBUTE_VALUE_INVALID),
        N(CKR_ACTION_PROHIBITED),
        N(CKR_DATA_INVALID),
        N(CKR_DATA_LEN_RANGE),
        N(CKR_DEVICE_ERROR),
        N(CKR_DEVICE_MEMORY),
        N(CKR_DEVICE_REMOVED),
        N(CKR_ENCRYPTED_DATA_INVALID),
        N(CKR_ENCRYPTED_DATA_LEN_RANGE),
        N(CKR_FUNCTION_CANCELED),
        N(CKR_FUNCTION_NOT_PARALLEL),
        N(CKR_FUNCTION_NOT_SUPPORTED),
        N(CKR_KEY_HANDLE_INVALID),
        N(CKR_KEY_SIZE_RANGE),
        N(CKR_KEY_TYPE_INCONSISTENT),
        N(CKR_KEY_NOT_NEEDED),
        N(CKR_KEY_CHANGED),
        N(CKR_KEY_NEEDED),
        N(CKR_KEY_INDIGESTIBLE),
        N(CKR_KEY_FUNCTION_NOT_PERMITTED),
        N(CKR_KEY_NOT_WRAPPABLE),
        N(CKR_KEY_UNEXTRACTABLE),
        N(CKR_MECHANISM_INVALID),
        N(CKR_MECHANISM_PARAM_INVALID),
        N(CKR_OBJECT_HANDLE_INVALID),
        N(CKR_OPERATION_ACTIVE),
        N(CKR_OPERATION_NOT_INITIALIZED),
        N(CKR_PIN_INCORRECT),
        N(CKR_PIN_INVALID),
        N(CKR_PIN_LEN_RANGE),
        N(CKR_PIN_EXPIRED),
        N(CKR_PIN_LOCKED),
        N(CKR_SESSION_CLOSED),
        N(CKR_SESSION_COUNT),
        N(CKR_SESSION_HANDLE_INVALID),
        N(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
        N(CKR_SESSION_READ_ONLY),
        N(CKR_SESSION_EXISTS),
        N(CKR_SESSION_READ_ONLY_EXISTS),
        N(CKR_SESSION_READ_WRITE_SO_EXISTS),
        N(CKR_SIGNATURE_INVALID),
        N(CKR_SIGNATURE_LEN_RANGE),
        N(CKR_TEMPLATE_INCOMPLETE),
        N(CKR_TEMPLATE_INCONSISTENT),
        N(CKR_TOKEN_NOT_PRESENT),
        N(CKR_TOKEN_NOT_RECOGNIZED),
        N(CKR_TOKEN_WRITE_PROTECTED),
        N(CKR_UNWRAPPING_KEY_SIZE_RANGE),
        N(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT),
        N(CKR_USER_ALREADY_LOGGED_IN),
        N(CKR_USER_NOT_LOGGED_IN),
        N(CKR_USER_PIN_NOT_INITIALIZED),
        N(CKR_USER_TYPE_INVALID),
        N(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
        N(CKR_USER_TOO_MANY_TYPES),
        N(CKR_WRAPPED_KEY_INVALID),
        N(CKR_WRAPPED_KEY_LEN_RANGE),
        N(CKR_WRAPPING_KEY_HANDLE_INVALID),
        N(CKR_WRAPPING_KEY_SIZE_RANGE),
        N(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
        N(CKR_RANDOM_SEED_NOT_SUPPORTED),
        N(CKR_RANDOM_NO_RNG),
        N(CKR_DOMAIN_PARAMS_INVALID),
        N(CKR_CURVE_NOT_SUPPORTED),
        N(CKR_BUFFER_TOO_SMALL),
        N(CKR_SAVED_STATE_INVALID),
        N(CKR_INFORMATION_SENSITIVE),
        N(CKR_STATE_UNSAVEABLE),
        N(CKR_CRYPTOKI_NOT_INITIALIZED),
        N(CKR_CRYPTOKI_ALREADY_INITIALIZED),
        N(CKR_MUTEX_BAD),
        N(CKR_MUTEX_NOT_LOCKED),
        N(CKR_NEW_PIN_MODE),
        N(CKR_NEXT_OTP),
        N(CKR_EXCEEDED_MAX_ITERATIONS),
        N(CKR_FIPS_SELF_TEST_FAILED),
        N(CKR_LIBRARY_LOAD_FAILED),
        N(CKR_PIN_TOO_WEAK),
        N(CKR_PUBLIC_KEY_INVALID),
        N(CKR_FUNCTION_REJECTED),
#undef N
    };
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (names[i].rv == rv)
            return names[i].name;
    }
    return rv >= CKR_VENDOR_DEFINED ? "CKR_VENDOR_DEFINED+" : "CKR_(unknown)";
}

static int fail_rv(char *err, size_t errlen, const char *what, CK_RV rv)
{
    snprintf(err, errlen, "%s failed: %s (0x%lx)", what, bench_ckr_name(rv), (unsigned long)rv);
    return -1;
}

/* Reads one attribute into a fresh buffer (two-call convention). */
static CK_RV get_attr(struct bench_p11 *p, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type,
                      unsigned char **val, CK_ULONG *len)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    CK_RV rv;

    rv = p->f->C_GetAttributeValue(p->main_sess, obj, &a, 1);
    if (rv != CKR_OK)
        return rv;
    if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen == 0)
        return CKR_ATTRIBUTE_TYPE_INVALID;
    a.pValue = malloc(a.ulValueLen);
    if (a.pValue == NULL)
        return CKR_HOST_MEMORY;
    rv = p->f->C_GetAttributeValue(p->main_sess, obj, &a, 1);
    if (rv != CKR_OK) {
        free(a.pValue);
        return rv;
    }
    *val = a.pValue;
    *len = a.ulValueLen;
    return CKR_OK;
}

/* CKA_EC_POINT is a DER OCTET STRING by the standard; some tokens give the bare point. */
static const unsigned char *unwrap_point(const unsigned char *v, CK_ULONG len, size_t *out_len)
{
    const unsigned char *q = v;
    ASN1_OCTET_STRING *os = d2i_ASN1_OCTET_STRING(NULL, &q, (long)len);
    const unsigned char *res = v;

    *out_len = len;
    if (os != NULL && q == v + len) {
        /* point data starts len - its length bytes into v */
        size_t n = (size_t)ASN1_STRING_length(os);
        res = v + len - n;
        *out_len = n;
    }
    ASN1_OCTET_STRING_free(os);
    return res;
}

/* Builds the public key from CKA_EC_PARAMS/CKA_EC_POINT or CKA_MODULUS/CKA_PUBLIC_EXPONENT. */
static EVP_PKEY *pub_from_parts(struct bench_p11 *p, CK_OBJECT_HANDLE obj, enum bench_kind kind)
{
    unsigned char *a = NULL, *b = NULL;
    CK_ULONG alen = 0, blen = 0;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pk = NULL;
    ASN1_OBJECT *oid = NULL;
    BIGNUM *n = NULL, *e = NULL;
    const unsigned char *pt;
    size_t ptlen;

    if (kind == BENCH_KIND_ED25519) {
        if (get_attr(p, obj, CKA_EC_POINT, &a, &alen) == CKR_OK) {
            pt = unwrap_point(a, alen, &ptlen);
            pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pt, ptlen);
        }
        goto out;
    }
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL)
        goto out;
    if (kind == BENCH_KIND_EC) {
        const unsigned char *q;
        const char *group;

        if (get_attr(p, obj, CKA_EC_PARAMS, &a, &alen) != CKR_OK ||
            get_attr(p, obj, CKA_EC_POINT, &b, &blen) != CKR_OK)
            goto out;
        q = a;
        oid = d2i_ASN1_OBJECT(NULL, &q, (long)alen);
        group = oid != NULL ? OBJ_nid2sn(OBJ_obj2nid(oid)) : NULL;
        pt = unwrap_point(b, blen, &ptlen);
        if (group == NULL ||
            OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, ptlen) != 1)
            goto out;
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    } else {
        if (get_attr(p, obj, CKA_MODULUS, &a, &alen) != CKR_OK ||
            get_attr(p, obj, CKA_PUBLIC_EXPONENT, &b, &blen) != CKR_OK)
            goto out;
        n = BN_bin2bn(a, (int)alen, NULL);
        e = BN_bin2bn(b, (int)blen, NULL);
        if (n == NULL || e == NULL || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1 ||
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1)
            goto out;
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    if (ctx == NULL || params == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pk = NULL;
out:
    ASN1_OBJECT_free(oid);
    BN_free(n);
    BN_free(e);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    free(a);
    free(b);
    return pk;
}

static EVP_PKEY *pub_from_spki(struct bench_p11 *p, CK_OBJECT_HANDLE obj)
{
    unsigned char *v = NULL;
    const unsigned char *q;
    CK_ULONG len = 0;
    EVP_PKEY *pk;

    if (get_attr(p, obj, CKA_PUBLIC_KEY_INFO, &v, &len) != CKR_OK)
        return NULL;
    q = v;
    pk = d2i_PUBKEY(NULL, &q, (long)len);
    free(v);
    return pk;
}

/* The public key object that goes with the private key: same CKA_ID, else same CKA_LABEL. */
static CK_OBJECT_HANDLE find_public(struct bench_p11 *p, const char *label)
{
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, NULL, 0}};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    unsigned char *id = NULL;
    CK_ULONG idlen = 0, n = 0;

    if (get_attr(p, p->key, CKA_ID, &id, &idlen) == CKR_OK) {
        t[1].pValue = id;
        t[1].ulValueLen = idlen;
    } else {
        t[1].type = CKA_LABEL;
        t[1].pValue = (void *)label;
        t[1].ulValueLen = strlen(label);
    }
    if (p->f->C_FindObjectsInit(p->main_sess, t, 2) == CKR_OK) {
        if (p->f->C_FindObjects(p->main_sess, &h, 1, &n) != CKR_OK || n != 1)
            h = CK_INVALID_HANDLE;
        p->f->C_FindObjectsFinal(p->main_sess);
    }
    free(id);
    return h;
}

static EVP_PKEY *load_public(struct bench_p11 *p, const char *label, enum bench_kind kind)
{
    CK_OBJECT_HANDLE pubh;
    EVP_PKEY *pk = pub_from_spki(p, p->key);

    if (pk != NULL)
        return pk;
    pubh = find_public(p, label);
    if (pubh != CK_INVALID_HANDLE) {
        pk = pub_from_spki(p, pubh);
        if (pk == NULL)
            pk = pub_from_parts(p, pubh, kind);
    }
    if (pk == NULL)
        pk = pub_from_parts(p, p->key, kind);
    return pk;
}

static void token_label(const CK_TOKEN_INFO *ti, char *out, size_t size)
{
    size_t n = sizeof(ti->label);

    while (n > 0 && ti->label[n - 1] == ' ')
        n--;
    if (n >= size)
        n = size - 1;
    memcpy(out, ti->label, n);
    out[n] = '\0';
}

/* Opens a session on slot, logs in when asked and looks for the private key. 1: found,
 * 0: not there (session closed), -1: error (message in err, session closed). */
static int try_slot(struct bench_p11 *p, const struct bench_opts *o, CK_SLOT_ID slot, char *err,
                    size_t errlen)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_LABEL, (void *)o->label, strlen(o->label)}};
    CK_OBJECT_HANDLE h[2];
    CK_ULONG n = 0;
    CK_RV rv;

    rv = p->f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &p->main_sess);
    if (rv != CKR_OK)
        return fail_rv(err, errlen, "C_OpenSession", rv);
    if (o->login || o->pin != NULL) {
        rv = p->f->C_Login(p->main_sess, CKU_USER, (CK_UTF8CHAR_PTR)o->pin,
                           o->pin != NULL ? strlen(o->pin) : 0);
        if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
            fail_rv(err, errlen, "C_Login", rv);
            goto fail;
        }
    }
    rv = p->f->C_FindObjectsInit(p->main_sess, t, 2);
    if (rv != CKR_OK) {
        fail_rv(err, errlen, "C_FindObjectsInit", rv);
        goto fail;
    }
    rv = p->f->C_FindObjects(p->main_sess, h, 2, &n);
    p->f->C_FindObjectsFinal(p->main_sess);
    if (rv != CKR_OK) {
        fail_rv(err, errlen, "C_FindObjects", rv);
        goto fail;
    }
    if (n == 0) {
        p->f->C_CloseSession(p->main_sess);
        p->main_sess = CK_INVALID_HANDLE;
        return 0;
    }
    if (n > 1)
        fprintf(stderr,
                "p11bench: warning: more than one private key labelled \"%s\" in slot "
                "%lu; using the first\n",
                o->label, (unsigned long)slot);
    p->slot = slot;
    p->key = h[0];
    return 1;
fail:
    p->f->C_CloseSession(p->main_sess);
    p->main_sess = CK_INVALID_HANDLE;
    return -1;
}

int bench_p11_setup(const struct bench_opts *o, struct bench_p11 **out, EVP_PKEY **pub, char *desc,
                    size_t desc_len)
{
    CK_C_INITIALIZE_ARGS init = {NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL};
    CK_C_GetFunctionList get_list;
    CK_SLOT_ID *slots = NULL;
    CK_ULONG nslots = 0, i;
    CK_KEY_TYPE kt = 0;
    CK_ATTRIBUTE kta = {CKA_KEY_TYPE, &kt, sizeof(kt)};
    CK_MECHANISM_INFO mi;
    CK_TOKEN_INFO ti;
    struct bench_p11 *p;
    char err[BENCH_ERR_LEN] = "", tlabel[33] = "";
    int found = 0, r;
    CK_RV rv;

    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        fprintf(stderr, "p11bench: out of memory\n");
        return -1;
    }
    p->dl = dlopen(o->module, RTLD_NOW | RTLD_LOCAL);
    if (p->dl == NULL) {
        fprintf(stderr, "p11bench: cannot load module %s: %s\n", o->module, dlerror());
        goto fail;
    }
    *(void **)(&get_list) = dlsym(p->dl, "C_GetFunctionList");
    if (get_list == NULL) {
        fprintf(stderr, "p11bench: %s has no C_GetFunctionList: %s\n", o->module, dlerror());
        goto fail;
    }
    rv = get_list(&p->f);
    if (rv != CKR_OK || p->f == NULL) {
        fprintf(stderr, "p11bench: C_GetFunctionList failed: %s\n", bench_ckr_name(rv));
        goto fail;
    }
    rv = p->f->C_Initialize(&init);
    if (rv != CKR_OK) {
        fprintf(stderr, "p11bench: C_Initialize (CKF_OS_LOCKING_OK) failed: %s (0x%lx)\n",
                bench_ckr_name(rv), (unsigned long)rv);
        goto fail;
    }
    p->initialized = true;

    if (o->have_slot) {
        found = try_slot(p, o, o->slot, err, sizeof(err));
    } else {
        rv = p->f->C_GetSlotList(CK_TRUE, NULL, &nslots);
        if (rv == CKR_OK && nslots > 0) {
            slots = calloc(nslots, sizeof(*slots));
            if (slots == NULL)
                goto fail;
            rv = p->f->C_GetSlotList(CK_TRUE, slots, &nslots);
        }
        if (rv != CKR_OK) {
            fprintf(stderr, "p11bench: C_GetSlotList failed: %s\n", bench_ckr_name(rv));
            goto fail;
        }
        for (i = 0; i < nslots && found != 1; i++) {
            if (p->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK ||
                !(ti.flags & CKF_TOKEN_INITIALIZED))
                continue;
            token_label(&ti, tlabel, sizeof(tlabel));
            if (o->token != NULL && strcmp(o->token, tlabel) != 0)
                continue;
            r = try_slot(p, o, slots[i], err, sizeof(err));
            if (r != 0)
                found = r;
        }
    }
    if (found != 1) {
        if (found < 0)
            fprintf(stderr, "p11bench: %s\n", err);
        fprintf(stderr, "p11bench: no private key labelled \"%s\" in %s%s%s%s\n", o->label,
                o->have_slot ? "the given slot" : "any initialized token",
                o->token != NULL ? " with token label " : "", o->token != NULL ? o->token : "",
                (o->pin == NULL && !o->login) ? " (does the token need --pin?)" : "");
        goto fail;
    }
    if (p->f->C_GetTokenInfo(p->slot, &ti) == CKR_OK)
        token_label(&ti, tlabel, sizeof(tlabel));

    rv = p->f->C_GetAttributeValue(p->main_sess, p->key, &kta, 1);
    if (rv != CKR_OK) {
        fprintf(stderr, "p11bench: reading CKA_KEY_TYPE failed: %s\n", bench_ckr_name(rv));
        goto fail;
    }
    if ((o->mech->kind == BENCH_KIND_EC && kt != CKK_EC) ||
        (o->mech->kind == BENCH_KIND_RSA && kt != CKK_RSA) ||
        (o->mech->kind == BENCH_KIND_ED25519 && kt != CKK_EC_EDWARDS)) {
        fprintf(stderr, "p11bench: key \"%s\" has CKA_KEY_TYPE 0x%lx; %s needs an %s key\n",
                o->label, (unsigned long)kt, o->mech->name, bench_kind_name(o->mech->kind));
        goto fail;
    }
    rv = p->f->C_GetMechanismInfo(p->slot, o->mech->type, &mi);
    if (rv != CKR_OK || !(mi.flags & CKF_SIGN)) {
        fprintf(stderr, "p11bench: the token in slot %lu does not offer %s for signing (%s)%s\n",
                (unsigned long)p->slot, o->mech->ckm_name, bench_ckr_name(rv),
                o->mech->input == BENCH_IN_HASH
                    ? "; the mechanism without the hash (--mech ecdsa, rsa-pss, rsa-pkcs) may be"
                    : "");
        goto fail;
    }

    p->mech.mechanism = o->mech->type;
    if (o->mech->pss) {
        p->pss.hashAlg = CKM_SHA256;
        p->pss.mgf = CKG_MGF1_SHA256;
        p->pss.sLen = BENCH_PSS_SALT;
        p->mech.pParameter = &p->pss;
        p->mech.ulParameterLen = sizeof(p->pss);
    }

    *pub = NULL;
    if (o->verify_every > 0) {
        *pub = load_public(p, o->label, o->mech->kind);
        if (*pub == NULL) {
            fprintf(stderr,
                    "p11bench: --verify: cannot get the public key of \"%s\" (neither "
                    "CKA_PUBLIC_KEY_INFO nor the key's components)\n",
                    o->label);
            goto fail;
        }
        if (bench_check_pub_kind(*pub, o->mech, err, sizeof(err)) != 0) {
            fprintf(stderr, "p11bench: --verify: %s\n", err);
            EVP_PKEY_free(*pub);
            *pub = NULL;
            goto fail;
        }
    }
    snprintf(desc, desc_len, "module %s, slot %lu (token \"%s\"), key \"%s\"", o->module,
             (unsigned long)p->slot, tlabel, o->label);
    free(slots);
    *out = p;
    return 0;
fail:
    free(slots);
    bench_p11_teardown(p);
    return -1;
}

int bench_p11_thread_open(struct bench_p11 *p, CK_SESSION_HANDLE *sess, char *err, size_t errlen)
{
    CK_RV rv = p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION, NULL, NULL, sess);

    if (rv != CKR_OK)
        return fail_rv(err, errlen, "C_OpenSession", rv);
    return 0;
}

CK_RV bench_p11_sign(struct bench_p11 *p, CK_SESSION_HANDLE sess, const struct bench_msg *m,
                     unsigned char *sig, size_t *sig_len)
{
    CK_MECHANISM mech = p->mech;
    CK_ULONG len = BENCH_MAX_SIG;
    CK_RV rv;

    rv = p->f->C_SignInit(sess, &mech, p->key);
    if (rv != CKR_OK)
        return rv;
    rv = p->f->C_Sign(sess, (CK_BYTE_PTR)m->p11_in, m->p11_in_len, sig, &len);
    if (rv == CKR_OK)
        *sig_len = len;
    return rv;
}

void bench_p11_thread_close(struct bench_p11 *p, CK_SESSION_HANDLE sess)
{
    p->f->C_CloseSession(sess);
}

void bench_p11_teardown(struct bench_p11 *p)
{
    if (p == NULL)
        return;
    if (p->initialized) {
        if (p->main_sess != CK_INVALID_HANDLE)
            p->f->C_CloseSession(p->main_sess);
        p->f->C_Finalize(NULL);
    }
    if (p->dl != NULL)
        dlclose(p->dl);
    free(p);
}
