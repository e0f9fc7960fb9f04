package examples_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// flagDef finds the flags a command defines: fs.String("name", ...), flag.Duration(...),
// fs.IntVar(&x, "name", ...) and the like.
var flagDef = regexp.MustCompile(`\.(?:String|Int|Bool|Duration|Float64|Uint64|Int64|Uint)(?:Var)?\((?:&[\w.]+, )?"([\w-]+)"`)

// TestEveryExampleAnswersHelp builds every command under examples/ and runs it with -h:
// each must exit 0 and print a usage that names every flag its source defines.
func TestEveryExampleAnswersHelp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every example")
	}
	mains, err := filepath.Glob("*/main.go")
	if err != nil || len(mains) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	bin := t.TempDir()
	args := []string{"build", "-o", bin + string(filepath.Separator)}
	for _, m := range mains {
		args = append(args, "./"+filepath.Dir(m))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, m := range mains {
		name := filepath.Dir(m)
		t.Run(name, func(t *testing.T) {
			var flags []string
			files, _ := filepath.Glob(filepath.Join(name, "*.go"))
			for _, f := range files {
				if strings.HasSuffix(f, "_test.go") {
					continue
				}
				src, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range flagDef.FindAllSubmatch(src, -1) {
					flags = append(flags, string(m[1]))
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, filepath.Join(bin, name), "-h").CombinedOutput()
			if err != nil {
				t.Fatalf("%s -h: %v (want exit 0)\n%s", name, err, out)
			}
			if !strings.Contains(strings.ToLower(string(out)), "usage") {
				t.Errorf("%s -h prints no usage:\n%s", name, out)
			}
			for _, f := range flags {
				if !strings.Contains(string(out), "-"+f) {
					t.Errorf("%s -h does not list -%s:\n%s", name, f, out)
				}
			}
		})
	}
}
