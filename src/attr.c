/* attr.c - attribute values of key objects, by the spec's rules. */
#include "common.h"

#include <string.h>

#include "attr.h"

enum avail {
    AV_OK,
    AV_SENSITIVE,
    AV_INVALID,
};

struct aval {
    const void *ptr;
    CK_ULONG len;
    /* scalar storage for values computed on the fly */
    union {
        CK_BBOOL b;
        CK_ULONG ul;
        CK_MECHANISM_TYPE mechs[32];
    } u;
};

static enum avail set_bool(struct aval *v, CK_BBOOL b)
{
    v->u.b = b;
    v->ptr = &v->u.b;
    v->len = sizeof(CK_BBOOL);
    return AV_OK;
}

static enum avail set_ulong(struct aval *v, CK_ULONG ul)
{
    v->u.ul = ul;
    v->ptr = &v->u.ul;
    v->len = sizeof(CK_ULONG);
    return AV_OK;
}

static enum avail set_bytes(struct aval *v, const void *p, size_t len)
{
    v->ptr = p;
    v->len = (CK_ULONG)len;
    return AV_OK;
}

static enum avail allowed_mechs(const struct vtp_key *k, struct aval *v)
{
    CK_ULONG n = 0;

    for (size_t i = 0; i < vtp_mech_count() && n < VTP_ARRAY_SIZE(v->u.mechs); i++) {
        const struct vtp_mech *m = vtp_mech_at(i);
        if (vtp_mech_allowed_for(m, k->kt->kind))
            v->u.mechs[n++] = m->type;
    }
    v->ptr = v->u.mechs;
    v->len = n * sizeof(CK_MECHANISM_TYPE);
    return AV_OK;
}

/* Attributes both halves share. */
static enum avail common_value(const struct vtp_key *k, CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE t,
                               struct aval *v)
{
    bool rsa = k->kt->kind == VTP_KIND_RSA;

    switch (t) {
    case CKA_CLASS:
        return set_ulong(v, cls);
    case CKA_TOKEN:
        return set_bool(v, CK_TRUE);
    case CKA_MODIFIABLE:
        return set_bool(v, k->modifiable ? CK_TRUE : CK_FALSE);
    case CKA_DESTROYABLE:
        return set_bool(v, k->destroyable ? CK_TRUE : CK_FALSE);
    case CKA_LOCAL:
        return set_bool(v, k->imported ? CK_FALSE : CK_TRUE);
    case CKA_COPYABLE:
        return set_bool(v, CK_FALSE);
    case CKA_LABEL:
        return set_bytes(v, k->label, strlen(k->label));
    case CKA_ID:
        return set_bytes(v, k->id, k->id_len);
    case CKA_KEY_TYPE:
        return set_ulong(v, k->kt->ckk);
    case CKA_START_DATE:
    case CKA_END_DATE:
    case CKA_SUBJECT:
        return set_bytes(v, "", 0);
    case CKA_KEY_GEN_MECHANISM:
        return set_ulong(v, k->kt->gen_mech);
    case CKA_ALLOWED_MECHANISMS:
        return allowed_mechs(k, v);
    case CKA_PUBLIC_KEY_INFO:
        return set_bytes(v, k->spki, k->spki_len);
    case CKA_EC_PARAMS:
        return rsa ? AV_INVALID : set_bytes(v, k->kt->ec_params, k->kt->ec_params_len);
    case CKA_EC_POINT:
        return rsa ? AV_INVALID : set_bytes(v, k->ec_point, k->ec_point_len);
    case CKA_MODULUS:
        return rsa ? set_bytes(v, k->modulus, k->modulus_len) : AV_INVALID;
    case CKA_PUBLIC_EXPONENT:
        return rsa ? set_bytes(v, k->exponent, k->exponent_len) : AV_INVALID;
    default:
        return AV_INVALID;
    }
}

static enum avail private_value(const struct vtp_key *k, CK_ATTRIBUTE_TYPE t, struct aval *v)
{
    bool rsa = k->kt->kind == VTP_KIND_RSA;

    if (vtp_usage_bit(t, false) != 0)
        return set_bool(v, (k->usage & vtp_usage_bit(t, false)) ? CK_TRUE : CK_FALSE);
    switch (t) {
    case CKA_PRIVATE:
        return set_bool(v, k->private_is_private ? CK_TRUE : CK_FALSE);
    /* Transit's exportable: the private key can be read in plaintext (export/, backup/) */
    case CKA_SENSITIVE:
        return set_bool(v, k->exportable ? CK_FALSE : CK_TRUE);
    case CKA_EXTRACTABLE:
        return set_bool(v, k->exportable ? CK_TRUE : CK_FALSE);
    case CKA_ALWAYS_SENSITIVE:
    case CKA_NEVER_EXTRACTABLE:
        /* exportable never goes back to false; an imported key was outside before */
        return set_bool(v, k->exportable || k->imported ? CK_FALSE : CK_TRUE);
    case CKA_WRAP_WITH_TRUSTED:
    case CKA_ALWAYS_AUTHENTICATE:
        return set_bool(v, CK_FALSE);
    case CKA_VALUE:
        return AV_SENSITIVE;
    case CKA_PRIVATE_EXPONENT:
    case CKA_PRIME_1:
    case CKA_PRIME_2:
    case CKA_EXPONENT_1:
    case CKA_EXPONENT_2:
    case CKA_COEFFICIENT:
        return rsa ? AV_SENSITIVE : AV_INVALID;
    default:
        return common_value(k, CKO_PRIVATE_KEY, t, v);
    }
}

static enum avail public_value(const struct vtp_key *k, CK_ATTRIBUTE_TYPE t, struct aval *v)
{
    if (vtp_usage_bit(t, true) != 0)
        return set_bool(v, (k->usage & vtp_usage_bit(t, true)) ? CK_TRUE : CK_FALSE);
    switch (t) {
    case CKA_PRIVATE:
    case CKA_TRUSTED:
        return set_bool(v, CK_FALSE);
    case CKA_MODULUS_BITS:
        return k->kt->kind == VTP_KIND_RSA ? set_ulong(v, k->kt->bits) : AV_INVALID;
    default:
        return common_value(k, CKO_PUBLIC_KEY, t, v);
    }
}

static enum avail cert_value(const struct vtp_cert *c, CK_ATTRIBUTE_TYPE t, struct aval *v)
{
    switch (t) {
    case CKA_CLASS:
        return set_ulong(v, CKO_CERTIFICATE);
    case CKA_CERTIFICATE_TYPE:
        return set_ulong(v, CKC_X_509);
    case CKA_CERTIFICATE_CATEGORY:
        return set_ulong(v, 0); /* unspecified */
    case CKA_JAVA_MIDP_SECURITY_DOMAIN:
        return set_ulong(v, 0);
    case CKA_TOKEN:
        return set_bool(v, CK_TRUE);
    case CKA_MODIFIABLE:
    case CKA_DESTROYABLE:
        return set_bool(v, c->read_only ? CK_FALSE : CK_TRUE);
    case CKA_PRIVATE:
    case CKA_COPYABLE:
    case CKA_TRUSTED:
        return set_bool(v, CK_FALSE);
    case CKA_LABEL:
        return set_bytes(v, c->label, strlen(c->label));
    case CKA_ID:
        return set_bytes(v, c->id, c->id_len);
    case CKA_VALUE:
        return set_bytes(v, c->value, c->value_len);
    case CKA_SUBJECT:
        return set_bytes(v, c->subject, c->subject_len);
    case CKA_ISSUER:
        return set_bytes(v, c->issuer, c->issuer_len);
    case CKA_SERIAL_NUMBER:
        return set_bytes(v, c->serial, c->serial_len);
    case CKA_PUBLIC_KEY_INFO:
        return set_bytes(v, c->spki, c->spki_len);
    case CKA_CHECK_VALUE:
        return set_bytes(v, c->check_value, sizeof(c->check_value));
    case CKA_START_DATE:
    case CKA_END_DATE:
    case CKA_URL:
    case CKA_HASH_OF_SUBJECT_PUBLIC_KEY:
    case CKA_HASH_OF_ISSUER_PUBLIC_KEY:
        return set_bytes(v, "", 0);
    default:
        return AV_INVALID;
    }
}

static enum avail value_of(const struct vtp_key *k, CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE t,
                           struct aval *v)
{
    memset(v, 0, sizeof(*v));
    return cls == CKO_PRIVATE_KEY ? private_value(k, t, v) : public_value(k, t, v);
}

static enum avail obj_value(const struct vtp_obj *o, CK_ATTRIBUTE_TYPE t, struct aval *v)
{
    if (o->cls == CKO_CERTIFICATE) {
        memset(v, 0, sizeof(*v));
        return cert_value(o->cert, t, v);
    }
    return value_of(o->key, o->cls, t, v);
}

static CK_RV get_one(const struct vtp_obj *o, CK_ATTRIBUTE *a)
{
    struct aval v;

    switch (obj_value(o, a->type, &v)) {
    case AV_SENSITIVE:
        a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return CKR_ATTRIBUTE_SENSITIVE;
    case AV_INVALID:
        a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return CKR_ATTRIBUTE_TYPE_INVALID;
    case AV_OK:
        break;
    }
    if (a->pValue == NULL) {
        a->ulValueLen = v.len;
        return CKR_OK;
    }
    if (a->ulValueLen < v.len) {
        a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return CKR_BUFFER_TOO_SMALL;
    }
    if (v.len > 0)
        memcpy(a->pValue, v.ptr, v.len);
    a->ulValueLen = v.len;
    return CKR_OK;
}

CK_RV vtp_attr_get_one(const struct vtp_key *k, CK_OBJECT_CLASS cls, CK_ATTRIBUTE *a)
{
    struct vtp_obj o = {cls, (struct vtp_key *)k, NULL};
    return get_one(&o, a);
}

CK_RV vtp_attr_get(const struct vtp_key *k, CK_OBJECT_CLASS cls, CK_ATTRIBUTE *tmpl,
                   CK_ULONG count)
{
    struct vtp_obj o = {cls, (struct vtp_key *)k, NULL};
    return vtp_obj_attr_get(&o, tmpl, count);
}

CK_RV vtp_obj_attr_get(const struct vtp_obj *o, CK_ATTRIBUTE *tmpl, CK_ULONG count)
{
    CK_RV result = CKR_OK;

    for (CK_ULONG i = 0; i < count; i++) {
        CK_RV rv = get_one(o, &tmpl[i]);
        if (rv == CKR_OK)
            continue;
        VTP_LOG_DEBUG("%s of a %s object: %s", vtp_attr_name(tmpl[i].type),
                      o->cls == CKO_CERTIFICATE   ? "certificate"
                      : o->cls == CKO_PRIVATE_KEY ? "private key"
                                                  : "public key",
                      vtp_rv_name(rv));
        /* Every entry is processed; any of the three errors may be returned (spec 5.7). Keep
         * the first one, as SoftHSM does. */
        if (result == CKR_OK)
            result = rv;
    }
    return result;
}

bool vtp_attr_match(const struct vtp_key *k, CK_OBJECT_CLASS cls, const CK_ATTRIBUTE *tmpl,
                    CK_ULONG count)
{
    struct vtp_obj o = {cls, (struct vtp_key *)k, NULL};
    return vtp_obj_match(&o, tmpl, count);
}

bool vtp_obj_match(const struct vtp_obj *o, const CK_ATTRIBUTE *tmpl, CK_ULONG count)
{
    for (CK_ULONG i = 0; i < count; i++) {
        struct aval v;
        if (obj_value(o, tmpl[i].type, &v) != AV_OK)
            return false;
        if (v.len != tmpl[i].ulValueLen)
            return false;
        if (v.len > 0 && (tmpl[i].pValue == NULL || memcmp(v.ptr, tmpl[i].pValue, v.len) != 0))
            return false;
    }
    return true;
}

const CK_ATTRIBUTE *vtp_attr_find(const CK_ATTRIBUTE *tmpl, CK_ULONG count,
                                  CK_ATTRIBUTE_TYPE type)
{
    for (CK_ULONG i = 0; tmpl != NULL && i < count; i++)
        if (tmpl[i].type == type)
            return &tmpl[i];
    return NULL;
}

CK_RV vtp_attr_bool(const CK_ATTRIBUTE *tmpl, CK_ULONG count, CK_ATTRIBUTE_TYPE type,
                    bool *present, CK_BBOOL *value)
{
    const CK_ATTRIBUTE *a = vtp_attr_find(tmpl, count, type);

    *present = false;
    if (a == NULL)
        return CKR_OK;
    if (a->pValue == NULL || a->ulValueLen != sizeof(CK_BBOOL)) {
        VTP_LOG_INFO("%s: value must be one CK_BBOOL", vtp_attr_name(type));
        return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    *present = true;
    *value = *(const CK_BBOOL *)a->pValue ? CK_TRUE : CK_FALSE;
    return CKR_OK;
}

CK_RV vtp_attr_ulong(const CK_ATTRIBUTE *tmpl, CK_ULONG count, CK_ATTRIBUTE_TYPE type,
                     bool *present, CK_ULONG *value)
{
    const CK_ATTRIBUTE *a = vtp_attr_find(tmpl, count, type);

    *present = false;
    if (a == NULL)
        return CKR_OK;
    if (a->pValue == NULL || a->ulValueLen != sizeof(CK_ULONG)) {
        VTP_LOG_INFO("%s: value must be one CK_ULONG", vtp_attr_name(type));
        return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    *present = true;
    memcpy(value, a->pValue, sizeof(CK_ULONG));
    return CKR_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Templates: what C_GenerateKeyPair and C_CreateObject may be given. One table, read with the
 * value functions above: an attribute the object shows may be given only with the value it
 * will show (SHOWN); some are the caller's to choose and are kept (KEPT: label, ID, usage,
 * generation parameters, the certificate itself); some only the token sets (TOKEN); the rest
 * are not attributes of that object (NONE). */

enum given { G_NONE, G_TOKEN, G_SHOWN, G_KEPT };

struct given_rule {
    CK_ATTRIBUTE_TYPE type;
    unsigned char priv, pub, cert;
};

static const struct given_rule given_rules[] = {
    /* type                        private  public   certificate */
    {CKA_CLASS,                    G_SHOWN, G_SHOWN, G_SHOWN},
    {CKA_TOKEN,                    G_SHOWN, G_SHOWN, G_SHOWN},
    /* private key: TRUE accepted with auth = token although it shows FALSE (keygen.c) */
    {CKA_PRIVATE,                  G_KEPT,  G_SHOWN, G_SHOWN},
    {CKA_MODIFIABLE,               G_SHOWN, G_SHOWN, G_SHOWN},
    {CKA_DESTROYABLE,              G_SHOWN, G_SHOWN, G_SHOWN},
    {CKA_COPYABLE,                 G_SHOWN, G_SHOWN, G_SHOWN},
    {CKA_LABEL,                    G_KEPT,  G_KEPT,  G_KEPT},
    {CKA_ID,                       G_KEPT,  G_KEPT,  G_KEPT},
    {CKA_START_DATE,               G_SHOWN, G_SHOWN, G_SHOWN},
    {CKA_END_DATE,                 G_SHOWN, G_SHOWN, G_SHOWN},
    {CKA_SUBJECT,                  G_SHOWN, G_SHOWN, G_KEPT},
    {CKA_KEY_TYPE,                 G_SHOWN, G_SHOWN, G_NONE},
    {CKA_ALLOWED_MECHANISMS,       G_SHOWN, G_SHOWN, G_NONE},
    {CKA_KEY_GEN_MECHANISM,        G_TOKEN, G_TOKEN, G_NONE},
    {CKA_LOCAL,                    G_TOKEN, G_TOKEN, G_NONE},
    {CKA_PUBLIC_KEY_INFO,          G_TOKEN, G_TOKEN, G_TOKEN},
    /* usage: the prototype carries what the templates asked (keygen.c), so these compare */
    {CKA_SIGN,                     G_SHOWN, G_NONE,  G_NONE},
    {CKA_DECRYPT,                  G_SHOWN, G_NONE,  G_NONE},
    {CKA_UNWRAP,                   G_SHOWN, G_NONE,  G_NONE},
    {CKA_SIGN_RECOVER,             G_SHOWN, G_NONE,  G_NONE},
    {CKA_DERIVE,                   G_SHOWN, G_SHOWN, G_NONE},
    {CKA_VERIFY,                   G_NONE,  G_SHOWN, G_NONE},
    {CKA_ENCRYPT,                  G_NONE,  G_SHOWN, G_NONE},
    {CKA_WRAP,                     G_NONE,  G_SHOWN, G_NONE},
    {CKA_VERIFY_RECOVER,           G_NONE,  G_SHOWN, G_NONE},
    /* private key protection */
    {CKA_SENSITIVE,                G_SHOWN, G_NONE,  G_NONE},
    {CKA_EXTRACTABLE,              G_SHOWN, G_NONE,  G_NONE},
    {CKA_ALWAYS_SENSITIVE,         G_TOKEN, G_NONE,  G_NONE},
    {CKA_NEVER_EXTRACTABLE,        G_TOKEN, G_NONE,  G_NONE},
    {CKA_ALWAYS_AUTHENTICATE,      G_SHOWN, G_NONE,  G_NONE},
    {CKA_WRAP_WITH_TRUSTED,        G_SHOWN, G_NONE,  G_NONE},
    {CKA_TRUSTED,                  G_NONE,  G_SHOWN, G_SHOWN},
    /* key material: generation parameters are the caller's (checked by keygen.c), the rest
     * is the token's */
    {CKA_EC_PARAMS,                G_TOKEN, G_KEPT,  G_NONE},
    {CKA_EC_POINT,                 G_NONE,  G_TOKEN, G_NONE},
    {CKA_MODULUS_BITS,             G_NONE,  G_SHOWN, G_NONE},
    {CKA_PUBLIC_EXPONENT,          G_TOKEN, G_KEPT,  G_NONE},
    {CKA_MODULUS,                  G_TOKEN, G_TOKEN, G_NONE},
    {CKA_VALUE,                    G_TOKEN, G_TOKEN, G_KEPT},
    {CKA_PRIVATE_EXPONENT,         G_TOKEN, G_NONE,  G_NONE},
    {CKA_PRIME_1,                  G_TOKEN, G_NONE,  G_NONE},
    {CKA_PRIME_2,                  G_TOKEN, G_NONE,  G_NONE},
    {CKA_EXPONENT_1,               G_TOKEN, G_NONE,  G_NONE},
    {CKA_EXPONENT_2,               G_TOKEN, G_NONE,  G_NONE},
    {CKA_COEFFICIENT,              G_TOKEN, G_NONE,  G_NONE},
    /* certificates */
    {CKA_CERTIFICATE_TYPE,         G_NONE,  G_NONE,  G_SHOWN},
    {CKA_CERTIFICATE_CATEGORY,     G_NONE,  G_NONE,  G_SHOWN},
    {CKA_ISSUER,                   G_NONE,  G_NONE,  G_KEPT},
    {CKA_SERIAL_NUMBER,            G_NONE,  G_NONE,  G_KEPT},
    {CKA_CHECK_VALUE,              G_NONE,  G_NONE,  G_SHOWN},
    {CKA_URL,                      G_NONE,  G_NONE,  G_SHOWN},
    {CKA_HASH_OF_SUBJECT_PUBLIC_KEY, G_NONE, G_NONE, G_SHOWN},
    {CKA_HASH_OF_ISSUER_PUBLIC_KEY, G_NONE, G_NONE,  G_SHOWN},
    {CKA_JAVA_MIDP_SECURITY_DOMAIN, G_NONE, G_NONE,  G_SHOWN},
};

static enum given given_rule(const struct vtp_obj *o, CK_ATTRIBUTE_TYPE type)
{
    for (size_t i = 0; i < VTP_ARRAY_SIZE(given_rules); i++) {
        if (given_rules[i].type == type)
            return (enum given)(o->cls == CKO_PRIVATE_KEY  ? given_rules[i].priv
                                : o->cls == CKO_PUBLIC_KEY ? given_rules[i].pub
                                                           : given_rules[i].cert);
    }
    return G_NONE;
}

static const char *class_word(CK_OBJECT_CLASS cls)
{
    return cls == CKO_PRIVATE_KEY ? "private key" : cls == CKO_PUBLIC_KEY ? "public key"
                                                                          : "certificate";
}

static bool is_bool_attr(CK_ATTRIBUTE_TYPE t)
{
    switch (t) {
    case CKA_TOKEN: case CKA_PRIVATE: case CKA_MODIFIABLE: case CKA_DESTROYABLE:
    case CKA_COPYABLE: case CKA_SIGN: case CKA_DECRYPT: case CKA_UNWRAP: case CKA_SIGN_RECOVER:
    case CKA_DERIVE: case CKA_VERIFY: case CKA_ENCRYPT: case CKA_WRAP: case CKA_VERIFY_RECOVER:
    case CKA_SENSITIVE: case CKA_EXTRACTABLE: case CKA_ALWAYS_AUTHENTICATE:
    case CKA_WRAP_WITH_TRUSTED: case CKA_TRUSTED:
        return true;
    default:
        return false;
    }
}

CK_RV vtp_attr_given(const struct vtp_obj *proto, const CK_ATTRIBUTE *a, bool *kept)
{
    struct aval v;
    bool same;

    *kept = false;
    if (a->pValue == NULL && a->ulValueLen != 0) {
        VTP_LOG_INFO("%s: NULL value of %lu bytes", vtp_attr_name(a->type), a->ulValueLen);
        return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    switch (given_rule(proto, a->type)) {
    case G_NONE:
        VTP_LOG_INFO("%s is not an attribute of a %s", vtp_attr_name(a->type),
                     class_word(proto->cls));
        return CKR_ATTRIBUTE_TYPE_INVALID;
    case G_TOKEN:
        VTP_LOG_INFO("%s of a %s is set by the token and cannot be given",
                     vtp_attr_name(a->type), class_word(proto->cls));
        return CKR_ATTRIBUTE_READ_ONLY;
    case G_KEPT:
        *kept = true;
        return CKR_OK;
    case G_SHOWN:
        break;
    }
    if (obj_value(proto, a->type, &v) != AV_OK) {
        VTP_LOG_INFO("%s is not an attribute of this %s", vtp_attr_name(a->type),
                     class_word(proto->cls));
        return CKR_ATTRIBUTE_TYPE_INVALID;
    }
    if (is_bool_attr(a->type)) {
        if (a->ulValueLen != sizeof(CK_BBOOL))
            return CKR_ATTRIBUTE_VALUE_INVALID;
        same = (*(const CK_BBOOL *)a->pValue != CK_FALSE) == (*(const CK_BBOOL *)v.ptr != 0);
    } else {
        same = a->ulValueLen == v.len && (v.len == 0 || memcmp(a->pValue, v.ptr, v.len) == 0);
    }
    if (same)
        return CKR_OK;
    if (a->type == CKA_CLASS || a->type == CKA_KEY_TYPE || a->type == CKA_CERTIFICATE_TYPE) {
        VTP_LOG_INFO("%s does not fit the %s being made", vtp_attr_name(a->type),
                     class_word(proto->cls));
        return a->ulValueLen == sizeof(CK_ULONG) ? CKR_TEMPLATE_INCONSISTENT
                                                 : CKR_ATTRIBUTE_VALUE_INVALID;
    }
    if (is_bool_attr(a->type))
        VTP_LOG_INFO("%s = %s cannot be honoured: this %s is %s", vtp_attr_name(a->type),
                     *(const CK_BBOOL *)a->pValue ? "TRUE" : "FALSE", class_word(proto->cls),
                     *(const CK_BBOOL *)v.ptr ? "TRUE" : "FALSE");
    else
        VTP_LOG_INFO("%s: only the value this %s has can be given", vtp_attr_name(a->type),
                     class_word(proto->cls));
    return CKR_ATTRIBUTE_VALUE_INVALID;
}
