// Package plot draws a simulation's timelines as SVG: one run's ([Timeline]) or
// several policies' runs of one scenario side by side ([Comparison]).
//
// It is a package of its own so that a program that only runs simulations
// (simulate.Run, simulate.Compare) does not link gonum's plotting library.
//
// # Example
//
//	res, err := simulate.Run(ctx, cfg)
//	if err != nil { ... }
//	f, _ := os.Create("run.svg")
//	defer f.Close()
//	if err := plot.Timeline(f, res); err != nil { ... }
package plot
