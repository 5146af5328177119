package localbroker

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// Users verifies usernames and passwords against `broker.users`. It is
// safe for concurrent use; besides the broker, the HTTP endpoint uses it
// for basic authentication.
//
// bcrypt is slow on purpose (about 60 ms at cost 10 on a 2-core x86, close
// to a second on a Pi Zero). So that a fleet of HMIs reconnecting after a
// restart, or an HTTP client sending basic auth with every request, does
// not cost that each time, a password that verified once is remembered as
// an HMAC under a key that lives only in this process (never the password
// itself). Failures are never shortcut, and unknown usernames cost a bcrypt
// comparison too, so timing does not tell which usernames exist. At most
// one bcrypt comparison runs at a time: a password-guessing client cannot
// take more than one core from the polling.
type Users struct {
	byName map[string]*account
	key    [32]byte
	bcrypt chan struct{} // one comparison at a time

	mu       sync.Mutex
	verified map[string][sha256.Size]byte
}

type account struct {
	name string
	hash []byte // nil: only certificate identity
	acl  acl
}

// NewUsers builds a verifier from checked `broker.users` entries.
func NewUsers(users []User) (*Users, error) {
	u := &Users{byName: map[string]*account{}, bcrypt: make(chan struct{}, 1), verified: map[string][sha256.Size]byte{}}
	if _, err := rand.Read(u.key[:]); err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	for i, user := range users {
		a, err := compileACL(user.ACL)
		if err != nil {
			return nil, fmt.Errorf("users[%d]: %w", i, err)
		}
		acc := &account{name: user.Username, acl: a}
		if user.PasswordHash != "" {
			acc.hash = []byte(user.PasswordHash)
		}
		u.byName[user.Username] = acc
	}
	return u, nil
}

// inherit takes over the passwords that verified under old, for the users
// whose hash is the same in both (a changed hash forgets its password: the
// old one must fail from now on).
func (u *Users) inherit(old *Users) {
	u.key = old.key
	old.mu.Lock()
	defer old.mu.Unlock()
	for name, mac := range old.verified {
		if a, ok := u.byName[name]; ok {
			if o, ok := old.byName[name]; ok && a.hash != nil && bytes.Equal(a.hash, o.hash) {
				u.verified[name] = mac
			}
		}
	}
}

// Len is the number of users.
func (u *Users) Len() int { return len(u.byName) }

// Verify reports whether password is the user's. A user without a
// password hash (certificate identity only) never verifies.
func (u *Users) Verify(username, password string) bool {
	_, ok := u.verify(username, password)
	return ok
}

// MaySubscribe reports whether the user's ACL grants a subscription to
// filter (the first rule that covers all of it grants read), as for an
// MQTT client of that name; %c stands for an empty client id. The HTTP
// side asks it for {gateway.id}/#, everything its pages show.
func (u *Users) MaySubscribe(username, filter string) bool {
	a, ok := u.byName[username]
	return ok && a.acl.canRead(filter, a.name, "")
}

func (u *Users) lookup(username string) (*account, bool) {
	a, ok := u.byName[username]
	return a, ok
}

func (u *Users) mac(username, password string) [sha256.Size]byte {
	m := hmac.New(sha256.New, u.key[:])
	m.Write([]byte(username))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var out [sha256.Size]byte
	copy(out[:], m.Sum(nil))
	return out
}

func (u *Users) verify(username, password string) (*account, bool) {
	acc, ok := u.byName[username]
	mac := u.mac(username, password)
	if ok && acc.hash != nil {
		u.mu.Lock()
		known, hit := u.verified[username]
		u.mu.Unlock()
		if hit && hmac.Equal(known[:], mac[:]) {
			return acc, true
		}
	}
	var hash []byte
	if ok && acc.hash != nil {
		hash = acc.hash
	} else {
		hash = dummyHash()
	}
	u.bcrypt <- struct{}{}
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	<-u.bcrypt
	if err != nil || !ok || acc.hash == nil {
		return nil, false
	}
	u.mu.Lock()
	u.verified[username] = mac
	u.mu.Unlock()
	return acc, true
}

// dummyHash is compared against for unknown users, so that they take as
// long as known ones. It is made once per process, when first needed: made
// per Users, every reload would cost the next login a cost-10 bcrypt
// generation (about a second on a Pi Zero), known users included.
func dummyHash() []byte {
	dummy.once.Do(func() {
		var pw [16]byte
		_, _ = rand.Read(pw[:])
		dummy.hash, _ = bcrypt.GenerateFromPassword(pw[:], bcrypt.DefaultCost)
	})
	return dummy.hash
}

var dummy struct {
	once sync.Once
	hash []byte
}
