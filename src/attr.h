/* attr.h - C_GetAttributeValue and C_FindObjects rules (src/attr.c). */
#ifndef VTP_ATTR_H
#define VTP_ATTR_H

#include <stdbool.h>

#include "vtp-pkcs11.h"
#include "object.h"

/* Fills one attribute of (k, cls) by the spec's rules for a single entry: pValue NULL ->
 * length only; too small -> CKR_BUFFER_TOO_SMALL with ulValueLen = CK_UNAVAILABLE_INFORMATION;
 * sensitive -> CKR_ATTRIBUTE_SENSITIVE; unknown -> CKR_ATTRIBUTE_TYPE_INVALID. */
CK_RV vtp_attr_get_one(const struct vtp_key *k, CK_OBJECT_CLASS cls, CK_ATTRIBUTE *a);
/* Processes every entry and combines the results as the spec says. */
CK_RV vtp_attr_get(const struct vtp_key *k, CK_OBJECT_CLASS cls, CK_ATTRIBUTE *tmpl,
                   CK_ULONG count);
/* True if (k, cls) has every attribute of tmpl with exactly that value. */
bool vtp_attr_match(const struct vtp_key *k, CK_OBJECT_CLASS cls, const CK_ATTRIBUTE *tmpl,
                    CK_ULONG count);

/* The same for any object (keys and certificates). */
CK_RV vtp_obj_attr_get(const struct vtp_obj *o, CK_ATTRIBUTE *tmpl, CK_ULONG count);
bool vtp_obj_match(const struct vtp_obj *o, const CK_ATTRIBUTE *tmpl, CK_ULONG count);

/* May a template making proto's object (C_GenerateKeyPair: a prototype of the key as it will
 * be, usage included; C_CreateObject: the certificate built from the template) give a? CKR_OK
 * if it gives the value the object shows, or an attribute the caller chooses (*kept: label,
 * ID, generation parameters, the certificate's fields; the caller uses those);
 * CKR_ATTRIBUTE_TYPE_INVALID, _READ_ONLY, _VALUE_INVALID or CKR_TEMPLATE_INCONSISTENT
 * otherwise, with a log line. One table (attr.c) says this and what objects show. */
CK_RV vtp_attr_given(const struct vtp_obj *proto, const CK_ATTRIBUTE *a, bool *kept);

/* Template helpers for keygen / create. */
const CK_ATTRIBUTE *vtp_attr_find(const CK_ATTRIBUTE *tmpl, CK_ULONG count,
                                  CK_ATTRIBUTE_TYPE type);
/* CKR_ATTRIBUTE_VALUE_INVALID if present with a wrong size. *present tells if it was there. */
CK_RV vtp_attr_bool(const CK_ATTRIBUTE *tmpl, CK_ULONG count, CK_ATTRIBUTE_TYPE type,
                    bool *present, CK_BBOOL *value);
CK_RV vtp_attr_ulong(const CK_ATTRIBUTE *tmpl, CK_ULONG count, CK_ATTRIBUTE_TYPE type,
                     bool *present, CK_ULONG *value);

#endif /* VTP_ATTR_H */
