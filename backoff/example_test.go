package backoff_test

import (
	"fmt"
	"time"

	"github.com/notifier/notifier/backoff"
)

func ExampleSchedule_Due() {
	s, _ := backoff.Parse("0,10,30")
	stamp := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for n := 1; n <= s.Attempts(); n++ {
		due, _ := s.Due(stamp, n)
		fmt.Println(n, due.Format(time.TimeOnly))
	}
	// Output:
	// 1 12:00:00
	// 2 12:00:10
	// 3 12:00:30
}
