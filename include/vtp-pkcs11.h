/* vtp-pkcs11.h - the PKCS#11 definitions this module is built against.
 *
 * p11-kit ships a complete v2.40 pkcs11.h; the PKCS#11 3.0 interface discovery types
 * (CK_INTERFACE, C_GetInterfaceList, C_GetInterface) are added here when the installed
 * header predates them, with the values the 3.0 specification gives.
 */
#ifndef VTP_PKCS11_H
#define VTP_PKCS11_H

#include <p11-kit/pkcs11.h>

#ifndef CKF_INTERFACE_FORK_SAFE
#define VTP_NEED_INTERFACE_TYPES 1
typedef struct CK_INTERFACE {
    CK_CHAR *pInterfaceName;
    CK_VOID_PTR pFunctionList;
    CK_FLAGS flags;
} CK_INTERFACE;
typedef CK_INTERFACE *CK_INTERFACE_PTR;
typedef CK_INTERFACE_PTR *CK_INTERFACE_PTR_PTR;
#define CKF_INTERFACE_FORK_SAFE 0x00000001UL
#endif

#ifndef CKR_CURVE_NOT_SUPPORTED
#define CKR_CURVE_NOT_SUPPORTED 0x00000140UL
#endif

#endif /* VTP_PKCS11_H */
