// Package sdnotify tells systemd about the daemon's state (sd_notify(3):
// READY=1, RELOADING=1, STOPPING=1, STATUS=...), for units of
// Type=notify (or notify-reload). Without $NOTIFY_SOCKET it does nothing.
//
// The protocol is one datagram per message to a unix socket, so it is
// written here in a few lines instead of adding
// github.com/coreos/go-systemd for one function.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notify sends state ("READY=1", "STOPPING=1", ...) to the service
// manager; it returns nil without doing anything when the process was not
// started by systemd with a notify socket.
func Notify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if strings.HasPrefix(path, "@") { // abstract namespace
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}

// Reloading is the message that starts a reload for Type=notify-reload:
// RELOADING=1 with the monotonic clock, as systemd wants it; send
// "READY=1" when the reload is done.
func Reloading() string {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	usec := ts.Sec*int64(time.Second/time.Microsecond) + ts.Nsec/int64(time.Microsecond)
	return fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", usec)
}
