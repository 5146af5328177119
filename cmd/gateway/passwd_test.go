package main

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/fieldbridge/fieldbridge/localbroker"
)

func TestPasswd(t *testing.T) {
	old := passwdStdin
	defer func() { passwdStdin = old }()

	passwdStdin = strings.NewReader("s3cret pass\nignored\n")
	var out, errOut bytes.Buffer
	if code := run([]string{"passwd", "-cost", "4"}, &out, &errOut); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	hash := strings.TrimSpace(out.String())
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("s3cret pass")); err != nil {
		t.Fatalf("hash %q: %v", hash, err)
	}
	users, err := localbroker.NewUsers([]localbroker.User{{Username: "hmi", PasswordHash: hash}})
	if err != nil {
		t.Fatal(err)
	}
	if !users.Verify("hmi", "s3cret pass") || users.Verify("hmi", "wrong") || users.Verify("nobody", "s3cret pass") {
		t.Error("Verify disagrees with the printed hash")
	}

	passwdStdin = strings.NewReader("\n")
	out.Reset()
	errOut.Reset()
	if code := run([]string{"passwd"}, &out, &errOut); code == exitOK || out.Len() > 0 {
		t.Errorf("empty password: exit %d, printed %q", code, out.String())
	}
}
