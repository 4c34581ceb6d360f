package store

import (
	"errors"
	"path"
	"testing"
	"time"

	"github.com/notifier/notifier/notifier"
)

func TestParseTrigger(t *testing.T) {
	k := Keys{}
	tests := []struct {
		key  string
		want notifier.Trigger
	}{
		{"noticeId_order-1_1700000000000_1", notifier.Trigger{ID: "order-1", Stamp: time.UnixMilli(1700000000000), N: 1}},
		{"noticeId_a_b_c_1700000000123_12", notifier.Trigger{ID: "a_b_c", Stamp: time.UnixMilli(1700000000123), N: 12}},
		{"noticeId__x_1_1", notifier.Trigger{ID: "_x", Stamp: time.UnixMilli(1), N: 1}},
		{"noticeId_1_2_3_4", notifier.Trigger{ID: "1_2", Stamp: time.UnixMilli(3), N: 4}},
		// Refused at enqueue now, but a notice stored before that is still read back.
		{"noticeId_.._1700000000000_1", notifier.Trigger{ID: "..", Stamp: time.UnixMilli(1700000000000), N: 1}},
		{"noticeId_id:with:colons_1700000000000_100", notifier.Trigger{ID: "id:with:colons", Stamp: time.UnixMilli(1700000000000), N: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, err := k.ParseTrigger(tt.key)
			if err != nil {
				t.Fatalf("ParseTrigger(%q): %v", tt.key, err)
			}
			if got.ID != tt.want.ID || !got.Stamp.Equal(tt.want.Stamp) || got.N != tt.want.N {
				t.Fatalf("ParseTrigger(%q) = %+v, want %+v", tt.key, got, tt.want)
			}
			if back := k.Trigger(got); back != tt.key {
				t.Fatalf("Trigger(%+v) = %q, want %q", got, back, tt.key)
			}
		})
	}
}

func TestParseTriggerRejects(t *testing.T) {
	k := Keys{}
	for _, key := range []string{
		"", "noticeId", "noticeId_", "noticeId__", "noticeId___", "noticeId_x_1", "noticeId_x_1_0",
		"noticeId_x_1_101", "noticeId_x_0_1", "noticeId_x_-1_1", "noticeId_x_1_+1", "noticeId_x_1_1a",
		"noticeId_x_99999999999999999999_1", "noticeId_x_1_99999999999999999999", "noticeId__1_1",
		"noticeId_has space_1_1", "noticeIdX_x_1_1", "other_x_1_1", "noticeId:p:x", "noticeId:due",
		"session:abc", "noticeId_x_1_ 1", "noticeId_x_1.5_1", "noticeId_\xff_1_1",
	} {
		t.Run(key, func(t *testing.T) {
			got, err := k.ParseTrigger(key)
			if !errors.Is(err, ErrForeignKey) {
				t.Fatalf("ParseTrigger(%q) = %+v, %v; want ErrForeignKey", key, got, err)
			}
		})
	}
}

func TestKeysPrefix(t *testing.T) {
	k := Keys{Prefix: "pay"}
	tr := notifier.Trigger{ID: "o_1", Stamp: time.UnixMilli(5), N: 2}
	if got, want := k.Trigger(tr), "pay_o_1_5_2"; got != want {
		t.Fatalf("Trigger = %q, want %q", got, want)
	}
	if _, err := k.ParseTrigger("noticeId_o_1_5_2"); !errors.Is(err, ErrForeignKey) {
		t.Fatalf("a key of another prefix parsed: %v", err)
	}
	for _, key := range []string{k.Payload("x"), k.Lease("x"), k.Due(), k.DefaultSchedule()} {
		if _, err := k.ParseTrigger(key); err == nil {
			t.Errorf("bookkeeping key %q parses as a trigger", key)
		}
	}
}

// TestShardedKeys: in cluster mode every key of a notice shares its shard's
// hash slot, the trigger key keeps the contract's shape with the tag in
// front of the id, it parses back, and the shards' slots spread evenly.
func TestShardedKeys(t *testing.T) {
	k := Keys{Shards: ClusterShards}
	tr := notifier.Trigger{ID: "order_{42}", Stamp: time.UnixMilli(1790000000000), N: 3}
	s := k.ShardOf(tr.ID)
	slot := Slot(k.DueShard(s))
	for _, key := range []string{k.Trigger(tr), k.Payload(tr.ID), k.Lease(tr.ID), k.DueOf(tr.ID), k.WakeFlagOf(tr.ID), k.ParkedOf(tr.ID, "p")} {
		if Slot(key) != slot {
			t.Errorf("%s is in slot %d, the shard's is %d", key, Slot(key), slot)
		}
	}
	want := "noticeId_{" + ShardTag(s, ClusterShards) + "}order_{42}_1790000000000_3"
	if got := k.Trigger(tr); got != want {
		t.Errorf("trigger key %q, want %q", got, want)
	}
	back, err := k.ParseTrigger(k.Trigger(tr))
	if err != nil || back.ID != tr.ID || back.N != 3 || !back.Stamp.Equal(tr.Stamp) {
		t.Errorf("ParseTrigger = %+v, %v", back, err)
	}
	// Another shard's tag on this id is not ours.
	other := "noticeId_{" + ShardTag((s+1)%ClusterShards, ClusterShards) + "}order_{42}_1790000000000_3"
	if _, err := k.ParseTrigger(other); !errors.Is(err, ErrForeignKey) {
		t.Errorf("a wrong tag parsed: %v", err)
	}
	// Three masters with the ranges redis-cli assigns get 10 or 11 shards each.
	per := map[int]int{}
	for i := range ClusterShards {
		per[int(Slot("{"+ShardTag(i, ClusterShards)+"}"))*3/16384]++
	}
	for m, n := range per {
		if n < 10 || n > 11 {
			t.Errorf("master %d would hold %d shards: %v", m, n, per)
		}
	}
	// The single-node layout is unchanged.
	if got := (Keys{}).Trigger(tr); got != "noticeId_order_{42}_1790000000000_3" {
		t.Errorf("single-node trigger %q", got)
	}
	// Slot matches Redis's own: CLUSTER KEYSLOT "123456789" is 12739.
	if Slot("123456789") != 12739 {
		t.Errorf("Slot(123456789) = %d, want 12739", Slot("123456789"))
	}
}

// TestKeysNames: the names Keys gives Redis's channel, the unpark script
// and SCAN are the ones the code built in place before.
func TestKeysNames(t *testing.T) {
	k := Keys{Prefix: "pay"}
	tr := notifier.Trigger{ID: "o_1", Stamp: time.UnixMilli(5), N: 2}
	if got, want := k.ExpiredChannel(3), "__keyevent@3__:expired"; got != want {
		t.Errorf("ExpiredChannel(3) = %q, want %q", got, want)
	}
	if got, want := k.TriggerPrefix()+k.Member(tr), k.Trigger(tr); got != want {
		t.Errorf("TriggerPrefix+Member = %q, want the trigger key %q", got, want)
	}
	for _, key := range []string{k.Payload("x"), k.Lease("x"), k.WakeFlag(), k.Canary("i"), k.CanaryTagged("i", "c1")} {
		if !k.NonTrigger(key) {
			t.Errorf("NonTrigger(%q) = false", key)
		}
	}
	for _, key := range []string{k.Trigger(tr), "noticeId:p:x", "payment:p:x"} {
		if k.NonTrigger(key) {
			t.Errorf("NonTrigger(%q) = true", key)
		}
	}
	for prefix, want := range map[string]string{"": "noticeId*", "bench12": "bench12*", `a*b?[c]\`: `a\*b\?\[c\]\\*`} {
		if got := (Keys{Prefix: prefix}).Pattern(); got != want {
			t.Errorf("Keys{Prefix: %q}.Pattern() = %q, want %q", prefix, got, want)
		}
	}
	// The receipt pattern matches every receipt, single node or sharded,
	// and no payload.
	for _, k := range []Keys{{Prefix: "pay"}, {Prefix: "pay", Shards: ClusterShards}} {
		pat := k.ReceiptPattern()
		for _, id := range []string{"x", "o_1", "a:b"} {
			if ok, _ := path.Match(pat, k.Receipts(id, 176495000)); !ok {
				t.Errorf("ReceiptPattern %q does not match %q", pat, k.Receipts(id, 176495000))
			}
			if ok, _ := path.Match(pat, k.Payload(id)); ok {
				t.Errorf("ReceiptPattern %q matches the payload %q", pat, k.Payload(id))
			}
		}
	}
}
