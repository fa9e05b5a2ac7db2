# vault-transit-pkcs11: SPIRE server (spire-keymanager-pkcs11 over this module), confined to
# the keys of one slot's key_prefix.
#
# For the module config of docs/spire.md: [slot spire] with mount = transit, key_prefix = spire-
# and no kv_mount. The plugin gives each key CKA_ID = CKA_LABEL = its name, which the module
# derives from the Transit key name, so no KV access is needed. The token may list the mount's
# key names (the module filters by prefix itself), and create, read, sign with and delete keys
# named spire-*; every other key of the mount, and every other path, is refused (403, which
# the module returns as CKR_ACTION_PROHIBITED).
#
# Write it with:  bao policy write spire spire.hcl   (or vault policy write ...)
# Then a token:   bao token create -policy=spire -period=24h   (periodic: the module renews it)
# Replace "transit" with the slot's `mount` and "spire-" with its `key_prefix`. Several SPIRE
# servers sharing the mount keep apart by their plugin key identifiers; to keep them apart in
# Vault too, give each its own slot key_prefix (e.g. spire-a-) and its own copy of this policy.

# List the keys (LIST transit/keys; Vault checks it as "transit/keys/"). Names only.
path "transit/keys" {
  capabilities = ["list"]
}

# Read a key (type, versions, public keys), create it (POST transit/keys/<key>; the
# plugin's GenerateKey) and delete it (DELETE; rotation and disposal of superseded keys).
# A Vault glob can only end a path, so this also covers the key's own sub-paths: the module's
# POST transit/keys/<key>/config (deletion_allowed = true before a delete), and Transit's
# rotate, trim and import on spire-* keys, which the module does not use. Vault has no way
# to grant one sub-path under a name prefix without the others; none of them reaches a key
# outside the prefix.
path "transit/keys/spire-*" {
  capabilities = ["create", "read", "update", "delete"]
}

# Sign, with or without a hash algorithm in the path (transit/sign/<key>[/<hash>]). The
# module verifies locally: no transit/verify.
path "transit/sign/spire-*" {
  capabilities = ["update"]
}

# The module looks its token up to learn when it expires (and, with auth = pin, to check the
# PIN), and renews it before it does. Vault's "default" policy grants these too; listed here
# for tokens created without it (-no-default-policy).
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}
