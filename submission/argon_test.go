package submission

import "golang.org/x/crypto/argon2"

func argonIDKey(pw string) []byte {
	return argon2.IDKey([]byte(pw), []byte("0123456789abcdef"), 1, 1024, 1, 32)
}
