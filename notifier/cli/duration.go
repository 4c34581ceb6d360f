package cli

import (
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/notifier/notifier/notifier"
	ucli "github.com/urfave/cli/v2"
)

// durationValue is the value of a duration flag. Like a schedule, it takes
// bare seconds ("15", "0.5") as well as Go durations ("15s", "2m").
type durationValue struct{ d time.Duration }

// Set reads s as seconds or as a Go duration.
func (v *durationValue) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	v.d = d
	return nil
}

// String is the duration as the CLI prints every duration (24h, not
// 24h0m0s), which --help shows as the default.
func (v *durationValue) String() string {
	if v == nil {
		return ""
	}
	return notifier.FormatDuration(v.d)
}

func parseDuration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.Abs(f) > float64(math.MaxInt64/int64(time.Second)) {
			return 0, errors.New("out of range")
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("want seconds (15, 0.5) or a Go duration (15s, 2m)")
	}
	return d, nil
}

// durationFlag is a duration flag with default def that also takes bare
// seconds; read it with duration.
func durationFlag(name string, def time.Duration, usage string) *ucli.GenericFlag {
	return &ucli.GenericFlag{Name: name, Value: &durationValue{d: def}, Usage: usage + " (seconds or a Go duration)"}
}

// duration is the value of the duration flag name.
func duration(c *ucli.Context, name string) time.Duration {
	if v, ok := c.Generic(name).(*durationValue); ok {
		return v.d
	}
	return 0
}

// withDefaultText sets the default --help shows for f.
func withDefaultText(f *ucli.GenericFlag, text string) *ucli.GenericFlag {
	f.DefaultText = text
	return f
}
