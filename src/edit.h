/* edit.h - C_CreateObject, C_SetAttributeValue and certificate destruction (src/edit.c). */
#ifndef VTP_EDIT_H
#define VTP_EDIT_H

#include "vtp-pkcs11.h"
#include "object.h"
#include "session.h"

/* C_CreateObject: X.509 certificates, stored in KV v2. */
CK_RV vtp_object_create(struct vtp_session *s, CK_ATTRIBUTE_PTR tmpl, CK_ULONG count,
                        CK_OBJECT_HANDLE_PTR out);
/* C_SetAttributeValue: CKA_LABEL and CKA_ID of keys and certificates, persisted in KV v2. */
CK_RV vtp_object_set(struct vtp_session *s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_PTR tmpl,
                     CK_ULONG count);
/* C_DestroyObject of a certificate (keygen.c destroys keys). */
CK_RV vtp_edit_destroy_cert(struct vtp_session *s, struct vtp_cert *cert);

#endif /* VTP_EDIT_H */
