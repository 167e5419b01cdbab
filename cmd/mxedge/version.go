package main

import (
	"runtime/debug"
	"strings"
)

// version is the module version and VCS revision of this build, from the
// build information Go embeds; see versionOf.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	return versionOf(bi)
}

// versionOf says "v1.2.3 go1.26.0" for a tagged module; for a build from
// a checkout, the revision and commit time: "(devel) 1a2b3c4d5e6f
// 2026-12-02T05:13:08Z" (with "+dirty" from a modified checkout), or the
// pseudo-version Go 1.24 and later derive from them alone
// ("v0.0.0-20261202051308-1a2b3c4d5e6f", which already names both).
func versionOf(bi *debug.BuildInfo) string {
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
	if short := rev[:min(12, len(rev))]; rev != "" && !strings.Contains(bi.Main.Version, short) {
		v = append(v, short+dirty, at)
	}
	return strings.TrimSpace(strings.Join(v, " ")) + " " + bi.GoVersion
}
