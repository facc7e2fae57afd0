package main

// The gate's locking: which commands may run side by side inside FerretDB, as they would on MongoDB.
//
// FerretDB v1 writes a document by reading it, computing and writing it back, with nothing held between
// the read and the write, so two writes of one document must never run at once. Anything else may:
//
//   - keyed: a write whose every statement names one document by an `_id` equality (findAndModify, and
//     update or delete statements that are not multi) holds a lock on those documents only, so writes of
//     different documents interleave, as on MongoDB;
//   - shared: reads (find, aggregate without $out/$merge, count, distinct, getMore, ...) and inserts hold
//     nothing, and see each document before or after any write of it (SQLite runs each statement on a
//     snapshot, in WAL mode), which MongoDB allows too;
//   - exclusive: every other write (multi-document updates and deletes, index and collection commands,
//     anything the gate cannot parse) runs alone, because FerretDB's read-then-write of each document it
//     touches must not meet a keyed write of the same document. That is stricter than MongoDB, which
//     interleaves other writes between the documents of a multi-document write.
//
// Handshake and liveness commands (hello, ping, ...) hold nothing, so monitoring never queues, and are not
// counted in the stats.
//
// {creditKitGateStats: 1} is answered by the gate itself (it never reaches FerretDB): how many commands of
// each class ran, and the most that ran at once, so tests can see that the gate interleaves.

import (
	"bytes"
	"encoding/binary"
	"math"
	"sort"
	"sync"
	"sync/atomic"
)

type lockClass int

const (
	classNone lockClass = iota // handshakes and liveness: no lock, not counted
	classFree                  // no lock: reads, inserts
	classKeyed
	classExclusive
)

// handshakes lists the driver's connection and monitoring commands: they hold nothing and are not counted,
// so the stats show data commands only.
var handshakes = map[string]bool{
	"hello": true, "isMaster": true, "ismaster": true, "ping": true, "buildInfo": true, "buildinfo": true,
	"getParameter": true, "endSessions": true, "saslStart": true, "saslContinue": true, "getLastError": true,
	"whatsmyuri": true,
}

// reads lists commands that only read collection data (or none): they hold no lock.
var reads = map[string]bool{
	"find": true, "getMore": true, "count": true, "distinct": true, "killCursors": true,
	"listCollections": true, "listIndexes": true, "listDatabases": true, "dbStats": true, "collStats": true,
	"dataSize": true, "explain": true, "serverStatus": true, "hostInfo": true, "connectionStatus": true,
	"getCmdLineOpts": true, "getLog": true, "getFreeMonitoringStatus": true, "insert": true,
}

// locks is the gate's state: one RWMutex that exclusive commands take for writing and keyed ones for
// reading, and a lock per document key for keyed commands.
type locks struct {
	all  sync.RWMutex
	mu   sync.Mutex
	keys map[string]*keyLock

	running, maxRunning             atomic.Int64
	free, keyed, exclusive, waitKey atomic.Int64
}

type keyLock struct {
	sync.Mutex
	users int
}

func newLocks() *locks { return &locks{keys: map[string]*keyLock{}} }

// acquire takes what a command needs and returns the function that releases it.
func (l *locks) acquire(class lockClass, keys []string) func() {
	if class == classNone {
		return func() {}
	}
	var release func()
	switch class {
	case classFree:
		l.free.Add(1)
		release = func() {}
	case classExclusive:
		l.exclusive.Add(1)
		l.all.Lock()
		release = l.all.Unlock
	case classKeyed:
		l.keyed.Add(1)
		l.all.RLock()
		held := make([]*keyLock, 0, len(keys))
		for _, k := range keys { // sorted and unique, so two commands never wait for each other in a cycle
			kl := l.key(k)
			if !kl.TryLock() {
				l.waitKey.Add(1)
				kl.Lock()
			}
			held = append(held, kl)
		}
		release = func() {
			for i := len(held) - 1; i >= 0; i-- {
				held[i].Unlock()
				l.drop(keys[i], held[i])
			}
			l.all.RUnlock()
		}
	}
	n := l.running.Add(1)
	for m := l.maxRunning.Load(); n > m && !l.maxRunning.CompareAndSwap(m, n); m = l.maxRunning.Load() {
	}
	return func() {
		l.running.Add(-1)
		release()
	}
}

func (l *locks) key(k string) *keyLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	kl := l.keys[k]
	if kl == nil {
		kl = &keyLock{}
		l.keys[k] = kl
	}
	kl.users++
	return kl
}

func (l *locks) drop(k string, kl *keyLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if kl.users--; kl.users == 0 {
		delete(l.keys, k)
	}
}

// classify says what a request must hold. Anything it cannot read is exclusive, to be safe.
func classify(msg []byte) (lockClass, []string) {
	if opCode(msg) != opMsg {
		return classExclusive, nil
	}
	body, seqs, ok := sections(msg)
	if !ok {
		return classExclusive, nil
	}
	first, ok := firstElement(body)
	if !ok {
		return classExclusive, nil
	}
	name := first.name
	switch {
	case name == "aggregate":
		if bytes.Contains(msg, []byte("$out")) || bytes.Contains(msg, []byte("$merge")) {
			return classExclusive, nil
		}
		return classFree, nil
	case handshakes[name]:
		return classNone, nil
	case reads[name]:
		return classFree, nil
	}
	coll, ok := first.str()
	if !ok {
		return classExclusive, nil
	}
	var keys []string
	switch name {
	case "findAndModify", "findandmodify":
		k, ok := filterKey(body, "query")
		if !ok {
			return classExclusive, nil
		}
		keys = append(keys, coll+"\x00"+k)
	case "update", "delete":
		field, filter := "updates", "q"
		if name == "delete" {
			field = "deletes"
		}
		stmts, ok := statements(body, seqs, field)
		if !ok || len(stmts) == 0 {
			return classExclusive, nil
		}
		for _, s := range stmts {
			if name == "update" {
				if m, ok := lookup(s, "multi"); ok && m.truthy() {
					return classExclusive, nil
				}
			} else if lim, ok := lookup(s, "limit"); !ok || !lim.isOne() {
				return classExclusive, nil
			}
			k, ok := filterKey(s, filter)
			if !ok {
				return classExclusive, nil
			}
			keys = append(keys, coll+"\x00"+k)
		}
	default:
		return classExclusive, nil
	}
	sort.Strings(keys)
	return classKeyed, uniq(keys)
}

func uniq(sorted []string) []string {
	out := sorted[:0]
	for i, k := range sorted {
		if i == 0 || k != sorted[i-1] {
			out = append(out, k)
		}
	}
	return out
}

// isStatsRequest reports whether the request is {creditKitGateStats: 1}.
func isStatsRequest(msg []byte) bool {
	if opCode(msg) != opMsg {
		return false
	}
	body, _, ok := sections(msg)
	if !ok {
		return false
	}
	first, ok := firstElement(body)
	return ok && first.name == "creditKitGateStats"
}

// statsReply is the OP_MSG answering a stats request.
func (l *locks) statsReply(req []byte) []byte {
	doc := bsonDoc(
		bsonInt64("free", l.free.Load()),
		bsonInt64("keyed", l.keyed.Load()),
		bsonInt64("exclusive", l.exclusive.Load()),
		bsonInt64("keyWaits", l.waitKey.Load()),
		bsonInt64("maxRunning", l.maxRunning.Load()),
		bsonDouble("ok", 1),
	)
	reply := make([]byte, headerLen+4+1+len(doc))
	binary.LittleEndian.PutUint32(reply[0:4], uint32(len(reply)))
	binary.LittleEndian.PutUint32(reply[4:8], 0)                                     // requestID
	binary.LittleEndian.PutUint32(reply[8:12], binary.LittleEndian.Uint32(req[4:8])) // responseTo
	binary.LittleEndian.PutUint32(reply[12:16], opMsg)
	reply[headerLen+4] = 0 // kind 0: body
	copy(reply[headerLen+5:], doc)
	return reply
}

// --- just enough BSON -------------------------------------------------------------------------------

const (
	bsonDouble_   = 0x01
	bsonString    = 0x02
	bsonDocument  = 0x03
	bsonArray     = 0x04
	bsonBinary    = 0x05
	bsonObjectID  = 0x07
	bsonBool      = 0x08
	bsonInt32     = 0x10
	bsonInt64Type = 0x12
)

type element struct {
	typ   byte
	name  string
	value []byte
}

func (e element) str() (string, bool) {
	if e.typ != bsonString || len(e.value) < 5 {
		return "", false
	}
	return string(e.value[4 : len(e.value)-1]), true
}

func (e element) truthy() bool {
	switch e.typ {
	case bsonBool:
		return len(e.value) == 1 && e.value[0] != 0
	case bsonInt32:
		return binary.LittleEndian.Uint32(e.value) != 0
	case bsonInt64Type:
		return binary.LittleEndian.Uint64(e.value) != 0
	case bsonDouble_:
		return math.Float64frombits(binary.LittleEndian.Uint64(e.value)) != 0
	}
	return true
}

func (e element) isOne() bool {
	switch e.typ {
	case bsonInt32:
		return int32(binary.LittleEndian.Uint32(e.value)) == 1
	case bsonInt64Type:
		return int64(binary.LittleEndian.Uint64(e.value)) == 1
	case bsonDouble_:
		return math.Float64frombits(binary.LittleEndian.Uint64(e.value)) == 1
	}
	return false
}

// sections splits an OP_MSG into its body and its document sequences (identifier -> documents).
func sections(msg []byte) ([]byte, map[string][][]byte, bool) {
	end := len(msg)
	if msgFlags(msg)&flagChecksumPres != 0 {
		end -= 4
	}
	var body []byte
	seqs := map[string][][]byte{}
	for p := headerLen + 4; p < end; {
		kind := msg[p]
		p++
		switch kind {
		case 0:
			n, ok := docLen(msg[p:end])
			if !ok {
				return nil, nil, false
			}
			body = msg[p : p+n]
			p += n
		case 1:
			if p+4 > end {
				return nil, nil, false
			}
			size := int(binary.LittleEndian.Uint32(msg[p : p+4]))
			if size < 5 || p+size > end {
				return nil, nil, false
			}
			sec := msg[p+4 : p+size]
			p += size
			z := bytes.IndexByte(sec, 0)
			if z < 0 {
				return nil, nil, false
			}
			id := string(sec[:z])
			for rest := sec[z+1:]; len(rest) > 0; {
				n, ok := docLen(rest)
				if !ok {
					return nil, nil, false
				}
				seqs[id] = append(seqs[id], rest[:n])
				rest = rest[n:]
			}
		default:
			return nil, nil, false
		}
	}
	return body, seqs, body != nil
}

func docLen(b []byte) (int, bool) {
	if len(b) < 5 {
		return 0, false
	}
	n := int(int32(binary.LittleEndian.Uint32(b[:4])))
	return n, n >= 5 && n <= len(b)
}

// each calls fn for every element of doc until fn returns false; false when doc is malformed.
func each(doc []byte, fn func(element) bool) bool {
	n, ok := docLen(doc)
	if !ok {
		return false
	}
	for p := 4; p < n-1; {
		typ := doc[p]
		p++
		z := bytes.IndexByte(doc[p:n], 0)
		if z < 0 {
			return false
		}
		name := string(doc[p : p+z])
		p += z + 1
		size, ok := valueLen(typ, doc[p:n])
		if !ok {
			return false
		}
		if !fn(element{typ: typ, name: name, value: doc[p : p+size]}) {
			return true
		}
		p += size
	}
	return true
}

func valueLen(typ byte, b []byte) (int, bool) {
	fixed := map[byte]int{0x01: 8, 0x06: 0, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16, 0x7F: 0, 0xFF: 0}
	if n, ok := fixed[typ]; ok {
		return n, n <= len(b)
	}
	switch typ {
	case 0x02, 0x0D, 0x0E: // string, JavaScript, symbol: int32 length, then bytes with a final NUL
		if len(b) < 4 {
			return 0, false
		}
		n := 4 + int(int32(binary.LittleEndian.Uint32(b[:4])))
		return n, n >= 5 && n <= len(b)
	case 0x03, 0x04, 0x0F: // document, array, code with scope: int32 total length
		n, ok := docLen(b)
		return n, ok
	case 0x05: // binary: int32 length, subtype, bytes
		if len(b) < 5 {
			return 0, false
		}
		n := 5 + int(int32(binary.LittleEndian.Uint32(b[:4])))
		return n, n >= 5 && n <= len(b)
	case 0x0B: // regex: two cstrings
		a := bytes.IndexByte(b, 0)
		if a < 0 {
			return 0, false
		}
		c := bytes.IndexByte(b[a+1:], 0)
		if c < 0 {
			return 0, false
		}
		return a + c + 2, true
	case 0x0C: // DBPointer: string, then 12 bytes
		if len(b) < 4 {
			return 0, false
		}
		n := 4 + int(int32(binary.LittleEndian.Uint32(b[:4]))) + 12
		return n, n <= len(b)
	}
	return 0, false
}

func firstElement(doc []byte) (element, bool) {
	var first element
	found := false
	ok := each(doc, func(e element) bool {
		first, found = e, true
		return false
	})
	return first, ok && found
}

func lookup(doc []byte, name string) (element, bool) {
	var hit element
	found := false
	each(doc, func(e element) bool {
		if e.name == name {
			hit, found = e, true
			return false
		}
		return true
	})
	return hit, found
}

// statements are an update's or delete's statements, from the body's array or from a document sequence.
func statements(body []byte, seqs map[string][][]byte, field string) ([][]byte, bool) {
	if docs, ok := seqs[field]; ok {
		return docs, true
	}
	arr, ok := lookup(body, field)
	if !ok || arr.typ != bsonArray {
		return nil, false
	}
	var out [][]byte
	ok = each(arr.value, func(e element) bool {
		if e.typ != bsonDocument {
			ok = false
			return false
		}
		out = append(out, e.value)
		return true
	})
	return out, ok
}

// filterKey is the document key of the filter held in field `name` of doc (see idKey).
func filterKey(doc []byte, name string) (string, bool) {
	q, ok := lookup(doc, name)
	if !ok || q.typ != bsonDocument {
		return "", false
	}
	return idKey(q.value)
}

// idKey is the document key of a filter that names exactly one document by `_id` equality: the `_id`
// value's type and bytes, when it is a plain value (string, ObjectId, number, binary), not an operator.
func idKey(filter []byte) (string, bool) {
	id, ok := lookup(filter, "_id")
	if !ok {
		return "", false
	}
	switch id.typ {
	case bsonString, bsonObjectID, bsonInt32, bsonInt64Type, bsonBinary:
		return string([]byte{id.typ}) + string(id.value), true
	}
	return "", false
}

func bsonDoc(elems ...[]byte) []byte {
	n := 4 + 1
	for _, e := range elems {
		n += len(e)
	}
	out := make([]byte, 4, n)
	binary.LittleEndian.PutUint32(out, uint32(n))
	for _, e := range elems {
		out = append(out, e...)
	}
	return append(out, 0)
}

func bsonInt64(name string, v int64) []byte {
	out := append([]byte{bsonInt64Type}, name...)
	out = append(out, 0)
	return binary.LittleEndian.AppendUint64(out, uint64(v))
}

func bsonDouble(name string, v float64) []byte {
	out := append([]byte{bsonDouble_}, name...)
	out = append(out, 0)
	return binary.LittleEndian.AppendUint64(out, math.Float64bits(v))
}
