package auth

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func TestNewUser(t *testing.T) {
	u := NewUser("alice", "r", "pw", "force")
	if u.HA1MD5 != md5hex("alice:r:pw") || u.HA1SHA256 != sha256hex("alice:r:pw") || u.NAT != "force" || u.Realm != "r" {
		t.Errorf("NewUser = %+v", u)
	}
	if err := u.Validate(); err != nil {
		t.Error(err)
	}
	if c := u.Credentials(); c.HA1MD5 != u.HA1MD5 || c.HA1SHA256 != u.HA1SHA256 {
		t.Errorf("Credentials = %+v", c)
	}
}

func TestValidUserName(t *testing.T) {
	for _, ok := range []string{
		"alice", "1001", "+4930123456", "a.b-c_d!e~f*g'h(i)j", "x&y=z+$,;?/", "%41lice", "john%20doe",
		strings.Repeat("a", 64),
	} {
		if err := ValidUserName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"", strings.Repeat("a", 65), "al ice", "a@b", "a:b", "a\"b", "%4", "%zz", "a%", "a#b", "j\u00f6rg", "a\x00", "<a>", "a[b]",
	} {
		if err := ValidUserName(bad); !errors.Is(err, ErrInvalidUser) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestUserValidate(t *testing.T) {
	good := NewUser("a", "r", "p", "")
	for name, u := range map[string]User{
		"bad name":      {Name: "a b", HA1MD5: good.HA1MD5},
		"no ha1":        {Name: "a"},
		"short md5":     {Name: "a", HA1MD5: good.HA1MD5[:31]},
		"upper md5":     {Name: "a", HA1MD5: strings.ToUpper(good.HA1MD5)},
		"md5 in sha":    {Name: "a", HA1SHA256: good.HA1MD5},
		"bad nat":       {Name: "a", HA1MD5: good.HA1MD5, NAT: "sometimes"},
		"non-hex sha":   {Name: "a", HA1SHA256: strings.Repeat("g", 64)},
		"case of nat":   {Name: "a", HA1MD5: good.HA1MD5, NAT: "Auto"},
		"password-ish?": {Name: "a", HA1MD5: "secret"},
	} {
		if err := u.Validate(); !errors.Is(err, ErrInvalidUser) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, u := range []User{
		{Name: "a", HA1MD5: good.HA1MD5},
		{Name: "a", HA1SHA256: good.HA1SHA256, NAT: "never"},
	} {
		if err := u.Validate(); err != nil {
			t.Errorf("%+v: %v", u, err)
		}
	}
}

// storeContract exercises any UserStore.
func storeContract(t *testing.T, s UserStore) {
	t.Helper()
	alice := NewUser("alice", "r", "pw", "auto")
	bob := NewUser("bob", "r", "pw2", "")
	if err := s.Put(User{Name: "bad name"}); !errors.Is(err, ErrInvalidUser) {
		t.Errorf("Put invalid: %v", err)
	}
	for _, u := range []User{bob, alice} {
		if err := s.Put(u); err != nil {
			t.Fatal(err)
		}
	}
	if u, ok := s.Get("alice"); !ok || u != alice {
		t.Errorf("Get alice = %+v %v", u, ok)
	}
	if _, ok := s.Get("Alice"); ok {
		t.Errorf("Get is case-insensitive")
	}
	alice2 := NewUser("alice", "r", "new", "never")
	if err := s.Put(alice2); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.Get("alice"); u != alice2 {
		t.Errorf("replace: %+v", u)
	}
	list, err := s.List()
	if err != nil || !slices.Equal(list, []User{alice2, bob}) {
		t.Errorf("List = %+v %v", list, err)
	}
	if ok, err := s.Delete("bob"); !ok || err != nil {
		t.Errorf("Delete bob = %v %v", ok, err)
	}
	if ok, err := s.Delete("bob"); ok || err != nil {
		t.Errorf("Delete bob again = %v %v", ok, err)
	}
	if _, ok := s.Get("bob"); ok {
		t.Errorf("bob still there")
	}
}

func TestMemUsers(t *testing.T) {
	storeContract(t, NewMemUsers())
	m := NewMemUsers(NewUser("a", "r", "1", ""), NewUser("a", "r", "2", ""))
	if u, _ := m.Get("a"); u.HA1MD5 != HA1("MD5", "a", "r", "2") {
		t.Errorf("later duplicate should win")
	}
}

func openBolt(t *testing.T, path string) *bbolt.DB {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestBoltUsers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sipedge.db")
	db := openBolt(t, path)
	s, err := NewBoltUsers(db)
	if err != nil {
		t.Fatal(err)
	}
	storeContract(t, s)
	carol := NewUser("carol", "r", "pw", "force")
	if err := s.Put(carol); err != nil {
		t.Fatal(err)
	}
	db.Close()

	// Reopen: the cache is loaded from disk.
	db = openBolt(t, path)
	defer db.Close()
	s, err = NewBoltUsers(db)
	if err != nil {
		t.Fatal(err)
	}
	list, _ := s.List()
	if len(list) != 2 || list[0].Name != "alice" || list[1] != carol {
		t.Errorf("after reopen: %+v", list)
	}
	if u, ok := s.Get("carol"); !ok || u != carol {
		t.Errorf("Get carol = %+v %v", u, ok)
	}
	// Get is served from memory: it works with the database closed.
	db.Close()
	if _, ok := s.Get("carol"); !ok {
		t.Errorf("Get touched the disk")
	}
	if err := s.Put(NewUser("dave", "r", "pw", "")); err == nil {
		t.Errorf("Put on a closed db succeeded")
	}
	if _, ok := s.Get("dave"); ok {
		t.Errorf("failed Put reached the cache")
	}
}

func TestBoltUsersCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sipedge.db")
	db := openBolt(t, path)
	defer db.Close()
	for name, val := range map[string]string{
		"notjson":  "{",
		"mismatch": `{"name":"other","ha1_md5":"` + md5hex("x") + `"}`,
		"invalid":  `{"name":"invalid"}`,
	} {
		err := db.Update(func(tx *bbolt.Tx) error {
			if err := tx.DeleteBucket([]byte(usersBucket)); err != nil && !errors.Is(err, bbolt.ErrBucketNotFound) {
				return err
			}
			b, err := tx.CreateBucket([]byte(usersBucket))
			if err != nil {
				return err
			}
			return b.Put([]byte(name), []byte(val))
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := NewBoltUsers(db); !errors.Is(err, ErrInvalidUser) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestLayeredUsers(t *testing.T) {
	cfgAlice := NewUser("alice", "r", "from-config", "")
	top := NewMemUsers(cfgAlice)
	bottom := NewMemUsers()
	storedAlice := NewUser("alice", "r", "stored", "")
	if err := bottom.Put(storedAlice); err != nil {
		t.Fatal(err)
	}
	l := NewLayered(top, bottom)
	if u, _ := l.Get("alice"); u != cfgAlice {
		t.Errorf("config user should win: %+v", u)
	}
	if err := l.Put(NewUser("alice", "r", "x", "")); !errors.Is(err, ErrConfigUser) {
		t.Errorf("Put over config user: %v", err)
	}
	if _, err := l.Delete("alice"); !errors.Is(err, ErrConfigUser) {
		t.Errorf("Delete config user: %v", err)
	}
	bob := NewUser("bob", "r", "pw", "")
	if err := l.Put(bob); err != nil {
		t.Fatal(err)
	}
	if u, ok := bottom.Get("bob"); !ok || u != bob {
		t.Errorf("Put did not reach bottom")
	}
	list, err := l.List()
	if err != nil || !slices.Equal(list, []User{cfgAlice, bob}) {
		t.Errorf("List = %+v %v", list, err)
	}
	if ok, err := l.Delete("bob"); !ok || err != nil {
		t.Errorf("Delete bob = %v %v", ok, err)
	}
}

func TestCredentialsFunc(t *testing.T) {
	s := NewMemUsers(NewUser("a", "r", "pw", ""), NewUser("b", "other", "pw", ""), User{Name: "c", HA1MD5: md5hex("c")})
	f := CredentialsFunc(s, "r")
	if c, ok := f("a"); !ok || c.HA1MD5 != HA1("MD5", "a", "r", "pw") {
		t.Errorf("a: %+v %v", c, ok)
	}
	if _, ok := f("b"); ok {
		t.Errorf("user of another realm found")
	}
	if _, ok := f("c"); !ok {
		t.Errorf("user without realm not found")
	}
	if _, ok := f("zed"); ok {
		t.Errorf("unknown user found")
	}
	if n := testing.AllocsPerRun(100, func() { f("a") }); n != 0 {
		t.Errorf("lookup allocates %v", n)
	}
}

func TestBoltUsersPutMany(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sipedge.db")
	db := openBolt(t, path)
	s, err := NewBoltUsers(db)
	if err != nil {
		t.Fatal(err)
	}
	var us []User
	for i := range 1000 {
		us = append(us, NewUser("u"+itoa(i), "r", "pw", ""))
	}
	if err := s.PutMany(append(us[:2:2], User{Name: "bad name"})); !errors.Is(err, ErrInvalidUser) {
		t.Errorf("PutMany with an invalid user: %v", err)
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Errorf("failed PutMany stored %d users", len(list))
	}
	if err := s.PutMany(us); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = openBolt(t, path)
	defer db.Close()
	if s, err = NewBoltUsers(db); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.List(); len(list) != 1000 {
		t.Errorf("%d users after reopen", len(list))
	}
	if u, ok := s.Get("u999"); !ok || u != us[999] {
		t.Errorf("Get u999 = %+v %v", u, ok)
	}
}
