package queue

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// commitLog is a CommitObserver that keeps what it is told.
type commitLog struct {
	mu      sync.Mutex
	updates []int
	took    []time.Duration
}

func (c *commitLog) Committed(took time.Duration, updates int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.updates = append(c.updates, updates)
	c.took = append(c.took, took)
}

func (c *commitLog) get() ([]int, []time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.updates...), append([]time.Duration(nil), c.took...)
}

// writeTxs is the number of write transactions committed so far.
func writeTxs(q *Queue) (id int) {
	q.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
	return id
}

// Every group commit is reported once, after it committed, with the
// updates it carried: one each for messages received one after the other;
// for concurrent sessions, one report per bbolt write transaction, the
// updates adding up to the messages, none over BatchSize.
func TestCommitObserver(t *testing.T) {
	log := &commitLog{}
	q := openTest(t, t.TempDir(), Options{CommitObserver: log, BatchSize: 8})
	defer q.Close()

	const alone = 5
	for range alone {
		receive(t, q, "x\r\n", "r@x.test")
	}
	updates, took := log.get()
	if len(updates) != alone {
		t.Fatalf("%d messages received one by one: %d commits reported (%v), want %d", alone, len(updates), updates, alone)
	}
	for i, n := range updates {
		if n != 1 || took[i] <= 0 {
			t.Errorf("commit %d: %d updates in %v, want 1 in a positive time", i, n, took[i])
		}
	}

	const sessions = 40
	tx0 := writeTxs(q)
	var wg sync.WaitGroup
	for range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, err := q.NewMessage(Envelope{From: "s@src.test", Rcpts: []Rcpt{{Addr: "r@x.test"}}})
			if err == nil {
				_, err = in.Write([]byte("x\r\n"))
			}
			if err == nil {
				err = in.Commit(context.Background())
			}
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	updates, _ = log.get()
	updates = updates[alone:]
	sum := 0
	for _, n := range updates {
		sum += n
		if n < 1 || n > 8 {
			t.Errorf("a commit of %d updates, want 1 to BatchSize 8", n)
		}
	}
	if commits := writeTxs(q) - tx0; sum != sessions || len(updates) != commits {
		t.Errorf("%d concurrent messages: %d commits reported carrying %d updates (%v); bbolt committed %d transactions",
			sessions, len(updates), sum, updates, commits)
	}
}

// classDeliverer answers 250 to every recipient, with the class it maps
// the recipient's domain to.
type classDeliverer map[string]string

func (c classDeliverer) Deliver(ctx context.Context, m *Message) []Result {
	var rs []Result
	for _, r := range m.Rcpts {
		_, domain, _ := strings.Cut(r, "@")
		rs = append(rs, Result{Rcpt: r, Code: 250, Class: c[domain]})
	}
	return rs
}

type delivered struct{ status, class string }

type deliveryLog chan delivered

func (l deliveryLog) Delivered(status, class string, delay time.Duration) {
	l <- delivered{status, class}
}

// The Observer gets each recipient's status with the class its
// deliverer gave the result.
func TestObserverGetsClass(t *testing.T) {
	obs := make(deliveryLog, 10)
	q := runQueue(t, Options{Observer: obs}, classDeliverer{"x.test": "route", "y.test": "mx"})

	receive(t, q, "x\r\n", "a@x.test", "b@y.test", "c@z.test")
	got := map[delivered]int{}
	for range 3 {
		select {
		case d := <-obs:
			got[d]++
		case <-time.After(10 * time.Second):
			t.Fatalf("only %v reported", got)
		}
	}
	want := map[delivered]int{{"sent", "route"}: 1, {"sent", "mx"}: 1, {"sent", ""}: 1}
	for d, n := range want {
		if got[d] != n {
			t.Errorf("reported %v, want %v", got, want)
			break
		}
	}
}
