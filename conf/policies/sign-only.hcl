# vault-transit-pkcs11: sign-only policy (least privilege for an application that only signs).
#
# Lets the module list the keys of its Transit mount, read their public halves and sign (and
# verify) with them. Key creation, deletion, rotation and configuration are refused: the module
# answers C_GenerateKeyPair and C_DestroyObject with CKR_ACTION_PROHIBITED.
#
# Write it with:  bao policy write vtp-sign sign-only.hcl   (or vault policy write ...)
# The mount here is "transit": replace it with the slot's `mount`. To confine the application
# to the keys of its slot's key_prefix (e.g. "spire-"), replace "keys/*", "sign/*" and
# "verify/*" below by "keys/spire-*", "sign/spire-*" and "verify/spire-*" (the list
# capability on "transit/keys" is still needed; the module filters by prefix itself).
# A slot with kv_mount also needs kv-certs.hcl (key IDs and labels live in KV).

# List the keys (LIST transit/keys; Vault checks it as "transit/keys/").
path "transit/keys" {
  capabilities = ["list"]
}

# Read one key: type, versions, public keys.
path "transit/keys/*" {
  capabilities = ["read", "list"]
}

# Sign, with or without a hash algorithm in the path (transit/sign/<key>[/<hash>]).
path "transit/sign/*" {
  capabilities = ["update"]
}

# Verify (the module verifies locally; kept for clients that verify through Vault).
path "transit/verify/*" {
  capabilities = ["update"]
}

# The module looks its token up to learn when it expires, and renews it before it does.
# (Vault's "default" policy grants these too; listed here for tokens created without it.)
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}
