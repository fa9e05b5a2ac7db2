/* errkind.h - what a Vault/OpenBao answer means, before any entry point says it to its caller.
 *
 * transit.c classifies every answer once (vtp_transit_classify) into one of these kinds. They
 * are CK_RV values in the vendor-defined range, so they travel unchanged through the seam
 * (struct vtp_transit_ops) and every layer above it, which pass a CK_RV up; none of them may
 * reach a caller. At the boundary, module.c turns a kind into the code PKCS#11 lets that entry
 * point return (src/errmap.c): a key deleted in Vault is CKR_KEY_HANDLE_INVALID for an init
 * function, CKR_FUNCTION_FAILED for C_Sign. docs/errors.md has both tables.
 */
#ifndef VTP_ERRKIND_H
#define VTP_ERRKIND_H

#include <stdbool.h>

#include "vtp-pkcs11.h"

/* name, and what it means (for logs and docs) */
#define VTP_ERR_KINDS(X)                                                                           \
    X(KEY_MISSING, "the key or secret does not exist")                                             \
    X(DENIED, "the token's policy denies the request")                                             \
    X(TOKEN_INVALID, "no valid Vault token: invalid, expired, revoked or none sent")               \
    X(DELETION_NOT_ALLOWED, "the key does not allow deletion")                                     \
    X(TOO_LARGE, "the request is larger or more complex than the server takes")                    \
    X(MESSAGE_TOO_LONG, "the input does not fit the key or the hash")                              \
    X(SALT_LENGTH, "the PSS salt length does not fit the key")                                     \
    X(DECRYPT_FAILED, "the ciphertext does not decrypt with this key")                             \
    X(VERSION_UNAVAILABLE, "the key version can no longer be used")                                \
    X(CAS_MISMATCH, "a check-and-set write found another version")                                 \
    X(UNAVAILABLE, "no usable answer: sealed, standby, rate limited, 5xx or no connection")        \
    X(MISCONFIGURED, "the mount, path or namespace does not exist or does not allow that")         \
    X(REFUSED, "the server refused the request for another reason")                                \
    X(FAILED, "the server failed the request for another reason")

enum vtp_err_index {
    VTP_ERR_INDEX_NONE = 0,
#define VTP_ERR_INDEX_(name, text) VTP_ERR_INDEX_##name,
    VTP_ERR_KINDS(VTP_ERR_INDEX_)
#undef VTP_ERR_INDEX_
        VTP_ERR_INDEX_END
};

/* CKR_VENDOR_DEFINED | "VT" << 16: far from any vendor code a client might know. */
#define VTP_ERR_BASE (CKR_VENDOR_DEFINED | 0x56540000UL)
#define VTP_ERR(name) ((CK_RV)(VTP_ERR_BASE + VTP_ERR_INDEX_##name))

#define VTP_ERR_KEY_MISSING VTP_ERR(KEY_MISSING)
#define VTP_ERR_DENIED VTP_ERR(DENIED)
#define VTP_ERR_TOKEN_INVALID VTP_ERR(TOKEN_INVALID)
#define VTP_ERR_DELETION_NOT_ALLOWED VTP_ERR(DELETION_NOT_ALLOWED)
#define VTP_ERR_TOO_LARGE VTP_ERR(TOO_LARGE)
#define VTP_ERR_MESSAGE_TOO_LONG VTP_ERR(MESSAGE_TOO_LONG)
#define VTP_ERR_SALT_LENGTH VTP_ERR(SALT_LENGTH)
#define VTP_ERR_DECRYPT_FAILED VTP_ERR(DECRYPT_FAILED)
#define VTP_ERR_VERSION_UNAVAILABLE VTP_ERR(VERSION_UNAVAILABLE)
#define VTP_ERR_CAS_MISMATCH VTP_ERR(CAS_MISMATCH)
#define VTP_ERR_UNAVAILABLE VTP_ERR(UNAVAILABLE)
#define VTP_ERR_MISCONFIGURED VTP_ERR(MISCONFIGURED)
#define VTP_ERR_REFUSED VTP_ERR(REFUSED)
#define VTP_ERR_FAILED VTP_ERR(FAILED)

/* The first and the number of kinds (for tables and tests). */
#define VTP_ERR_FIRST (VTP_ERR_BASE + 1)
#define VTP_ERR_COUNT ((size_t)VTP_ERR_INDEX_END - 1)

static inline bool vtp_err_is_kind(CK_RV rv)
{
    return rv > VTP_ERR_BASE && rv < VTP_ERR_BASE + VTP_ERR_INDEX_END;
}

#endif /* VTP_ERRKIND_H */
