package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"
)

// passwdStdin is where `gateway passwd` reads the password (tests replace it).
var passwdStdin io.Reader = os.Stdin

func init() {
	register(command{
		name:    "passwd",
		summary: "print the bcrypt hash of a password, for broker.users",
		usage:   "passwd [--cost N] [< password]",
		about: `Passwd reads a password and prints its bcrypt hash, to paste into the config
as broker.users[].password_hash; plaintext passwords are refused there. On a
terminal it asks twice, without echo; otherwise it reads the first line of
standard input, so a script can pipe one in:

  printf '%s\n' "$PW" | gateway passwd

The password is never printed or logged. bcrypt uses at most 72 bytes of it.
A higher --cost makes a guessing attack slower, and every check of the
password too (about 60 ms at the default cost on a 2-core x86, close to a
second on a Raspberry Pi Zero; the broker remembers a password that verified
once, so that only the first connection of a client pays it).`,
		run: cmdPasswd,
	})
}

// cmdPasswd reads a password — without echo from a terminal, asked twice;
// otherwise the first line of standard input — and prints its bcrypt hash
// for broker.users[].password_hash.
func cmdPasswd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("passwd")
	cost := fs.Int("cost", bcrypt.DefaultCost, "bcrypt `cost` (4-31); each step doubles the time a check takes")
	if ok, code := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	if *cost < bcrypt.MinCost || *cost > bcrypt.MaxCost {
		fmt.Fprintf(stderr, "gateway passwd: cost must be between %d and %d\n", bcrypt.MinCost, bcrypt.MaxCost)
		return exitUsage
	}
	pw, err := readPassword(passwdStdin, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "gateway passwd: %v\n", err)
		return exitFail
	}
	hash, err := bcrypt.GenerateFromPassword(pw, *cost)
	if err != nil {
		fmt.Fprintf(stderr, "gateway passwd: %v\n", err)
		return exitFail
	}
	fmt.Fprintln(stdout, string(hash))
	return exitOK
}

func readPassword(in io.Reader, prompt io.Writer) ([]byte, error) {
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(prompt, "Password: ")
		pw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return nil, fmt.Errorf("read password: %w", err)
		}
		fmt.Fprint(prompt, "Again: ")
		again, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return nil, fmt.Errorf("read password: %w", err)
		}
		if string(pw) != string(again) {
			return nil, errors.New("the passwords differ")
		}
		return checkPassword(pw)
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read password: %w", err)
	}
	return checkPassword([]byte(strings.TrimRight(line, "\r\n")))
}

func checkPassword(pw []byte) ([]byte, error) {
	switch {
	case len(pw) == 0:
		return nil, errors.New("empty password")
	case len(pw) > 72:
		return nil, errors.New("bcrypt uses at most 72 bytes of a password: choose a shorter one")
	}
	return pw, nil
}
