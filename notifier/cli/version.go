package cli

import (
	"fmt"
	"io"
	"runtime"

	ucli "github.com/urfave/cli/v2"
)

func versionCommand(env Env) *ucli.Command {
	return &ucli.Command{
		OnUsageError: usageError,
		Name:         "version",
		Usage:        "print the version, Go version and platform",
		Action: func(c *ucli.Context) error {
			_, err := io.WriteString(c.App.Writer, versionLine(env.Version))
			return err
		},
	}
}

// versionLine is what `notifier version` and `notifier --version` both
// print: one format, so a script can read either.
func versionLine(version string) string {
	return fmt.Sprintf("notifier %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func init() {
	// urfave/cli prints --version through this package-level hook; every
	// app of this package prints it as `version` does.
	ucli.VersionPrinter = func(c *ucli.Context) { _, _ = io.WriteString(c.App.Writer, versionLine(c.App.Version)) }
}

// Completion scripts ask the binary itself for candidates
// (urfave/cli's --generate-bash-completion), so they never go stale.
const bashCompletion = `_notifier_complete() {
  local cur opts
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  if [[ "$cur" == "-"* ]]; then
    opts=$( "${COMP_WORDS[@]:0:$COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null )
  else
    opts=$( "${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null )
  fi
  COMPREPLY=( $(compgen -W "${opts}" -- "$cur") )
  return 0
}
complete -o bashdefault -o default -F _notifier_complete notifier bin/notifier ./bin/notifier
`

const zshCompletion = `#compdef notifier
_notifier() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} $cur --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _notifier notifier bin/notifier ./bin/notifier
`

func completionCommand() *ucli.Command {
	return &ucli.Command{
		OnUsageError: usageError,
		Name:         "completion",
		Usage:        "print a shell completion script: bash or zsh (e.g. source <(notifier completion bash))",
		ArgsUsage:    "bash|zsh",
		Action: func(c *ucli.Context) error {
			switch c.Args().First() {
			case "bash":
				_, err := io.WriteString(c.App.Writer, bashCompletion)
				return err
			case "zsh":
				_, err := io.WriteString(c.App.Writer, zshCompletion)
				return err
			}
			return fmt.Errorf("%w: completion takes bash or zsh", ErrBadInput)
		},
	}
}
