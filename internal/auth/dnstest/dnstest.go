// Package dnstest is a stub DNS server for tests: it answers A, AAAA, MX
// and TXT questions over UDP on 127.0.0.1 from maps the test fills, so
// SPF, DKIM and DMARC run against real DNS packets without the network.
// It is written with the standard library only (RFC 1035 wire format,
// section 4.1): no DNS dependency for a test helper.
package dnstest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/emersion/go-msgauth/dkim"
)

// DNS record types and response codes used here (RFC 1035 3.2.2, 4.1.1).
const (
	typeA    = 1
	typeMX   = 15
	typeTXT  = 16
	typeAAAA = 28

	rcodeServFail = 2
	rcodeNXDomain = 3
)

// Server is a running stub. Its maps may be changed while it runs.
type Server struct {
	Addr string // host:port to give a resolver

	mu   sync.Mutex
	txt  map[string][]string
	ip   map[string][]netip.Addr
	mx   map[string][]string
	fail map[string]bool // answer SERVFAIL
	drop map[string]bool // never answer: the client times out

	conn    net.PacketConn
	queries atomic.Int64
	done    chan struct{}
}

// Start listens on 127.0.0.1 on a free port; the server stops with the
// test's Cleanup when stop is given, or on Close.
func Start() (*Server, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: c.LocalAddr().String(), conn: c, done: make(chan struct{}),
		txt: map[string][]string{}, ip: map[string][]netip.Addr{}, mx: map[string][]string{},
		fail: map[string]bool{}, drop: map[string]bool{}}
	go s.serve()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() {
	s.conn.Close()
	<-s.done
}

func norm(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// TXT sets the TXT records of name.
func (s *Server) TXT(name string, vals ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.txt[norm(name)] = vals
}

// IP sets the A/AAAA records of name.
func (s *Server) IP(name string, addrs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range addrs {
		s.ip[norm(name)] = append(s.ip[norm(name)], netip.MustParseAddr(a))
	}
}

// MX sets the MX hosts of name.
func (s *Server) MX(name string, hosts ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mx[norm(name)] = hosts
}

// Fail makes every question about name answer SERVFAIL.
func (s *Server) Fail(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[norm(name)] = true
}

// Drop makes every question about name go unanswered.
func (s *Server) Drop(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop[norm(name)] = true
}

// Queries is how many questions the server has received.
func (s *Server) Queries() int64 { return s.queries.Load() }

func (s *Server) serve() {
	defer close(s.done)
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		s.queries.Add(1)
		resp, err := s.answer(buf[:n])
		if err != nil || resp == nil {
			continue
		}
		_, _ = s.conn.WriteTo(resp, from)
	}
}

// answer builds the reply to one query; nil means no reply.
func (s *Server) answer(q []byte) ([]byte, error) {
	if len(q) < 12 {
		return nil, errors.New("short query")
	}
	if binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil, errors.New("want exactly one question")
	}
	name, off, err := readName(q, 12)
	if err != nil || off+4 > len(q) {
		return nil, errors.New("bad question")
	}
	qtype := binary.BigEndian.Uint16(q[off : off+2])
	question := q[12 : off+4]
	key := norm(name)

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drop[key] {
		return nil, nil
	}
	rcode := 0
	var answers [][]byte
	known := false
	switch {
	case s.fail[key]:
		rcode = rcodeServFail
	default:
		if v, ok := s.txt[key]; ok {
			known = true
			if qtype == typeTXT {
				for _, t := range v {
					answers = append(answers, rr(typeTXT, txtData(t)))
				}
			}
		}
		if v, ok := s.ip[key]; ok {
			known = true
			for _, a := range v {
				if a.Is4() && qtype == typeA {
					b := a.As4()
					answers = append(answers, rr(typeA, b[:]))
				}
				if a.Is6() && !a.Is4In6() && qtype == typeAAAA {
					b := a.As16()
					answers = append(answers, rr(typeAAAA, b[:]))
				}
			}
		}
		if v, ok := s.mx[key]; ok {
			known = true
			if qtype == typeMX {
				for i, h := range v {
					d := binary.BigEndian.AppendUint16(nil, uint16(10*(i+1)))
					answers = append(answers, rr(typeMX, append(d, encodeName(h)...)))
				}
			}
		}
		if !known {
			rcode = rcodeNXDomain
		}
	}
	out := make([]byte, 12, 512)
	copy(out[0:2], q[0:2])                                                          // id
	binary.BigEndian.PutUint16(out[2:4], 0x8000|0x0400|0x0100|0x0080|uint16(rcode)) // QR AA RD RA
	binary.BigEndian.PutUint16(out[4:6], 1)
	binary.BigEndian.PutUint16(out[6:8], uint16(len(answers)))
	out = append(out, question...)
	for _, a := range answers {
		out = append(out, a...)
	}
	return out, nil
}

// rr is one answer record whose owner is the question's name (a pointer to
// offset 12), class IN, TTL 60.
func rr(typ uint16, data []byte) []byte {
	b := []byte{0xC0, 12}
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint16(b, 1)
	b = binary.BigEndian.AppendUint32(b, 60)
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

// txtData splits a TXT value into character-strings of at most 255 bytes
// (a DKIM key is longer than one).
func txtData(t string) []byte {
	var b []byte
	for {
		n := min(len(t), 255)
		b = append(b, byte(n))
		b = append(b, t[:n]...)
		t = t[n:]
		if t == "" {
			return b
		}
	}
}

func encodeName(name string) []byte {
	var b []byte
	for _, l := range strings.Split(norm(name), ".") {
		if l == "" {
			continue
		}
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0)
}

// readName reads an uncompressed name (a question never needs pointers).
func readName(b []byte, off int) (string, int, error) {
	var labels []string
	for {
		if off >= len(b) {
			return "", 0, errors.New("name runs past the packet")
		}
		n := int(b[off])
		off++
		if n == 0 {
			return strings.Join(labels, "."), off, nil
		}
		if n&0xC0 != 0 || off+n > len(b) {
			return "", 0, errors.New("bad label")
		}
		labels = append(labels, string(b[off:off+n]))
		off += n
	}
}

// Signer signs test mail with DKIM for one domain: a fresh Ed25519 key
// (RFC 8463), published by Publish.
type Signer struct {
	Domain, Selector string
	key              ed25519.PrivateKey
}

// NewSigner makes a key for domain.
func NewSigner(domain, selector string) *Signer {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return &Signer{Domain: domain, Selector: selector, key: k}
}

// Publish puts the public key where a verifier looks for it.
func (sg *Signer) Publish(s *Server) {
	pub := sg.key.Public().(ed25519.PublicKey)
	s.TXT(sg.Selector+"._domainkey."+sg.Domain, "v=DKIM1; k=ed25519; p="+base64.StdEncoding.EncodeToString(pub))
}

// Sign returns raw with a DKIM-Signature header added.
func (sg *Signer) Sign(raw []byte) []byte {
	var b bytes.Buffer
	err := dkim.Sign(&b, bytes.NewReader(raw), &dkim.SignOptions{Domain: sg.Domain, Selector: sg.Selector, Signer: sg.key,
		HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID"}})
	if err != nil {
		panic(err)
	}
	return b.Bytes()
}
