/* crypt.h - C_Encrypt*, C_Decrypt* (RSA-OAEP), C_Digest*, C_GenerateRandom (src/crypt.c).
 * The caller holds the session (acquired). */
#ifndef VTP_CRYPT_H
#define VTP_CRYPT_H

#include "vtp-pkcs11.h"
#include "session.h"

CK_RV vtp_encrypt_init(struct vtp_session *s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key);
CK_RV vtp_encrypt(struct vtp_session *s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                  CK_ULONG_PTR out_len);
CK_RV vtp_decrypt_init(struct vtp_session *s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key);
CK_RV vtp_decrypt(struct vtp_session *s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                  CK_ULONG_PTR out_len);

CK_RV vtp_digest_init(struct vtp_session *s, CK_MECHANISM_PTR mech);
CK_RV vtp_digest(struct vtp_session *s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                 CK_ULONG_PTR out_len);
CK_RV vtp_digest_update(struct vtp_session *s, CK_BYTE_PTR in, CK_ULONG in_len);
CK_RV vtp_digest_final(struct vtp_session *s, CK_BYTE_PTR out, CK_ULONG_PTR out_len);

CK_RV vtp_random(struct vtp_session *s, CK_BYTE_PTR out, CK_ULONG len);

#endif /* VTP_CRYPT_H */
