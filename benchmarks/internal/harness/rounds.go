package harness

// ByScenario groups the runs of interleaved rounds by scenario, in the
// order scenarios first appear. runs holds each scenario's measured runs;
// a scenario skipped in every round has none, and skips holds one of its
// skipped runs to report instead.
func ByScenario[M any](rounds [][]M, scenario func(M) string, skipped func(M) bool) (order []string, runs map[string][]M, skips map[string]M) {
	runs = map[string][]M{}
	skips = map[string]M{}
	for _, round := range rounds {
		for _, m := range round {
			name := scenario(m)
			_, measured := runs[name]
			_, skippedBefore := skips[name]
			if !measured && !skippedBefore {
				order = append(order, name)
			}
			if skipped(m) {
				skips[name] = m
				continue
			}
			runs[name] = append(runs[name], m)
		}
	}
	return order, runs, skips
}
