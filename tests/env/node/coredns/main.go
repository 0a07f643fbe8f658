// Command coredns is CoreDNS v1.15.0 (the version go.mod pins) with only the plugins that the
// test node's Corefile uses, which builds in a fraction of the time of the full distribution.
// Each plugin registers itself when imported; the directive order is CoreDNS's own
// (dnsserver.Directives, from its plugin.cfg), as in the upstream binary.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func main() {
	coremain.Run()
}
