# vault-transit-pkcs11: sign + key management policy.
#
# Everything sign-only.hcl allows, plus what C_GenerateKeyPair (create the key), C_DestroyObject
# (allow deletion in the key's config, then delete it) and key rotation need. Give it to the
# provisioning application or an operator, not to every signer.
#
# Write it with:  bao policy write vtp-keymgmt keymgmt.hcl
# The mount here is "transit": replace it with the slot's `mount` (and see sign-only.hcl for
# confining it to a key prefix).

path "transit/keys" {
  capabilities = ["list"]
}

# Read a key (GET), create it (POST transit/keys/<key>) and delete it (DELETE).
path "transit/keys/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

# deletion_allowed = true before a delete (POST transit/keys/<key>/config).
path "transit/keys/+/config" {
  capabilities = ["update"]
}

# Rotate a key (POST transit/keys/<key>/rotate).
path "transit/keys/+/rotate" {
  capabilities = ["update"]
}

path "transit/sign/*" {
  capabilities = ["update"]
}

path "transit/verify/*" {
  capabilities = ["update"]
}

path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}
