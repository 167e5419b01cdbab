package main

import (
	"runtime/debug"
	"strings"
)

// version is the module version and VCS revision of this build, from the
// build information Go embeds: "v1.2.3" for a tagged module, else
// "(devel) 1a2b3c4d5e6f 2026-12-02T05:13:08Z" with "+dirty" for a build
// from a modified checkout; "unknown" without build information.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := []string{bi.Main.Version}
	var rev, at, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev != "" {
		v = append(v, rev[:min(12, len(rev))]+dirty, at)
	}
	return strings.TrimSpace(strings.Join(v, " ")) + " " + bi.GoVersion
}
