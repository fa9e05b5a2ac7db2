/* module.h - module state shared by the entry points (src/module.c). */
#ifndef VTP_MODULE_H
#define VTP_MODULE_H

#include "vtp-pkcs11.h"

/* CKR_OK if C_Initialize was called in this process and C_Finalize has not been. */
CK_RV vtp_module_check(void);

/* Requests sent to Vault since C_Initialize (tests and benchmarks count them). */
struct vtp_http_stats;
CK_RV vtp_module_http_stats(struct vtp_http_stats *out);

#endif /* VTP_MODULE_H */
