// Package control is mxedge's admin API: the running daemon serves it on a
// unix socket, <data_dir>/control.sock, and the "mxedge queue ..." commands
// talk to it with Client. It is HTTP/1.1 with JSON bodies, so that it can
// also be used with curl --unix-socket.
//
// # Security
//
// The socket is local only and has no authentication of its own: whoever
// can connect to it administers the queue. Access is decided by file
// permissions alone: the socket is mode 0600, owned by the user mxedge runs
// as (Listen binds it in a private 0700 directory, sets the mode, then
// renames it into place, so there is no moment where it is reachable with
// the umask's mode). Run the commands as that user.
//
// # Endpoints
//
// Errors are {"error": "..."} with 400 for bad input (queue IDs are 16
// characters of Crockford base32: 0-9 and A-Z without I, L, O, U), 404 for
// an unknown message or endpoint, 409 for a conflict (a delivery attempt in
// flight, a message on hold) and 500 otherwise.
//
//	GET    /queue?sender=&recipient=&domain=&state=  matching messages in arrival order, one Message per line (JSON lines, streamed)
//	GET    /queue/stats                              queue.Stats
//	GET    /queue/backup                             queue.db, consistent (bbolt Tx.WriteTo); trailer X-Backup-Size
//	GET    /runtime                                  {"goroutines": N} (for soak runs)
//	GET    /queue/{id}                               Message, with the header section
//	POST   /queue/{id}/flush                         attempt delivery now (409 if held)
//	POST   /queue/flush?sender=&recipient=&domain=   flush every matching message, all without a filter: {"flushed": N}
//	POST   /queue/{id}/hold                          take off the schedule until released
//	POST   /queue/{id}/release                       back on the schedule, due now
//	POST   /queue/{id}/requeue                       due now as a fresh message: attempts 0, backoff restarts (409 if held or in flight)
//	POST   /queue/{id}/bounce                        return to the sender now (DSN, 5.0.0)
//	DELETE /queue/{id}                               remove without telling the sender
//	GET    /submission/usage/{user}                  a submission user's rate limit counters (submission.Usage)
//
// Per-message actions answer {"id": ID, "result": "flushed"} (held,
// released, requeued, bounced, deleted). Every change is logged at level INFO as
// msg=admin action=... queue_id=... (failures at WARN/ERROR with err=,
// reads at DEBUG). More route groups are added with Server.Handle.
//
// By hand:
//
//	curl --unix-socket /var/lib/mxedge/control.sock http://mxedge/queue/stats
package control
