package meshbench

import (
	"fmt"
	"image/color"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// WritePlots writes the report's PNGs into dir: scaling-p90.png (added p90
// vs rate, sidemix vs nginx), scaling-cpu.png (proxy CPU per 1,000
// requests vs rate) and latency.png (each path's quantiles).
func (r *Report) WritePlots(dir string) error {
	if len(r.Scaling) > 0 {
		added := func(s Run) (float64, bool) {
			base, ok := r.scalingDirect(s.QPS)
			return s.P90Ms - base.P90Ms, ok
		}
		if err := r.scalingPlot(filepath.Join(dir, "scaling-p90.png"), "Added p90 latency vs direct", "added p90 (ms)", added); err != nil {
			return err
		}
		cpu := func(s Run) (float64, bool) { return s.ProxyCPUPer1k, true }
		if err := r.scalingPlot(filepath.Join(dir, "scaling-cpu.png"), "Proxy CPU per 1,000 requests", "CPU seconds per 1,000 requests (vCPU per 1,000 rps)", cpu); err != nil {
			return err
		}
	}
	if len(r.Median) > 0 {
		return r.latencyPlot(filepath.Join(dir, "latency.png"))
	}
	return nil
}

func (r *Report) scalingPlot(file, title, ylabel string, y func(Run) (float64, bool)) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "offered requests/s"
	p.Y.Label.Text = ylabel
	p.Add(plotter.NewGrid())
	for i, name := range ScalingPaths[1:] {
		var pts plotter.XYs
		for _, s := range r.Scaling {
			if s.Path != name {
				continue
			}
			if v, ok := y(s); ok {
				pts = append(pts, plotter.XY{X: s.QPS, Y: v})
			}
		}
		if len(pts) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		line.Color = plotutil.Color(i)
		points.Color = plotutil.Color(i)
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		p.Legend.Add(name, line, points)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	return p.Save(16*vg.Centimeter, 10*vg.Centimeter, file)
}

func (r *Report) latencyPlot(file string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Latency at %d requests/s (median of %d rounds)", r.Meta.QPS, r.Meta.Rounds)
	p.Y.Label.Text = "ms"
	var names []string
	for _, n := range allPaths {
		if _, ok := r.Median[n]; ok {
			names = append(names, n)
		}
	}
	qs := []struct {
		label string
		get   func(Run) float64
	}{
		{"p50", func(x Run) float64 { return x.P50Ms }},
		{"p90", func(x Run) float64 { return x.P90Ms }},
		{"p99", func(x Run) float64 { return x.P99Ms }},
	}
	w := vg.Points(14)
	for i, q := range qs {
		vals := make(plotter.Values, len(names))
		for j, n := range names {
			vals[j] = q.get(r.Median[n])
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(i)
		bars.Offset = vg.Length(i-1) * w
		p.Add(bars)
		p.Legend.Add(q.label, bars)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.NominalX(names...)
	p.Add(plotter.NewGrid())
	p.BackgroundColor = color.White
	return p.Save(18*vg.Centimeter, 10*vg.Centimeter, file)
}
