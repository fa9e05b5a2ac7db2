/* find.h - C_FindObjects* over a slot's cache snapshot (src/find.c). */
#ifndef VTP_FIND_H
#define VTP_FIND_H

#include "vtp-pkcs11.h"
#include "session.h"

/* The caller checked the arguments (template entries readable) and holds the session. */
CK_RV vtp_find_init(struct vtp_session *s, const CK_ATTRIBUTE *tmpl, CK_ULONG count);
CK_RV vtp_find_next(struct vtp_session *s, CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *count);
CK_RV vtp_find_final(struct vtp_session *s);

#endif /* VTP_FIND_H */
