package store

import (
	"context"
	"fmt"
	"strconv"
)

// removePayloadScript deletes a notice's payload wherever it is kept, as
// a lost write or an operator's DEL would.
//
//	KEYS[1] -> payload table    ARGV[1] -> notice id
//	KEYS[2] -> payload key
var removePayloadScript = newScript(recordsLuaSrc + `
local v = rec_get(KEYS[1], ARGV[1])
rec_remove(KEYS[1], KEYS[2], ARGV[1], v and rec_far(v))
return 1
`)

// RemovePayload deletes notice id's payload, from its bucket or its own key.
func (r *Redis) RemovePayload(ctx context.Context, id string) error {
	_, err := r.evalPipelined(ctx, []scriptCall{{removePayloadScript, []string{r.keys.Records(id), r.keys.Payload(id)}, []any{id}}})
	if err != nil {
		return fmt.Errorf("remove payload of %s: %w", id, err)
	}
	return nil
}

// PayloadOf returns notice id's payload as stored, "" if there is none.
func (r *Redis) PayloadOf(ctx context.Context, id string) string {
	p, _ := r.readPayload(ctx, id)
	return string(p)
}

// BucketOf is notice id's bucket in a payload table of 2^level buckets
// whose split pointer is 0: its recordHash modulo 2^level, as the scripts
// place it (records.go).
func BucketOf(id string, level int) int {
	h, _ := strconv.ParseUint(recordHash(id), 10, 64)
	return int(h % (1 << level))
}
