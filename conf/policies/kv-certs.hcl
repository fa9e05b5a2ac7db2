# vault-transit-pkcs11: certificates, key IDs and labels in KV version 2.
#
# The module keeps what Transit cannot hold in the slot's kv_mount, under its kv_prefix
# (default "vault-transit-pkcs11"):
#   <kv_prefix>/<transit mount>/<key>          CKA_ID and CKA_LABEL given at key generation
#   <kv_prefix>/certs/<transit mount>/<name>   certificate objects (C_CreateObject)
# This policy grants exactly those two subtrees: read, write, list and delete (a metadata
# delete removes every version). A signer that never creates keys or certificates needs only
# "read" and "list"; combine it with sign-only.hcl or keymgmt.hcl.
#
# Write it with:  bao policy write vtp-kv kv-certs.hcl
# Replace "secret" with the slot's kv_mount, "vault-transit-pkcs11" with its kv_prefix and
# "transit" with its Transit mount.

# Key IDs and labels: read (GET) and write (POST/PUT) versions.
path "secret/data/vault-transit-pkcs11/transit/*" {
  capabilities = ["create", "read", "update"]
}

# Their metadata: read, list, delete with all versions.
path "secret/metadata/vault-transit-pkcs11/transit/*" {
  capabilities = ["read", "list", "delete"]
}

# LIST .../transit (Vault checks it as ".../transit/", which the glob above also matches).
path "secret/metadata/vault-transit-pkcs11/transit" {
  capabilities = ["list"]
}

# Certificates: the same under certs/.
path "secret/data/vault-transit-pkcs11/certs/transit/*" {
  capabilities = ["create", "read", "update"]
}

path "secret/metadata/vault-transit-pkcs11/certs/transit/*" {
  capabilities = ["read", "list", "delete"]
}

path "secret/metadata/vault-transit-pkcs11/certs/transit" {
  capabilities = ["list"]
}
