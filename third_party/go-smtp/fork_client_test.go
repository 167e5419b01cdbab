package smtp

import "testing"

// FORK.md section 16: BODY= as MailOptions.Body says.
func TestForkClientBody(t *testing.T) {
	for _, tc := range []struct {
		name string
		ext  []string
		body BodyType
		want string // "" : an error
	}{
		{"upstream rule", []string{"8BITMIME"}, "", "MAIL FROM:<a@b.example> BODY=8BITMIME"},
		{"7bit declared", []string{"8BITMIME"}, Body7Bit, "MAIL FROM:<a@b.example> BODY=7BIT"},
		{"8bit declared", []string{"8BITMIME"}, Body8BitMIME, "MAIL FROM:<a@b.example> BODY=8BITMIME"},
		{"server without 8BITMIME", nil, Body7Bit, "MAIL FROM:<a@b.example>"},
		{"binarymime", []string{"8BITMIME", "BINARYMIME", "CHUNKING"}, BodyBinaryMIME, "MAIL FROM:<a@b.example> BODY=BINARYMIME"},
		{"binarymime unsupported", []string{"8BITMIME"}, BodyBinaryMIME, ""},
	} {
		c := &Client{ext: map[string]string{}}
		for _, e := range tc.ext {
			c.ext[e] = ""
		}
		got, err := c.mailCommand("a@b.example", &MailOptions{Body: tc.body})
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: %q, want an error", tc.name, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}
