package msgauth

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mxedge/mxedge/internal/domainname"
)

// LoadExemptions reads the DMARC exemption file path: one From domain a
// line, "#" starts a comment. Errors name path:line.
func LoadExemptions(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseExemptions(path, f)
}

// ParseExemptions reads an exemption list from r; name is the file name
// for errors.
func ParseExemptions(name string, r io.Reader) (map[string]bool, error) {
	out := map[string]bool{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.ContainsAny(line, " \t@") {
			return nil, fmt.Errorf("%s:%d: one domain per line, got %q", name, n, line)
		}
		d, err := domainname.Normalize(line, domainname.Options{Hostname: true})
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %q: %v", name, n, line, err)
		}
		out[d] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}
