package cli

import (
	"io"
	"strings"
	"testing"
	"time"

	ucli "github.com/urfave/cli/v2"
)

// TestEveryFlagHasAnEnvVar: every flag of every command can be set from the
// environment, as NOTIFIER_<FLAG> unless it kept an older name.
func TestEveryFlagHasAnEnvVar(t *testing.T) {
	kept := map[string]string{"redis": "NOTIFIER_REDIS_URL", "secret": "NOTIFIER_SECRETS"}
	var walk func(path string, cmds []*ucli.Command)
	walk = func(path string, cmds []*ucli.Command) {
		for _, cmd := range cmds {
			name := strings.TrimSpace(path + " " + cmd.Name)
			for _, f := range cmd.Flags {
				flag := f.Names()[0]
				want := EnvVar(flag)
				if k, ok := kept[flag]; ok {
					want = k
				}
				vf, ok := f.(ucli.DocGenerationFlag)
				if !ok {
					t.Errorf("%s --%s: %T has no GetEnvVars", name, flag, f)
					continue
				}
				if got := vf.GetEnvVars(); len(got) != 1 || got[0] != want {
					t.Errorf("%s --%s: env vars %v, want [%s]", name, flag, got, want)
				}
			}
			walk(name, cmd.Subcommands)
		}
	}
	walk("", newApp(Env{}, strings.NewReader(""), io.Discard, io.Discard).Commands)
}

// TestFlagsFirst: flags after a command's arguments move before them, with
// their values; bool flags take none; "--" ends flags.
func TestFlagsFirst(t *testing.T) {
	app := newApp(Env{}, strings.NewReader(""), io.Discard, io.Discard)
	tests := []struct{ in, want string }{
		{"status order-1 --json", "status --json order-1"},
		{"status order-1 --json --redis 127.0.0.1:1", "status --json --redis 127.0.0.1:1 order-1"},
		{"partner pause local --reason x", "partner pause --reason x local"},
		{"partner pause local --reason=x", "partner pause --reason=x local"},
		{"cancel --redis u a -- --b", "cancel --redis u a -- --b"},
		{"tail -n 5 -f", "tail -n 5 -f"},
		{"bogus x --json", "bogus x --json"},
		{"status x --generate-bash-completion", "status x --generate-bash-completion"},
	}
	for _, tt := range tests {
		got := strings.Join(flagsFirst(app.Commands, append([]string{"notifier"}, strings.Fields(tt.in)...))[1:], " ")
		if got != tt.want {
			t.Errorf("flagsFirst(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"15", 15 * time.Second, true},
		{"0.5", 500 * time.Millisecond, true},
		{"0", 0, true},
		{"15s", 15 * time.Second, true},
		{"2m", 2 * time.Minute, true},
		{"-1s", -time.Second, true},
		{"NaN", 0, false},
		{"1e300", 0, false},
		{"soon", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
