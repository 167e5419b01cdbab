package auth

import (
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Password hashes are stored as Dovecot writes them: "{SCHEME}hash"
// (doveadm pw). Schemes understood:
//
//	{ARGON2ID}      $argon2id$v=19$m=65536,t=3,p=1$<salt>$<hash>  (what mxedge writes)
//	{BLF-CRYPT}     $2y$05$... (bcrypt)
//	{SHA512-CRYPT}  $6$[rounds=N$]<salt>$<hash>  (glibc crypt(3), Drepper's SHA-crypt)
//	{SSHA512}       base64(sha512(password salt) salt)
//	{CRYPT}         any of the crypt forms above, told apart by their prefix
//
// Every comparison is constant-time in the password and the hash.

// Argon2id parameters of new hashes: Dovecot's doveadm pw -s ARGON2ID
// defaults (64 MiB, 3 passes, 1 lane), RFC 9106 section 4's second
// recommended option.
const (
	argonMemory  = 64 * 1024
	argonTime    = 3
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// errBadHash: a stored hash that cannot be parsed (an error of the file,
// reported with its line when the file is read).
var errBadHash = errors.New("malformed password hash")

// HashPassword returns the {ARGON2ID} form of password, for the users file.
func HashPassword(password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	return "{ARGON2ID}" + argon2idHash(password, salt, argonTime, argonMemory, argonThreads, argonKeyLen), nil
}

func argon2idHash(password string, salt []byte, t, m uint32, p uint8, keyLen uint32) string {
	key := argon2.IDKey([]byte(password), salt, t, m, p, keyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, m, t, p, enc.EncodeToString(salt), enc.EncodeToString(key))
}

// hash is a parsed stored password: verify reports whether a password
// matches it.
type hash interface {
	verify(password string) bool
}

// parseHash parses a "{SCHEME}hash" password field.
func parseHash(field string) (hash, error) {
	if !strings.HasPrefix(field, "{") {
		return nil, errors.New(`password without a scheme: write "{SCHEME}hash" (mxedge user passwd writes {ARGON2ID})`)
	}
	end := strings.IndexByte(field, '}')
	if end < 0 {
		return nil, errors.New("password scheme without closing brace")
	}
	scheme, h := strings.ToUpper(field[1:end]), field[end+1:]
	switch scheme {
	case "ARGON2ID":
		return parseArgon2id(h)
	case "BLF-CRYPT":
		return parseBcrypt(h)
	case "SHA512-CRYPT":
		return parseSHA512Crypt(h)
	case "SSHA512":
		return parseSSHA512(h)
	case "CRYPT":
		switch {
		case strings.HasPrefix(h, "$argon2id$"):
			return parseArgon2id(h)
		case strings.HasPrefix(h, "$2"):
			return parseBcrypt(h)
		case strings.HasPrefix(h, "$6$"):
			return parseSHA512Crypt(h)
		}
		return nil, errors.New("{CRYPT} hash of an unsupported kind (supported: $argon2id$, $2y$/$2b$, $6$)")
	}
	return nil, fmt.Errorf("password scheme {%s} not supported (supported: {ARGON2ID}, {BLF-CRYPT}, {SHA512-CRYPT}, {SSHA512}, {CRYPT})", scheme)
}

type argon2idStored struct {
	salt, key []byte
	t, m      uint32
	p         uint8
}

func parseArgon2id(s string) (hash, error) {
	// $argon2id$v=19$m=65536,t=3,p=1$salt$key
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return nil, errBadHash
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return nil, fmt.Errorf("argon2id version %q not supported", parts[2])
	}
	var h argon2idStored
	var p uint32
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &h.m, &h.t, &p); err != nil || h.m == 0 || h.t == 0 || p == 0 || p > 255 {
		return nil, errBadHash
	}
	h.p = uint8(p)
	var err error
	enc := base64.RawStdEncoding
	if h.salt, err = enc.DecodeString(parts[4]); err != nil {
		return nil, errBadHash
	}
	if h.key, err = enc.DecodeString(parts[5]); err != nil || len(h.key) < 16 {
		return nil, errBadHash
	}
	return &h, nil
}

func (h *argon2idStored) verify(password string) bool {
	key := argon2.IDKey([]byte(password), h.salt, h.t, h.m, h.p, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(key, h.key) == 1
}

type bcryptStored []byte

func parseBcrypt(s string) (hash, error) {
	if _, err := bcrypt.Cost([]byte(s)); err != nil {
		return nil, errBadHash
	}
	return bcryptStored(s), nil
}

func (h bcryptStored) verify(password string) bool {
	return bcrypt.CompareHashAndPassword(h, []byte(password)) == nil
}

type sshaStored struct{ digest, salt []byte }

func parseSSHA512(s string) (hash, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) <= sha512.Size {
		return nil, errBadHash
	}
	return &sshaStored{digest: b[:sha512.Size], salt: b[sha512.Size:]}, nil
}

func (h *sshaStored) verify(password string) bool {
	d := sha512.New()
	d.Write([]byte(password))
	d.Write(h.salt)
	return subtle.ConstantTimeCompare(d.Sum(nil), h.digest) == 1
}
