package cli

import (
	"io"
	"strings"
	"testing"

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
