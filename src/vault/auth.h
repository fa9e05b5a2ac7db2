/* auth.h - obtaining and keeping a Vault client token (src/vault/auth.c). */
#ifndef VTP_AUTH_H
#define VTP_AUTH_H

#include "vtp-pkcs11.h"
#include "cfg.h"
#include "vault/http.h"

/* Establishes the token for the configured method (token, token_file, approle, kubernetes,
 * cert; nothing for pin) and stores it with vtp_http_set_token. Performs no request for
 * auth=token (so C_Initialize stays offline); CKR_OK if no token could be had yet, the first
 * request will report it. */
CK_RV vtp_auth_start(struct vtp_http *h, const struct vtp_vault_conf *conf);

/* auth=pin: C_Login's PIN is the token. Checks it with auth/token/lookup-self:
 * CKR_PIN_INCORRECT if Vault refuses it, CKR_DEVICE_ERROR if no server answered. */
CK_RV vtp_auth_login_pin(struct vtp_http *h, const struct vtp_vault_conf *conf,
                         const unsigned char *pin, size_t pin_len);

/* Called when Vault answered 403 for an invalid token: re-reads the token file or logs in
 * again (approle, kubernetes, cert). CKR_OK if a new token is in place (retry once). */
CK_RV vtp_auth_relogin(struct vtp_http *h, const struct vtp_vault_conf *conf);

#endif /* VTP_AUTH_H */
