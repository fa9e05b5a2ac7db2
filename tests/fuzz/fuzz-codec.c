/* fuzz-codec.c - the byte codecs (src/util.c) and certificate parsing (src/object.c).
 *
 * The first byte picks the target; the rest is its input:
 *  'b' base64: vtp_b64_decode; what decodes re-encodes to the same text (up to the URL-safe
 *      alphabet and padding: the decoder accepts one encoding per byte string), and
 *      vtp_b64_encode of the raw bytes decodes back to them;
 *  'h' hex: vtp_hex_decode of the text (cut at NUL); what decodes re-encodes to the same text
 *      in lower case; vtp_hex_encode of the raw bytes decodes back to them;
 *  'p' PEM: vtp_pem_to_der of the text, and what it yields as a certificate;
 *  'd' DER: vtp_cert_build of the raw bytes (the next byte says how much of the rest is a
 *      CKA_ID and a CKA_LABEL, and whether CKA_SUBJECT/ISSUER/SERIAL_NUMBER come from a
 *      template); a certificate that builds survives vtp_cert_to_json -> vtp_cert_from_json and
 *      vtp_cert_relabel unchanged;
 *  'n' key names: vtp_keygen_name_from_label gives a Transit name or NULL, and
 *      vtp_key_default_id the name's bytes;
 *  'e' names that carry a label, ID and usage without KV: vtp_name_encode's names decode
 *      (vtp_name_decode) to what was given, and the rest of the input decodes safely;
 *  'l' labels: one that vtp_label_check accepts is a JSON string, and the KV entry
 *      vtp_kv_meta_new makes with it (and an ID and usage) reads back the same
 *      (vtp_kv_meta_fields).
 * Any other first byte picks one of them by its value modulo 7. */
#include "config.h"

#include <ctype.h>

#include "keygen.h"
#include "object.h"
#include "util.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_setup_log();
    return 0;
}

static void fuzz_b64(const uint8_t *data, size_t size)
{
    unsigned char *out = NULL, *back = NULL;
    size_t out_len = 0, back_len = 0;
    char *in = fz_dup(data, size), *enc;

    if (vtp_b64_decode(in, size, &out, &out_len)) {
        size_t n = size, m;
        char *canon = fz_strdup(in, size);
        /* The canonical text: standard alphabet, no padding. */
        for (size_t i = 0; i < n; i++)
            canon[i] = canon[i] == '-' ? '+' : canon[i] == '_' ? '/' : canon[i];
        while (n > 0 && canon[n - 1] == '=')
            n--;
        enc = vtp_b64_encode(out, out_len);
        FUZZ_CHECK(enc != NULL, "encode");
        m = strlen(enc);
        while (m > 0 && enc[m - 1] == '=')
            m--;
        FUZZ_CHECK(m == n && memcmp(enc, canon, n) == 0,
                   "'%.*s' decodes to %zu bytes that encode as '%s'", (int)size, in, out_len, enc);
        FUZZ_CHECK(out_len == n * 3 / 4, "%zu digits gave %zu bytes", n, out_len);
        free(enc);
        free(canon);
        free(out);
    }
    enc = vtp_b64_encode(data, size);
    FUZZ_CHECK(enc != NULL && strlen(enc) == (size + 2) / 3 * 4, "encode of %zu bytes", size);
    FUZZ_CHECK(vtp_b64_decode(enc, strlen(enc), &back, &back_len), "decode of '%s'", enc);
    FUZZ_CHECK(back_len == size && (size == 0 || memcmp(back, data, size) == 0),
               "round trip of %zu bytes", size);
    free(back);
    free(enc);
    free(in);
}

static void fuzz_hex(const uint8_t *data, size_t size)
{
    char *in = fz_strdup(data, size), *enc;
    unsigned char *out = NULL, *back = NULL;
    size_t out_len = 0, back_len = 0;

    if (vtp_hex_decode(in, &out, &out_len)) {
        enc = vtp_hex_encode(out, out_len);
        FUZZ_CHECK(enc != NULL && strlen(enc) == strlen(in), "hex length");
        for (size_t i = 0; in[i] != '\0'; i++)
            FUZZ_CHECK(enc[i] == tolower((unsigned char)in[i]), "hex '%s' re-encodes as '%s'", in,
                       enc);
        free(enc);
        free(out);
    }
    enc = vtp_hex_encode(data, size);
    FUZZ_CHECK(enc != NULL && vtp_hex_decode(enc, &back, &back_len), "hex round trip");
    FUZZ_CHECK(back_len == size && (size == 0 || memcmp(back, data, size) == 0),
               "hex round trip of %zu bytes", size);
    free(back);
    free(enc);
    free(in);
}

static void fuzz_der(const uint8_t *data, size_t size)
{
    struct fz f = {data, size};
    uint8_t how = fz_u8(&f), idn = fz_u8(&f) % 32, labeln = fz_u8(&f) % 32;
    size_t id_len, label_len, n = 0, der_len;
    const uint8_t *id = fz_bytes(&f, idn, &id_len), *label = fz_bytes(&f, labeln, &label_len);
    CK_ATTRIBUTE tmpl[3];
    static const CK_ATTRIBUTE_TYPE types[3] = {CKA_SUBJECT, CKA_ISSUER, CKA_SERIAL_NUMBER};
    void *parts[3] = {NULL, NULL, NULL};
    unsigned char *der, *idc = NULL;
    char *labelc = NULL;
    struct vtp_cert *c = NULL;
    CK_RV rv;

    for (int i = 0; i < 3; i++) {
        if (how & (1u << i)) {
            size_t len;
            const uint8_t *p = fz_bytes(&f, fz_u8(&f) % 16, &len);
            parts[i] = fz_dup(p, len);
            tmpl[n++] = (CK_ATTRIBUTE){types[i], parts[i], len};
        }
    }
    der = fz_dup(f.p, f.n);
    der_len = f.n;
    if (how & 0x08)
        idc = fz_dup(id, id_len);
    if (how & 0x10)
        labelc = fz_dup(label, label_len);
    rv = vtp_cert_build(der, der_len, idc, id_len, labelc, label_len, n > 0 ? tmpl : NULL, n, &c);
    FUZZ_CHECK(rv == CKR_OK || rv == CKR_ATTRIBUTE_VALUE_INVALID, "vtp_cert_build: 0x%lx", rv);
    if (rv == CKR_OK) {
        FUZZ_CHECK(fuzz_same(c->value, c->value_len, der, der_len), "value");
        FUZZ_CHECK(c->id_len == (idc ? id_len : 0), "id");
        fuzz_check_cert(c);
        vtp_cert_unref(c);
    }
    for (int i = 0; i < 3; i++)
        free(parts[i]);
    free(der);
    free(idc);
    free(labelc);
}

static void fuzz_pem(const uint8_t *data, size_t size)
{
    char *pem = fz_strdup(data, size);
    unsigned char *der = NULL;
    size_t der_len = 0;
    struct vtp_cert *c = NULL;

    if (vtp_pem_to_der(pem, &der, &der_len)) {
        FUZZ_CHECK(der_len > 0, "empty DER");
        if (vtp_cert_build(der, der_len, NULL, 0, NULL, 0, NULL, 0, &c) == CKR_OK) {
            fuzz_check_cert(c);
            vtp_cert_unref(c);
        }
        free(der);
    }
    free(pem);
}

static bool word_char(int c)
{
    return isalnum(c) || c == '_';
}

static void fuzz_names(const uint8_t *data, size_t size)
{
    struct fz f = {data, size};
    size_t plen, n;
    const uint8_t *pp = fz_bytes(&f, fz_u8(&f) % 8, &plen);
    char *prefix = fz_strdup(pp, plen), *name;
    unsigned char *label = fz_dup(f.p, f.n), *id = NULL;
    size_t id_len = 0, pl = strlen(prefix);

    name = vtp_keygen_name_from_label(prefix, label, f.n);
    if (name != NULL) {
        n = strlen(name);
        FUZZ_CHECK(n > pl && strncmp(name, prefix, pl) == 0, "name '%s' prefix '%s'", name, prefix);
        FUZZ_CHECK(n - pl <= 128, "name of %zu characters", n - pl);
        for (size_t i = pl; i < n; i++)
            FUZZ_CHECK(word_char((unsigned char)name[i]) || name[i] == '-' || name[i] == '.',
                       "name '%s' has '%c'", name, name[i]);
        FUZZ_CHECK(word_char((unsigned char)name[n - 1]), "name '%s' ends badly", name);
        FUZZ_CHECK(pl > 0 || word_char((unsigned char)name[0]), "name '%s' starts badly", name);
        FUZZ_CHECK(vtp_key_default_id(name, &id, &id_len) == CKR_OK && id_len == n &&
                       memcmp(id, name, n) == 0,
                   "default id of '%s'", name);
        free(id);
        free(name);
    }
    free(label);
    free(prefix);
}

/* Without KV a key's name carries its label, ID and usage (vtp_name_encode): what encodes
 * decodes to the same; and any name decodes safely. */
static void fuzz_name_codec(const uint8_t *data, size_t size)
{
    struct fz f = {data, size};
    uint8_t flags = fz_u8(&f);
    size_t plen, llen, ilen, label_len = 0, id_len = 0;
    const uint8_t *pp = fz_bytes(&f, fz_u8(&f) % 8, &plen);
    const uint8_t *lp = fz_bytes(&f, fz_u8(&f) % 48, &llen);
    const uint8_t *ip = fz_bytes(&f, fz_u8(&f) % 16, &ilen);
    long usage = (flags & 4) ? (long)(fz_u32(&f) & 0xfff) : -1, got_usage = 0;
    char *prefix = fz_strdup(pp, plen), *name = NULL, *any = fz_strdup(f.p, f.n);
    CK_ATTRIBUTE label = {CKA_LABEL, fz_dup(lp, llen), llen}, id = {CKA_ID, fz_dup(ip, ilen), ilen};
    unsigned char *got_id = NULL;
    CK_RV rv;

    rv = vtp_name_encode(prefix, (flags & 1) ? &label : NULL, (flags & 2) ? &id : NULL, usage,
                         &name);
    FUZZ_CHECK(rv == CKR_OK || rv == CKR_ATTRIBUTE_VALUE_INVALID, "vtp_name_encode: 0x%lx", rv);
    if (rv == CKR_OK) {
        size_t pl = strlen(prefix), n = strlen(name);
        const char *shortname = name + pl;
        bool has_label = (flags & 1) && llen > 0;
        FUZZ_CHECK(strncmp(name, prefix, pl) == 0, "name '%s' lacks its prefix", name);
        for (size_t i = pl; i < n; i++)
            FUZZ_CHECK(isalnum((unsigned char)name[i]) || strchr("_-.", name[i]) != NULL,
                       "name '%s' has '%c'", name, name[i]);
        FUZZ_CHECK(vtp_name_decode(shortname, &label_len, &got_id, &id_len, &got_usage),
                   "'%s' does not decode", shortname);
        if (has_label)
            FUZZ_CHECK(label_len == llen && memcmp(shortname, lp, llen) == 0,
                       "'%s': label of %zu bytes, %zu given", shortname, label_len, llen);
        else
            FUZZ_CHECK(label_len == 12 && strncmp(shortname, "p11-", 4) == 0,
                       "'%s': label of %zu bytes without a label", shortname, label_len);
        if (flags & 2)
            FUZZ_CHECK(fuzz_same(got_id, id_len, ip, ilen), "'%s': ID of %zu bytes, %zu given",
                       shortname, id_len, ilen);
        else
            FUZZ_CHECK(fuzz_same(got_id, id_len, shortname, label_len),
                       "'%s': the ID is not the label", shortname);
        FUZZ_CHECK(got_usage == (usage >= 0 ? (usage & VTP_USE_ALL) : -1),
                   "'%s': usage %ld, %ld given", shortname, got_usage, usage);
        free(got_id);
        got_id = NULL;
    }
    if (vtp_name_decode(any, &label_len, &got_id, &id_len, &got_usage)) {
        FUZZ_CHECK(label_len <= strlen(any), "'%s': label of %zu bytes", any, label_len);
        FUZZ_CHECK(got_usage >= -1 && got_usage <= VTP_USE_ALL, "'%s': usage %ld", any, got_usage);
        free(got_id);
    }
    free(name);
    free(prefix);
    free(any);
    free(label.pValue);
    free(id.pValue);
}

/* A label vtp_label_check accepts can be stored: it is a JSON string, and a KV entry made with
 * it reads back the same ID, label and usage. */
static void fuzz_label_meta(const uint8_t *data, size_t size)
{
    struct fz f = {data, size};
    uint8_t flags = fz_u8(&f);
    size_t ilen;
    const uint8_t *ip = fz_bytes(&f, fz_u8(&f) % 16, &ilen);
    long usage = (flags & 4) ? (long)(fz_u32(&f) % (VTP_USE_ALL + 1)) : -1, got_usage;
    CK_ATTRIBUTE label = {CKA_LABEL, fz_dup(f.p, f.n), f.n}, id = {CKA_ID, fz_dup(ip, ilen), ilen};
    const char *hex, *got_label;
    json_t *meta;
    char *want_hex;

    if (vtp_label_check(&label) != CKR_OK)
        goto out;
    meta = vtp_kv_meta_new((flags & 2) ? &id : NULL, (flags & 1) ? &label : NULL, usage);
    FUZZ_CHECK(meta != NULL,
               "a label vtp_label_check accepts cannot be stored in KV: %zu bytes "
               "'%.*s'",
               f.n, (int)f.n, (const char *)f.p);
    FUZZ_CHECK(vtp_kv_meta_fields(meta, &hex, &got_label, &got_usage), "fields");
    want_hex = vtp_hex_encode(ip, ilen);
    FUZZ_CHECK((flags & 2) ? hex != NULL && strcmp(hex, want_hex) == 0 : hex == NULL, "id");
    FUZZ_CHECK((flags & 1) ? got_label != NULL && fuzz_same(got_label, strlen(got_label), f.p, f.n)
                           : got_label == NULL,
               "label");
    FUZZ_CHECK(got_usage == usage, "usage %ld, %ld given", got_usage, usage);
    free(want_hex);
    json_decref(meta);
out:
    free(label.pValue);
    free(id.pValue);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static void (*const targets[])(const uint8_t *, size_t) = {
        fuzz_b64, fuzz_hex, fuzz_pem, fuzz_der, fuzz_names, fuzz_name_codec, fuzz_label_meta};
    const char *letters = "bhpdnel", *at;
    int t;

    if (size == 0)
        return 0;
    at = strchr(letters, data[0]);
    t = at != NULL && data[0] != '\0' ? (int)(at - letters) : data[0] % 7;
    targets[t](data + 1, size - 1);
    return 0;
}
