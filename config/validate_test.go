package config

import (
	"strings"
	"testing"
)

// TestValidate parses each case over the defaults (which are valid) and
// checks the exact errors Validate returns; want == nil means valid.
func TestValidate(t *testing.T) {
	const (
		md5Hex    = "059b14b6554fd4b5b06935dd6adf689a"
		sha256Hex = "c3b0eaa8119bad5ca6fe4f68f8d016f86d3ce2202ecb4b2d0c8fe5659748a0fc"
	)
	tests := []struct {
		name string
		text string
		want []string
	}{
		// data_dir
		{"data_dir empty", lines(`data_dir = ""`),
			[]string{`t.toml:1: data_dir: must not be empty`}},
		{"data_dir set", lines(`data_dir = "/var/lib/sipedge"`), nil},

		// domains
		{"domains empty", lines(`domains = []`),
			[]string{`t.toml:1: domains: must list at least one domain`}},
		{"domain invalid, line of the element", lines(`domains = [`, `  "a.example.com",`, `  "bad_name",`, `]`),
			[]string{`t.toml:3: domains[1]: "bad_name" is not a valid host name or IP address`}},
		{"domain with leading hyphen", lines(`domains = ["-a.example.com"]`),
			[]string{`t.toml:1: domains[0]: "-a.example.com" is not a valid host name or IP address`}},
		{"domain all digits is not an IP", lines(`domains = ["10.0.0"]`),
			[]string{`t.toml:1: domains[0]: "10.0.0" is not a valid host name or IP address`}},
		{"domain duplicate ignoring case", lines(`domains = ["Example.com", "example.com"]`),
			[]string{`t.toml:1: domains[1]: "example.com" is a duplicate of domains[0]`}},
		{"domains good", lines(`domains = ["example.com", "sip-1.example.com", "203.0.113.10", "[2001:db8::1]", "2001:db8::2"]`), nil},

		// log
		{"log level", lines(`[log]`, `level = "verbose"`),
			[]string{`t.toml:2: log.level: must be "debug", "info", "warn" or "error", not "verbose"`}},
		{"log format", lines(`[log]`, `format = "xml"`),
			[]string{`t.toml:2: log.format: must be "text" or "json", not "xml"`}},
		{"log good", lines(`[log]`, `level = "debug"`, `format = "json"`), nil},

		// listen
		{"no listeners", lines(`listen = []`),
			[]string{`t.toml:1: listen: must have at least one listener`}},
		{"transport unknown", lines(`[[listen]]`, `transport = "sctp"`, `address = "0.0.0.0:5060"`),
			[]string{`t.toml:2: listen[0].transport: must be "udp" or "tcp", not "sctp"`}},
		{"transport upper case", lines(`[[listen]]`, `transport = "UDP"`, `address = "0.0.0.0:5060"`),
			[]string{`t.toml:2: listen[0].transport: must be "udp" or "tcp", not "UDP"`}},
		{"transport missing: line of the element", lines(`[[listen]]`, `address = "0.0.0.0:5060"`),
			[]string{`t.toml:1: listen[0].transport: must be "udp" or "tcp"`}},
		{"second element", lines(
			`[[listen]]`, `transport = "udp"`, `address = "0.0.0.0:5060"`,
			`[[listen]]`, `transport = "tls"`, `address = "0.0.0.0:5061"`),
			[]string{`t.toml:5: listen[1].transport: must be "udp" or "tcp", not "tls"`}},
		{"address is a host name", lines(`[[listen]]`, `transport = "udp"`, `address = "localhost:5060"`),
			[]string{`t.toml:3: listen[0].address: "localhost:5060" is not ip:port (e.g. "0.0.0.0:5060" or "[::]:5060")`}},
		{"address without port", lines(`[[listen]]`, `transport = "udp"`, `address = "0.0.0.0"`),
			[]string{`t.toml:3: listen[0].address: "0.0.0.0" is not ip:port (e.g. "0.0.0.0:5060" or "[::]:5060")`}},
		{"address port too big", lines(`[[listen]]`, `transport = "udp"`, `address = "0.0.0.0:65536"`),
			[]string{`t.toml:3: listen[0].address: "0.0.0.0:65536" is not ip:port (e.g. "0.0.0.0:5060" or "[::]:5060")`}},
		{"duplicate listener", lines(
			`[[listen]]`, `transport = "udp"`, `address = "0.0.0.0:5060"`,
			`[[listen]]`, `transport = "udp"`, `address = "0.0.0.0:5060"`),
			[]string{`t.toml:6: listen[1].address: duplicate of listen[0] (udp 0.0.0.0:5060)`}},
		{"advertise invalid", lines(`[[listen]]`, `transport = "udp"`, `address = "0.0.0.0:5060"`, `advertise = "bad_host:5060"`),
			[]string{`t.toml:4: listen[0].advertise: "bad_host:5060": "bad_host" is not a valid host name or IP address`}},
		{"advertise bad port", lines(`[[listen]]`, `transport = "udp"`, `address = "0.0.0.0:5060"`, `advertise = "203.0.113.1:0"`),
			[]string{`t.toml:4: listen[0].advertise: "203.0.113.1:0": port must be 1-65535`}},
		{"advertise empty port", lines(`[[listen]]`, `transport = "udp"`, `address = "0.0.0.0:5060"`, `advertise = "203.0.113.1:"`),
			[]string{`t.toml:4: listen[0].advertise: "203.0.113.1:": port must be 1-65535`}},
		{"advertise IPv6 empty port", lines(`[[listen]]`, `transport = "udp"`, `address = "0.0.0.0:5060"`, `advertise = "[2001:db8::1]:"`),
			[]string{`t.toml:4: listen[0].advertise: "[2001:db8::1]:": port must be 1-65535`}},
		{"advertise IPv4 in brackets", lines(`[[listen]]`, `transport = "udp"`, `address = "0.0.0.0:5060"`, `advertise = "[203.0.113.1]"`),
			[]string{`t.toml:4: listen[0].advertise: "[203.0.113.1]": "203.0.113.1" is not an IPv6 address`}},
		{"listeners good", lines(
			`[[listen]]`, `transport = "udp"`, `address = "[::]:5060"`, `advertise = "[2001:db8::1]:5060"`,
			`[[listen]]`, `transport = "tcp"`, `address = "[::]:5060"`, `advertise = "sip.example.com"`,
			`[[listen]]`, `transport = "udp"`, `address = "10.0.0.1:5070"`, `advertise = "203.0.113.1:15070"`,
			`[[listen]]`, `transport = "udp"`, `address = "10.0.0.2:5070"`, `advertise = "2001:db8::2"`,
		), nil},

		// local_nets and nat
		{"nat mode", lines(`[nat]`, `mode = "sometimes"`),
			[]string{`t.toml:2: nat.mode: must be "auto", "force" or "never", not "sometimes"`}},
		{"nat mode good", lines(`nat.mode = "force"`, `local_nets = ["10.0.0.0/8", "fd00::/8", "192.168.1.5"]`), nil},

		// registrar
		{"min_expires zero", lines(`[registrar]`, `min_expires = 0`),
			[]string{`t.toml:2: registrar.min_expires: must be positive, not 0s`}},
		{"max_expires negative", lines(`[registrar]`, `max_expires = "-1h"`),
			[]string{`t.toml:2: registrar.max_expires: must be positive, not -1h0m0s`}},
		{"expires not whole seconds", lines(`[registrar]`, `min_expires = "1500ms"`),
			[]string{`t.toml:2: registrar.min_expires: must be a whole number of seconds, not 1.5s`}},
		{"min above max", lines(`[registrar]`, `min_expires = "2h"`),
			[]string{`t.toml:2: registrar.min_expires: max_expires (1h0m0s) must not be less than min_expires (2h0m0s)`}},
		{"default above max, reported on the key set", lines(`[registrar]`, `max_expires = 1800`),
			[]string{`t.toml:2: registrar.max_expires: default_expires (1h0m0s) must be between min_expires (1m0s) and max_expires (30m0s)`}},
		{"default below min", lines(`[registrar]`, `default_expires = "30s"`),
			[]string{`t.toml:2: registrar.default_expires: default_expires (30s) must be between min_expires (1m0s) and max_expires (1h0m0s)`}},
		{"max_contacts zero", lines(`[registrar]`, `max_contacts = 0`),
			[]string{`t.toml:2: registrar.max_contacts: must be at least 1, not 0`}},
		{"flush_interval zero", lines(`[registrar]`, `flush_interval = "0s"`),
			[]string{`t.toml:2: registrar.flush_interval: must be positive, not 0s`}},
		{"registrar good", lines(`[registrar]`, `min_expires = "30s"`, `max_expires = 7200`, `default_expires = "10m"`,
			`max_contacts = 1`, `flush_interval = "1s"`), nil},
		{"registrar min == default == max", lines(`[registrar]`, `min_expires = 600`, `max_expires = 600`, `default_expires = 600`), nil},

		// auth
		{"algorithms empty", lines(`[auth]`, `algorithms = []`),
			[]string{`t.toml:2: auth.algorithms: must list at least one of "SHA-256", "MD5"`}},
		{"algorithm unknown", lines(`[auth]`, `algorithms = ["SHA-512"]`),
			[]string{`t.toml:2: auth.algorithms[0]: must be "SHA-256" or "MD5", not "SHA-512"`}},
		{"algorithm wrong case", lines(`[auth]`, `algorithms = ["md5"]`),
			[]string{`t.toml:2: auth.algorithms[0]: must be "SHA-256" or "MD5", not "md5"`}},
		{"algorithm duplicate", lines(`[auth]`, `algorithms = ["MD5", "MD5"]`),
			[]string{`t.toml:2: auth.algorithms[1]: "MD5" is a duplicate of auth.algorithms[0]`}},
		{"nonce_ttl zero", lines(`[auth]`, `nonce_ttl = 0`),
			[]string{`t.toml:2: auth.nonce_ttl: must be positive, not 0s`}},
		{"realm with a quote", lines(`[auth]`, `realm = 'a"b'`),
			[]string{`t.toml:2: auth.realm: must not contain quotes, backslashes or control characters`}},
		{"auth good", lines(`[auth]`, `realm = "Example Corp"`, `algorithms = ["MD5", "SHA-256"]`, `nonce_ttl = 30`, `secret = "s"`), nil},

		// security
		{"rate_limit negative", lines(`[security]`, `rate_limit = -1`),
			[]string{`t.toml:2: security.rate_limit: must be a non-negative number (0 disables), not -1`}},
		{"rate_limit nan", lines(`[security]`, `rate_limit = nan`),
			[]string{`t.toml:2: security.rate_limit: must be a non-negative number (0 disables), not NaN`}},
		{"rate_limit inf", lines(`[security]`, `rate_limit = inf`),
			[]string{`t.toml:2: security.rate_limit: must be a non-negative number (0 disables), not +Inf`}},
		{"rate_burst negative", lines(`[security]`, `rate_limit = 0`, `rate_burst = -1`),
			[]string{`t.toml:3: security.rate_burst: must not be negative, not -1`}},
		{"rate_burst zero with a limit", lines(`[security]`, `rate_burst = 0`),
			[]string{`t.toml:2: security.rate_burst: rate_burst must be at least 1 when rate_limit is set, not 0`}},
		{"ban_failures negative", lines(`[security]`, `ban_failures = -1`),
			[]string{`t.toml:2: security.ban_failures: must not be negative (0 disables banning), not -1`}},
		{"ban_window zero while banning", lines(`[security]`, `ban_window = 0`),
			[]string{`t.toml:2: security.ban_window: must be positive when ban_failures is set`}},
		{"ban_time zero while banning", lines(`[security]`, `ban_time = "0s"`),
			[]string{`t.toml:2: security.ban_time: must be positive when ban_failures is set`}},
		{"ban_time negative", lines(`[security]`, `ban_failures = 0`, `ban_time = "-1m"`),
			[]string{`t.toml:3: security.ban_time: must not be negative, not -1m0s`}},
		{"empty scanner string", lines(`[security]`, `scanner_user_agents = ["evil", " "]`),
			[]string{`t.toml:2: security.scanner_user_agents[1]: must not be empty (it would match every User-Agent)`}},
		{"banning and limits disabled", lines(`[security]`, `rate_limit = 0`, `rate_burst = 0`, `ban_failures = 0`,
			`ban_window = 0`, `ban_time = 0`, `scanner_user_agents = []`), nil},
		{"security good", lines(`[security]`, `rate_limit = 12.5`, `rate_burst = 1`, `trusted = ["198.51.100.0/24", "2001:db8::/32"]`), nil},

		// proxy
		{"max_forwards zero", lines(`[proxy]`, `max_forwards = 0`),
			[]string{`t.toml:2: proxy.max_forwards: must be between 1 and 255, not 0`}},
		{"max_forwards 256", lines(`[proxy]`, `max_forwards = 256`),
			[]string{`t.toml:2: proxy.max_forwards: must be between 1 and 255, not 256`}},
		{"invite_timeout zero", lines(`[proxy]`, `invite_timeout = 0`),
			[]string{`t.toml:2: proxy.invite_timeout: must be positive, not 0s`}},
		{"udp_max_size zero", lines(`[proxy]`, `udp_max_size = 0`),
			[]string{`t.toml:2: proxy.udp_max_size: must be between 1 and 65507 bytes, not 0`}},
		{"udp_max_size too big", lines(`[proxy]`, `udp_max_size = 65508`),
			[]string{`t.toml:2: proxy.udp_max_size: must be between 1 and 65507 bytes, not 65508`}},
		{"proxy good", lines(`[proxy]`, `max_forwards = 255`, `invite_timeout = "3m"`, `udp_max_size = 65507`), nil},

		// media
		{"media mode", lines(`[media]`, `mode = "sometimes"`),
			[]string{`t.toml:2: media.mode: must be "always", "nat" or "never", not "sometimes"`}},
		{"media ports reversed", lines(`[media]`, `ports = "40000-30000"`),
			[]string{`t.toml:2: media.ports: port range "40000-30000" must lie within 1024-65535 and hold at least two port pairs`}},
		{"media ports garbage", lines(`[media]`, `ports = "30000"`),
			[]string{`t.toml:2: media.ports: invalid port range "30000" (want e.g. "30000-39999")`}},
		{"media address host name", lines(`[media]`, `address = "relay.example.com"`),
			[]string{`t.toml:2: media.address: "relay.example.com" is not an IP address`}},
		{"media kernel", lines(`[media]`, `kernel = "yes"`),
			[]string{`t.toml:2: media.kernel: must be "off", "auto" or "on", not "yes"`}},
		{"media kernel interface", lines(`[media]`, `kernel = "auto"`, `kernel_interfaces = ["eth0", "a/b"]`),
			[]string{`t.toml:3: media.kernel_interfaces[1]: "a/b" is not an interface name`}},
		{"media probation", lines(`[media]`, `probation = 0`),
			[]string{`t.toml:2: media.probation: must be between 1 and 50 packets, not 0`}},
		{"media user policy", lines(`[[users]]`, `name = "a"`, `password = "p"`, `media = "yes"`),
			[]string{`t.toml:4: users[0].media: must be "always", "nat" or "never", not "yes"`}},
		{"media good", lines(`[media]`, `mode = "always"`, `ports = "20000-20099"`, `address = "::"`, `advertise = "203.0.113.9"`, `timeout = "90s"`), nil},

		// external address
		{"external good ip", lines(`external_address = "203.0.113.7"`), nil},
		{"external good host", lines(`external_address = "sip.example.com"`), nil},
		{"external good stun", lines(`external_address = "stun:stun.example.com:3479"`), nil},
		{"external good auto", lines(`external_address = "auto"`), nil},
		{"external loopback", lines(`external_address = "127.0.0.1"`),
			[]string{`t.toml:1: external_address: 127.0.0.1 cannot be sipedge's public address`}},
		{"external junk", lines(`external_address = "upnp please"`),
			[]string{`t.toml:1: external_address: "upnp please" is neither an IP address, a host name, "stun:host[:port]" nor one of auto, upnp, natpmp, pcp`}},
		{"external stun no host", lines(`external_address = "stun:"`),
			[]string{`t.toml:1: external_address: "stun:": want stun:host or stun:host:port`}},
		{"external_stun with auto", lines(`external_address = "auto"`, `external_stun = "stun.example.net:3479"`), nil},
		{"external_stun bad", lines(`external_address = "auto"`, `external_stun = "a b"`),
			[]string{`t.toml:2: external_stun: "a b": want host or host:port`}},
		{"external stun bad port", lines(`external_address = "stun:h:99999"`),
			[]string{`t.toml:1: external_address: "stun:h:99999": bad port "99999"`}},

		// keepalive
		{"keepalive method", lines(`[keepalive]`, `method = "stun"`),
			[]string{`t.toml:2: keepalive.method: must be "options" or "crlf", not "stun"`}},
		{"keepalive interval too short", lines(`[keepalive]`, `interval = "500ms"`),
			[]string{`t.toml:2: keepalive.interval: 500ms is too short: at least 1s, or 0s for off`}},
		{"keepalive misses", lines(`[keepalive]`, `misses = 0`),
			[]string{`t.toml:2: keepalive.misses: must be between 1 and 100, not 0`}},
		{"keepalive user negative", lines(`[[users]]`, `name = "a"`, `password = "p"`, `keepalive = "-5s"`),
			[]string{`t.toml:4: users[0].keepalive: must not be negative`}},
		{"keepalive route too short", lines(`[[routes]]`, `to = "sip:198.51.100.20"`, `keepalive = "10ms"`),
			[]string{`t.toml:3: routes[0].keepalive: 10ms is too short: at least 1s, or 0s for off`}},
		{"keepalive off", lines(`[keepalive]`, `interval = "0s"`, `[[users]]`, `name = "a"`, `password = "p"`, `keepalive = "0s"`), nil},
		{"keepalive good", lines(`[keepalive]`, `interval = "15s"`, `method = "crlf"`, `timeout = "2s"`, `lagged = "300ms"`, `misses = 5`, `remove_unreachable = true`, `all = true`), nil},

		// stun
		{"stun off", lines(`[stun]`, `listen = []`), nil},
		{"stun good", lines(`[stun]`, `listen = ["0.0.0.0:3478", "[2001:db8::1]:3479"]`, `rate_limit = 5.5`, `rate_burst = 1`, `software = false`), nil},
		{"stun listen not ip:port", lines(`[stun]`, `listen = ["stun.example.com:3478"]`),
			[]string{`t.toml:2: stun.listen[0]: "stun.example.com:3478" is not ip:port (e.g. "0.0.0.0:5060" or "[::]:5060")`}},
		{"stun listen overlap", lines(`[stun]`, `listen = ["127.0.0.1:3478", "0.0.0.0:3478"]`),
			[]string{`t.toml:2: stun.listen[1]: 0.0.0.0:3478 overlaps stun.listen[0] (127.0.0.1:3478): both cannot be bound`}},
		{"stun on the SIP UDP port", lines(`[stun]`, `listen = ["203.0.113.10:5060"]`),
			[]string{`t.toml:2: stun.listen[0]: 203.0.113.10:5060 is also SIP listener listen[0] (udp 0.0.0.0:5060), which answers STUN Binding requests already: ` +
				`remove it from stun.listen, or give the STUN server a port of its own (3478 is the standard one)`}},
		{"stun on a SIP TCP port", lines(`[[listen]]`, `transport = "tcp"`, `address = "127.0.0.1:5061"`, `[stun]`, `listen = ["0.0.0.0:5061"]`),
			[]string{`t.toml:5: stun.listen[0]: 0.0.0.0:5061 is also SIP listener listen[0] (tcp 127.0.0.1:5061); the STUN server listens on TCP as well: give the STUN server a port of its own (3478 is the standard one)`}},
		{"stun on another IP of the SIP port", lines(`[[listen]]`, `transport = "udp"`, `address = "10.0.0.1:5060"`, `[stun]`, `listen = ["10.0.0.2:5060"]`), nil},
		{"stun on the admin port", lines(`[stun]`, `listen = ["127.0.0.1:5080"]`),
			[]string{`t.toml:2: stun.listen[0]: 127.0.0.1:5080 is also the admin API's address (admin.listen 127.0.0.1:5080); the STUN server listens on TCP as well`}},
		{"stun rate_limit negative", lines(`[stun]`, `rate_limit = -2`),
			[]string{`t.toml:2: stun.rate_limit: must be a non-negative number (0 disables), not -2`}},
		{"stun rate_burst zero", lines(`[stun]`, `rate_burst = 0`),
			[]string{`t.toml:2: stun.rate_burst: rate_burst must be at least 1 when rate_limit is set, not 0`}},
		{"stun rate_burst negative", lines(`[stun]`, `rate_limit = 0`, `rate_burst = -1`),
			[]string{`t.toml:3: stun.rate_burst: must not be negative, not -1`}},
		{"rfc5780 good", lines(`[stun]`, `listen = ["203.0.113.10:3478"]`, `alternate_address = "203.0.113.11"`), nil},
		{"rfc5780 good, IPv6, own port", lines(`[stun]`, `listen = ["[2001:db8::1]:3478"]`, `alternate_address = "2001:db8::2"`, `alternate_port = 3480`), nil},
		{"rfc5780 wildcard", lines(`[stun]`, `listen = ["0.0.0.0:3478"]`, `alternate_address = "203.0.113.11"`),
			[]string{`t.toml:2: stun.listen[0]: RFC 5780 mode (stun.alternate_address is set) needs a concrete IP address, not 0.0.0.0: ` +
				`the server must know its own addresses to send RESPONSE-ORIGIN and OTHER-ADDRESS and to answer from the other one when a client asks (CHANGE-REQUEST)`}},
		{"rfc5780 default listen is a wildcard", lines(`[stun]`, `alternate_address = "203.0.113.11"`),
			[]string{`t.toml:1: stun.listen[0]: RFC 5780 mode (stun.alternate_address is set) needs a concrete IP address, not 0.0.0.0: ` +
				`the server must know its own addresses to send RESPONSE-ORIGIN and OTHER-ADDRESS and to answer from the other one when a client asks (CHANGE-REQUEST)`}},
		{"rfc5780 two addresses", lines(`[stun]`, `listen = ["203.0.113.10:3478", "203.0.113.10:3480"]`, `alternate_address = "203.0.113.11"`),
			[]string{`t.toml:2: stun.listen: RFC 5780 mode (stun.alternate_address is set) takes exactly one address, the primary, not 2`}},
		{"rfc5780 port 0", lines(`[stun]`, `listen = ["203.0.113.10:0"]`, `alternate_address = "203.0.113.11"`),
			[]string{`t.toml:2: stun.listen[0]: RFC 5780 mode (stun.alternate_address is set) needs a fixed port, not 0`}},
		{"rfc5780 not an IP", lines(`[stun]`, `listen = ["203.0.113.10:3478"]`, `alternate_address = "stun2.example.com"`),
			[]string{`t.toml:3: stun.alternate_address: "stun2.example.com" is not an IP address`}},
		{"rfc5780 alternate wildcard", lines(`[stun]`, `listen = ["203.0.113.10:3478"]`, `alternate_address = "0.0.0.0"`),
			[]string{`t.toml:3: stun.alternate_address: must be a second IP address of this host, not the wildcard 0.0.0.0`}},
		{"rfc5780 families", lines(`[stun]`, `listen = ["203.0.113.10:3478"]`, `alternate_address = "2001:db8::2"`),
			[]string{`t.toml:3: stun.alternate_address: 2001:db8::2 and the primary address 203.0.113.10 (stun.listen[0]) must both be IPv4 or both IPv6`}},
		{"rfc5780 same IP", lines(`[stun]`, `listen = ["203.0.113.10:3478"]`, `alternate_address = "203.0.113.10"`),
			[]string{`t.toml:3: stun.alternate_address: 203.0.113.10 is the primary address (stun.listen[0]); RFC 5780 mode needs a second IP address of this host`}},
		{"rfc5780 same port", lines(`[stun]`, `listen = ["203.0.113.10:3478"]`, `alternate_address = "203.0.113.11"`, `alternate_port = 3478`),
			[]string{`t.toml:4: stun.alternate_port: 3478 is the primary port; RFC 5780 mode needs a second port`}},
		{"rfc5780 port out of range", lines(`[stun]`, `listen = ["203.0.113.10:3478"]`, `alternate_address = "203.0.113.11"`, `alternate_port = 70000`),
			[]string{`t.toml:4: stun.alternate_port: must be between 1 and 65535 (0: the primary port + 1), not 70000`}},
		{"rfc5780 no room for primary + 1", lines(`[stun]`, `listen = ["203.0.113.10:65535"]`, `alternate_address = "203.0.113.11"`),
			[]string{`t.toml:2: stun.listen[0]: primary port 65535 leaves no room for the default alternate port (primary + 1); set stun.alternate_port`}},
		{"rfc5780 alternate port is SIP", lines(`[stun]`, `listen = ["203.0.113.10:5059"]`, `alternate_address = "203.0.113.11"`),
			[]string{
				`t.toml:3: stun.alternate_address: 203.0.113.10:5060 (one of the four RFC 5780 addresses) is also SIP listener listen[0] (udp 0.0.0.0:5060), ` +
					`which answers STUN Binding requests already: choose a stun.listen port and a stun.alternate_port that the SIP listeners do not use`,
				`t.toml:3: stun.alternate_address: 203.0.113.11:5060 (one of the four RFC 5780 addresses) is also SIP listener listen[0] (udp 0.0.0.0:5060), ` +
					`which answers STUN Binding requests already: choose a stun.listen port and a stun.alternate_port that the SIP listeners do not use`,
			}},
		{"rfc5780 alternate port is SIP TCP", lines(`[[listen]]`, `transport = "tcp"`, `address = "203.0.113.10:3479"`,
			`[stun]`, `listen = ["203.0.113.10:3478"]`, `alternate_address = "203.0.113.11"`),
			[]string{`t.toml:6: stun.alternate_address: 203.0.113.10:3479 (one of the four RFC 5780 addresses) is also SIP listener listen[0] (tcp 203.0.113.10:3479); ` +
				`the STUN server listens on TCP as well: choose a stun.listen port and a stun.alternate_port that the SIP listeners do not use`}},
		{"rfc5780 alternate IP on a SIP port", lines(`[[listen]]`, `transport = "udp"`, `address = "203.0.113.11:3478"`,
			`[stun]`, `listen = ["203.0.113.10:3478"]`, `alternate_address = "203.0.113.11"`),
			[]string{`t.toml:6: stun.alternate_address: 203.0.113.11:3478 (one of the four RFC 5780 addresses) is also SIP listener listen[0] (udp 203.0.113.11:3478), ` +
				`which answers STUN Binding requests already: choose a stun.listen port and a stun.alternate_port that the SIP listeners do not use`}},

		// admin
		{"admin host name", lines(`[admin]`, `listen = "localhost:5080"`),
			[]string{`t.toml:2: admin.listen: must be "off" or ip:port: "localhost:5080" is not ip:port (e.g. "0.0.0.0:5060" or "[::]:5060")`}},
		{"admin Off", lines(`[admin]`, `listen = "Off"`),
			[]string{`t.toml:2: admin.listen: must be "off" or ip:port: "Off" is not ip:port (e.g. "0.0.0.0:5060" or "[::]:5060")`}},
		{"admin off", lines(`[admin]`, `listen = "off"`), nil},
		{"admin v6 loopback", lines(`[admin]`, `listen = "[::1]:8080"`, `token = "t"`), nil},
		{"admin tls cert without key", lines(`[admin]`, `tls_cert = "a.crt"`),
			[]string{`t.toml:2: admin.tls_cert: tls_cert and tls_key go together: set both or neither`}},
		{"admin tls key without cert", lines(`[admin]`, `tls_key = "a.key"`),
			[]string{`t.toml:2: admin.tls_key: tls_cert and tls_key go together: set both or neither`}},
		{"admin trace_calls negative", lines(`[admin]`, `trace_calls = -1`),
			[]string{`t.toml:2: admin.trace_calls: must be 0 (off) to 100000, not -1`}},
		{"admin trace_calls off", lines(`[admin]`, `trace_calls = 0`), nil},

		// users
		{"user name empty", lines(`[[users]]`, `password = "pw"`),
			[]string{`t.toml:1: users[0]: name must not be empty`}},
		{"user name with @", lines(`[[users]]`, `name = "a@b"`, `password = "pw"`),
			[]string{`t.toml:2: users[0].name: "a@b" is not a valid SIP user name (letters, digits and -_.!~*'()&=+$,;?/ only)`}},
		{"user name with space", lines(`[[users]]`, `name = "a b"`, `password = "pw"`),
			[]string{`t.toml:2: users[0].name: "a b" is not a valid SIP user name (letters, digits and -_.!~*'()&=+$,;?/ only)`}},
		{"user duplicate", lines(`[[users]]`, `name = "a"`, `password = "pw"`, `[[users]]`, `name = "a"`, `password = "pw"`),
			[]string{`t.toml:5: users[1].name: "a" is a duplicate of users[0]`}},
		{"user without credentials", lines(`[[users]]`, `name = "a"`),
			[]string{`t.toml:1: users[0]: needs a password, or ha1_md5 and/or ha1_sha256`}},
		{"user with password and ha1", lines(`[[users]]`, `name = "a"`, `password = "pw"`, `ha1_md5 = "`+md5Hex+`"`),
			[]string{`t.toml:3: users[0].password: set either password or ha1_md5/ha1_sha256, not both`}},
		{"ha1_md5 too short", lines(`auth.realm = "r"`, `[[users]]`, `name = "a"`, `ha1_md5 = "abc"`),
			[]string{
				`t.toml:4: users[0].ha1_md5: must be 32 lowercase hex digits (MD5 of "user:realm:password")`,
			}},
		{"ha1_md5 upper case", lines(`auth.realm = "r"`, `[[users]]`, `name = "a"`, `ha1_md5 = "`+strings.ToUpper(md5Hex)+`"`),
			[]string{`t.toml:4: users[0].ha1_md5: must be 32 lowercase hex digits (MD5 of "user:realm:password")`}},
		{"ha1_sha256 of md5 length", lines(`auth.realm = "r"`, `[[users]]`, `name = "a"`, `ha1_sha256 = "`+md5Hex+`"`),
			[]string{`t.toml:4: users[0].ha1_sha256: must be 64 lowercase hex digits (SHA-256 of "user:realm:password")`}},
		{"ha1 for no offered algorithm", lines(`auth.realm = "r"`, `auth.algorithms = ["SHA-256"]`, `[[users]]`, `name = "a"`, `ha1_md5 = "`+md5Hex+`"`),
			[]string{`t.toml:3: users[0]: has no password and no HA1 for any algorithm in auth.algorithms ["SHA-256"]`}},
		{"user nat", lines(`[[users]]`, `name = "a"`, `password = "pw"`, `nat = "always"`),
			[]string{`t.toml:4: users[0].nat: must be "auto", "force" or "never", not "always"`}},
		{"users good", lines(
			`auth.realm = "example.com"`,
			`[[users]]`, `name = "alice"`, `password = "pw"`, `nat = "force"`,
			`[[users]]`, `name = "bob"`, `ha1_md5 = "`+md5Hex+`"`, `ha1_sha256 = "`+sha256Hex+`"`,
			`[[users]]`, `name = "1001"`, `ha1_sha256 = "`+sha256Hex+`"`, `nat = "never"`,
			`[[users]]`, `name = "o'brien+x_y.z"`, `password = "pw"`,
		), nil},

		// routes
		{"route to missing", lines(`[[routes]]`, `name = "r"`),
			[]string{`t.toml:1: routes[0]: to must be set to a SIP URI, e.g. "sip:198.51.100.20:5060"`}},
		{"route to not SIP", lines(`[[routes]]`, `to = "http://198.51.100.20"`),
			[]string{`t.toml:2: routes[0].to: "http://198.51.100.20" is not a SIP URI (want e.g. "sip:198.51.100.20:5060")`}},
		{"route to bare host", lines(`[[routes]]`, `to = "198.51.100.20:5060"`),
			[]string{`t.toml:2: routes[0].to: "198.51.100.20:5060" is not a SIP URI (want e.g. "sip:198.51.100.20:5060")`}},
		{"route to with user", lines(`[[routes]]`, `to = "sip:trunk@198.51.100.20"`),
			[]string{`t.toml:2: routes[0].to: "sip:trunk@198.51.100.20": a next hop must not have a user part (the Request-URI user is kept)`}},
		{"route to with headers", lines(`[[routes]]`, `to = "sip:198.51.100.20?x=y"`),
			[]string{`t.toml:2: routes[0].to: "sip:198.51.100.20?x=y": a next hop must not have headers`}},
		{"route to without host", lines(`[[routes]]`, `to = "sip:;lr"`),
			[]string{`t.toml:2: routes[0].to: "sip:;lr": missing host`}},
		{"route to empty port", lines(`[[routes]]`, `to = "sip:198.51.100.20:"`),
			[]string{`t.toml:2: routes[0].to: "sip:198.51.100.20:": port must be 1-65535`}},
		{"route to bad port", lines(`[[routes]]`, `to = "sip:198.51.100.20:0"`),
			[]string{`t.toml:2: routes[0].to: "sip:198.51.100.20:0": port must be 1-65535`}},
		{"route to unbracketed IPv6", lines(`[[routes]]`, `to = "sip:2001:db8::1"`),
			[]string{`t.toml:2: routes[0].to: "sip:2001:db8::1": an IPv6 host must be in brackets, e.g. sip:[2001:db8::1]:5060`}},
		{"route to bad host", lines(`[[routes]]`, `to = "sip:trunk_1.example.net"`),
			[]string{`t.toml:2: routes[0].to: "sip:trunk_1.example.net": "trunk_1.example.net" is not a valid host name or IP address`}},
		{"route to empty param", lines(`[[routes]]`, `to = "sip:198.51.100.20;;lr"`),
			[]string{`t.toml:2: routes[0].to: "sip:198.51.100.20;;lr": invalid parameter ""`}},
		{"route to bad transport", lines(`[[routes]]`, `to = "sip:198.51.100.20;transport=sctp"`),
			[]string{`t.toml:2: routes[0].to: "sip:198.51.100.20;transport=sctp": transport must be udp or tcp`}},
		{"route user regexp", lines(`[[routes]]`, `user = "^(00"`, `to = "sip:198.51.100.20"`),
			[]string{"t.toml:2: routes[0].user: invalid regular expression \"^(00\": error parsing regexp: missing closing ): `^(00`"}},
		{"route domain", lines(`[[routes]]`, `domain = "exa mple.com"`, `to = "sip:198.51.100.20"`),
			[]string{`t.toml:2: routes[0].domain: "exa mple.com" is not a valid host name or IP address`}},
		{"route nat", lines(`[[routes]]`, `to = "sip:198.51.100.20"`, `nat = "no"`),
			[]string{`t.toml:3: routes[0].nat: must be "auto", "force" or "never", not "no"`}},
		{"route duplicate name", lines(
			`[[routes]]`, `name = "t"`, `to = "sip:198.51.100.20"`,
			`[[routes]]`, `name = "t"`, `to = "sip:198.51.100.21"`),
			[]string{`t.toml:5: routes[1].name: "t" is a duplicate of routes[0]`}},
		{"routes good", lines(
			`[[routes]]`, `name = "a"`, `user = '^\+?[0-9]{6,}$'`, `domain = "example.com"`, `to = "sip:198.51.100.20:5060;transport=udp"`, `nat = "auto"`,
			`[[routes]]`, `name = "b"`, `to = "sips:[2001:db8::1]:5061;transport=TCP;lr"`,
			`[[routes]]`, `to = "SIP:trunk.example.net"`, `tcp = true`, `trusted = true`,
			`[[routes]]`, `to = "sip:203.0.113.5;maddr=203.0.113.6;x-tag=%41b"`,
			`[[routes]]`, `to = "sip:203.0.113.7"`, // unnamed routes may repeat ""
		), nil},

		// several problems at once, in check order
		{"collects all errors", lines(
			`[[listen]]`, `transport = "x"`, `address = "y"`,
			`[proxy]`, `max_forwards = 0`,
		), []string{
			`t.toml:2: listen[0].transport: must be "udp" or "tcp", not "x"`,
			`t.toml:3: listen[0].address: "y" is not ip:port (e.g. "0.0.0.0:5060" or "[::]:5060")`,
			`t.toml:5: proxy.max_forwards: must be between 1 and 255, not 0`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.text)
			err := c.Validate()
			if got := errStrings(err); !equalStrings(got, tt.want) {
				t.Errorf("Validate():\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			for _, e := range leafErrors(err) {
				if ce := asConfigError(t, e); ce.Key == "" || ce.File != "t.toml" {
					t.Errorf("%v: Key=%q File=%q", e, ce.Key, ce.File)
				}
			}
		})
	}
}

// TestValidateWithoutFile checks errors of a config built in code: no file
// name and no line.
func TestValidateWithoutFile(t *testing.T) {
	c := Default()
	c.Listen[1].Transport = "sctp"
	c.Users = []User{{Name: "a"}}
	want := []string{
		`listen[1].transport: must be "udp" or "tcp", not "sctp"`,
		`users[0]: needs a password, or ha1_md5 and/or ha1_sha256`,
	}
	if got := errStrings(c.Validate()); !equalStrings(got, want) {
		t.Errorf("Validate():\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	c = Default()
	c.Admin.Listen = ""
	if err := c.Validate(); err == nil {
		t.Error("empty admin.listen in code: no error (only a file may leave it empty)")
	}
}

func TestWarnings(t *testing.T) {
	const md5Hex = "059b14b6554fd4b5b06935dd6adf689a"
	tests := []struct {
		name string
		text string
		want []string
	}{
		{"defaults", "", nil},
		{"admin on every address", lines(`[admin]`, `listen = "0.0.0.0:5080"`, `token = "t"`),
			[]string{`t.toml:2: admin.listen: the admin API listens on 0.0.0.0:5080, not on a loopback address, without TLS: the token crosses the network in clear; set admin.tls_cert and admin.tls_key, and make sure a firewall protects it`}},
		{"admin on a public address with TLS", lines(`[admin]`, `listen = "203.0.113.1:5080"`, `tls_cert = "a.crt"`, `tls_key = "a.key"`),
			[]string{`t.toml:2: admin.listen: the admin API listens on 203.0.113.1:5080, not on a loopback address; make sure a firewall protects it`}},
		{"admin on loopback", lines(`admin.listen = "127.0.0.2:5080"`), nil},
		{"admin on port 0", lines(`admin.listen = "127.0.0.1:0"`),
			[]string{`t.toml:1: admin.listen: port 0: the kernel picks a free port at each start, which the CLI cannot find (fine in tests)`}},
		{"listeners on port 0, as in tests", lines(
			`[[listen]]`, `transport = "udp"`, `address = "127.0.0.1:0"`,
			`[[listen]]`, `transport = "udp"`, `address = "127.0.0.1:0"`), // two ports, not duplicates
			[]string{
				`t.toml:3: listen[0].address: port 0: the kernel picks a free port at each start, which phones cannot be configured with (fine in tests)`,
				`t.toml:6: listen[1].address: port 0: the kernel picks a free port at each start, which phones cannot be configured with (fine in tests)`,
			}},
		{"admin off", lines(`admin.listen = "off"`), nil},
		{"ha1 without explicit realm", lines(`[[users]]`, `name = "a"`, `ha1_md5 = "`+md5Hex+`"`),
			[]string{`t.toml:1: users[0]: HA1 values depend on the realm; set auth.realm so that changing domains cannot invalidate them (realm now "sipedge.local")`}},
		{"ha1 with explicit realm", lines(`auth.realm = "sipedge.local"`, `[[users]]`, `name = "a"`, `ha1_md5 = "`+md5Hex+`"`), nil},
		{"password without explicit realm", lines(`[[users]]`, `name = "a"`, `password = "pw"`), nil},
		{"keepalive interval too long", lines(`[keepalive]`, `interval = "5m"`),
			[]string{`t.toml:2: keepalive.interval: 5m0s is longer than many NATs keep an idle UDP binding (30 s to 2 min): incoming calls may be lost`}},
		{"keepalive lagged above timeout", lines(`[keepalive]`, `lagged = "10s"`),
			[]string{`t.toml:2: keepalive.lagged: 10s is longer than keepalive.timeout (5s): no answer can be LAGGED`}},
		{"stun on port 0, as in tests", lines(`[stun]`, `listen = ["127.0.0.1:0", "127.0.0.1:0"]`),
			[]string{
				`t.toml:2: stun.listen[0]: port 0: the kernel picks a free port at each start, which clients cannot be configured with (fine in tests)`,
				`t.toml:2: stun.listen[1]: port 0: the kernel picks a free port at each start, which clients cannot be configured with (fine in tests)`,
			}},
		{"stun without rate limit", lines(`[stun]`, `rate_limit = 0`),
			[]string{`t.toml:2: stun.rate_limit: 0 disables the per-source limit: a STUN server on a public address can then be used to reflect floods at spoofed addresses`}},
		{"stun off without rate limit", lines(`[stun]`, `listen = []`, `rate_limit = 0`), nil},
		{"stun alternate_port without alternate_address", lines(`[stun]`, `alternate_port = 3479`),
			[]string{`t.toml:2: stun.alternate_port: ignored: it is the second port of RFC 5780 mode, which stun.alternate_address turns on`}},
		{"stun alternate_address while off", lines(`[stun]`, `listen = []`, `alternate_address = "203.0.113.11"`),
			[]string{`t.toml:3: stun.alternate_address: ignored: stun.listen is empty, so the STUN server is off`}},
		{"stun port in the media range", lines(`[stun]`, `listen = ["203.0.113.10:30000"]`, `alternate_address = "203.0.113.11"`),
			[]string{
				`t.toml:2: stun.listen[0]: port 30000 lies in media.ports (30000-39999): the relay cannot use it while the STUN server holds it`,
				`t.toml:3: stun.alternate_address: port 30001 lies in media.ports (30000-39999): the relay cannot use it while the STUN server holds it`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.text)
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate() = %v; warnings must not be errors", err)
			}
			if got := c.Warnings(); !equalStrings(got, tt.want) {
				t.Errorf("Warnings():\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestRouteUserRegexp(t *testing.T) {
	tests := []struct {
		pattern string
		user    string
		want    bool
	}{
		{"", "anything", true},
		{"", "", true},
		{`^\+?[0-9]{6,}$`, "+4930123456", true},
		{`^\+?[0-9]{6,}$`, "1001", false},
		{"1001", "110011", true}, // unanchored: matches anywhere
		{"^1001$", "110011", false},
	}
	for _, tt := range tests {
		re, err := Route{User: tt.pattern}.UserRegexp()
		if err != nil {
			t.Fatalf("UserRegexp(%q): %v", tt.pattern, err)
		}
		if got := re.MatchString(tt.user); got != tt.want {
			t.Errorf("%q matches %q = %v, want %v", tt.pattern, tt.user, got, tt.want)
		}
	}
	if _, err := (Route{User: "("}).UserRegexp(); err == nil {
		t.Error(`UserRegexp("("): no error`)
	}
}
