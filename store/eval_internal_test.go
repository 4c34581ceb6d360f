package store

import (
	"strings"
	"testing"
)

func TestPruneLua(t *testing.T) {
	lib := `
local limit = 5
local function a(x)
  return x + limit
end
local function b(x)
  return a(x) * 2
end
local function c(x)
  local function inner(y) return y end
  return inner(x)
end
local function d()
  return 1
end
local function e(x) return x end
`
	for _, tc := range []struct {
		name, body string
		kept       []string
	}{
		{"none used", "return 1", nil},
		{"direct", "return a(1)", []string{"a"}},
		{"through another", "return b(1)", []string{"a", "b"}},
		{"nested local function stays with its parent", "return c(1)", []string{"c"}},
		{"all", "return a(1) + b(1) + c(1) + d() + e(1)", []string{"a", "b", "c", "d", "e"}},
		{"one-line function", "return e(1)", []string{"e"}},
		{"a name inside a longer word is no call", "local ab = 1\nreturn ab", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := pruneLua(lib + tc.body)
			if !strings.Contains(got, "local limit = 5") || !strings.HasSuffix(got, tc.body) {
				t.Fatalf("pruned away more than functions:\n%s", got)
			}
			var kept []string
			for _, l := range strings.Split(got, "\n") {
				if m := luaFunc.FindStringSubmatch(l); m != nil {
					kept = append(kept, m[1])
				}
			}
			if strings.Join(kept, ",") != strings.Join(tc.kept, ",") {
				t.Fatalf("kept %v, want %v:\n%s", kept, tc.kept, got)
			}
		})
	}
	// A one-line function's calls count too.
	chain := "local function f(x)\n  return x\nend\nlocal function g(x) return f(x) end\nreturn g(1)"
	if got := pruneLua(chain); got != chain {
		t.Fatalf("dropped what a one-line function calls:\n%s", got)
	}
	// A layout it does not understand (no closing "end") is left whole.
	odd := "local function a()\n  return 1\n  end\nreturn 2"
	if got := pruneLua(odd); got != odd {
		t.Fatalf("changed a script it cannot read:\n%s", got)
	}
}

// TestScriptsKeepWhatTheyCall checks every script of the package after
// pruning: each function it still calls is still defined in it.
func TestScriptsKeepWhatTheyCall(t *testing.T) {
	all := pxUntil + dedupLua + recordsLuaSrc + recStampLua
	var names []string
	for _, l := range strings.Split(all, "\n") {
		if m := luaFunc.FindStringSubmatch(l); m != nil {
			names = append(names, m[1])
		}
	}
	for name, s := range map[string]*script{"enqueue": enqueueScript, "claim": claimScript, "complete": completeScript,
		"cancel": cancelScript, "promote": promoteScript, "readRecords": readRecordsScript, "seen": seenScript} {
		for _, fn := range names {
			if strings.Contains(s.src, fn+"(") && !strings.Contains(s.src, "local function "+fn+"(") {
				t.Errorf("%s script calls %s but no longer defines it", name, fn)
			}
		}
	}
}
