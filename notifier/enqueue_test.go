package notifier_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
	"github.com/notifier/notifier/notifier"
)

// fakeIntakeStore is a Submitter and Published in memory.
type fakeIntakeStore struct {
	def      backoff.Schedule
	partners map[string]string
	// fail, if set, fails every store call but PublishedPartners.
	fail     error
	enqueued []notifier.Notice
	resent   []notifier.Notice
	pending  map[string]bool
}

func (f *fakeIntakeStore) DefaultSchedule(context.Context) (backoff.Schedule, error) {
	return f.def, f.fail
}

func (f *fakeIntakeStore) PublishedPartners(context.Context) (map[string]string, error) {
	return f.partners, nil
}

func (f *fakeIntakeStore) store(ns []notifier.Notice, to *[]notifier.Notice) ([]error, error) {
	if f.fail != nil {
		return nil, f.fail
	}
	errs := make([]error, len(ns))
	for i, n := range ns {
		if f.pending[n.ID] {
			errs[i] = notifier.ErrDuplicate
			continue
		}
		*to = append(*to, n)
	}
	return errs, nil
}

func (f *fakeIntakeStore) Enqueue(_ context.Context, ns []notifier.Notice) ([]error, error) {
	return f.store(ns, &f.enqueued)
}

func (f *fakeIntakeStore) Resend(_ context.Context, ns []notifier.Notice) ([]error, error) {
	return f.store(ns, &f.resent)
}

var _ notifier.Submitter = (*fakeIntakeStore)(nil)

func newIntake(t *testing.T, f *fakeIntakeStore) notifier.Intake {
	t.Helper()
	sums, err := notifier.NewPartners([]*notifier.Partner{
		{Name: "pay", Prefixes: []string{"https://pay.example.com"}, Schedule: backoff.Schedule{0, time.Second}},
		{Name: "hooks", Prefixes: []string{"https://hooks.example.com/cb"}},
	}, 0).Summaries()
	if err != nil {
		t.Fatal(err)
	}
	f.partners = sums
	now := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	return notifier.Intake{Queue: f, Published: f, Now: func() time.Time { return now }}
}

// TestIntakeEnqueue: a notice's partner comes from what serve published,
// its schedule is its own, else its partner's, else the published default,
// and its stamp is when it is stored, in whole milliseconds.
func TestIntakeEnqueue(t *testing.T) {
	def := backoff.Schedule{0, 5 * time.Second, 10 * time.Second}
	own := backoff.Schedule{0, 2 * time.Second}
	stamp := time.Date(2026, 3, 1, 12, 0, 0, 123000000, time.UTC)
	tests := []struct {
		name        string
		n           notifier.Notice
		wantPartner string
		wantSched   backoff.Schedule
		wantErr     error
	}{
		{"PartnerByPrefixGivesItsSchedule", notifier.Notice{URL: "https://pay.example.com/n"}, "pay", backoff.Schedule{0, time.Second}, nil},
		{"OwnScheduleIsKept", notifier.Notice{URL: "https://pay.example.com/n", Schedule: own}, "pay", own, nil},
		{"PartnerWithoutScheduleGivesTheDefault", notifier.Notice{URL: "https://hooks.example.com/cb/1"}, "hooks", def, nil},
		{"NoPartnerGivesTheDefault", notifier.Notice{URL: "https://other.example.com/"}, "", def, nil},
		{"UnknownPartnerIsRefused", notifier.Notice{URL: "https://pay.example.com/n", Partner: "nope"}, "", nil, notifier.ErrUnknownPartner},
		{"URLOutsideThePartnerIsRefused", notifier.Notice{URL: "https://evil.example.net/", Partner: "pay"}, "", nil, notifier.ErrInvalidNotice},
		{"PendingIsADuplicate", notifier.Notice{ID: "dup", URL: "https://other.example.com/"}, "", nil, notifier.ErrDuplicate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeIntakeStore{def: def, pending: map[string]bool{"dup": true}}
			in := newIntake(t, f)
			if tt.n.ID == "" {
				tt.n.ID = "n1"
			}
			ns := []notifier.Notice{tt.n}
			errs, err := in.Enqueue(context.Background(), ns)
			if err != nil {
				t.Fatalf("Enqueue: %v", err)
			}
			if tt.wantErr != nil {
				if !errors.Is(errs[0], tt.wantErr) || len(f.enqueued) != 0 {
					t.Fatalf("got %v, stored %d; want %v, nothing stored", errs[0], len(f.enqueued), tt.wantErr)
				}
				return
			}
			if errs[0] != nil || len(f.enqueued) != 1 {
				t.Fatalf("got %v, stored %d; want it stored", errs[0], len(f.enqueued))
			}
			got := f.enqueued[0]
			if got.Partner != tt.wantPartner || !slices.Equal(got.Schedule, tt.wantSched) || !got.Stamp.Equal(stamp) {
				t.Errorf("stored partner %q, schedule %v, stamp %v; want %q, %v, %v",
					got.Partner, got.Schedule, got.Stamp, tt.wantPartner, tt.wantSched, stamp)
			}
			if !ns[0].Stamp.Equal(stamp) || ns[0].Partner != tt.wantPartner {
				t.Errorf("ns[0] not completed in place: %+v", ns[0])
			}
		})
	}

	t.Run("StoreFailureBeforeSendingMarksEachNotStored", func(t *testing.T) {
		f := &fakeIntakeStore{def: def}
		in := newIntake(t, f)
		f.fail = errors.New("redis down")
		errs, err := in.Enqueue(context.Background(), []notifier.Notice{{ID: "a", URL: "https://x.example/", Schedule: own}})
		if err == nil || !errors.Is(errs[0], notifier.ErrNotStored) {
			t.Fatalf("got %v, %v; want the failure and ErrNotStored", errs, err)
		}
	})

	t.Run("UnparsablePublishedPartnersWrapErrPublished", func(t *testing.T) {
		f := &fakeIntakeStore{def: def}
		in := newIntake(t, f)
		f.partners = map[string]string{"pay": "{"}
		errs, err := in.Enqueue(context.Background(), []notifier.Notice{{ID: "a", URL: "https://x.example/"}})
		if errs != nil || !errors.Is(err, notifier.ErrPublished) {
			t.Fatalf("got %v, %v; want nil and ErrPublished", errs, err)
		}
	})

	t.Run("UnparsablePublishedScheduleWrapsErrPublished", func(t *testing.T) {
		f := &fakeIntakeStore{def: def}
		in := newIntake(t, f)
		f.partners = map[string]string{"pay": `{"url_prefix":["https://pay.example.com"],"schedule":"soon"}`}
		errs, err := in.Enqueue(context.Background(), []notifier.Notice{{ID: "a", URL: "https://pay.example.com/"}})
		if err != nil || !errors.Is(errs[0], notifier.ErrPublished) || !errors.Is(errs[0], backoff.ErrInvalid) {
			t.Fatalf("got %v, %v; want ErrPublished wrapping backoff.ErrInvalid", errs, err)
		}
	})
}

// TestIntakeResend: a re-sent notice keeps everything but its stamp.
func TestIntakeResend(t *testing.T) {
	f := &fakeIntakeStore{pending: map[string]bool{"busy": true}}
	in := newIntake(t, f)
	old := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ns := []notifier.Notice{
		{ID: "a", URL: "https://pay.example.com/n", Partner: "pay", Schedule: backoff.Schedule{0}, Stamp: old},
		{ID: "busy", URL: "https://pay.example.com/n", Schedule: backoff.Schedule{0}, Stamp: old},
	}
	errs, err := in.Resend(context.Background(), ns)
	if err != nil || errs[0] != nil || !errors.Is(errs[1], notifier.ErrDuplicate) {
		t.Fatalf("Resend = %v, %v; want a stored, busy a duplicate", errs, err)
	}
	want := time.Date(2026, 3, 1, 12, 0, 0, 123000000, time.UTC)
	if len(f.resent) != 1 || !f.resent[0].Stamp.Equal(want) || f.resent[0].Partner != "pay" {
		t.Errorf("resent %+v; want a with stamp %v", f.resent, want)
	}
}
