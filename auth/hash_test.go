package auth

import (
	"crypto/sha512"
	"encoding/base64"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// The specification's vectors (Drepper, "Unix crypt using SHA-256 and
// SHA-512", test cases for SHA-512).
func TestSHA512CryptVectors(t *testing.T) {
	for _, tc := range []struct{ key, want string }{
		{"Hello world!", "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
		{"Hello world!", "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
		{"This is just a test", "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"},
		{"we have a short salt string but not a short password", "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0"},
	} {
		h, err := parseSHA512Crypt(tc.want)
		if err != nil {
			t.Fatalf("%s: %v", tc.want, err)
		}
		if !h.verify(tc.key) {
			t.Errorf("%q does not verify against %s", tc.key, tc.want)
		}
		if h.verify(tc.key + "x") {
			t.Errorf("a wrong key verifies against %s", tc.want)
		}
	}
}

// openssl passwd -6 is an independent implementation.
func TestSHA512CryptOpenSSL(t *testing.T) {
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	for _, pw := range []string{"a", "correct horse battery staple", strings.Repeat("long", 40)} {
		out, err := exec.Command(path, "passwd", "-6", "-salt", "Mxedge1234", pw).Output()
		if err != nil {
			t.Fatal(err)
		}
		stored := strings.TrimSpace(string(out))
		h, err := parseHash("{SHA512-CRYPT}" + stored)
		if err != nil {
			t.Fatal(err)
		}
		if !h.verify(pw) || h.verify(pw+"!") {
			t.Errorf("%q: %s", pw, stored)
		}
	}
}

func TestSchemes(t *testing.T) {
	bc, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), 4)
	bcy := "$2y$" + string(bc[4:]) // Dovecot's BLF-CRYPT prefix
	salt := []byte("saltsalt")
	sum := sha512.Sum512(append([]byte("s3cret"), salt...))
	ssha := base64.StdEncoding.EncodeToString(append(sum[:], salt...))
	argon := "{ARGON2ID}" + argon2idHash("s3cret", []byte("0123456789abcdef"), 1, 1024, 1, 32)
	for _, field := range []string{
		"{BLF-CRYPT}" + bcy, "{CRYPT}" + string(bc), "{SSHA512}" + ssha, argon,
		"{SHA512-CRYPT}$6$saltsalt$" + strings.TrimPrefix(sha512Crypt([]byte("s3cret"), salt, 5000, false), "$6$saltsalt$"),
	} {
		h, err := parseHash(field)
		if err != nil {
			t.Fatalf("%s: %v", field, err)
		}
		if !h.verify("s3cret") || h.verify("s3cret ") || h.verify("") {
			t.Errorf("%s: wrong verdict", field)
		}
	}
	for _, bad := range []string{"s3cret", "{PLAIN}s3cret", "{ARGON2ID}$argon2i$v=19$m=1,t=1,p=1$a$b", "{SSHA512}!!", "{SHA512-CRYPT}$5$x$y", "{MD5-CRYPT}$1$x"} {
		if _, err := parseHash(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	// What mxedge writes verifies.
	s, err := HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s, "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$") {
		t.Errorf("new hash %s", s)
	}
	if h, err := parseHash(s); err != nil || !h.verify("pw") || h.verify("pW") {
		t.Errorf("own hash does not verify: %v", err)
	}
}
