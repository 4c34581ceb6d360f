package store

import (
	"strings"
	"testing"

	"github.com/notifier/notifier/notifier"
)

// plan is SQLite's query plan for q with args, one detail per line.
func plan(t *testing.T, s *SQLite, q string, args ...any) string {
	t.Helper()
	rows, err := s.r.Query("EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// The indexes of migration 0003 are partial: a query uses one only if its
// WHERE clause holds the index's term. These are the queries tails, status,
// the console, the portal, replay and retention run.
func TestSQLiteQueriesUseTheIndexes(t *testing.T) {
	s := startLog(t, tempLog(t))
	attempts := []struct {
		name string
		f    notifier.AttemptFilter
		want string
	}{
		{"NoticeID", notifier.AttemptFilter{NoticeID: "a"}, "USING INDEX attempts_notice_seq"},
		{"GaveUp", notifier.AttemptFilter{Outcome: notifier.GaveUp}, "USING INDEX attempts_outcome_seq"},
		{"Blocked", notifier.AttemptFilter{Outcome: notifier.Blocked, AfterSeq: 7}, "USING INDEX attempts_outcome_seq"},
		{"Delivered", notifier.AttemptFilter{Outcome: notifier.Delivered}, "USING INTEGER PRIMARY KEY"},
		{"Partner", notifier.AttemptFilter{Partner: "acme"}, "USING INDEX attempts_partner_seq"},
		{"All", notifier.AttemptFilter{AfterSeq: 7}, "USING INTEGER PRIMARY KEY"},
	}
	for _, tt := range attempts {
		t.Run("Attempts"+tt.name, func(t *testing.T) {
			where := attemptsWhere(tt.f)
			q := s.selectSQL() + where.sql() + " ORDER BY seq DESC LIMIT ?"
			if got := plan(t, s, q, append(where.args, 10)...); !strings.Contains(got, tt.want) {
				t.Errorf("plan of %s:\n%s\nwant %q", q, got, tt.want)
			}
		})
	}
	notices := []struct {
		name string
		f    notifier.NoticeFilter
		want string
	}{
		{"All", notifier.NoticeFilter{}, "USING INDEX notices_ended"},
		{"GaveUp", notifier.NoticeFilter{Outcome: notifier.GaveUp}, "USING INDEX notices_outcome_ended"},
		{"Delivered", notifier.NoticeFilter{Outcome: notifier.Delivered}, "USING INDEX notices_ended"},
	}
	for _, tt := range notices {
		t.Run("Notices"+tt.name, func(t *testing.T) {
			where := noticesWhere(tt.f)
			where.and("(ended_us, rowid) > (?, ?)")
			q := "SELECT " + endedColumns + " FROM notices" + where.sql() + " ORDER BY ended_us, rowid LIMIT ?"
			got := plan(t, s, q, append(where.args, 0, 0, 10)...)
			if !strings.Contains(got, tt.want) || strings.Contains(got, "TEMP B-TREE") {
				t.Errorf("plan of %s:\n%s\nwant %q and no sort", q, got, tt.want)
			}
		})
	}
	t.Run("EndedByID", func(t *testing.T) {
		if got := plan(t, s, "SELECT "+endedColumns+" FROM notices WHERE id = ?", "a"); !strings.Contains(got, "USING INDEX sqlite_autoindex_notices_1") {
			t.Errorf("plan:\n%s\nwant the primary key", got)
		}
	})
}
