package plot

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"time"

	"github.com/autoscalelua/autoscalelua/autoscale/simulate"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// series is one line of a panel.
type series struct {
	name string
	y    func(simulate.Sample) float64
	run  *simulate.Result
}

type panel struct {
	title, unit string
	lines       []series
}

var palette = []color.Color{
	color.RGBA{R: 31, G: 119, B: 180, A: 255},
	color.RGBA{R: 255, G: 127, B: 14, A: 255},
	color.RGBA{R: 44, G: 160, B: 44, A: 255},
	color.RGBA{R: 214, G: 39, B: 40, A: 255},
	color.RGBA{R: 148, G: 103, B: 189, A: 255},
	color.RGBA{R: 140, G: 86, B: 75, A: 255},
	color.RGBA{R: 227, G: 119, B: 194, A: 255},
}

// Timeline writes run r's timeline as an SVG of four panels over time: offered and
// arriving rate; replicas (spec, ready) and the loop's decision; p99 latency against
// the SLO; shed and failed requests per second.
func Timeline(w io.Writer, r *simulate.Result) error {
	if r == nil {
		return errors.New("simulate/plot: nil result")
	}
	slo := float64(r.Summary.SLO) / float64(time.Millisecond)
	panels := []panel{
		{"requests per second", "rps", []series{
			{"offered", func(s simulate.Sample) float64 { return s.Offered }, r},
			{"arrived", func(s simulate.Sample) float64 { return float64(s.Arrivals) }, r},
		}},
		{"replicas", "replicas", []series{
			{"spec", func(s simulate.Sample) float64 { return float64(s.Replicas) }, r},
			{"ready", func(s simulate.Sample) float64 { return float64(s.Ready) }, r},
			{"decided", func(s simulate.Sample) float64 { return float64(max(s.Desired, 0)) }, r},
		}},
		{"p99 latency", "ms", []series{
			{"p99", func(s simulate.Sample) float64 { return ms(s.P99) }, r},
			{"SLO", func(simulate.Sample) float64 { return slo }, r},
		}},
		{"shed and failed", "per second", []series{
			{"shed", func(s simulate.Sample) float64 { return float64(s.Shed) }, r},
			{"failed", func(s simulate.Sample) float64 { return float64(s.Failed) }, r},
		}},
	}
	title := fmt.Sprintf("%s · %s (seed %d)", r.Summary.Scenario, r.Summary.Policy, r.Summary.Seed)
	return drawPanels(w, title, panels)
}

// Comparison writes, for runs of one scenario under several policies, an SVG of
// three panels over time: offered rate; each policy's replicas; each policy's
// SLO-violating requests per second.
func Comparison(w io.Writer, runs []*simulate.Result) error {
	if len(runs) == 0 {
		return errors.New("simulate/plot: no runs")
	}
	for i, r := range runs {
		if r == nil {
			return fmt.Errorf("simulate/plot: run %d is nil", i)
		}
	}
	reps := panel{title: "replicas (spec)", unit: "replicas"}
	viol := panel{title: "SLO-violating requests per second", unit: "per second"}
	for _, r := range runs {
		reps.lines = append(reps.lines, series{r.Summary.Policy, func(s simulate.Sample) float64 { return float64(s.Replicas) }, r})
		viol.lines = append(viol.lines, series{r.Summary.Policy, func(s simulate.Sample) float64 { return float64(s.Violations()) }, r})
	}
	rate := panel{title: "offered load", unit: "rps", lines: []series{{"offered", func(s simulate.Sample) float64 { return s.Offered }, runs[0]}}}
	return drawPanels(w, runs[0].Summary.Scenario+" · policies compared", []panel{rate, reps, viol})
}

func drawPanels(w io.Writer, title string, panels []panel) error {
	const width = 10 * vg.Inch
	height := vg.Length(len(panels)) * 2.6 * vg.Inch
	plots := make([][]*plot.Plot, len(panels))
	for i, pn := range panels {
		p := plot.New()
		p.Title.Text = pn.title
		if i == 0 {
			p.Title.Text = title + " — " + pn.title
		}
		p.X.Label.Text = "minutes"
		p.Y.Label.Text = pn.unit
		p.Y.Min = 0
		p.Legend.Top = true
		for k, sr := range pn.lines {
			tl := sr.run.Timeline
			xy := make(plotter.XYs, len(tl))
			for j, s := range tl {
				xy[j].X = s.T.Minutes()
				xy[j].Y = sr.y(s)
			}
			l, err := plotter.NewLine(xy)
			if err != nil {
				return fmt.Errorf("simulate/plot: %w", err)
			}
			l.Color = palette[k%len(palette)]
			l.Width = vg.Points(1)
			p.Add(l)
			p.Legend.Add(sr.name, l)
		}
		plots[i] = []*plot.Plot{p}
	}
	c := vgsvg.New(width, height)
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadX: vg.Millimeter, PadY: 3 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 2 * vg.Millimeter}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	if _, err := c.WriteTo(w); err != nil {
		return fmt.Errorf("simulate/plot: %w", err)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
