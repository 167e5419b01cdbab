package dkim

import "sync"

// KeyCache keeps parsed public key records (RFC 6376 section 3.6.1), by
// the exact text of the TXT record, so that a verifier that sees the same
// keys again and again does not parse them (base64, x509) for every
// message. The DNS lookup is still made for every signature: a record that
// changed (a new key, a revoked one) is a different text and is parsed
// anew; records that fail to parse are not kept. Safe for concurrent use.
//
// mxedge fork: not in go-msgauth v0.7.0.
type KeyCache struct {
	max int

	mu   sync.Mutex
	keys map[string]*queryResult // never changed once parsed
}

// NewKeyCache returns a cache of at most max key records (at least 1).
// When it is full, an arbitrary record makes room for a new one.
func NewKeyCache(max int) *KeyCache {
	if max < 1 {
		max = 1
	}
	return &KeyCache{max: max, keys: make(map[string]*queryResult)}
}

// parse is parsePublicKey(record) through the cache; a nil cache parses.
func (c *KeyCache) parse(record string) (*queryResult, error) {
	if c == nil {
		return parsePublicKey(record)
	}
	c.mu.Lock()
	res, ok := c.keys[record]
	c.mu.Unlock()
	if ok {
		return res, nil
	}
	res, err := parsePublicKey(record)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.keys[record]; !ok && len(c.keys) >= c.max {
		for k := range c.keys {
			delete(c.keys, k)
			break
		}
	}
	c.keys[record] = res
	return res, nil
}

// Len returns the number of key records kept.
func (c *KeyCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.keys)
}
