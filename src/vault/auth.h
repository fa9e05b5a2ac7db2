/* auth.h - obtaining and keeping a Vault client token (src/vault/auth.c). */
#ifndef VTP_AUTH_H
#define VTP_AUTH_H

#include "vtp-pkcs11.h"
#include "cfg.h"
#include "vault/http.h"

/* Sets up the token for the configured method and registers the auth hooks on h (renewal,
 * token_file watching, re-login on an invalid token). Performs no request: auth=token sets
 * the token, token_file reads the file, approle/kubernetes/cert log in with the first request
 * that needs a token, pin waits for C_Login. CKR_OK even when no token could be had yet (the
 * first request reports it). conf must outlive h. */
CK_RV vtp_auth_start(struct vtp_http *h, const struct vtp_vault_conf *conf);

/* Forgets what vtp_auth_start kept for h; call before vtp_http_free(h). NULL is fine. */
void vtp_auth_stop(struct vtp_http *h);
/* In a fork child: forget the parent's auth states (called by the module's atfork handler). */
void vtp_auth_atfork_child(void);

/* auth=pin: C_Login's PIN is the token. Checks it with auth/token/lookup-self:
 * CKR_PIN_INCORRECT if Vault refuses it, CKR_DEVICE_ERROR if no server answered. A renewable
 * PIN token is renewed like any other. */
CK_RV vtp_auth_login_pin(struct vtp_http *h, const struct vtp_vault_conf *conf,
                         const unsigned char *pin, size_t pin_len);

/* auth=pin: forgets the PIN token (C_Logout of the last logged-in slot); wiped. Nothing for
 * other methods. */
void vtp_auth_logout(struct vtp_http *h);

/* Gets a new token now: re-reads the token file or logs in again (approle, kubernetes, cert).
 * CKR_OK if a new token is in place; CKR_USER_NOT_LOGGED_IN for token and pin, or when the
 * token file holds the same token. (http.c calls the same code through the relogin hook.) */
CK_RV vtp_auth_relogin(struct vtp_http *h, const struct vtp_vault_conf *conf);

#endif /* VTP_AUTH_H */
