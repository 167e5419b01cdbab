package verifycache

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkLookup1M is the cost of a cache hit with 1,000,000 entries in
// verify.db: the bbolt read alone (get) and the whole Verify of a known
// address (guard, lookup, decode, counters), serially and from all CPUs.
func BenchmarkLookup1M(b *testing.B) {
	const n = 1000000
	v, err := Open(filepath.Join(b.TempDir(), FileName), Options{
		Domains:       map[string]Policy{"relay.test": {Mode: ModeProbe}},
		NoSync:        true,
		MaintainEvery: -1,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	now := time.Now()
	addr := func(i int) string { return fmt.Sprintf("user%07d@relay.test", i) }
	for start := 0; start < n; start += 100000 {
		err := v.store.db.Update(func(tx *bolt.Tx) error {
			bk := tx.Bucket(bucketEntries)
			bk.FillPercent = 1 // keys arrive in order
			for i := start; i < start+100000; i++ {
				e := Entry{State: StateExists, Reply: "250 2.1.5 Ok", Route: "10.0.0.25:25",
					Verified: now, Expires: now.Add(30 * 24 * time.Hour), LastProbe: now}
				if err := bk.Put([]byte(addr(i)), e.encode()); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = addr(rand.IntN(n))
	}
	b.Run("get", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, ok, err := v.store.get(keys[i&(len(keys)-1)]); !ok || err != nil {
				b.Fatal("miss", err)
			}
		}
	})
	b.Run("verify", func(b *testing.B) {
		ctx := context.Background()
		for i := 0; i < b.N; i++ {
			if vd := v.Verify(ctx, "192.0.2.1", keys[i&(len(keys)-1)]); vd.Action != Accept || vd.Source != "cache" {
				b.Fatal(vd)
			}
		}
	})
	b.Run("verify-parallel", func(b *testing.B) {
		ctx := context.Background()
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(len(keys))
			for pb.Next() {
				i++
				if vd := v.Verify(ctx, "192.0.2.1", keys[i&(len(keys)-1)]); vd.Action != Accept {
					b.Error(vd)
					return
				}
			}
		})
	})
}
