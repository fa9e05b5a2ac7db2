// Command spire-keymanager-pkcs11 is an external SPIRE KeyManager plugin that keeps SPIRE's
// keys in any PKCS#11 token: vault-transit-pkcs11 (keys in Vault or OpenBao Transit), SoftHSM2
// or a hardware HSM. spire-server loads it as it is; spire-agent loads it with
// plugin_args = ["-agent"]. See docs/spire.md.
package main

import (
	"fmt"
	"os"

	"vault-transit-pkcs11/spire/keymanager"

	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	agentv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/keymanager/v1"
	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
)

func main() {
	agent := false
	for _, a := range os.Args[1:] {
		switch a {
		case "-agent", "--agent":
			agent = true
		case "-server", "--server":
			agent = false
		default:
			fmt.Fprintf(os.Stderr, "spire-keymanager-pkcs11: unknown argument %q (plugin_args may hold \"-agent\" or \"-server\")\n", a)
			os.Exit(2)
		}
	}
	p := keymanager.New()
	// Serve returns when the host stops the plugin (go-plugin does, whatever the SDK's comment
	// says): then the process ends.
	if agent {
		pluginmain.Serve(agentv1.KeyManagerPluginServer(keymanager.NewAgent(p)), configv1.ConfigServiceServer(p))
		return
	}
	pluginmain.Serve(keymanagerv1.KeyManagerPluginServer(p), configv1.ConfigServiceServer(p))
}
