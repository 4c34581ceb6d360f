package notifier

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/notifier/notifier/backoff"
)

func TestDecide(t *testing.T) {
	stamp := time.UnixMilli(1_700_000_000_000)
	at := func(d time.Duration) time.Time { return stamp.Add(d) }
	const s, ms = time.Second, time.Millisecond
	sched := backoff.Schedule{0, 10 * s, 30 * s}
	rule := func(r string) SuccessRule {
		sr, err := ParseSuccessRule(r)
		if err != nil {
			t.Fatal(err)
		}
		return sr
	}
	ok := func(status int, body string) Result {
		return Result{Start: at(0), Duration: 5 * ms, Status: status, Snippet: []byte(body)}
	}
	startedAt := func(r Result, start time.Duration) Result { r.Start = at(start); return r }
	shop := &Partner{Name: "shop"}
	gone := &Partner{Name: "gone", PauseOnGone: true}
	jittery := &Partner{Name: "j", Jitter: 0.5}
	tests := []struct {
		name string
		v    Verdict
		want Decision
		// errHas must be in Error ("" means Error must be empty).
		errHas string
	}{
		{"200Delivers", Verdict{N: 1, Result: ok(200, "")}, Decision{Outcome: Delivered, Action: End, Succeeded: true}, ""},
		{"204Delivers", Verdict{N: 2, Result: ok(204, "")}, Decision{Outcome: Delivered, Action: End, Succeeded: true}, ""},
		{"LastAttemptDelivers", Verdict{N: 3, Result: ok(200, "ok")}, Decision{Outcome: Delivered, Action: End, Succeeded: true}, ""},
		{"500ArmsNext", Verdict{N: 1, Result: ok(500, "")}, Decision{Outcome: Retry, Action: Arm, Next: 2, Due: at(10 * s)}, ""},
		{"503ArmsNextFromSecond", Verdict{N: 2, Result: startedAt(ok(503, ""), 10*s)}, Decision{Outcome: Retry, Action: Arm, Next: 3, Due: at(30 * s)}, ""},
		{"LastAttemptFailsGivesUp", Verdict{N: 3, Result: startedAt(ok(500, ""), 30*s)}, Decision{Outcome: GaveUp, Action: End}, ""},
		{"3xxIsAFailure", Verdict{N: 1, Result: ok(302, "")}, Decision{Outcome: Retry, Action: Arm, Next: 2, Due: at(10 * s)}, ""},
		{"404IsRetried", Verdict{N: 1, Result: ok(404, "")}, Decision{Outcome: Retry, Action: Arm, Next: 2, Due: at(10 * s)}, ""},
		{"410GivesUpAtOnce", Verdict{N: 1, Result: ok(410, "")}, Decision{Outcome: GaveUp, Action: End}, "permanent"},
		{"410OfPartnerThatPausesParks", Verdict{N: 1, Result: ok(410, ""), Partner: gone, CanPause: true},
			Decision{Outcome: Retry, Action: Park, PauseReason: "answered 410 Gone"}, "partner gone paused"},
		{"410OfPausingPartnerWithoutPauserGivesUp", Verdict{N: 1, Result: ok(410, ""), Partner: gone}, Decision{Outcome: GaveUp, Action: End}, "permanent"},
		{"410OfPartnerThatDoesNotPauseGivesUp", Verdict{N: 1, Result: ok(410, ""), Partner: shop, CanPause: true}, Decision{Outcome: GaveUp, Action: End}, "permanent"},
		{"TransportErrorArmsNext", Verdict{N: 1, Result: Result{Start: at(0), Err: errors.New("connection refused")}},
			Decision{Outcome: Retry, Action: Arm, Next: 2, Due: at(10 * s)}, "connection refused"},
		{"TransportErrorOnLastGivesUp", Verdict{N: 3, Result: Result{Start: at(30 * s), Err: errors.New("timed out after 15s")}},
			Decision{Outcome: GaveUp, Action: End}, "timed out"},
		{"BlockedEndsAtOnce", Verdict{N: 1, Result: Result{Start: at(0), Err: ErrBlocked}}, Decision{Outcome: Blocked, Action: End}, "not retried"},
		{"BlockedEvenWithAttemptsLeft", Verdict{N: 2, Result: Result{Start: at(10 * s), Err: ErrBlocked}}, Decision{Outcome: Blocked, Action: End}, "blocked by the address guard"},
		{"AbortedWithoutReplyIsReleased", Verdict{N: 1, Aborted: true, Result: Result{Start: at(0), Err: errors.New("context canceled")}},
			Decision{Outcome: Error, Action: Release}, "aborted by shutdown"},
		{"AbortedAfterAReplyIsJudged", Verdict{N: 1, Aborted: true, Result: ok(200, "")}, Decision{Outcome: Delivered, Action: End, Succeeded: true}, ""},
		{"BodyRuleMet", Verdict{N: 1, Rule: rule("body:success"), Result: ok(200, "success")}, Decision{Outcome: Delivered, Action: End, Succeeded: true}, ""},
		{"BodyRuleNotMetIsRetried", Verdict{N: 1, Rule: rule("body:success"), Result: ok(200, "fail")},
			Decision{Outcome: Retry, Action: Arm, Next: 2, Due: at(10 * s)}, "success rule"},
		{"BodyRuleNotMetOnLastGivesUp", Verdict{N: 3, Rule: rule("body:success"), Result: startedAt(ok(200, "fail"), 30*s)},
			Decision{Outcome: GaveUp, Action: End}, "success rule"},
		{"StatusRuleRefuses202", Verdict{N: 1, Rule: rule("status:200"), Result: ok(202, "")},
			Decision{Outcome: Retry, Action: Arm, Next: 2, Due: at(10 * s)}, "success rule"},
		{"SlowPartnerKeepsAnchor", Verdict{N: 1, Result: Result{Start: at(0), Duration: 9 * s, Status: 500}},
			Decision{Outcome: Retry, Action: Arm, Next: 2, Due: at(10 * s)}, ""},
		{"LateStartShiftsNext", Verdict{N: 1, Result: startedAt(ok(500, ""), 2*time.Minute)},
			Decision{Outcome: Retry, Action: Arm, Next: 2, Due: at(2*time.Minute + 10*s)}, ""},
		{"LateSecondKeepsGap", Verdict{N: 2, Result: startedAt(ok(500, ""), time.Hour)},
			Decision{Outcome: Retry, Action: Arm, Next: 3, Due: at(time.Hour + 20*s)}, ""},
		{"RetryAfterLaterThanSlotWins", Verdict{N: 1, Result: Result{Start: at(0), Duration: time.Second, Status: 429, RetryAfter: time.Minute}},
			Decision{Outcome: Retry, Action: Arm, Next: 2, Due: at(61 * s)}, ""},
		{"RetryAfterEarlierThanSlotIsIgnored", Verdict{N: 1, Result: Result{Start: at(0), Duration: time.Second, Status: 503, RetryAfter: 2 * s}},
			Decision{Outcome: Retry, Action: Arm, Next: 2, Due: at(10 * s)}, ""},
		{"RetryAfterOnLastGivesUp", Verdict{N: 3, Result: Result{Start: at(30 * s), Status: 429, RetryAfter: time.Minute}}, Decision{Outcome: GaveUp, Action: End}, ""},
		{"JitterDelaysByItsShareOfTheGap", Verdict{N: 1, Partner: jittery, Rand: 0.5, Result: ok(500, "")},
			Decision{Outcome: Retry, Action: Arm, Next: 2, Due: at(10*s + 2500*ms)}, ""},
		{"JitterZeroRandAddsNothing", Verdict{N: 1, Partner: jittery, Rand: 0, Result: ok(500, "")},
			Decision{Outcome: Retry, Action: Arm, Next: 2, Due: at(10 * s)}, ""},
		{"PartnerWithoutJitterIgnoresRand", Verdict{N: 1, Partner: shop, Rand: 0.9, Result: ok(500, "")},
			Decision{Outcome: Retry, Action: Arm, Next: 2, Due: at(10 * s)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.v.Notice = &Notice{ID: "n1", Stamp: stamp, Schedule: sched}
			got := Decide(tt.v)
			if tt.errHas == "" && got.Error != "" || !strings.Contains(got.Error, tt.errHas) {
				t.Errorf("Error = %q, want it to contain %q", got.Error, tt.errHas)
			}
			got.Error = ""
			if got != tt.want {
				t.Errorf("Decide = %+v, want %+v", got, tt.want)
			}
		})
	}
}
