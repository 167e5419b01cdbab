package resolver

import (
	"context"
	"strconv"

	"golang.org/x/sync/singleflight"
)

// flights coalesces identical concurrent queries (golang.org/x/sync
// singleflight): the first caller of a key starts the query, later callers
// wait for its result.
//
// The query runs on a context of its own (the first caller's values, not
// its cancellation or deadline), so one caller giving up does not fail
// the others. A caller that gives up makes the flight forgotten, so that
// the next caller asks afresh instead of joining a query that is already
// late; the abandoned query still runs to its end, bounded by
// Config.Timeout per exchange and Config.Attempts.
type flights struct{ g singleflight.Group }

// do returns fn's result for k, calling fn only if no call for k is in
// flight. If ctx ends first, do returns ctx's error.
func (fs *flights) do(ctx context.Context, k cacheKey, fn func(context.Context) (*answer, error)) (*answer, error) {
	fctx := context.WithoutCancel(ctx)
	key := k.name + "/" + strconv.Itoa(int(k.qtype))
	ch := fs.g.DoChan(key, func() (any, error) { return fn(fctx) })
	select {
	case r := <-ch:
		a, _ := r.Val.(*answer)
		return a, r.Err
	case <-ctx.Done():
		fs.g.Forget(key)
		return nil, ctx.Err()
	}
}
