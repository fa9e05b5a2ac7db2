/* util.c - base64, hex, PEM, time and secret-memory helpers. */
#include "common.h"
#include "util.h"

#include <limits.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Decoding table: the digit value (0..63); 0x40 is or'ed in for the standard alphabet's '+' '/',
 * 0x80 for the URL-safe '-' '_'; B64_BAD for anything else (including '=' and whitespace). */
#define B64_BAD 0xff
#define B64_STD 0x40
#define B64_URL 0x80

static const unsigned char b64_table[256] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7e, 0xff, 0xbe, 0xff, 0x7f,
    0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
    0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0xff, 0xff, 0xff, 0xff, 0xbf,
    0xff, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
};

char *vtp_b64_encode(const unsigned char *in, size_t len)
{
    size_t out_len, i, o = 0;
    char *out;

    if (in == NULL && len > 0)
        return NULL;
    if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
        return NULL;
    out_len = (len + 2) / 3 * 4;
    out = malloc(out_len + 1);
    if (out == NULL)
        return NULL;

    for (i = 0; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 0x3f];
        out[o++] = b64_alphabet[(v >> 12) & 0x3f];
        out[o++] = b64_alphabet[(v >> 6) & 0x3f];
        out[o++] = b64_alphabet[v & 0x3f];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64_alphabet[(v >> 18) & 0x3f];
        out[o++] = b64_alphabet[(v >> 12) & 0x3f];
        out[o++] = '=';
        out[o++] = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64_alphabet[(v >> 18) & 0x3f];
        out[o++] = b64_alphabet[(v >> 12) & 0x3f];
        out[o++] = b64_alphabet[(v >> 6) & 0x3f];
        out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

/* Strict decoding: every character a digit of one alphabet (standard or URL-safe, not both),
 * padding only at the very end and only as much as the length needs, the unused low bits of the
 * last digit zero (so every byte string has exactly one accepted encoding per alphabet and
 * padding choice). An empty input decodes to zero bytes. */
bool vtp_b64_decode(const char *in, size_t in_len, unsigned char **out, size_t *out_len)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t data_len, n, i, o = 0;
    unsigned char *buf;
    unsigned int cls = 0, bits = 0;
    uint32_t acc = 0;

    if (in == NULL || out == NULL || out_len == NULL)
        return false;

    /* At most two '=', and only if the padded length is a multiple of 4. */
    data_len = in_len;
    while (data_len > 0 && s[data_len - 1] == '=' && in_len - data_len < 2)
        data_len--;
    if (data_len != in_len && (in_len % 4 != 0 || data_len % 4 == 0))
        return false;
    if (data_len % 4 == 1)
        return false;
    n = data_len / 4 * 3 + (data_len % 4 == 0 ? 0 : data_len % 4 - 1);

    buf = malloc(n > 0 ? n : 1);
    if (buf == NULL)
        return false;

    for (i = 0; i < data_len; i++) {
        unsigned int t = b64_table[s[i]];
        if (t == B64_BAD)
            goto bad;
        cls |= t;
        acc = (acc << 6 | (t & 0x3f)) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (unsigned char)(acc >> bits);
        }
    }
    if ((cls & (B64_STD | B64_URL)) == (B64_STD | B64_URL))
        goto bad;
    if ((acc & ((1u << bits) - 1)) != 0)
        goto bad;

    *out = buf;
    *out_len = o;
    return true;

bad:
    OPENSSL_cleanse(buf, n > 0 ? n : 1);
    free(buf);
    return false;
}

char *vtp_hex_encode(const unsigned char *in, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    char *out;
    size_t i;

    if (in == NULL && len > 0)
        return NULL;
    if (len > (SIZE_MAX - 1) / 2)
        return NULL;
    out = malloc(len * 2 + 1);
    if (out == NULL)
        return NULL;
    for (i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * len] = '\0';
    return out;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Upper or lower case, even length, nothing else. */
bool vtp_hex_decode(const char *in, unsigned char **out, size_t *out_len)
{
    unsigned char *buf;
    size_t len, i;

    if (in == NULL || out == NULL || out_len == NULL)
        return false;
    len = strlen(in);
    if (len % 2 != 0)
        return false;
    buf = malloc(len > 0 ? len / 2 : 1);
    if (buf == NULL)
        return false;
    for (i = 0; i < len / 2; i++) {
        int hi = hex_value(in[2 * i]), lo = hex_value(in[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(buf);
            return false;
        }
        buf[i] = (unsigned char)(hi << 4 | lo);
    }
    *out = buf;
    *out_len = len / 2;
    return true;
}

bool vtp_pem_to_der(const char *pem, unsigned char **out, size_t *out_len)
{
    BIO *bio = NULL;
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL, *copy = NULL;
    long data_len = 0;
    size_t pem_len;
    bool ok = false;

    if (pem == NULL || out == NULL || out_len == NULL)
        return false;
    pem_len = strlen(pem);
    if (pem_len > INT_MAX)
        return false;
    bio = BIO_new_mem_buf(pem, (int)pem_len);
    if (bio == NULL)
        goto out;
    /* PEM_read_bio skips anything before the first "-----BEGIN " line. */
    if (PEM_read_bio(bio, &name, &header, &data, &data_len) != 1 || data_len <= 0)
        goto out;
    copy = malloc((size_t)data_len);
    if (copy == NULL)
        goto out;
    memcpy(copy, data, (size_t)data_len);

    *out = copy;
    *out_len = (size_t)data_len;
    ok = true;

out:
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(bio);
    return ok;
}

int64_t vtp_now_us(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t vtp_now_ms(void)
{
    return vtp_now_us() / 1000;
}

void vtp_free_secret(char *s)
{
    if (s == NULL)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

char *vtp_strdup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

/* PKCS#11 string fields are blank-padded and not NUL-terminated; longer input is cut. */
void vtp_pad_copy(unsigned char *dst, size_t dst_len, const char *src)
{
    size_t n = 0;

    if (dst == NULL)
        return;
    if (src != NULL) {
        n = strlen(src);
        if (n > dst_len)
            n = dst_len;
        memcpy(dst, src, n);
    }
    memset(dst + n, ' ', dst_len - n);
}

char *vtp_join3(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *p = malloc(n);

    if (p != NULL)
        snprintf(p, n, "%s%s%s", a, b, c);
    return p;
}
