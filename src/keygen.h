/* keygen.h - C_GenerateKeyPair and C_DestroyObject on Transit keys (src/keygen.c). */
#ifndef VTP_KEYGEN_H
#define VTP_KEYGEN_H

#include "vtp-pkcs11.h"
#include "session.h"

CK_RV vtp_keygen_pair(struct vtp_session *s, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR pub_tmpl,
                      CK_ULONG pub_count, CK_ATTRIBUTE_PTR priv_tmpl, CK_ULONG priv_count,
                      CK_OBJECT_HANDLE_PTR pub, CK_OBJECT_HANDLE_PTR priv);
CK_RV vtp_keygen_destroy(struct vtp_session *s, CK_OBJECT_HANDLE h);

/* Turns a label into a Transit key name ([A-Za-z0-9_.-], starting and ending with a word
 * character), or NULL if nothing usable is left. Exposed for unit tests. */
char *vtp_keygen_name_from_label(const char *prefix, const unsigned char *label, size_t len);

#endif /* VTP_KEYGEN_H */
