package cli

import (
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// flagsFirst returns args (the program name first) with the flags that
// follow a command's arguments moved before them, so that `status order-1
// --json` and `partner pause local --reason x` mean what they say: urfave/cli
// stops reading flags at the first argument. A flag that takes a value
// keeps the token after it (unless written --flag=value); everything after
// "--" stays an argument, in place; args meant for shell completion are left
// alone.
func flagsFirst(cmds []*ucli.Command, args []string) []string {
	if len(args) < 2 || args[len(args)-1] == "--generate-bash-completion" {
		return args
	}
	i := 1
	var cmd *ucli.Command
	for i < len(args) {
		next := findCommand(cmds, args[i])
		if next == nil {
			break
		}
		cmd, cmds, i = next, next.Subcommands, i+1
	}
	if cmd == nil || len(cmd.Subcommands) > 0 {
		return args
	}
	out := append([]string{}, args[:i]...)
	var positional []string
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		out = append(out, a)
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !hasValue && takesValue(cmd, name) && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return append(out, positional...)
}

func findCommand(cmds []*ucli.Command, name string) *ucli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// takesValue reports whether cmd has a flag called name that takes a value
// (not a bool flag); unknown flags are left for urfave/cli to refuse.
func takesValue(cmd *ucli.Command, name string) bool {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				v, ok := f.(ucli.DocGenerationFlag)
				return ok && v.TakesValue()
			}
		}
	}
	return false
}
