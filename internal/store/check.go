package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"time"
)

// The bbolt file format (go.etcd.io/bbolt v1.5, internal/common): two meta
// pages, then a B+tree of branch and leaf pages, all native-endian. These
// constants mirror that package's, which is internal to bbolt.
const (
	boltMagic         = 0xED0CDAED
	boltVersion       = 2
	pageHeaderSize    = 16 // id u64, flags u16, count u16, overflow u32
	elementSize       = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	bucketHeaderSize  = 16 // root pgid u64, sequence u64
	metaChecksumStart = 56 // magic..txid; the FNV-64a checksum follows
	branchPageFlag    = 0x01
	leafPageFlag      = 0x02
	bucketLeafFlag    = 0x01
	noFreelist        = ^uint64(0)
	maxTreeDepth      = 64
)

var ne = binary.NativeEndian

// DamagedError is a state file that must not be opened as it is: bbolt
// would panic on it (a Go crash with exit status 2) or silently start
// empty. Its message says what to do.
type DamagedError struct {
	Path    string
	Problem string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("state %s is damaged: %s.\n"+
		"  Nothing was changed. Keep this file for diagnosis, then either\n"+
		"  - restore the latest backup (the output of the admin API's GET /admin/backup, see docs/operations.md \"Backup and restore\") to %s, or\n"+
		"  - start with an empty state: psagate serve -config FILE -fresh-state moves this file aside to %s.damaged-<time>\n"+
		"    (open incidents are then forgotten: close their tickets by hand)",
		e.Path, e.Problem, e.Path, e.Path)
}

// ErrDamaged matches every *DamagedError with errors.Is.
var ErrDamaged = errors.New("state file damaged")

// Is makes errors.Is(err, ErrDamaged) true.
func (e *DamagedError) Is(target error) bool { return target == ErrDamaged }

// Check validates the state file at path without opening it with bbolt:
// the file is not empty, a meta page is valid (magic, version, checksum),
// the file holds every page the meta page counts, and every page of the
// tree of buckets is within the file and well formed (page ids, element
// counts and offsets). bbolt trusts all of these and panics, or faults on
// memory outside its map, when one is wrong, so Open runs Check first. A
// missing file is fine (Open creates it). It does not look at the values:
// a damaged record is found and set aside where it is read.
//
// Check waits up to lockTimeout for a process writing the file (a running
// psagate) and returns ErrLocked if it is still there: a file in the middle
// of a write cannot be judged.
func Check(path string, lockTimeout time.Duration) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state %s: %w", path, err)
	}
	defer f.Close()
	unlock, err := lockShared(f, lockTimeout)
	if err != nil {
		return fmt.Errorf("state %s: %w", path, err)
	}
	defer unlock()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("state %s: %w", path, err)
	}
	c := &checker{f: f, size: fi.Size()}
	if problem := c.run(); problem != "" {
		return &DamagedError{Path: path, Problem: problem}
	}
	return nil
}

type meta struct {
	pageSize     uint32
	root         uint64
	freelist     uint64
	pgid, txid   uint64
	checksumGood bool
}

type checker struct {
	f        io.ReaderAt
	size     int64
	pageSize int64
	pgid     uint64 // high water mark: pages 0 .. pgid-1 exist
	seen     map[uint64]bool
}

func (c *checker) run() string {
	if c.size == 0 {
		return "the file is empty (0 bytes), but an existing state file always holds at least its header (a failed copy or restore, or a full disk?)"
	}
	m, problem := c.meta()
	if problem != "" {
		return problem
	}
	c.pageSize, c.pgid = int64(m.pageSize), m.pgid
	if need := int64(m.pgid) * c.pageSize; c.size < need {
		return fmt.Sprintf("the file is truncated: %d bytes, but its header counts %d pages of %d bytes (%d bytes)", c.size, m.pgid, m.pageSize, need)
	}
	if m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.pgid) {
		return fmt.Sprintf("the free list is at page %d, outside the file's %d pages", m.freelist, m.pgid)
	}
	c.seen = map[uint64]bool{}
	_, problem = c.tree(m.root, 0, "root", nil, nil)
	return problem
}

// meta returns the meta page bbolt would use: the valid one with the
// higher transaction id.
func (c *checker) meta() (meta, string) {
	var hdr [pageHeaderSize + 64]byte
	if _, err := c.f.ReadAt(hdr[:], 0); err != nil {
		return meta{}, fmt.Sprintf("the file is too short for a header (%d bytes)", c.size)
	}
	m0 := parseMeta(hdr[pageHeaderSize:])
	var best meta
	found := false
	if m0.checksumGood {
		best, found = m0, true
	}
	// Where the second meta page is depends on the page size, which the
	// first one records; if that one is damaged, try the usual sizes.
	sizes := []uint32{4096, 8192, 16384, 32768, 65536, uint32(os.Getpagesize())}
	if m0.checksumGood {
		sizes = []uint32{m0.pageSize}
	}
	for _, ps := range sizes {
		if _, err := c.f.ReadAt(hdr[:], int64(ps)); err != nil {
			continue
		}
		m1 := parseMeta(hdr[pageHeaderSize:])
		if m1.checksumGood && m1.pageSize == ps && (!found || m1.txid > best.txid) {
			best, found = m1, true
			break
		}
	}
	if !found {
		return meta{}, "neither of its two header (meta) pages is valid: wrong magic number, version or checksum"
	}
	if best.pageSize < 1024 || best.pageSize > 1<<20 || best.pageSize&(best.pageSize-1) != 0 {
		return meta{}, fmt.Sprintf("its header gives an impossible page size %d", best.pageSize)
	}
	return best, ""
}

func parseMeta(b []byte) meta {
	if len(b) < metaChecksumStart+8 {
		return meta{}
	}
	h := fnv.New64a()
	h.Write(b[:metaChecksumStart])
	return meta{
		pageSize: ne.Uint32(b[8:]),
		root:     ne.Uint64(b[16:]),
		freelist: ne.Uint64(b[32:]),
		pgid:     ne.Uint64(b[40:]),
		txid:     ne.Uint64(b[48:]),
		checksumGood: ne.Uint32(b[0:]) == boltMagic && ne.Uint32(b[4:]) == boltVersion &&
			ne.Uint64(b[metaChecksumStart:]) == h.Sum64(),
	}
}

// tree checks the page pgid and everything below it, as bbolt's own
// consistency check (tx_check.go) would, whose first complaint at open
// time is a panic: page ids within the file and used once, page types,
// element bounds, and keys in order within each page and within the
// range [minKey, maxKey) its parent gives it. It returns the largest key
// of the subtree.
func (c *checker) tree(pgid uint64, depth int, where string, minKey, maxKey []byte) ([]byte, string) {
	if depth > maxTreeDepth {
		return nil, fmt.Sprintf("%s: the tree is deeper than %d levels (a loop?)", where, maxTreeDepth)
	}
	if pgid < 2 || pgid >= c.pgid {
		return nil, fmt.Sprintf("%s: page %d is outside the file's %d pages", where, pgid, c.pgid)
	}
	var hdr [pageHeaderSize]byte
	if _, err := c.f.ReadAt(hdr[:], int64(pgid)*c.pageSize); err != nil {
		return nil, fmt.Sprintf("%s: page %d cannot be read: %v", where, pgid, err)
	}
	if id := ne.Uint64(hdr[:]); id != pgid {
		return nil, fmt.Sprintf("%s: page %d says it is page %d", where, pgid, id)
	}
	overflow := uint64(ne.Uint32(hdr[12:]))
	if pgid+overflow >= c.pgid || pgid+overflow < pgid {
		return nil, fmt.Sprintf("%s: page %d runs %d pages past the end of the file", where, pgid, overflow)
	}
	for i := uint64(0); i <= overflow; i++ {
		if c.seen[pgid+i] {
			return nil, fmt.Sprintf("%s: page %d is used twice", where, pgid+i)
		}
		c.seen[pgid+i] = true
	}
	buf := make([]byte, int64(overflow+1)*c.pageSize)
	if _, err := c.f.ReadAt(buf, int64(pgid)*c.pageSize); err != nil {
		return nil, fmt.Sprintf("%s: page %d cannot be read: %v", where, pgid, err)
	}
	where = fmt.Sprintf("%s: page %d", where, pgid)
	elems, problem := elements(buf, where)
	if problem != "" {
		return nil, problem
	}
	branch := ne.Uint16(buf[8:]) == branchPageFlag
	running := minKey
	var last []byte
	for i, e := range elems {
		switch {
		case i == 0 && running != nil && bytes.Compare(running, e.key) > 0,
			i > 0 && bytes.Compare(running, e.key) >= 0,
			maxKey != nil && bytes.Compare(e.key, maxKey) >= 0:
			return nil, fmt.Sprintf("%s: key %d is out of order", where, i)
		}
		if !branch {
			running, last = e.key, e.key
			if p := c.bucket(e, depth, where); p != "" {
				return nil, p
			}
			continue
		}
		next := maxKey
		if i+1 < len(elems) {
			next = elems[i+1].key
		}
		sub, p := c.tree(e.child, depth+1, where, e.key, next)
		if p != "" {
			return nil, p
		}
		running, last = sub, sub
	}
	return last, ""
}

// bucket checks the nested bucket a leaf element holds, if it is one.
func (c *checker) bucket(e element, depth int, where string) string {
	if !e.bucket {
		return ""
	}
	name := fmt.Sprintf("%s bucket %q", where, e.key)
	if len(e.value) < bucketHeaderSize {
		return name + ": bucket header too short"
	}
	if root := ne.Uint64(e.value); root != 0 {
		_, p := c.tree(root, depth+1, name, nil, nil)
		return p
	}
	// An inline bucket: a small leaf page inside the value.
	elems, p := elements(e.value[bucketHeaderSize:], name+" (inline)")
	if p != "" {
		return p
	}
	if ne.Uint16(e.value[bucketHeaderSize+8:]) != leafPageFlag {
		return name + " (inline): not a leaf page"
	}
	for _, ie := range elems {
		if p := c.bucket(ie, depth+1, name); p != "" {
			return p
		}
	}
	return ""
}

type element struct {
	key, value []byte
	child      uint64 // branch elements
	bucket     bool   // leaf elements holding a nested bucket
}

// elements decodes the elements of a branch or leaf page held in buf,
// checking that each lies inside it.
func elements(buf []byte, where string) ([]element, string) {
	if len(buf) < pageHeaderSize {
		return nil, where + ": shorter than a page header"
	}
	flags, count := ne.Uint16(buf[8:]), int(ne.Uint16(buf[10:]))
	if flags != branchPageFlag && flags != leafPageFlag {
		return nil, fmt.Sprintf("%s: neither a branch nor a leaf page (flags %#x)", where, flags)
	}
	if flags == branchPageFlag && count == 0 {
		return nil, where + ": a branch page without elements"
	}
	if pageHeaderSize+count*elementSize > len(buf) {
		return nil, fmt.Sprintf("%s: %d elements do not fit in %d bytes", where, count, len(buf))
	}
	out := make([]element, count)
	for i := range count {
		at := pageHeaderSize + i*elementSize
		e := buf[at:]
		if flags == branchPageFlag {
			pos, ksize := uint64(ne.Uint32(e)), uint64(ne.Uint32(e[4:]))
			if uint64(at)+pos+ksize > uint64(len(buf)) {
				return nil, fmt.Sprintf("%s: element %d's key lies outside the page", where, i)
			}
			k := uint64(at) + pos
			out[i] = element{key: buf[k : k+ksize], child: ne.Uint64(e[8:])}
			continue
		}
		pos, ksize, vsize := uint64(ne.Uint32(e[4:])), uint64(ne.Uint32(e[8:])), uint64(ne.Uint32(e[12:]))
		if uint64(at)+pos+ksize+vsize > uint64(len(buf)) {
			return nil, fmt.Sprintf("%s: element %d's key or value lies outside the page", where, i)
		}
		k := uint64(at) + pos
		out[i] = element{key: buf[k : k+ksize], value: buf[k+ksize : k+ksize+vsize], bucket: ne.Uint32(e)&bucketLeafFlag != 0}
	}
	return out, ""
}

// SetAside renames a damaged state file to path.damaged-<time> so a fresh
// one can be created, and returns the new name. The file is kept, never
// deleted: an admin may still recover records from it.
func SetAside(path string, now time.Time) (string, error) {
	to := fmt.Sprintf("%s.damaged-%s", path, now.UTC().Format("20060102T150405Z"))
	if err := os.Rename(path, to); err != nil {
		return "", fmt.Errorf("state %s: set the damaged file aside: %w", path, err)
	}
	return to, nil
}
