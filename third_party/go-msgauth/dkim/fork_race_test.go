//go:build race

package dkim

// verifyBytesLimit is TestVerifyBytesAllocated's limit. With the race
// detector, sync.Pool drops a quarter of what is put back, and allocations
// are bigger: the fork allocates about 75 KB per message, v0.7.0 120 KB.
const verifyBytesLimit = 100 << 10
