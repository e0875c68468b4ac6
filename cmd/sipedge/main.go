// Command sipedge is a SIP edge server that makes VoIP work across NAT.
package main

import (
	"os"

	"github.com/sipedge/sipedge/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
