// Command spire-keymanager-pkcs11 is an external SPIRE server KeyManager plugin that keeps
// SPIRE's CA and JWT signing keys in any PKCS#11 token: vault-transit-pkcs11 (keys in Vault or
// OpenBao Transit), SoftHSM2 or a hardware HSM. See docs/spire.md.
package main

import (
	"vault-transit-pkcs11/spire/keymanager"

	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
)

func main() {
	p := keymanager.New()
	pluginmain.Serve(
		keymanagerv1.KeyManagerPluginServer(p),
		configv1.ConfigServiceServer(p),
	)
}
