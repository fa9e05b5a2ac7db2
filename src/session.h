/* session.h - sessions and their per-operation state (src/session.c). */
#ifndef VTP_SESSION_H
#define VTP_SESSION_H

#include <pthread.h>
#include <stdbool.h>
#include <openssl/evp.h>

#include "vtp-pkcs11.h"
#include "mech.h"
#include "object.h"
#include "slot.h"

/* State of one sign or verify operation. */
struct vtp_op {
    bool active;
    bool multipart; /* C_*Update was called: single-part C_Sign is no longer allowed */
    const struct vtp_mech *mech;
    struct vtp_key *key; /* reference held for the operation */
    EVP_MD_CTX *md;      /* VTP_INPUT_HASH */
    unsigned char *buf;  /* accumulated input of non-hashing mechanisms */
    size_t buf_len;
    const char *pss_md; /* PSS: hash and MGF1 digest (OpenSSL names) */
    long salt_len;      /* PSS: bytes */
    unsigned char *result; /* decrypt: plaintext kept for a retry after CKR_BUFFER_TOO_SMALL */
    size_t result_len;
    unsigned char result_of[32]; /* SHA-256 of the ciphertext result is the plaintext of */
};

/* State of a C_FindObjects* search (src/find.c). */
struct vtp_find {
    bool active;
    CK_OBJECT_HANDLE *found;
    size_t n_found;
    size_t pos;
};

enum vtp_op_kind { VTP_OP_SIGN, VTP_OP_VERIFY, VTP_OP_ENCRYPT, VTP_OP_DECRYPT, VTP_OP_DIGEST };

/* A session; its body is private to session.c. A caller holds it between vtp_session_acquire
 * and vtp_session_release, and reaches its parts through these: */
struct vtp_session;
struct vtp_slot *vtp_session_slot(const struct vtp_session *s);
CK_FLAGS vtp_session_flags(const struct vtp_session *s);
struct vtp_op *vtp_session_op(struct vtp_session *s, enum vtp_op_kind kind);
struct vtp_find *vtp_session_find(struct vtp_session *s);

CK_RV vtp_sessions_init(void);
/* Frees every session (C_Finalize). */
void vtp_sessions_finalize(void);

CK_RV vtp_session_open(struct vtp_slot *slot, CK_FLAGS flags, CK_SESSION_HANDLE *out);
CK_RV vtp_session_close(CK_SESSION_HANDLE h);
/* Closes every session of the slot; logs the slot out. */
void vtp_session_close_all(struct vtp_slot *slot);
/* Looks up h, takes a reference and locks the session. CKR_SESSION_HANDLE_INVALID if unknown. */
CK_RV vtp_session_acquire(CK_SESSION_HANDLE h, struct vtp_session **out);
/* Unlocks and drops the reference. */
void vtp_session_release(struct vtp_session *s);

CK_STATE vtp_session_state(struct vtp_session *s);
/* Does any read-only session exist on the slot (for C_Login as SO)? */
bool vtp_session_any_ro(struct vtp_slot *slot);

void vtp_op_reset(struct vtp_op *op);
void vtp_find_reset(struct vtp_find *f);

/* In a forked child: forget the parent's sessions without touching their locks. */
void vtp_sessions_atfork_child(void);
#endif /* VTP_SESSION_H */
