// Package conformance runs SPIRE's own KeyManager conformance suites
// (github.com/spiffe/spire/pkg/server/plugin/keymanager/test and
// pkg/agent/plugin/keymanager/test, SPIRE v1.13.3) against the plugin's server and agent
// interfaces, loaded through SPIRE's plugin catalog and v1 facade exactly as spire-server loads
// a KeyManager, over SoftHSM2 and over vault-transit-pkcs11. It is a module of its own so that
// the plugin's go.mod does not carry SPIRE.
package conformance

import (
	"testing"

	agentkmv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/keymanager/v1"
	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	agentkm "github.com/spiffe/spire/pkg/agent/plugin/keymanager"
	agentkmtest "github.com/spiffe/spire/pkg/agent/plugin/keymanager/test"
	"github.com/spiffe/spire/pkg/common/catalog"
	"github.com/spiffe/spire/pkg/server/plugin/keymanager"
	keymanagertest "github.com/spiffe/spire/pkg/server/plugin/keymanager/test"
	"github.com/spiffe/spire/test/plugintest"

	pkcs11km "vault-transit-pkcs11/spire/keymanager"

	"vault-transit-pkcs11/spire/internal/testtoken"
)

func TestKeyManagerConformance(t *testing.T) {
	testtoken.Each(t, func(t *testing.T, b *testtoken.Backend) {
		keymanagertest.Test(t, keymanagertest.Config{
			Create: func(t *testing.T) keymanager.KeyManager {
				ident := testtoken.NewIdent()
				p := pkcs11km.New()
				km := new(keymanager.V1)
				plugintest.Load(t,
					catalog.MakeBuiltIn(pkcs11km.Name,
						keymanagerv1.KeyManagerPluginServer(p),
						configv1.ConfigServiceServer(p)),
					km,
					plugintest.Configure(b.HCL(ident)))
				t.Cleanup(func() { b.DestroyPrefix(t, ident+".") })
				return km
			},
		})
	})
}

func TestAgentKeyManagerConformance(t *testing.T) {
	testtoken.Each(t, func(t *testing.T, b *testtoken.Backend) {
		agentkmtest.Test(t, agentkmtest.Config{
			Create: func(t *testing.T) agentkm.KeyManager {
				ident := testtoken.NewIdent()
				p := pkcs11km.New()
				km := new(agentkm.V1)
				plugintest.Load(t,
					catalog.MakeBuiltIn(pkcs11km.Name,
						agentkmv1.KeyManagerPluginServer(pkcs11km.NewAgent(p)),
						configv1.ConfigServiceServer(p)),
					km,
					plugintest.Configure(b.HCL(ident)))
				t.Cleanup(func() { b.DestroyPrefix(t, ident+".") })
				return km
			},
		})
	})
}
