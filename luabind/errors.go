package luabind

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
)

// Sentinel errors. Errors returned by this package wrap one of them; branch with
// [errors.Is].
var (
	// ErrInvalidConfig reports an option or limit out of range.
	ErrInvalidConfig = errors.New("luabind: invalid config")
	// ErrCompile reports a script that does not parse or compile, or whose main chunk
	// fails. The wrapping [*ScriptError] carries the Lua line.
	ErrCompile = errors.New("luabind: script does not load")
	// ErrSelfTest reports a script whose self_test() failed; a reload that fails with
	// it keeps the old script.
	ErrSelfTest = errors.New("luabind: self_test failed")
	// ErrScript reports a hook that raised a Lua error (including a broken limit).
	ErrScript = errors.New("luabind: script error")
	// ErrScriptTimeout reports a hook that overran its time budget.
	ErrScriptTimeout = errors.New("luabind: script timeout")
	// ErrBadReturn reports a hook that returned something the contract does not allow.
	ErrBadReturn = errors.New("luabind: bad return value")
	// ErrBusy reports a call that found no free VM within its pool wait
	// (Limits.PoolWait, at most its budget) or before its context ended.
	ErrBusy = errors.New("luabind: no free VM")
	// ErrClosed reports a call on a closed [Runtime].
	ErrClosed = errors.New("luabind: runtime closed")
	// ErrFailClosed is wrapped by a hook failure when the hook's [FailMode] is
	// [FailClosed]: the caller must reject the request (the returned [Decision] already
	// says so).
	ErrFailClosed = errors.New("luabind: hook failed closed")
)

// ScriptError is a Lua error with its place in the script. It wraps one of the
// sentinels ([ErrCompile], [ErrSelfTest], [ErrScript], [ErrScriptTimeout]).
type ScriptError struct {
	// Hook is the hook that ran ("load" for the main chunk, "self_test", ...).
	Hook Hook
	// Script is the script's name (its file name, or the name given to [Source]).
	Script string
	// Line is the Lua line the error was raised at; 0 when unknown.
	Line int
	// Message is the Lua error message without the "name:line:" prefix.
	Message string
	// Err is the sentinel.
	Err error
}

// Error returns "luabind: <hook> <script>:<line>: <message>".
func (e *ScriptError) Error() string {
	var b strings.Builder
	b.WriteString("luabind: ")
	b.WriteString(string(e.Hook))
	b.WriteString(" ")
	b.WriteString(e.Script)
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	b.WriteString(e.Message)
	return b.String()
}

// Unwrap returns the sentinel.
func (e *ScriptError) Unwrap() error { return e.Err }

// scriptError turns an error from gopher-lua into a *ScriptError wrapping sentinel.
func scriptError(hook Hook, script string, err error, sentinel error) *ScriptError {
	se := &ScriptError{Hook: hook, Script: script, Err: sentinel}
	var pe *parse.Error
	var ce *lua.CompileError
	var ae *lua.ApiError
	switch {
	case errors.As(err, &pe):
		se.Line, se.Message = pe.Pos.Line, pe.Message
		if pe.Token != "" {
			se.Message += " near '" + pe.Token + "'"
		}
	case errors.As(err, &ce):
		se.Line, se.Message = ce.Line, ce.Message
	case errors.As(err, &ae):
		msg := ae.Object.String()
		if ae.Cause != nil {
			return scriptError(hook, script, ae.Cause, sentinel)
		}
		se.Line, se.Message = splitLine(script, msg)
	default:
		se.Line, se.Message = splitLine(script, err.Error())
	}
	return se
}

// splitLine parses "name:12: message" into (12, "message").
func splitLine(script, msg string) (int, string) {
	rest, ok := strings.CutPrefix(msg, script+":")
	if !ok {
		// A Lua error raised with a level pointing at another chunk, or a Go error.
		if i := strings.Index(msg, ":"); i > 0 {
			if j := strings.Index(msg[i+1:], ":"); j > 0 {
				if n, err := strconv.Atoi(msg[i+1 : i+1+j]); err == nil {
					return n, strings.TrimSpace(msg[i+1+j+1:])
				}
			}
		}
		return 0, msg
	}
	i := strings.Index(rest, ":")
	if i < 0 {
		return 0, msg
	}
	n, err := strconv.Atoi(rest[:i])
	if err != nil {
		return 0, msg
	}
	return n, strings.TrimSpace(rest[i+1:])
}

func configError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}
