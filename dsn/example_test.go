package dsn_test

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/mxedge/mxedge/dsn"
)

func ExampleWrite() {
	arrival := time.Date(2024, 1, 2, 10, 0, 0, 0, time.UTC)
	r := &dsn.Report{
		ReportingMTA: "mx1.example.net",
		From:         "MAILER-DAEMON@mx1.example.net",
		To:           "alice@example.org",
		QueueID:      "01HQ3K5V7W9X2Y4Z",
		ArrivalDate:  arrival,
		Date:         arrival.Add(time.Minute),
		Recipients: []dsn.Recipient{{
			FinalRecipient: "bob@example.com",
			Action:         dsn.Failed,
			Status:         "5.1.1",
			RemoteMTA:      "mail.example.com",
			DiagnosticCode: "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown",
			LastAttempt:    arrival.Add(time.Minute),
		}},
		Original: strings.NewReader("From: alice@example.org\r\nTo: bob@example.com\r\nSubject: Lunch?\r\n\r\nTomorrow at noon?\r\n"),
	}
	var b bytes.Buffer
	if err := dsn.Write(&b, r); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(strings.ReplaceAll(b.String(), "\r\n", "\n"))
	// Output:
	// From: Mail Delivery System <MAILER-DAEMON@mx1.example.net>
	// To: alice@example.org
	// Subject: Undelivered Mail Returned to Sender
	// Date: Tue, 02 Jan 2024 10:01:00 +0000
	// Message-ID: <01HQ3K5V7W9X2Y4Z.20240102100100.000000.failed@mx1.example.net>
	// MIME-Version: 1.0
	// Auto-Submitted: auto-replied
	// Content-Type: multipart/report; report-type=delivery-status;
	//  boundary="=_mxedge_01HQ3K5V7W9X2Y4Z_0_="
	// Content-Transfer-Encoding: 7bit
	//
	// This is a MIME-encapsulated message.
	//
	// --=_mxedge_01HQ3K5V7W9X2Y4Z_0_=
	// Content-Description: Notification
	// Content-Type: text/plain; charset=us-ascii
	// Content-Transfer-Encoding: 7bit
	//
	// This is the mail system at host mx1.example.net.
	//
	// I'm sorry to have to inform you that your message could not be delivered
	// to one or more recipients. Its header section is attached below.
	//
	// For further assistance, please send mail to postmaster. If you do so,
	// please include this problem report (your message had the queue ID
	// 01HQ3K5V7W9X2Y4Z at this host).
	//
	//                    The mail system
	//
	// <bob@example.com>: 550 5.1.1 <bob@example.com>: Recipient address
	//     rejected: User unknown
	//
	// --=_mxedge_01HQ3K5V7W9X2Y4Z_0_=
	// Content-Description: Delivery report
	// Content-Type: message/delivery-status
	// Content-Transfer-Encoding: 7bit
	//
	// Reporting-MTA: dns; mx1.example.net
	// X-Mxedge-Queue-ID: 01HQ3K5V7W9X2Y4Z
	// Arrival-Date: Tue, 02 Jan 2024 10:00:00 +0000
	//
	// Final-Recipient: rfc822; bob@example.com
	// Action: failed
	// Status: 5.1.1
	// Remote-MTA: dns; mail.example.com
	// Diagnostic-Code: smtp; 550 5.1.1 <bob@example.com>: Recipient address
	//  rejected: User unknown
	// Last-Attempt-Date: Tue, 02 Jan 2024 10:01:00 +0000
	//
	// --=_mxedge_01HQ3K5V7W9X2Y4Z_0_=
	// Content-Description: Undelivered Message Headers
	// Content-Type: text/rfc822-headers
	// Content-Transfer-Encoding: 7bit
	//
	// From: alice@example.org
	// To: bob@example.com
	// Subject: Lunch?
	//
	// --=_mxedge_01HQ3K5V7W9X2Y4Z_0_=--
}
