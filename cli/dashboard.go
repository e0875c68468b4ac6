package cli

import (
	"flag"
	"fmt"
	"io"
	"net/url"
)

// dashboard prints the dashboard's link with the admin token after '#':
// browsers never send the fragment to the server, and the dashboard moves
// it into the tab's session storage and off the address bar.
func dashboard(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dashboard", flag.ContinueOnError)
	var c common
	c.register(fs)
	if rest, err := parse(fs, args); err != nil || len(rest) > 0 {
		return usageErr("sipedge dashboard [-c FILE] [--admin URL]")
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	if !api.alive() {
		return fmt.Errorf("the admin API at %s does not answer with this token (is sipedge running?)", api.base)
	}
	fmt.Fprintf(stdout, "%s/#token=%s\n", api.base, url.QueryEscape(api.token))
	return nil
}
