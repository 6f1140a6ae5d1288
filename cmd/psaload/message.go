package main

import (
	"math/rand/v2"
	"sort"
	"strconv"
	"time"
)

// Kinds of generated message, in the order they appear in the report.
const (
	kindFailure  = iota // first failure of a device: opens a ticket
	kindRepeat          // the same failure again: a note on that ticket
	kindRecovery        // "Successful Backup" of a failed device: closes it
	kindNoise           // a recovery for a device with nothing open: a no-op close
	nKinds
)

var kindNames = [nKinds]string{"failure", "repeat", "recovery", "noise"}

// cycle is what happens to each failing device, in order: it fails, fails
// twice more (notes), then recovers (close).
var cycle = [...]int{kindFailure, kindRepeat, kindRepeat, kindRecovery}

const (
	devicesWrap = 10000 // device numbers are four digits, as PVC-LOAD-NNNN
	envFrom     = "bdr-load@pinecrest-vet.example"
)

// generator builds one client's messages into a buffer it reuses: the hot
// path makes no allocation and no fmt call.
type generator struct {
	client, clients int
	noise           float64
	size            int
	runID           string
	rcpt            string
	pad             *padding
	rng             *rand.Rand

	seq    uint64 // every message of this client
	real   uint64 // non-noise messages: position in the device cycle
	noiseN uint64

	buf     []byte
	date    []byte
	dateSec int64
}

func newGenerator(client, clients int, noise float64, size int, runID, rcpt string, pad *padding, seed uint64) *generator {
	return &generator{
		client: client, clients: clients, noise: noise, size: size, runID: runID, rcpt: rcpt, pad: pad,
		rng: rand.New(rand.NewPCG(seed, uint64(client)+1)),
		buf: make([]byte, 0, size+2048),
	}
}

// next returns the next message, already dot-safe and ended by the
// "\r\n.\r\n" that closes DATA. The slice is valid until the next call.
func (g *generator) next(now time.Time) (int, []byte) {
	g.seq++
	kind := kindNoise
	var dev uint64
	if g.noise > 0 && g.rng.Float64() < g.noise {
		dev = (g.noiseN*uint64(g.clients) + uint64(g.client)) % devicesWrap
		g.noiseN++
	} else {
		kind = cycle[g.real%uint64(len(cycle))]
		// Devices are interleaved between clients so each is owned by one
		// client, and its failure, notes and recovery arrive in order.
		dev = ((g.real/uint64(len(cycle)))*uint64(g.clients) + uint64(g.client)) % devicesWrap
		g.real++
	}
	if s := now.Unix(); s != g.dateSec || g.date == nil {
		g.dateSec = s
		g.date = now.AppendFormat(g.date[:0], time.RFC1123Z)
	}

	var name [16]byte
	var device []byte
	if kind == kindNoise {
		device = appendDevice(append(name[:0], "PVC-WS-"...), dev)
	} else {
		device = appendDevice(append(name[:0], "PVC-LOAD-"...), dev)
	}
	restored := kind == kindNoise && g.noiseN%2 == 0

	b := g.buf[:0]
	b = append(b, "From: PVC-BDR-LOAD backup appliance <"+envFrom+">\r\nTo: "...)
	b = append(b, g.rcpt...)
	b = append(b, "\r\nSubject: [PVC-BDR-LOAD] "...)
	switch {
	case restored:
		b = append(b, "Agent "...)
		b = append(b, device...)
		b = append(b, " connection restored"...)
	case kind == kindNoise || kind == kindRecovery:
		b = append(b, "Successful Backup: "...)
		b = append(b, device...)
	default:
		b = append(b, "Failed Backup: "...)
		b = append(b, device...)
	}
	b = append(b, "\r\nDate: "...)
	b = append(b, g.date...)
	b = append(b, "\r\nMessage-ID: <psaload."...)
	b = append(b, g.runID...)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(g.client), 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, g.seq, 10)
	b = append(b, "@psaload.example>\r\n"+
		"MIME-Version: 1.0\r\n"+
		"Content-Type: text/plain; charset=us-ascii\r\n"+
		"Content-Transfer-Encoding: 7bit\r\n"+
		"\r\n"+
		"x360Recover alert from appliance PVC-BDR-LOAD\r\n"+
		"\r\n"+
		"  Client:            Pinecrest Veterinary Clinic (load test)\r\n"+
		"  Protected system:  "...)
	b = append(b, device...)
	switch {
	case restored:
		b = append(b, "\r\n  Alert type:        Agent Status\r\n  Severity:          Info\r\n"...)
	case kind == kindNoise || kind == kindRecovery:
		b = append(b, "\r\n  Alert type:        Successful Backup\r\n  Severity:          Info\r\n"...)
	default:
		b = append(b, "\r\n  Alert type:        Failed Backup\r\n  Severity:          Error\r\n"...)
	}
	b = append(b, "  Job:               Backup #"...)
	b = strconv.AppendUint(b, g.seq, 10)
	b = append(b, " (incremental)\r\n\r\nDetails:\r\n  "...)
	switch {
	case restored:
		b = append(b, device...)
		b = append(b, " checked in again with the appliance.\r\n"...)
	case kind == kindNoise || kind == kindRecovery:
		b = append(b, "The backup of "...)
		b = append(b, device...)
		b = append(b, " finished; the recovery point holds 3.9 GB\r\n  of changes.\r\n"...)
	default:
		b = append(b, "The backup of "...)
		b = append(b, device...)
		b = append(b, " did not complete: the agent could not\r\n"+
			"  read volume E: (the device is not ready, 0x80070015).\r\n"...)
	}
	const tail = "\r\nAppliance console: https://pvc-bdr-load.pinecrest.lan/\r\n" +
		"This message was generated automatically by x360Recover.\r\n" +
		"Replies are not monitored.\r\n" +
		".\r\n"
	if need := g.size - len(b) - len(tail) + len(".\r\n"); need > 0 {
		b = append(b, "\r\nRecent job log:\r\n"...)
		b = append(b, g.pad.cut(need-len("\r\nRecent job log:\r\n"))...)
	}
	b = append(b, tail...)
	g.buf = b
	return kind, b
}

// appendDevice appends n as four digits.
func appendDevice(b []byte, n uint64) []byte {
	return append(b, byte('0'+n/1000%10), byte('0'+n/100%10), byte('0'+n/10%10), byte('0'+n%10))
}

// padding is a block of realistic job-log lines (each under 78 characters,
// none starting with a dot, so no dot-stuffing is ever needed) cut at a line
// end to make a message about -size bytes. It is built once and shared
// read-only by every client.
type padding struct {
	text []byte
	ends []int // offset just past each line's CRLF
}

var padLines = []string{
	"Volume C: VSS snapshot created (writer state: stable), 0 errors",
	"Volume E: change tracking found 1,284 modified blocks",
	"Sending changed blocks to appliance PVC-BDR-LOAD over TLS 1.2",
	"Deduplication ratio for this point: 3.4:1 (compressed 61%)",
	"Agent 2.38.1204 (driver 2.38.0), service uptime 6 d 03:12:44",
	"Retention: keeping 14 daily, 8 weekly and 12 monthly points",
	"Verification of the previous recovery point passed",
	"Replication to the cloud vault is queued behind 2 systems",
	"Warning: volume E: answered slowly (412 ms) during reads",
	"Throughput to the appliance averaged 512 Mbit/s for this job",
	"Catalogue updated; 3 older recovery points merged as planned",
	"Boot check screenshot scheduled for the nightly window",
}

func newPadding(size int) *padding {
	p := &padding{}
	t := time.Date(2025, 2, 11, 13, 0, 0, 0, time.UTC)
	for i := 0; len(p.text) < size+256; i++ {
		p.text = append(p.text, "  "...)
		p.text = t.Add(time.Duration(i)*7*time.Second).AppendFormat(p.text, "15:04:05")
		p.text = append(p.text, "  "...)
		p.text = append(p.text, padLines[i%len(padLines)]...)
		p.text = append(p.text, "\r\n"...)
		p.ends = append(p.ends, len(p.text))
	}
	return p
}

// cut returns whole lines totalling at least n bytes (or all of them).
func (p *padding) cut(n int) []byte {
	if n <= 0 {
		return nil
	}
	i := sort.SearchInts(p.ends, n)
	if i >= len(p.ends) {
		return p.text
	}
	return p.text[:p.ends[i]]
}
