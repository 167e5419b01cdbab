package resolver

import (
	"container/list"
	"sync"
	"time"
)

// DefaultCacheSize is the number of answers cached when Config.CacheSize
// is 0.
const DefaultCacheSize = 10000

type cacheKey struct {
	name  string // lowercase FQDN
	qtype uint16
}

type cacheEntry struct {
	key     cacheKey
	a       *answer
	expires time.Time
}

// cache holds answers until their TTL runs out (RFC 1035 section 7.4,
// RFC 2308 section 5 for negative answers), at most max of them: when
// full, the least recently used goes. A nil *cache caches nothing.
type cache struct {
	max int

	mu  sync.Mutex
	lru *list.List // of *cacheEntry, most recently used first
	m   map[cacheKey]*list.Element
}

func newCache(max int) *cache {
	if max <= 0 {
		return nil
	}
	return &cache{max: max, lru: list.New(), m: map[cacheKey]*list.Element{}}
}

// get returns the answer for k if it has not expired at now, with its TTL
// reduced to what remains.
func (c *cache) get(k cacheKey, now time.Time) (*answer, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.lru.Remove(el)
		delete(c.m, k)
		return nil, false
	}
	c.lru.MoveToFront(el)
	return e.a.remaining(now, e.expires), true
}

// put stores a, received at now, for its TTL; an answer with TTL 0 is not
// stored.
func (c *cache) put(k cacheKey, a *answer, now time.Time) {
	if c == nil || a.ttl == 0 {
		return
	}
	e := &cacheEntry{key: k, a: a, expires: now.Add(time.Duration(a.ttl) * time.Second)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	c.m[k] = c.lru.PushFront(e)
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.m, old.Value.(*cacheEntry).key)
	}
}

// len is the number of answers held, expired ones included.
func (c *cache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
