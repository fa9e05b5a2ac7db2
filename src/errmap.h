/* errmap.h - the return values each entry point may give (src/errmap.c).
 *
 * PKCS#11 v2.40 lists, for every function, the CK_RVs it may return (base specification,
 * section 5). errmap.c holds those lists, one per function, and module.c passes the result of
 * every entry point through vtp_errmap_rv at the boundary, which says an internal error kind
 * (what Vault answered, vault/errkind.h) in that function's terms and lets nothing outside the
 * function's list escape.
 */
#ifndef VTP_ERRMAP_H
#define VTP_ERRMAP_H

#include <stdbool.h>
#include <stddef.h>

#include "vtp-pkcs11.h"

/* May function fn (its name without "C_": "Sign") return rv? CKR_FUNCTION_NOT_SUPPORTED is
 * allowed everywhere (any function may be a stub). An unknown name allows no other code. */
bool vtp_errmap_allowed(const char *fn, CK_RV rv);

/* What entry point fn returns for rv, always a code of fn's list: an internal error kind
 * (vault/errkind.h) becomes the code that says it best among those fn may return (logged); a code
 * of fn's list is rv itself; any other code (a bug: logged as an error) CKR_FUNCTION_FAILED. */
CK_RV vtp_errmap_rv(const char *fn, CK_RV rv);

/* The functions of the table in CK_FUNCTION_LIST order ("Initialize", ...), NULL past the end. */
const char *vtp_errmap_function(size_t i);

#endif /* VTP_ERRMAP_H */
