package auth

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
)

// User is a SIP user. The clear password is never stored, only the HA1
// values for Realm.
type User struct {
	Name      string `json:"name"`
	Realm     string `json:"realm,omitempty"`
	HA1MD5    string `json:"ha1_md5,omitempty"`
	HA1SHA256 string `json:"ha1_sha256,omitempty"`
	// NAT overrides the NAT policy for this user: "" (use the default),
	// "auto", "force" or "never".
	NAT string `json:"nat,omitempty"`
}

// NewUser returns a user with both HA1 values computed from password. It
// does not validate; Put does.
func NewUser(name, realm, password, nat string) User {
	return User{
		Name:      name,
		Realm:     realm,
		HA1MD5:    HA1(AlgMD5, name, realm, password),
		HA1SHA256: HA1(AlgSHA256, name, realm, password),
		NAT:       nat,
	}
}

// Credentials returns the user's HA1 values for Digest.Verify.
func (u User) Credentials() Credentials {
	return Credentials{HA1MD5: u.HA1MD5, HA1SHA256: u.HA1SHA256}
}

// Validate checks the name, that at least one HA1 is set and every set
// HA1 is lower-case hex of the right length, and the NAT policy. Errors
// wrap ErrInvalidUser.
func (u User) Validate() error {
	if err := ValidUserName(u.Name); err != nil {
		return err
	}
	if u.HA1MD5 == "" && u.HA1SHA256 == "" {
		return fmt.Errorf("%w: user %q has no HA1", ErrInvalidUser, u.Name)
	}
	if u.HA1MD5 != "" && !isLowerHex(u.HA1MD5, algMD5.hexLen()) {
		return fmt.Errorf("%w: user %q: ha1_md5 is not 32 lower-case hex digits", ErrInvalidUser, u.Name)
	}
	if u.HA1SHA256 != "" && !isLowerHex(u.HA1SHA256, algSHA256.hexLen()) {
		return fmt.Errorf("%w: user %q: ha1_sha256 is not 64 lower-case hex digits", ErrInvalidUser, u.Name)
	}
	switch u.NAT {
	case "", "auto", "force", "never":
	default:
		return fmt.Errorf("%w: user %q: nat %q is not auto, force or never", ErrInvalidUser, u.Name, u.NAT)
	}
	return nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9') && !('a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// MaxUserNameLen is the longest user name ValidUserName accepts, in bytes
// as written (an escape counts three).
const MaxUserNameLen = 64

// ValidUserName checks that name is a SIP URI user part (RFC 3261 §25.1:
// unreserved / escaped / "&" "=" "+" "$" "," ";" "?" "/") of 1 to
// MaxUserNameLen bytes. Errors wrap ErrInvalidUser.
func ValidUserName(name string) error {
	if len(name) == 0 {
		return fmt.Errorf("%w: empty user name", ErrInvalidUser)
	}
	if len(name) > MaxUserNameLen {
		return fmt.Errorf("%w: user name longer than %d bytes", ErrInvalidUser, MaxUserNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			continue
		}
		switch c {
		case '-', '_', '.', '!', '~', '*', '\'', '(', ')', // mark
			'&', '=', '+', '$', ',', ';', '?', '/': // user-unreserved
			continue
		case '%':
			if i+2 < len(name) && isHex(name[i+1:i+3]) {
				i += 2
				continue
			}
			return fmt.Errorf("%w: user name %q: bad escape at byte %d", ErrInvalidUser, name, i)
		}
		return fmt.Errorf("%w: user name %q: character %q not allowed", ErrInvalidUser, name, c)
	}
	return nil
}

// UserStore holds users by name (case-sensitive, as the SIP user part is).
// Get is on the authentication hot path and must not do I/O.
type UserStore interface {
	Get(name string) (User, bool)
	// Put adds or replaces a user after validating it.
	Put(User) error
	// Delete removes a user and reports whether it existed.
	Delete(name string) (bool, error)
	// List returns all users sorted by name.
	List() ([]User, error)
}

// Compile-time interface checks.
var (
	_ UserStore = (*MemUsers)(nil)
	_ UserStore = (*BoltUsers)(nil)
	_ UserStore = (*LayeredUsers)(nil)
)

// CredentialsFunc adapts s to the lookup Digest.Verify takes. Users whose
// Realm is set and differs from realm are treated as unknown. Build it
// once and reuse it; calling it does not allocate.
func CredentialsFunc(s UserStore, realm string) func(user string) (Credentials, bool) {
	return func(name string) (Credentials, bool) {
		u, ok := s.Get(name)
		if !ok || (u.Realm != "" && u.Realm != realm) {
			return Credentials{}, false
		}
		return u.Credentials(), true
	}
}

// MemUsers is an in-memory UserStore, used for users from the config file
// and in tests.
type MemUsers struct {
	mu    sync.RWMutex
	users map[string]User
}

// NewMemUsers returns a store holding users (a later duplicate wins). They
// are not validated here; config validation reports bad ones with their
// file position.
func NewMemUsers(users ...User) *MemUsers {
	m := &MemUsers{users: make(map[string]User, len(users))}
	for _, u := range users {
		m.users[u.Name] = u
	}
	return m
}

// Get returns the user called name.
func (m *MemUsers) Get(name string) (User, bool) {
	m.mu.RLock()
	u, ok := m.users[name]
	m.mu.RUnlock()
	return u, ok
}

// Put validates u and adds or replaces it.
func (m *MemUsers) Put(u User) error {
	if err := u.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	m.users[u.Name] = u
	m.mu.Unlock()
	return nil
}

// Delete removes the user called name.
func (m *MemUsers) Delete(name string) (bool, error) {
	m.mu.Lock()
	_, ok := m.users[name]
	delete(m.users, name)
	m.mu.Unlock()
	return ok, nil
}

// List returns all users sorted by name.
func (m *MemUsers) List() ([]User, error) {
	m.mu.RLock()
	out := make([]User, 0, len(m.users))
	for _, u := range m.users {
		out = append(out, u)
	}
	m.mu.RUnlock()
	sortUsers(out)
	return out, nil
}

func sortUsers(us []User) {
	slices.SortFunc(us, func(a, b User) int { return cmp.Compare(a.Name, b.Name) })
}

// LayeredUsers stacks two stores: Top (users from the config file) over
// Bottom (users stored with `sipedge user add`).
//
//   - Get and List see Top first: a config user hides a stored user of the
//     same name, so the file is the authority an operator reads.
//   - Put and Delete go to Bottom, except that a name defined in Top is
//     refused with ErrConfigUser: the write would have no visible effect,
//     and silently accepting it would mislead the admin.
type LayeredUsers struct {
	top, bottom UserStore
}

// NewLayered returns top layered over bottom.
func NewLayered(top, bottom UserStore) *LayeredUsers {
	return &LayeredUsers{top: top, bottom: bottom}
}

// Get returns the user from Top, else from Bottom.
func (l *LayeredUsers) Get(name string) (User, bool) {
	if u, ok := l.top.Get(name); ok {
		return u, true
	}
	return l.bottom.Get(name)
}

// Put stores u in Bottom unless Top defines the name.
func (l *LayeredUsers) Put(u User) error {
	if _, ok := l.top.Get(u.Name); ok {
		return fmt.Errorf("%w: %q", ErrConfigUser, u.Name)
	}
	return l.bottom.Put(u)
}

// Delete removes name from Bottom unless Top defines it.
func (l *LayeredUsers) Delete(name string) (bool, error) {
	if _, ok := l.top.Get(name); ok {
		return false, fmt.Errorf("%w: %q", ErrConfigUser, name)
	}
	return l.bottom.Delete(name)
}

// List merges both layers, Top winning, sorted by name.
func (l *LayeredUsers) List() ([]User, error) {
	top, err := l.top.List()
	if err != nil {
		return nil, err
	}
	bottom, err := l.bottom.List()
	if err != nil {
		return nil, err
	}
	seen := make(map[string]struct{}, len(top))
	out := make([]User, 0, len(top)+len(bottom))
	for _, u := range top {
		seen[u.Name] = struct{}{}
		out = append(out, u)
	}
	for _, u := range bottom {
		if _, ok := seen[u.Name]; !ok {
			out = append(out, u)
		}
	}
	sortUsers(out)
	return out, nil
}
