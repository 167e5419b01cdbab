//go:build !race

package dkim

// verifyBytesLimit is TestVerifyBytesAllocated's limit: the fork
// allocates about 14 KB per message, v0.7.0's copy buffers alone 64 KiB.
const verifyBytesLimit = 48 << 10
