package luabind

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale"
	"github.com/autoscalelua/autoscalelua/metrics"
	"github.com/google/go-cmp/cmp"
	lua "github.com/yuin/gopher-lua"
)

// referenceSections reads REFERENCE.md: for each "## " heading, the backquoted names
// in the first column of its tables, and for the Actions table the fields column.
func referenceSections(t *testing.T) (map[string][]string, map[string][]string) {
	t.Helper()
	b, err := os.ReadFile("REFERENCE.md")
	if err != nil {
		t.Fatal(err)
	}
	secs := map[string][]string{}
	actFields := map[string][]string{}
	row := regexp.MustCompile("^\\| `([^`]+)` \\|")
	tick := regexp.MustCompile("`([^`]+)`")
	sec := ""
	for _, line := range strings.Split(string(b), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			sec = h
			continue
		}
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		secs[sec] = append(secs[sec], m[1])
		if sec == "Actions" {
			cols := strings.Split(line, "|")
			for _, f := range tick.FindAllStringSubmatch(cols[len(cols)-2], -1) {
				actFields[m[1]] = append(actFields[m[1]], f[1])
			}
		}
	}
	return secs, actFields
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func tableKeys(t *lua.LTable) []string {
	var out []string
	t.ForEach(func(k, _ lua.LValue) { out = append(out, k.String()) })
	return sorted(out)
}

func TestReferenceMatchesCode(t *testing.T) {
	secs, actFields := referenceSections(t)
	rt, err := New(FromString("ref.lua", "function on_request(req) end"))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	v, err := rt.newVM(rt.prog.Load(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer v.close()

	// Globals: what a real VM has, minus the script's own.
	globals := tableKeys(v.data)
	globals = slices.DeleteFunc(globals, func(s string) bool { return s == "on_request" })
	v.reqv.set(v, &Request{Tokens: 1})
	v.resv.set(v, &Response{})
	tv := &tickView{}
	tv.init(v)
	tv.set(&autoscale.Input{})
	var hooks []string
	for _, h := range allHooksArray[:hTick+1] {
		hooks = append(hooks, string(h))
	}
	var errs []string
	fset := token.NewFileSet()
	for _, f := range []string{"errors.go"} {
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if vs, ok := n.(*ast.ValueSpec); ok {
				for _, name := range vs.Names {
					if strings.HasPrefix(name.Name, "Err") {
						errs = append(errs, name.Name)
					}
				}
			}
			return true
		})
	}
	var limits []string
	for f := range reflect.TypeFor[Limits]().Fields() {
		limits = append(limits, f.Name)
	}
	var reasons []string
	for _, r := range allReasons {
		reasons = append(reasons, string(r))
	}
	decisionKeys := []string{}
	for _, k := range []string{"status", "reject", "retry_after", "body", "priority", "route", "tenant", "model", "headers", "nonsense"} {
		var d Decision
		val := lua.LValue(lua.LNumber(400))
		if err := d.set(k, val); err == nil || !strings.Contains(err.Error(), "unknown field") {
			decisionKeys = append(decisionKeys, k)
		}
	}
	mod := v.mod.Metatable.(*lua.LTable).RawGetString("__index").(*lua.LTable)
	if got := tableKeys(mod); !slices.Equal(got, sorted(append(actionNames(), "now"))) {
		t.Errorf("module has %v", got)
	}
	for _, c := range []struct {
		sec  string
		code []string
	}{
		{"Hooks", append(hooks, string(HookSelfTest))},
		{"Globals", globals},
		{"Request view (`req`)", tableKeys(v.reqv.data)},
		{"Decision table (on_request's return)", decisionKeys},
		{"Backend view (`backends[i]` in pick)", backendFields[:]},
		{"Response view (`res`)", tableKeys(v.resv.data)},
		{"m (on_tick)", tableKeys(tv.data)},
		{"Snapshot fields", snapshotNames()},
		{"Target fields", targetNames()},
		{"Actions", actionNames()},
		{"Errors (Go)", errs},
		{"Failure reasons", reasons},
		{"Limits", limits},
		{"Library bounds", libraryFunctions(t, v)},
	} {
		if diff := cmp.Diff(sorted(c.code), sorted(secs[c.sec])); diff != "" {
			t.Errorf("REFERENCE.md section %q disagrees with the code (-code +doc):\n%s", c.sec, diff)
		}
	}
	// Every snapshot field reads its own number (span is 2 s, count 3, ... in the
	// order of snapshotFields), every other is nil.
	ms := time.Millisecond
	s := metrics.Snapshot{Span: 2 * time.Second, Count: 3, Errors: 4, Canceled: 5, Rejected: 6, Rate: 7, ErrorRate: 8,
		Mean: 9 * ms, P50: 10 * ms, P90: 11 * ms, P99: 12 * ms, Max: 13 * ms, Bytes: 14, Value: 15, InFlight: 16, MaxInFlight: 17, Concurrency: 18}
	for i, f := range snapshotNames() {
		want := lua.LValue(lua.LNumber(i + 1))
		if f == "ok" {
			want = lua.LTrue
		}
		if got, ok := snapshotField(&s, true, f); got != want || !ok {
			t.Errorf("snapshot field %s reads %v, %v, want %v", f, got, ok, want)
		}
	}
	if got, ok := snapshotField(&s, true, "nonsense"); ok {
		t.Errorf("an unknown snapshot field reads %v", got)
	}
	// Action fields: the documented ones are exactly those that read, and their
	// names are those of the constructors' table.
	for _, name := range actionNames() {
		a := sampleAction(name)
		var got []string
		for _, f := range []string{"kind", "target", "replicas", "reason", "panic", "pool", "backend", "weight", "seconds", "route", "fraction", "retry_after", "tenant", "rps", "burst", "from", "to", "model", "tokens_per_minute", "priority", "min", "max", "queue", "kv_cache", "in_flight", "latency", "prefix", "nonsense"} {
			if _, ok := actionFieldOf(a, f); ok {
				got = append(got, f)
			}
		}
		if diff := cmp.Diff(sorted(got), sorted(actFields[name])); diff != "" {
			t.Errorf("fields of %s (-code +doc):\n%s", name, diff)
		}
		if a.Kind() != name {
			t.Errorf("the constructor %s makes a %s action", name, a.Kind())
		}
	}
}

func actionNames() []string {
	var out []string
	for _, k := range actionKinds {
		out = append(out, k.name)
	}
	return out
}

func snapshotNames() []string {
	var out []string
	for _, f := range snapshotFields {
		out = append(out, f.name)
	}
	return out
}

func targetNames() []string {
	var out []string
	for _, f := range targetFields {
		out = append(out, f.name)
	}
	return out
}

// libraryFunctions names every function of the string and table libraries and the
// base functions whose work grows with their input, as "Library bounds" lists them:
// the audit must cover each.
func libraryFunctions(t *testing.T, v *vm) []string {
	t.Helper()
	names := []string{"unpack", "tostring", "print", "math.*", "t[k] = v", ".."}
	for _, lib := range []string{"string", "table"} {
		proxy := v.data.RawGetString(lib).(*lua.LTable)
		data := proxy.Metatable.(*lua.LTable).RawGetString("__index").(*lua.LTable)
		data.ForEach(func(k, val lua.LValue) {
			if _, ok := val.(*lua.LFunction); ok {
				names = append(names, lib+"."+k.String())
			}
		})
	}
	return names
}

func sampleAction(kind string) autoscale.Action {
	switch kind {
	case "scale":
		return autoscale.Scale{}
	case "set_weight":
		return autoscale.SetWeight{}
	case "eject":
		return autoscale.Eject{}
	case "shed":
		return autoscale.Shed{}
	case "throttle":
		return autoscale.Throttle{}
	case "budget":
		return autoscale.Budget{}
	case "limit_bounds":
		return autoscale.LimitBounds{}
	case "score_weights":
		return autoscale.ScoreWeights{}
	}
	return autoscale.Route{}
}
