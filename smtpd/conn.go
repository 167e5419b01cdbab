package smtpd

import (
	"net"
	"sync/atomic"
	"time"
)

// dataConn wraps each accepted connection so that, during DATA, every read
// from the socket first pushes the read deadline out by the data block
// timeout. go-smtp sets its ReadTimeout once per command, which would bound
// the whole DATA phase: a slow but live sender of a large message would be
// cut off. RFC 5321 section 4.5.3.2.6 asks for a timeout per data block
// (3 minutes) instead; an idle sender is still cut off after that long.
type dataConn struct {
	net.Conn
	dataTimeout time.Duration
	inData      atomic.Bool
}

func (c *dataConn) Read(p []byte) (int, error) {
	if c.inData.Load() {
		if err := c.Conn.SetReadDeadline(time.Now().Add(c.dataTimeout)); err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

// dataListener wraps accepted connections in dataConn.
type dataListener struct {
	net.Listener
	dataTimeout time.Duration
}

func (l dataListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &dataConn{Conn: c, dataTimeout: l.dataTimeout}, nil
}

// findDataConn digs our wrapper out of what go-smtp reports as the
// connection (a *tls.Conn after STARTTLS wraps it).
func findDataConn(c net.Conn) *dataConn {
	for c != nil {
		switch v := c.(type) {
		case *dataConn:
			return v
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}
