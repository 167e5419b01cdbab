package smtp_test

import "github.com/emersion/go-smtp"

// benchConfigure sets what mxedge sets (smtpd/server.go).
func benchConfigure(s *smtp.Server) { s.MaxCommandLineLength = 2048 }
