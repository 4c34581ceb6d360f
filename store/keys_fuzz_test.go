package store

import (
	"errors"
	"testing"
)

// FuzzParseTrigger feeds ParseTrigger any key, as Redis expiry events from
// other applications may: it must not panic, every refusal must wrap
// ErrForeignKey, and a key it accepts must be the one Trigger writes for the
// result, so a trigger names exactly one key and one due-index member.
func FuzzParseTrigger(f *testing.F) {
	for _, seed := range []string{
		"noticeId_order-1_1700000000000_1",
		"noticeId_a_b_c_1700000000123_12",
		"noticeId__x_1_1",
		"noticeId_1_2_3_4",
		"noticeId_x_1700000000000_100",
		"noticeId_x_1700000000000_101",
		"noticeId_x_0_1",
		"noticeId_x_1_0",
		"noticeId_x__1",
		"noticeId_x_1_",
		"noticeId_x_-1_1",
		"noticeId_x_999999999999999_1",
		"noticeId_x_9999999999999999_1",
		"noticeId_x y_1_1",
		"noticeId_",
		"noticeId",
		"noticeId:p:x",
		"other_x_1_1",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, key string) {
		k := Keys{}
		tr, err := k.ParseTrigger(key)
		if err != nil {
			if !errors.Is(err, ErrForeignKey) {
				t.Fatalf("ParseTrigger(%q) error %v does not wrap ErrForeignKey", key, err)
			}
			return
		}
		if got := k.Trigger(tr); got != key {
			t.Fatalf("ParseTrigger(%q) = %+v, whose key is %q", key, tr, got)
		}
		if _, err := k.ParseMember(k.Member(tr)); err != nil {
			t.Fatalf("ParseMember(Member(%+v)): %v", tr, err)
		}
	})
}
