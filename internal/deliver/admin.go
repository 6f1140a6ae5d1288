package deliver

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"psagate/internal/store"
)

// Backoff is the wait before attempt n+1: exponential from min, capped at
// max, with jitter between half and all of it so that many jobs failing
// together do not retry together.
func Backoff(attempts int, min, max time.Duration) time.Duration {
	if attempts < 1 {
		attempts = 1
	}
	d := min
	for i := 1; i < attempts && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}

// Retry moves dead job id back to the outbox. When it is a create, the dead
// jobs of the same incident that were waiting for its ticket come back too.
func Retry(db *store.DB, id uint64, now time.Time) ([]uint64, error) {
	var out []uint64
	err := db.Update(func(tx *store.Tx) error {
		j, err := tx.Revive(id, now)
		if err != nil {
			return err
		}
		if j == nil {
			return fmt.Errorf("no dead job %d", id)
		}
		out = append(out, id)
		if j.Op != store.OpCreate {
			return nil
		}
		var followers []uint64
		if err := tx.DeadJobs(func(f *store.Job) bool {
			if f.Incident == j.Incident {
				followers = append(followers, f.ID)
			}
			return true
		}); err != nil {
			return err
		}
		for _, f := range followers {
			if _, err := tx.Revive(f, now); err != nil {
				return err
			}
			out = append(out, f)
		}
		return nil
	})
	return out, err
}

// RetryDead moves every dead job back to the outbox.
func RetryDead(db *store.DB, now time.Time) ([]uint64, error) {
	var out []uint64
	err := db.Update(func(tx *store.Tx) error {
		var ids []uint64
		if err := tx.DeadJobs(func(j *store.Job) bool { ids = append(ids, j.ID); return true }); err != nil {
			return err
		}
		for _, id := range ids {
			if _, err := tx.Revive(id, now); err != nil {
				return err
			}
		}
		out = ids
		return nil
	})
	return out, err
}

// Drop deletes job id from the dead letters, or from the outbox.
func Drop(db *store.DB, id uint64) error {
	return db.Update(func(tx *store.Tx) error {
		ok, err := tx.DropDead(id)
		if err != nil || ok {
			return err
		}
		j, err := tx.Job(id)
		if err != nil {
			return err
		}
		if j == nil {
			return errors.New("no job with that id in the outbox or the dead letters")
		}
		return tx.DeleteJob(id)
	})
}
