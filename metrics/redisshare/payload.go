package redisshare

import (
	"bytes"
	"cmp"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/autoscalelua/autoscalelua/metrics"
)

// FormatVersion is the version of the payload this package writes and the newest it
// reads. A payload of a newer version is skipped, never misread ([ErrNewerFormat]).
const FormatVersion = 1

// OtherKey is the key under which a replica publishes the sum of the windows of a scope
// beyond its top N ([Config.TopN]), so that a scope's totals stay exact.
const OtherKey = "(other)"

var magic = []byte("ASWS")

// Errors of payload decoding.
var (
	// ErrNewerFormat reports a payload written by a newer version of this package.
	ErrNewerFormat = errors.New("redisshare: payload in a newer format")
	// ErrBadPayload reports a payload that does not decode.
	ErrBadPayload = errors.New("redisshare: bad payload")
)

// payload is one replica's summary of its windows at one time.
type payload struct {
	replica string
	time    time.Time
	spans   []time.Duration
	scopes  []scopeSum
}

type scopeSum struct {
	scope metrics.Scope
	keys  []keySum
}

type keySum struct {
	key     string
	entries []entry // one per span, in the payload's span order
}

// entry is a window's summary over one span. hist is the histogram's binary form.
type entry struct {
	count, errors, canceled, rejected, bytes uint64
	value, concurrency                       float64
	inFlight, maxInFlight                    int64
	span                                     time.Duration
	hist                                     []byte
}

// summarize builds reg's payload as of now: for every scope, the top n windows by
// count over the longest span plus the remainder under [OtherKey].
func summarize(reg *metrics.Registry, replica string, now time.Time, spans []time.Duration, n int) payload {
	p := payload{replica: replica, time: now, spans: spans}
	rank := slices.IndexFunc(spans, func(s time.Duration) bool { return s == 0 })
	if rank < 0 {
		rank = len(spans) - 1 // spans are sorted: the longest
	}
	scopes := reg.Scopes()
	slices.Sort(scopes)
	var h metrics.Histogram
	for _, sc := range scopes {
		ss := scopeSum{scope: sc}
		for w := range reg.Windows(sc) {
			k := keySum{key: w.Key(), entries: make([]entry, len(spans))}
			for i, sp := range spans {
				s := w.SnapshotAt(now, sp)
				h.Reset()
				w.HistogramAt(now, sp, &h)
				e := &k.entries[i]
				*e = entry{
					count: s.Count, errors: s.Errors, canceled: s.Canceled, rejected: s.Rejected,
					bytes: s.Bytes, value: s.Value, concurrency: s.Concurrency,
					inFlight: s.InFlight, maxInFlight: s.MaxInFlight, span: s.Span,
				}
				e.hist, _ = h.AppendBinary(nil)
			}
			ss.keys = append(ss.keys, k)
		}
		if len(ss.keys) > n {
			slices.SortStableFunc(ss.keys, func(a, b keySum) int {
				return cmp.Compare(b.entries[rank].count, a.entries[rank].count)
			})
			ss.keys = append(ss.keys[:n], fold(ss.keys[n:], len(spans)))
			slices.SortFunc(ss.keys, func(a, b keySum) int { return cmp.Compare(a.key, b.key) })
		}
		p.scopes = append(p.scopes, ss)
	}
	return p
}

// fold sums keys into one [OtherKey] entry.
func fold(keys []keySum, nspans int) keySum {
	out := keySum{key: OtherKey, entries: make([]entry, nspans)}
	hs := make([]metrics.Histogram, nspans)
	for _, k := range keys {
		for i, e := range k.entries {
			addEntry(&out.entries[i], e)
			hs[i].MergeBinary(e.hist) // our own encoding: cannot fail
		}
	}
	for i := range hs {
		out.entries[i].hist, _ = hs[i].AppendBinary(nil)
	}
	return out
}

// addEntry adds e's sums to dst, all but the histogram.
func addEntry(dst *entry, e entry) {
	dst.count += e.count
	dst.errors += e.errors
	dst.canceled += e.canceled
	dst.rejected += e.rejected
	dst.bytes += e.bytes
	dst.value += e.value
	dst.concurrency += e.concurrency
	dst.inFlight += e.inFlight
	dst.maxInFlight += e.maxInFlight
	dst.span = max(dst.span, e.span)
}

// encode writes p: the magic, the format version, and the deflated body.
func (p *payload) encode() []byte {
	var body []byte
	str := func(s string) {
		body = binary.AppendUvarint(body, uint64(len(s)))
		body = append(body, s...)
	}
	str(p.replica)
	body = binary.AppendVarint(body, p.time.UnixNano())
	body = binary.AppendUvarint(body, uint64(len(p.spans)))
	for _, s := range p.spans {
		body = binary.AppendUvarint(body, uint64(s))
	}
	body = binary.AppendUvarint(body, uint64(len(p.scopes)))
	for _, sc := range p.scopes {
		str(string(sc.scope))
		body = binary.AppendUvarint(body, uint64(len(sc.keys)))
		for _, k := range sc.keys {
			str(k.key)
			for _, e := range k.entries {
				for _, v := range [...]uint64{e.count, e.errors, e.canceled, e.rejected, e.bytes, uint64(e.span)} {
					body = binary.AppendUvarint(body, v)
				}
				body = binary.AppendVarint(body, e.inFlight)
				body = binary.AppendVarint(body, e.maxInFlight)
				var flags byte
				if e.value != 0 {
					flags |= 1
				}
				if e.concurrency != 0 {
					flags |= 2
				}
				body = append(body, flags)
				if flags&1 != 0 {
					body = binary.LittleEndian.AppendUint64(body, math.Float64bits(e.value))
				}
				if flags&2 != 0 {
					body = binary.LittleEndian.AppendUint64(body, math.Float64bits(e.concurrency))
				}
				body = append(body, e.hist...)
			}
		}
	}
	var buf bytes.Buffer
	buf.Write(magic)
	buf.Write(binary.AppendUvarint(nil, FormatVersion))
	zw, _ := flate.NewWriter(&buf, flate.BestSpeed)
	zw.Write(body)
	zw.Close()
	return buf.Bytes()
}

// maxBody bounds a payload's inflated body, against a corrupt or hostile payload.
const maxBody = 64 << 20

// decode reads a payload written by encode.
func decode(data []byte) (payload, error) {
	var p payload
	if !bytes.HasPrefix(data, magic) {
		return p, fmt.Errorf("%w: no magic", ErrBadPayload)
	}
	v, k := binary.Uvarint(data[len(magic):])
	if k <= 0 {
		return p, fmt.Errorf("%w: no version", ErrBadPayload)
	}
	if v > FormatVersion {
		return p, fmt.Errorf("%w: version %d, this one reads up to %d", ErrNewerFormat, v, FormatVersion)
	}
	if v != FormatVersion {
		return p, fmt.Errorf("%w: version %d", ErrBadPayload, v)
	}
	body, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(data[len(magic)+k:])), maxBody+1))
	if err != nil || len(body) > maxBody {
		return p, fmt.Errorf("%w: body: %v", ErrBadPayload, err)
	}
	d := decoder{b: body}
	p.replica = d.str()
	p.time = time.Unix(0, d.varint())
	ns := d.count(64)
	for range ns {
		p.spans = append(p.spans, time.Duration(d.uvarint()))
	}
	nsc := d.count(1 << 10)
	for range nsc {
		sc := scopeSum{scope: metrics.Scope(d.str())}
		nk := d.count(1 << 24)
		for range nk {
			key := keySum{key: d.str(), entries: make([]entry, ns)}
			for i := range key.entries {
				e := &key.entries[i]
				e.count, e.errors, e.canceled, e.rejected, e.bytes = d.uvarint(), d.uvarint(), d.uvarint(), d.uvarint(), d.uvarint()
				e.span = time.Duration(d.uvarint())
				e.inFlight, e.maxInFlight = d.varint(), d.varint()
				flags := d.byte()
				if flags&1 != 0 {
					e.value = d.float()
				}
				if flags&2 != 0 {
					e.concurrency = d.float()
				}
				e.hist = d.hist()
			}
			if d.err != nil {
				return p, d.err
			}
			sc.keys = append(sc.keys, key)
		}
		p.scopes = append(p.scopes, sc)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	return p, d.err
}

// decoder reads a body; its first failure sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrBadPayload, what)
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, k := binary.Uvarint(d.b)
	if k <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[k:]
	return v
}

func (d *decoder) varint() int64 {
	v, k := binary.Varint(d.b)
	if k <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[k:]
	return v
}

func (d *decoder) count(limit uint64) int {
	n := d.uvarint()
	if n > limit {
		d.fail("count")
		return 0
	}
	return int(n)
}

func (d *decoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("string")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail("byte")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) float() float64 {
	if len(d.b) < 8 {
		d.fail("float")
		return 0
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	if math.IsNaN(f) || math.IsInf(f, 0) {
		d.fail("float")
	}
	return f
}

// hist checks the histogram at the front and returns its bytes.
func (d *decoder) hist() []byte {
	if d.err != nil {
		return nil
	}
	var h metrics.Histogram
	rest, err := h.MergeBinary(d.b)
	if err != nil {
		d.err = fmt.Errorf("%w: %w", ErrBadPayload, err)
		d.b = nil
		return nil
	}
	out := d.b[:len(d.b)-len(rest)]
	d.b = rest
	return out
}
