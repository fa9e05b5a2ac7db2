/* sign.h - C_Sign* and C_Verify* (src/sign.c). The caller holds the session (acquired). */
#ifndef VTP_SIGN_H
#define VTP_SIGN_H

#include "vtp-pkcs11.h"
#include "session.h"

/* Largest input a non-hashing mechanism accepts, single or accumulated (Ed25519 messages). */
#define VTP_SIGN_MAX_INPUT (512u * 1024u)

CK_RV vtp_sign_init(struct vtp_session *s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key);
CK_RV vtp_sign(struct vtp_session *s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
               CK_ULONG_PTR sig_len);
CK_RV vtp_sign_update(struct vtp_session *s, CK_BYTE_PTR part, CK_ULONG len);
CK_RV vtp_sign_final(struct vtp_session *s, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len);

CK_RV vtp_verify_init(struct vtp_session *s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key);
CK_RV vtp_verify(struct vtp_session *s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
                 CK_ULONG sig_len);
CK_RV vtp_verify_update(struct vtp_session *s, CK_BYTE_PTR part, CK_ULONG len);
CK_RV vtp_verify_final(struct vtp_session *s, CK_BYTE_PTR sig, CK_ULONG sig_len);

/* DER ECDSA-Sig-Value -> r||s, each left-padded to half of out_len. */
CK_RV vtp_ecdsa_der_to_raw(const unsigned char *der, size_t der_len, unsigned char *out,
                           size_t out_len);

#endif /* VTP_SIGN_H */
