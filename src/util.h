/* util.h - base64, hex, PEM, time and secret-memory helpers (src/util.c). */
#ifndef VTP_UTIL_H
#define VTP_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Standard base64 with padding. Returns a malloc'ed NUL-terminated string or NULL. */
char *vtp_b64_encode(const unsigned char *in, size_t len);
/* Accepts standard or URL-safe alphabet, with or without padding; whitespace not allowed.
 * Returns false on bad input or allocation failure. *out is malloc'ed. */
bool vtp_b64_decode(const char *in, size_t in_len, unsigned char **out, size_t *out_len);
/* Lower-case hex. */
char *vtp_hex_encode(const unsigned char *in, size_t len);
bool vtp_hex_decode(const char *in, unsigned char **out, size_t *out_len);
/* First PEM block of any type -> DER. */
bool vtp_pem_to_der(const char *pem, unsigned char **out, size_t *out_len);

/* Monotonic milliseconds. */
int64_t vtp_now_ms(void);
/* The same clock (CLOCK_MONOTONIC) in microseconds. */
int64_t vtp_now_us(void);

/* Wipe and free (secrets). NULL is fine. */
void vtp_free_secret(char *s);
char *vtp_strdup_or_null(const char *s);
/* a, b and c in one malloc'ed string, or NULL. */
char *vtp_join3(const char *a, const char *b, const char *c);
/* Copies a space-padded PKCS#11 string field. */
void vtp_pad_copy(unsigned char *dst, size_t dst_len, const char *src);

#endif /* VTP_UTIL_H */
